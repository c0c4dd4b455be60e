package cache_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
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
