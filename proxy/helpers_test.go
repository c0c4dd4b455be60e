package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// syncBuffer is a goroutine-safe buffer for the access log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the logged lines.
func (s *syncBuffer) lines() []string {
	out := strings.Split(strings.TrimSpace(s.String()), "\n")
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

// testProxy is a running proxy with its access log in memory.
type testProxy struct {
	srv  *Server
	addr string
	log  *syncBuffer
	env  component.Env
}

// loadProxyConfig parses a [proxy] section given as TOML text (listen is forced to 127.0.0.1:0).
func loadProxyConfig(t testing.TB, section string) config.ProxyConfig {
	t.Helper()
	dir := t.TempDir()
	text := fmt.Sprintf("data_dir = %q\n[proxy]\nlisten = [\"127.0.0.1:0\"]\n%s\n", dir, section)
	path := filepath.Join(dir, "outpost.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Source{File: path, Env: []string{}})
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	return cfg.Proxy
}

// startProxy starts a proxy from a [proxy] section and stops it when the test ends.
func startProxy(t testing.TB, section string, opts Options) *testProxy {
	t.Helper()
	return startProxyConfig(t, loadProxyConfig(t, section), opts)
}

// startProxyConfig starts a proxy from a config struct.
func startProxyConfig(t testing.TB, cfg config.ProxyConfig, opts Options) *testProxy {
	t.Helper()
	env := component.Test(t.TempDir())
	srv, err := New(cfg, env, opts)
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	srv.alog.setOutput(log)
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	addr := strings.TrimPrefix(srv.Addrs()[0], "tcp ")
	return &testProxy{srv: srv, addr: addr, log: log, env: env}
}

// testOrigin is a test origin recording what reached it.
type testOrigin struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

// seen returns the number of requests that reached the origin.
func (o *testOrigin) seen() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reqs)
}

// last returns the last request that reached the origin.
func (o *testOrigin) last() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reqs) == 0 {
		return nil
	}
	return o.reqs[len(o.reqs)-1]
}

// hostport is the origin's 127.0.0.1:port.
func (o *testOrigin) hostport() string { return strings.TrimPrefix(o.URL, "http://") }

// startOrigin starts an origin that records requests and then runs h.
func startOrigin(t testing.TB, h http.HandlerFunc) *testOrigin {
	t.Helper()
	o := &testOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r2 := r.Clone(context.Background())
		r2.Body = io.NopCloser(bytes.NewReader(body))
		o.mu.Lock()
		o.reqs = append(o.reqs, r2)
		o.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// echoOrigin answers with the path and method, and echoes the body.
func echoOrigin(t testing.TB) *testOrigin {
	return startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	})
}

// rawConn is a raw client connection to the proxy.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// dialRaw connects to the proxy.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// send writes raw bytes.
func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response (for a request with the given method).
func (c *rawConn) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

// closed reports whether the proxy closed the connection (EOF on the next read).
func (c *rawConn) closed() bool {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	return err == io.EOF || (err != nil && strings.Contains(err.Error(), "reset"))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reverseRoute returns a [[proxy.routes]] default route to o.
func reverseRoute(o *testOrigin) string {
	return fmt.Sprintf("[[proxy.routes]]\nhost = \"*\"\norigins = [%q]\n", o.URL)
}
