package cache

import (
	"net/http"
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
	if res := h.do(http.MethodGet, "/obj?v=1"); res.out.Code != "TCP_MEM_HIT" {
		b.Fatalf("not a hit: %+v", res.out)
	}
	r := httptest0(h, "/obj?v=1")
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	w := &sink{buf: make([]byte, 0, 4096)}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		out, err := h.c.Serve(w, r, h)
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
		w := &sink{buf: make([]byte, 0, 4096)}
		for pb.Next() {
			if out, _ := h.c.Serve(w, r, h); !out.Hit {
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
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if out, _ := h.c.Serve(w, r, h); !out.Hit {
			b.Fatal("miss")
		}
	}
}
