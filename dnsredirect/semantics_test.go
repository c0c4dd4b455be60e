package dnsredirect

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestAuthoritativeSemantics is acceptance point 2: the authoritative behaviour, one named case
// per rule, over real sockets with the miekg/dns client.
func TestAuthoritativeSemantics(t *testing.T) {
	ts := startServer(t, testZones)
	type want struct {
		rcode      int
		aa         bool
		answer     []string // "type data" of each answer record, in order
		authority  []string // types in the authority section
		additional []string // addresses in the additional section
		tc         bool
	}
	rr := func(rrs []dns.RR) []string {
		var out []string
		for _, r := range rrs {
			f := strings.Fields(r.String())
			out = append(out, dns.TypeToString[r.Header().Rrtype]+" "+strings.Join(f[4:], " "))
		}
		return out
	}
	types := func(rrs []dns.RR) []string {
		var out []string
		for _, r := range rrs {
			out = append(out, dns.TypeToString[r.Header().Rrtype])
		}
		return out
	}
	cases := []struct {
		name  string
		q     *dns.Msg
		netw  string
		want  want
		check func(t *testing.T, r *dns.Msg)
	}{
		{name: "A answer is authoritative", q: newQuery("www.example.test.", dns.TypeA, false, ""),
			want: want{aa: true, answer: []string{"A 192.0.2.80"}}},
		{name: "AAAA answer", q: newQuery("www.example.test.", dns.TypeAAAA, true, ""),
			want: want{aa: true, answer: []string{"AAAA 2001:db8::80"}}},
		{name: "question case preserved", q: newQuery("WwW.ExAmPlE.TeSt.", dns.TypeA, false, ""),
			want: want{aa: true, answer: []string{"A 192.0.2.80"}},
			check: func(t *testing.T, r *dns.Msg) {
				if r.Question[0].Name != "WwW.ExAmPlE.TeSt." {
					t.Errorf("question = %q, want the case as asked", r.Question[0].Name)
				}
			}},
		{name: "NXDOMAIN with SOA and negative TTL", q: newQuery("nope.example.test.", dns.TypeA, false, ""),
			want: want{rcode: dns.RcodeNameError, aa: true, authority: []string{"SOA"}},
			check: func(t *testing.T, r *dns.Msg) {
				if ttl := r.Ns[0].Header().Ttl; ttl != 300 {
					t.Errorf("negative TTL = %d, want min(SOA TTL, minimum) = 300", ttl)
				}
			}},
		{name: "NODATA with SOA", q: newQuery("www.example.test.", dns.TypeMX, false, ""),
			want: want{aa: true, authority: []string{"SOA"}}},
		{name: "empty non-terminal is NODATA not NXDOMAIN", q: newQuery("b.deep.example.test.", dns.TypeA, false, ""),
			want: want{aa: true, authority: []string{"SOA"}}},
		{name: "CNAME chain inside the zone", q: newQuery("chain.example.test.", dns.TypeA, false, ""),
			want: want{aa: true, answer: []string{"CNAME alias.example.test.", "CNAME www.example.test.", "A 192.0.2.80"}}},
		{name: "CNAME query returns the CNAME", q: newQuery("alias.example.test.", dns.TypeCNAME, false, ""),
			want: want{aa: true, answer: []string{"CNAME www.example.test."}}},
		{name: "CNAME leaving our zones stops", q: newQuery("out.example.test.", dns.TypeA, false, ""),
			want: want{aa: true, answer: []string{"CNAME www.elsewhere.invalid."}}},
		{name: "CNAME loop terminates", q: newQuery("loop1.example.test.", dns.TypeA, false, ""),
			want: want{aa: true, answer: []string{"CNAME loop2.example.test.", "CNAME loop1.example.test."}}},
		{name: "CNAME into a steered name", q: newQuery("go.cdn.test.", dns.TypeA, true, "192.0.2.0/24"),
			want: want{aa: true, answer: []string{"CNAME www.cdn.test.", "A 127.0.0.11"}}},
		{name: "delegation is a referral without AA", q: newQuery("host.sub.example.test.", dns.TypeA, false, ""),
			want: want{aa: false, authority: []string{"NS"}, additional: []string{"192.0.2.53"}}},
		{name: "delegation point itself refers", q: newQuery("sub.example.test.", dns.TypeNS, false, ""),
			want: want{aa: false, authority: []string{"NS"}, additional: []string{"192.0.2.53"}}},
		{name: "wildcard synthesises the owner", q: newQuery("foo.wild.example.test.", dns.TypeA, false, ""),
			want: want{aa: true, answer: []string{"A 192.0.2.99"}},
			check: func(t *testing.T, r *dns.Msg) {
				if r.Answer[0].Header().Name != "foo.wild.example.test." {
					t.Errorf("owner = %s, want the query name", r.Answer[0].Header().Name)
				}
			}},
		{name: "wildcard other type", q: newQuery("x.y.wild.example.test.", dns.TypeTXT, false, ""),
			want: want{aa: true, answer: []string{`TXT "wildcard"`}}},
		{name: "wildcard NODATA", q: newQuery("foo.wild.example.test.", dns.TypeMX, false, ""),
			want: want{aa: true, authority: []string{"SOA"}}},
		{name: "MX with in-zone additional address", q: newQuery("example.test.", dns.TypeMX, false, ""),
			want: want{aa: true, answer: []string{"MX 10 mail.example.test."}, additional: []string{"192.0.2.25"}}},
		{name: "SRV", q: newQuery("_sip._tcp.example.test.", dns.TypeSRV, false, ""),
			want: want{aa: true, answer: []string{"SRV 10 5 5060 mail.example.test."}, additional: []string{"192.0.2.25"}}},
		{name: "CAA", q: newQuery("example.test.", dns.TypeCAA, false, ""),
			want: want{aa: true, answer: []string{`CAA 0 issue "ca.test"`}}},
		{name: "ANY is answered minimally (RFC 8482)", q: newQuery("www.example.test.", dns.TypeANY, false, ""),
			want: want{aa: true, answer: []string{"A 192.0.2.80"}}},
		{name: "outside our zones is REFUSED", q: newQuery("www.example.com.", dns.TypeA, false, ""),
			want: want{rcode: dns.RcodeRefused}},
		{name: "no recursion: RD echoed, RA clear", q: func() *dns.Msg {
			m := newQuery("www.example.test.", dns.TypeA, false, "")
			m.RecursionDesired = true
			return m
		}(), want: want{aa: true, answer: []string{"A 192.0.2.80"}},
			check: func(t *testing.T, r *dns.Msg) {
				if !r.RecursionDesired || r.RecursionAvailable {
					t.Errorf("RD=%v RA=%v, want RD echoed and RA clear", r.RecursionDesired, r.RecursionAvailable)
				}
			}},
		{name: "large answer over UDP without EDNS is truncated", q: newQuery("big.example.test.", dns.TypeTXT, false, ""),
			want: want{aa: true, tc: true}},
		{name: "same answer in full over TCP", q: newQuery("big.example.test.", dns.TypeTXT, false, ""), netw: "tcp",
			want: want{aa: true, answer: []string{`TXT "` + strings.Repeat("x", 200) + `" "` + strings.Repeat("y", 200) + `" "` + strings.Repeat("z", 200) + `"`}}},
		{name: "EDNS 1232 carries it over UDP", q: newQuery("big.example.test.", dns.TypeTXT, true, ""),
			want: want{aa: true, answer: []string{`TXT "` + strings.Repeat("x", 200) + `" "` + strings.Repeat("y", 200) + `" "` + strings.Repeat("z", 200) + `"`}}},
		{name: "CHAOS version.bind", q: func() *dns.Msg {
			m := newQuery("version.bind.", dns.TypeTXT, false, "")
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), want: want{aa: true, answer: []string{`TXT "outpost"`}}},
		{name: "EDNS version 1 is BADVERS", q: func() *dns.Msg {
			m := newQuery("www.example.test.", dns.TypeA, true, "")
			m.IsEdns0().SetVersion(1)
			return m
		}(), want: want{rcode: dns.RcodeBadVers}},
		{name: "class HS is refused", q: func() *dns.Msg {
			m := newQuery("www.example.test.", dns.TypeA, false, "")
			m.Question[0].Qclass = dns.ClassHESIOD
			return m
		}(), want: want{rcode: dns.RcodeRefused}},
		{name: "UPDATE is not implemented", q: func() *dns.Msg {
			m := newQuery("example.test.", dns.TypeSOA, false, "")
			m.Opcode = dns.OpcodeUpdate
			return m
		}(), want: want{rcode: dns.RcodeNotImplemented}},
		{name: "AXFR over UDP is refused", q: newQuery("example.test.", dns.TypeAXFR, false, ""),
			want: want{rcode: dns.RcodeRefused}},
		{name: "AXFR from a client not allowed is refused", q: newQuery("example.test.", dns.TypeAXFR, false, ""), netw: "tcp",
			want: want{rcode: dns.RcodeRefused}},
		{name: "malformed ECS is FORMERR", q: func() *dns.Msg {
			m := newQuery("www.cdn.test.", dns.TypeA, true, "")
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: []byte{0, 1, 33, 0, 1, 2, 3, 4, 5}})
			return m
		}(), want: want{rcode: dns.RcodeFormatError}},
		{name: "DO bit is copied", q: func() *dns.Msg {
			m := newQuery("www.example.test.", dns.TypeA, true, "")
			m.IsEdns0().SetDo()
			return m
		}(), want: want{aa: true, answer: []string{"A 192.0.2.80"}},
			check: func(t *testing.T, r *dns.Msg) {
				if o := r.IsEdns0(); o == nil || !o.Do() || o.UDPSize() != 1232 {
					t.Errorf("OPT = %v, want DO set and size 1232", o)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			netw := tc.netw
			if netw == "" {
				netw = "udp"
			}
			r := ts.exchange(t, netw, tc.q)
			if r.Id != tc.q.Id || !r.Response {
				t.Fatalf("id %d response %v", r.Id, r.Response)
			}
			if r.Rcode != tc.want.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.want.rcode])
			}
			if r.Authoritative != tc.want.aa {
				t.Errorf("AA = %v, want %v", r.Authoritative, tc.want.aa)
			}
			if r.Truncated != tc.want.tc {
				t.Errorf("TC = %v, want %v", r.Truncated, tc.want.tc)
			}
			if got := rr(r.Answer); !slices.Equal(got, tc.want.answer) {
				t.Errorf("answer = %q, want %q", got, tc.want.answer)
			}
			if got := types(r.Ns); !slices.Equal(got, tc.want.authority) {
				t.Errorf("authority = %v, want %v", got, tc.want.authority)
			}
			if got := addrs(r.Extra); !slices.Equal(got, tc.want.additional) {
				t.Errorf("additional = %v, want %v", got, tc.want.additional)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}
