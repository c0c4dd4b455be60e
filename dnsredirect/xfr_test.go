package dnsredirect

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestAXFRAndNotify: an allowed secondary transfers the zone (SOA first and last, steered names
// with their pool's addresses; an IXFR gets the same full zone), and a zone change on reload bumps the serial and sends it a
// NOTIFY.
func TestAXFRAndNotify(t *testing.T) {
	notified := make(chan string, 4)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secondary := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
		if r.Opcode == dns.OpcodeNotify {
			notified <- r.Question[0].Name
		}
	})}
	go secondary.ActivateAndServe()
	defer secondary.Shutdown()

	text := strings.Replace(testZones, "[dns.rrl]", "[dns.transfer]\nallow = [\"127.0.0.0/8\"]\nnotify = [\""+pc.LocalAddr().String()+"\"]\n[dns.rrl]", 1)
	ts := startServer(t, text)
	tr := &dns.Transfer{DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second}
	m := new(dns.Msg)
	m.SetAxfr("cdn.test.")
	env, err := tr.In(m, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	for e := range env {
		if e.Error != nil {
			t.Fatal(e.Error)
		}
		rrs = append(rrs, e.RR...)
	}
	if len(rrs) < 3 || rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("transfer not framed by SOA: %v", rrs)
	}
	var www []string
	for _, rr := range rrs {
		if rr.Header().Name == "www.cdn.test." {
			www = append(www, addrs([]dns.RR{rr})...)
		}
	}
	if len(www) != 4 { // edge1 has an A and an AAAA, edge2 and edge3 an A each
		t.Errorf("steered name in transfer: %v", www)
	}

	ixfr := new(dns.Msg)
	ixfr.SetIxfr("cdn.test.", 1, "ns1.cdn.test.", "hostmaster.cdn.test.") // RFC 1995 §3: our SOA in the authority section
	env, err = (&dns.Transfer{DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second}).In(ixfr, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for e := range env {
		if e.Error != nil {
			t.Fatalf("IXFR: %v", e.Error)
		}
		n += len(e.RR)
	}
	if n != len(rrs) {
		t.Errorf("IXFR answered with %d records, want the full zone's %d (RFC 1995 §4)", n, len(rrs))
	}

	cfg := loadDNS(t, strings.Replace(text, "origin IN A 127.0.0.1", "origin IN A 127.0.0.9", 1))
	cfg.Listen = ts.cfg.Listen
	if err := ts.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-notified:
		if name != "cdn.test." {
			t.Errorf("NOTIFY for %s, want cdn.test.", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NOTIFY after the zone changed")
	}
	r := ts.exchange(t, "udp", newQuery("cdn.test.", dns.TypeSOA, false, ""))
	if len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != 2 {
		t.Errorf("SOA after the change: %v, want serial 2 (bumped from 1)", r.Answer)
	}
}

// TestTCPPipelining sends several queries on one TCP connection before reading (RFC 7766
// §6.2.1) and gets every answer, in order.
func TestTCPPipelining(t *testing.T) {
	ts := startServer(t, testZones)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"www.example.test.", "mail.example.test.", "www.cdn.test.", "nope.example.test."}
	var out []byte
	for i, n := range names {
		m := newQuery(n, dns.TypeA, false, "")
		m.Id = uint16(100 + i)
		b, _ := m.Pack()
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range names {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		var r dns.Msg
		if err := r.Unpack(b); err != nil || r.Id != uint16(100+i) || r.Question[0].Name != names[i] {
			t.Fatalf("answer %d: id %d %v %v", i, r.Id, r.Question, err)
		}
	}
}
