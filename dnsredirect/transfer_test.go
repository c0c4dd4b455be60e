package dnsredirect

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// withDynamic adds lines to the [[dns.dynamic]] entry of testZones.
func withDynamic(lines string) string {
	return strings.Replace(testZones, "name = \"www.cdn.test\"\npool = \"edges\"", "name = \"www.cdn.test\"\npool = \"edges\"\n"+lines, 1)
}

// TestTransferViews: what a transfer lists for a steered name follows its transfer setting.
func TestTransferViews(t *testing.T) {
	tests := []struct {
		name, lines string
		want        []string
	}{
		{"default is every edge", "", []string{"127.0.0.11", "::11", "127.0.0.12", "127.0.0.13"}},
		{"all", `transfer = "all"`, []string{"127.0.0.11", "::11", "127.0.0.12", "127.0.0.13"}},
		{"fixed edges", "transfer = \"edges\"\ntransfer_edges = [\"edge3\", \"edge2\"]", []string{"127.0.0.13", "127.0.0.12"}},
		{"excluded", `transfer = "exclude"`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := buildState(loadDNS(t, withDynamic(tc.lines)), t.TempDir(), nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, rr := range st.zoneRecords(st.zones["cdn.test."]) {
				if rr.Header().Name == "www.cdn.test." {
					got = append(got, addrs([]dns.RR{rr})...)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("www.cdn.test in the transfer: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSerialBump: a reload that changes what a transfer carries bumps the serial by one, one
// that does not keeps it; an operator's newer serial wins; a restart with the same data
// directory remembers; the serial wraps modulo 2^32 (RFC 1982).
func TestSerialBump(t *testing.T) {
	dir := t.TempDir()
	cdn := func(serial, origin string) string {
		return strings.Replace(strings.Replace(testZones, "hostmaster.cdn.test. 1 ", "hostmaster.cdn.test. "+serial+" ", 1),
			"origin IN A 127.0.0.1", "origin IN A "+origin, 1)
	}
	moved := strings.Replace(cdn("1", "127.0.0.9"), `addrs = ["127.0.0.12"]`, `addrs = ["127.0.0.22"]`, 1)
	steps := []struct {
		name    string
		text    string
		restart bool
		want    uint32
	}{
		{"first load takes the configured serial", cdn("1", "127.0.0.1"), false, 1},
		{"same content keeps it", cdn("1", "127.0.0.1"), false, 1},
		{"a changed record bumps it", cdn("1", "127.0.0.9"), false, 2},
		{"a restart remembers it", cdn("1", "127.0.0.9"), true, 2},
		{"a transferred edge address bumps it", moved, false, 3},
		{"a change a transfer does not carry keeps it", strings.Replace(moved, "udp_sockets = 2", "udp_sockets = 2\nanswers = 2", 1), false, 3},
		{"a transfer view change bumps it", strings.Replace(moved, `pool = "edges"`, "pool = \"edges\"\ntransfer = \"exclude\"", 1), false, 4},
		{"a TXT record bumps it", strings.Replace(moved, `"origin IN A 127.0.0.9"`, `"origin IN A 127.0.0.9", "origin IN TXT \"hello\""`, 1), false, 5},
		{"a case change in TXT data bumps it", strings.Replace(moved, `"origin IN A 127.0.0.9"`, `"origin IN A 127.0.0.9", "origin IN TXT \"Hello\""`, 1), false, 6},
		{"the operator's newer serial wins", cdn("2026120301", "127.0.0.9"), false, 2026120301},
		{"an older configured serial does not go back", cdn("5", "127.0.0.1"), false, 2026120302},
	}
	var prev *state
	for _, s := range steps {
		if s.restart {
			prev = nil
		}
		st, err := buildState(loadDNS(t, s.text), dir, prev, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := st.zones["cdn.test."].soa.Serial; got != s.want {
			t.Errorf("%s: serial %d, want %d", s.name, got, s.want)
		}
		if got := st.zones["example.test."].soa.Serial; got != 7 {
			t.Errorf("%s: example.test serial %d, want 7 (unchanged)", s.name, got)
		}
		prev = st
	}

	wrap := t.TempDir()
	st, err := buildState(loadDNS(t, cdn("4294967295", "127.0.0.1")), wrap, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err = buildState(loadDNS(t, cdn("4294967295", "127.0.0.2")), wrap, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.zones["cdn.test."].soa.Serial; got != 0 {
		t.Errorf("serial after 4294967295: %d, want 0 (RFC 1982 §3.1)", got)
	}
}

func TestSerialNewer(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{
		{2, 1, true}, {1, 2, false}, {1, 1, false}, {0, 4294967295, true}, {4294967295, 0, false},
		{1 << 31, 0, false}, {(1 << 31) - 1, 0, true},
	}
	for _, tc := range tests {
		if got := serialNewer(tc.a, tc.b); got != tc.want {
			t.Errorf("serialNewer(%d, %d) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestSerialSigned: a signed zone keeps its serial across a reload that keeps its signatures,
// and bumps it when re-signing at the refresh point gives the secondaries new ones.
func TestSerialSigned(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	cfg := loadDNS(t, signedZones)
	serial := func(prev *state, at time.Time) (*state, uint32) {
		st, err := buildStateAt(cfg, dir, prev, nil, nil, at)
		if err != nil {
			t.Fatal(err)
		}
		return st, st.zones["cdn.test."].soa.Serial
	}
	st1, s1 := serial(nil, now)
	st2, s2 := serial(st1, now.Add(time.Hour))
	if s2 != s1 {
		t.Errorf("serial %d after a reload that kept the signatures, want %d", s2, s1)
	}
	if _, s3 := serial(st2, st1.signers["cdn.test."].refreshAt().Add(time.Second)); s3 != s1+1 {
		t.Errorf("serial %d after re-signing, want %d", s3, s1+1)
	}
}

// FuzzTransferQuery: whatever arrives on TCP, transferQuery does not panic, and what it takes
// for a transfer is an AXFR or IXFR of class IN with a question to answer.
func FuzzTransferQuery(f *testing.F) {
	for _, m := range []*dns.Msg{new(dns.Msg).SetAxfr("cdn.test."), new(dns.Msg).SetIxfr("cdn.test.", 7, "ns1.cdn.test.", "h.cdn.test."),
		newQuery("www.cdn.test.", dns.TypeA, true, "192.0.2.0/24")} {
		b, _ := m.Pack()
		f.Add(b)
	}
	for _, b := range seedQueries() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		q := new(query)
		if transferQuery(pkt, q) && ((q.qtype != dns.TypeAXFR && q.qtype != dns.TypeIXFR) || q.qclass != dns.ClassINET || len(q.question) == 0) {
			t.Fatalf("taken for a transfer: type %d class %d question %x", q.qtype, q.qclass, q.question)
		}
	})
}
