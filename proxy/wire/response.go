package wire

import "bufio"

// ResponseHead is a parsed response head (RFC 9112 §4): version, status code and reason as
// indexes into the bytes read, and the fields (Head).
type ResponseHead struct {
	Head
	// Status is the status code.
	Status int
	reason span
}

// Reason returns the reason phrase as sent (possibly empty).
func (r *ResponseHead) Reason() []byte { return r.bytes(r.reason) }

// MaxInterim caps the 1xx responses read before a final one: an origin that sends more is
// faulty (an endless 1xx stream).
const MaxInterim = 16

// Read reads one response head from br, final or interim (1xx; the caller reads on), and
// checks it as strictly as a request head: bare CR or LF, control bytes (NUL, CR in a value),
// obs-fold, an invalid field name, both Content-Length and Transfer-Encoding, two
// Content-Lengths, a Transfer-Encoding list not ending in chunked or with codings other than
// gzip and deflate before it (codings.go), Transfer-Encoding in HTTP/1.0, a
// head over lim — each an *Error (a client answers 502 and closes the connection). A read
// failure is returned wrapped as it came.
func (r *ResponseHead) Read(br *bufio.Reader, lim Limits) error {
	r.reset()
	r.response = true
	line, err := r.readLine(br, lim.MaxBytes)
	if err != nil {
		return err
	}
	if err := r.parseStatusLine(line[:len(line)-2]); err != nil {
		return err
	}
	if err := r.readFields(br, lim); err != nil {
		return err
	}
	return r.checkFraming()
}

// parseStatusLine checks HTTP-version SP 3DIGIT [SP reason].
func (r *ResponseHead) parseStatusLine(line []byte) error {
	if len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return bad("malformed status line %q", line)
	}
	p10, err := parseVersion(line[:8])
	if err != nil {
		return err
	}
	r.Proto10 = p10
	if !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) || line[9] == '0' {
		return bad("malformed status code %q", line[9:12])
	}
	r.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	r.reason = span{12, int32(len(line))}
	if len(line) > 12 {
		r.reason.off = 13
	}
	return nil
}

// Interim reports a 1xx response other than 101 (a final answer to an upgrade).
func (r *ResponseHead) Interim() bool { return r.Status >= 100 && r.Status < 200 && r.Status != 101 }

// BodyLength says how the body after this head is framed (RFC 9112 §6.3) for a request with
// method HEAD or not: 0 for none (HEAD, 1xx, 204, 304), n >= 0 for a Content-Length, Chunked
// (see the field), or -1 for a body delimited by the connection's close.
func (r *ResponseHead) BodyLength(head bool) int64 {
	switch {
	case head || r.Status < 200 || r.Status == 204 || r.Status == 304:
		return 0
	case r.Chunked:
		return -1
	case r.ContentLength >= 0:
		return r.ContentLength
	}
	return -1
}

// Bodiless reports whether the response has no body at all for the request (HEAD, 1xx, 204,
// 304), whatever its Content-Length says.
func (r *ResponseHead) Bodiless(head bool) bool {
	return head || r.Status < 200 || r.Status == 204 || r.Status == 304
}

// KeepAlive reports whether the connection may carry another exchange after this response:
// HTTP/1.1 without Connection: close, HTTP/1.0 with Connection: keep-alive, and a body that
// ends by its framing (not by closing).
func (r *ResponseHead) KeepAlive(head bool) bool {
	if r.HasToken("Connection", "close") {
		return false
	}
	if r.Proto10 && !r.HasToken("Connection", "keep-alive") {
		return false
	}
	return r.Bodiless(head) || r.Chunked || r.ContentLength >= 0
}

// AppendField appends "name: value\r\n" to b, the value sanitised (SanitizeValue).
func AppendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, SanitizeValue(value)...)
	return append(b, "\r\n"...)
}
