package bench

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS runs a small authoritative server for example.test on UDP and TCP (127.0.0.1:0);
// it answers www with an A record and everything else with NXDOMAIN, and notes the client
// subnets it sees.
type testDNS struct {
	addr    string
	mu      sync.Mutex
	subnets map[string]int
}

func startTestDNS(t *testing.T) *testDNS {
	t.Helper()
	td := &testDNS{subnets: map[string]int{}}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if opt := r.IsEdns0(); opt != nil {
			for _, o := range opt.Option {
				if s, ok := o.(*dns.EDNS0_SUBNET); ok {
					td.mu.Lock()
					td.subnets[s.Address.String()]++
					td.mu.Unlock()
				}
			}
		}
		if len(r.Question) == 1 && strings.EqualFold(r.Question[0].Name, "www.example.test.") {
			rr, _ := dns.NewRR("www.example.test. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Skipf("TCP port of the UDP listener is taken: %v", err)
	}
	ready := make(chan struct{}, 2)
	udp := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { ready <- struct{}{} }}
	tcp := &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: func() { ready <- struct{}{} }}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-ready
	<-ready
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	td.addr = pc.LocalAddr().String()
	return td
}

func TestDNSLoad(t *testing.T) {
	td := startTestDNS(t)
	mix := []DNSQuery{{"www.example.test.", dns.TypeA}, {"nope.example.test.", dns.TypeAAAA}}
	for _, tc := range []struct {
		name string
		edit func(*DNSOptions)
	}{
		{"udp", func(o *DNSOptions) {}},
		{"tcp", func(o *DNSOptions) { o.TCP = true }},
		{"udp with ecs", func(o *DNSOptions) { o.ECSRandom = true }},
		{"tcp with edns", func(o *DNSOptions) { o.TCP, o.EDNS = true, true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DNSOptions{Server: td.addr, Queries: mix, Clients: 2, Outstanding: 8, Requests: 400, Timeout: 2 * time.Second, Seed: 3}
			tc.edit(&o)
			r, err := RunDNS(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Sent != 400 || r.Completed != 400 || r.Lost != 0 || len(r.Errors) != 0 {
				t.Fatalf("sent %d completed %d lost %d errors %v", r.Sent, r.Completed, r.Lost, r.Errors)
			}
			if r.Rcodes["NOERROR"] != 200 || r.Rcodes["NXDOMAIN"] != 200 {
				t.Errorf("rcodes %v, want 200 NOERROR and 200 NXDOMAIN", r.Rcodes)
			}
		})
	}
	td.mu.Lock()
	defer td.mu.Unlock()
	if len(td.subnets) < 100 {
		t.Errorf("--ecs-random sent only %d distinct subnets", len(td.subnets))
	}
}

func TestDNSLoadDurationAndLoss(t *testing.T) {
	// A server that never answers: every query is lost after the timeout, and the run ends.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	o := DNSOptions{Server: pc.LocalAddr().String(), Queries: []DNSQuery{{"a.test.", dns.TypeA}}, Clients: 1,
		Outstanding: 4, Duration: 100 * time.Millisecond, Timeout: 100 * time.Millisecond}
	start := time.Now()
	r, err := RunDNS(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("run took %v", el)
	}
	if r.Completed != 0 || r.Lost != r.Sent || r.Sent == 0 {
		t.Errorf("sent %d completed %d lost %d: want every query lost", r.Sent, r.Completed, r.Lost)
	}
}

func TestParseQueryFile(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       int
		bad        bool
	}{
		{name: "dnsperf format", text: "www.example.com A\n# comment\nexample.com MX\n\nfoo.example.com\n", want: 3},
		{name: "unknown type", text: "www.example.com BOGUS\n", bad: true},
		{name: "too many fields", text: "a b c\n", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qs, err := ParseQueryFile(strings.NewReader(tc.text))
			if tc.bad != (err != nil) {
				t.Fatalf("err = %v", err)
			}
			if len(qs) != tc.want {
				t.Errorf("got %d queries, want %d", len(qs), tc.want)
			}
		})
	}
}

func TestDNSOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*DNSOptions)
	}{
		{"no server", func(o *DNSOptions) { o.Server = "" }},
		{"server without port", func(o *DNSOptions) { o.Server = "127.0.0.1" }},
		{"no queries", func(o *DNSOptions) { o.Queries = nil }},
		{"no clients", func(o *DNSOptions) { o.Clients = 0 }},
		{"neither -d nor -n", func(o *DNSOptions) { o.Requests = 0 }},
		{"zero timeout", func(o *DNSOptions) { o.Timeout = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DNSOptions{Server: "127.0.0.1:53", Queries: []DNSQuery{{"a.", 1}}, Clients: 1, Outstanding: 1, Requests: 1, Timeout: time.Second}
			tc.edit(&o)
			if err := o.Validate(); !IsUsage(err) {
				t.Fatalf("Validate() = %v, want a usage error", err)
			}
		})
	}
}

// FuzzDNSHeader feeds arbitrary datagrams to the response header parser.
func FuzzDNSHeader(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	q, _ := m.Pack()
	m.Response, m.Rcode, m.Truncated = true, dns.RcodeNameError, true
	resp, _ := m.Pack()
	for _, s := range [][]byte{q, resp, {}, {0, 1, 0x80}, make([]byte, 12)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseDNSHeader(b)
		if err != nil {
			return
		}
		if len(b) < 12 || b[2]&0x80 == 0 || h.rcode > 15 {
			t.Fatalf("accepted %x as %+v", b, h)
		}
	})
}

func TestGenerateQueries(t *testing.T) {
	qs, err := GenerateQueries("cdn.test", 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 54 || qs[0] != (DNSQuery{"cdn.test.", dns.TypeSOA}) || qs[2] != (DNSQuery{"www.cdn.test.", dns.TypeA}) {
		t.Fatalf("mix %v", qs[:4])
	}
	seen := map[string]bool{}
	for _, q := range qs[4:] {
		if !strings.HasSuffix(q.Name, ".cdn.test.") || seen[q.Name] {
			t.Errorf("random name %q repeated or outside the zone", q.Name)
		}
		seen[q.Name] = true
	}
	if _, err := GenerateQueries("bad..zone", 0, 1); err == nil {
		t.Error("a bad zone was accepted")
	}
}

// FuzzEmbeddedObjects feeds arbitrary pages to the object extractor of the scorecard.
func FuzzEmbeddedObjects(f *testing.F) {
	f.Add([]byte(`<img src="/page/2/obj/1"><script src='a.js'></script><link rel=stylesheet href="s.css">`), "")
	f.Add([]byte(`<img src="http://other:1/x?y=1">`), "bust=1")
	f.Add([]byte(`<img src=":bad">`), "")
	f.Fuzz(func(t *testing.T, page []byte, suffix string) {
		objs, err := embeddedObjects(page, "/page/1", suffix)
		if err != nil {
			t.Fatal(err) // the base is always a valid path
		}
		for _, o := range objs {
			if !strings.HasPrefix(o, "/") && o != "*" {
				t.Fatalf("object %q is not an origin-form path", o)
			}
		}
	})
}
