package dnsredirect

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	outpost "github.com/outpost-proxy/outpost"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// testZones is a small configuration exercising every kind of record and the demo steering.
var testZones = `
[dns]
listen = "127.0.0.1:0"
udp_sockets = 2
watch_interval = "0s"
[dns.rrl]
enabled = false
[dns.geoip]
city_db = "geoip/city.mmdb"
asn_db = "geoip/asn.mmdb"
generate_demo = true

[[dns.zones]]
name = "example.test"
records = [
  "@ 3600 IN SOA ns1.example.test. hostmaster.example.test. 7 7200 3600 1209600 300",
  "@ IN NS ns1.example.test.",
  "ns1 IN A 127.0.0.1",
  "www IN A 192.0.2.80",
  "www IN AAAA 2001:db8::80",
  "alias IN CNAME www.example.test.",
  "chain IN CNAME alias.example.test.",
  "out IN CNAME www.elsewhere.invalid.",
  "loop1 IN CNAME loop2.example.test.",
  "loop2 IN CNAME loop1.example.test.",
  "@ IN MX 10 mail.example.test.",
  "mail IN A 192.0.2.25",
  "*.wild IN A 192.0.2.99",
  "*.wild IN TXT \"wildcard\"",
  "a.b.deep IN A 192.0.2.3",
  "sub IN NS ns.sub.example.test.",
  "ns.sub IN A 192.0.2.53",
  "big IN TXT \"` + strings.Repeat("x", 200) + `\" \"` + strings.Repeat("y", 200) + `\" \"` + strings.Repeat("z", 200) + `\"",
  "_sip._tcp IN SRV 10 5 5060 mail.example.test.",
  "@ IN CAA 0 issue \"ca.test\"",
]

[[dns.zones]]
name = "cdn.test"
records = [
  "@ IN SOA ns1.cdn.test. hostmaster.cdn.test. 1 7200 3600 1209600 60",
  "@ IN NS ns1.cdn.test.",
  "ns1 IN A 127.0.0.1",
  "origin IN A 127.0.0.1",
  "go IN CNAME www.cdn.test.",
]

[[dns.edges]]
name = "edge1"
addrs = ["127.0.0.11", "::11"]
latitude = 50.11
longitude = 8.68
[[dns.edges]]
name = "edge2"
addrs = ["127.0.0.12"]
latitude = 40.71
longitude = -74.01
[[dns.edges]]
name = "edge3"
addrs = ["127.0.0.13"]
latitude = 35.68
longitude = 139.69

[[dns.pools]]
name = "edges"
edges = ["edge1", "edge2", "edge3"]

[[dns.dynamic]]
name = "www.cdn.test"
pool = "edges"

[[dns.nets]]
prefixes = ["192.0.2.0/24"]
edges = ["edge1", "edge2"]

[[dns.asn]]
asns = [64501]
edges = ["edge2", "edge1"]
`

// tryLoadDNS parses TOML text into the [dns] section.
func tryLoadDNS(text string) (config.DNSConfig, error) {
	f, err := os.CreateTemp("", "outpost-dns-*.toml")
	if err != nil {
		return config.DNSConfig{}, err
	}
	defer os.Remove(f.Name())
	f.WriteString(text)
	f.Close()
	c, err := config.Load(config.Source{File: f.Name(), Env: []string{}})
	if err != nil {
		return config.DNSConfig{}, err
	}
	return c.DNS, nil
}

// loadDNS parses TOML text into the [dns] section, as `outpost up` would.
func loadDNS(t testing.TB, text string) config.DNSConfig {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.toml")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(text)
	f.Close()
	c, err := config.Load(config.Source{File: f.Name(), Env: []string{}})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c.DNS
}

// testServer is a running server and its address.
type testServer struct {
	*Server
	addr string
	env  component.Env
}

// startServer starts a server from config text on 127.0.0.1:0 and stops it with the test.
func startServer(t testing.TB, text string) *testServer {
	t.Helper()
	return startServerCfg(t, loadDNS(t, text), t.TempDir())
}

func startServerCfg(t testing.TB, cfg config.DNSConfig, dataDir string) *testServer {
	t.Helper()
	env := component.Test(dataDir)
	s, err := New(cfg, env)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Listen(context.Background()); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	var serving sync.WaitGroup
	var serveErr error
	serving.Go(func() { serveErr = s.Serve(context.Background()) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		serving.Wait()
		if serveErr != nil {
			t.Errorf("Serve: %v", serveErr)
		}
	})
	addr := strings.TrimPrefix(s.Addrs()[0], "udp ")
	return &testServer{Server: s, addr: addr, env: env}
}

// exchange sends m over net ("udp" or "tcp") and returns the reply.
func (ts *testServer) exchange(t testing.TB, netw string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, ts.addr)
	if err != nil {
		t.Fatalf("exchange %s %v: %v", netw, m.Question, err)
	}
	return r
}

// query builds a query, optionally with EDNS and an ECS subnet ("" for none).
func newQuery(name string, qtype uint16, edns bool, subnet string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	if edns || subnet != "" {
		m.SetEdns0(1232, false)
	}
	if subnet != "" {
		p := netip.MustParsePrefix(subnet)
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())}
		e.Family = 1
		if p.Addr().Is6() {
			e.Family = 2
		}
		o := m.IsEdns0()
		o.Option = append(o.Option, e)
	}
	return m
}

// ecsScope returns the scope of the reply's ECS option, or -1.
func ecsScope(r *dns.Msg) int {
	if o := r.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				return int(e.SourceScope)
			}
		}
	}
	return -1
}

// addrs lists the A/AAAA addresses of a section.
func addrs(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	return out
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := config.Load(config.Source{Default: outpost.ExampleConfig, Env: []string{}})
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	c.DNS.Listen = "127.0.0.1:0"
	for i := range c.DNS.Edges {
		c.DNS.Edges[i].Check = "" // no proxy listens on the edges here
	}
	ts := startServerCfg(t, c.DNS, t.TempDir())
	for name, want := range map[string]string{"origin.cdn.test.": "127.0.0.1", "mail.outpost.test.": "127.0.0.1", "mx.remote.test.": "127.0.0.2"} {
		r := ts.exchange(t, "udp", newQuery(name, dns.TypeA, false, ""))
		if got := addrs(r.Answer); len(got) != 1 || got[0] != want {
			t.Errorf("%s A = %v, want %s", name, got, want)
		}
	}
	r := ts.exchange(t, "udp", newQuery("www.cdn.test.", dns.TypeA, true, "203.0.113.0/24"))
	if got := addrs(r.Answer); len(got) != 1 || got[0] != "127.0.0.13" {
		t.Errorf("demo www.cdn.test from 203.0.113.0/24 = %v, want 127.0.0.13", got)
	}
	if n := counterValue(t, ts.env.Metrics, "outpost_dns_queries_total", "NOERROR"); n != 4 {
		t.Errorf("queries counted: %v, want 4", n)
	}
	if n := counterValue(t, ts.env.Metrics, "outpost_dns_edge_answers_total", "edge3"); n != 1 {
		t.Errorf("edge3 answers counted: %v, want 1", n)
	}
	if n := counterValue(t, ts.env.Metrics, "outpost_dns_steering_decisions_total", "geo"); n != 1 {
		t.Errorf("geo decisions counted: %v, want 1", n)
	}
}
