package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// acceptLoop accepts client connections until the listener is closed.
func (s *Server) acceptLoop(ln net.Listener) error {
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
	srv    *Server
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string     // client "ip:port"
	local  string     // the proxy's "ip:port" the client connected to
	ip     netip.Addr // client address, unmapped
	ipStr  string
	ctx    context.Context // upstream requests; cancelled when the connection closes
	cancel context.CancelFunc

	// Header reading (request.go), used only by the goroutine holding the reader role.
	reqHead wire.RequestHead // the request just read: indexes into the bytes read (request.go)
	body    *bodyReader      // the body of the request just read (handed to its slot)
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
	c := &conn{srv: s, nc: nc, remote: nc.RemoteAddr().String(), local: nc.LocalAddr().String()}
	if ap, err := netip.ParseAddrPort(c.remote); err == nil {
		c.ip = ap.Addr().Unmap()
	}
	c.ipStr = c.ip.String()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.br = bufio.NewReaderSize(nc, 8<<10)
	c.bw = bufio.NewWriterSize(&deadlineWriter{c: c, timeout: s.cfg.WriteTimeout, writes: s.m.clientWrites}, 8<<10)
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

// run is the connection's first goroutine: it holds the reader role.
func (c *conn) run() {
	defer c.release()
	c.readLoop()
}

// release ends one goroutine's work on the connection; the last one closes it.
func (c *conn) release() {
	if c.refs.Add(-1) == 0 {
		c.stall.Stop()
		c.closeNow()
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
	for {
		s, ok := c.nextRequest()
		if !ok {
			c.flushDeferred()
			return
		}
		// s belongs to the ring again once finished: use what work captured.
		detached, closeAfter, seq := c.work(s)
		if detached {
			return // another goroutine holds the reader role now
		}
		if closeAfter {
			c.lingerClose(seq)
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
	if c.br.Buffered() == 0 {
		now := c.flushIdle() // when the last response was completed, if nothing is in flight
		if c.served > 0 {
			// The client has only just got the last response: let the other connections'
			// goroutines run first, so that by the time this one reads, its next request
			// has usually arrived. That saves a read that fails with EAGAIN, the park and
			// the poller's wake-up per keep-alive request (about 15% of a core when busy);
			// with nothing else runnable it returns at once.
			runtime.Gosched()
		}
		if !c.waitFirstByte(now) {
			return nil, false
		}
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

// waitFirstByte waits (idle timeout) for the first byte of the next request. now is the
// current time if the caller knows it (zero: read the clock).
func (c *conn) waitFirstByte(now time.Time) bool {
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
	_, err := c.br.Peek(1)
	return err == nil
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

// work runs one request to completion in the calling goroutine (handle.go), then finishes its
// slot: the response is in order in the output buffer or stashed for the head to write. It
// returns what the caller needs to know about s, which may be reused as soon as it finished.
func (c *conn) work(s *slot) (detached, closeAfter bool, seq uint64) {
	if s.serial {
		c.waitDrained(s)
	}
	c.srv.handle(s)
	closeAfter, seq = s.closeAfter, s.seq
	detached = s.finish()
	return detached, closeAfter, seq
}

// lingerTime bounds how long a closing connection keeps reading what the client still sends.
const lingerTime = 500 * time.Millisecond

// lingerClose waits until slot seq, the connection's final response, is written (finish half-closes
// the connection then), and discards what the client still sends for a short while, so the
// response is not lost to a TCP reset.
func (c *conn) lingerClose(seq uint64) {
	c.waitWritten(seq)
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
}

// Write writes p with a deadline no more than deadlineSlack earlier than write_timeout away.
func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.writes.Inc()
	now := d.c.finishTime()
	if now.IsZero() {
		now = time.Now()
	}
	if t := now.Add(d.timeout); t.Sub(d.dl) >= deadlineSlack(d.timeout) {
		d.dl = t
		_ = d.c.nc.SetWriteDeadline(t)
	}
	return d.c.nc.Write(p)
}
