package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

var (
	errBroken  = errors.New("proxy: client connection closed")
	errWritten = errors.New("proxy: a response was already written for this request")
)

// WriteStored writes an in-memory response from the cache (see cache.ResponseWriter). At the
// head of the pipeline it goes straight into the output buffer; otherwise head and body are
// kept by reference and extra is copied, for the head to write in order. It does not allocate
// once the slot's extra buffer has grown.
func (s *slot) WriteStored(head, extra, body []byte) error {
	if s.written {
		return errWritten
	}
	s.written = true
	if s.h2 != nil {
		return s.writeStoredH2(head, extra, body)
	}
	return s.writeOrStash(head, extra, body)
}

// largeBody is the size from which a stored body is not copied into the output buffer but
// written from the cache's memory, in one writev with what the buffer holds (see
// deadlineWriter.tail).
const largeBody = 4 << 10

// writeStoredLocked writes a stored response into the output buffer (s is the head). A large
// body leaves at once, with the buffered output before it, in one writev and without a copy.
func (s *slot) writeStoredLocked(head, extra, body []byte) {
	c := s.c
	bw := c.bw
	_, _ = bw.Write(head)
	_, _ = bw.Write(extra)
	n := len(head) + len(extra) + 2 + s.writeConnFields()
	_, _ = bw.WriteString("\r\n")
	switch {
	case s.isHEAD || len(body) == 0:
	case len(body) < largeBody:
		_, _ = bw.Write(body)
		n += len(body)
	default:
		c.dw.tail = body
		err := bw.Flush()
		c.dw.tail = nil
		if err != nil {
			c.breakLocked()
		}
		n += len(body)
	}
	s.status = wire.StatusOf(head)
	s.ctype = fieldValue(head, "\r\nContent-Type:")
	s.bytesOut += int64(n)
}

// writeConnFields appends the proxy's own fields, Via and the connection's persistence, and
// returns how many bytes that took.
func (s *slot) writeConnFields() int {
	bw := s.c.bw
	n, _ := bw.Write(s.c.srv.viaLine)
	var m int
	switch {
	case s.closeAfter:
		m, _ = bw.WriteString("Connection: close\r\n")
	case s.proto10:
		m, _ = bw.Write(s.c.srv.keepAliveLine)
	}
	return n + m
}

// fieldValue returns the value of the field whose "\r\nName:" prefix is given, from a
// serialised head (exact case, as the cache serialises it), without allocating.
func fieldValue(head []byte, prefix string) []byte {
	i := bytes.Index(head, []byte(prefix))
	if i < 0 {
		return nil
	}
	v := head[i+len(prefix):]
	if j := bytes.IndexByte(v, '\r'); j >= 0 {
		v = v[:j]
	}
	return bytes.TrimSpace(v)
}

// WriteResponse streams a response that is not in memory (see cache.ResponseWriter): it waits
// for the slot's turn, writes the status line and end-to-end fields, frames the body
// (Content-Length, chunked for HTTP/1.1, close-delimited for HTTP/1.0) and copies it.
func (s *slot) WriteResponse(resp *http.Response) error {
	if s.written {
		return errWritten
	}
	if s.h2 != nil {
		s.written = true
		return s.writeResponseH2(resp)
	}
	if err := s.waitTurn(); err != nil {
		return err
	}
	s.written = true
	s.beginStream()
	code := resp.StatusCode
	if code < 200 || code > 999 {
		return fmt.Errorf("proxy: invalid final status %d", code)
	}
	bodyless := s.isHEAD || code == http.StatusNoContent || code == http.StatusNotModified
	chunked := false
	if !bodyless && resp.ContentLength < 0 {
		if s.proto10 {
			s.closeAfter = true
		} else {
			chunked = true
		}
	}
	s.writeResponseHead(resp, chunked)
	s.status = code
	if ct := resp.Header["Content-Type"]; len(ct) > 0 {
		s.ctype = []byte(ct[0])
	}
	if bodyless {
		return nil
	}
	return s.copyBody(resp, chunked)
}

// writeResponseHead writes the status line and header of a streamed response.
func (s *slot) writeResponseHead(resp *http.Response, chunked bool) {
	w := headWriter{bw: s.c.bw}
	code := resp.StatusCode
	w.bytes(wire.AppendStatusLineReason(w.bw.AvailableBuffer(), code, wire.ReasonOf(resp.Status, code)))
	w.endToEnd(resp.Header)
	if resp.ContentLength >= 0 && code != http.StatusNoContent && code != http.StatusNotModified {
		w.str("Content-Length: ")
		w.num(resp.ContentLength)
		w.str("\r\n")
	}
	if chunked {
		w.str("Transfer-Encoding: chunked\r\n")
	}
	if _, ok := resp.Header["Date"]; !ok {
		w.field("Date", time.Now().UTC().Format(http.TimeFormat)) // RFC 9110 §6.6.1
	}
	w.n += int64(s.writeConnFields())
	w.str("\r\n")
	s.bytesOut += w.n
}

// endToEnd writes the end-to-end fields of h: without hop-by-hop fields, those Connection
// names and Content-Length (the proxy frames the body itself), values sanitised.
func (w *headWriter) endToEnd(h http.Header) {
	drop := wire.ConnectionTokens(h)
	for name, values := range h {
		if wire.IsHopByHop(name) || name == "Content-Length" || drop[name] {
			continue
		}
		for _, v := range values {
			w.field(name, wire.SanitizeValue(v))
		}
	}
}

// headWriter writes header text into the output buffer and counts it.
type headWriter struct {
	bw  *bufio.Writer
	n   int64
	tmp [20]byte
}

// str writes a string.
func (w *headWriter) str(v string) {
	_, _ = w.bw.WriteString(v)
	w.n += int64(len(v))
}

// bytes writes b (which may be the buffer's own free space).
func (w *headWriter) bytes(b []byte) {
	_, _ = w.bw.Write(b)
	w.n += int64(len(b))
}

// num writes a decimal number.
func (w *headWriter) num(v int64) {
	b := strconv.AppendInt(w.tmp[:0], v, 10)
	_, _ = w.bw.Write(b)
	w.n += int64(len(b))
}

// field writes "name: value\r\n".
func (w *headWriter) field(name, value string) {
	w.str(name)
	w.str(": ")
	w.str(value)
	w.str("\r\n")
}

// copyBody streams the body with its framing. A body that ends early or fails leaves the
// framing incomplete: the connection is then closed after whatever was written.
func (s *slot) copyBody(resp *http.Response, chunked bool) error {
	bw := s.c.bw
	var err error
	var n int64
	switch wt, direct := resp.Body.(io.WriterTo); {
	case chunked:
		n, err = copyChunked(bw, resp)
	case direct && resp.ContentLength >= largeBody:
		n, err = s.c.writeBodyDirect(wt, resp.ContentLength)
	default:
		n, err = copyStreaming(bw, resp.Body, resp.ContentLength)
	}
	s.bytesOut += n
	if err != nil {
		s.closeAfter = true
		s.c.abortStream()
		s.noteCut(err)
		return fmt.Errorf("proxy: copying response body: %w", err)
	}
	return nil
}

// bodyReadError is a failure reading the body being streamed (from the origin, a collapsed
// fetch or the disk), as opposed to writing it to the client.
type bodyReadError struct{ err error }

// Error renders the failure.
func (e *bodyReadError) Error() string { return e.err.Error() }

// Unwrap returns the failure.
func (e *bodyReadError) Unwrap() error { return e.err }

// noteCut records a response cut by its source for the log, error:cut_<kind> (cut_reset,
// cut_timeout, cut_bad_response…; the response's status stays what its head said), and counts
// it in outpost_proxy_upstream_errors_total under that kind (once per client: a collapsed
// fetch that broke off counts for each client it cut).
func (s *slot) noteCut(err error) {
	var re *bodyReadError
	if !errors.As(err, &re) {
		return // the client went away: nothing of the origin's
	}
	s.cut = true
	if s.errKind == "" {
		s.errKind = "cut_" + errKind(re.err)
		s.c.srv.m.upstreamErrors.WithLabelValues(s.errKind).Inc()
	}
}

// writeBodyDirect sends a body of length n that can write itself (a file of the disk tier, a
// body in memory) straight to the client after what the output buffer holds: a file by
// sendfile(2), memory without a copy.
func (c *conn) writeBodyDirect(wt io.WriterTo, n int64) (int64, error) {
	if err := c.bw.Flush(); err != nil {
		return 0, err
	}
	c.bodyW = bodyWriter{d: &c.dw, left: n}
	written, err := wt.WriteTo(&c.bodyW)
	c.bodyW = bodyWriter{}
	if err == nil && written < n {
		err = &bodyReadError{io.ErrUnexpectedEOF}
	}
	return written, err
}

// copyStreaming copies limit bytes (everything up to EOF when limit < 0) from src to bw,
// reading straight into bw's free space. What each read brings is flushed while more is to
// come, so a body that trickles in (a slow origin, a collapsed fetch still arriving) reaches
// the client as it arrives instead of waiting in the buffer; the last bytes stay buffered, for
// finish to write together with the responses after them.
func copyStreaming(bw *bufio.Writer, src io.Reader, limit int64) (int64, error) {
	var n int64
	for limit < 0 || n < limit {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return n, err
			}
		}
		buf := bw.AvailableBuffer()
		buf = buf[:cap(buf)]
		if limit >= 0 && int64(len(buf)) > limit-n {
			buf = buf[:limit-n]
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			_, _ = bw.Write(buf[:m]) // bw's own free space: no copy beyond itself
			n += int64(m)
		}
		switch {
		case rerr == io.EOF && (limit < 0 || n == limit):
			return n, nil
		case rerr == io.EOF:
			return n, &bodyReadError{io.ErrUnexpectedEOF}
		case rerr != nil:
			return n, &bodyReadError{rerr}
		}
		if m > 0 && (limit < 0 || n < limit) {
			if err := bw.Flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// chunkBufs holds copy buffers for chunked responses.
var chunkBufs = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// copyChunked copies resp.Body to bw as chunks, flushing each as it comes (see copyStreaming),
// then the last chunk and the trailer section.
func copyChunked(bw *bufio.Writer, resp *http.Response) (int64, error) {
	buf := chunkBufs.Get().(*[16 << 10]byte)
	defer chunkBufs.Put(buf)
	cw := wire.NewChunkedWriter(bw)
	var n int64
	for {
		m, rerr := resp.Body.Read(buf[:])
		if m > 0 {
			if _, err := cw.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			_ = cw.Close()
			_, _ = bw.WriteString(trailerBlock(resp.Trailer))
			return n, nil
		}
		if rerr != nil {
			return n, &bodyReadError{rerr}
		}
		if m > 0 {
			if err := bw.Flush(); err != nil {
				return n, err
			}
		}
	}
}

// trailerBlock renders the trailer section after the last chunk, with its final CRLF.
func trailerBlock(tr http.Header) string {
	b := wire.AppendHeader(nil, tr, false, func(name string) bool {
		return wire.IsHopByHop(name) || name == "Content-Length"
	})
	return string(append(b, "\r\n"...))
}

// writeError answers with a short plain-text error response generated by the proxy.
func (s *slot) writeError(perr *protoError) {
	body := perr.msg + "\n"
	var b strings.Builder
	b.WriteString(wire.StatusLine(perr.status))
	fmt.Fprintf(&b, "Date: %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nCache-Control: no-store\r\n%s",
		time.Now().UTC().Format(http.TimeFormat), len(body), perr.extra)
	_ = s.WriteStored([]byte(b.String()), nil, []byte(body))
}

// writeInterim forwards a 1xx interim response from the origin (102, 103) to an HTTP/1.1
// client, when request seq is still served by s, at the head (an interim response cannot
// overtake earlier responses) and its final response has not begun.
func (s *slot) writeInterim(seq uint64, code int, h textproto.MIMEHeader) error {
	if code == http.StatusContinue || code == http.StatusSwitchingProtocols {
		return nil
	}
	s.c.beforeResponse(s, seq, func(bw *bufio.Writer) {
		_, _ = bw.WriteString(wire.StatusLine(code))
		for name, values := range h {
			if wire.IsHopByHop(name) {
				continue
			}
			for _, v := range values {
				fmt.Fprintf(bw, "%s: %s\r\n", name, wire.SanitizeValue(v))
			}
		}
		_, _ = bw.WriteString("\r\n")
	})
	return nil
}

// writeContinue sends 100 Continue before the first read of a body the client holds back
// (Expect: 100-continue), unless the final response has begun. Only serial requests have
// bodies, so s is the head.
func (c *conn) writeContinue(s *slot) {
	if s == nil {
		return
	}
	c.beforeResponse(s, anySeq, func(bw *bufio.Writer) { _, _ = bw.WriteString(wire.StatusLine(http.StatusContinue) + "\r\n") })
}
