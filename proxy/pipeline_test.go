package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/outpost-proxy/outpost/cache"
)

// TestPipelinedInOrder: 32 pipelined GETs in one write come back in order with the right
// bodies; with an origin that takes 50 ms per response they finish well under 32 × 50 ms
// because the proxy reads ahead and starts them together.
func TestPipelinedInOrder(t *testing.T) {
	const n = 32
	const delay = 50 * time.Millisecond
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			time.Sleep(delay)
		}
		fmt.Fprintf(w, "body of %s", r.URL.Path)
	})
	p := startProxy(t, "pipeline_window = 32\n"+reverseRoute(o), Options{})
	for _, prefix := range []string{"/fast/", "/slow/"} {
		t.Run(strings.Trim(prefix, "/"), func(t *testing.T) {
			c := dialRaw(t, p.addr)
			var req strings.Builder
			for i := range n {
				fmt.Fprintf(&req, "GET %s%d HTTP/1.1\r\nHost: site.test\r\n\r\n", prefix, i)
			}
			start := time.Now()
			c.send(req.String())
			for i := range n {
				resp, body := c.response("GET")
				if want := fmt.Sprintf("body of %s%d", prefix, i); resp.StatusCode != 200 || body != want {
					t.Fatalf("response %d: %d %q, want %q", i, resp.StatusCode, body, want)
				}
			}
			if prefix == "/slow/" {
				if took := time.Since(start); took >= n*delay/2 {
					t.Errorf("32 pipelined requests to a 50 ms origin took %v; read-ahead should make it well under %v", took, n*delay)
				}
			}
		})
	}
}

// TestPipelinedMalformedInMiddle: the responses before a malformed request arrive, then a 400
// for it, then the connection closes.
func TestPipelinedMalformedInMiddle(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /b HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n" +
		"GET /d HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"GET /a ", "GET /b "} {
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want)
		}
	}
	resp, _ := c.response("GET")
	if resp.StatusCode != 400 {
		t.Fatalf("malformed request: status %d, want 400", resp.StatusCode)
	}
	if !c.closed() {
		t.Fatal("connection still open after the 400")
	}
	if got := o.seen(); got != 2 {
		t.Errorf("origin saw %d requests, want 2", got)
	}
}

// TestHTTP10Persistence: an HTTP/1.0 client without keep-alive gets a response delimited by
// the close; with Connection: keep-alive the connection is reused and answered with
// Content-Length and Connection: keep-alive.
func TestHTTP10Persistence(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Write([]byte("streamed "))
			w.(http.Flusher).Flush() // no Content-Length: chunked from the origin
		}
		w.Write([]byte("hello"))
	})
	p := startProxy(t, reverseRoute(o), Options{})
	t.Run("close", func(t *testing.T) {
		c := dialRaw(t, p.addr)
		c.send("GET /stream HTTP/1.0\r\n\r\n")
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != "streamed hello" || resp.ContentLength != -1 || !resp.Close {
			t.Fatalf("got %d %q cl=%d close=%v", resp.StatusCode, body, resp.ContentLength, resp.Close)
		}
		if !c.closed() {
			t.Fatal("connection open after an HTTP/1.0 response")
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		c := dialRaw(t, p.addr)
		for i := range 3 {
			c.send("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, body := c.response("GET")
			if resp.StatusCode != 200 || body != "hello" || resp.ContentLength != 5 ||
				!strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") {
				t.Fatalf("request %d: %d %q cl=%d conn=%q", i, resp.StatusCode, body, resp.ContentLength, resp.Header.Get("Connection"))
			}
		}
	})
	t.Run("keep-alive unknown length", func(t *testing.T) {
		c := dialRaw(t, p.addr)
		c.send("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, body := c.response("GET")
		if body != "streamed hello" || !resp.Close {
			t.Fatalf("got %q close=%v", body, resp.Close)
		}
		if !c.closed() {
			t.Fatal("a close-delimited response must end the connection")
		}
	})
	t.Run("1.1 close", func(t *testing.T) {
		c := dialRaw(t, p.addr)
		c.send("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		resp, _ := c.response("GET")
		if !resp.Close {
			t.Fatal("no Connection: close in the answer")
		}
		if !c.closed() {
			t.Fatal("connection open after Connection: close")
		}
	})
}

// TestPipelinedPostWaits: a POST in a pipeline is not started before the GET ahead of it has
// completed, and a GET behind it still works.
func TestPipelinedPostWaits(t *testing.T) {
	var mu sync.Mutex
	var slowDone, postArrived time.Time
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/p" {
			mu.Lock()
			postArrived = time.Now()
			mu.Unlock()
		}
		if r.URL.Path == "/slow" {
			time.Sleep(30 * time.Millisecond)
			mu.Lock()
			slowDone = time.Now()
			mu.Unlock()
		}
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	})
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\nPOST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"GET /slow", "POST /p", "GET /after"} {
		_, body := c.response("GET")
		if body != want {
			t.Fatalf("got %q want %q", body, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if postArrived.Before(slowDone) {
		t.Errorf("the POST reached the origin %v before the GET ahead of it completed", slowDone.Sub(postArrived))
	}
}

// TestPartialNextRequestDoesNotHoldResponse: when the bytes after a request are only the start
// of the next one, the first response is sent without waiting for the rest.
func TestPartialNextRequestDoesNotHoldResponse(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, reverseRoute(o), Options{Cache: newHitCache()})
	c := dialRaw(t, p.addr)
	c.send("GET /a HTTP/1.1\r\nHost: s\r\n\r\nGET /b HT")
	if resp, _ := c.response("GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.send("TP/1.1\r\nHost: s\r\n\r\n")
	if resp, _ := c.response("GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestPipelinedResponsesBatched: 16 small pipelined cache hits sent in one write are answered
// with one socket write, not one per response.
func TestPipelinedResponsesBatched(t *testing.T) {
	p := startProxy(t, "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n", Options{Cache: newHitCacheSize(64)})
	c := dialRaw(t, p.addr)
	c.send(strings.Repeat("GET /obj HTTP/1.1\r\nHost: s\r\n\r\n", 16))
	for range 16 {
		if resp, _ := c.response("GET"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	var m dto.Metric
	if err := p.srv.m.clientWrites.Write(&m); err != nil {
		t.Fatal(err)
	}
	writes := m.GetCounter().GetValue()
	t.Logf("16 pipelined responses took %v socket write(s)", writes)
	if writes > 2 { // 1 unless the kernel split the request batch
		t.Errorf("16 pipelined responses took %v writes, want them batched", writes)
	}
}

// stashThenHeadCache orders two pipelined requests so that /b stashes its stored response while
// /a still waits, then /a finishes (the head moves to /b, which has not finished), and only
// then /b finishes: /b is the head when it finishes and must write its own stash.
type stashThenHeadCache struct {
	hit               *hitCache
	bStashed, aPassed chan struct{}
}

func (c *stashThenHeadCache) Serve(w cache.ResponseWriter, r cache.Request, f cache.Fetcher) (cache.Outcome, error) {
	if strings.HasSuffix(string(r.AppendURL(nil)), "/a") {
		if resp, err := f.Fetch(cache.Upstream{}); err == nil { // hands the reader role on
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		<-c.bStashed
		return c.hit.Serve(w, r, f)
	}
	out, err := c.hit.Serve(w, r, f) // /a has not written: stashed
	close(c.bStashed)
	<-c.aPassed // /a finished and was written: /b is the head now, still unfinished
	return out, err
}

// TestStashedResponseOfNewHead: a response stashed before its slot became the head is written
// when that slot finishes as the head (it was lost before, and the connection hung).
func TestStashedResponseOfNewHead(t *testing.T) {
	o := echoOrigin(t)
	sc := &stashThenHeadCache{hit: newHitCacheSize(16), bStashed: make(chan struct{}), aPassed: make(chan struct{})}
	p := startProxy(t, reverseRoute(o), Options{Cache: sc})
	c := dialRaw(t, p.addr)
	c.send("GET /a HTTP/1.1\r\nHost: s\r\n\r\nGET /b HTTP/1.1\r\nHost: s\r\n\r\n")
	if resp, body := c.response("GET"); resp.StatusCode != 200 || body != strings.Repeat("x", 16) {
		t.Fatalf("/a: %d %q", resp.StatusCode, body)
	}
	close(sc.aPassed)
	if resp, body := c.response("GET"); resp.StatusCode != 200 || body != strings.Repeat("x", 16) {
		t.Fatalf("/b: %d %q", resp.StatusCode, body)
	}
}
