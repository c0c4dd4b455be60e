package cache_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
)

// Tag purge and soft purge end to end: the real proxy on 127.0.0.1:0 in reverse mode, curl
// as the client and the operator, the admin endpoints on a listener of their own.

// curlRun runs curl with args (without the environment's proxy settings) and returns what it
// printed.
func curlRun(t *testing.T, args ...string) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (Debian package: curl)")
	}
	cmd := exec.Command(curl, append([]string{"-sS", "--max-time", "20"}, args...)...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasSuffix(strings.ToLower(k), "_proxy") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// adminOf serves the stack's cache admin endpoints and returns their base URL.
func adminOf(t *testing.T, s *stack) string {
	mux := http.NewServeMux()
	cache.MountAdmin(s.cache, mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestEndToEndTagPurgeCurl: objects tagged by the origin's Surrogate-Key are purged by a curl
// PURGE with Surrogate-Key and by curl POSTing {"tags": [...]} to the admin endpoint; the
// field never reaches the client, and untagged objects stay.
func TestEndToEndTagPurgeCurl(t *testing.T) {
	o := newScriptedOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/product/"):
			w.Header().Set("Surrogate-Key", "catalog p"+strings.TrimPrefix(r.URL.Path, "/product/"))
		case r.URL.Path == "/home":
			w.Header().Set("Surrogate-Key", "home")
		}
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprintf(w, "page %s\n", r.URL.Path)
	})
	s := startStack(t, o, "")
	admin := adminOf(t, s)
	get := func(path string) string {
		return curlRun(t, "-D", "-", "-o", os.DevNull, "-H", "Host: site.test", "http://"+s.addr+path)
	}
	for _, p := range []string{"/product/1", "/product/2", "/home", "/plain"} {
		if out := get(p); strings.Contains(strings.ToLower(out), "surrogate-key") {
			t.Fatalf("%s: the tag field reached the client:\n%s", p, out)
		}
		if out := get(p); !strings.Contains(out, "Cache-Status: outpost; hit") {
			t.Fatalf("%s is not a hit the second time:\n%s", p, out)
		}
	}
	if n := o.count(); n != 4 {
		t.Fatalf("origin saw %d requests, want 4", n)
	}
	out := curlRun(t, "-X", "PURGE", "-H", "Host: site.test", "-H", "Surrogate-Key: p1 nobody", "http://"+s.addr+"/")
	if !strings.Contains(out, `"purged":1`) || !strings.Contains(out, `"tags":["p1","nobody"]`) {
		t.Fatalf("PURGE by tag: %s", out)
	}
	if out := get("/product/1"); !strings.Contains(out, "fwd=uri-miss") {
		t.Fatalf("/product/1 after its tag was purged:\n%s", out)
	}
	if out := get("/product/2"); !strings.Contains(out, "outpost; hit") {
		t.Fatalf("/product/2 was purged with p1:\n%s", out)
	}
	out = curlRun(t, "-H", "Content-Type: application/json", "-d", `{"tags":["catalog","home"]}`, admin+"/cache/purge")
	var ans struct{ Purged int }
	if err := json.Unmarshal([]byte(out), &ans); err != nil || ans.Purged != 3 {
		t.Fatalf("admin tag purge: %s", out)
	}
	for p, want := range map[string]string{"/product/1": "fwd=uri-miss", "/product/2": "fwd=uri-miss", "/home": "fwd=uri-miss", "/plain": "outpost; hit"} {
		if out := get(p); !strings.Contains(out, want) {
			t.Errorf("%s after the admin purge, want %q:\n%s", p, want, out)
		}
	}
	// From outside purge_allow the PURGE is refused.
	s2 := startStack(t, o, `purge_allow = ["192.0.2.0/24"]`)
	out = curlRun(t, "-o", os.DevNull, "-w", "%{http_code}", "-X", "PURGE", "-H", "Host: site.test", "-H", "Surrogate-Key: home", "http://"+s2.addr+"/")
	if out != "403" {
		t.Fatalf("PURGE from outside purge_allow: %s", out)
	}
}

// TestEndToEndSoftPurgeHerd is the soft-purge acceptance: a hot object is soft-purged with
// curl (PURGE + Soft-Purge: 1, and the admin JSON "soft": true), then 100 concurrent requests
// send exactly one request to the origin — a collapsed revalidation without
// stale-while-revalidate, one background revalidation with it.
func TestEndToEndSoftPurgeHerd(t *testing.T) {
	for _, tc := range []struct {
		name, cc string
		swr      bool
		admin    bool
	}{
		{"revalidation collapsed (PURGE Soft-Purge: 1)", "max-age=300", false, false},
		{"stale-while-revalidate (admin soft tag purge)", "max-age=300, stale-while-revalidate=60", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gate chan struct{}
			var mu sync.Mutex
			o := newScriptedOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				g := gate
				mu.Unlock()
				if g != nil {
					<-g // the revalidation waits until the herd has arrived
				}
				w.Header().Set("Cache-Control", tc.cc)
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Surrogate-Key", "hot")
				if r.Header.Get("If-None-Match") == `"v1"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				_, _ = io.WriteString(w, "hot object\n")
			})
			s := startStack(t, o, `collapse_timeout = "60s"`)
			admin := adminOf(t, s)
			if resp, _ := s.get(t, "GET", "/hot"); resp.StatusCode != 200 {
				t.Fatalf("fill: %d", resp.StatusCode)
			}
			var out string
			if tc.admin {
				out = curlRun(t, "-H", "Content-Type: application/json", "-d", `{"tags":["hot"],"soft":true}`, admin+"/cache/purge")
			} else {
				out = curlRun(t, "-X", "PURGE", "-H", "Host: site.test", "-H", "Soft-Purge: 1", "http://"+s.addr+"/hot")
			}
			if !strings.Contains(out, `"purged":1`) || !strings.Contains(out, `"soft":true`) {
				t.Fatalf("soft purge: %s", out)
			}
			mu.Lock()
			gate = make(chan struct{})
			g := gate
			mu.Unlock()
			var served sync.WaitGroup
			served.Add(100)
			go func() { // release the revalidation once the herd is waiting on it (or served stale)
				deadline := time.Now().Add(30 * time.Second)
				for time.Now().Before(deadline) {
					if !tc.swr && cache.FlightFollowers(s.cache, "http://site.test/hot") >= 99 || tc.swr && s.cache.Stats().StaleServed >= 100 {
						break
					}
					time.Sleep(5 * time.Millisecond) // polling for an external effect, with a deadline
				}
				close(g)
			}()
			errs := make(chan string, 100)
			for range 100 {
				go func() {
					defer served.Done()
					resp, body := s.get(t, "GET", "/hot")
					if resp.StatusCode != 200 || body != "hot object\n" || resp.Header.Get("Surrogate-Key") != "" {
						errs <- fmt.Sprintf("%d %q %q", resp.StatusCode, body, resp.Header.Values("Cache-Status"))
					}
				}()
			}
			served.Wait()
			cache.Settle(s.cache)
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			if n := o.count(); n != 2 {
				t.Fatalf("the origin saw %d requests after the soft purge, want exactly 1", n-1)
			}
			if h := o.last(); h.Get("If-None-Match") != `"v1"` {
				t.Fatalf("the revalidation was not conditional: %v", h)
			}
			if resp, _ := s.get(t, "GET", "/hot"); !strings.Contains(resp.Header.Get("Cache-Status"), "outpost; hit") {
				t.Fatalf("after the revalidation: %q", resp.Header.Get("Cache-Status"))
			}
		})
	}
}

// BenchmarkProxyTagPurge100k is the tag purge measurement through the real proxy: 100,000
// objects carry the tag "big" (stored directly, as fetches would store them), two clients
// each send keep-alive GETs for 1,000 other objects (memory hits) as fast as they can, and the
// operator POSTs {"tags":["big"]} to the admin endpoint. Reported: the admin call's duration
// (purge-ms: the objects are misses from its answer on), the time until storage no longer
// holds them (reclaimed-ms), and the p99 of the hits that started in that window and in the
// 200 ms before it. Run: go test -run XXX -bench ProxyTagPurge100k -benchtime 3x ./cache
func BenchmarkProxyTagPurge100k(b *testing.B) {
	const objects, hot, clients = 100_000, 1000, 2
	o := newScriptedOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = io.WriteString(w, "hot "+r.URL.Path)
	})
	var purgeTotal, reclaimTotal, duringP99, beforeP99 time.Duration
	var during int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := startStackIn(b, b.TempDir(), o, "disk_enabled = false\n", func(c *config.CacheConfig) { c.MemorySize = 512 << 20 })
		admin := httptest.NewServer(mountedAdmin(s.cache))
		if n := cache.FillTagged(s.cache, "http://site.test", objects, "big"); n < objects {
			b.Fatalf("only %d objects stored", n)
		}
		tr := &http.Transport{MaxIdleConnsPerHost: clients}
		get := func(path string) (*http.Response, error) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+path, nil)
			req.Host = "site.test"
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			return resp, err
		}
		for j := range hot {
			if _, err := get(fmt.Sprint("/hot/", j)); err != nil {
				b.Fatal(err)
			}
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		logs := make([][]time.Duration, clients)
		starts := make([][]int64, clients)
		for c := range clients {
			logs[c], starts[c] = make([]time.Duration, 0, 1<<20), make([]int64, 0, 1<<20)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := c; !stop.Load() && len(logs[c]) < cap(logs[c]); n += clients {
					t0 := time.Now()
					resp, err := get(fmt.Sprint("/hot/", n%hot))
					if err != nil || resp.StatusCode != 200 {
						b.Errorf("hit: %v", err)
						return
					}
					logs[c], starts[c] = append(logs[c], time.Since(t0)), append(starts[c], t0.UnixNano())
				}
			}()
		}
		time.Sleep(200 * time.Millisecond) // the clients' baseline window (a measurement, not synchronisation)
		b.StartTimer()
		t0 := time.Now()
		resp, err := http.Post(admin.URL+"/cache/purge", "application/json", strings.NewReader(`{"tags":["big"]}`))
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t1 := time.Now()
		cache.WaitReclaimed(s.cache)
		t2 := time.Now()
		b.StopTimer()
		stop.Store(true)
		wg.Wait()
		if !strings.Contains(string(out), fmt.Sprintf(`"purged":%d`, objects)) {
			b.Fatalf("purge answered %s", out)
		}
		if r, _ := get("/t/7"); r.StatusCode != 502 && r.StatusCode != 200 {
			b.Fatalf("/t/7 after the purge: %d", r.StatusCode)
		}
		p, n := p99Window(logs, starts, t0, t2)
		bp, _ := p99Window(logs, starts, t0.Add(-200*time.Millisecond), t0)
		purgeTotal, reclaimTotal = purgeTotal+t1.Sub(t0), reclaimTotal+t2.Sub(t0)
		duringP99, beforeP99, during = max(duringP99, p), max(beforeP99, bp), during+n
		admin.Close()
		tr.CloseIdleConnections()
		s.stop()
	}
	b.ReportMetric(float64(purgeTotal.Microseconds())/1000/float64(b.N), "purge-ms")
	b.ReportMetric(float64(reclaimTotal.Milliseconds())/float64(b.N), "reclaimed-ms")
	b.ReportMetric(float64(duringP99.Microseconds()), "hit-p99-during-µs")
	b.ReportMetric(float64(beforeP99.Microseconds()), "hit-p99-before-µs")
	b.ReportMetric(float64(during)/float64(b.N), "hits-during")
}

// p99Window is the 99th percentile of the latencies whose start falls in [from, to), and how
// many there were.
func p99Window(logs [][]time.Duration, starts [][]int64, from, to time.Time) (time.Duration, int) {
	var ds []time.Duration
	for c := range logs {
		for i, s := range starts[c] {
			if s >= from.UnixNano() && s < to.UnixNano() {
				ds = append(ds, logs[c][i])
			}
		}
	}
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*99/100)], len(ds)
}

// mountedAdmin is a mux with the cache's admin endpoints.
func mountedAdmin(c *cache.Cache) *http.ServeMux {
	mux := http.NewServeMux()
	cache.MountAdmin(c, mux)
	return mux
}

// TestEndToEndTagsAfterRestart: tags stored with the disk tier are indexed again when the
// proxy and cache restart on the same data directory, and a curl PURGE by tag then removes
// the object.
func TestEndToEndTagsAfterRestart(t *testing.T) {
	o := newScriptedOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Surrogate-Key", "release-7")
		_, _ = io.WriteString(w, "asset "+r.URL.Path)
	})
	dir := t.TempDir()
	s := startStackIn(t, dir, o, "", nil)
	s.get(t, "GET", "/app.js")
	s.stop()
	s = startStackIn(t, dir, o, "", nil)
	if resp, _ := s.get(t, "GET", "/app.js"); !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after the restart: %q", resp.Header.Get("Cache-Status"))
	}
	out := curlRun(t, "-X", "PURGE", "-H", "Host: site.test", "-H", "Surrogate-Key: release-7", "http://"+s.addr+"/")
	if !strings.Contains(out, `"purged":1`) {
		t.Fatalf("PURGE by tag after the restart: %s", out)
	}
	if resp, _ := s.get(t, "GET", "/app.js", "Cache-Control: only-if-cached"); resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("/app.js after the purge: %d", resp.StatusCode)
	}
}
