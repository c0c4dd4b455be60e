package bench

import (
	"container/list"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// lruProxy is a minimal caching forward proxy for the tests: it keeps whole bodies in an LRU
// bounded by bytes and says hit or miss in Cache-Status.
type lruProxy struct {
	client *http.Client // to the origin, ignoring any proxy environment
	mu     sync.Mutex
	max    int64
	used   int64
	order  *list.List // front = most recent; values are *lruEntry
	index  map[string]*list.Element
}

type lruEntry struct {
	key  string
	body []byte
}

func newLRUProxy(t *testing.T, max int64) string {
	p := &lruProxy{max: max, order: list.New(), index: map[string]*list.Element{},
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s.URL
}

func (p *lruProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.URL.String()
	p.mu.Lock()
	if e, ok := p.index[key]; ok {
		p.order.MoveToFront(e)
		body := e.Value.(*lruEntry).body
		p.mu.Unlock()
		w.Header().Set("Cache-Status", "lru; hit")
		w.Write(body)
		return
	}
	p.mu.Unlock()
	resp, err := p.client.Get(key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	p.store(key, body)
	w.Header().Set("Cache-Status", "lru; fwd=uri-miss")
	w.Write(body)
}

func (p *lruProxy) store(key string, body []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if int64(len(body)) > p.max || p.index[key] != nil {
		return
	}
	p.index[key] = p.order.PushFront(&lruEntry{key, body})
	p.used += int64(len(body))
	for p.used > p.max {
		e := p.order.Back()
		p.order.Remove(e)
		ent := e.Value.(*lruEntry)
		delete(p.index, ent.key)
		p.used -= int64(len(ent.body))
	}
}

func TestCacheCurve(t *testing.T) {
	origin := testOrigin(t)
	sizes := []int64{0, 16 << 10, 64 << 10, 256 << 10}
	var proxies []string
	for _, s := range sizes {
		proxies = append(proxies, newLRUProxy(t, s))
	}
	o := CacheOptions{Sizes: sizes, ProxyURLs: proxies, Origin: origin, K: 200, Alpha: 0.9,
		MinObject: 512, MaxObject: 2048, Warmup: 600, Requests: 1500, Connections: 2, Timeout: 5 * time.Second, Seed: 1}
	pts, err := RunCacheCurve(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pts {
		t.Logf("size %7d hit %.3f byte hit %.3f origin %d", p.Size, p.HitRatio, p.ByteHitRatio, p.OriginBytes)
		if len(p.Errors) != 0 || p.Requests != 1500 {
			t.Fatalf("point %d: %d requests, errors %v", i, p.Requests, p.Errors)
		}
		if i > 0 && p.HitRatio <= pts[i-1].HitRatio {
			t.Errorf("hit ratio did not grow with the cache: %.3f then %.3f", pts[i-1].HitRatio, p.HitRatio)
		}
	}
	if pts[0].HitRatio != 0 {
		t.Errorf("a zero-size cache hit %.3f", pts[0].HitRatio)
	}
	if last := pts[len(pts)-1]; last.HitRatio < 0.9 {
		t.Errorf("a cache holding every object hit only %.3f", last.HitRatio)
	}
	if _, err := CachePlot(pts, o.K, o.Alpha); err != nil {
		t.Fatal(err)
	}
}

func TestCacheOptionsValidate(t *testing.T) {
	good := CacheOptions{Sizes: []int64{1}, ProxyURLs: []string{"http://127.0.0.1:1"}, Origin: "http://127.0.0.1:2",
		K: 1, MinObject: 1, MaxObject: 1, Requests: 1, Connections: 1, Timeout: time.Second}
	for _, tc := range []struct {
		name string
		edit func(*CacheOptions)
	}{
		{"both binary and proxies", func(o *CacheOptions) { o.Binary = "/bin/true" }},
		{"neither", func(o *CacheOptions) { o.ProxyURLs = nil }},
		{"count mismatch", func(o *CacheOptions) { o.Sizes = []int64{1, 2} }},
		{"no k", func(o *CacheOptions) { o.K = 0 }},
		{"bad object range", func(o *CacheOptions) { o.MinObject, o.MaxObject = 10, 5 }},
		{"no requests", func(o *CacheOptions) { o.Requests = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			if err := o.Validate(); !IsUsage(err) {
				t.Fatalf("Validate() = %v, want a usage error", err)
			}
		})
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}
