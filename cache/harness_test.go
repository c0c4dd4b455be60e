package cache

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// This file is the test harness for the seam: a recording ResponseWriter that turns WriteStored
// and WriteResponse into an *http.Response, a Fetcher backed by an httptest origin that records
// what it saw, and a fake clock.

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder is a ResponseWriter that records one response.
type recorder struct {
	method string
	resp   *http.Response
	body   []byte
	stored bool // written with WriteStored
	calls  int
}

func (rw *recorder) WriteStored(head, extra, body []byte) error {
	rw.calls++
	rw.stored = true
	raw := append(append(append([]byte{}, head...), extra...), "\r\n"...)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), &http.Request{Method: http.MethodHead})
	if err != nil {
		return err
	}
	rw.resp = resp
	rw.body = append([]byte{}, body...)
	return nil
}

func (rw *recorder) WriteResponse(resp *http.Response) error {
	rw.calls++
	rw.resp = resp
	if rw.method == http.MethodHead {
		return nil
	}
	b, err := io.ReadAll(resp.Body)
	rw.body = b
	return err
}

// seenRequest is what the origin received.
type seenRequest struct {
	method string
	path   string
	header http.Header
}

// harness is a Cache on a fake clock in front of a scripted origin.
type harness struct {
	t      testing.TB
	c      *Cache
	clk    *fakeClock
	srv    *httptest.Server
	target *url.URL

	transport *http.Transport // no keep-alive: a hung-up request is not retried
	wire      bool            // fetch with proxy/wire instead (wirefetch_test.go)
	remote    string          // RemoteAddr of requests (default 127.0.0.1:40000)
	mu        sync.Mutex
	seen      []seenRequest
	handler   func(w http.ResponseWriter, r *http.Request, n int)
}

// newHarness starts an origin running handler and a cache configured by mod.
func newHarness(t testing.TB, handler func(w http.ResponseWriter, r *http.Request, n int), mod func(*config.CacheConfig)) *harness {
	t.Helper()
	h := &harness{t: t, handler: handler, clk: &fakeClock{t: time.Now().UTC().Truncate(time.Second)}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serveOrigin))
	h.transport = &http.Transport{DisableKeepAlives: true}
	t.Cleanup(h.srv.Close)
	h.target, _ = url.Parse(h.srv.URL)
	cfg := config.Default().Cache
	cfg.DiskEnabled = false
	cfg.MemorySize = 16 << 20
	cfg.CollapseTimeout = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg, component.Test(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	c.now = h.clk.Now
	h.c = c
	t.Cleanup(func() { c.Close() })
	return h
}

func (h *harness) serveOrigin(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, seenRequest{method: r.Method, path: r.URL.RequestURI(), header: r.Header.Clone()})
	n := len(h.seen)
	handler := h.handler
	h.mu.Unlock()
	w.Header().Set("Date", h.clk.Now().Format(http.TimeFormat))
	handler(w, r, n)
}

// originCount is how many requests the origin saw.
func (h *harness) originCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// lastSeen is the origin's last request.
func (h *harness) lastSeen() seenRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		return seenRequest{}
	}
	return h.seen[len(h.seen)-1]
}

// fetcher is the harness's Fetcher for one request: it sends r with the cache's additions to
// the origin.
type fetcher struct {
	h *harness
	r *http.Request
}

// fetcher binds a Fetcher to r.
func (h *harness) fetcher(r *http.Request) fetcher { return fetcher{h: h, r: r} }

// Fetch implements Fetcher against the origin.
func (f fetcher) Fetch(u Upstream) (*http.Response, error) {
	out := f.r.Clone(context.WithoutCancel(f.r.Context()))
	out.Method = u.Method(f.r.Method)
	u.ApplyHeader(out.Header)
	out.URL.Scheme, out.URL.Host = "http", f.h.target.Host
	out.RequestURI = ""
	out.Host = f.r.Host
	if f.h.wire {
		return f.h.wireRoundTrip(out)
	}
	return f.h.transport.RoundTrip(out)
}

// Background implements BackgroundFetcher: a copy of the request, and a Fetcher for it.
func (f fetcher) Background() (Request, Fetcher) {
	r := f.r.Clone(context.WithoutCancel(f.r.Context()))
	return FromHTTP(r), fetcher{h: f.h, r: r}
}

// serve sends r through the cache with a Fetcher bound to it.
func (h *harness) serve(w ResponseWriter, r *http.Request) (Outcome, error) {
	return h.c.Serve(w, FromHTTP(r), h.fetcher(r))
}

// result is one response as a client would see it.
type result struct {
	status int
	header http.Header
	body   string
	out    Outcome
	stored bool
}

// do sends one request through the cache. hdr lines are "Name: value".
func (h *harness) do(method, path string, hdr ...string) result {
	h.t.Helper()
	r := httptest.NewRequest(method, "http://origin.test"+path, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	if h.remote != "" {
		r.RemoteAddr = h.remote
	}
	for _, l := range hdr {
		k, v, _ := strings.Cut(l, ":")
		r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	rw := &recorder{method: method}
	out, err := h.serve(rw, r)
	if err != nil {
		h.t.Fatalf("%s %s: Serve: %v", method, path, err)
	}
	if rw.calls != 1 {
		h.t.Fatalf("%s %s: %d responses written, want 1", method, path, rw.calls)
	}
	h.settle()
	return result{status: rw.resp.StatusCode, header: rw.resp.Header, body: string(rw.body), out: out, stored: rw.stored}
}

// settle waits until background work (stores, revalidations) is visible.
func (h *harness) settle() {
	h.c.bg.Wait()
	h.c.pumps.Wait()
	if h.c.st.mem != nil {
		h.c.st.mem.Wait()
	}
}

// reply returns an origin handler that answers every request with the given status, fields
// ("Name: value") and body.
func reply(status int, body string, fields ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		for _, l := range fields {
			k, v, _ := strings.Cut(l, ":")
			w.Header().Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// httptest0 builds a plain GET for path.
func httptest0(h *harness, path string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://origin.test"+path, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	return r
}
