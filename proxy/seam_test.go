package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
)

// fakeCache is a minimal cache.Handler: GET responses are kept whole in memory by URL and
// served with WriteStored; misses are fetched through the proxy's Fetcher and written with
// WriteResponse while being stored.
type fakeCache struct {
	mu      sync.Mutex
	store   map[string][2][]byte // URL → head, body
	urls    []string             // r.URL.String() of every request seen
	remotes []string
}

func newFakeCache() *fakeCache { return &fakeCache{store: map[string][2][]byte{}} }

func (f *fakeCache) Serve(w cache.ResponseWriter, r cache.Request, fe cache.Fetcher) (cache.Outcome, error) {
	key := string(r.AppendURL(nil))
	f.mu.Lock()
	f.urls = append(f.urls, key)
	f.remotes = append(f.remotes, r.RemoteAddr())
	st, hit := f.store[key]
	f.mu.Unlock()
	if hit && r.Method() == http.MethodGet {
		return cache.Outcome{Code: cache.CodeMemHit, Hit: true}, w.WriteStored(st[0], []byte("Age: 0\r\nCache-Status: fake; hit\r\n"), st[1])
	}
	resp, err := fe.Fetch(cache.Upstream{})
	if err != nil {
		return cache.Outcome{Code: cache.CodeMiss, Fetched: true}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return cache.Outcome{Code: cache.CodeMiss, Fetched: true}, err
	}
	if r.Method() == http.MethodGet && resp.StatusCode == 200 {
		f.mu.Lock()
		f.store[key] = [2][]byte{serialiseHead(resp, len(body)), body}
		f.mu.Unlock()
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return cache.Outcome{Code: cache.CodeMiss, Fetched: true}, w.WriteResponse(resp)
}

// pathOf is the path of a cache request's URL.
func pathOf(r cache.Request) string {
	u, err := url.Parse(string(r.AppendURL(nil)))
	if err != nil {
		return ""
	}
	return u.Path
}

// serialiseHead renders a stored head the way the seam describes it.
func serialiseHead(resp *http.Response, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %s\r\n", resp.Status)
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		if k != "Content-Length" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range resp.Header[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n", n)
	return []byte(b.String())
}

// TestCacheSeam: the proxy hands the cache forward and reverse requests with absolute URLs and
// the client address; WriteResponse (miss) and WriteStored (hit) both reach the client with
// the proxy's Via and persistence fields; the cache's code is logged.
func TestCacheSeam(t *testing.T) {
	o := echoOrigin(t)
	fc := newFakeCache()
	p := startProxy(t, reverseRoute(o), Options{Cache: fc})
	c := dialRaw(t, p.addr)
	for i, want := range []string{"TCP_MISS/200", "TCP_MEM_HIT/200"} {
		c.send("GET /page HTTP/1.1\r\nHost: site.test\r\n\r\n")
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != "GET /page " || resp.Header.Get("Via") != "1.1 outpost" {
			t.Fatalf("request %d: %d %q via %q", i, resp.StatusCode, body, resp.Header.Get("Via"))
		}
		if i == 1 && resp.Header.Get("Cache-Status") != "fake; hit" {
			t.Errorf("extra fields missing on the hit: %v", resp.Header)
		}
		waitFor(t, want, func() bool { return strings.Contains(p.log.String(), want) })
	}
	c.send("GET " + o.URL + "/fwd HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	c.response("GET")
	c.send("GET " + o.URL + "/fwd HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body := c.response("GET")
	if body != "GET /fwd " || resp.Header.Get("Connection") != "keep-alive" || resp.ContentLength != 9 {
		t.Fatalf("HTTP/1.0 hit: %q %v", body, resp.Header)
	}
	c.send("HEAD /page HTTP/1.1\r\nHost: site.test\r\n\r\n")
	if resp, body := c.response("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	if o.seen() != 3 {
		t.Errorf("origin saw %d requests, want 3 (two misses and the HEAD)", o.seen())
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.urls[0] != "http://site.test/page" || fc.urls[2] != o.URL+"/fwd" {
		t.Errorf("cache saw URLs %q", fc.urls)
	}
	if !strings.HasPrefix(fc.remotes[0], "127.0.0.1:") {
		t.Errorf("RemoteAddr %q", fc.remotes[0])
	}
}

// TestCachePipelinedMix: pipelined hits and slow misses interleaved come back in order — hits
// behind a slow miss are stashed and written when their turn comes.
func TestCachePipelinedMix(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow") {
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Fprintf(w, "body %s", r.URL.Path)
	})
	fc := newFakeCache()
	p := startProxy(t, reverseRoute(o), Options{Cache: fc})
	c := dialRaw(t, p.addr)
	for i := range 4 { // warm: /hit0../hit3
		c.send(fmt.Sprintf("GET /hit%d HTTP/1.1\r\nHost: s\r\n\r\n", i))
		c.response("GET")
	}
	var req strings.Builder
	var want []string
	for i := range 24 {
		path := fmt.Sprintf("/hit%d", i%4)
		if i%3 == 1 {
			path = fmt.Sprintf("/slow%d", i)
		}
		want = append(want, "body "+path)
		fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: s\r\n\r\n", path)
	}
	c.send(req.String())
	for i, w := range want {
		if _, body := c.response("GET"); body != w {
			t.Fatalf("response %d: %q, want %q", i, body, w)
		}
	}
}

// TestCacheErrorWithoutWrite: a cache that fails without writing gets the proxy's 502/504.
func TestCacheErrorWithoutWrite(t *testing.T) {
	p := startProxy(t, "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n", Options{Cache: newFakeCache()})
	c := dialRaw(t, p.addr)
	c.send("GET /x HTTP/1.1\r\nHost: s\r\n\r\n")
	if resp, _ := c.response("GET"); resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

// backgroundCache answers from memory and fetches from its own goroutines as the real cache
// may: one fetch through the request's Fetcher on another goroutine while Serve runs (the
// seam's contract), one through Background after Serve returned, when the slot may serve
// another request already (as stale-while-revalidate does).
type backgroundCache struct {
	hit *hitCache
	wg  sync.WaitGroup
}

func (b *backgroundCache) Serve(w cache.ResponseWriter, r cache.Request, f cache.Fetcher) (cache.Outcome, error) {
	fetch := func(f cache.Fetcher) {
		if resp, err := f.Fetch(cache.Upstream{Store: true}); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	during := make(chan struct{})
	go func() {
		defer close(during)
		fetch(f)
	}()
	<-during
	_, bg := f.(cache.BackgroundFetcher).Background()
	early := make(chan struct{})
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		<-early // after Serve returned
		time.Sleep(time.Millisecond)
		fetch(bg)
	}()
	defer close(early)
	return b.hit.Serve(w, r, f)
}

// TestCacheBackgroundFetches: fetches the cache makes on its own goroutines, during Serve
// and after it (Background), reach the origin and never disturb the pipeline (no second
// reader, no response out of order).
func TestCacheBackgroundFetches(t *testing.T) {
	o := echoOrigin(t)
	bc := &backgroundCache{hit: newHitCacheSize(32)}
	p := startProxy(t, "pipeline_window = 4\n"+reverseRoute(o), Options{Cache: bc})
	c := dialRaw(t, p.addr)
	for range 10 {
		c.send(strings.Repeat("GET /bg HTTP/1.1\r\nHost: s\r\n\r\n", 8))
		for range 8 {
			if resp, body := c.response("GET"); resp.StatusCode != 200 || body != strings.Repeat("x", 32) {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
		}
	}
	bc.wg.Wait()
	if got := o.seen(); got != 160 {
		t.Errorf("origin saw %d background fetches, want 160", got)
	}
}

// panicCache panics for /panic and answers every other request from memory.
type panicCache struct{ hit *hitCache }

func (p panicCache) Serve(w cache.ResponseWriter, r cache.Request, f cache.Fetcher) (cache.Outcome, error) {
	if strings.HasSuffix(string(r.AppendURL(nil)), "/panic") {
		panic("a bug in the cache")
	}
	return p.hit.Serve(w, r, f)
}

// TestPanicEndsTheConnectionOnly: a panic while working on a request closes that client's
// connection and is logged; the process keeps serving other connections.
func TestPanicEndsTheConnectionOnly(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, reverseRoute(o), Options{Cache: panicCache{hit: newHitCacheSize(8)}})
	c := dialRaw(t, p.addr)
	c.send("GET /panic HTTP/1.1\r\nHost: s\r\n\r\n")
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatal("got a response from a request whose work panicked, want the connection closed")
	}
	c2 := dialRaw(t, p.addr)
	c2.send("GET /fine HTTP/1.1\r\nHost: s\r\n\r\n")
	if resp, body := c2.response("GET"); resp.StatusCode != 200 || body != "xxxxxxxx" {
		t.Fatalf("after a panic on another connection: %d %q", resp.StatusCode, body)
	}
}
