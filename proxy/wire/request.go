package wire

import (
	"bufio"
	"bytes"
	"net"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// RequestHead is a parsed request head (RFC 9112 §3): method, target and version as indexes
// into the bytes read, and the fields (Head). Read checks everything that makes framing
// ambiguous, so a head it accepts has one meaning.
type RequestHead struct {
	Head
	method, target span
}

// Method returns the request method as sent.
func (r *RequestHead) Method() []byte { return r.bytes(r.method) }

// Target returns the request-target as sent.
func (r *RequestHead) Target() []byte { return r.bytes(r.target) }

// Host returns the Host field's value (nil when absent).
func (r *RequestHead) Host() []byte { return r.Get("Host") }

// MethodIs reports whether the method is m (methods are case-sensitive).
func (r *RequestHead) MethodIs(m string) bool { return string(r.Method()) == m }

// HasBody reports whether a body follows the head (Content-Length > 0 or chunked).
func (r *RequestHead) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// Read reads and checks one request head from br (skipping up to four empty lines before it,
// RFC 9112 §2.2). It refuses with an *Error: bare CR or LF, control bytes, obs-fold, whitespace
// before a colon, extra spaces in the request line, invalid methods and targets, a missing,
// duplicate or invalid Host in HTTP/1.1, both Content-Length and Transfer-Encoding, a duplicate
// or non-numeric Content-Length, any Transfer-Encoding but one "chunked", Transfer-Encoding in
// HTTP/1.0 (400); other HTTP versions (505); a head over the limits (431). A read failure is
// returned wrapped as it came.
func (r *RequestHead) Read(br *bufio.Reader, lim Limits) error {
	r.reset()
	if err := r.readRequestLine(br, lim); err != nil {
		return err
	}
	if err := r.readFields(br, lim); err != nil {
		return err
	}
	if err := r.checkFraming(); err != nil {
		return err
	}
	return r.checkHost()
}

// readRequestLine reads the request line and checks its shape.
func (r *RequestHead) readRequestLine(br *bufio.Reader, lim Limits) error {
	for empty := 0; ; empty++ {
		line, err := r.readLine(br, lim.MaxBytes)
		if err != nil {
			return err
		}
		if len(line) > 2 {
			return r.parseRequestLine(len(line) - 2)
		}
		if empty >= 4 {
			return bad("empty request")
		}
		r.buf = r.buf[:0]
	}
}

// parseRequestLine checks method SP target SP version (single spaces, a known version) in
// buf[:n].
func (r *RequestHead) parseRequestLine(n int) error {
	line := r.buf[:n]
	if bytes.Count(line, []byte{' '}) != 2 || bytes.IndexByte(line, '\t') >= 0 {
		return bad("malformed request line")
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	r.method = span{0, int32(sp1)}
	r.target = span{int32(sp1 + 1), int32(sp2)}
	if sp1 == 0 || sp2 == sp1+1 {
		return bad("malformed request line")
	}
	if !IsToken(r.Method()) {
		return bad("invalid method")
	}
	p10, err := parseVersion(line[sp2+1:])
	if err != nil {
		return err
	}
	r.Proto10 = p10
	return checkTarget(r.Method(), r.Target())
}

// checkTarget checks the request-target form against the method (RFC 9112 §3.2).
func checkTarget(method, target []byte) error {
	switch {
	case string(method) == "CONNECT":
		host, port, err := net.SplitHostPort(string(target))
		if err != nil || host == "" || !allDigits(port) {
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
		if s := target[:i]; !equalFold(s, "http") && !equalFold(s, "https") && !equalFold(s, "ftp") {
			return bad("unsupported URL scheme %q", s)
		}
	}
	return nil
}

// OriginForm reports whether the target is origin-form ("/path") or asterisk-form: the
// request's authority is then its Host field.
func (r *RequestHead) OriginForm() bool {
	t := r.Target()
	return t[0] == '/' || string(t) == "*"
}

// checkHost requires exactly one Host in HTTP/1.1 and a valid one when it names the authority.
func (r *RequestHead) checkHost() error {
	if r.hostCount > 1 {
		return bad("duplicate Host")
	}
	if !r.Proto10 && r.hostCount == 0 {
		return bad("missing Host header")
	}
	if r.hostCount == 0 || !r.OriginForm() {
		return nil
	}
	hv := r.Host()
	if !httpguts.ValidHostHeader(string(hv)) || bytes.ContainsAny(hv, " \t/\\@?#") {
		return bad("invalid Host header")
	}
	return nil
}

// allDigits reports a non-empty run of ASCII digits.
func allDigits(v string) bool {
	return v != "" && strings.Trim(v, "0123456789") == ""
}
