package dnsredirect

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/outpost-proxy/outpost/internal/config"
)

// TestRRLBucket checks the limiter with a fake clock: burst, then slip/drop alternation,
// refilling with time, per-/24 accounting and exemptions.
func TestRRLBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRRL(config.DNSRRLConfig{Enabled: true, ResponsesPerSecond: 10, Burst: 3, Slip: 2,
		IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 100, Exempt: []string{"127.0.0.0/8"}})
	r.now = func() time.Time { return now }
	var got []verdict
	for range 7 {
		got = append(got, r.check(netip.MustParseAddr("192.0.2.1")))
	}
	want := []verdict{rrlPass, rrlPass, rrlPass, rrlDrop, rrlSlip, rrlDrop, rrlSlip}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("verdicts %v, want %v", got, want)
		}
	}
	if v := r.check(netip.MustParseAddr("192.0.2.200")); v == rrlPass {
		t.Error("same /24 not limited together")
	}
	if v := r.check(netip.MustParseAddr("192.0.3.1")); v != rrlPass {
		t.Error("another /24 limited")
	}
	if v := r.check(netip.MustParseAddr("127.0.0.1")); v != rrlPass {
		t.Error("exempt network limited")
	}
	now = now.Add(200 * time.Millisecond) // 2 tokens
	if r.check(netip.MustParseAddr("192.0.2.1")) != rrlPass || r.check(netip.MustParseAddr("192.0.2.1")) != rrlPass {
		t.Error("bucket did not refill")
	}
}

// TestRRLDrops is the RRL half of acceptance point 5 over a real socket: a flood from one
// client gets the burst answered, some responses slipped (TC) and the rest dropped.
func TestRRLDrops(t *testing.T) {
	ts := startServer(t, strings.Replace(testZones, "[dns.rrl]\nenabled = false",
		"[dns.rrl]\nenabled = true\nresponses_per_second = 5\nburst = 10\nslip = 3\nexempt = []", 1))
	c, err := net.Dial("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 100
	start := time.Now()
	for i := range n {
		m := newQuery("www.example.test.", dns.TypeA, false, "")
		m.Id = uint16(i)
		b, _ := m.Pack()
		c.Write(b)
	}
	full, tc := 0, 0
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond)) // waiting for absence
		k, err := c.Read(buf)
		if err != nil {
			break
		}
		var r dns.Msg
		if r.Unpack(buf[:k]) != nil {
			t.Fatal("bad reply")
		}
		if r.Truncated {
			tc++
		} else {
			full++
		}
	}
	elapsed := time.Since(start).Seconds()
	drops, slips := counterValue(t, ts.env.Metrics, "outpost_dns_rrl_limited_total", "drop"), counterValue(t, ts.env.Metrics, "outpost_dns_rrl_limited_total", "slip")
	t.Logf("full %d, truncated %d, dropped %v in %.2fs", full, tc, drops, elapsed)
	if full < 10 || float64(full) > 10+5*elapsed+1 {
		t.Errorf("%d full answers, want the burst (10) plus at most 5/s", full)
	}
	if tc == 0 || drops == 0 || float64(tc) != slips {
		t.Errorf("truncated %d (metric %v), dropped %v: want both", tc, slips, drops)
	}
	if full+tc+int(drops) != n {
		t.Errorf("full %d + slipped %d + dropped %v != %d queries", full, tc, drops, n)
	}
}

// counterValue reads one labelled counter from a registry.
func counterValue(t *testing.T, reg prometheus.Registerer, name, label string) float64 {
	mfs, err := reg.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabel(m, label) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetValue() == v {
			return true
		}
	}
	return false
}
