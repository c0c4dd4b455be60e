package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// Limits bound one head.
type Limits struct {
	// MaxBytes caps the head's size, start line and final empty line included (431 beyond).
	MaxBytes int
	// MaxFields caps the number of header fields (431 beyond); 0 = no limit.
	MaxFields int
}

// readLine appends one CRLF-terminated line from br to h's buffer and returns it (with its
// CRLF), enforcing the size limit (ErrHeadTooLarge), the CRLF ending and the absence of bare CR
// and control characters (400). A read failure is returned wrapped, as it is.
func (h *Head) readLine(br *bufio.Reader, max int) ([]byte, error) {
	start := len(h.buf)
	for {
		frag, err := br.ReadSlice('\n')
		if len(h.buf)+len(frag) > max {
			return nil, ErrHeadTooLarge
		}
		h.buf = append(h.buf, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return nil, fmt.Errorf("incomplete head: %w", err)
	}
	line := h.buf[start:]
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, bad("line not terminated by CRLF (bare LF)")
	}
	if i := invalidByte(line[:n-2]); i >= 0 {
		if line[i] == '\r' {
			return nil, bad("bare CR in head")
		}
		return nil, bad("control character 0x%02x in head", line[i])
	}
	return line, nil
}

// readFields reads the field lines up to the empty line, checking each (see checkField).
func (h *Head) readFields(br *bufio.Reader, lim Limits) error {
	for {
		line, err := h.readLine(br, lim.MaxBytes)
		if err != nil {
			return err
		}
		if len(line) == 2 {
			return nil
		}
		if lim.MaxFields > 0 && len(h.fields) >= lim.MaxFields {
			return &Error{Status: 431, Msg: "too many header fields"}
		}
		if err := h.addField(len(h.buf) - len(line)); err != nil {
			return err
		}
	}
}

// addField checks the field line at offset off of the buffer (RFC 9112 §5: no obs-fold, a
// token name right before the colon), records it, and counts the framing fields.
func (h *Head) addField(off int) error {
	line := h.buf[off : len(h.buf)-2]
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return bad("obsolete line folding in header")
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return bad("header line without a field name and colon")
	}
	name := line[:colon]
	if !IsToken(name) {
		return bad("invalid header field name %q", name)
	}
	vs, ve := colon+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	f := field{name: span{int32(off), int32(off + colon)}, value: span{int32(off + vs), int32(off + ve)}}
	h.fields = append(h.fields, f)
	return h.countFraming(name, line[vs:ve])
}

// countFraming checks and counts Content-Length, Transfer-Encoding and Host.
func (h *Head) countFraming(name, value []byte) error {
	switch {
	case equalFold(name, "Content-Length"):
		h.clCount++
		if h.clCount > 1 {
			return bad("duplicate Content-Length")
		}
		n, ok := ParseContentLength(value)
		if !ok {
			return bad("invalid Content-Length %q", value)
		}
		h.ContentLength = n
	case equalFold(name, "Transfer-Encoding") && h.response:
		h.teCount++
		return h.countResponseTE(value)
	case equalFold(name, "Transfer-Encoding"):
		h.teCount++
		if h.teCount > 1 {
			return bad("duplicate Transfer-Encoding")
		}
		if !equalFold(value, "chunked") {
			return bad("unsupported Transfer-Encoding %q (only chunked)", value)
		}
		h.Chunked = true
	case equalFold(name, "Host"):
		h.hostCount++
	}
	return nil
}

// checkFraming rejects the framing combinations that lead to smuggling (RFC 9112 §6.1, §6.3).
func (h *Head) checkFraming() error {
	if h.clCount > 0 && h.teCount > 0 {
		return bad("both Content-Length and Transfer-Encoding")
	}
	if h.teCount > 0 && h.Proto10 {
		return bad("Transfer-Encoding in an HTTP/1.0 message")
	}
	if h.teCount > 0 && !h.Chunked {
		return bad("Transfer-Encoding without chunked as the final coding")
	}
	return nil
}

// ParseContentLength parses a Content-Length value: 1 to 18 ASCII digits, nothing else (no
// sign, no list, no overflow).
func ParseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, b := range v {
		if b < '0' || b > '9' {
			return 0, false
		}
		n = n*10 + int64(b-'0')
	}
	return n, true
}

// parseVersion parses "HTTP/1.1" or "HTTP/1.0": ok10 reports 1.0; other well-formed versions
// give a 505, anything else a 400.
func parseVersion(v []byte) (proto10 bool, err error) {
	switch string(v) {
	case "HTTP/1.1":
		return false, nil
	case "HTTP/1.0":
		return true, nil
	}
	if len(v) == 8 && bytes.HasPrefix(v, []byte("HTTP/")) && v[6] == '.' && isDigit(v[5]) && isDigit(v[7]) {
		return false, &Error{Status: 505, Msg: "only HTTP/1.0 and HTTP/1.1 are supported"}
	}
	return false, bad("malformed HTTP version")
}

// isDigit reports an ASCII digit.
func isDigit(b byte) bool { return b >= '0' && b <= '9' }
