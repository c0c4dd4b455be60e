package cache

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// The remaining RFC corners of issue 14, each a named case of the RFC table: through the seam
// (TestRFC9111) and through the real proxy (TestEndToEndRFCTable).

// rawOrigin writes raw bytes as the response on the hijacked connection and closes it: framing
// net/http's server would not send (chunk extensions, trailers, transfer codings).
func rawOrigin(raw string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = bw.WriteString(raw)
		_ = bw.Flush()
	}
}

// chunk frames p as one chunk.
func chunk(p []byte) string { return fmt.Sprintf("%x\r\n%s\r\n", len(p), p) }

// gzipped and deflated encode s.
func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.Bytes()
}

func deflated(s string) []byte {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.Bytes()
}

// interimOrigin sends the interim responses (status, a field only they carry), then a final
// cacheable 200 without that field.
func interimOrigin(codes ...int) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		for _, c := range codes {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.Header().Set("X-Interim", fmt.Sprint(c))
			w.WriteHeader(c)
		}
		w.Header().Del("Link")
		w.Header().Del("X-Interim")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("X-Final", "1")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("final"))
	}
}

func cornerCases() []rfcCase {
	const ok = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
	fromStorage := func(body string) step {
		return step{origin: 1, cs: "hit", body: str(body), check: func(t *testing.T, d Driver, res Response) {
			hasField("Content-Length", fmt.Sprint(len(body)))(t, d, res)
			fieldsAbsent("Transfer-Encoding", "Trailer", "X-T")(t, d, res)
		}}
	}
	vary := func(field string) func(http.ResponseWriter, *http.Request, int) {
		return func(w http.ResponseWriter, r *http.Request, n int) {
			reply(200, fmt.Sprintf("variant %d", n), "Cache-Control: max-age=60", "Vary: "+field)(w, r, n)
		}
	}
	return []rfcCase{
		// Interim responses (RFC 9110 §15.2).
		{name: "RFC 9110 §15.2 a 103 before the final response is not stored and its fields stay out of the stored response",
			origin: interimOrigin(103), steps: []step{
				{origin: 1, body: str("final"), check: func(t *testing.T, d Driver, res Response) {
					hasField("X-Final", "1")(t, d, res)
					fieldsAbsent("Link", "X-Interim")(t, d, res)
				}},
				{origin: 1, cs: "hit", body: str("final"), check: func(t *testing.T, d Driver, res Response) {
					hasField("X-Final", "1")(t, d, res)
					fieldsAbsent("Link", "X-Interim")(t, d, res)
				}},
			}},
		{name: "RFC 9110 §15.2 several interim responses (102, 103, 103): only the final response is stored",
			origin: interimOrigin(102, 103, 103), steps: []step{
				{origin: 1, body: str("final")},
				{origin: 1, cs: "hit", body: str("final"), check: fieldsAbsent("Link", "X-Interim")},
			}},
		// Transfer-Encoding (RFC 9112 §6.1, §7; RFC 9111 §3).
		{name: "RFC 9112 §7.1 a chunked response (extensions, trailer) is stored and served from storage with Content-Length",
			origin: rawOrigin(ok + "Transfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: t\r\n\r\n"),
			steps:  []step{{origin: 1, body: str("hello world"), cs: "stored"}, fromStorage("hello world")}},
		{name: "RFC 9112 §7 gzip, chunked transfer codings are removed and the content is stored",
			wire:   true, // net/http cannot read these codings: the harness reads them as the proxy does
			origin: rawOrigin(ok + "Transfer-Encoding: gzip, chunked\r\n\r\n" + chunk(gzipped("hello gzip")) + "0\r\n\r\n"),
			steps:  []step{{origin: 1, body: str("hello gzip"), cs: "stored"}, fromStorage("hello gzip")}},
		{name: "RFC 9112 §6.1 Transfer-Encoding on two lines (deflate, then chunked) is one list",
			wire:   true, // net/http cannot read these codings: the harness reads them as the proxy does
			origin: rawOrigin(ok + "Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(deflated("hello deflate")) + "0\r\n\r\n"),
			steps:  []step{{origin: 1, body: str("hello deflate"), cs: "stored"}, fromStorage("hello deflate")}},
		// Combining stored partial content (RFC 9111 §3.4).
		{name: "RFC 9111 §3.4 a range inside a stored 206 is served from it, one outside is fetched and combined",
			origin: rangeOrigin, steps: []step{
				{hdr: []string{"Range: bytes=2-7"}, status: 206, origin: 1, body: str("234567")},
				{hdr: []string{"Range: bytes=3-5"}, status: 206, origin: 1, body: str("345"), cs: "hit", check: hasField("Content-Range", "bytes 3-5/10")},
				{hdr: []string{"Range: bytes=-2"}, status: 206, origin: 2, body: str("89")},
				{hdr: []string{"Range: bytes=0-1"}, status: 206, origin: 3, body: str("01")},
				{origin: 3, body: str("0123456789"), cs: "hit"},
			}},
		{name: "RFC 9111 §3.4 a partial object with a strong validator is completed with Range and If-Range",
			origin: rangeOrigin, steps: []step{
				{hdr: []string{"Range: bytes=0-5"}, status: 206, origin: 1},
				{hdr: []string{"Range: bytes=4-9"}, status: 206, origin: 2, body: str("456789"), check: func(t *testing.T, d Driver, _ Response) {
					if got := d.LastSeen().Get("Range"); got != "bytes=6-9" && got != "bytes=6-" && got != "bytes=4-9" {
						t.Errorf("origin saw Range %q", got)
					}
				}},
				{origin: 2, body: str("0123456789"), cs: "hit"},
			}},
		{name: "RFC 9111 §3.4 a 206 with only a weak validator is not combined: the full response is fetched",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("ETag", `W/"weak"`)
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader([]byte("0123456789")))
			}, steps: []step{
				{hdr: []string{"Range: bytes=0-4"}, status: 206, origin: 1},
				{origin: 2, body: str("0123456789"), check: func(t *testing.T, d Driver, _ Response) {
					if got := d.LastSeen().Get("Range"); got != "" {
						t.Errorf("completing with a weak validator: origin saw Range %q", got)
					}
				}},
				{origin: 2, body: str("0123456789"), cs: "hit"},
			}},
		// Vary with normalisable values (RFC 9111 §4.1).
		{name: "RFC 9111 §4.1 Vary: Accept-Language values that differ in case, order and whitespace select one variant",
			origin: vary("Accept-Language"), steps: []step{
				{hdr: []string{"Accept-Language: en-US, de;q=0.5"}, origin: 1, body: str("variant 1")},
				{hdr: []string{"Accept-Language: de;q=0.5,en-us"}, origin: 1, cs: "hit", body: str("variant 1")},
				{hdr: []string{"Accept-Language: EN-us ,  DE; q=0.5"}, origin: 1, cs: "hit", body: str("variant 1")},
				{hdr: []string{"Accept-Language: en-US;q=1.0, de;q=0.5"}, origin: 1, cs: "hit", body: str("variant 1")},
				{hdr: []string{"Accept-Language: en-US", "Accept-Language: de;q=0.5"}, origin: 1, cs: "hit", body: str("variant 1")},
				{hdr: []string{"Accept-Language: en-US, de;q=0.4"}, origin: 2, cs: "vary-miss", body: str("variant 2")},
				{hdr: []string{"Accept-Language: de"}, origin: 3, body: str("variant 3")},
			}},
		{name: "RFC 9111 §4.1 Vary: Accept-Encoding codings are case-insensitive and unordered",
			origin: vary("Accept-Encoding"), steps: []step{
				{hdr: []string{"Accept-Encoding: gzip, br"}, origin: 1, body: str("variant 1")},
				{hdr: []string{"Accept-Encoding: BR,GZip"}, origin: 1, cs: "hit", body: str("variant 1")},
				{hdr: []string{"Accept-Encoding: gzip"}, origin: 2, body: str("variant 2")},
			}},
		{name: "RFC 9111 §4.1 Vary on a field without known semantics keeps case and order",
			origin: vary("X-Flavour"), steps: []step{
				{hdr: []string{"X-Flavour: a, b"}, origin: 1},
				{hdr: []string{"X-Flavour: a,b"}, origin: 1, cs: "hit"},
				{hdr: []string{"X-Flavour: b, a"}, origin: 2},
				{hdr: []string{"X-Flavour: A, b"}, origin: 3},
			}},
	}
}
