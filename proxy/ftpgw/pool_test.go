package ftpgw

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingRelay forwards TCP connections to an FTP server and counts the USER commands that
// clients send (one per login). Data connections bypass it: the gateway dials the relay's host
// (127.0.0.1) at the port the origin's passive reply names.
type countingRelay struct {
	ln    net.Listener
	users atomic.Int32
	mu    sync.Mutex
	conns []net.Conn
}

// startRelay relays 127.0.0.1:<free port> to target until the test ends.
func startRelay(t *testing.T, target string) *countingRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &countingRelay{ln: ln}
	t.Cleanup(func() { ln.Close(); r.dropAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.relay(c, target)
		}
	}()
	return r
}

// relay copies one control connection both ways, counting USER lines from the client.
func (r *countingRelay) relay(c net.Conn, target string) {
	s, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	r.mu.Lock()
	r.conns = append(r.conns, c, s)
	r.mu.Unlock()
	go func() { io.Copy(c, s); c.Close() }()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if strings.HasPrefix(strings.ToUpper(line), "USER ") {
			r.users.Add(1)
		}
		if _, werr := io.WriteString(s, line); werr != nil || err != nil {
			s.Close()
			return
		}
	}
}

// dropAll closes every relayed connection, as a server does with idle clients.
func (r *countingRelay) dropAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// TestPoolReuse: fetches from one server with one login share a logged-in control connection
// (counted as USER commands reaching the server); the session is reset between uses and
// health-checked before reuse; other logins never borrow it.
func TestPoolReuse(t *testing.T) {
	origin, _ := startOrigin(t, true)
	type step struct {
		url    string // relative to ftp://<relay>
		status int
		body   string // a substring the body must contain
		drop   bool   // the server drops idle connections before this step
		exact  bool   // read exactly Content-Length bytes, then close without reading EOF
		short  bool   // read only 100 bytes, then close
	}
	readme := step{url: "/pub/README.txt", status: 200, body: "anonymous"}
	for _, tc := range []struct {
		name      string
		maxIdle   int
		steps     []step
		wantUsers int32
	}{
		{"two fetches, one login", 8, []step{readme, readme}, 1},
		{"listing then file: back in the login directory", 8, []step{
			{url: "/pub/docs/", status: 200, body: "rfc959-summary.txt"}, readme,
			{url: "/pub/docs/", status: 200, body: "rfc959-summary.txt"}}, 1},
		{"directory redirect, then file", 8, []step{{url: "/pub", status: 301}, readme}, 1},
		{"ASCII then binary type", 8, []step{{url: "/pub/README.txt;type=a", status: 200, body: "anonymous"},
			{url: "/pub/sample.bin", status: 200}, readme}, 1},
		{"other login is another session", 8, []step{readme, {url: "//alice:wonderland@/welcome.txt", status: 200}}, 2},
		{"wrong password never borrows", 8, []step{{url: "//alice:wonderland@/welcome.txt", status: 200},
			{url: "//alice:wrong@/welcome.txt", status: 401}}, 2},
		{"server closed the idle connection", 8, []step{readme, {url: readme.url, status: 200, body: "anonymous", drop: true}}, 2},
		{"body closed at Content-Length without EOF", 8, []step{{url: readme.url, status: 200, exact: true}, readme}, 1},
		{"body closed early is not reused", 8, []step{{url: "/pub/sample.bin", status: 200, short: true}, readme}, 2},
		{"pooling off", 0, []step{readme, readme}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := startRelay(t, origin)
			cfg := gatewayConfig()
			cfg.MaxIdleConns = tc.maxIdle
			g, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			host := relay.ln.Addr().String()
			for i, s := range tc.steps {
				if s.drop {
					relay.dropAll()
				}
				u := "ftp://" + host + s.url
				if strings.HasPrefix(s.url, "//") { // credentials: //user:pass@/path
					creds, p, _ := strings.Cut(strings.TrimPrefix(s.url, "//"), "@")
					u = "ftp://" + creds + "@" + host + p
				}
				if s.exact || s.short {
					fetchPartial(t, g, u, s.short)
					continue
				}
				resp, body := fetch(t, g, http.MethodGet, u, nil)
				if resp.StatusCode != s.status || !strings.Contains(body, s.body) {
					t.Fatalf("step %d %s: %d, body %.80q; want %d with %q", i, s.url, resp.StatusCode, body, s.status, s.body)
				}
			}
			if got := relay.users.Load(); got != tc.wantUsers {
				t.Fatalf("%d logins (USER commands), want %d", got, tc.wantUsers)
			}
		})
	}
}

// fetchPartial reads a file response up to its Content-Length (or only 100 bytes when short)
// and closes the body without reading to EOF.
func fetchPartial(t *testing.T, g *Gateway, u string, short bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := g.Fetch(req)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength <= 100 {
		t.Fatalf("Fetch(%s): %v, %v", u, err, resp)
	}
	n := resp.ContentLength
	if short {
		n = 100
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestPoolIdleTimeout: a pooled connection is closed after idle_conn_timeout, and the next
// fetch logs in again.
func TestPoolIdleTimeout(t *testing.T) {
	origin, _ := startOrigin(t, true)
	relay := startRelay(t, origin)
	cfg := gatewayConfig()
	cfg.IdleConnTimeout = 20 * time.Millisecond
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	u := "ftp://" + relay.ln.Addr().String() + "/pub/README.txt"
	if resp, _ := fetch(t, g, http.MethodGet, u, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(10 * time.Second); g.pool.idleCount() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("pooled connection not closed after idle_conn_timeout")
		}
	}
	if resp, _ := fetch(t, g, http.MethodGet, u, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := relay.users.Load(); got != 2 {
		t.Fatalf("%d logins, want 2", got)
	}
}
