package cache

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestCollapsedRevalidationCutMidBody: requests that collapse onto a revalidation of a stale
// object allowing stale-if-error all get the stale object when the origin's new response
// breaks off mid-body — the followers as well as the leader (the followers used to stream the
// new body and got a cut response).
func TestCollapsedRevalidationCutMidBody(t *testing.T) {
	const n = 8
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, k int) {
		w.Header().Set("Cache-Control", "max-age=0, stale-if-error=60")
		w.Header().Set("ETag", `"v1"`)
		if k == 1 {
			_, _ = io.WriteString(w, "the stored one")
			return
		}
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "0123456789")
		http.NewResponseController(w).Flush()
		<-release
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}, nil)
	if res := h.do("GET", "/obj"); res.status != 200 || res.body != "the stored one" {
		t.Fatalf("priming: %d %q", res.status, res.body)
	}
	h.settle()
	var wg sync.WaitGroup
	results := make([]*recorder, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = &recorder{method: "GET"}
			_, _ = h.serve(results[i], httptest0(h, "/obj"))
		}()
	}
	waitFollowers(t, h, "/obj", n-1)
	close(release)
	wg.Wait()
	h.settle()
	for i, rw := range results {
		if rw.resp == nil || rw.resp.StatusCode != 200 || string(rw.body) != "the stored one" ||
			!strings.Contains(rw.resp.Header.Get("Cache-Status"), "stale-if-error") {
			t.Errorf("request %d: %v %q, want the stale object", i, rw.resp, rw.body)
		}
	}
	if got := h.originCount(); got != 2 {
		t.Errorf("the origin saw %d requests, want 2 (one revalidation for all)", got)
	}
}
