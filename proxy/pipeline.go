package proxy

import (
	"bufio"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// The pipeline window. Each request read from a connection takes the next slot of a ring of
// proxy.pipeline_window slots. Responses leave strictly in slot order: only the head slot
// writes to the connection's output buffer. A slot that finishes before its turn either
// stashes an in-memory response (WriteStored keeps references, copies extra) for the head to
// write, or waits for its turn to stream (WriteResponse).
//
// The reader role (reading the next request) belongs to one goroutine at a time. It works on
// each request inline — a cache hit never leaves it — and hands the role to a new goroutine
// (detach) just before the request blocks on its origin, so requests k+1… are read and started
// while k waits. A request that stays inside the cache without fetching (waiting for another
// request's fetch, the disk, a slow client) is detached by the stall watch (checkStall).
// Requests with bodies and unsafe methods wait for their predecessors (serial) and keep the
// role, since their body must be read before the next request.
//
// Flushing: whoever finishes the head writes every stashed response after it, then flushes,
// unless it is the reader working inline with more request bytes already buffered — then the
// flush is deferred (dirty) until the reader would block, so several responses leave in one
// write.

// pipeline is one connection's response window, embedded in conn. Locking rules, all of them
// (no other file touches these fields; they call the methods below):
//
//   - mu guards every field of pipeline but the stall watch, and the slot fields marked (c.mu).
//     Slot fields not marked belong to the goroutine working on the request.
//   - turn is broadcast when head advances or the connection breaks; room when a slot is freed.
//     Both wait on mu.
//   - Only the head slot writes to the connection's output buffer (bw): under mu, except while
//     it streams a response (WriteResponse → copyBody), when it writes without mu. That is safe
//     because nobody else writes until head advances, and beginStream flushed any deferred
//     output (dirty) first.
//   - broken is set once (a write failed, the connection ended or closed) and never cleared;
//     every wait loop ends on it.
//   - The stall watch (inCache, stallSeen, stallArmed) is atomics only, armed by the reader
//     and checked by its timer's goroutine; it takes mu only through detach.
//   - The access-log buffer and the metrics child on conn (logBuf, mKey, mCounter) are used
//     under mu too: finish records responses while it holds it.
//   - The front end swaps the connection's buffers (br, bw) in and out under mu while no
//     response is in flight (frontend.go takeBuffers, releaseBuffers, forgetRequestsLocked).
type pipeline struct {
	mu   sync.Mutex
	turn sync.Cond // broadcast when head advances or the connection breaks
	room sync.Cond // broadcast when a slot is freed
	ring []*slot
	next uint64 // sequence number of the next slot to create
	// forgotten: the slots of requests before it hold nothing of theirs any more
	// (forgetRequestsLocked, frontend.go).
	forgotten uint64
	head      uint64 // sequence number of the slot allowed to write
	dirty     bool   // bw holds unflushed output (only while no slot is in flight)
	broken    bool   // a write failed or the connection was closed under us
	// noLinger: the connection ended after a response the client asked to be the last, with
	// nothing of its unread; it closes without lingering (endLocked).
	noLinger bool

	// wnow is the time finish took for the response it flushes, so the write deadline does
	// not read the clock again; zero otherwise.
	wnow time.Time
	// doneAt is when the head last advanced: with no request in flight, the reader takes it
	// for the current time when it arms the idle deadline.
	doneAt time.Time

	// Stall watch: a request worked on inline that stays inside the cache (waiting for another
	// request's fetch, a slow disk, a slow client) hands the reader role on.
	inCache    atomic.Uint64 // seq+1 of the request the reader took into the cache; 0 if none
	stallSeen  atomic.Uint64 // inCache as the watch last saw it
	stallArmed atomic.Bool
	stall      *time.Timer
}

// initPipeline makes the window's ring; its slots are made as the window first reaches them
// (newSlot) and the stall watch's timer on first use (enterCache), so that a connection that
// never pipelines costs one slot.
func (c *conn) initPipeline(window int) {
	c.turn.L, c.room.L = &c.mu, &c.mu
	c.ring = make([]*slot, window)
}

// shut marks the pipeline broken (the connection is closing) and wakes every waiter.
func (c *conn) shut() {
	c.mu.Lock()
	c.broken = true
	c.turn.Broadcast()
	c.room.Broadcast()
	c.mu.Unlock()
}

// flushIdle flushes deferred output before the reader waits for the next request. quiet
// reports that no request is in flight; then now is when the last response was completed.
func (c *conn) flushIdle() (now time.Time, quiet bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushDeferredLocked()
	if c.head == c.next {
		return c.doneAt, true
	}
	return time.Time{}, false
}

// waitWritten waits until the response of slot seq has been written (or the connection
// broke). noLinger reports that the connection ended with nothing to linger for (endLocked).
func (c *conn) waitWritten(seq uint64) (noLinger bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.head <= seq && !c.broken {
		c.turn.Wait()
	}
	return c.noLinger
}

// finishTime is the time finish took for the output being written now, zero outside finish
// (the writer runs under mu then, or is the streaming head, which finish does not overlap).
func (c *conn) finishTime() time.Time { return c.wnow }

// slot is one request's place in the pipeline and its response writer; it implements
// cache.ResponseWriter and, while the cache's Serve runs for it, cache.Fetcher. Slots are
// reused: c never changes, the state is reset for each request. Fields marked (c.mu) are the
// pipeline's (see pipeline); the others belong to the goroutine working on the request, and
// the head reads them under c.mu once the slot is finished (the access log).
type slot struct {
	c   *conn
	own *wire.RequestHead // the head the slot holds (its request's, then spare), nil when idle
	slotState
}

// slotState is a slot's per-request state.
type slotState struct {
	seq  uint64
	head *wire.RequestHead // the request as read (own), nil when it could not be read
	req  *http.Request     // decoded from head, nil until needed (slotreq.go request)
	body *bodyReader       // the request body, nil when there is none

	stripped bool // hop-by-hop fields were stripped (serveProxied)

	keys *cache.KeyRules // the reverse route's cache-key rules (nil: none; classify)

	mode       mode
	pool       *pool // the upstream pool classify bound the request to (nil: none)
	lv         *live // the configuration the request runs under, loaded once by admit (live.go)
	serial     bool  // starts only after its predecessors finished; keeps the reader role
	closeAfter bool  // the connection closes after this response
	closeEarly bool  // closeAfter as decided when the request was read (immutable)
	detached   bool  // the reader role moved on while this request waited upstream (c.mu)
	active     bool  // the slot serves request seq until finish (c.mu)
	proto10    bool  // the client spoke HTTP/1.0
	isHEAD     bool
	upgrade    bool        // an upgrade request (upgrade.go): serial, never cached
	h2         *h2Stream   // the HTTP/2 stream the response goes to (h2.go); nil for HTTP/1.x
	perr       *protoError // the request could not be read

	// Response state.
	written    bool
	responding bool   // the response has begun (c.mu): no more interim responses
	finished   bool   // work on it is over; stashed responses wait for the head (c.mu)
	stashed    bool   // sHead, sExtra, sBody hold a response for the head to write (c.mu)
	sHead      []byte // (c.mu)
	sBody      []byte // (c.mu)
	sExtra     []byte // (c.mu)

	// For the access log and metrics.
	start    time.Time
	status   int
	bytesOut int64
	reqBytes int64 // request head bytes
	outcome  cache.Outcome
	upstream string
	ctype    []byte // Content-Type of the response (a slice of a stored head, or a copy)
	errKind  string
	cut      bool // the body ended early after the head went out (errKind says why)
	user     string
	fetchErr error
}

var _ cache.ResponseWriter = (*slot)(nil)
var _ cache.Fetcher = (*slot)(nil)

// newSlot takes the next slot of the ring (waitRoom made sure it is free).
func (c *conn) newSlot(start time.Time) *slot {
	c.mu.Lock()
	i := c.next % uint64(len(c.ring))
	s := c.ring[i]
	if s == nil { // the window reaches this far for the first time on this connection
		s = &slot{c: c}
		c.ring[i] = s
	}
	extra := s.sExtra[:0]
	s.slotState = slotState{seq: c.next, start: start, sExtra: extra}
	c.next++
	depth := c.next - c.head
	c.mu.Unlock()
	c.srv.m.pipelineDepth.Observe(float64(depth))
	return s
}

// setRequest takes the request just read (its head, and req when decoded already) and records
// how the connection continues after it. The slot keeps the head; the reader reads the next
// request into the slot's spare one.
func (s *slot) setRequest(req *http.Request) {
	c := s.c
	s.own, c.reqHead = c.reqHead, s.own
	h := s.own
	s.head, s.req = h, req
	s.reqBytes = int64(len(h.Bytes()))
	if s.body = c.body; s.body != nil {
		s.body.s = s
	}
	if req != nil {
		req.RemoteAddr, req.TLS = c.remote, c.tlsState
	}
	s.proto10 = h.Proto10
	method := s.method()
	s.isHEAD = method == http.MethodHead
	safe := method == http.MethodGet || s.isHEAD || method == http.MethodOptions || method == http.MethodTrace
	s.serial = !safe || h.HasBody()
	c.served++
	s.closeAfter = wantsClose(h) ||
		(c.srv.cfg.MaxRequestsPerConnection > 0 && c.served >= c.srv.cfg.MaxRequestsPerConnection)
	if method == http.MethodConnect {
		s.serial = true
	}
	if isUpgrade(h) {
		s.upgrade, s.serial = true, true // nothing behind it starts before the origin answered
	}
	s.closeEarly = s.closeAfter
	c.mu.Lock()
	s.active = true
	c.mu.Unlock()
}

// fail makes the slot answer a request that could not be read, then close the connection.
func (s *slot) fail(perr *protoError) {
	s.perr = perr
	s.serial = true
	s.closeAfter = true
}

// wantsClose reports whether the client's request ends its connection: HTTP/1.1 with
// "Connection: close" (or Proxy-Connection: close), HTTP/1.0 without "keep-alive"
// (Connection or Proxy-Connection).
func wantsClose(h *wire.RequestHead) bool {
	if h.HasToken("Connection", "close") || h.HasToken("Proxy-Connection", "close") {
		return true
	}
	if h.Proto10 {
		return !h.HasToken("Connection", "keep-alive") && !h.HasToken("Proxy-Connection", "keep-alive")
	}
	return false
}

// waitRoom waits until the window has a free slot; false when the connection is done.
func (c *conn) waitRoom() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.next-c.head >= uint64(len(c.ring)) && !c.broken {
		c.room.Wait()
	}
	return !c.broken && !c.srv.closing.Load()
}

// waitDrained waits until s is the head: every earlier response has been written.
func (c *conn) waitDrained(s *slot) {
	c.mu.Lock()
	for c.head != s.seq && !c.broken {
		c.turn.Wait()
	}
	c.mu.Unlock()
}

// flushDeferred flushes output whose flush was deferred by the reader.
func (c *conn) flushDeferred() {
	c.mu.Lock()
	c.flushDeferredLocked()
	c.mu.Unlock()
}

// flushDeferredLocked is flushDeferred with c.mu held. Deferred output exists only while no
// response is being streamed (WriteResponse flushes it first), so flushing here is safe.
func (c *conn) flushDeferredLocked() {
	if c.dirty {
		c.dirty = false
		if err := c.bw.Flush(); err != nil {
			c.breakLocked()
		}
	}
}

// breakLocked marks the connection broken after a write error and wakes every waiter.
func (c *conn) breakLocked() {
	c.broken = true
	c.turn.Broadcast()
	c.room.Broadcast()
	_ = c.nc.Close()
}

// detach hands the reader role to a new goroutine because s is about to block on its origin.
// Output whose flush was deferred is flushed first: s may take a while. It may be called from
// any goroutine working for request seq (the cache's included); once s is finished or serves
// another request it does nothing.
func (s *slot) detach(seq uint64) { s.handOn(seq, true) }

// detachIfPipelined is detach for a request about to wait on its origin: the reader role moves
// on at once only when the next request's bytes are already buffered. Otherwise the request
// keeps the role (a keep-alive client that waits for each response, the common case, then
// costs no new goroutine and no stack growth per miss), and a pipelined request that arrives
// while it waits is picked up by the stall watch within 2×stallDelay, which the caller armed
// (enterCache). Deferred output is flushed either way. Only the goroutine working on the
// request inline may call it (it reads the reader's buffer).
func (s *slot) detachIfPipelined(seq uint64) { s.handOn(seq, false) }

// handOn flushes deferred output and moves the reader role to a new goroutine: always, or
// (always false) only when more request bytes are buffered.
func (s *slot) handOn(seq uint64, always bool) {
	c := s.c
	c.mu.Lock()
	c.flushDeferredLocked()
	// An HTTP/2 stream (h2) has its own goroutine and no reader role to hand on. (The slot's
	// fields are read under c.mu: the stall watch may call this while the reader resets them.)
	if s.h2 != nil || s.seq != seq || !s.active || s.detached || s.serial || s.closeEarly || c.srv.closing.Load() ||
		(!always && (c.br == nil || c.br.Buffered() == 0)) {
		c.mu.Unlock()
		return
	}
	s.detached = true
	c.refs.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.release()
		c.readLoop()
	}()
}

// stallDelay is how long a request worked on inline may stay inside the cache before the
// reader role moves on without it (it is then handed on within 2×stallDelay).
const stallDelay = 5 * time.Millisecond

// enterCache notes that the reader takes request seq into the cache, where it may wait on
// something the proxy does not see (another request's fetch when collapsing, the disk, a slow
// client); checkStall hands the reader role on if it stays there. It costs a few atomic
// operations; the timer is armed at most once per stallDelay.
func (c *conn) enterCache(seq uint64) {
	c.inCache.Store(seq + 1)
	if !c.stallArmed.Load() && c.stallArmed.CompareAndSwap(false, true) {
		if c.stall == nil { // made on first use: the reader role is held by one goroutine at a time
			c.stall = time.AfterFunc(time.Hour, c.checkStall)
			c.stall.Stop() // armed below, after c.stall is set (Reset orders it before the callback)
		}
		c.stall.Reset(stallDelay)
	}
}

// leaveCache notes that request seq came back from the cache (unless the reader role moved on
// and a later request is inside already).
func (c *conn) leaveCache(seq uint64) { c.inCache.CompareAndSwap(seq+1, 0) }

// checkStall runs every stallDelay while the reader takes requests into the cache: a request
// found inside twice in a row has been there at least stallDelay and gets detached (the next
// pipelined requests are read meanwhile, within the window); with none inside, the watch
// disarms until the next enterCache.
func (c *conn) checkStall() {
	v := c.inCache.Load()
	if v == 0 {
		c.stallArmed.Store(false)
		// enterCache may have run since the load and found the watch still armed.
		if c.inCache.Load() == 0 || !c.stallArmed.CompareAndSwap(false, true) {
			return
		}
	} else if c.stallSeen.Swap(v) == v {
		seq := v - 1
		c.ring[seq%uint64(len(c.ring))].detach(seq)
	}
	c.stall.Reset(stallDelay)
}

// waitTurn blocks until s is the head (handing the reader role away first). It fails when the
// connection broke.
func (s *slot) waitTurn() error {
	c := s.c
	c.mu.Lock()
	isHead := c.head == s.seq
	c.mu.Unlock()
	if isHead {
		return nil
	}
	s.detach(s.seq)
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.head != s.seq && !c.broken {
		c.turn.Wait()
	}
	if c.broken {
		return errBroken
	}
	return nil
}

// finish ends the work on s. If s is the head, it writes every stashed response that follows,
// flushes (or defers the flush, see the package comment) and advances the head; otherwise the
// head will do that when its turn comes. It reports whether the reader role moved on while s
// was worked on; from here on, late calls for seq (the stall watch, interim responses) find it
// inactive.
func (s *slot) finish() (detached bool) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	s.active = false
	detached = s.detached
	s.finished = true
	if c.head != s.seq {
		return detached // stashed or failed; the head completes it later
	}
	last := s
	now := time.Now() // one clock reading for the log, the metrics and the write deadline
	if s.stashed && !c.broken {
		// s stashed its response while an earlier one was still going out, and became the
		// head before it finished: the previous head's loop stopped at s, so s writes its
		// own stash.
		s.writeStoredLocked(s.sHead, s.sExtra, s.sBody)
	}
	s.complete(now)
	c.head++
	for !last.closeAfter && c.head < c.next {
		n := c.ring[c.head%uint64(len(c.ring))]
		if !n.finished {
			break
		}
		if n.stashed && !c.broken {
			n.writeStoredLocked(n.sHead, n.sExtra, n.sBody)
		}
		n.complete(now)
		c.head++
		last = n
	}
	defer c.turn.Broadcast()
	defer c.room.Broadcast()
	c.wnow, c.doneAt = now, now
	defer func() { c.wnow = time.Time{} }()
	switch {
	case c.broken:
	case last.closeAfter:
		if err := c.bw.Flush(); err != nil {
			c.breakLocked()
			return detached
		}
		c.endLocked(last)
	case c.head == c.next && !detached && c.br.Buffered() > 0:
		// s ran inline in the reader, which has more requests buffered: it flushes later.
		c.dirty = true
	default:
		c.dirty = false
		if err := c.bw.Flush(); err != nil {
			c.breakLocked()
		}
	}
	return detached
}

// endLocked ends the connection after last's response, which is flushed. When the client
// itself asked to close, sent no body, and nothing it sent is unread (neither buffered nor in
// the socket: a look without reading), the connection closes at once, as nginx's does;
// otherwise it is half-closed and the reader lingers (lingerClose), so that unread bytes do not
// turn the close into a reset that destroys the response in flight.
func (c *conn) endLocked(last *slot) {
	c.broken = true
	if last.perr == nil && last.head != nil && !last.head.HasBody() && wantsClose(last.head) &&
		(c.br == nil || c.br.Buffered() == 0) && c.src.nothingPending() {
		c.noLinger = true
		return
	}
	closeWrite(c.nc)
	c.setReadDeadline(time.Now().Add(lingerTime))
}

// complete records a written response in the access log and metrics (c.mu held).
func (s *slot) complete(now time.Time) {
	c := s.c
	c.srv.record(s, &c.logBuf, now)
}

// writeOrStash writes a stored response into the output buffer when s is the head, or keeps
// it for the head to write in order: head and body by reference (they are immutable), extra
// copied into the slot's own buffer.
func (s *slot) writeOrStash(head, extra, body []byte) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken {
		return errBroken
	}
	s.responding = true
	if c.head != s.seq {
		s.stashed = true
		s.sHead, s.sBody = head, body
		s.sExtra = append(s.sExtra[:0], extra...)
		return nil
	}
	s.writeStoredLocked(head, extra, body)
	return nil
}

// beginStream starts a streamed response at the head (waitTurn returned): no more interim
// responses, and deferred output leaves first, since the head then writes without mu.
func (s *slot) beginStream() {
	c := s.c
	c.mu.Lock()
	s.responding = true
	if c.dirty {
		c.dirty = false
		if err := c.bw.Flush(); err != nil {
			c.breakLocked()
		}
	}
	c.mu.Unlock()
}

// abortStream flushes what a failed streamed response wrote and breaks the connection: the
// body's framing is incomplete, so nothing may follow it.
func (c *conn) abortStream() {
	c.mu.Lock()
	_ = c.bw.Flush()
	c.breakLocked()
	c.mu.Unlock()
}

// anySeq passed to beforeResponse means the request s serves at the time.
const anySeq = ^uint64(0)

// beforeResponse writes an interim response (100 Continue, 102, 103) with write and flushes
// it, provided s still serves request seq, s is the head (an interim response cannot overtake
// earlier responses), the connection is whole and s's final response has not begun.
func (c *conn) beforeResponse(s *slot, seq uint64, write func(*bufio.Writer)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq == anySeq {
		seq = s.seq
	}
	if s.seq != seq || !s.active || s.responding || c.head != seq || c.broken {
		return
	}
	write(c.bw)
	if err := c.bw.Flush(); err != nil {
		c.breakLocked()
	}
}

// writeNow writes a final response head with write and flushes it, for the serial requests
// that take the connection over afterwards (CONNECT's 200, an upgrade's 101): s is the head.
func (s *slot) writeNow(write func(*bufio.Writer)) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	s.responding = true
	write(c.bw)
	return c.bw.Flush()
}
