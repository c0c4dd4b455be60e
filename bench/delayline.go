package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Link describes an emulated network link: propagation delay and an optional bottleneck
// bandwidth, the same in each direction.
type Link struct {
	// Delay is the one-way propagation delay per direction; the round-trip time is 2×Delay.
	Delay time.Duration
	// Bandwidth is the bottleneck rate per direction in bytes per second, shared by all the
	// connections through the line (like one physical link); 0 means unlimited.
	Bandwidth int64
	// NoSetupCost skips the emulated TCP handshake. By default a new connection costs one RTT
	// before its first byte travels, as a real three-way handshake does.
	NoSetupCost bool
}

// RTT returns the round-trip time of the link.
func (l Link) RTT() time.Duration { return 2 * l.Delay }

// DelayLine is a TCP relay that emulates a Link between its clients and a target address.
// Every chunk read at time t on one side is written on the other at t + Delay (plus its
// transmission time when a bandwidth is set), independently of earlier chunks, in order.
type DelayLine struct {
	ln   net.Listener
	dial func() (net.Conn, error) // opens the connection to the target
	link Link
	up   *shaper // client → target
	down *shaper // target → client

	wg    sync.WaitGroup
	quit  chan struct{} // closed by Close: pending deliveries are dropped
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// maxChunk bounds one read; the per-direction queue holds at most queueLen chunks, which bounds
// the bytes a line keeps in flight per connection and direction (4 MiB).
const (
	maxChunk = 16 << 10
	queueLen = 256
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, maxChunk); return &b }}

// NewDelayLine listens on listen (empty means 127.0.0.1:0) and relays every connection to
// target through the emulated link. Close stops it.
func NewDelayLine(listen, target string, link Link) (*DelayLine, error) {
	if link.Delay < 0 || link.Bandwidth < 0 {
		return nil, fmt.Errorf("delay line: negative delay or bandwidth")
	}
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("delay line: listen %s: %w", listen, err)
	}
	return NewDelayLineOn(ln, func() (net.Conn, error) { return net.DialTimeout("tcp", target, 10*time.Second) }, link), nil
}

// NewDelayLineOn relays every connection accepted on ln to the connection dial opens, through
// the emulated link; it takes ownership of ln. The lab uses it to listen and dial inside
// network namespaces. link must not be negative.
func NewDelayLineOn(ln net.Listener, dial func() (net.Conn, error), link Link) *DelayLine {
	d := &DelayLine{ln: ln, dial: dial, link: link, conns: map[net.Conn]struct{}{}, quit: make(chan struct{})}
	if link.Bandwidth > 0 {
		d.up, d.down = &shaper{bps: float64(link.Bandwidth)}, &shaper{bps: float64(link.Bandwidth)}
	}
	d.wg.Add(1)
	go d.serve()
	return d
}

// Addr returns the address clients connect to.
func (d *DelayLine) Addr() string { return d.ln.Addr().String() }

// Close stops accepting, closes every relayed connection and waits for the relays to end.
func (d *DelayLine) Close() error {
	err := d.ln.Close()
	d.mu.Lock()
	if !d.done {
		close(d.quit)
	}
	d.done = true
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
	return err
}

// CloseConns closes every relayed connection but keeps accepting new ones: the next
// connections start cold.
func (d *DelayLine) CloseConns() {
	d.mu.Lock()
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
}

// serve accepts clients until the listener closes.
func (d *DelayLine) serve() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go d.relay(c, time.Now())
	}
}

// track registers c for Close; it reports false when the line is already closed.
func (d *DelayLine) track(cs ...net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return false
	}
	for _, c := range cs {
		d.conns[c] = struct{}{}
	}
	return true
}

func (d *DelayLine) untrack(cs ...net.Conn) {
	d.mu.Lock()
	for _, c := range cs {
		delete(d.conns, c)
	}
	d.mu.Unlock()
}

// relay connects client to the target and pumps both directions. The handshake costs one RTT:
// the client's first byte leaves no earlier than accept+RTT (it would have waited for the
// SYN-ACK), and the server's first byte no earlier than accept+1.5 RTT (when it would have
// accepted).
func (d *DelayLine) relay(client net.Conn, accepted time.Time) {
	defer d.wg.Done()
	server, err := d.dial()
	if err != nil {
		client.Close()
		return
	}
	if !d.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	var upFrom, downFrom time.Time
	if !d.link.NoSetupCost {
		upFrom = accepted.Add(2 * d.link.Delay)
		downFrom = accepted.Add(3 * d.link.Delay)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.pump(client, server, upFrom, d.up) }()
	go func() { defer wg.Done(); d.pump(server, client, downFrom, d.down) }()
	wg.Wait()
	client.Close()
	server.Close()
	d.untrack(client, server)
}

// chunk is one read, stamped with the time it is due on the other side.
type chunk struct {
	buf *[]byte
	n   int
	due time.Time
	err error // io.EOF for an orderly half-close, another error for an abort
}

// pump copies src to dst through the link: a reader stamps each chunk with its due time and a
// writer delivers chunks in order at their due times.
func (d *DelayLine) pump(src, dst net.Conn, notBefore time.Time, sh *shaper) {
	q := make(chan chunk, queueLen)
	go d.readChunks(src, q, notBefore, sh)
	failed := false
	for c := range q {
		if !failed && !d.sleepUntil(c.due) {
			failed = true // the line is closing
		}
		if c.n > 0 && !failed {
			if _, err := dst.Write((*c.buf)[:c.n]); err != nil {
				failed = true
				src.Close()
				dst.Close()
			}
		}
		if c.buf != nil {
			chunkPool.Put(c.buf)
		}
		if c.err != nil && !failed {
			endWrite(dst, c.err)
		}
	}
}

// readChunks reads src into stamped chunks until an error, which it queues last.
func (d *DelayLine) readChunks(src net.Conn, q chan<- chunk, notBefore time.Time, sh *shaper) {
	defer close(q)
	size := maxChunk
	if sh != nil {
		size = min(maxChunk, max(1024, int(sh.bps/1000))) // about 1 ms of transmission
	}
	for {
		bp := chunkPool.Get().(*[]byte)
		n, err := src.Read((*bp)[:size])
		now := time.Now()
		if now.Before(notBefore) {
			now = notBefore
		}
		if sh != nil && n > 0 {
			now = sh.reserve(now, n)
		}
		q <- chunk{buf: bp, n: n, due: now.Add(d.link.Delay), err: err}
		if err != nil {
			return
		}
	}
}

// endWrite passes an end of stream on: a half-close for EOF, a full close otherwise.
func endWrite(dst net.Conn, err error) {
	if errors.Is(err, io.EOF) {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			return
		}
	}
	dst.Close()
}

// sleepUntil sleeps until t; it reports false if the line closes first.
func (d *DelayLine) sleepUntil(t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-d.quit:
		return false
	}
}

// shaper is a bottleneck link: one transmitter of bps bytes per second shared by every
// connection in one direction.
type shaper struct {
	mu   sync.Mutex
	bps  float64
	free time.Time // when the transmitter finishes what it holds
}

// reserve queues n bytes that arrived at now and returns when their last byte is sent.
func (s *shaper) reserve(now time.Time, n int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := now
	if s.free.After(start) {
		start = s.free
	}
	s.free = start.Add(time.Duration(float64(n) / s.bps * float64(time.Second)))
	return s.free
}
