package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
)

// hitCache answers every request from memory with a 1 KiB body, as the real cache's memory
// tier would: WriteStored with a pre-serialised head and a per-request extra field.
type hitCache struct{ head, extra, body []byte }

func newHitCache() *hitCache { return newHitCacheSize(1024) }

// newHitCacheSize answers with a body of n bytes.
func newHitCacheSize(n int) *hitCache {
	body := bytes.Repeat([]byte("x"), n)
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=3600\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	return &hitCache{head: []byte(head), extra: []byte("Age: 1\r\n"), body: body}
}

func (h *hitCache) Serve(w cache.ResponseWriter, r cache.Request, _ cache.Fetcher) (cache.Outcome, error) {
	body := h.body
	if r.Method() == http.MethodHead {
		body = nil
	}
	return cache.Outcome{Code: cache.CodeMemHit, Hit: true}, w.WriteStored(h.head, h.extra, body)
}

// benchProxy starts a proxy for a benchmark, with the access log off.
func benchProxy(b *testing.B, section string, opts Options) *testProxy {
	b.Helper()
	return startProxy(b, "[proxy.access_log]\ndestination = \"off\"\n"+section, opts)
}

// benchResponseLen measures the length of one response to req.
func benchResponseLen(b *testing.B, addr, req string) int {
	c := dialRaw(b, addr)
	c.send(req)
	resp, body := c.response("GET")
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	var head bytes.Buffer
	_ = resp.Header.Write(&head)
	// Status line + fields + blank line + body; fields re-serialised have the same length (a
	// Date included: its format has a fixed width).
	return len("HTTP/1.1 200 OK\r\n") + head.Len() + 2 + len(body)
}

// runLoad sends depth requests per write on one connection and reads the fixed-size answers,
// b.N requests in all, then reports requests per second.
func runLoad(b *testing.B, addr, req string, depth, respLen int) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	batch := []byte(strings.Repeat(req, depth))
	buf := make([]byte, respLen*depth)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += depth {
		n := min(depth, b.N-done)
		if _, err := nc.Write(batch[:n*len(req)]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf[:n*respLen]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkHitKeepAlive: one keep-alive connection, one request at a time, 1 KiB cache hits.
func BenchmarkHitKeepAlive(b *testing.B) { benchHit(b, anyRoute, "/obj", 1) }

// BenchmarkHitPipelined16: one connection, 16 pipelined requests per write, 1 KiB cache hits.
func BenchmarkHitPipelined16(b *testing.B) { benchHit(b, anyRoute, "/obj", 16) }

// BenchmarkOriginKeepAlive: no cache, a local origin serving 1 KiB, keep-alive both sides.
func BenchmarkOriginKeepAlive(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	o := startOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Date", "Mon, 23 Nov 2026 00:00:00 GMT")
		w.Write(body)
	})
	p := benchProxy(b, reverseRoute(o), Options{})
	req := "GET /obj HTTP/1.1\r\nHost: bench.test\r\n\r\n"
	runLoad(b, p.addr, req, 1, benchResponseLen(b, p.addr, req))
}

// BenchmarkOriginPipelined16: no cache, 16 pipelined requests per write to a local origin.
func BenchmarkOriginPipelined16(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	o := startOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Date", "Mon, 23 Nov 2026 00:00:00 GMT")
		w.Write(body)
	})
	p := benchProxy(b, reverseRoute(o), Options{})
	req := "GET /obj HTTP/1.1\r\nHost: bench.test\r\n\r\n"
	runLoad(b, p.addr, req, 16, benchResponseLen(b, p.addr, req))
}
