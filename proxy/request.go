package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/proxy/wire"
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

var errBodyTooLarge = &protoError{status: http.StatusRequestEntityTooLarge, msg: "request body too large"}

// readRequest reads one request head with wire (which refuses everything that makes framing
// ambiguous: the request smuggling defences, see wire.RequestHead.Read) into c.reqHead, which
// indexes into the bytes read, and frames its body with the proxy's own reader. A lean head
// (leanHead) is served from the head itself: req is nil, and its slot builds it only if it
// is needed. Any other head is decoded into an *http.Request now. The caller has seen at least
// one byte arrive.
func (c *conn) readRequest() (*http.Request, *protoError) {
	if c.reqHead == nil {
		c.reqHead = headPool.Get().(*wire.RequestHead)
	}
	lim := wire.Limits{MaxBytes: int(c.srv.cfg.MaxHeaderBytes), MaxFields: c.srv.cfg.MaxHeaderFields}
	if err := c.reqHead.Read(c.br, lim); err != nil {
		return nil, headError(err)
	}
	var req *http.Request
	if !leanHead(c.reqHead) {
		var err error
		if req, err = c.reqHead.NewRequest(); err != nil {
			return nil, headError(err)
		}
	}
	if perr := c.frameBody(); perr != nil {
		return nil, perr
	}
	if req != nil && c.body != nil {
		req.Body, req.ContentLength = c.body, c.reqHead.ContentLength
		if c.reqHead.Chunked {
			req.ContentLength = -1
		}
	}
	return req, nil
}

// headError maps a refusal or read failure inside a request head to its answer.
func headError(err error) *protoError {
	var werr *wire.Error
	var ne net.Error
	switch {
	case errors.As(err, &werr):
		msg := werr.Msg
		if werr == wire.ErrHeadTooLarge {
			msg = "request header too large"
		}
		return &protoError{status: werr.Status, msg: msg}
	case errors.As(err, &ne) && ne.Timeout():
		return &protoError{status: http.StatusRequestTimeout, msg: "timed out reading the request head"}
	}
	return bad("incomplete request head: %v", err)
}

// frameBody makes the proxy's own body reader for the framing the head declared (c.body, nil
// without a body).
func (c *conn) frameBody() *protoError {
	h := &c.reqHead.Head
	max := int64(c.srv.cfg.MaxBodySize)
	switch {
	case h.Chunked:
		c.body = newBodyReader(c, -1, max)
	case h.ContentLength > 0:
		if max > 0 && h.ContentLength > max {
			return errBodyTooLarge
		}
		c.body = newBodyReader(c, h.ContentLength, max)
	default:
		c.body = nil
	}
	return nil
}

// bodyReader reads a request body from the connection, framed by wire.BodyReader (a
// Content-Length or the chunked coding, trailers read and dropped). It sends 100 Continue
// before the first read when the client asked for it. The upstream client may still read it
// after the response is out, so reads are serialised with settle, which takes the body back.
type bodyReader struct {
	c         *conn
	s         *slot // the request's slot (set once the slot exists)
	mu        sync.Mutex
	framed    wire.BodyReader
	read      int64 // bytes read so far
	max       int64 // body size limit (0 = none)
	expect    bool  // 100 Continue still to be sent (set by policy before any read)
	abandoned bool  // the connection took the body back: reads fail
	err       error
}

// errBodyAbandoned is what a late reader of a finished request's body gets.
var errBodyAbandoned = errors.New("proxy: request body no longer available")

// newBodyReader returns a reader for a body of length n (n < 0: chunked).
func newBodyReader(c *conn, n, max int64) *bodyReader {
	b := &bodyReader{c: c, max: max}
	b.framed.TrailerLimit = int(c.srv.cfg.MaxHeaderBytes)
	b.framed.Reset(c.br, n, n < 0, nil)
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
	if b.framed.Done() {
		return 0, io.EOF
	}
	if b.expect {
		b.expect = false
		b.c.writeContinue(b.s)
	}
	b.c.setReadDeadline(time.Now().Add(b.c.srv.cfg.ReadTimeout))
	n, err := b.framed.Read(p)
	var werr *wire.Error
	if errors.As(err, &werr) {
		err = bad("malformed chunked body: %s", werr.Msg)
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
// progress elsewhere (the upstream client) is interrupted, and the connection must close.
func (b *bodyReader) settle() bool {
	if !b.mu.TryLock() {
		b.c.setReadDeadline(time.Now())
		b.mu.Lock()
		b.abandoned = true
		b.mu.Unlock()
		return false
	}
	defer b.mu.Unlock()
	if !b.framed.Done() && !b.expect && b.err == nil {
		buf := make([]byte, 4096)
		for drained := 0; drained < 256<<10 && !b.framed.Done() && b.err == nil; {
			n, err := b.readLocked(buf)
			drained += n
			if err != nil {
				break
			}
		}
	}
	b.abandoned = true
	return b.framed.Done() && b.err == nil
}

// Close is a no-op: the connection settles the body after the response (see settle).
func (b *bodyReader) Close() error { return nil }

// isDigit reports an ASCII digit.
func isDigit(b byte) bool { return b >= '0' && b <= '9' }
