package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// testOriginHandler serves what the scorecard needs from an origin, like origin/web does:
// /page/N is an HTML page embedding N objects /page/N/obj/I, each ?size= bytes (1 KiB by
// default); /bytes/N is N bytes. Cache-Control lets a proxy cache everything.
func testOriginHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /page/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n > 10000 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		q := ""
		if s := r.URL.Query().Get("size"); s != "" {
			q = "?size=" + s
		}
		var b strings.Builder
		b.WriteString("<!doctype html><html><head><title>page</title></head><body>\n")
		for i := range n {
			fmt.Fprintf(&b, "<img src=\"/page/%d/obj/%d%s\" alt=\"object %d\">\n", n, i, q, i)
		}
		b.WriteString("</body></html>\n")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write([]byte(b.String()))
	})
	object := func(w http.ResponseWriter, size int) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(make([]byte, size))
	}
	mux.HandleFunc("GET /page/{n}/obj/{i}", func(w http.ResponseWriter, r *http.Request) {
		size := 1024
		if s := r.URL.Query().Get("size"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 || v > 64<<20 {
				http.Error(w, "bad size", http.StatusBadRequest)
				return
			}
			size = v
		}
		object(w, size)
	})
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n > 64<<20 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		object(w, n)
	})
	return mux
}

// testOrigin starts the test origin on 127.0.0.1:0 and returns its base URL.
func testOrigin(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(testOriginHandler())
	t.Cleanup(s.Close)
	return s.URL
}
