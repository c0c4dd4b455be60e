package proxy

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-proxy/outpost/internal/component"
)

// TestPolicy covers the forward-proxy policy: ACL, Proxy-Authorization, deny lists, CONNECT
// ports, loop detection, TRACE and ftp:// without a gateway.
func TestPolicy(t *testing.T) {
	o := echoOrigin(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("# users\nalice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) + "\r\n"
	wrong := "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("alice:nope")) + "\r\n"
	_, originPort, _ := net.SplitHostPort(o.hostport())
	open := startProxy(t, reverseRoute(o), Options{})
	authed := startProxy(t, fmt.Sprintf("auth_users_file = %q\n", users)+reverseRoute(o), Options{})
	acl := startProxy(t, "allow = [\"10.0.0.0/8\"]\n"+reverseRoute(o), Options{})
	deny := startProxy(t, fmt.Sprintf("deny_hosts = [\".blocked.test\"]\ndeny_ports = [%s]\n", originPort), Options{})
	fwd := "GET " + o.URL + "/x HTTP/1.1\r\nHost: " + o.hostport() + "\r\n"
	cases := []struct {
		name    string
		p       *testProxy
		req     string
		status  int
		header  string // a header the response must carry (name: substring)
		reaches bool   // whether the origin sees the request
	}{
		{"acl denies forward", acl, fwd + "\r\n", 403, "", false},
		{"acl leaves reverse routes alone", acl, "GET /x HTTP/1.1\r\nHost: site\r\n\r\n", 200, "", true},
		{"acl denies CONNECT", acl, "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n", 403, "", false},
		{"auth missing", authed, fwd + "\r\n", 407, "Proxy-Authenticate: Basic realm=", false},
		{"auth wrong", authed, fwd + wrong + "\r\n", 407, "Proxy-Authenticate: Basic", false},
		{"auth good", authed, fwd + good + "\r\n", 200, "", true},
		{"auth good again (cached)", authed, fwd + good + "\r\n", 200, "", true},
		{"auth not for reverse", authed, "GET /x HTTP/1.1\r\nHost: site\r\n\r\n", 200, "", true},
		{"CONNECT port denied", open, "CONNECT 127.0.0.1:" + originPort + " HTTP/1.1\r\nHost: 127.0.0.1:" + originPort + "\r\n\r\n", 403, "", false},
		{"deny host suffix", deny, "GET http://www.blocked.test/ HTTP/1.1\r\nHost: www.blocked.test\r\n\r\n", 403, "", false},
		{"deny host domain", deny, "GET http://blocked.test/ HTTP/1.1\r\nHost: blocked.test\r\n\r\n", 403, "", false},
		{"deny port", deny, fwd + "\r\n", 403, "", false},
		{"via loop", open, fwd + "Via: 1.0 other, 1.1 outpost\r\n\r\n", 508, "", false},
		{"via other proxy passes", open, fwd + "Via: 1.1 squid\r\n\r\n", 200, "", true},
		{"trace off", open, "TRACE " + o.URL + "/ HTTP/1.1\r\nHost: " + o.hostport() + "\r\n\r\n", 405, "Allow: GET", false},
		{"ftp without gateway", open, "GET ftp://127.0.0.1/file HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501, "", false},
		{"userinfo in URL", open, "GET http://user:pw@" + o.hostport() + "/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "", false},
		{"no route", deny, "GET /x HTTP/1.1\r\nHost: site\r\n\r\n", 400, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := o.seen()
			c := dialRaw(t, tc.p.addr)
			c.send(tc.req)
			method, _, _ := strings.Cut(tc.req, " ")
			resp, body := c.response(method)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.header != "" {
				name, want, _ := strings.Cut(tc.header, ": ")
				if got := resp.Header.Get(name); !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", name, got, want)
				}
			}
			if reached := o.seen() > before; reached != tc.reaches {
				t.Errorf("origin reached = %v, want %v", reached, tc.reaches)
			}
		})
	}
	waitFor(t, "the access log to name the user", func() bool { return strings.Contains(authed.log.String(), " alice ") })
}

// TestHeaderHygiene: hop-by-hop fields and those named in Connection are removed both ways;
// Via and X-Forwarded-For are added; Host is kept on reverse routes.
func TestHeaderHygiene(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-End-To-End", "kept")
		fmt.Fprint(w, "ok")
	})
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /h HTTP/1.1\r\nHost: site.test\r\nConnection: X-Req-Hop, keep-alive\r\nX-Req-Hop: 1\r\nKeep-Alive: 300\r\n" +
		"Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eDp5\r\n" +
		"X-Forwarded-For: 192.0.2.1\r\nX-Kept: yes\r\n\r\n")
	resp, _ := c.response("GET")
	seen := o.last()
	for _, h := range []string{"Connection", "X-Req-Hop", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade", "Proxy-Authorization"} {
		if v, ok := seen.Header[h]; ok {
			t.Errorf("origin saw hop-by-hop %s: %q", h, v)
		}
	}
	if seen.Header.Get("X-Kept") != "yes" || seen.Host != "site.test" {
		t.Errorf("end-to-end field or Host lost: %v host %q", seen.Header, seen.Host)
	}
	if got := seen.Header.Get("X-Forwarded-For"); got != "192.0.2.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := seen.Header.Get("Via"); got != "1.1 outpost" {
		t.Errorf("Via = %q", got)
	}
	for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("client saw hop-by-hop %s: %q", h, v)
		}
	}
	if resp.Header.Get("X-End-To-End") != "kept" {
		t.Error("end-to-end response field lost")
	}
}

// TestMaxForwards: OPTIONS and TRACE at Max-Forwards 0 are answered by the proxy; above 0 the
// value is decremented on the way to the origin.
func TestMaxForwards(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, "allow_trace = true\n"+reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("OPTIONS /o HTTP/1.1\r\nHost: site\r\nMax-Forwards: 0\r\n\r\n")
	resp, _ := c.response("OPTIONS")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Allow"), "CONNECT") || o.seen() != 0 {
		t.Fatalf("OPTIONS MF 0: %d Allow %q origin %d", resp.StatusCode, resp.Header.Get("Allow"), o.seen())
	}
	c.send("TRACE /t HTTP/1.1\r\nHost: site\r\nMax-Forwards: 0\r\nCookie: secret\r\nX-Probe: 1\r\n\r\n")
	resp, body := c.response("TRACE")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "message/http" ||
		!strings.HasPrefix(body, "TRACE /t HTTP/1.1\r\n") || !strings.Contains(body, "X-Probe: 1") || strings.Contains(body, "secret") {
		t.Fatalf("TRACE MF 0: %d %q", resp.StatusCode, body)
	}
	c.send("OPTIONS /o HTTP/1.1\r\nHost: site\r\nMax-Forwards: 3\r\n\r\n")
	if resp, _ = c.response("OPTIONS"); resp.StatusCode != 200 || o.seen() != 1 {
		t.Fatalf("OPTIONS MF 3 not forwarded: %d", resp.StatusCode)
	}
	if got := o.last().Header.Get("Max-Forwards"); got != "2" {
		t.Errorf("origin saw Max-Forwards %q, want 2", got)
	}
	c.send("GET /g HTTP/1.1\r\nHost: site\r\nMax-Forwards: 0\r\n\r\n")
	if resp, _ = c.response("GET"); resp.StatusCode != 200 || o.seen() != 2 {
		t.Fatalf("GET with Max-Forwards 0 must be forwarded: %d", resp.StatusCode)
	}
}

// TestMethodsAndInterim: extension methods with bodies are forwarded, HEAD has no body,
// Expect: 100-continue gets 100 first, 103 Early Hints reach HTTP/1.1 clients.
func TestMethodsAndInterim(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hints" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		w.Header().Set("Content-Type", "text/plain")
		body := make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	})
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("PROPFIND /dav HTTP/1.1\r\nHost: s\r\nContent-Length: 4\r\n\r\n<x/>")
	if _, body := c.response("PROPFIND"); body != "PROPFIND /dav <x/>" {
		t.Fatalf("extension method: %q", body)
	}
	c.send("HEAD /h HTTP/1.1\r\nHost: s\r\n\r\n")
	if resp, body := c.response("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	c.send("PUT /e HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	resp, _ := c.response("PUT")
	if resp.StatusCode != 100 {
		t.Fatalf("Expect: got %d before sending the body, want 100", resp.StatusCode)
	}
	c.send("abc")
	if _, body := c.response("PUT"); body != "PUT /e abc" {
		t.Fatalf("after 100: %q", body)
	}
	c.send("GET /hints HTTP/1.1\r\nHost: s\r\n\r\n")
	resp, _ = c.response("GET")
	if resp.StatusCode != 103 || !strings.Contains(resp.Header.Get("Link"), "preload") {
		t.Fatalf("want 103 Early Hints first, got %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "GET /hints " {
		t.Fatalf("final: %d %q", resp.StatusCode, body)
	}
}

// TestUpstreamErrors: refused → 502, DNS failure → 502 with an explanation, timeout → 504,
// with the kind in the access log.
func TestUpstreamErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	hang := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(2 * time.Second) })
	p := startProxy(t, "[proxy.upstream]\nresponse_header_timeout = \"200ms\"\n", Options{})
	cases := []struct {
		name, url string
		status    int
		kind      string
	}{
		{"refused", "http://" + refused + "/", 502, "connect_refused"},
		{"dns", "http://no-such-host.invalid/", 502, "dns"},
		{"timeout", hang.URL + "/", 504, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, p.addr)
			c.send("GET " + tc.url + " HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := c.response("GET")
			if resp.StatusCode != tc.status || body == "" {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			waitFor(t, "log line", func() bool { return strings.Contains(p.log.String(), "error:"+tc.kind) })
		})
	}
}

// TestRouteOptions: rewrite_host sends the origin's host, an origin base path prefixes the
// request path, and forwarded = true adds an RFC 7239 element.
func TestRouteOptions(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, fmt.Sprintf("forwarded = true\nx_forwarded_for = false\n[[proxy.routes]]\nhost = \"api.test\"\norigins = [%q]\nrewrite_host = true\n", o.URL+"/base"), Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /x?y=1 HTTP/1.1\r\nHost: api.test\r\n\r\n")
	if _, body := c.response("GET"); body != "GET /base/x " {
		t.Fatalf("body %q", body)
	}
	seen := o.last()
	if seen.Host != o.hostport() || seen.URL.RawQuery != "y=1" {
		t.Errorf("origin saw Host %q query %q", seen.Host, seen.URL.RawQuery)
	}
	if got := seen.Header.Get("Forwarded"); got != `for=127.0.0.1;proto=http;host="api.test"` {
		t.Errorf("Forwarded = %q", got)
	}
	if got := seen.Header.Get("X-Forwarded-For"); got != "" {
		t.Errorf("X-Forwarded-For = %q with x_forwarded_for off", got)
	}
}

// TestForwardPolicyUnit checks admitForward for client addresses tests cannot connect from:
// campus clients may use the proxy but not reach the proxy host's own loopback services.
func TestForwardPolicyUnit(t *testing.T) {
	srv, err := New(loadProxyConfig(t, "[proxy.access_log]\ndestination = \"off\"\n"), component.Test(t.TempDir()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, client, url string
		status            int
	}{
		{"campus client, remote site", "10.1.2.3", "http://example.org/", 0},
		{"campus client, loopback", "10.1.2.3", "http://127.0.0.1:9090/debug/pprof/", 403},
		{"campus client, localhost", "192.168.1.9", "http://localhost:25/", 403},
		{"campus client, ::1", "fd00::5", "http://[::1]:8081/", 403},
		{"campus client, 0.0.0.0", "172.16.0.1", "http://0.0.0.0:9090/", 403},
		{"loopback client, loopback", "127.0.0.1", "http://127.0.0.1:8081/", 0},
		{"outsider", "203.0.113.7", "http://example.org/", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.client)
			s := &slot{c: &conn{srv: srv, ip: ip, ipStr: ip.String()}}
			s.req = httptest.NewRequest("GET", tc.url, nil)
			s.mode, s.lv = modeForward, srv.live.Load()
			status := 0
			if perr := srv.admitForward(s); perr != nil {
				status = perr.status
			}
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
		})
	}
}
