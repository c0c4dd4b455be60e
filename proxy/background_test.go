package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// These tests cover the proxy's side of the cache's own goroutines: fetches that outlive the
// client request that started them (background refresh, collapsed fetches whose leader left,
// bodies read after Serve returned) and requests that wait inside the cache.

// openConns returns the number of client connections the proxy holds.
func (p *testProxy) openConns() int {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	return len(p.srv.conns)
}

// TestBackgroundRefresh: with the real cache, a response within its stale-while-revalidate
// window is served stale at once and refreshed through slot.Background, after the response
// was written: the refresh outlives the request and its slot (reused meanwhile by pipelined
// requests), carries this hop's forwarding fields, and its interim 103 never reaches the
// client whose request started it. Forward and reverse alike.
func TestBackgroundRefresh(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reverse bool
	}{
		{"reverse route", true},
		{"forward", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			release := make(chan struct{})
			o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				switch n.Add(1) {
				case 1: // stale on arrival (Age beyond max-age), within stale-while-revalidate
					w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=600")
					w.Header().Set("Age", "100")
					w.Header().Set("ETag", `"v1"`)
					io.WriteString(w, "v1")
				default: // the background refresh: an interim response, then slowly a new body
					w.Header().Set("Link", "</style.css>; rel=preload")
					w.WriteHeader(http.StatusEarlyHints)
					<-release
					w.Header().Del("Link")
					w.Header().Set("Cache-Control", "max-age=300")
					w.Header().Set("ETag", `"v2"`)
					w.WriteHeader(http.StatusOK)
					io.WriteString(w, "v2")
				}
			})
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			p := startProxy(t, "pipeline_window = 2\n"+reverseRoute(o), Options{Cache: newRealCache(t)})
			target := "/swr"
			if !tc.reverse {
				target = o.URL + "/swr"
			}
			req := "GET " + target + " HTTP/1.1\r\nHost: site.test\r\n\r\n"
			c := dialRaw(t, p.addr)
			c.send(req)
			if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "v1" {
				t.Fatalf("first: %d %q", resp.StatusCode, body)
			}
			// Stale, answered at once while the refresh waits at the origin; pipelined requests
			// behind it reuse its slot (window of 2).
			c.send(strings.Repeat(req, 6))
			for i := range 6 {
				resp, body := c.response("GET")
				if resp.StatusCode != 200 || body != "v1" {
					t.Fatalf("stale %d: %d %q", i, resp.StatusCode, body)
				}
				if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "stale-while-revalidate") {
					t.Fatalf("stale %d: Cache-Status %q, want a stale-while-revalidate hit", i, cs)
				}
			}
			waitFor(t, "the background refresh at the origin", func() bool { return n.Load() == 2 })
			if via := o.last().Header.Get("Via"); via != "1.1 outpost" {
				t.Errorf("refresh Via %q, want this hop's", via)
			}
			close(release)
			waitFor(t, "the refreshed response", func() bool {
				c.send(req)
				resp, body := c.response("GET")
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				return body == "v2"
			})
			if got := n.Load(); got != 2 {
				t.Errorf("origin saw %d requests, want 2 (the miss and one refresh)", got)
			}
		})
	}
}

// TestBackgroundFetcherIsNotTheSlot: Background returns a copy of the request and a Fetcher
// through the pool the request is bound to (the route's, or the forward pool), never the slot.
func TestBackgroundFetcherIsNotTheSlot(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, reverseRoute(o), Options{})
	rt := p.srv.live.Load().routes.routes[0]
	s := &slot{c: &conn{srv: p.srv, remote: "127.0.0.1:9"}}
	for _, tc := range []struct {
		name string
		mode mode
		pool *pool
	}{
		{"reverse", modeReverse, rt.pool},
		{"forward", modeForward, p.srv.fwd},
	} {
		s.req = httptest.NewRequest(http.MethodGet, "http://site.test/x", nil)
		s.mode, s.pool = tc.mode, tc.pool
		r, f := s.Background()
		pf, ok := f.(*poolFetcher)
		if !ok || pf.pool != tc.pool || pf.srv != p.srv || pf.r == s.req {
			t.Errorf("%s: Background() = %T %+v, want a fetcher of the pool with its own request", tc.name, f, f)
		}
		if got := string(r.AppendURL(nil)); got != "http://site.test/x" || r.RemoteAddr() != "127.0.0.1:9" {
			t.Errorf("%s: background request %q from %q", tc.name, got, r.RemoteAddr())
		}
	}
}

// slowObject is an origin serving one cacheable object of 3 parts, each sent once the test
// allows it; it counts requests.
type slowObject struct {
	parts [3][]byte
	steps [2]chan struct{}
	n     atomic.Int64
	once  [2]sync.Once
}

func newSlowObject(t *testing.T, partSize int) (*slowObject, *testOrigin) {
	so := &slowObject{steps: [2]chan struct{}{make(chan struct{}), make(chan struct{})}}
	for i := range so.parts {
		so.parts[i] = bytes.Repeat([]byte{byte('a' + i)}, partSize)
	}
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		so.n.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Content-Length", fmt.Sprint(3*partSize))
		for i, part := range so.parts {
			if i > 0 {
				<-so.steps[i-1]
			}
			w.Write(part)
			w.(http.Flusher).Flush()
		}
	})
	t.Cleanup(func() { so.step(0); so.step(1) })
	return so, o
}

// step lets the origin send part i+1.
func (so *slowObject) step(i int) { so.once[i].Do(func() { close(so.steps[i]) }) }

// readN reads exactly n bytes of a response body.
func readN(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("reading %d body bytes: %v", n, err)
	}
	return b
}

// TestCollapsedFetchSurvivesLeaderDisconnect: two clients collapsed on one slow cacheable
// response through the real cache; the first (whose request leads the fetch) disconnects
// mid-body and the proxy notices; the second still gets the whole body, read by the cache after
// the leader's Serve returned, and the origin saw one request.
func TestCollapsedFetchSurvivesLeaderDisconnect(t *testing.T) {
	const part = 64 << 10
	so, o := newSlowObject(t, part)
	p := startProxy(t, reverseRoute(o), Options{Cache: newRealCache(t)})
	req := "GET /big HTTP/1.1\r\nHost: site.test\r\n\r\n"

	a := dialRaw(t, p.addr)
	a.send(req)
	ra, err := http.ReadResponse(a.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	readN(t, ra.Body, 1024)

	b := dialRaw(t, p.addr)
	b.send(req)
	rb, err := http.ReadResponse(b.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := readN(t, rb.Body, part)

	// The leader goes away with a reset; its next write fails once the origin sends more.
	a.nc.(*net.TCPConn).SetLinger(0)
	a.nc.Close()
	so.step(0)
	got = append(got, readN(t, rb.Body, part)...)
	waitFor(t, "the proxy to drop the leader's connection", func() bool { return p.openConns() == 1 })

	so.step(1)
	rest, err := io.ReadAll(rb.Body)
	if err != nil {
		t.Fatalf("second client's body cut after %d bytes: %v", len(got)+len(rest), err)
	}
	want := bytes.Join(so.parts[:], nil)
	if !bytes.Equal(append(got, rest...), want) {
		t.Fatalf("second client got %d bytes, not the object (%d bytes)", len(got)+len(rest), len(want))
	}
	if n := so.n.Load(); n != 1 {
		t.Errorf("origin saw %d requests, want 1 (collapsed)", n)
	}
	// Stored whole: the next request is a hit.
	b.send(req)
	if resp, body := b.response("GET"); resp.StatusCode != 200 || body != string(want) || so.n.Load() != 1 {
		t.Errorf("after: %d, %d bytes, origin saw %d", resp.StatusCode, len(body), so.n.Load())
	}
}

// TestUpstreamStallIsCut: an exchange no client can cancel is still bounded: an origin that
// stops sending mid-body is cut after the idle limit (read_timeout), the client's
// response ends early (the connection closes), and the next request goes to the origin again
// instead of waiting on a fetch that never ends. With and without the cache.
// The header timeout is long, so only read_timeout can cut the stall.
func TestUpstreamStallIsCut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache bool
	}{
		{"through the cache", true},
		{"direct", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			stop := make(chan struct{})
			defer close(stop)
			o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				w.Header().Set("Cache-Control", "max-age=300")
				w.Header().Set("Content-Length", "1000")
				io.WriteString(w, strings.Repeat("s", 100))
				w.(http.Flusher).Flush()
				<-stop
			})
			var opts Options
			if tc.cache {
				opts.Cache = newRealCache(t)
			}
			p := startProxy(t, "[proxy.upstream]\nresponse_header_timeout = \"1h\"\nread_timeout = \"300ms\"\n"+reverseRoute(o), opts)
			get := func(i int) {
				c := dialRaw(t, p.addr)
				c.send("GET /stall HTTP/1.1\r\nHost: site.test\r\n\r\n")
				resp, err := http.ReadResponse(c.br, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 100 {
					t.Fatalf("request %d: %d bytes, err %v: want the 100 bytes sent, then the proxy closing", i, len(body), err)
				}
			}
			get(1)
			if got := n.Load(); got != 1 {
				t.Fatalf("request 1: origin saw %d requests", got)
			}
			// The client's response ends as the fetch fails; a request arriving in that instant
			// may still join the failing fetch (and end the same way, at once). The cut fetch
			// must not keep later requests from the origin.
			deadline := time.Now().Add(5 * time.Second)
			for i := 2; n.Load() < 2; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("after %d requests the origin saw only the first", i-1)
				}
				get(i)
			}
		})
	}
}

// TestPipelineReadsAheadWhileCollapsed: a pipelined request that waits inside the cache for
// another client's fetch (collapsing) does not stop the connection reading ahead: the request
// behind it reaches the origin meanwhile, and the responses still leave in order.
func TestPipelineReadsAheadWhileCollapsed(t *testing.T) {
	release := make(chan struct{})
	var other atomic.Bool
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		if r.URL.Path == "/slow" {
			<-release
		} else {
			other.Store(true)
		}
		io.WriteString(w, "body "+r.URL.Path)
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	p := startProxy(t, reverseRoute(o), Options{Cache: newRealCache(t)})
	leader := dialRaw(t, p.addr)
	leader.send("GET /slow HTTP/1.1\r\nHost: site.test\r\n\r\n")
	waitFor(t, "the leader's fetch at the origin", func() bool { return o.seen() == 1 })

	c := dialRaw(t, p.addr)
	c.send("GET /slow HTTP/1.1\r\nHost: site.test\r\n\r\nGET /other HTTP/1.1\r\nHost: site.test\r\n\r\n")
	waitFor(t, "the request behind the collapsed one at the origin", other.Load)
	close(release)
	if _, body := leader.response("GET"); body != "body /slow" {
		t.Fatalf("leader: %q", body)
	}
	for _, want := range []string{"body /slow", "body /other"} {
		if _, body := c.response("GET"); body != want {
			t.Fatalf("pipelined: %q, want %q", body, want)
		}
	}
	if n := o.seen(); n != 2 {
		t.Errorf("origin saw %d requests, want 2 (/slow collapsed)", n)
	}
}

// TestStreamedBodyFlushedAsItArrives: a body the origin sends in pieces reaches the client as
// each piece arrives (not held in the proxy's output buffer until more comes), whatever the
// framing the client gets.
func TestStreamedBodyFlushedAsItArrives(t *testing.T) {
	for _, tc := range []struct {
		name, proto, length string
	}{
		{"content-length", "HTTP/1.1", "10"},
		{"chunked to HTTP/1.1", "HTTP/1.1", ""},
		{"close-delimited to HTTP/1.0", "HTTP/1.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := make(chan struct{})
			defer close(next)
			o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.length != "" {
					w.Header().Set("Content-Length", tc.length)
				}
				io.WriteString(w, "first")
				w.(http.Flusher).Flush()
				<-next
				io.WriteString(w, "-last")
			})
			p := startProxy(t, reverseRoute(o), Options{})
			c := dialRaw(t, p.addr)
			c.send("GET /trickle " + tc.proto + "\r\nHost: site.test\r\n\r\n")
			resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(readN(t, resp.Body, 5)); got != "first" {
				t.Fatalf("first piece %q", got)
			}
			next <- struct{}{}
			if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "-last" {
				t.Fatalf("rest %q, %v", rest, err)
			}
		})
	}
}

// TestUpstreamReadTimeoutConfig: [proxy.upstream] read_timeout defaults to 60s, takes a value,
// may be 0 (no idle limit) and is rejected when negative, naming the key.
func TestUpstreamReadTimeoutConfig(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       time.Duration
		err        string
	}{
		{"default", "", 60 * time.Second, ""},
		{"set", "read_timeout = \"5s\"\n", 5 * time.Second, ""},
		{"zero is off", "read_timeout = \"0s\"\n", 0, ""},
		{"negative", "read_timeout = \"-1s\"\n", 0, "proxy.upstream.read_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			text := fmt.Sprintf("data_dir = %q\n[proxy]\nlisten = [\"127.0.0.1:0\"]\n[proxy.upstream]\n%s", dir, tc.text)
			path := filepath.Join(dir, "outpost.toml")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(config.Source{File: path, Env: []string{}})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Proxy.Upstream.ReadTimeout; got != tc.want {
				t.Errorf("read_timeout %v, want %v", got, tc.want)
			}
		})
	}
}
