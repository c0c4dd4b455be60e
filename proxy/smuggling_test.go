package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
)

// TestSmugglingRejected: every ambiguous or malformed framing gets its 4xx/5xx, the connection
// closes, and nothing reaches the origin.
func TestSmugglingRejected(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, "max_header_bytes = \"2KiB\"\nmax_body_size = \"1KiB\"\n"+reverseRoute(o), Options{})
	post := "POST / HTTP/1.1\r\nHost: x\r\n"
	cases := []struct {
		name, req string
		status    int
	}{
		{"CL.TE", post + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400},
		{"TE.CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400},
		{"duplicate CL same value", post + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
		{"conflicting CL", post + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"CL list", post + "Content-Length: 3, 3\r\n\r\nabc", 400},
		{"CL sign", post + "Content-Length: +3\r\n\r\nabc", 400},
		{"CL hex", post + "Content-Length: 0x3\r\n\r\nabc", 400},
		{"CL overflow", post + "Content-Length: 99999999999999999999999\r\n\r\nabc", 400},
		{"unknown TE", post + "Transfer-Encoding: gzip\r\n\r\nabc", 400},
		{"TE list", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
		{"duplicate TE", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE space before colon", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400},
		{"obs-fold TE", post + "X-A: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", 400},
		{"bare LF in header", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"invalid method", "G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"invalid target", "GET foo HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"asterisk not OPTIONS", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"double space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"unsupported scheme", "GET gopher://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"HTTP/2 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"garbage version", "GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"duplicate Host", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
		{"invalid Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"header name with space", "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 400},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 3000) + "\r\n\r\n", 431},
		{"body too large (CL)", post + "Content-Length: 2000\r\n\r\n" + strings.Repeat("a", 2000), 413},
		{"body too large (chunked)", post + "Transfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("a", 2048) + "\r\n0\r\n\r\n", 413},
		{"chunk-size overflow", post + "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk-size not hex", post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk missing CRLF", post + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := o.seen()
			c := dialRaw(t, p.addr)
			c.send(tc.req)
			resp, body := c.response("POST")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
			}
			if !c.closed() {
				t.Error("connection still open")
			}
			if got := o.seen(); got != before {
				t.Errorf("the origin saw %d request(s)", got-before)
			}
		})
	}
}

// TestChunkedRequestForwarded: a valid chunked request is de-chunked and forwarded with a
// Content-Length, trailers dropped, and the connection stays usable.
func TestChunkedRequestForwarded(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response("POST"); body != "POST /up abcde" {
		t.Fatalf("body %q", body)
	}
	if _, body := c.response("GET"); body != "GET /next " {
		t.Fatalf("body %q", body)
	}
	if cl := o.reqs[0].ContentLength; cl != 5 {
		t.Errorf("origin saw Content-Length %d", cl)
	}
}

// fakeConn is a net.Conn reading from a buffer, for the fuzz test.
type fakeConn struct {
	io.Reader
	out bytes.Buffer
}

func (f *fakeConn) Write(p []byte) (int, error)      { return f.out.Write(p) }
func (f *fakeConn) Close() error                     { return nil }
func (f *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzReadRequest feeds arbitrary bytes to the request reader and body framing: it must never
// panic or loop, and whatever it accepts must be a request net/http would also write.
func FuzzReadRequest(f *testing.F) {
	seeds := []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://a/b HTTP/1.0\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: y\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
		"\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\n",
		"GET /a?b%20c?# HTTP/1.1\r\nHost: X.Y:81\r\nPragma: no-cache\r\nConnection: foo, close\r\nFoo: 1\r\nVia: 1.1 p\r\n\r\n",
		"GET /x!$&'()*+,;=:@~ HTTP/1.0\r\nHost: h\r\nCache-Control: a\r\ncache-control: b\r\nExpect: \r\n\r\n",
		"HEAD //p? HTTP/1.1\r\nHost: h\r\nKeep-Alive: 1\r\nTE: x\r\nUpgrade: u\r\nProxy-Authorization: y\r\n\r\n",
		"GET http://Ex-1.test:8080/a;b?c=%41 HTTP/1.1\r\nHost: other\r\nProxy-Authorization: Basic eA==\r\n\r\n",
		"GET https://h/ HTTP/1.0\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	cfg := config.Default().Proxy
	cfg.MaxHeaderBytes = 4096
	cfg.MaxBodySize = 1 << 16
	srv := &Server{cfg: cfg}
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := &fakeConn{Reader: bytes.NewReader(data)}
		c := &conn{srv: srv, nc: fc, br: bufio.NewReaderSize(fc, 512)}
		for range 8 {
			if _, err := c.br.Peek(1); err != nil {
				return
			}
			req, perr := c.readRequest()
			if perr != nil {
				if perr.status < 400 || perr.status > 599 {
					t.Fatalf("refusal with status %d", perr.status)
				}
				return
			}
			s := &slot{c: c}
			s.setRequest(req)
			if req == nil { // lean: the head view must read as the decoded request would
				checkLeanView(t, s)
			}
			req = s.request()
			if req.Method == "" || (req.ProtoMajor != 1) {
				t.Fatalf("accepted request with method %q proto %d", req.Method, req.ProtoMajor)
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			var out bytes.Buffer
			req.Header.Del("Transfer-Encoding")
			_ = req.Write(&out) // accepted requests are writable (no panic)
			_ = http.StatusOK
		}
	})
}

// checkLeanView compares a lean slot's head view (cache.Request) with the request decoded
// from the same head, as a reverse request whose hop-by-hop fields were stripped.
func checkLeanView(t *testing.T, s *slot) {
	t.Helper()
	s.mode = modeReverse
	if s.leanForward() {
		s.mode = modeForward
		scheme, auth := s.leanURL()
		r, err := s.head.NewRequest()
		if err != nil {
			t.Fatalf("lean head does not decode: %v", err)
		}
		if scheme != r.URL.Scheme || string(auth) != r.URL.Host || r.Host != r.URL.Host {
			t.Fatalf("lean scheme %q authority %q, decoded %q %q (Host %q)", scheme, auth, r.URL.Scheme, r.URL.Host, r.Host)
		}
		lh, lp := leanHostPort(string(auth), scheme)
		if dh, dp := targetHostPort(r.URL.Host, r.URL.Scheme); lh != dh || lp != dp {
			t.Fatalf("lean destination %s port %d, decoded %s port %d", lh, lp, dh, dp)
		}
	}
	s.stripHopByHop()
	got := string(s.AppendURL(nil))
	r := s.request()
	if want := string(cache.AppendTargetURL(nil, r.URL, r.Host)); got != want {
		t.Fatalf("lean URL %q, decoded %q", got, want)
	}
	s.req = nil
	if s.Method() != r.Method {
		t.Fatalf("lean method %q, decoded %q", s.Method(), r.Method)
	}
	names := []string{"Cache-Control", "Pragma", "Connection", "Host", "Transfer-Encoding", "Via", "Expect"}
	for name := range r.Header {
		names = append(names, name)
	}
	for _, name := range names {
		if got, want := s.Values(name), r.Header[name]; !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Fatalf("lean %s = %q, decoded %q", name, got, want)
		}
		if s.HasAny([]string{name}) != (r.Header[name] != nil) {
			t.Fatalf("lean HasAny(%s) disagrees with the decoded request", name)
		}
	}
	s.req = r
}

// TestLongHeaderLineAccepted: a header line longer than the read buffer (8 KiB) but within
// max_header_bytes is read whole and forwarded.
func TestLongHeaderLineAccepted(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	cookie := strings.Repeat("c", 20<<10)
	c.send("GET /long HTTP/1.1\r\nHost: x\r\nCookie: " + cookie + "\r\n\r\n")
	if resp, _ := c.response("GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := o.last().Header.Get("Cookie"); got != cookie {
		t.Errorf("cookie of %d bytes arrived as %d bytes", len(cookie), len(got))
	}
}
