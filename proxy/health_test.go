package proxy

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// checkedOrigin is an origin with a health endpoint that can be made to fail; it counts
// traffic (requests but the checks) and checks apart.
type checkedOrigin struct {
	*httptest.Server
	name    string
	sick    atomic.Bool
	traffic atomic.Int64
	checks  atomic.Int64
}

func startCheckedOrigin(t *testing.T, name string) *checkedOrigin {
	o := &checkedOrigin{name: name}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hc" {
			o.checks.Add(1)
			if o.sick.Load() {
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
			return
		}
		o.traffic.Add(1)
		w.Header().Set("Cache-Control", r.Header.Get("X-Test-Cache-Control"))
		io.WriteString(w, o.name)
	}))
	t.Cleanup(o.Close)
	return o
}

// healthRoute is a route to the origins with fast checks.
func healthRoute(interval time.Duration, fall, rise int, origins ...*checkedOrigin) string {
	var urls []string
	for _, o := range origins {
		urls = append(urls, o.URL)
	}
	return routeText("www.test", urls...) + fmt.Sprintf("[proxy.routes.health]\npath = \"/hc\"\ninterval = %q\ntimeout = %q\nfall = %d\nrise = %d\nexpect_status = [200]\n",
		interval.String(), (interval/2).String(), fall, rise)
}

// originStates returns /proxy/origins as url → state.
func originStates(t *testing.T, p *testProxy) map[string]originStatus {
	t.Helper()
	rec := httptest.NewRecorder()
	p.srv.status.serveOrigins(rec, httptest.NewRequest("GET", "/proxy/origins", nil))
	var list []originStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatalf("/proxy/origins: %v\n%s", err, rec.Body)
	}
	out := map[string]originStatus{}
	for _, o := range list {
		out[o.URL] = o
	}
	return out
}

// waitUntil polls cond every millisecond until it holds or d passes; it returns how long it
// took, or fails the test.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// TestOriginHealthChecks is acceptance point 4: an origin whose health check fails gets no
// traffic within fall × interval (counted at the origin) and is back after rise passed checks;
// /proxy/origins shows it.
func TestOriginHealthChecks(t *testing.T) {
	const interval, fall, rise = 30 * time.Millisecond, 3, 2
	a, b := startCheckedOrigin(t, "A"), startCheckedOrigin(t, "B")
	p := startProxy(t, "[proxy.access_log]\ndestination = \"off\"\n"+healthRoute(interval, fall, rise, a, b), Options{})
	cl := &http.Client{Timeout: 10 * time.Second}
	send := func(n int) {
		t.Helper()
		for i := range n {
			if code, body, err := getHost(cl, p.addr, "www.test", "/"); err != nil || code != 200 {
				t.Fatalf("request %d: %d %q %v", i, code, body, err)
			}
		}
	}
	send(20)
	if a.traffic.Load() == 0 || b.traffic.Load() == 0 {
		t.Fatalf("traffic before: A %d, B %d; want both", a.traffic.Load(), b.traffic.Load())
	}

	// A fails its checks: down within fall × interval (plus one check's timeout and the
	// scheduler's slack), then no traffic at all.
	a.sick.Store(true)
	took := waitUntil(t, "A marked down", fall*interval+interval+time.Second, func() bool {
		st := originStates(t, p)[a.URL]
		return !st.Up && st.Health != nil && st.Health.State == "down"
	})
	t.Logf("A down after %s (fall × interval = %s)", took, fall*interval)
	if took > fall*interval+interval/2+500*time.Millisecond { // the check timeout, and slack for a loaded machine
		t.Errorf("A went down after %s, want within fall × interval = %s (+ one interval of phase)", took, fall*interval)
	}
	before := a.traffic.Load()
	send(40)
	if got := a.traffic.Load() - before; got != 0 {
		t.Errorf("A got %d requests while down", got)
	}

	// A passes again: back after rise checks.
	a.sick.Store(false)
	checksAtHeal := a.checks.Load()
	waitUntil(t, "A back up", time.Duration(rise+2)*interval+2*time.Second, func() bool { return originStates(t, p)[a.URL].Up })
	if n := a.checks.Load() - checksAtHeal; n < rise {
		t.Errorf("A came back after %d checks, want at least rise = %d", n, rise)
	}
	before = a.traffic.Load()
	send(20)
	if a.traffic.Load() == before {
		t.Error("A got no traffic after it came back")
	}

	// The metrics say the same.
	rec := httptest.NewRecorder()
	promText(t, p, rec)
	for _, want := range []string{`outpost_proxy_origin_up{origin="` + a.URL + `",route="route www.test"} 1`,
		`outpost_proxy_origin_checks_total{origin="` + a.URL + `",result="fail",route="route www.test"}`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestAllOriginsDown: when every origin of a route fails its check, a request gets 503 with
// Retry-After (no cache), and with the cache a stored object that allows it is served stale
// while one that does not gets 503 too.
func TestAllOriginsDown(t *testing.T) {
	const interval = 20 * time.Millisecond
	for _, withCache := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", withCache), func(t *testing.T) {
			a := startCheckedOrigin(t, "A")
			opts := Options{}
			if withCache {
				opts.Cache = newRealCache(t)
			}
			p := startProxy(t, "[proxy.access_log]\ndestination = \"off\"\n"+healthRoute(interval, 1, 1, a), opts)
			cl := &http.Client{Timeout: 10 * time.Second}
			stored := func(path, cc string) {
				req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
				req.Host = "www.test"
				req.Header.Set("X-Test-Cache-Control", cc)
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			stored("/stale-ok", "max-age=0")
			stored("/must-revalidate", "max-age=0, must-revalidate")
			a.sick.Store(true)
			waitUntil(t, "A down", 5*time.Second, func() bool { return !originStates(t, p)[a.URL].Up })
			before := a.traffic.Load()
			for _, c := range []struct {
				path   string
				status int
			}{{"/never-stored", 503}, {"/must-revalidate", 503}, {"/stale-ok", map[bool]int{false: 503, true: 200}[withCache]}} {
				req, _ := http.NewRequest("GET", "http://"+p.addr+c.path, nil)
				req.Host = "www.test"
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Errorf("%s: %d %q, want %d", c.path, resp.StatusCode, body, c.status)
				}
				if c.status == 503 && resp.Header.Get("Retry-After") != "1" {
					t.Errorf("%s: Retry-After %q, want 1 (rise × interval rounded up)", c.path, resp.Header.Get("Retry-After"))
				}
				if c.status == 200 && string(body) != "A" {
					t.Errorf("%s: stale body %q", c.path, body)
				}
			}
			if n := a.traffic.Load() - before; n != 0 {
				t.Errorf("the origin got %d requests while down", n)
			}
		})
	}
}

// promText writes the proxy's metrics in the text format.
func promText(t *testing.T, p *testProxy, w http.ResponseWriter) {
	t.Helper()
	promhttp.HandlerFor(p.env.Metrics.(prometheus.Gatherer), promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
}

// TestOriginStoppedAndRestarted: an origin process that stops (its port refuses connections)
// is taken out within fall × interval — every request then succeeds on the other origin, none
// is tried on the stopped one (it would be a 502) — and a new process on the same port gets
// traffic again after rise checks.
func TestOriginStoppedAndRestarted(t *testing.T) {
	const interval, fall, rise = 30 * time.Millisecond, 2, 2
	a, b := startCheckedOrigin(t, "A"), startCheckedOrigin(t, "B")
	addr := a.Listener.Addr().String()
	p := startProxy(t, "[proxy.access_log]\ndestination = \"off\"\n"+healthRoute(interval, fall, rise, a, b), Options{})
	cl := &http.Client{Timeout: 10 * time.Second}
	a.Close()
	took := waitUntil(t, "the stopped origin marked down", fall*interval+interval/2+time.Second, func() bool {
		h := originStates(t, p)[a.URL].Health
		return h != nil && h.State == "down"
	})
	t.Logf("down after %s (fall × interval = %s)", took, fall*interval)
	for i := range 40 {
		if code, body, err := getHost(cl, p.addr, "www.test", "/"); err != nil || code != 200 || body != "B" {
			t.Fatalf("request %d with A stopped: %d %q %v; want B's answer", i, code, body, err)
		}
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	again := &checkedOrigin{name: "A2"}
	again.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hc" {
			again.checks.Add(1)
			return
		}
		again.traffic.Add(1)
		io.WriteString(w, "A2")
	}))
	again.Listener = ln
	again.Start()
	t.Cleanup(again.Close)
	waitUntil(t, "the restarted origin back up", time.Duration(rise+2)*interval+2*time.Second, func() bool { return originStates(t, p)[a.URL].Up })
	if n := again.checks.Load(); n < rise {
		t.Errorf("back after %d checks, want at least rise = %d", n, rise)
	}
	for range 20 {
		if _, _, err := getHost(cl, p.addr, "www.test", "/"); err != nil {
			t.Fatal(err)
		}
	}
	if again.traffic.Load() == 0 {
		t.Error("the restarted origin got no traffic")
	}
}

// TestHealthCheckHTTPS: an https:// origin is checked over TLS with SNI and the upstream roots:
// a verified origin stays up, one whose certificate is not trusted goes down naming TLS.
func TestHealthCheckHTTPS(t *testing.T) {
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	o.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted case's refused handshakes
	o.StartTLS()
	t.Cleanup(o.Close)
	_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
	roots := x509.NewCertPool()
	roots.AddCert(o.Certificate())
	url := "https://example.com:" + port
	route := fmt.Sprintf("resolve = [\"example.com=127.0.0.1\"]\n[proxy.access_log]\ndestination = \"off\"\n%s[proxy.routes.health]\npath = \"/hc\"\ninterval = \"500ms\"\nfall = 1\nrise = 1\n", // a TLS handshake under -race takes tens of ms
		routeText("www.test", url))
	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
		state string
	}{{"verified", roots, "up"}, {"untrusted", nil, "down"}} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, route, Options{UpstreamRoots: tc.roots})
			waitUntil(t, "a check", 5*time.Second, func() bool {
				h := originStates(t, p)[url].Health
				return h != nil && h.Passed+h.Failed >= 1
			})
			h := originStates(t, p)[url].Health
			if h.State != tc.state || (tc.state == "down" && !strings.Contains(h.LastError, "TLS")) {
				t.Errorf("health %+v, want %s", h, tc.state)
			}
		})
	}
}
