package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// TestRendezvousRanking: keys spread evenly over the parents, every parent agrees on the
// ranking of a key whatever the configured order, and when a parent goes down only its own
// keys move (to the others, evenly).
func TestRendezvousRanking(t *testing.T) {
	const keys = 6000
	tests := []struct {
		name    string
		servers []string
		down    int // index of the parent taken down
	}{
		{"two", []string{"10.0.0.1:80", "10.0.0.2:80"}, 0},
		{"three", []string{"198.19.0.20:80", "198.19.0.21:80", "198.19.0.22:80"}, 1},
		{"five", []string{"p1.test:3128", "p2.test:3128", "p3.test:3128", "p4.test:3128", "p5.test:3128"}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default().Proxy.Parents
			cfg.Servers = tt.servers
			tier := newParentTier(cfg, nil, slog.New(slog.DiscardHandler))
			rev := slices.Clone(tt.servers)
			slices.Reverse(rev)
			cfg.Servers = rev
			reversed := newParentTier(cfg, nil, slog.New(slog.DiscardHandler))
			n := len(tt.servers)
			first := map[int]string{}
			count := map[string]int{}
			for k := range keys {
				h := parentKey(mustRequest(t, fmt.Sprintf("http://www.cdn.test/obj/%d?v=%d", k, k%7)))
				a := tier.ranked(h, nil)
				b := reversed.ranked(h, nil)
				if len(a) != n || a[0].addr != b[0].addr || a[n-1].addr != b[n-1].addr {
					t.Fatalf("key %d: rankings disagree: %v vs %v", k, addrs(a), addrs(b))
				}
				first[k] = a[0].addr
				count[a[0].addr]++
			}
			for _, s := range tt.servers {
				share := float64(count[s]) / keys
				if share < 0.8/float64(n) || share > 1.2/float64(n) {
					t.Errorf("%s has %.3f of the keys, want about %.3f", s, share, 1/float64(n))
				}
			}
			gone := tt.servers[tt.down]
			tier.parents[tt.down].up.Store(false)
			moved := map[string]int{}
			for k := range keys {
				h := parentKey(mustRequest(t, fmt.Sprintf("http://www.cdn.test/obj/%d?v=%d", k, k%7)))
				a := tier.ranked(h, nil)
				if len(a) != n-1 {
					t.Fatalf("%d parents ranked with one down", len(a))
				}
				switch {
				case first[k] != gone && a[0].addr != first[k]:
					t.Fatalf("key %d moved from %s to %s though %s stayed up", k, first[k], a[0].addr, first[k])
				case first[k] == gone:
					moved[a[0].addr]++
				}
			}
			for _, s := range tt.servers {
				if s == gone {
					continue
				}
				share := float64(moved[s]) / float64(count[gone])
				if share < 0.7/float64(n-1) || share > 1.3/float64(n-1) {
					t.Errorf("%s took %.3f of the down parent's keys, want about %.3f", s, share, 1/float64(n-1))
				}
			}
		})
	}
}

// TestParentHealthRecord: fall failures in a row take a parent down, rise successes bring it
// back, and a result that agrees with the state resets the streak.
func TestParentHealthRecord(t *testing.T) {
	cfg := config.Default().Proxy.Parents
	cfg.Servers, cfg.Fall, cfg.Rise = []string{"127.0.0.1:1"}, 2, 3
	tier := newParentTier(cfg, nil, slog.New(slog.DiscardHandler))
	p := tier.parents[0]
	steps := []struct {
		ok   bool
		want bool
	}{{false, true}, {true, true}, {false, true}, {false, false}, {true, false}, {true, false}, {false, false},
		{true, false}, {true, false}, {true, true}}
	for i, s := range steps {
		tier.record(p, s.ok, nil)
		if got := p.up.Load(); got != s.want {
			t.Fatalf("step %d (ok=%v): up=%v, want %v", i, s.ok, got, s.want)
		}
	}
}

func mustRequest(t *testing.T, raw string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI = r.URL.RequestURI()
	return r
}

func addrs(ps []*parent) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.addr)
	}
	return out
}

// freeAddr reserves an ephemeral loopback port for a server that must be named in another's
// configuration before it starts (the tiers name each other).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// cdn is two edges and a parent in front of one origin, each a real proxy with its own cache.
type cdn struct {
	origin       *testOrigin
	perPath      sync.Map // path → *atomic.Int64: requests that reached the origin
	gate         chan struct{}
	parentAddr   string
	parentCfg    config.ProxyConfig
	parent       *testProxy
	edge1, edge2 *testProxy
}

func startCDN(t *testing.T) *cdn {
	t.Helper()
	c := &cdn{gate: make(chan struct{})}
	close(c.gate)
	c.origin = startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		v, _ := c.perPath.LoadOrStore(r.URL.Path, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		if r.URL.Path == "/gated" {
			<-c.gate
		}
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "object %s", r.URL.Path)
	})
	c.parentAddr = freeAddr(t)
	e1, e2 := freeAddr(t), freeAddr(t)
	route := reverseRoute(c.origin)
	edge := func(name, addr string) *testProxy {
		cfg := loadProxyConfig(t, fmt.Sprintf("via_pseudonym = %q\n%s\n[proxy.parents]\nservers = [%q]\ncheck = \"http\"\ninterval = \"50ms\"\ntimeout = \"40ms\"\nfall = 1\nrise = 2\n",
			name, route, c.parentAddr))
		cfg.Listen = []string{addr}
		return startProxyConfig(t, cfg, Options{Cache: newRealCache(t)})
	}
	c.parentCfg = loadProxyConfig(t, fmt.Sprintf("via_pseudonym = \"parent\"\n%s\n[proxy.purge]\npeers = [%q, %q]\n", route, e1, e2))
	c.parentCfg.Listen = []string{c.parentAddr}
	c.parent = startProxyConfig(t, c.parentCfg, Options{Cache: newRealCache(t)})
	c.edge1, c.edge2 = edge("edge1", e1), edge("edge2", e2)
	return c
}

// originSeen is how many requests for path reached the origin.
func (c *cdn) originSeen(path string) int64 {
	v, ok := c.perPath.Load(path)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// tierGet sends one GET to a tier and returns the response and body.
func tierGet(t *testing.T, p *testProxy, path string, extra string) (*http.Response, string) {
	t.Helper()
	c := dialRaw(t, p.addr)
	c.send("GET " + path + " HTTP/1.1\r\nHost: www.cdn.test\r\n" + extra + "Connection: close\r\n\r\n")
	return c.response("GET")
}

// TestParentTier: two edges and a parent, real proxies with real caches on loopback sockets.
// Each object reaches the origin once across both edges, concurrent misses from both edges
// included; Via and Cache-Status show both tiers, the parent's member first; with the parent
// down the edges go to the origin directly, and back through the parent after its rise checks;
// one PURGE at an edge leaves the object in no tier.
func TestParentTier(t *testing.T) {
	c := startCDN(t)

	// Cold at edge1, then edge2: the parent answers edge2 from its cache.
	resp, body := tierGet(t, c.edge1, "/a", "")
	if resp.StatusCode != 200 || body != "object /a" {
		t.Fatalf("edge1: %d %q", resp.StatusCode, body)
	}
	cs := resp.Header.Values("Cache-Status")
	if len(cs) != 2 || !strings.HasPrefix(cs[0], "parent; fwd=uri-miss") || !strings.HasPrefix(cs[1], "edge1; fwd=uri-miss") {
		t.Errorf("edge1 cold Cache-Status %q, want the parent's miss then edge1's", cs)
	}
	if via := resp.Header.Values("Via"); !slices.Equal(via, []string{"1.1 parent", "1.1 edge1"}) {
		t.Errorf("response Via %q, want the parent then edge1", via)
	}
	if via := c.origin.last().Header.Values("Via"); strings.Join(via, ", ") != "1.1 edge1, 1.1 parent" {
		t.Errorf("the origin saw Via %q, want edge1 then parent", via)
	}
	resp, _ = tierGet(t, c.edge2, "/a", "")
	cs = resp.Header.Values("Cache-Status")
	if len(cs) != 2 || !strings.HasPrefix(cs[0], "parent; hit") || !strings.HasPrefix(cs[1], "edge2; fwd=uri-miss") {
		t.Errorf("edge2 Cache-Status %q, want the parent's hit then edge2's miss", cs)
	}
	resp, _ = tierGet(t, c.edge2, "/a", "")
	if cs = resp.Header.Values("Cache-Status"); len(cs) != 2 || !strings.HasPrefix(cs[1], "edge2; hit") {
		t.Errorf("edge2 warm Cache-Status %q, want edge2's hit last", cs)
	}
	if n := c.originSeen("/a"); n != 1 {
		t.Errorf("the origin saw /a %d times, want 1", n)
	}
	if lines := c.edge1.log.lines(); len(lines) == 0 || !strings.Contains(lines[0], "TCP_MISS/200") || !strings.Contains(lines[0], " CARP/"+c.parentAddr+" ") {
		t.Errorf("edge1's access log %q, want the miss with CARP/<parent>", lines)
	}

	// Concurrent misses from both edges: the origin holds the first fetch until both edges
	// have a connection to the parent, then every request is answered from that one fetch.
	c.gate = make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		p := c.edge1
		if i%2 == 1 {
			p = c.edge2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc := dialRaw(t, p.addr)
			nc.send("GET /gated HTTP/1.1\r\nHost: www.cdn.test\r\nConnection: close\r\n\r\n")
			if resp, body := nc.response("GET"); resp.StatusCode != 200 || body != "object /gated" {
				t.Errorf("gated: %d %q", resp.StatusCode, body)
			}
		}()
	}
	waitFor(t, "the parent's fetch and both edges at the parent", func() bool {
		c.parent.srv.mu.Lock()
		n := len(c.parent.srv.conns)
		c.parent.srv.mu.Unlock()
		return c.originSeen("/gated") == 1 && n >= 2
	})
	close(c.gate)
	wg.Wait()
	if n := c.originSeen("/gated"); n != 1 {
		t.Errorf("8 concurrent requests at two edges reached the origin %d times, want 1", n)
	}

	// Purge at edge1: no tier serves /a afterwards.
	pc := dialRaw(t, c.edge1.addr)
	pc.send("PURGE /a HTTP/1.1\r\nHost: www.cdn.test\r\nConnection: close\r\n\r\n")
	presp, pbody := pc.response("PURGE")
	if presp.StatusCode != 200 || !strings.Contains(pbody, `"forwarded":1`) || strings.Contains(pbody, "failed") {
		t.Errorf("PURGE at edge1: %d %s", presp.StatusCode, pbody)
	}
	for _, tier := range []*testProxy{c.edge1, c.edge2, c.parent} {
		if resp, _ := tierGet(t, tier, "/a", "Cache-Control: only-if-cached\r\n"); resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("%s still serves /a after the purge: %d %q", tier.addr, resp.StatusCode, resp.Header.Values("Cache-Status"))
		}
	}
	if resp, _ := tierGet(t, c.edge2, "/gated", "Cache-Control: only-if-cached\r\n"); resp.StatusCode != 200 {
		t.Errorf("the purge of /a removed /gated from edge2: %d", resp.StatusCode)
	}

	// The parent goes down: the next miss goes to the origin directly and the parent is
	// marked down; after it comes back and passes rise checks, misses use it again.
	shutdown(t, c.parent)
	resp, body = tierGet(t, c.edge1, "/b", "")
	if resp.StatusCode != 200 || body != "object /b" {
		t.Fatalf("with the parent down: %d %q", resp.StatusCode, body)
	}
	if cs := resp.Header.Values("Cache-Status"); len(cs) != 1 || !strings.HasPrefix(cs[0], "edge1; fwd=uri-miss") {
		t.Errorf("direct Cache-Status %q, want edge1's alone", cs)
	}
	if via := c.origin.last().Header.Values("Via"); strings.Join(via, ", ") != "1.1 edge1" {
		t.Errorf("the origin saw Via %q, want edge1 alone (direct)", via)
	}
	if c.edge1.srv.tier.healthy()[c.parentAddr] {
		t.Error("edge1 still counts the stopped parent healthy")
	}
	if lines := c.edge1.log.lines(); !strings.Contains(lines[len(lines)-1], " HIER_DIRECT/"+c.origin.hostport()+" ") {
		t.Errorf("edge1's last log line %q, want HIER_DIRECT/<origin>", lines[len(lines)-1])
	}
	waitFor(t, "edge2's check to mark the parent down", func() bool { return !c.edge2.srv.tier.healthy()[c.parentAddr] })
	if up := parentUpMetric(t, c.edge2); up != 0 {
		t.Errorf("outpost_proxy_parent_up = %v with the parent down, want 0", up)
	}
	c.parent = startProxyConfig(t, c.parentCfg, Options{Cache: newRealCache(t)})
	waitFor(t, "the parent back after rise checks", func() bool {
		return c.edge1.srv.tier.healthy()[c.parentAddr] && c.edge2.srv.tier.healthy()[c.parentAddr]
	})
	if up := parentUpMetric(t, c.edge2); up != 1 {
		t.Errorf("outpost_proxy_parent_up = %v after the rise checks, want 1", up)
	}
	resp, _ = tierGet(t, c.edge2, "/c", "")
	if cs := resp.Header.Values("Cache-Status"); len(cs) != 2 || !strings.HasPrefix(cs[0], "parent; ") {
		t.Errorf("after the parent's return Cache-Status %q, want the parent's member first", cs)
	}
	for _, p := range []string{"/b", "/c"} {
		if n := c.originSeen(p); n != 1 {
			t.Errorf("the origin saw %s %d times, want 1", p, n)
		}
	}
}

// shutdown stops a test proxy now (its cleanup's second Shutdown is a no-op).
func shutdown(t *testing.T, p *testProxy) {
	t.Helper()
	ctx, cancel := contextWithTimeout()
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestParentLoop: an edge named as its own parent gets its own request back with its Via in
// it and refuses it (508) instead of looping.
func TestParentLoop(t *testing.T) {
	o := echoOrigin(t)
	addr := freeAddr(t)
	cfg := loadProxyConfig(t, fmt.Sprintf("via_pseudonym = \"edge9\"\n%s\n[proxy.parents]\nservers = [%q]\n", reverseRoute(o), addr))
	cfg.Listen = []string{addr}
	p := startProxyConfig(t, cfg, Options{Cache: newRealCache(t)})
	resp, _ := tierGet(t, p, "/x", "")
	if resp.StatusCode != http.StatusLoopDetected {
		t.Errorf("got %d, want 508", resp.StatusCode)
	}
	if o.seen() != 0 {
		t.Errorf("the origin saw %d requests", o.seen())
	}
}

func contextWithTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// parentUpMetric reads outpost_proxy_parent_up from a tier's registry (-1: absent).
func parentUpMetric(t *testing.T, p *testProxy) float64 {
	t.Helper()
	mfs, err := p.env.Metrics.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outpost_proxy_parent_up" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestParentForward: a forward-proxy request goes to the parent in absolute form (the parent
// is a forward proxy for its edges) and reaches the origin through both.
func TestParentForward(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "fwd %s", r.URL.Path)
	})
	parent := startProxy(t, "via_pseudonym = \"parent\"\n", Options{Cache: newRealCache(t)})
	edge := startProxy(t, fmt.Sprintf("via_pseudonym = \"edge1\"\n[proxy.parents]\nservers = [%q]\n", parent.addr), Options{Cache: newRealCache(t)})
	c := dialRaw(t, edge.addr)
	c.send("GET " + o.URL + "/f HTTP/1.1\r\nHost: " + o.hostport() + "\r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "fwd /f" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if via := o.last().Header.Values("Via"); strings.Join(via, ", ") != "1.1 edge1, 1.1 parent" {
		t.Errorf("the origin saw Via %q", via)
	}
	if cs := resp.Header.Values("Cache-Status"); len(cs) != 2 || !strings.HasPrefix(cs[0], "parent; ") || !strings.HasPrefix(cs[1], "edge1; ") {
		t.Errorf("Cache-Status %q", cs)
	}
	if lines := parent.log.lines(); len(lines) != 1 || !strings.Contains(lines[0], " "+o.URL+"/f ") {
		t.Errorf("the parent logged %q, want the absolute URL", lines)
	}
}

// TestParentTierCurl drives the two tiers with curl: a miss through edge1 shows both tiers'
// Cache-Status members and Via entries, a PURGE at edge2 (curl -X PURGE) leaves the object in
// no tier.
func TestParentTierCurl(t *testing.T) {
	curl := clienttest.Need(t, "curl", "curl")
	c := startCDN(t)
	url := func(p *testProxy, path string) string { return "http://" + p.addr + path }
	head := string(clienttest.Run(t, 10*time.Second, curl, "-s", "-D", "-", "-o", "/dev/null", "-H", "Host: www.cdn.test", url(c.edge1, "/k")))
	for _, want := range []string{"Cache-Status: parent; fwd=uri-miss", "Cache-Status: edge1; fwd=uri-miss", "Via: 1.1 parent", "Via: 1.1 edge1"} {
		if !strings.Contains(head, want) {
			t.Errorf("curl's response head lacks %q:\n%s", want, head)
		}
	}
	clienttest.Run(t, 10*time.Second, curl, "-s", "-o", "/dev/null", "-H", "Host: www.cdn.test", url(c.edge2, "/k"))
	out := string(clienttest.Run(t, 10*time.Second, curl, "-s", "-X", "PURGE", "-H", "Host: www.cdn.test", url(c.edge2, "/k")))
	if !strings.Contains(out, `"forwarded":1`) {
		t.Errorf("PURGE answer %q", out)
	}
	for _, p := range []*testProxy{c.edge1, c.edge2, c.parent} {
		code := string(clienttest.Run(t, 10*time.Second, curl, "-s", "-o", "/dev/null", "-w", "%{http_code}",
			"-H", "Host: www.cdn.test", "-H", "Cache-Control: only-if-cached", url(p, "/k")))
		if code != "504" {
			t.Errorf("%s answers %s for the purged object, want 504", p.addr, code)
		}
	}
	if n := c.originSeen("/k"); n != 1 {
		t.Errorf("the origin saw /k %d times, want 1", n)
	}
}
