package cache

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// sink is a ResponseWriter that copies what a proxy would write into a reused buffer.
type sink struct{ buf []byte }

func (s *sink) WriteStored(head, extra, body []byte) error {
	s.buf = append(append(append(append(s.buf[:0], head...), extra...), "\r\n"...), body...)
	return nil
}

func (s *sink) WriteResponse(resp *http.Response) error { return nil }

// BenchmarkHit measures the fresh-hit fast path for a 1 KiB object: key hashing, the memory
// tier lookup, the freshness check, Age and Cache-Status formatting and WriteStored.
func BenchmarkHit(b *testing.B) {
	body := strings.Repeat("x", 1024)
	h := newHarness(b, reply(200, body, "Cache-Control: max-age=3600", "Content-Type: text/plain", `ETag: "b"`), nil)
	h.do(http.MethodGet, "/obj?v=1")
	if res := h.do(http.MethodGet, "/obj?v=1"); res.out.Code != CodeMemHit {
		b.Fatalf("not a hit: %+v", res.out)
	}
	r := httptest0(h, "/obj?v=1")
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	w := &sink{buf: make([]byte, 0, 4096)}
	req, f := FromHTTP(r), Fetcher(h.fetcher(r))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		out, err := h.c.Serve(w, req, f)
		if err != nil || !out.Hit {
			b.Fatalf("%+v %v", out, err)
		}
	}
}

// BenchmarkHitParallel is BenchmarkHit from every P at once.
func BenchmarkHitParallel(b *testing.B) {
	body := strings.Repeat("x", 1024)
	h := newHarness(b, reply(200, body, "Cache-Control: max-age=3600"), nil)
	h.do(http.MethodGet, "/obj")
	h.do(http.MethodGet, "/obj")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest0(h, "/obj")
		req, f := FromHTTP(r), Fetcher(h.fetcher(r))
		w := &sink{buf: make([]byte, 0, 4096)}
		for pb.Next() {
			if out, _ := h.c.Serve(w, req, f); !out.Hit {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkHitVary measures a hit on a Vary'd object (the index path).
func BenchmarkHitVary(b *testing.B) {
	h := newHarness(b, reply(200, strings.Repeat("x", 1024), "Cache-Control: max-age=3600", "Vary: Accept-Encoding"), nil)
	h.do(http.MethodGet, "/v", "Accept-Encoding: gzip")
	r := httptest0(h, "/v")
	r.Header.Set("Accept-Encoding", "gzip")
	w := &sink{}
	req, f := FromHTTP(r), Fetcher(h.fetcher(r))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if out, _ := h.c.Serve(w, req, f); !out.Hit {
			b.Fatal("miss")
		}
	}
}

// memFetcher answers every fetch from memory with a fixed 1 KiB response, so the miss
// benchmarks count the cache's own work (no sockets).
type memFetcher struct {
	header http.Header
	body   []byte
}

func (f *memFetcher) Fetch(Upstream) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: f.header.Clone(), ContentLength: int64(len(f.body)),
		Body: io.NopCloser(bytes.NewReader(f.body)),
	}, nil
}

// benchMiss measures one miss through the cache with the given response fields: key, lookup,
// collapsing, the fetch (in memory), the storability decision and the streamed answer.
func benchMiss(b *testing.B, fields http.Header) {
	h := newHarness(b, reply(200, ""), nil)
	f := &memFetcher{header: fields, body: bytes.Repeat([]byte("x"), 1024)}
	rw := &drainWriter{}
	reqs := make([]*http.Request, 0, 1024)
	views := make([]Request, 0, 1024)
	for i := range 1024 {
		r := httptest0(h, "/miss?n="+strconv.Itoa(i))
		r.Header.Set("User-Agent", "bench")
		reqs = append(reqs, r)
		views = append(views, FromHTTP(r))
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		r := reqs[i%len(reqs)]
		h.c.st.purge(string(appendKey(nil, r.URL, r.Host)), false)
		out, err := h.c.Serve(rw, views[i%len(views)], f)
		i++
		if err != nil || !out.Fetched {
			b.Fatalf("%+v %v", out, err)
		}
	}
}

// BenchmarkMiss is a miss for a storable response (stored in memory as it streams).
func BenchmarkMiss(b *testing.B) {
	benchMiss(b, http.Header{"Cache-Control": {"max-age=3600"}, "Content-Type": {"text/plain"}})
}

// BenchmarkMissNoStore is a miss for a no-store response (passed through).
func BenchmarkMissNoStore(b *testing.B) {
	benchMiss(b, http.Header{"Cache-Control": {"no-store"}, "Content-Type": {"text/plain"}})
}

// drainWriter is a ResponseWriter that reads streamed bodies to their end.
type drainWriter struct{ buf [4096]byte }

func (d *drainWriter) WriteStored(_, _, _ []byte) error { return nil }

func (d *drainWriter) WriteResponse(resp *http.Response) error {
	for {
		_, err := resp.Body.Read(d.buf[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
