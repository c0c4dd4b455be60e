package dnsredirect

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestSteering is acceptance point 1 with the miekg/dns client: each demo region gets its edge
// through its step, and ECS answers carry the scope of the network that decided.
func TestSteering(t *testing.T) {
	ts := startServer(t, testZones)
	cases := []struct {
		name   string
		qtype  uint16
		subnet string
		want   []string // acceptable answers (any one of them)
		scope  int      // -1: no ECS option expected
		netw   string
	}{
		{"explicit map 192.0.2.0/24", dns.TypeA, "192.0.2.0/24", []string{"127.0.0.11"}, 24, "udp"},
		{"explicit map over TCP", dns.TypeA, "192.0.2.0/24", []string{"127.0.0.11"}, 24, "tcp"},
		{"explicit map AAAA", dns.TypeAAAA, "192.0.2.0/24", []string{"::11"}, 24, "udp"},
		{"ASN database 198.51.100.0/24", dns.TypeA, "198.51.100.0/24", []string{"127.0.0.12"}, 24, "udp"},
		{"ASN with a /32 subnet truncated to /24", dns.TypeA, "198.51.100.7/32", []string{"127.0.0.12"}, 24, "udp"},
		{"geo distance 203.0.113.0/24 (Tokyo)", dns.TypeA, "203.0.113.0/24", []string{"127.0.0.13"}, 24, "udp"},
		{"geo distance IPv6 2001:db8:3::/48 (Sydney)", dns.TypeA, "2001:db8:3::/48", []string{"127.0.0.13"}, 48, "udp"},
		{"geo distance IPv6 2001:db8:1::/48 (Paris)", dns.TypeA, "2001:db8:1::/48", []string{"127.0.0.11"}, 48, "udp"},
		{"unknown network gets the default pool", dns.TypeA, "100.64.0.0/24", []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1, "udp"}, // 0.0.0.0/1 holds no network of the map or the databases
		{"private ECS ignored: resolver address, scope 0", dns.TypeA, "10.1.2.0/24", []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 0, "udp"},
		{"ECS /0 means the resolver, scope 0", dns.TypeA, "0.0.0.0/0", []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 0, "udp"},
		{"static name under ECS has scope 0", dns.TypeA, "192.0.2.0/24", nil, 0, "udp"},
		{"no ECS: no option, default pool", dns.TypeA, "", []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, -1, "udp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := "www.cdn.test."
			if tc.want == nil {
				name = "origin.cdn.test."
			}
			r := ts.exchange(t, tc.netw, newQuery(name, tc.qtype, true, tc.subnet))
			got := addrs(r.Answer)
			if tc.want == nil {
				tc.want = []string{"127.0.0.1"}
			}
			if len(got) != 1 || !slices.Contains(tc.want, got[0]) {
				t.Errorf("answer = %v, want one of %v", got, tc.want)
			}
			if s := ecsScope(r); s != tc.scope {
				t.Errorf("ECS scope = %d, want %d", s, tc.scope)
			}
			if len(r.Answer) > 0 && tc.want != nil && name == "www.cdn.test." && r.Answer[0].Header().Ttl != 30 {
				t.Errorf("dynamic TTL = %d, want 30", r.Answer[0].Header().Ttl)
			}
		})
	}
}

// TestDigSteering is acceptance point 1 with dig: the three demo regions over UDP, TCP and with
// +subnet, checking the answer and the scope dig prints.
func TestDigSteering(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (Debian package dnsutils)")
	}
	ts := startServer(t, testZones)
	host, port, _ := strings.Cut(ts.addr, ":")
	scopeRe := regexp.MustCompile(`CLIENT-SUBNET: (\S+)/(\d+)/(\d+)`)
	cases := []struct {
		name  string
		args  []string
		want  string
		scope string
	}{
		{"explicit map", []string{"+subnet=192.0.2.0/24"}, "127.0.0.11", "24"},
		{"explicit map over TCP", []string{"+tcp", "+subnet=192.0.2.0/24"}, "127.0.0.11", "24"},
		{"ASN", []string{"+subnet=198.51.100.0/24"}, "127.0.0.12", "24"},
		{"geo", []string{"+subnet=203.0.113.0/24"}, "127.0.0.13", "24"},
		{"geo over TCP", []string{"+tcp", "+subnet=203.0.113.0/24"}, "127.0.0.13", "24"},
		{"plain", nil, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"@" + host, "-p", port, "www.cdn.test", "A", "+norecurse", "+time=3", "+tries=1"}, tc.args...)
			out, err := exec.Command(dig, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("dig %v: %v\n%s", args, err, out)
			}
			s := string(out)
			if !strings.Contains(s, "status: NOERROR") || !strings.Contains(s, " aa") {
				t.Errorf("dig output lacks NOERROR/aa:\n%s", s)
			}
			re := regexp.MustCompile(`(?m)^www\.cdn\.test\.\s+30\s+IN\s+A\s+(\S+)$`)
			m := re.FindAllStringSubmatch(s, -1)
			if len(m) != 1 || (tc.want != "" && m[0][1] != tc.want) {
				t.Errorf("answers %v, want %q:\n%s", m, tc.want, s)
			}
			if tc.scope != "" {
				if sm := scopeRe.FindStringSubmatch(s); sm == nil || sm[3] != tc.scope {
					t.Errorf("scope %v, want %s:\n%s", sm, tc.scope, s)
				}
			}
		})
	}
}

// TestScopeIsTheDecidingNetwork checks ECS scopes around nested and absent networks (RFC 7871
// §7.2.1: the widest prefix over which the answer is the same, never /0 when it depends on the
// client).
func TestScopeIsTheDecidingNetwork(t *testing.T) {
	tr := newTrie()
	tr.insert(netip.MustParsePrefix("10.0.0.0/8"), 0)
	tr.insert(netip.MustParsePrefix("10.1.0.0/16"), 1)
	tr.insert(netip.MustParsePrefix("192.0.2.0/24"), 2)
	for _, tc := range []struct {
		addr        string
		entry, bits int
	}{
		{"10.1.2.3", 1, 16},
		{"10.2.3.4", 0, 15}, // inside /8 but the /16 next door differs: 10.0.0.0/15
		{"10.200.0.1", 0, 9},
		{"192.0.2.77", 2, 24},
		{"127.0.0.1", -1, 2}, // 64.0.0.0/2 holds none of the networks
		{"200.1.1.1", -1, 5}, // 200.0.0.0/5 holds none
	} {
		e, b := tr.lookup(netip.MustParseAddr(tc.addr))
		if e != tc.entry || b != tc.bits {
			t.Errorf("%s: entry %d /%d, want %d /%d", tc.addr, e, b, tc.entry, tc.bits)
		}
	}
	if e, b := newTrie().lookup(netip.MustParseAddr("1.2.3.4")); e != -1 || b != 0 {
		t.Errorf("empty map: %d /%d, want -1 /0", e, b)
	}
}

// TestExplain checks GET /dns/explain shows the steps of a decision.
func TestExplain(t *testing.T) {
	ts := startServer(t, testZones)
	for _, tc := range []struct {
		client, decided, answer string
		steps                   []string
	}{
		{"192.0.2.7", "nets", "127.0.0.11", []string{"nets"}},
		{"198.51.100.7", "asn", "127.0.0.12", []string{"nets", "asn"}},
		{"203.0.113.7", "geo", "127.0.0.13", []string{"nets", "asn", "geo"}},
	} {
		rec := httptest.NewRecorder()
		ts.env.Admin.ServeHTTP(rec, httptest.NewRequest("GET", "/dns/explain?name=www.cdn.test&client="+tc.client, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d %s", tc.client, rec.Code, rec.Body)
		}
		var ex Explain
		if err := json.Unmarshal(rec.Body.Bytes(), &ex); err != nil {
			t.Fatal(err)
		}
		var steps []string
		for _, s := range ex.Steps {
			steps = append(steps, s.Step)
		}
		if ex.DecidedBy != tc.decided || len(ex.Answer) != 1 || !strings.HasSuffix(ex.Answer[0], tc.answer) || !slices.Equal(steps, tc.steps) {
			t.Errorf("%s: %s", tc.client, rec.Body)
		}
		// The complete records, decoded by geoip2-golang, are shown beside the steps.
		if _, ok := ex.GeoIP["city"].(map[string]any)["country"]; !ok {
			t.Errorf("%s: no city record with a country in the explanation: %s", tc.client, rec.Body)
		}
		if _, ok := ex.GeoIP["asn"].(map[string]any); !ok {
			t.Errorf("%s: no ASN record in the explanation: %s", tc.client, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	ts.env.Admin.ServeHTTP(rec, httptest.NewRequest("GET", "/dns/explain?name=www.cdn.test&client=nope", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("bad client: status %d", rec.Code)
	}
}
