package dnsredirect

import (
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"

	"github.com/miekg/dns"
)

// benchHandle measures the query handler alone (parse, decide, assemble) for one packet.
func benchHandle(b *testing.B, m *dns.Msg) {
	st, met := testState(b)
	benchHandleOn(b, st, met, m)
}

// benchHandleOn is benchHandle against a given state.
func benchHandleOn(b *testing.B, st *state, met *metrics, m *dns.Msg) {
	pkt, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, maxTCPLength)
	q := new(query)
	src := netip.MustParseAddr("127.0.0.1")
	if st.handle(pkt, out, q, src, false, met) == nil {
		b.Fatal("no reply")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st.handle(pkt, out, q, src, false, met)
	}
}

func BenchmarkHandleStatic(b *testing.B) {
	benchHandle(b, newQuery("www.example.test.", dns.TypeA, true, ""))
}

func BenchmarkHandleDynamicNetsECS(b *testing.B) {
	benchHandle(b, newQuery("www.cdn.test.", dns.TypeA, true, "192.0.2.0/24"))
}

func BenchmarkHandleDynamicASNECS(b *testing.B) {
	benchHandle(b, newQuery("www.cdn.test.", dns.TypeA, true, "198.51.100.0/24"))
}

func BenchmarkHandleDynamicGeoECS(b *testing.B) {
	benchHandle(b, newQuery("www.cdn.test.", dns.TypeA, true, "203.0.113.0/24"))
}

func BenchmarkHandleDynamicDefault(b *testing.B) {
	benchHandle(b, newQuery("www.cdn.test.", dns.TypeA, true, "100.64.0.0/24"))
}

func BenchmarkHandleNXDOMAIN(b *testing.B) {
	benchHandle(b, newQuery("nope.example.test.", dns.TypeA, false, ""))
}

func BenchmarkGeoCityLookup(b *testing.B) {
	st, _ := testState(b)
	a := netip.MustParseAddr("203.0.113.0")
	b.ReportAllocs()
	for b.Loop() {
		st.cityDB.City(a)
	}
}

func BenchmarkGeoASNLookup(b *testing.B) {
	st, _ := testState(b)
	a := netip.MustParseAddr("198.51.100.0")
	b.ReportAllocs()
	for b.Loop() {
		st.asnDB.ASN(a)
	}
}

// TestServeForBench serves the [dns] section of $DNSREDIRECT_BENCH_CONFIG for
// $DNSREDIRECT_BENCH_SECONDS (default 60) so dnsperf can be pointed at it without building the
// whole binary (see /work/notes/results-dns.md). Skipped unless the variable is set.
func TestServeForBench(t *testing.T) {
	file := os.Getenv("DNSREDIRECT_BENCH_CONFIG")
	if file == "" {
		t.Skip("set DNSREDIRECT_BENCH_CONFIG to serve a configuration for dnsperf")
	}
	secs, _ := strconv.Atoi(os.Getenv("DNSREDIRECT_BENCH_SECONDS"))
	if secs <= 0 {
		secs = 60
	}
	c, err := config.Load(config.Source{File: file, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerCfg(t, c.DNS, c.DataDir)
	t.Logf("serving %s for %ds", ts.Addrs(), secs)
	time.Sleep(time.Duration(secs) * time.Second)
}
