// Package wire is Outpost's one owner of the HTTP/1.1 wire format (RFC 9112): request and
// response heads parsed into indexes over the bytes read (no map, no strings until asked),
// serialising them, body framing (Content-Length, chunked, close-delimited), the hop-by-hop
// field list, field-value checks and status lines. The front end, the upstream client and the
// cache's stored heads all use it, so each rule lives in one place.
package wire

import (
	"bytes"
	"fmt"
	"iter"
)

// Error is a head or body the parser refuses: the status a server answers with (400, 413, 431,
// 505; a client maps every one to 502) and a short explanation.
type Error struct {
	Status int
	Msg    string
}

// Error renders the refusal.
func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

// bad returns a 400 refusal.
func bad(format string, args ...any) *Error {
	return &Error{Status: 400, Msg: fmt.Sprintf(format, args...)}
}

// ErrHeadTooLarge is a head over its byte or field limit.
var ErrHeadTooLarge = &Error{Status: 431, Msg: "header too large"}

// span is a byte range [off, end) of a head's buffer.
type span struct{ off, end int32 }

// field is one header field line: its name and its value (outer whitespace trimmed).
type field struct{ name, value span }

// Head is a parsed field section with the bytes it was read from: the start line and each
// field are indexes into Bytes, decoded only when asked. Its buffers are reused by the next
// parse, so what the accessors return is valid until then. The zero value is ready to use.
type Head struct {
	buf    []byte
	fields []field

	// ContentLength is the Content-Length field's value, -1 when absent.
	ContentLength int64
	// Chunked is true when the body is in the chunked transfer coding.
	Chunked bool
	// Proto10 is true for an HTTP/1.0 message (otherwise HTTP/1.1).
	Proto10 bool

	clCount, teCount, hostCount int
	response                    bool     // a response head: Transfer-Encoding may be a list (codings.go)
	codings                     []Coding // a response's transfer codings before chunked
}

// Bytes returns the raw head as read, start line and fields, each line ending in CRLF, with the
// final empty line.
func (h *Head) Bytes() []byte { return h.buf }

// Len returns the number of header fields.
func (h *Head) Len() int { return len(h.fields) }

// Field returns field i's name (as sent) and value (outer whitespace trimmed).
func (h *Head) Field(i int) (name, value []byte) {
	f := h.fields[i]
	return h.bytes(f.name), h.bytes(f.value)
}

// bytes returns the buffer's bytes in s.
func (h *Head) bytes(s span) []byte { return h.buf[s.off:s.end:s.end] }

// Get returns the first value of the field named name (case-insensitive), nil when absent.
func (h *Head) Get(name string) []byte {
	for _, f := range h.fields {
		if equalFold(h.bytes(f.name), name) {
			return h.bytes(f.value)
		}
	}
	return nil
}

// Has reports whether a field named name (case-insensitive) is present.
func (h *Head) Has(name string) bool {
	for _, f := range h.fields {
		if equalFold(h.bytes(f.name), name) {
			return true
		}
	}
	return false
}

// Values yields every value of the field named name (case-insensitive), in order.
func (h *Head) Values(name string) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for _, f := range h.fields {
			if equalFold(h.bytes(f.name), name) && !yield(h.bytes(f.value)) {
				return
			}
		}
	}
}

// HasToken reports whether any value of the comma-separated field name lists token
// (case-insensitive), as in Connection: close.
func (h *Head) HasToken(name, token string) bool {
	for v := range h.Values(name) {
		if ListHasToken(v, token) {
			return true
		}
	}
	return false
}

// reset empties h for the next parse, keeping its buffers.
func (h *Head) reset() {
	h.buf = h.buf[:0]
	h.fields = h.fields[:0]
	h.ContentLength = -1
	h.Chunked, h.Proto10 = false, false
	h.clCount, h.teCount, h.hostCount = 0, 0, 0
	h.response, h.codings = false, h.codings[:0]
}

// ListHasToken reports whether the comma-separated list v contains token (case-insensitive).
func ListHasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte{','})
		if equalFold(bytes.Trim(tok, " \t"), token) {
			return true
		}
	}
	return false
}

// equalFold compares ASCII case-insensitively without allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x|0x20 != y|0x20 || (x|0x20 < 'a' || x|0x20 > 'z') && x != y {
			return false
		}
	}
	return true
}
