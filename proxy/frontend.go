package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// acceptLoop accepts client connections until the listener is closed.
func (s *Server) acceptLoop(ln net.Listener) error {
	var backoff time.Duration
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
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
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

// isTemporary reports accept errors worth retrying (EMFILE and friends).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
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
	hdr    []byte
	hrd    bytes.Reader
	hbr    *bufio.Reader
	body   *bodyReader // the body of the request just read (handed to its slot)
	served int

	// Pipeline state (pipeline.go), guarded by mu.
	mu     sync.Mutex
	turn   sync.Cond // broadcast when head advances or the connection breaks
	room   sync.Cond // broadcast when a slot is freed
	ring   []*slot
	next   uint64 // sequence number of the next slot to create
	head   uint64 // sequence number of the slot allowed to write
	dirty  bool   // bw holds unflushed output (only while no slot is in flight)
	broken bool   // a write failed or the connection was closed under us

	// Stall watch (pipeline.go): a request worked on inline that stays inside the cache (waiting
	// for another request's fetch, a slow disk, a slow client) hands the reader role on.
	inCache    atomic.Uint64 // seq+1 of the request the reader took into the cache; 0 if none
	stallSeen  atomic.Uint64 // inCache as the watch last saw it
	stallArmed atomic.Bool
	stall      *time.Timer

	idle      atomic.Bool  // the reader is waiting for the first byte of a request
	refs      atomic.Int32 // goroutines working on this connection; the last closes it
	closeOnce sync.Once
	logBuf    []byte // access-log line buffer, guarded by mu (log lines are written under it)
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
	c.bw = bufio.NewWriterSize(deadlineWriter{nc: nc, timeout: s.cfg.WriteTimeout, writes: s.m.clientWrites}, 8<<10)
	c.hbr = bufio.NewReaderSize(&c.hrd, 4<<10)
	c.turn.L, c.room.L = &c.mu, &c.mu
	c.ring = make([]*slot, s.cfg.PipelineWindow)
	for i := range c.ring {
		c.ring[i] = &slot{c: c}
	}
	c.stall = time.AfterFunc(time.Hour, c.checkStall)
	c.stall.Stop()
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
		c.mu.Lock()
		c.broken = true
		c.turn.Broadcast()
		c.room.Broadcast()
		c.mu.Unlock()
	})
}

// wakeIfIdle makes a reader that waits for a new request give up (used by Shutdown).
func (c *conn) wakeIfIdle() {
	if c.idle.Load() {
		_ = c.nc.SetReadDeadline(time.Now())
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
		c.flushDeferred()
		if !c.waitFirstByte() {
			return nil, false
		}
	} else if buf, _ := c.br.Peek(c.br.Buffered()); !bytes.Contains(buf, []byte("\r\n\r\n")) {
		c.flushDeferred() // only part of the next head is here: do not hold earlier responses back
	}
	start := time.Now()
	_ = c.nc.SetReadDeadline(start.Add(c.srv.cfg.ReadHeaderTimeout))
	req, perr := c.readRequest()
	s := c.newSlot(start)
	if perr != nil {
		s.fail(perr)
		return s, true
	}
	s.setRequest(req)
	return s, true
}

// waitFirstByte waits (idle timeout) for the first byte of the next request.
func (c *conn) waitFirstByte() bool {
	srv := c.srv
	c.idle.Store(true)
	defer c.idle.Store(false)
	if srv.closing.Load() {
		return false
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(srv.cfg.IdleTimeout))
	_, err := c.br.Peek(1)
	return err == nil
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
	c.mu.Lock()
	for c.head <= seq && !c.broken {
		c.turn.Wait()
	}
	c.mu.Unlock()
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, c.nc, 256<<10)
}

// deadlineWriter sets a write deadline before each write to the client and counts the writes
// (the metric shows how well pipelined responses are batched).
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
	writes  prometheus.Counter
}

// Write writes p with a fresh deadline.
func (d deadlineWriter) Write(p []byte) (int, error) {
	d.writes.Inc()
	_ = d.nc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.nc.Write(p)
}
