package proxy

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// newRealCache builds the project's cache with its defaults (memory tier only).
func newRealCache(t testing.TB) *cache.Cache {
	t.Helper()
	cfg := config.Default().Cache
	cfg.DiskEnabled = false
	c, err := cache.New(cfg, component.Test(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRealCache: with the project's cache plugged in, a cacheable response is fetched once and
// then served from memory, forward and reverse alike, and the log carries the cache's code.
func TestRealCache(t *testing.T) {
	var fetched atomic.Int64
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "object %s", r.URL.Path)
	})
	p := startProxy(t, reverseRoute(o), Options{Cache: newRealCache(t)})
	c := dialRaw(t, p.addr)
	for _, target := range []string{"/rev", o.URL + "/fwd"} {
		want := "object /" + target[strings.LastIndex(target, "/")+1:]
		waitFor(t, "a hit for "+target, func() bool {
			c.send("GET " + target + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
			resp, body := c.response("GET")
			if resp.StatusCode != 200 || body != want {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			lines := p.log.lines()
			return len(lines) > 0 && strings.Contains(lines[len(lines)-1], "HIT/200")
		})
	}
	if n := fetched.Load(); n != 2 {
		t.Errorf("origin fetched %d times, want 2 (one per URL)", n)
	}
}

// BenchmarkRealCacheHitKeepAlive and BenchmarkRealCacheHitPipelined16: 1 KiB hits from the
// project's cache through the proxy.
func BenchmarkRealCacheHitKeepAlive(b *testing.B)   { benchRealCache(b, 1) }
func BenchmarkRealCacheHitPipelined16(b *testing.B) { benchRealCache(b, 16) }

func benchRealCache(b *testing.B, depth int, setup ...func(*Server)) {
	body := bytes.Repeat([]byte("x"), 1024)
	o := startOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	p := benchProxy(b, reverseRoute(o), Options{Cache: newRealCache(b)})
	for _, f := range setup {
		f(p.srv)
	}
	req := "GET /obj HTTP/1.1\r\nHost: bench.test\r\n\r\n"
	c := dialRaw(b, p.addr)
	waitFor(b, "the object cached", func() bool {
		c.send(req)
		resp, _ := c.response("GET")
		return resp.Header.Get("Age") != ""
	})
	c.send(req)
	resp, got := c.response("GET")
	var head bytes.Buffer
	_ = resp.Header.Write(&head)
	respLen := len("HTTP/1.1 200 OK\r\n") + head.Len() + 2 + len(got)
	if len(resp.Header.Get("Age")) != 1 {
		b.Fatalf("Age %q: the response length would vary as Age grows", resp.Header.Get("Age"))
	}
	runLoad(b, p.addr, req, depth, respLen)
}
