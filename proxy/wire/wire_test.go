package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

var testLimits = Limits{MaxBytes: 4096, MaxFields: 50}

// readResponse parses one response head from s.
func readResponse(s string) (*ResponseHead, *bufio.Reader, error) {
	br := bufio.NewReaderSize(strings.NewReader(s), 256)
	var h ResponseHead
	return &h, br, h.Read(br, testLimits)
}

// TestResponseHeadRefused: every ambiguous or malformed response head is an *Error.
func TestResponseHeadRefused(t *testing.T) {
	ok := "HTTP/1.1 200 OK\r\n"
	cases := []struct{ name, head string }{
		{"CL and TE", ok + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"two CLs", ok + "Content-Length: 3\r\nContent-Length: 4\r\n\r\n"},
		{"CL list", ok + "Content-Length: 3, 4\r\n\r\n"},
		{"negative CL", ok + "Content-Length: -1\r\n\r\n"},
		{"TE gzip", ok + "Transfer-Encoding: gzip\r\n\r\n"},
		{"TE chunked not last", ok + "Transfer-Encoding: chunked, gzip\r\n\r\n"},
		{"TE chunked not last over two lines", ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"},
		{"TE chunked twice", ok + "Transfer-Encoding: chunked, chunked\r\n\r\n"},
		{"TE unknown coding", ok + "Transfer-Encoding: br, chunked\r\n\r\n"},
		{"TE identity", ok + "Transfer-Encoding: identity, chunked\r\n\r\n"},
		{"TE too many codings", ok + "Transfer-Encoding: gzip, gzip, gzip, gzip, gzip, chunked\r\n\r\n"},
		{"TE empty", ok + "Transfer-Encoding: \r\n\r\n"},
		{"TE list and CL", ok + "Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n"},
		{"TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
		{"bare CR", ok + "X-A: a\rb\r\n\r\n"},
		{"obs-fold", ok + "X-A: a\r\n b\r\n\r\n"},
		{"NUL in value", ok + "X-A: a\x00b\r\n\r\n"},
		{"space before colon", ok + "Content-Length : 3\r\n\r\n"},
		{"HTTP/2", "HTTP/2.0 200 OK\r\n\r\n"},
		{"no code", "HTTP/1.1 OK\r\n\r\n"},
		{"garbage", "SSH-2.0-OpenSSH\r\n\r\n"},
		{"too large", ok + "X-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readResponse(tc.head)
			var werr *Error
			if !errors.As(err, &werr) {
				t.Fatalf("err %v, want a *wire.Error", err)
			}
		})
	}
}

// TestResponseHeadAccepted: well-formed heads parse with their framing.
func TestResponseHeadAccepted(t *testing.T) {
	cases := []struct {
		name, head    string
		status        int
		length        int64
		chunked, keep bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, 5, false, true},
		{"chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n", 201, -1, true, true},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\n", 200, -1, false, false},
		{"no reason", "HTTP/1.1 204\r\n\r\n", 204, 0, false, true},
		{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", 200, 1, false, true},
		{"1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 200, 1, false, false},
		{"close", "HTTP/1.1 200 OK\r\nConnection: x, close\r\nContent-Length: 1\r\n\r\n", 200, 1, false, false},
		{"304 with CL", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, _, err := readResponse(tc.head)
			if err != nil {
				t.Fatal(err)
			}
			if h.Status != tc.status || h.BodyLength(false) != tc.length || h.Chunked != tc.chunked || h.KeepAlive(false) != tc.keep {
				t.Errorf("status %d length %d chunked %v keep %v", h.Status, h.BodyLength(false), h.Chunked, h.KeepAlive(false))
			}
		})
	}
}

// TestResponseTransferCodings: a response's Transfer-Encoding list (one line or several) ends
// in chunked, the codings before it are reported in order.
func TestResponseTransferCodings(t *testing.T) {
	ok := "HTTP/1.1 200 OK\r\n"
	cases := []struct {
		name, head string
		want       []Coding
	}{
		{"chunked", ok + "Transfer-Encoding: chunked\r\n\r\n", nil},
		{"case", ok + "Transfer-Encoding: CHUNKED\r\n\r\n", nil},
		{"gzip, chunked", ok + "Transfer-Encoding: gzip, chunked\r\n\r\n", []Coding{CodingGzip}},
		{"x-gzip, deflate, chunked", ok + "Transfer-Encoding: x-gzip,deflate ,chunked\r\n\r\n", []Coding{CodingGzip, CodingDeflate}},
		{"two lines", ok + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", []Coding{CodingGzip}},
		{"empty elements", ok + "Transfer-Encoding: , gzip,, chunked\r\n\r\n", []Coding{CodingGzip}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, _, err := readResponse(tc.head)
			if err != nil {
				t.Fatal(err)
			}
			if !h.Chunked || !slices.Equal(h.Codings(), tc.want) {
				t.Errorf("chunked %v codings %v, want %v", h.Chunked, h.Codings(), tc.want)
			}
		})
	}
	var rh RequestHead // requests keep the strict rule: a single chunked
	for _, req := range []string{"Transfer-Encoding: gzip, chunked", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"} {
		err := rh.Read(bufio.NewReader(strings.NewReader("POST / HTTP/1.1\r\nHost: h\r\n"+req+"\r\n\r\n")), Limits{MaxBytes: 4096, MaxFields: 100})
		if err == nil {
			t.Errorf("request with %q accepted", req)
		}
	}
}

// TestRequestHead: the accessors index the bytes read, Header and NewRequest decode them.
func TestRequestHead(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("GET /a?b HTTP/1.1\r\nHost: example.org\r\nX-A: 1\r\nx-a:  2 \r\nPragma: no-cache\r\n\r\n"))
	var h RequestHead
	if err := h.Read(br, testLimits); err != nil {
		t.Fatal(err)
	}
	if string(h.Method()) != "GET" || string(h.Target()) != "/a?b" || string(h.Host()) != "example.org" || h.Proto10 {
		t.Fatalf("method %q target %q host %q", h.Method(), h.Target(), h.Host())
	}
	if got := string(h.Get("x-A")); got != "1" {
		t.Errorf("Get = %q", got)
	}
	req, err := h.NewRequest()
	if err != nil {
		t.Fatal(err)
	}
	if req.Host != "example.org" || req.URL.Path != "/a" || req.Header.Get("Cache-Control") != "no-cache" ||
		strings.Join(req.Header["X-A"], ",") != "1,2" || req.Header["Host"] != nil || req.Close {
		t.Errorf("request %+v", req)
	}
}

// TestChunkedReader: valid chunked bodies decode with their trailers; malformed ones fail.
func TestChunkedReader(t *testing.T) {
	cases := []struct {
		name, body, want string
		ok               bool
	}{
		{"plain", "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT", "abcde", true},
		{"trailer", "1\r\na\r\n0\r\nX-Sum: s\r\n\r\n", "a", true},
		{"negative", "-1\r\na\r\n0\r\n\r\n", "", false},
		{"overflow", "FFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n", "", false},
		{"16 digits overflow", "FFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n", "", false},
		{"not hex", "zz\r\nabc\r\n0\r\n\r\n", "", false},
		{"0x prefix", "0x3\r\nabc\r\n0\r\n\r\n", "", false},
		{"bare LF size", "3\nabc\r\n0\r\n\r\n", "", false},
		{"missing CRLF", "3\r\nabcX0\r\n\r\n", "", false},
		{"truncated", "5\r\nab", "", false},
		{"bad trailer", "0\r\n bad\r\n\r\n", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.body))
			var b BodyReader
			tr := http.Header{}
			b.Reset(br, -1, true, tr)
			got, err := io.ReadAll(&b)
			if tc.ok != (err == nil) {
				t.Fatalf("err %v", err)
			}
			if tc.ok && string(got) != tc.want {
				t.Errorf("body %q", got)
			}
			if tc.name == "plain" {
				if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
					t.Errorf("read past the body: rest %q", rest)
				}
			}
			if tc.name == "trailer" && tr.Get("X-Sum") != "s" {
				t.Errorf("trailer %v", tr)
			}
		})
	}
}

// TestChunkedRoundTrip: what ChunkedWriter writes, BodyReader reads back.
func TestChunkedRoundTrip(t *testing.T) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	cw := NewChunkedWriter(bw)
	_, _ = cw.Write([]byte("hello "))
	_, _ = cw.Write(nil)
	_, _ = cw.Write([]byte(strings.Repeat("w", 300)))
	_ = cw.Close()
	_, _ = bw.WriteString("\r\n")
	_ = bw.Flush()
	var b BodyReader
	b.Reset(bufio.NewReader(&out), -1, true, nil)
	got, err := io.ReadAll(&b)
	if err != nil || string(got) != "hello "+strings.Repeat("w", 300) {
		t.Fatalf("%q %v", got, err)
	}
}

// TestStatusLine: one table for every code.
func TestStatusLine(t *testing.T) {
	for code, want := range map[int]string{200: "HTTP/1.1 200 OK\r\n", 599: "HTTP/1.1 599 Status 599\r\n", 999: "HTTP/1.1 999 Status 999\r\n"} {
		if got := StatusLine(code); got != want {
			t.Errorf("%d: %q", code, got)
		}
		if StatusOf([]byte(want)) != code {
			t.Errorf("StatusOf(%q)", want)
		}
	}
	if !IsHopByHop("Proxy-Authentication-Info") {
		t.Error("Proxy-Authentication-Info is hop-by-hop")
	}
}

// FuzzResponseHead: arbitrary bytes never panic the response parser, and what it accepts has
// one framing.
func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.0 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		var h ResponseHead
		for range 4 {
			if err := h.Read(br, testLimits); err != nil {
				return
			}
			if h.Status < 100 || h.Status > 999 || (h.Chunked && h.ContentLength >= 0) {
				t.Fatalf("accepted status %d chunked %v length %d", h.Status, h.Chunked, h.ContentLength)
			}
			var b BodyReader
			b.Reset(br, h.BodyLength(false), h.Chunked, nil)
			if _, err := io.Copy(io.Discard, &b); err != nil {
				return
			}
		}
	})
}

// FuzzChunked: the chunked reader never panics, never reads past the body, and decodes what
// ChunkedWriter wrote.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{"3\r\nabc\r\n0\r\n\r\n", "1;a=b\r\nx\r\n0\r\nT: v\r\n\r\n", "-1\r\n", "FFFFFFFFFFFFFFFFF1\r\n", "3\nabc"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(append(data, "\x00END"...)), 32)
		var b BodyReader
		b.Reset(br, -1, true, http.Header{})
		if _, err := io.Copy(io.Discard, &b); err != nil {
			return
		}
		rest, _ := io.ReadAll(br)
		if !bytes.HasSuffix(rest, []byte("\x00END")) {
			t.Fatalf("read past the body: rest %q", rest)
		}
	})
}
