package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// acceptLoop accepts client connections until the listener is closed; on a TLS listener
// (secure) each is wrapped in a *tls.Conn, whose handshake run does first.
func (s *Server) acceptLoop(ln net.Listener, secure bool) error {
	var backoff component.AcceptBackoff
	for {
		if !s.acquireConnSlot() {
			return nil
		}
		nc, err := ln.Accept()
		if err != nil {
			s.releaseConnSlot()
			if errors.Is(err, net.ErrClosed) || s.closing.Load() {
				return nil
			}
			if backoff.Retry(err) {
				s.log.Warn("accept failed, backed off", "err", err, "backoff", backoff.Delay())
				continue
			}
			return err
		}
		backoff.Reset()
		if secure {
			nc = tls.Server(nc, s.tlsConf)
		}
		c := s.newConn(nc)
		if c == nil {
			continue
		}
		go c.run()
	}
}

// acquireConnSlot waits until fewer than max_connections clients are connected; false when
// shutting down.
func (s *Server) acquireConnSlot() bool {
	if s.slots == nil {
		return true
	}
	select {
	case s.slots <- struct{}{}:
		return true
	case <-s.stopAccept:
		return false
	}
}

// releaseConnSlot frees a connection slot.
func (s *Server) releaseConnSlot() {
	if s.slots != nil {
		<-s.slots
	}
}

// conn is one client connection: a reader that parses requests into slots of the pipeline
// window, and an ordered writer shared by the slots (pipeline.go).
type conn struct {
	srv *Server
	nc  net.Conn
	// br and bw are the connection's read and write buffers while it has a request; both are
	// nil while it idles (takeBuffers, releaseBuffers). src and dw are what they read from
	// and write to.
	br       *bufio.Reader
	bw       *bufio.Writer
	bufs     *connBuffers // br and bw while the connection has them
	src      connSource
	dw       deadlineWriter
	bodyW    bodyWriter // a body sent past the output buffer (writeBodyDirect)
	remote   string     // client "ip:port"
	ip       netip.Addr // client address, unmapped
	ipStr    string
	tls      bool                 // a TLS connection (set by run before any request)
	tlsState *tls.ConnectionState // its handshake's outcome, for the requests' r.TLS
	// h2cPrior: the connection opened with HTTP/2's client preface (h2c with prior knowledge):
	// readLoop stopped before it, and run serves HTTP/2 (h2.go serveH2C).
	h2cPrior bool
	ctx      context.Context // upstream requests; cancelled when the connection closes
	cancel   context.CancelFunc

	// Header reading (readRequest), used only by the goroutine holding the reader role.
	reqHead *wire.RequestHead // the request being read (readRequest); its slot takes it (setRequest)
	body    *bodyReader       // the body of the request just read (handed to its slot)
	served  int

	// The pipeline window and the stall watch (pipeline.go, which holds its locking rules).
	pipeline

	// Read deadline armed by the reader role (armRead); rdlSet is cleared by every other
	// SetReadDeadline (setReadDeadline), which makes the reader arm its next one afresh.
	rdl    time.Time
	rdlSet atomic.Bool

	idle      atomic.Bool  // the reader is waiting for the first byte of a request
	refs      atomic.Int32 // goroutines working on this connection; the last closes it
	closeOnce sync.Once
	logBuf    []byte // access-log line buffer, guarded by mu (log lines are written under it)
	mKey      uint32 // the requests_total child last counted here, guarded by mu (metrics.go)
	mCounter  prometheus.Counter
}

// newConn registers a new client connection, or returns nil when shutting down.
func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, remote: nc.RemoteAddr().String()}
	if ap, err := netip.ParseAddrPort(c.remote); err == nil {
		c.ip = ap.Addr().Unmap()
	}
	if c.ip.Is4() && c.remote[0] != '[' {
		c.ipStr = c.remote[:strings.LastIndexByte(c.remote, ':')] // the same text, not another copy
	} else {
		c.ipStr = c.ip.String()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.src.init(c)
	c.dw = deadlineWriter{c: c, timeout: s.cfg.WriteTimeout, writes: s.m.clientWrites}
	c.initPipeline(s.cfg.PipelineWindow)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		_ = nc.Close()
		s.releaseConnSlot()
		return nil
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	s.m.clientConns.Inc()
	c.refs.Store(1)
	return c
}

// localAddr is the proxy's "ip:port" the client connected to.
func (c *conn) localAddr() string { return c.nc.LocalAddr().String() }

// run is the connection's first goroutine: it holds the reader role. A TLS connection
// completes its handshake first and, when ALPN chose h2, is served by the HTTP/2 front end.
func (c *conn) run() {
	defer c.release()
	if tc, ok := c.nc.(*tls.Conn); ok {
		c.tls = true
		proto, err := c.handshake(tc)
		if err != nil {
			c.srv.log.Debug("proxy: TLS handshake failed", "client", c.remote, "err", err)
			return
		}
		if proto == "h2" && c.srv.h2 != nil {
			c.srv.m.connsH2.Inc()
			c.serveH2(c.nc)
			return
		}
		c.srv.m.connsHTTPS.Inc()
	} else {
		c.srv.m.connsHTTP.Inc()
	}
	c.readLoop()
	if c.h2cPrior {
		c.serveH2C()
	}
}

// release ends one goroutine's work on the connection; the last one closes it.
func (c *conn) release() {
	if c.refs.Add(-1) == 0 {
		if c.stall != nil {
			c.stall.Stop()
		}
		c.closeNow()
		c.releaseBuffers() // nothing works on the connection any more
		s := c.srv
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.m.clientConns.Dec()
		s.releaseConnSlot()
		s.connWG.Done()
	}
}

// closeNow closes the socket and wakes every goroutine waiting on the pipeline.
func (c *conn) closeNow() {
	c.closeOnce.Do(func() {
		_ = c.nc.Close()
		c.cancel()
		c.shut()
	})
}

// recoverPanic ends the connection, not the process, when working on one of its requests
// panicked (as net/http's conn.serve does): the bug is logged with its stack and the client
// sees the connection close. The pipeline's waiters are woken from another goroutine, since
// the panicking frame may have held c.mu.
func (c *conn) recoverPanic() {
	if v := recover(); v != nil {
		c.srv.log.Error("proxy: panic serving a connection", "client", c.remote, "panic", v, "stack", string(debug.Stack()))
		_ = c.nc.Close()
		go c.closeNow()
	}
}

// wakeIfIdle makes a reader that waits for a new request give up (used by Shutdown).
func (c *conn) wakeIfIdle() {
	if c.idle.Load() {
		c.setReadDeadline(time.Now())
	}
}

// readLoop holds the reader role: it reads requests and works on them in order, inline, until
// a request must wait for its origin (then the role moves to a new goroutine, see detach), the
// connection is to close, or the client stops sending.
func (c *conn) readLoop() {
	defer c.recoverPanic()
	for {
		s, ok := c.nextRequest()
		if !ok {
			c.flushDeferred()
			return
		}
		// s belongs to the ring again once finished: use what work captured.
		done := c.work(s)
		if done.detached {
			return // another goroutine holds the reader role now
		}
		if done.closeAfter {
			c.lingerClose(done)
			return
		}
	}
}

// nextRequest waits for room in the window, reads one request and returns its slot. ok is
// false when the connection is done reading (clean close, timeout, shutdown, broken).
func (c *conn) nextRequest() (*slot, bool) {
	if !c.waitRoom() {
		return nil, false
	}
	if c.br == nil || c.br.Buffered() == 0 {
		// No runtime.Gosched() before this read (there was one): it saved a read that fails
		// with EAGAIN per keep-alive request, but with every connection's goroutine yielding,
		// a busy P always had runnable work, so the scheduler polled the network only when
		// sysmon forced it (~10 ms) and p99 was ~10 ms (bench/RESULTS.md, issue 11 tail).
		now, quiet := c.flushIdle() // quiet: nothing in flight; now: when the last response was completed
		if !c.waitFirstByte(now, quiet) {
			return nil, false
		}
	}
	if c.served == 0 && c.h2cPreface() {
		c.h2cPrior = true
		return nil, false
	}
	start := time.Now()
	if !c.headBuffered() {
		c.flushDeferred() // only part of the next head is here: do not hold earlier responses back
		c.armRead(start, c.srv.cfg.ReadHeaderTimeout)
	}
	req, perr := c.readRequest()
	s := c.newSlot(start)
	if perr != nil {
		s.fail(perr)
		return s, true
	}
	s.setRequest(req)
	return s, true
}

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

// waitFirstByte waits (idle timeout) for the first byte of the next request and reads what
// has arrived into the read buffer. now is the current time if the caller knows it (zero: read
// the clock). quiet means no response is in flight: then, if nothing has arrived yet, the
// connection's buffers go back to their pools while it waits for readability (an idle
// keep-alive connection costs its goroutine and a few hundred bytes), and are taken again
// when the request comes (readFirst).
func (c *conn) waitFirstByte(now time.Time, quiet bool) bool {
	srv := c.srv
	c.idle.Store(true)
	defer c.idle.Store(false)
	if srv.closing.Load() {
		return false
	}
	if now.IsZero() {
		now = time.Now()
	}
	c.armRead(now, srv.cfg.IdleTimeout)
	switch {
	case quiet && c.src.raw != nil:
		if !c.src.readFirst() {
			return false
		}
	case quiet && c.tls:
		if !c.readFirstTLS() {
			return false
		}
	}
	c.takeBuffers()
	_, err := c.br.Peek(1)
	return err == nil
}

// idleBuffers gives the buffers back and drops the finished requests while the connection
// waits for its next request (called by readFirst, from inside a raw read of the socket).
// Nothing holds c.mu while it waits for the socket when no response is in flight; should
// anything ever, the buffers are kept this once rather than risking a deadlock with a Close
// under c.mu (which waits for this read).
func (c *conn) idleBuffers() {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	c.releaseBuffersLocked()
	c.forgetRequestsLocked()
}

// connBuffers is what a connection needs only while it has a request: its read and write
// buffers, shared through one pool by the connections that have a request.
type connBuffers struct {
	br *bufio.Reader
	bw *bufio.Writer
}

var buffersPool = sync.Pool{New: func() any {
	return &connBuffers{br: bufio.NewReaderSize(nil, 8<<10), bw: bufio.NewWriterSize(nil, 8<<10)}
}}

// takeBuffers gives the connection its buffers (no-op when it has them).
func (c *conn) takeBuffers() {
	if c.bufs != nil {
		return
	}
	b := buffersPool.Get().(*connBuffers)
	b.br.Reset(&c.src)
	b.bw.Reset(&c.dw)
	c.mu.Lock()
	c.bufs, c.br, c.bw = b, b.br, b.bw
	c.mu.Unlock()
}

// forgetRequestsLocked drops what the slots still hold of finished requests (the request, the
// stored response they wrote), so that an idle connection keeps none of it alive. Only the
// reader calls it, with no response in flight and c.mu held.
func (c *conn) forgetRequestsLocked() {
	// Only the slots of requests since the last time hold anything: a keep-alive client that
	// waits for each response touches one slot of the window per request, not all of them.
	n := uint64(len(c.ring))
	from := c.forgotten
	if c.next-from > n {
		from = c.next - n
	}
	for seq := from; seq < c.next; seq++ {
		if s := c.ring[seq%n]; s != nil {
			s.slotState = slotState{seq: s.seq, sExtra: s.sExtra[:0]}
			putHead(s.own)
			s.own = nil
		}
	}
	c.forgotten = c.next
	putHead(c.reqHead)
	c.reqHead = nil
}

// releaseBuffers gives the buffers back to their pool. The caller makes sure they are empty
// and that nothing uses them until takeBuffers: the reader between requests with no response
// in flight, or the connection's last goroutine.
func (c *conn) releaseBuffers() {
	c.mu.Lock()
	c.releaseBuffersLocked()
	c.mu.Unlock()
	c.src.dropChunk()
}

// releaseBuffersLocked is releaseBuffers with c.mu held.
func (c *conn) releaseBuffersLocked() {
	b := c.bufs
	if b == nil {
		return
	}
	c.bufs, c.br, c.bw = nil, nil, nil
	b.br.Reset(nil)
	b.bw.Reset(nil)
	buffersPool.Put(b)
}

// headBuffered reports whether a whole request head is in the read buffer, so reading it
// needs no read from the socket (and no read_header_timeout). A buffer that starts with an
// empty line does not count: its first blank line is not the end of a head.
func (c *conn) headBuffered() bool {
	buf, _ := c.br.Peek(c.br.Buffered())
	return len(buf) > 0 && buf[0] != '\r' && buf[0] != '\n' && bytes.Contains(buf, []byte("\r\n\r\n"))
}

// deadlineSlack is how much earlier than wanted a deadline already armed may be and still be
// kept, for a timeout: a sixteenth of it, at most a second. Deadlines are then re-armed about
// once a second on a busy keep-alive connection instead of several times per request (each
// arming reads the clock and takes the poller's lock), and a timeout may end up to 1/16 early.
func deadlineSlack(timeout time.Duration) time.Duration {
	return min(time.Second, timeout/16)
}

// armRead sets the read deadline now+timeout for the reader role, unless the deadline in
// force is at most deadlineSlack(timeout) earlier (a later one is always replaced).
func (c *conn) armRead(now time.Time, timeout time.Duration) {
	t := now.Add(timeout)
	if c.rdlSet.Load() {
		if d := t.Sub(c.rdl); d >= 0 && d < deadlineSlack(timeout) {
			return
		}
	}
	c.rdl = t
	c.rdlSet.Store(true)
	_ = c.nc.SetReadDeadline(t)
}

// setReadDeadline sets a read deadline outside the reader's arming (body reads, waking and
// ending the connection): the reader arms its next deadline afresh.
func (c *conn) setReadDeadline(t time.Time) {
	c.rdlSet.Store(false)
	_ = c.nc.SetReadDeadline(t)
}

// workDone is what the reader needs to know about a request work finished (its slot may be
// reused at once).
type workDone struct {
	detached   bool   // the reader role moved on while the request was worked on
	closeAfter bool   // the connection ends after this response
	seq        uint64 // the request's slot sequence number
}

// work runs one request to completion in the calling goroutine (handle.go), then finishes its
// slot: the response is in order in the output buffer or stashed for the head to write.
func (c *conn) work(s *slot) workDone {
	if s.serial {
		c.waitDrained(s)
	}
	c.srv.handle(s)
	done := workDone{closeAfter: s.closeAfter, seq: s.seq}
	done.detached = s.finish()
	return done
}

// lingerTime bounds how long a closing connection keeps reading what the client still sends.
const lingerTime = 500 * time.Millisecond

// lingerClose waits until the connection's final response is written (finish half-closes the
// connection then), and discards what the client still sends for a short while, so the
// response is not lost to a TCP reset. Like nginx, it does not linger when nothing suggests
// more is coming: the client asked to close, sent no body, and nothing it sent is unread.
func (c *conn) lingerClose(done workDone) {
	if c.waitWritten(done.seq) {
		return // endLocked found nothing to linger for
	}
	c.setReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, c.nc, 256<<10)
}

// deadlineWriter keeps a write deadline of write_timeout (within its deadlineSlack) in force for
// each write to the client and counts the writes (the metric shows how well pipelined
// responses are batched). Writes are serialised by the pipeline (only the head writes), and so
// is its state.
type deadlineWriter struct {
	c       *conn
	timeout time.Duration
	writes  prometheus.Counter
	dl      time.Time // the write deadline in force
	// tail, when set, is written right after the next Write's bytes in the same writev (a
	// stored body sent from the cache's memory: see writeStoredLocked).
	tail []byte
	vec  [2][]byte
	bufs net.Buffers // vec's slices as WriteTo consumes them (a field: no allocation)
}

// arm counts a write and keeps its deadline no more than deadlineSlack earlier than
// write_timeout away.
func (d *deadlineWriter) arm() {
	d.writes.Inc()
	now := d.c.finishTime()
	if now.IsZero() {
		now = time.Now()
	}
	if t := now.Add(d.timeout); t.Sub(d.dl) >= deadlineSlack(d.timeout) {
		d.dl = t
		_ = d.c.nc.SetWriteDeadline(t)
	}
}

// Write writes p (and tail, if set) with the write deadline in force.
func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.arm()
	if d.tail == nil {
		return d.c.nc.Write(p)
	}
	d.vec = [2][]byte{p, d.tail}
	d.bufs = d.vec[:]
	n, err := d.bufs.WriteTo(d.c.nc)
	d.vec, d.bufs = [2][]byte{}, nil
	return int(min(n, int64(len(p)))), err
}

// sendChunk is how much of a file body one sendfile(2) call may send: the write deadline is
// re-armed between calls, so write_timeout bounds progress, not the whole body.
const sendChunk = 1 << 20

// bodyWriter writes a response body of a known length straight to the client, bypassing the
// output buffer (which the caller flushed): a body that can write itself (io.WriterTo) is
// handed bodyWriter, and a file body of the disk tier reaches the socket by sendfile(2)
// through ReadFrom. It never lets more than the framed length through.
type bodyWriter struct {
	d    *deadlineWriter
	left int64            // bytes the framing still allows
	lr   io.LimitedReader // one sendfile chunk (a field: no allocation)
}

// errBodyOverrun is a body that has more bytes than its framing says.
var errBodyOverrun = errors.New("proxy: response body longer than its Content-Length")

// Write writes p, up to the framed length.
func (w *bodyWriter) Write(p []byte) (int, error) {
	var over error
	if int64(len(p)) > w.left {
		p, over = p[:w.left], errBodyOverrun
	}
	n, err := w.d.Write(p)
	w.left -= int64(n)
	if err == nil {
		err = over
	}
	return n, err
}

// ReadFrom sends r: with sendfile(2) when it is a file's section (an *io.LimitedReader over an
// *os.File at its offset) and the client a TCP socket, else through Write.
func (w *bodyWriter) ReadFrom(r io.Reader) (int64, error) {
	lr, ok := r.(*io.LimitedReader)
	var f *os.File
	if ok {
		f, ok = lr.R.(*os.File)
	}
	tc, isTCP := w.d.c.nc.(*net.TCPConn)
	if !ok || !isTCP || lr.N > w.left {
		return io.Copy(writerOnly{w}, r)
	}
	var total int64
	for lr.N > 0 {
		w.d.arm()
		w.lr = io.LimitedReader{R: f, N: min(lr.N, sendChunk)}
		n, err := tc.ReadFrom(&w.lr)
		total += n
		lr.N -= n
		w.left -= n
		if err != nil {
			return total, err
		}
		if n == 0 {
			break // the file ended early: the caller sees the short count
		}
	}
	return total, nil
}

// writerOnly hides a writer's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }
