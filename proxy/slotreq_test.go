package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/cache"
)

// fetchOrHitCache answers URLs with "/fetch/" in them from the origin (the slot's Fetch, which
// hands the reader role on) and every other one from memory (hitCache).
type fetchOrHitCache struct{ hit *hitCache }

func (m fetchOrHitCache) Serve(w cache.ResponseWriter, r cache.Request, f cache.Fetcher) (cache.Outcome, error) {
	if !strings.Contains(string(r.AppendURL(nil)), "/fetch/") {
		return m.hit.Serve(w, r, f)
	}
	resp, err := f.Fetch(cache.Upstream{})
	if err != nil {
		return cache.Outcome{Code: cache.CodeMiss}, err
	}
	defer resp.Body.Close()
	return cache.Outcome{Code: cache.CodeMiss}, w.WriteResponse(resp)
}

// TestPipelinedHeadsOutliveTheReader: pipelined requests, reverse memory hits served from the
// slots' heads and forward fetches whose slots wait upstream while the reader reads on into
// other heads, each get their own response and their own access-log line (method, target,
// User-Agent, Referer), in order.
func TestPipelinedHeadsOutliveTheReader(t *testing.T) {
	const n = 16
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin %s %s", r.URL.Path, r.Header.Get("User-Agent"))
	})
	p := startProxy(t, "pipeline_window = 16\n"+reverseRoute(o)+"[proxy.access_log]\nformat = \"combined\"\n",
		Options{Cache: fetchOrHitCache{newHitCache()}})
	var req strings.Builder
	targets := make([]string, n)
	for i := range n {
		targets[i] = fmt.Sprintf("/hit/%d?q=%d", i, i)
		if i%2 == 1 {
			targets[i] = fmt.Sprintf("%s/fetch/%d", o.URL, i)
		}
		fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: site.test\r\nUser-Agent: ua-%d\r\nReferer: http://ref.test/%d\r\n\r\n", targets[i], i, i)
	}
	c := dialRaw(t, p.addr)
	c.send(req.String())
	for i := range n {
		resp, body := c.response("GET")
		want := strings.Repeat("x", 1024)
		if i%2 == 1 {
			want = fmt.Sprintf("origin /fetch/%d ua-%d", i, i)
		}
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("response %d: %d %.40q, want %.40q", i, resp.StatusCode, body, want)
		}
	}
	var lines []string
	waitFor(t, "16 access-log lines", func() bool {
		lines = strings.Split(strings.TrimSpace(p.log.String()), "\n")
		return len(lines) >= n
	})
	for i, line := range lines {
		for _, want := range []string{
			fmt.Sprintf("\"GET %s HTTP/1.1\" 200 ", targets[i]),
			fmt.Sprintf("\"http://ref.test/%d\" \"ua-%d\"", i, i),
		} {
			if !strings.Contains(line, want) {
				t.Errorf("log line %d %q lacks %q", i, line, want)
			}
		}
	}
}
