package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Limits of the response reader: a response that breaks one is a protocol error, not a hang.
const (
	maxHeaderLines = 200
	maxBodyKept    = 16 << 20
)

// errProtocol marks a malformed response.
var errProtocol = errors.New("malformed HTTP response")

// cacheOutcome is what a response's Cache-Status header (RFC 9211) says about the cache
// nearest to the client.
type cacheOutcome uint8

const (
	cacheUnknown cacheOutcome = iota // no Cache-Status header
	cacheHit
	cacheMiss
)

// response is what the bench needs from one HTTP/1.x response.
type response struct {
	status   int
	bodyLen  int64        // body bytes, after de-chunking
	close    bool         // the server closes the connection after this response
	cache    cacheOutcome // from Cache-Status
	body     []byte       // the body, when the reader keeps bodies
	wireSize int64        // head and body bytes as they came over the wire
	// cacheStatus is the raw Cache-Status value (every cache's member), kept with bodies.
	cacheStatus string
}

// respReader reads HTTP/1.x responses from a stream with few allocations. It understands what
// a client must (status line, Content-Length, chunked coding, Connection, bodiless statuses)
// and nothing else.
type respReader struct {
	br       *bufio.Reader
	keepBody bool
}

// newRespReader reads from r; keepBody keeps each body in response.body.
func newRespReader(r io.Reader, keepBody bool) *respReader {
	return &respReader{br: bufio.NewReaderSize(r, 32<<10), keepBody: keepBody}
}

// read reads the next final response (skipping 1xx) to a request; head says the request was
// HEAD (no body follows).
func (r *respReader) read(head bool, resp *response) error {
	*resp = response{body: resp.body[:0]}
	for {
		te, cl, err := r.readHead(resp)
		if err != nil {
			return err
		}
		if resp.status >= 100 && resp.status < 200 && resp.status != 101 {
			continue
		}
		if head || resp.status == 204 || resp.status == 304 || resp.status < 200 {
			return nil
		}
		return r.readBody(resp, te, cl)
	}
}

// line returns the next line without its CRLF or LF; the slice is valid until the next read.
func (r *respReader) line(resp *response) ([]byte, error) {
	l, err := r.br.ReadSlice('\n')
	resp.wireSize += int64(len(l))
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errProtocol, r.br.Size())
		}
		if errors.Is(err, io.EOF) && len(l) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l = l[:len(l)-1]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	return l, nil
}

// readHead parses the status line and header fields; it returns whether the body is chunked
// and its Content-Length (-1 when absent).
func (r *respReader) readHead(resp *response) (chunked bool, cl int64, err error) {
	l, err := r.line(resp)
	if err != nil {
		return false, 0, err
	}
	minor, status, ok := parseStatusLine(l)
	if !ok {
		return false, 0, fmt.Errorf("%w: status line %q", errProtocol, trunc(l))
	}
	resp.status, resp.close = status, minor == 0
	cl = -1
	for i := 0; ; i++ {
		if i > maxHeaderLines {
			return false, 0, fmt.Errorf("%w: more than %d header lines", errProtocol, maxHeaderLines)
		}
		l, err := r.line(resp)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return false, 0, err
		}
		if len(l) == 0 {
			return chunked, cl, nil
		}
		name, value, ok := bytes.Cut(l, []byte{':'})
		if !ok || len(name) == 0 {
			return false, 0, fmt.Errorf("%w: header line %q", errProtocol, trunc(l))
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (cl >= 0 && n != cl) {
				return false, 0, fmt.Errorf("%w: Content-Length %q", errProtocol, trunc(value))
			}
			cl = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = hasToken(value, "chunked")
		case bytes.EqualFold(name, []byte("Connection")):
			if hasToken(value, "close") {
				resp.close = true
			} else if hasToken(value, "keep-alive") {
				resp.close = false
			}
		case bytes.EqualFold(name, []byte("Cache-Status")):
			resp.cache = parseCacheStatus(value)
			if r.keepBody {
				resp.cacheStatus = string(value)
			}
		}
	}
}

// parseStatusLine parses "HTTP/1.x SSS reason".
func parseStatusLine(l []byte) (minor, status int, ok bool) {
	if len(l) < 12 || !bytes.HasPrefix(l, []byte("HTTP/1.")) || l[8] != ' ' {
		return 0, 0, false
	}
	if l[7] != '0' && l[7] != '1' {
		return 0, 0, false
	}
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
	}
	if len(l) > 12 && l[12] != ' ' {
		return 0, 0, false
	}
	status = int(l[9]-'0')*100 + int(l[10]-'0')*10 + int(l[11]-'0')
	return int(l[7] - '0'), status, status >= 100
}

// readBody reads the body framed by chunked coding, Content-Length or the connection's end.
func (r *respReader) readBody(resp *response, chunked bool, cl int64) error {
	switch {
	case chunked:
		return r.readChunked(resp)
	case cl >= 0:
		return r.take(resp, cl)
	default:
		resp.close = true
		return r.take(resp, -1)
	}
}

// take consumes n body bytes (n < 0: until EOF), keeping them when asked.
func (r *respReader) take(resp *response, n int64) error {
	if r.keepBody {
		if n > maxBodyKept {
			return fmt.Errorf("%w: body of %d bytes is larger than %d", errProtocol, n, maxBodyKept)
		}
		var src io.Reader = r.br
		if n >= 0 {
			src = io.LimitReader(r.br, n)
		} else {
			src = io.LimitReader(r.br, maxBodyKept+1)
		}
		buf := bytes.NewBuffer(resp.body)
		got, err := buf.ReadFrom(src)
		resp.body = buf.Bytes()
		resp.bodyLen += got
		resp.wireSize += got
		if n >= 0 && got < n {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if n < 0 {
		got, err := io.Copy(io.Discard, r.br)
		resp.bodyLen += got
		resp.wireSize += got
		return err
	}
	got, err := r.br.Discard(int(n))
	resp.bodyLen += int64(got)
	resp.wireSize += int64(got)
	if err != nil && errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readChunked reads a chunked body (RFC 9112 §7.1) and its trailer section.
func (r *respReader) readChunked(resp *response) error {
	for {
		l, err := r.line(resp)
		if err != nil {
			return eofIsUnexpected(err)
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		size, err := strconv.ParseUint(string(bytes.TrimSpace(l)), 16, 62)
		if err != nil {
			return fmt.Errorf("%w: chunk size %q", errProtocol, trunc(l))
		}
		if size == 0 {
			break
		}
		if err := r.take(resp, int64(size)); err != nil {
			return err
		}
		if l, err := r.line(resp); err != nil || len(l) != 0 {
			if err != nil {
				return eofIsUnexpected(err)
			}
			return fmt.Errorf("%w: chunk not followed by CRLF", errProtocol)
		}
	}
	for i := 0; ; i++ {
		l, err := r.line(resp)
		if err != nil {
			return eofIsUnexpected(err)
		}
		if len(l) == 0 {
			return nil
		}
		if i > maxHeaderLines {
			return fmt.Errorf("%w: more than %d trailer lines", errProtocol, maxHeaderLines)
		}
	}
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// hasToken reports whether the comma-separated list v holds token (case-insensitive).
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte{','})
		if bytes.EqualFold(bytes.TrimSpace(item), []byte(token)) {
			return true
		}
	}
	return false
}

// parseCacheStatus reads the last member of a Cache-Status list (RFC 9211 §2: the cache
// closest to the client comes last): "hit" means a hit, "fwd=" a miss.
func parseCacheStatus(v []byte) cacheOutcome {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	_, params, _ := bytes.Cut(v, []byte{';'})
	out := cacheUnknown
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte{';'})
		p = bytes.TrimSpace(p)
		key, _, _ := bytes.Cut(p, []byte{'='})
		switch {
		case bytes.EqualFold(key, []byte("hit")):
			return cacheHit
		case bytes.EqualFold(key, []byte("fwd")):
			out = cacheMiss
		}
	}
	return out
}

func trunc(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}

// target is where a request goes: the address to connect to and the request-target to send.
type target struct {
	addr string // host:port to dial
	host string // Host header
	path string // request-target: origin-form, or absolute-form through a forward proxy
	tls  bool   // an https:// URL: TLS to addr
}

// parseTarget parses an http:// or https:// URL; a non-empty proxy address sends the request
// in absolute form to the proxy instead (a forward proxy, http:// URLs only).
func parseTarget(raw, proxy string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("url %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return target{}, fmt.Errorf("url %q: want http://host[:port]/path or https://host[:port]/path", raw)
	}
	t := target{addr: u.Host, host: u.Host, path: u.RequestURI(), tls: u.Scheme == "https"}
	if u.Port() == "" {
		t.addr = u.Host + ":80"
		if t.tls {
			t.addr = u.Host + ":443"
		}
	}
	if proxy != "" && t.tls {
		return target{}, fmt.Errorf("url %q: https through --proxy (CONNECT) is not supported", raw)
	}
	if proxy != "" {
		pu, err := url.Parse(proxy)
		if err != nil || pu.Host == "" {
			return target{}, fmt.Errorf("proxy %q: want http://host:port", proxy)
		}
		t.addr = pu.Host
		t.path = (&url.URL{Scheme: "http", Host: u.Host, Path: u.Path, RawQuery: u.RawQuery}).String()
	}
	return t, nil
}

// requestOptions shapes the request bytes.
type requestOptions struct {
	http10    bool // HTTP/1.0 request line
	keepAlive bool // ask to keep the connection open
	head      bool // HEAD instead of GET
}

// buildRequest returns the bytes of one request, built once and written many times.
func buildRequest(t target, o requestOptions) []byte {
	var b strings.Builder
	method, proto := "GET", "HTTP/1.1"
	if o.head {
		method = "HEAD"
	}
	if o.http10 {
		proto = "HTTP/1.0"
	}
	fmt.Fprintf(&b, "%s %s %s\r\nHost: %s\r\nUser-Agent: outpost-bench\r\n", method, t.path, proto, t.host)
	switch {
	case o.http10 && o.keepAlive:
		b.WriteString("Connection: keep-alive\r\n")
	case !o.http10 && !o.keepAlive:
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}
