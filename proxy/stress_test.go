package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
)

// stressCache answers by path: /hit/N from memory, /miss/N through the Fetcher, /err/N with
// an error and nothing written.
type stressCache struct{}

func (stressCache) Serve(w cache.ResponseWriter, r cache.Request, f cache.Fetcher) (cache.Outcome, error) {
	path := pathOf(r)
	switch {
	case strings.HasPrefix(path, "/hit/"):
		body := []byte("body " + path)
		head := []byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
		if r.Method() == http.MethodHead {
			body = nil
		}
		return cache.Outcome{Code: cache.CodeMemHit, Hit: true}, w.WriteStored(head, []byte("Age: 0\r\n"), body)
	case strings.HasPrefix(path, "/err/"):
		return cache.Outcome{Code: cache.CodeMiss}, errors.New("stress: refused")
	}
	resp, err := f.Fetch(cache.Upstream{})
	if err != nil {
		return cache.Outcome{Code: cache.CodeMiss, Fetched: true}, err
	}
	defer resp.Body.Close()
	return cache.Outcome{Code: cache.CodeMiss, Fetched: true}, w.WriteResponse(resp)
}

// TestPipelineStress: many connections pipelining random mixes of hits, slow and fast misses,
// failures, HEADs and POSTs get every response, in order, with the right body.
func TestPipelineStress(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		if r.URL.Query().Get("chunked") != "" {
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "body %s", r.URL.Path)
	})
	p := startProxy(t, "pipeline_window = 8\n"+reverseRoute(o), Options{Cache: stressCache{}})
	var wg sync.WaitGroup
	for conn := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(conn), 42))
			c := dialRaw(t, p.addr)
			for batch := range 12 {
				var req strings.Builder
				type expect struct {
					method string
					status int
					body   string
				}
				var want []expect
				for i := range 1 + rng.IntN(12) {
					id := fmt.Sprintf("%d-%d-%d", conn, batch, i)
					switch k := rng.IntN(10); {
					case k < 4:
						want = append(want, expect{"GET", 200, "body /hit/" + id})
						fmt.Fprintf(&req, "GET /hit/%s HTTP/1.1\r\nHost: s\r\n\r\n", id)
					case k < 6:
						q := fmt.Sprintf("ms=%d", rng.IntN(8))
						if k == 5 {
							q += "&chunked=1"
						}
						want = append(want, expect{"GET", 200, "body /miss/" + id})
						fmt.Fprintf(&req, "GET /miss/%s?%s HTTP/1.1\r\nHost: s\r\n\r\n", id, q)
					case k == 6:
						want = append(want, expect{"GET", 502, "the origin could not be reached\n"})
						fmt.Fprintf(&req, "GET /err/%s HTTP/1.1\r\nHost: s\r\n\r\n", id)
					case k == 7:
						want = append(want, expect{"HEAD", 200, ""})
						fmt.Fprintf(&req, "HEAD /hit/%s HTTP/1.1\r\nHost: s\r\n\r\n", id)
					default:
						want = append(want, expect{"POST", 200, "body /post/" + id})
						fmt.Fprintf(&req, "POST /post/%s HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\n\r\nxy", id)
					}
				}
				c.send(req.String())
				for i, w := range want {
					resp, body := c.response(w.method)
					if resp.StatusCode != w.status || body != w.body {
						t.Errorf("conn %d batch %d response %d: %d %q, want %d %q", conn, batch, i, resp.StatusCode, body, w.status, w.body)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
