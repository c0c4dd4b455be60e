package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// closerCache records that Shutdown closed it.
type closerCache struct {
	*fakeCache
	closed chan struct{}
}

func (c *closerCache) Close() error { close(c.closed); return nil }

// TestShutdown: Shutdown closes idle connections at once, lets an in-flight request finish,
// makes Serve return nil and closes the cache.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "done")
	})
	cc := &closerCache{fakeCache: newFakeCache(), closed: make(chan struct{})}
	cfg := loadProxyConfig(t, reverseRoute(o))
	srv, err := New(cfg, component.Test(t.TempDir()), Options{Cache: cc})
	if err != nil {
		t.Fatal(err)
	}
	srv.alog.setOutput(&syncBuffer{})
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	addr := strings.TrimPrefix(srv.Addrs()[0], "tcp ")

	idle := dialRaw(t, addr)
	idle.send("GET /fast HTTP/1.1\r\nHost: s\r\n\r\n")
	idle.response("GET")
	busy := dialRaw(t, addr)
	busy.send("GET /slow HTTP/1.1\r\nHost: s\r\n\r\n")
	<-started

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	if !idle.closed() {
		t.Fatal("idle connection not closed by Shutdown")
	}
	waitFor(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if resp, body := busy.response("GET"); resp.StatusCode != 200 || body != "done" {
		t.Fatalf("in-flight request: %d %q", resp.StatusCode, body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case <-cc.closed:
	default:
		t.Error("cache not closed")
	}
}

// TestMetrics: requests by method/status/mode, connections, pipeline depth, upstream latency
// and errors, bytes are exported on env.Metrics.
func TestMetrics(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /a HTTP/1.1\r\nHost: s\r\n\r\nGET " + o.URL + "/b HTTP/1.1\r\nHost: x\r\n\r\nGET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n")
	for range 3 {
		c.response("GET")
	}
	reg := p.env.Metrics.(*prometheus.Registry)
	want := map[string]bool{
		`outpost_proxy_requests_total{method="GET",mode="reverse",status="200"}`: false,
		`outpost_proxy_requests_total{method="GET",mode="forward",status="200"}`: false,
		`outpost_proxy_requests_total{method="GET",mode="forward",status="502"}`: false,
		`outpost_proxy_upstream_errors_total{kind="connect_refused"}`:            false,
		`outpost_proxy_client_connections`:                                       false,
		`outpost_proxy_pipeline_depth`:                                           false,
		`outpost_proxy_upstream_duration_seconds`:                                false,
		`outpost_proxy_client_bytes_sent_total`:                                  false,
		`outpost_proxy_client_bytes_received_total`:                              false,
	}
	waitFor(t, "metrics", func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				name := mf.GetName()
				if len(m.GetLabel()) > 0 {
					var parts []string
					for _, l := range m.GetLabel() {
						parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
					}
					name += "{" + strings.Join(parts, ",") + "}"
				}
				if _, ok := want[name]; ok {
					want[name] = true
				}
			}
		}
		for _, ok := range want {
			if !ok {
				return false
			}
		}
		return true
	})
}

// TestRoutes: exact hosts beat suffixes beat "*", longer path prefixes win, ports are ignored
// unless the route names one.
func TestRoutes(t *testing.T) {
	cfg := config.Default().Proxy
	for _, r := range []struct{ host, prefix string }{
		{"*", ""}, {"*.example.org", ""}, {"www.example.org", ""}, {"www.example.org", "/api"},
		{"*.deep.example.org", ""}, {"alt.test:8080", ""},
	} {
		cfg.Routes = append(cfg.Routes, config.ProxyRoute{Host: r.host, PathPrefix: r.prefix, Origins: []string{"http://127.0.0.1:1"}})
	}
	table, err := newRouteTable(cfg, newDialer(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, host, path string
		want             int
	}{
		{"default", "other.test", "/", 0},
		{"suffix", "a.example.org", "/", 1},
		{"exact", "www.example.org", "/x", 2},
		{"exact with port", "WWW.example.org:8080", "/x", 2},
		{"prefix", "www.example.org", "/api/v1", 3},
		{"prefix boundary", "www.example.org", "/apix", 2},
		{"longer suffix", "a.deep.example.org", "/", 4},
		{"bare suffix domain is not a subdomain", "example.org", "/", 0},
		{"route with port", "alt.test:8080", "/", 5},
		{"route with port, other port", "alt.test:9090", "/", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := table.lookup(tc.host, tc.path); got != table.routes[tc.want] {
				t.Errorf("got route %+v, want %d", got, tc.want)
			}
		})
	}
}

// TestOriginPool: round-robin spreads requests over the route's origins, and an origin that
// refuses connections is skipped after its first failure.
func TestOriginPool(t *testing.T) {
	a := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "a") })
	b := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "b") })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	p := startProxy(t, fmt.Sprintf("[[proxy.routes]]\nhost = \"rr.test\"\norigins = [%q, %q]\n[[proxy.routes]]\nhost = \"dead.test\"\norigins = [%q, %q]\nbalance = \"least_conn\"\n",
		a.URL, b.URL, dead, a.URL), Options{})
	c := dialRaw(t, p.addr)
	got := ""
	for range 4 {
		c.send("GET / HTTP/1.1\r\nHost: rr.test\r\n\r\n")
		_, body := c.response("GET")
		got += body
	}
	if strings.Count(got, "a") != 2 || strings.Count(got, "b") != 2 {
		t.Errorf("round robin gave %q", got)
	}
	statuses := ""
	for range 4 {
		c.send("GET / HTTP/1.1\r\nHost: dead.test\r\n\r\n")
		resp, _ := c.response("GET")
		statuses += fmt.Sprint(resp.StatusCode, " ")
	}
	if strings.Count(statuses, "502") > 1 {
		t.Errorf("dead origin not skipped: %s", statuses)
	}
}

// TestPAC: the PAC file names the proxy, the direct patterns and the fallback.
func TestPAC(t *testing.T) {
	p := startProxy(t, "[proxy.pac]\ndirect = [\"*.intranet.test\", \".corp.test\"]\n", Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /proxy.pac HTTP/1.1\r\nHost: " + p.addr + "\r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	for _, want := range []string{`"PROXY ` + p.addr + `; DIRECT"`, `shExpMatch(host, "*.intranet.test")`, `dnsDomainIs(host, ".corp.test")`} {
		if !strings.Contains(body, want) {
			t.Errorf("PAC lacks %s:\n%s", want, body)
		}
	}
}

// TestExampleConfig: the repository's config.example.toml loads and carries the demo proxy.
func TestExampleConfig(t *testing.T) {
	cfg, err := config.Load(config.Source{File: "../config.example.toml", Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.Proxy
	if len(pc.Listen) != 4 || len(pc.Routes) != 1 || pc.Routes[0].Host != "*" || pc.Routes[0].Origins[0] != "http://127.0.0.1:8081" {
		t.Fatalf("demo proxy config: %+v", pc)
	}
	pc.AccessLog.Destination = "off"
	if _, err := New(pc, component.Test(t.TempDir()), Options{}); err != nil {
		t.Fatal(err)
	}
}
