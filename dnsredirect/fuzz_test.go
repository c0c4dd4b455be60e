package dnsredirect

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// testState loads testZones into a state without sockets.
func testState(t testing.TB) (*state, *metrics) {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st, err := buildState(loadDNS(t, testZones), t.TempDir(), nil, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return st, m
}

// seedQueries are well-formed and hostile packets for the fuzz corpus.
func seedQueries() [][]byte {
	var out [][]byte
	add := func(m *dns.Msg) {
		b, err := m.Pack()
		if err == nil {
			out = append(out, b)
		}
	}
	add(newQuery("www.cdn.test.", dns.TypeA, true, "203.0.113.0/24"))
	add(newQuery("www.cdn.test.", dns.TypeAAAA, true, "2001:db8:1::/48"))
	add(newQuery("WWW.Example.Test.", dns.TypeA, false, ""))
	add(newQuery("big.example.test.", dns.TypeTXT, false, ""))
	add(newQuery("foo.wild.example.test.", dns.TypeANY, true, ""))
	add(newQuery("chain.example.test.", dns.TypeA, false, ""))
	add(newQuery("host.sub.example.test.", dns.TypeA, false, ""))
	add(newQuery("nope.example.com.", dns.TypeA, false, ""))
	m := newQuery("version.bind.", dns.TypeTXT, false, "")
	m.Question[0].Qclass = dns.ClassCHAOS
	add(m)
	m = newQuery("example.test.", dns.TypeSOA, false, "")
	m.Opcode = dns.OpcodeNotify
	add(m)
	m = newQuery("example.test.", dns.TypeA, false, "")
	m.Question = append(m.Question, m.Question[0])
	add(m)
	out = append(out,
		[]byte{},
		[]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},                              // question missing
		[]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},        // pointer loop
		[]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 16}, // short OPT
		[]byte{0x80, 0, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0},                        // a response
	)
	return out
}

// FuzzHandle is acceptance point 5: random packets into the query handler never panic, and
// every reply is a well-formed DNS message answering the packet's ID.
func FuzzHandle(f *testing.F) {
	st, m := testState(f)
	fuzzHandler(f, st, m, seedQueries())
}

// fuzzHandler fuzzes st's handler from seeds, over UDP and TCP.
func fuzzHandler(f *testing.F, st *state, m *metrics, seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	out := make([]byte, 0, maxTCPLength)
	q := new(query)
	src := netip.MustParseAddr("198.51.100.9")
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		resp := st.handle(pkt, out, q, src, tcp, m)
		if resp == nil {
			return
		}
		if !tcp && len(resp) > 4096 {
			t.Fatalf("UDP response of %d bytes", len(resp))
		}
		var r dns.Msg
		if err := r.Unpack(resp); err != nil && len(resp) > headerLen {
			t.Fatalf("reply does not parse: %v\n% x", err, resp)
		}
		if binary.BigEndian.Uint16(resp) != binary.BigEndian.Uint16(pkt) || resp[2]&0x80 == 0 {
			t.Fatalf("reply ID/QR wrong: % x", resp[:4])
		}
	})
}

// FuzzParseQuery checks that whatever the fast parser accepts, miekg/dns accepts too, with the
// same question.
func FuzzParseQuery(f *testing.F) {
	for _, s := range seedQueries() {
		f.Add(s)
	}
	q := new(query)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if parseQuery(pkt, q) != parseOK || q.ecsBad { // a bad ECS option is our FORMERR; miekg rejects it too
			return
		}
		var m dns.Msg
		err := m.Unpack(pkt)
		if err != nil && strings.Contains(err.Error(), "OPT") {
			return // miekg/dns validates option contents; RFC 6891 §6.1.2 has unknown options ignored
		}
		if err != nil {
			t.Fatalf("fast parser accepted what miekg/dns rejects: %v", err)
		}
		if len(m.Question) != 1 || dns.CanonicalName(m.Question[0].Name) != string(q.name) || m.Question[0].Qtype != q.qtype {
			t.Fatalf("question %v, fast parser %q/%d", m.Question, q.name, q.qtype)
		}
	})
}
