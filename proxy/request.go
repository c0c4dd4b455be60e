package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// protoError is a request the proxy refuses before anything is sent upstream: the status to
// answer with and a short explanation for the client and the log.
type protoError struct {
	status int
	msg    string
	extra  string // extra response header lines, each ending in CRLF
}

// Error renders the refusal.
func (e *protoError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

// bad returns a 400 refusal.
func bad(format string, args ...any) *protoError {
	return &protoError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

var (
	errHeaderTooLarge = &protoError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "request header too large"}
	errBodyTooLarge   = &protoError{status: http.StatusRequestEntityTooLarge, msg: "request body too large"}
)

// head is what the raw scan of a request head found, before net/http parses it.
type head struct {
	clCount, teCount, hostCount int
	cl                          int64
	proto10                     bool
}

// readRequest reads one request head, checks its raw bytes for everything that makes framing
// ambiguous (the request smuggling defences), parses it with http.ReadRequest and attaches a
// body reader framed by the proxy itself. The caller has seen at least one byte arrive.
func (c *conn) readRequest() (*http.Request, *protoError) {
	c.hdr = c.hdr[:0]
	var h head
	if perr := c.readRequestLine(&h); perr != nil {
		return nil, perr
	}
	for fields := 0; ; fields++ {
		start := len(c.hdr)
		line, perr := c.readLine()
		if perr != nil {
			return nil, perr
		}
		if len(line) == 2 {
			break
		}
		if fields >= c.srv.cfg.MaxHeaderFields {
			return nil, &protoError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "too many header fields"}
		}
		if perr := checkField(line, &h); perr != nil {
			c.hdr = c.hdr[:start]
			return nil, perr
		}
	}
	if perr := h.checkFraming(); perr != nil {
		return nil, perr
	}
	c.hrd.Reset(c.hdr)
	c.hbr.Reset(&c.hrd)
	req, err := http.ReadRequest(c.hbr)
	if err != nil {
		return nil, bad("malformed request: %v", err)
	}
	if perr := c.checkParsed(req, &h); perr != nil {
		return nil, perr
	}
	return req, nil
}

// readRequestLine reads the request line (skipping a few empty lines before it, RFC 9112
// §2.2) and checks its shape: method SP request-target SP HTTP-version.
func (c *conn) readRequestLine(h *head) *protoError {
	for empty := 0; ; empty++ {
		line, perr := c.readLine()
		if perr != nil {
			return perr
		}
		if len(line) > 2 {
			return checkRequestLine(line[:len(line)-2], h)
		}
		if empty >= 4 {
			return bad("empty request")
		}
		c.hdr = c.hdr[:0]
	}
}

// readLine appends one CRLF-terminated line to c.hdr and returns it, enforcing the header size
// limit (431), bare CR/LF and control characters (400).
func (c *conn) readLine() ([]byte, *protoError) {
	start := len(c.hdr)
	max := int(c.srv.cfg.MaxHeaderBytes)
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(c.hdr)+len(frag) > max {
			return nil, errHeaderTooLarge
		}
		c.hdr = append(c.hdr, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return nil, readError(err)
	}
	line := c.hdr[start:]
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, bad("line not terminated by CRLF (bare LF)")
	}
	for _, b := range line[:n-2] {
		if b == '\r' {
			return nil, bad("bare CR in request head")
		}
		if (b < 0x20 && b != '\t') || b == 0x7f {
			return nil, bad("control character 0x%02x in request head", b)
		}
	}
	return line, nil
}

// readError maps a read failure inside a request head to its answer.
func readError(err error) *protoError {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &protoError{status: http.StatusRequestTimeout, msg: "timed out reading the request head"}
	}
	return bad("incomplete request head: %v", err)
}

// checkRequestLine checks method SP target SP version, with single spaces and a known version.
func checkRequestLine(line []byte, h *head) *protoError {
	if bytes.Count(line, []byte{' '}) != 2 || bytes.IndexByte(line, '\t') >= 0 {
		return bad("malformed request line")
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	method, target, version := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	if len(method) == 0 || len(target) == 0 {
		return bad("malformed request line")
	}
	for _, b := range method {
		if !httpguts.IsTokenRune(rune(b)) {
			return bad("invalid method")
		}
	}
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.proto10 = true
	default:
		if len(version) == 8 && bytes.HasPrefix(version, []byte("HTTP/")) && version[6] == '.' &&
			isDigit(version[5]) && isDigit(version[7]) {
			return &protoError{status: http.StatusHTTPVersionNotSupported, msg: "only HTTP/1.0 and HTTP/1.1 are supported"}
		}
		return bad("malformed HTTP version")
	}
	return checkTarget(method, target)
}

// checkTarget checks the request-target form against the method (RFC 9112 §3.2).
func checkTarget(method, target []byte) *protoError {
	switch {
	case string(method) == "CONNECT":
		host, port, err := net.SplitHostPort(string(target))
		if err != nil || host == "" || !allDigits([]byte(port)) {
			return bad("CONNECT needs an authority-form target host:port")
		}
	case string(target) == "*":
		if string(method) != "OPTIONS" {
			return bad("asterisk-form target is only for OPTIONS")
		}
	case target[0] == '/':
	default:
		i := bytes.Index(target, []byte("://"))
		if i <= 0 {
			return bad("request target is neither origin-form nor absolute-form")
		}
		switch string(bytes.ToLower(target[:i])) {
		case "http", "https", "ftp":
		default:
			return bad("unsupported URL scheme %q", target[:i])
		}
	}
	return nil
}

// checkField checks one header field line (with its CRLF) and counts the framing fields.
func checkField(line []byte, h *head) *protoError {
	if line[0] == ' ' || line[0] == '\t' {
		return bad("obsolete line folding in header")
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return bad("header line without a field name and colon")
	}
	name := line[:colon]
	for _, b := range name {
		if !httpguts.IsTokenRune(rune(b)) {
			return bad("invalid header field name %q", name)
		}
	}
	value := bytes.Trim(line[colon+1:len(line)-2], " \t")
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		h.clCount++
		if h.clCount > 1 {
			return bad("duplicate Content-Length")
		}
		if len(value) == 0 || len(value) > 18 || !allDigits(value) {
			return bad("invalid Content-Length %q", value)
		}
		h.cl = parseDigits(value)
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		h.teCount++
		if h.teCount > 1 {
			return bad("duplicate Transfer-Encoding")
		}
		if !bytes.EqualFold(value, []byte("chunked")) {
			return bad("unsupported Transfer-Encoding %q (only chunked)", value)
		}
	case bytes.EqualFold(name, []byte("Host")):
		h.hostCount++
		if h.hostCount > 1 {
			return bad("duplicate Host")
		}
	}
	return nil
}

// checkFraming rejects the framing combinations that lead to smuggling (RFC 9112 §6.1, §6.3).
func (h *head) checkFraming() *protoError {
	if h.clCount > 0 && h.teCount > 0 {
		return bad("both Content-Length and Transfer-Encoding")
	}
	if h.teCount > 0 && h.proto10 {
		return bad("Transfer-Encoding in an HTTP/1.0 request")
	}
	if !h.proto10 && h.hostCount == 0 {
		return bad("missing Host header")
	}
	return nil
}

// checkParsed checks what net/http parsed and attaches the proxy's own body reader.
func (c *conn) checkParsed(req *http.Request, h *head) *protoError {
	if hv := req.Host; h.hostCount > 0 && req.URL.Host == "" && (!httpguts.ValidHostHeader(hv) || strings.ContainsAny(hv, " \t/\\@?#")) {
		return bad("invalid Host header")
	}
	max := int64(c.srv.cfg.MaxBodySize)
	switch {
	case h.teCount > 0:
		c.body = newBodyReader(c, -1, max)
		req.Body, req.ContentLength = c.body, -1
	case h.cl > 0:
		if max > 0 && h.cl > max {
			return errBodyTooLarge
		}
		c.body = newBodyReader(c, h.cl, max)
		req.Body, req.ContentLength = c.body, h.cl
	default:
		c.body = nil
		req.Body, req.ContentLength = http.NoBody, 0
	}
	return nil
}

// bodyReader reads a request body from the connection, framed by the proxy: a Content-Length
// or the chunked coding (trailers read and dropped). It sends 100 Continue before the first
// read when the client asked for it. The upstream transport may still read it after the
// response is out, so reads are serialised with settle, which takes the body back.
type bodyReader struct {
	c         *conn
	s         *slot // the request's slot (set once the slot exists)
	mu        sync.Mutex
	chunked   io.Reader // chunked decoder, nil for Content-Length bodies
	left      int64     // bytes left (Content-Length bodies)
	read      int64     // bytes read so far
	max       int64     // body size limit (0 = none)
	expect    bool      // 100 Continue still to be sent (set by policy before any read)
	done      bool
	abandoned bool // the connection took the body back: reads fail
	err       error
}

// errBodyAbandoned is what a late reader of a finished request's body gets.
var errBodyAbandoned = errors.New("proxy: request body no longer available")

// newBodyReader returns a reader for a body of length n (n < 0: chunked).
func newBodyReader(c *conn, n, max int64) *bodyReader {
	b := &bodyReader{c: c, left: n, max: max}
	if n < 0 {
		b.chunked = httputil.NewChunkedReader(c.br)
		b.left = 0
	}
	return b
}

// Read reads decoded body bytes.
func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.abandoned {
		return 0, errBodyAbandoned
	}
	return b.readLocked(p)
}

// readLocked reads with b.mu held.
func (b *bodyReader) readLocked(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if b.expect {
		b.expect = false
		b.c.writeContinue(b.s)
	}
	b.c.setReadDeadline(time.Now().Add(b.c.srv.cfg.ReadTimeout))
	var n int
	var err error
	if b.chunked != nil {
		n, err = b.chunked.Read(p)
		if errors.Is(err, io.EOF) {
			err = b.readTrailers()
		} else if err != nil {
			err = bad("malformed chunked body: %v", err)
		}
	} else {
		n, err = b.readLength(p)
	}
	b.read += int64(n)
	if b.max > 0 && b.read > b.max {
		err = errBodyTooLarge
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// settle takes the body back once the response is written: a short unread rest is drained so
// the connection can go on; it reports whether the body was read to its end. A read still in
// progress elsewhere (the upstream transport) is interrupted, and the connection must close.
func (b *bodyReader) settle() bool {
	if !b.mu.TryLock() {
		b.c.setReadDeadline(time.Now())
		b.mu.Lock()
		b.abandoned = true
		b.mu.Unlock()
		return false
	}
	defer b.mu.Unlock()
	if !b.done && !b.expect && b.err == nil {
		buf := make([]byte, 4096)
		for drained := 0; drained < 256<<10 && !b.done && b.err == nil; {
			n, err := b.readLocked(buf)
			drained += n
			if err != nil {
				break
			}
		}
	}
	b.abandoned = true
	return b.done && b.err == nil
}

// readLength reads within the Content-Length.
func (b *bodyReader) readLength(p []byte) (int, error) {
	if b.left == 0 {
		b.done = true
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.c.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		b.done = true
		return n, nil
	}
	if errors.Is(err, io.EOF) {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// readTrailers consumes the trailer section after the last chunk (dropped, size-limited).
func (b *bodyReader) readTrailers() error {
	total := 0
	for {
		line, err := b.c.br.ReadSlice('\n')
		total += len(line)
		if err != nil || total > int(b.c.srv.cfg.MaxHeaderBytes) {
			return bad("malformed chunked trailer section")
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return bad("trailer line not terminated by CRLF")
		}
		if len(line) == 2 {
			b.done = true
			return io.EOF
		}
		if line[0] == ' ' || line[0] == '\t' || bytes.IndexByte(line, ':') <= 0 {
			return bad("malformed trailer field")
		}
	}
}

// Close is a no-op: the connection settles the body after the response (see settle).
func (b *bodyReader) Close() error { return nil }

// isDigit reports an ASCII digit.
func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// allDigits reports a non-empty run of ASCII digits.
func allDigits(v []byte) bool {
	for _, b := range v {
		if !isDigit(b) {
			return false
		}
	}
	return len(v) > 0
}

// parseDigits parses at most 18 ASCII digits.
func parseDigits(v []byte) int64 {
	var n int64
	for _, b := range v {
		n = n*10 + int64(b-'0')
	}
	return n
}
