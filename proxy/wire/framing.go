package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// ErrBodyTooLarge is a body over the caller's limit.
var ErrBodyTooLarge = &Error{Status: 413, Msg: "body too large"}

// maxChunkSize bounds one chunk's size: larger sizes are refused as overflow.
const maxChunkSize = 1 << 62

// maxChunkLine bounds a chunk-size line with its extensions.
const maxChunkLine = 4096

// BodyReader reads one message body framed by Content-Length, the chunked coding or the
// connection's close, from the connection's reader. It never reads past the body, so the
// connection's next message starts where it stops. The zero value is unusable: Reset it.
type BodyReader struct {
	br *bufio.Reader
	// left is what remains: bytes of the Content-Length body, or of the current chunk.
	left    int64
	mode    uint8
	done    bool
	err     error
	trailer http.Header
	// TrailerLimit caps the chunked trailer section's bytes (default 64 KiB).
	TrailerLimit int
}

// body framing modes
const (
	modeLength = iota
	modeChunked
	modeClose
)

// Reset prepares b to read a body of length n from br: n >= 0 a Content-Length, n < 0 with
// chunked the chunked coding, n < 0 without it a body delimited by closing. When trailer is not
// nil, a chunked body's trailer fields are added to it (canonical names, hop-by-hop and framing
// fields dropped).
func (b *BodyReader) Reset(br *bufio.Reader, n int64, chunked bool, trailer http.Header) {
	*b = BodyReader{br: br, left: n, trailer: trailer, TrailerLimit: b.TrailerLimit}
	switch {
	case chunked:
		b.mode, b.left = modeChunked, -1
	case n < 0:
		b.mode = modeClose
	case n == 0:
		b.done = true
	}
}

// Done reports whether the body was read to its end.
func (b *BodyReader) Done() bool { return b.done }

// Read reads decoded body bytes. A malformed chunked body is an *Error (400); a body cut short
// is io.ErrUnexpectedEOF.
func (b *BodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	var n int
	var err error
	switch b.mode {
	case modeLength:
		n, err = b.readLength(p)
	case modeChunked:
		n, err = b.readChunked(p)
	default:
		n, err = b.br.Read(p)
		if err == io.EOF {
			b.done = true
		}
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// readLength reads within the Content-Length.
func (b *BodyReader) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
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

// readChunked reads chunk data, reading the next chunk-size line (and the CRLF after the
// previous chunk) when the current chunk is used up.
func (b *BodyReader) readChunked(p []byte) (int, error) {
	if b.left <= 0 {
		if b.left == 0 {
			if err := b.chunkEnd(); err != nil {
				return 0, err
			}
		}
		n, err := b.chunkSize()
		if err != nil {
			return 0, err
		}
		if n == 0 {
			if err := b.readTrailer(); err != nil {
				return 0, err
			}
			b.done = true
			return 0, io.EOF
		}
		b.left = n
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if errors.Is(err, io.EOF) {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// chunkEnd consumes the CRLF that ends a chunk's data.
func (b *BodyReader) chunkEnd() error {
	var crlf [2]byte
	if _, err := io.ReadFull(b.br, crlf[:]); err != nil {
		return unexpected(err)
	}
	if crlf != [2]byte{'\r', '\n'} {
		return bad("chunk data not followed by CRLF")
	}
	return nil
}

// chunkSize reads one chunk-size line: hex digits, optional extensions after ';', CRLF.
func (b *BodyReader) chunkSize() (int64, error) {
	line, err := b.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, bad("chunk-size line too long")
		}
		return 0, unexpected(err)
	}
	return ParseChunkSize(line)
}

// ParseChunkSize parses a chunk-size line with its CRLF (RFC 9112 §7.1): 1–16 hex digits, no
// sign or prefix, optionally whitespace and ";" extensions (ignored), no bare CR or LF or
// control bytes.
func ParseChunkSize(line []byte) (int64, error) {
	n := len(line)
	if n < 3 || line[n-2] != '\r' || line[n-1] != '\n' {
		return 0, bad("chunk-size line not terminated by CRLF")
	}
	line = line[:n-2]
	if len(line) > maxChunkLine {
		return 0, bad("chunk-size line too long")
	}
	if invalidByte(line) >= 0 {
		return 0, bad("control character in chunk-size line")
	}
	size, _, hasExt := bytes.Cut(line, []byte{';'})
	if hasExt {
		size = bytes.TrimRight(size, " \t")
	}
	if len(size) == 0 || len(size) > 16 {
		return 0, bad("invalid chunk size %q", size)
	}
	var v uint64
	for _, c := range size {
		d := unhex(c)
		if d < 0 {
			return 0, bad("invalid chunk size %q", size)
		}
		v = v<<4 | uint64(d)
	}
	if v >= maxChunkSize {
		return 0, bad("chunk size %q overflows", size)
	}
	return int64(v), nil
}

// unhex returns a hex digit's value, -1 for other bytes.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// readTrailer reads the trailer section after the last chunk, up to its empty line.
func (b *BodyReader) readTrailer() error {
	limit := b.TrailerLimit
	if limit <= 0 {
		limit = 64 << 10
	}
	var t Head
	t.reset()
	if err := t.readFields(b.br, Limits{MaxBytes: limit}); err != nil {
		var werr *Error
		if errors.As(err, &werr) {
			return bad("malformed chunked trailer section: %s", werr.Msg)
		}
		return unexpected(err)
	}
	if b.trailer == nil {
		return nil
	}
	for i := range t.Len() {
		name, value := t.Field(i)
		key := http.CanonicalHeaderKey(string(name))
		if IsHopByHop(key) || key == "Content-Length" {
			continue
		}
		b.trailer[key] = append(b.trailer[key], string(value))
	}
	return nil
}

// unexpected maps the end of input inside a body to io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ChunkedWriter writes a body in the chunked coding to w: each Write is one chunk, Close the
// last chunk (the trailer section is the caller's, then the final CRLF).
type ChunkedWriter struct {
	w   *bufio.Writer
	tmp [20]byte
}

// NewChunkedWriter returns a ChunkedWriter on w.
func NewChunkedWriter(w *bufio.Writer) ChunkedWriter { return ChunkedWriter{w: w} }

// Write writes p as one chunk (nothing for an empty p: that would end the body).
func (c *ChunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	hdr := strconv.AppendUint(c.tmp[:0], uint64(len(p)), 16)
	hdr = append(hdr, '\r', '\n')
	if _, err := c.w.Write(hdr); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if err != nil {
		return n, err
	}
	_, err = c.w.WriteString("\r\n")
	return n, err
}

// Close writes the last chunk, "0\r\n"; the trailer fields and the final CRLF follow.
func (c *ChunkedWriter) Close() error {
	_, err := c.w.WriteString("0\r\n")
	return err
}
