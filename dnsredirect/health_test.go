package dnsredirect

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// edgeServer is an HTTP server standing in for an edge; it can be stopped and started again on
// the same address.
type edgeServer struct {
	t    *testing.T
	addr string
	srv  *http.Server
}

func newEdgeServer(t *testing.T) *edgeServer {
	e := &edgeServer{t: t}
	e.start("127.0.0.1:0")
	t.Cleanup(e.stop)
	return e
}

func (e *edgeServer) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		e.t.Fatalf("edge listen %s: %v", addr, err)
	}
	e.addr = ln.Addr().String()
	e.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })}
	go e.srv.Serve(ln)
}

func (e *edgeServer) stop() {
	if e.srv != nil {
		e.srv.Close()
		e.srv = nil
	}
}

func (e *edgeServer) restart() { e.start(e.addr) }

// healthConfig has three HTTP-checked edges and three pools with different fallbacks.
func healthConfig(urls [3]string) string {
	return fmt.Sprintf(`
[dns]
listen = "127.0.0.1:0"
udp_sockets = 1
watch_interval = "0s"
[dns.rrl]
enabled = false
[dns.health]
interval = "20ms"
timeout = "500ms"
rise = 2
fall = 3
start = "up"
[[dns.zones]]
name = "cdn.test"
records = ["@ IN SOA ns1.cdn.test. h.cdn.test. 1 7200 3600 1209600 60", "@ IN NS ns1.cdn.test.", "ns1 IN A 127.0.0.1"]
[[dns.edges]]
name = "edge1"
addrs = ["127.0.0.11"]
check = "http://%s/health"
[[dns.edges]]
name = "edge2"
addrs = ["127.0.0.12"]
check = "http://%s/health"
[[dns.edges]]
name = "edge3"
addrs = ["127.0.0.13"]
check = "tcp://%s"
[[dns.pools]]
name = "all"
edges = ["edge1", "edge2", "edge3"]
fallback = "all"
[[dns.pools]]
name = "static"
edges = ["edge1", "edge2", "edge3"]
fallback = "static"
fallback_addrs = ["192.0.2.200"]
[[dns.pools]]
name = "empty"
edges = ["edge1", "edge2", "edge3"]
fallback = "empty"
[[dns.dynamic]]
name = "www.cdn.test"
pool = "all"
[[dns.dynamic]]
name = "static.cdn.test"
pool = "static"
[[dns.dynamic]]
name = "empty.cdn.test"
pool = "empty"
[[dns.nets]]
prefixes = ["192.0.2.0/24"]
edges = ["edge1", "edge2", "edge3"]
`, urls[0], urls[1], urls[2])
}

// answerOf asks name from the explicit-map region and returns the sorted addresses.
func (ts *testServer) answerOf(t *testing.T, name string) []string {
	r := ts.exchange(t, "udp", newQuery(name, dns.TypeA, true, "192.0.2.0/24"))
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("%s: rcode %s", name, dns.RcodeToString[r.Rcode])
	}
	a := addrs(r.Answer)
	sort.Strings(a)
	return a
}

// waitAnswer polls until name's answer is want (an external effect: the health checker).
func (ts *testServer) waitAnswer(t *testing.T, name string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := ts.answerOf(t, name)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (ts *testServer) checks(name string) int {
	for _, e := range ts.Edges() {
		if e.Name == name {
			return e.Checks
		}
	}
	return -1
}

// TestHealth is acceptance point 3: an edge whose HTTP server stops leaves the answers within
// the fall count and comes back when it starts; with every edge down each pool answers its
// fallback; an operator can drain an edge.
func TestHealth(t *testing.T) {
	e1, e2, e3 := newEdgeServer(t), newEdgeServer(t), newEdgeServer(t)
	ts := startServer(t, healthConfig([3]string{e1.addr, e2.addr, e3.addr}))
	ts.waitAnswer(t, "www.cdn.test.", "127.0.0.11")

	t.Run("stopped edge leaves within the fall count", func(t *testing.T) {
		for ts.checks("edge1") < 2 { // the first check has happened; now stop the server
			time.Sleep(5 * time.Millisecond)
		}
		e1.stop()
		before := ts.checks("edge1")
		ts.waitAnswer(t, "www.cdn.test.", "127.0.0.12")
		// fall = 3 failures; one more check may have been in flight when the server stopped.
		if n := ts.checks("edge1") - before; n > 3+1 {
			t.Errorf("edge left after %d checks, want at most fall(3)+1", n)
		}
	})
	t.Run("restarted edge returns", func(t *testing.T) {
		e1.restart()
		ts.waitAnswer(t, "www.cdn.test.", "127.0.0.11")
	})
	t.Run("operator drain and auto", func(t *testing.T) {
		post := func(q string) int {
			rec := httptest.NewRecorder()
			ts.env.Admin.ServeHTTP(rec, httptest.NewRequest("POST", "/dns/edges/edge1?"+q, nil))
			return rec.Code
		}
		if c := post("state=down"); c != 200 {
			t.Fatalf("force down: %d", c)
		}
		if got := ts.answerOf(t, "www.cdn.test."); !slices.Equal(got, []string{"127.0.0.12"}) {
			t.Errorf("drained edge still answered: %v", got)
		}
		if c := post("state=sideways"); c != 400 {
			t.Errorf("bad state: %d, want 400", c)
		}
		if c := post("state=auto"); c != 200 {
			t.Fatalf("force auto: %d", c)
		}
		if got := ts.answerOf(t, "www.cdn.test."); !slices.Equal(got, []string{"127.0.0.11"}) {
			t.Errorf("undrained edge not back: %v", got)
		}
		rec := httptest.NewRecorder()
		ts.env.Admin.ServeHTTP(rec, httptest.NewRequest("GET", "/dns/edges", nil))
		if !strings.Contains(rec.Body.String(), `"name": "edge3"`) {
			t.Errorf("GET /dns/edges: %s", rec.Body)
		}
	})
	t.Run("all down answers the fallback", func(t *testing.T) {
		e1.stop()
		e2.stop()
		e3.stop()
		ts.waitAnswer(t, "www.cdn.test.", "127.0.0.11", "127.0.0.12", "127.0.0.13")
		ts.waitAnswer(t, "static.cdn.test.", "192.0.2.200")
		r := ts.exchange(t, "udp", newQuery("empty.cdn.test.", dns.TypeA, false, ""))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Errorf("empty fallback: rcode %s answer %v", dns.RcodeToString[r.Rcode], r.Answer)
		}
	})
}
