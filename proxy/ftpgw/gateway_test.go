package ftpgw

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	ftpserver "github.com/outpost-proxy/outpost/origin/ftp"
)

// startOrigin runs the FTP origin with the demo users and returns its address and root.
func startOrigin(t *testing.T, anonymous bool) (addr, root string) {
	t.Helper()
	cfg := config.Default().FTP
	cfg.Listen = "127.0.0.1:0"
	cfg.Anonymous = anonymous
	cfg.LoginFailureDelay = time.Millisecond
	cfg.MaxLoginFailures = 1000
	h, _ := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	cfg.Users = []config.FTPUser{{Name: "alice", PasswordHash: string(h)}}
	data := t.TempDir()
	s, err := ftpserver.New(cfg, component.Test(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return strings.TrimPrefix(s.Addrs()[0], "tcp "), filepath.Join(data, "ftp")
}

// gatewayConfig is the default [proxy.ftp] with short timeouts.
func gatewayConfig() config.FTPGatewayConfig {
	cfg := config.Default().Proxy.FTP
	cfg.ConnectTimeout = 2 * time.Second
	cfg.Timeout = 2 * time.Second
	return cfg
}

// fetch runs one request through a gateway and returns the response and its body.
func fetch(t *testing.T, g *Gateway, method, rawURL string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := g.Fetch(req)
	if err != nil {
		t.Fatalf("Fetch(%s): %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: body: %v", rawURL, err)
	}
	return resp, string(body)
}

// TestFetch covers files, listings, redirects, credentials and error mapping against the
// Outpost FTP origin.
func TestFetch(t *testing.T) {
	addr, root := startOrigin(t, true)
	g, err := New(gatewayConfig(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	base := "ftp://" + addr
	readme, _ := os.ReadFile(filepath.Join(root, "anonymous", "pub", "README.txt"))
	sample, _ := os.ReadFile(filepath.Join(root, "anonymous", "pub", "sample.bin"))
	basic := func(user, pass string) http.Header {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header
	}
	cases := []struct {
		name, method, url string
		hdr               http.Header
		status            int
		body              string
		headers           map[string]string
		contains          []string
	}{
		{name: "text file", method: "GET", url: base + "/pub/README.txt", status: 200, body: string(readme),
			headers: map[string]string{"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "public, max-age=3600",
				"Content-Length": itoa(len(readme))}},
		{name: "binary file", method: "GET", url: base + "/pub/sample.bin", status: 200, body: string(sample),
			headers: map[string]string{"Content-Type": "application/octet-stream"}},
		{name: "HEAD", method: "HEAD", url: base + "/pub/sample.bin", status: 200, body: "",
			headers: map[string]string{"Content-Length": itoa(len(sample))}},
		{name: "not modified", method: "GET", url: base + "/pub/README.txt", status: 304, body: "",
			hdr: http.Header{"If-Modified-Since": {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}}},
		{name: "modified since", method: "GET", url: base + "/pub/README.txt", status: 200, body: string(readme),
			hdr: http.Header{"If-Modified-Since": {"Mon, 01 Jan 2001 00:00:00 GMT"}}},
		{name: "directory", method: "GET", url: base + "/pub/", status: 200,
			headers:  map[string]string{"Content-Type": "text/html; charset=utf-8", "Cache-Control": "public, max-age=300"},
			contains: []string{`href="docs/"`, `href="README.txt"`, `href="sample.bin"`, `href="../"`, "Index of ftp://" + addr + "/pub/"}},
		{name: "root", method: "GET", url: base + "/", status: 200, contains: []string{`href="pub/"`}},
		{name: "root without slash", method: "GET", url: base, status: 200, contains: []string{`href="pub/"`}},
		{name: "type d", method: "GET", url: base + "/pub/docs;type=d", status: 200, contains: []string{"rfc959-summary.txt"}},
		{name: "type a", method: "GET", url: base + "/pub/docs/rfc959-summary.txt;type=a", status: 200,
			contains: []string{"RFC 959 defines"}},
		{name: "directory redirect", method: "GET", url: base + "/pub", status: 301,
			headers: map[string]string{"Location": base + "/pub/"}},
		{name: "missing file", method: "GET", url: base + "/pub/nope.txt", status: 404},
		{name: "missing dir", method: "GET", url: base + "/nope/", status: 404},
		{name: "url credentials", method: "GET", url: "ftp://alice:wonderland@" + addr + "/welcome.txt", status: 200,
			contains: []string{"Welcome, alice"}, headers: map[string]string{"Cache-Control": "private, max-age=3600"}},
		{name: "basic credentials", method: "GET", url: base + "/welcome.txt", hdr: basic("alice", "wonderland"), status: 200,
			contains: []string{"Welcome, alice"}},
		{name: "wrong password", method: "GET", url: "ftp://alice:nope@" + addr + "/welcome.txt", status: 401,
			headers: map[string]string{"WWW-Authenticate": `Basic realm="FTP ` + addr + `"`}},
		{name: "POST", method: "POST", url: base + "/pub/README.txt", status: 405, headers: map[string]string{"Allow": "GET, HEAD"}},
		{name: "bad typecode", method: "GET", url: base + "/pub/x;type=q", status: 400},
		{name: "no host", method: "GET", url: "ftp:///pub/", status: 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := fetch(t, g, tc.method, tc.url, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if tc.body != "" || tc.method == "HEAD" {
				if body != tc.body {
					t.Errorf("body: %d bytes, want %d", len(body), len(tc.body))
				}
			}
			for k, v := range tc.headers {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q:\n%s", s, body)
				}
			}
			if tc.status == 200 && tc.method == "GET" && resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
				t.Errorf("ContentLength %d, body %d", resp.ContentLength, len(body))
			}
		})
	}
}

// itoa formats an int.
func itoa(n int) string { return strconv.Itoa(n) }

// TestFailures checks the mapping of unreachable, silent and refusing servers.
func TestFailures(t *testing.T) {
	cfg := gatewayConfig()
	cfg.Timeout = 300 * time.Millisecond
	cfg.ConnectTimeout = 300 * time.Millisecond
	g, _ := New(cfg, quiet)

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	silent, _ := net.Listen("tcp", "127.0.0.1:0")
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	noAnon, _ := startOrigin(t, false)
	withAnon, _ := startOrigin(t, true)
	gDefault, _ := New(gatewayConfig(), quiet) // a failed login takes a bcrypt comparison
	small := gatewayConfig()
	small.MaxSize = 100
	gSmall, _ := New(small, quiet)
	disabled := gatewayConfig()
	disabled.Enabled = false
	gOff, _ := New(disabled, quiet)

	cases := []struct {
		name   string
		g      *Gateway
		url    string
		status int
	}{
		{"connection refused", g, "ftp://" + closedAddr + "/x", 502},
		{"silent server", g, "ftp://" + silent.Addr().String() + "/x", 504},
		{"anonymous refused", gDefault, "ftp://" + noAnon + "/pub/README.txt", 401},
		{"too large", gSmall, "ftp://" + withAnon + "/pub/sample.bin", 502},
		{"disabled", gOff, "ftp://" + withAnon + "/pub/README.txt", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := fetch(t, tc.g, "GET", tc.url, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("error response Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
		})
	}
	if _, err := g.Fetch(&http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "x"}}); err == nil {
		t.Error("http:// URL accepted")
	}
}

// FuzzSetPath checks the URL path parser: no panic, no control characters reach the server.
func FuzzSetPath(f *testing.F) {
	for _, s := range []string{"/", "", "/pub/", "/pub/a;type=d", "/a;type=a", "/a;type=", "//etc/passwd", "/a\r\nDELE x", ";type=i"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		var tg target
		if err := tg.setPath(p); err != nil {
			return
		}
		if strings.ContainsAny(tg.path, "\r\n\x00") {
			t.Fatalf("setPath(%q) kept control characters: %q", p, tg.path)
		}
	})
}

// FuzzRenderListing checks that entry names from the server are always escaped.
func FuzzRenderListing(f *testing.F) {
	for _, s := range []string{"a", "<script>alert(1)</script>", `x" onmouseover="y`, "a:b", "a&b", "..", "名前"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, name, linkTarget string) {
		tg := &target{hostport: "127.0.0.1:21", urlPath: "/d/", path: "d", dir: true}
		out := renderListing(tg, []*ftp.Entry{
			{Name: name, Type: ftp.EntryTypeFile}, {Name: name, Type: ftp.EntryTypeLink, Target: linkTarget},
		}, 10)
		for _, bad := range []string{"<script", `" on`, "javascript:"} {
			if strings.Contains(strings.ToLower(out), bad) {
				t.Fatalf("unescaped %q in listing for %q", bad, name)
			}
		}
	})
}

// quiet discards the gateway's logs in tests.
var quiet = slog.New(slog.DiscardHandler)

// TestCancel checks that cancelling the request's context ends the transfer at once.
func TestCancel(t *testing.T) {
	addr, _ := startOrigin(t, true)
	g, _ := New(gatewayConfig(), quiet)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "ftp://"+addr+"/pub/sample.bin", nil)
	resp, err := g.Fetch(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("Fetch: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel()
	// The context's AfterFunc runs on its own goroutine: wait until it has closed the session.
	conns := resp.Body.(*fileBody).s.conns
	deadline := time.Now().Add(5 * time.Second)
	for {
		conns.mu.Lock()
		closed := conns.closed
		conns.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cancellation never closed the FTP connections")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Error("body read to a clean end after the request was cancelled")
	}
}
