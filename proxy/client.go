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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// The upstream client: one pool of persistent HTTP/1.1 connections per upstream pool, keyed by
// scheme and host:port, speaking the wire package's format in the caller's goroutine (no
// per-exchange goroutines or channel handoffs). The request goes out from the buffered writer;
// the response head is read strictly (a faulty origin gets 502, and its connection is never
// reused); the body is framed by wire.BodyReader and the connection goes back to the pool when
// the body has been read to its end and both sides keep the connection alive.

// maxResponseHead bounds an origin's response head (Squid's reply_header_max_size).
const maxResponseHead = 64 << 10

// errBadResponse marks a response the origin got wrong (framing, syntax): 502, error:bad_response.
var errBadResponse = errors.New("proxy: the origin sent an invalid response")

// upConn is one connection to an origin.
type upConn struct {
	nc      net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	key     string    // the host's pool key
	idleAt  time.Time // when it went back to the pool
	reused  bool      // it carried an exchange before this one
	tcp     syscall.RawConn
	head    wire.ResponseHead // the last response head read, its buffers reused
	interim bool              // an interim (1xx) response of the current exchange was read
	slot    *hostConns        // whose max_conns_per_host slot it holds (nil: none)
}

// hostConns are one host's connections in a client.
type hostConns struct {
	idle  []*upConn     // LIFO: the most recently used first
	slots chan struct{} // max_conns_per_host; nil = unlimited
	ready chan *upConn  // hands a connection coming back straight to a request waiting for a slot
}

// client holds the idle connections of one upstream pool.
type client struct {
	d           *dialer
	tls         *tls.Config // template; ServerName is set per host
	connect     time.Duration
	header      time.Duration
	idleTimeout time.Duration
	maxIdle     int
	maxConns    int

	mu     sync.Mutex
	hosts  map[string]*hostConns
	reaper *time.Timer // armed while idle connections exist
	closed bool
}

// newClient builds the client of one pool.
func newClient(d *dialer, cfg upstreamLimits) *client {
	if cfg.maxIdle == 0 {
		cfg.maxIdle = 2 // net/http's default for max_idle_conns_per_host = 0
	}
	return &client{d: d, tls: cfg.tls, connect: cfg.connect, header: cfg.header, idleTimeout: cfg.idle,
		maxIdle: cfg.maxIdle, maxConns: cfg.maxConns, hosts: map[string]*hostConns{}}
}

// upstreamLimits are the [proxy.upstream] settings a client uses.
type upstreamLimits struct {
	connect, header, idle time.Duration
	maxIdle, maxConns     int
	tls                   *tls.Config
}

// hostKey returns the pool key and dial address of a URL's scheme and host.
func hostKey(scheme, host string) (key, addr string) {
	addr = host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(host, port)
	}
	if scheme == "https" {
		return "https://" + addr, addr
	}
	return addr, addr
}

// host returns the connections of key, creating the entry.
func (cl *client) host(key string) *hostConns {
	h := cl.hosts[key]
	if h == nil {
		h = &hostConns{}
		if cl.maxConns > 0 {
			h.slots, h.ready = make(chan struct{}, cl.maxConns), make(chan *upConn)
		}
		cl.hosts[key] = h
	}
	return h
}

// get returns an idle connection to key that is still usable, or dials a new one (waiting for a
// free slot under max_conns_per_host). fresh: never an idle one (a retry after a pooled
// connection failed).
func (cl *client) get(ctx context.Context, scheme, host string, fresh bool) (*upConn, error) {
	key, addr := hostKey(scheme, host)
	now := time.Now()
	cl.mu.Lock()
	h := cl.host(key)
	for len(h.idle) > 0 && !fresh {
		uc := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if (cl.idleTimeout <= 0 || now.Sub(uc.idleAt) < cl.idleTimeout) && uc.alive() {
			cl.mu.Unlock()
			uc.reused = true
			return uc, nil
		}
		cl.discardLocked(uc)
	}
	cl.mu.Unlock()
	if h.slots != nil {
		uc, err := waitSlot(ctx, h, cl.connect+cl.header, fresh)
		if uc != nil || err != nil {
			return uc, err
		}
	}
	uc, err := cl.dial(ctx, scheme, key, addr)
	switch {
	case err != nil && h.slots != nil:
		<-h.slots
	case err == nil && h.slots != nil:
		uc.slot = h
	}
	return uc, err
}

// waitSlot takes a connection slot of h (nil, nil: dial), or a connection another exchange
// gives back meanwhile (unless fresh), waiting at most max.
func waitSlot(ctx context.Context, h *hostConns, max time.Duration, fresh bool) (*upConn, error) {
	select {
	case h.slots <- struct{}{}:
		return nil, nil
	default:
	}
	t := time.NewTimer(max)
	defer t.Stop()
	ready := h.ready
	if fresh {
		ready = nil // a nil channel: never taken
	}
	select {
	case h.slots <- struct{}{}:
		return nil, nil
	case uc := <-ready:
		uc.reused = true
		return uc, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("proxy: no free connection to the origin (max_conns_per_host): %w", context.DeadlineExceeded)
	}
}

// dial connects to addr (TLS for https, with SNI and certificate verification), bounded by
// connect_timeout.
func (cl *client) dial(ctx context.Context, scheme, key, addr string) (*upConn, error) {
	dctx, cancel := ctx, context.CancelFunc(func() {})
	if cl.connect > 0 {
		dctx, cancel = context.WithTimeout(ctx, cl.connect)
	}
	defer cancel()
	nc, err := cl.d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	uc := &upConn{nc: nc, key: key}
	if sc, ok := nc.(syscall.Conn); ok {
		uc.tcp, _ = sc.SyscallConn()
	}
	if scheme == "https" {
		conf := cl.tls.Clone()
		conf.ServerName, _, _ = net.SplitHostPort(addr)
		tc := tls.Client(nc, conf)
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("proxy: TLS handshake with %s: %w", addr, err)
		}
		uc.nc, uc.tcp = tc, nil
	}
	uc.br = bufio.NewReaderSize(uc.nc, 16<<10)
	uc.bw = bufio.NewWriterSize(uc.nc, 4<<10)
	return uc, nil
}

// alive reports whether an idle plain-TCP connection is still open and silent: a peek that
// would block means nothing arrived (an origin that sent bytes unasked, or closed, is not
// reused). TLS connections are trusted to their read buffer's state.
func (uc *upConn) alive() bool {
	if uc.br.Buffered() > 0 {
		return false
	}
	if uc.tcp == nil {
		return true
	}
	ok := false
	var buf [1]byte
	_ = uc.tcp.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK))
		return true
	})
	return ok
}

// put returns a connection whose exchange ended cleanly to the pool, or closes it.
func (cl *client) put(uc *upConn) {
	if uc.br.Buffered() > 0 { // bytes beyond the response: the origin is out of step
		cl.discard(uc)
		return
	}
	uc.idleAt = time.Now()
	cl.mu.Lock()
	h := cl.host(uc.key)
	if h.ready != nil && !cl.closed {
		select {
		case h.ready <- uc: // a request waiting for a slot takes it over
			cl.mu.Unlock()
			return
		default:
		}
	}
	if cl.closed || len(h.idle) >= cl.maxIdle {
		cl.discardLocked(uc)
		cl.mu.Unlock()
		return
	}
	h.idle = append(h.idle, uc)
	if cl.reaper == nil && cl.idleTimeout > 0 {
		cl.reaper = time.AfterFunc(cl.idleTimeout, cl.reap)
	}
	cl.mu.Unlock()
}

// discard closes a connection and frees its slot.
func (cl *client) discard(uc *upConn) {
	cl.mu.Lock()
	cl.discardLocked(uc)
	cl.mu.Unlock()
}

// discardLocked closes a connection and frees its slot, with cl.mu held.
func (cl *client) discardLocked(uc *upConn) {
	_ = uc.nc.Close()
	if uc.slot != nil {
		<-uc.slot.slots
		uc.slot = nil
	}
}

// reap closes connections idle longer than idle_conn_timeout, and re-arms while any remain.
func (cl *client) reap() {
	now := time.Now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.reaper = nil
	left := false
	for key, h := range cl.hosts {
		kept := h.idle[:0]
		for _, uc := range h.idle {
			if now.Sub(uc.idleAt) >= cl.idleTimeout {
				cl.discardLocked(uc)
			} else {
				kept = append(kept, uc)
			}
		}
		clear(h.idle[len(kept):])
		h.idle = kept
		left = left || len(kept) > 0
		if len(kept) == 0 && (h.slots == nil || len(h.slots) == 0) {
			delete(cl.hosts, key)
		}
	}
	if left && !cl.closed {
		cl.reaper = time.AfterFunc(cl.idleTimeout/2+time.Millisecond, cl.reap)
	}
}

// drain retires the client after a reload dropped its pool: idle connections close now, and
// those of exchanges still running close when they end instead of going back.
func (cl *client) drain() {
	cl.mu.Lock()
	cl.closed = true
	cl.mu.Unlock()
	cl.closeIdle()
}

// closeIdle closes every idle connection.
func (cl *client) closeIdle() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, h := range cl.hosts {
		for _, uc := range h.idle {
			cl.discardLocked(uc)
		}
		h.idle = nil
	}
}

// outRequest is one request going upstream: what the origin is asked, and how.
type outRequest struct {
	r       *http.Request
	scheme  string // http or https
	host    string // the origin's host[:port] to connect to
	target  string // the request-target sent (origin-form)
	hostHdr string // the Host field sent
	fwd     forwarding
	interim func(code int, h http.Header)
	idle    time.Duration // read_timeout: progress limit on the body both ways; 0 = none
	done    func()        // run once when the exchange ends (body read or closed), may be nil
	body    io.Reader     // the request body as sent (r.Body, or a replay of it); nil = none
	replay  *replayBody   // records the body for a retry (nil: the request cannot be retried with it)
}

// roundTrip runs one exchange on a pooled or new connection. A reused connection that turns
// out closed by the origin before any byte of the response arrived is replaced once, by a new
// connection, for an idempotent request (RFC 9110 §9.2.2) whose body is absent or could be
// recorded for replay (retryable); a POST is never sent twice.
func (cl *client) roundTrip(ctx context.Context, out *outRequest) (*http.Response, error) {
	out.body, out.replay = nil, nil
	if outgoingLength(out.r) != 0 {
		out.body = out.r.Body
	}
	for attempt := 0; ; attempt++ {
		uc, err := cl.get(ctx, out.scheme, out.host, attempt > 0)
		if err != nil {
			return nil, err
		}
		if attempt == 0 && uc.reused && out.body != nil && idempotent(out.r.Method) {
			out.replay = newReplayBody(out.body, outgoingLength(out.r))
			if out.replay != nil {
				out.body = out.replay
			}
		}
		resp, err := cl.exchange(ctx, uc, out)
		if err == nil {
			return resp, nil
		}
		cl.discard(uc)
		var re *retryable
		if !errors.As(err, &re) {
			return nil, err
		}
		if attempt > 0 {
			return nil, re.err
		}
		if out.replay != nil {
			out.body, out.replay = out.replay.again(), nil
		}
	}
}

// replayMax is the largest request body recorded so that an idempotent request can be sent
// again after a pooled connection failed (larger bodies are not retried).
const replayMax = 64 << 10

// replayBody records what is read of a request body of known length, so that the request can
// be sent again: the recorded bytes, then the rest of the original.
type replayBody struct {
	src io.Reader
	buf []byte
}

// newReplayBody records src, a body of length n; nil when n is unknown or over replayMax.
func newReplayBody(src io.Reader, n int64) *replayBody {
	if n < 0 || n > replayMax {
		return nil
	}
	return &replayBody{src: src, buf: make([]byte, 0, n)}
}

// Read reads from the original and records what it read.
func (b *replayBody) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	b.buf = append(b.buf, p[:n]...)
	return n, err
}

// again returns the body to send on the retry: what was read, then what was not.
func (b *replayBody) again() io.Reader {
	return io.MultiReader(bytes.NewReader(b.buf), b.src)
}

// retryable wraps the failure of a reused connection before the response began.
type retryable struct{ err error }

// Error renders the underlying failure.
func (e *retryable) Error() string { return e.err.Error() }

// Unwrap returns the underlying failure.
func (e *retryable) Unwrap() error { return e.err }

// exchange writes the request on uc and reads the response head; the body reads from uc.
func (cl *client) exchange(ctx context.Context, uc *upConn, out *outRequest) (*http.Response, error) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { _ = uc.nc.SetDeadline(time.Unix(1, 0)) })
	}
	werr := writeRequest(uc, out)
	if werr != nil {
		return nil, cl.failed(uc, out, stop, werr, true)
	}
	resp, err := cl.readResponse(uc, out, stop)
	if err != nil {
		return nil, cl.failed(uc, out, stop, err, false)
	}
	return resp, nil
}

// failed ends a failed exchange: stops the cancellation hook and says whether a retry on a new
// connection is safe: the connection was a pooled one the origin closed (EOF, reset), nothing
// of the response had arrived (inWrite: the failure was in writing the request), the method
// is idempotent and the body, if any, was recorded for replay.
func (cl *client) failed(uc *upConn, out *outRequest, stop func() bool, err error, inWrite bool) error {
	if stop != nil {
		stop()
	}
	var body *bodyError
	if errors.As(err, &body) {
		return body.err
	}
	nothingReceived := inWrite || (len(uc.head.Bytes()) == 0 && !uc.interim)
	replayable := out.body == nil || out.replay != nil
	if uc.reused && isStaleConnError(err) && nothingReceived && idempotent(out.r.Method) && replayable {
		return &retryable{err: err}
	}
	return err
}

// idempotent reports the methods whose requests may be repeated after a failure
// (RFC 9110 §9.2.2): the proxy retries them on a new connection when a pooled one turns out
// closed. Other methods (POST, PATCH, …) are never sent twice: their client gets 502.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// isStaleConnError reports the failures of a connection the origin had already closed.
func isStaleConnError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// bodyError is a failure reading the client's request body (not the origin's fault).
type bodyError struct{ err error }

// Error renders the failure.
func (e *bodyError) Error() string { return e.err.Error() }

// writeRequest writes the request head and body to uc. With a progress limit every write has
// its deadline set afresh (none is cleared: the next write sets its own).
func writeRequest(uc *upConn, out *outRequest) error {
	r := out.r
	n := outgoingLength(r)
	if out.idle > 0 {
		_ = uc.nc.SetWriteDeadline(time.Now().Add(out.idle))
	}
	b := uc.bw.AvailableBuffer()
	b = wire.AppendRequestLine(b, r.Method, out.target)
	b = wire.AppendField(b, "Host", out.hostHdr)
	b = out.fwd.appendHeader(b, r)
	switch {
	case n > 0 || (n == 0 && needsLength(r.Method)):
		b = wire.AppendContentLength(b, n)
	case n < 0:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = append(b, "\r\n"...)
	if _, err := uc.bw.Write(b); err != nil {
		return err
	}
	if n != 0 {
		if err := writeBody(uc, out, n); err != nil {
			return err
		}
	}
	return uc.bw.Flush()
}

// needsLength reports methods whose empty body is still announced (as net/http does).
func needsLength(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// outgoingLength is the request body's length: > 0 known, 0 none, -1 unknown (chunked).
func outgoingLength(r *http.Request) int64 {
	if r.Body == nil || r.Body == http.NoBody {
		return 0
	}
	if r.ContentLength != 0 {
		return r.ContentLength
	}
	return -1
}

// writeBody copies the request body (n bytes, or chunked when n < 0), each write restarting
// the progress limit. A failure to read the client's body is a bodyError.
func writeBody(uc *upConn, out *outRequest, n int64) error {
	buf := chunkBufs.Get().(*[16 << 10]byte)
	defer chunkBufs.Put(buf)
	cw := wire.NewChunkedWriter(uc.bw)
	var sent int64
	for n < 0 || sent < n {
		p := buf[:]
		if n >= 0 && int64(len(p)) > n-sent {
			p = p[:n-sent]
		}
		m, rerr := out.body.Read(p)
		if m > 0 {
			if out.idle > 0 {
				_ = uc.nc.SetWriteDeadline(time.Now().Add(out.idle))
			}
			var err error
			if n < 0 {
				_, err = cw.Write(p[:m])
			} else {
				_, err = uc.bw.Write(p[:m])
			}
			if err != nil {
				return err
			}
			sent += int64(m)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &bodyError{err: rerr}
		}
	}
	if n < 0 {
		_ = cw.Close()
		_, err := uc.bw.WriteString("\r\n")
		return err
	}
	if sent < n {
		return &bodyError{err: fmt.Errorf("proxy: request body ended after %d of %d bytes: %w", sent, n, io.ErrUnexpectedEOF)}
	}
	return nil
}

// readResponse reads the final response head (passing interim 1xx responses on, at most
// wire.MaxInterim of them) and frames its body.
func (cl *client) readResponse(uc *upConn, out *outRequest, stop func() bool) (*http.Response, error) {
	head := &uc.head
	uc.interim = false
	lim := wire.Limits{MaxBytes: maxResponseHead}
	if cl.header > 0 {
		_ = uc.nc.SetReadDeadline(time.Now().Add(cl.header))
	}
	for interim := 0; ; interim++ {
		if err := head.Read(uc.br, lim); err != nil {
			return nil, responseError(err)
		}
		if !head.Interim() {
			break
		}
		uc.interim = true
		if interim >= wire.MaxInterim {
			return nil, fmt.Errorf("%w: more than %d interim (1xx) responses", errBadResponse, wire.MaxInterim)
		}
		if out.interim != nil && head.Status != http.StatusContinue {
			out.interim(head.Status, head.Header())
		}
	}
	if head.Status == http.StatusSwitchingProtocols && len(out.r.Header["Upgrade"]) == 0 {
		return nil, fmt.Errorf("%w: 101 Switching Protocols to a request without Upgrade", errBadResponse)
	}
	isHead := out.r.Method == http.MethodHead
	if head.Bodiless(isHead) && uc.br.Buffered() > 0 && head.Status != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("%w: a body after a %d response to %s", errBadResponse, head.Status, out.r.Method)
	}
	return cl.response(uc, out, head, stop), nil
}

// responseError wraps a head the origin got wrong as errBadResponse; a read failure stays what
// it is (a timeout is a 504, a reset a 502).
func responseError(err error) error {
	var werr *wire.Error
	if errors.As(err, &werr) {
		return fmt.Errorf("%w: %s", errBadResponse, werr.Msg)
	}
	return err
}

// response builds the *http.Response of a head, with a body reading from uc.
func (cl *client) response(uc *upConn, out *outRequest, head *wire.ResponseHead, stop func() bool) *http.Response {
	code := head.Status
	status := wire.StatusText(code)
	if reason := head.Reason(); string(reason) != wire.Reason(code) {
		status = strconv.Itoa(code) + " " + string(reason)
	}
	isHead := out.r.Method == http.MethodHead
	resp := &http.Response{Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Request: out.r, ContentLength: head.BodyLength(isHead)}
	if head.Proto10 {
		resp.Proto, resp.ProtoMinor = "HTTP/1.0", 0
	}
	if head.Chunked {
		resp.Header = head.Header("Transfer-Encoding", "Content-Length")
		resp.Trailer = http.Header{}
	} else {
		resp.Header = head.Header("Transfer-Encoding")
	}
	if isHead {
		resp.ContentLength = head.ContentLength
	}
	if code == http.StatusSwitchingProtocols || (out.idle == 0 && cl.header > 0) {
		_ = uc.nc.SetReadDeadline(time.Time{}) // the header wait's deadline must not bound the body
	}
	if code == http.StatusSwitchingProtocols {
		if stop != nil {
			stop() // the tunnel is bounded by its own idle timeout (upgrade.go)
		}
		resp.Body = &switchedConn{Conn: uc.nc, br: uc.br, onEnd: out.done}
		return resp
	}
	body := &upstreamBody{cl: cl, uc: uc, idle: out.idle, keep: head.KeepAlive(isHead), stop: stop,
		onEnd: out.done}
	body.framed.Reset(uc.br, head.BodyLength(isHead), head.Chunked, resp.Trailer)
	if body.framed.Done() {
		body.finish()
	}
	resp.Body = body
	if cs := head.Codings(); len(cs) > 0 && !head.Bodiless(isHead) {
		resp.Body = wire.DecodeCodings(body, cs) // the content, as the cache stores it
	}
	return resp
}

// upstreamBody is an origin's response body on its connection: each read restarts the
// progress limit (read_timeout); at its end the connection goes back to the pool, on Close
// before its end the connection is closed. It holds nothing of the client's connection, so
// the cache may read it after the client's request is over.
type upstreamBody struct {
	cl     *client
	uc     *upConn // nil once given back or closed
	framed wire.BodyReader
	idle   time.Duration
	keep   bool
	mu     sync.Mutex
	stop   func() bool // ends the client-cancellation hook (nil when there is none)
	onEnd  func()      // the pool's bookkeeping (origin in-flight count), run once
}

// errUpstreamStalled ends an exchange in which the origin made no progress for the idle limit.
// It counts as a timeout (504, error:timeout).
var errUpstreamStalled = fmt.Errorf("proxy: the origin made no progress within proxy.upstream.read_timeout: %w", context.DeadlineExceeded)

// Read reads the origin's body.
func (b *upstreamBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.uc == nil {
		if b.framed.Done() {
			return 0, io.EOF
		}
		return 0, net.ErrClosed
	}
	if b.idle > 0 {
		_ = b.uc.nc.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.framed.Read(p)
	switch {
	case err == nil && b.framed.Done():
		b.finish()
	case err == io.EOF:
		b.finish()
	case err != nil:
		err = explainRead(err)
		b.cl.discard(b.uc)
		b.uc = nil
		b.end()
	}
	return n, err
}

// explainRead names a body read failure: a stalled origin, a framing error, or the read error.
func explainRead(err error) error {
	var ne net.Error
	var werr *wire.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return errUpstreamStalled
	case errors.As(err, &werr):
		return fmt.Errorf("%w: %s", errBadResponse, werr.Msg)
	}
	return err
}

// finish gives the connection back (or closes it) once the body has been read to its end. A
// connection the client-cancellation hook has touched is closed.
func (b *upstreamBody) finish() {
	if b.uc == nil {
		return
	}
	if b.stopHook() && b.keep {
		if b.cl.header == 0 && b.idle > 0 { // else the next exchange sets its own before reading
			_ = b.uc.nc.SetReadDeadline(time.Time{})
		}
		b.cl.put(b.uc)
	} else {
		b.cl.discard(b.uc)
	}
	b.uc = nil
	b.end()
}

// stopHook ends the client-cancellation hook; false when it has already run.
func (b *upstreamBody) stopHook() bool {
	if b.stop == nil {
		return true
	}
	ok := b.stop()
	b.stop = nil
	return ok
}

// end runs the pool's bookkeeping once.
func (b *upstreamBody) end() {
	b.stopHook()
	if f := b.onEnd; f != nil {
		b.onEnd = nil
		f()
	}
}

// Close ends the body: a connection whose body was not read to its end is closed.
func (b *upstreamBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.uc != nil {
		b.cl.discard(b.uc)
		b.uc = nil
	}
	b.end()
	return nil
}

// switchedConn is the origin's connection after 101 Switching Protocols: reads start with what
// the client's reader had buffered past the head. It is the caller's now (upgrade.go).
type switchedConn struct {
	net.Conn
	br    *bufio.Reader
	onEnd func()
	once  sync.Once
}

// Read reads buffered bytes first, then the connection.
func (u *switchedConn) Read(p []byte) (int, error) { return u.br.Read(p) }

// Close closes the connection and runs the pool's bookkeeping once.
func (u *switchedConn) Close() error {
	err := u.Conn.Close()
	u.once.Do(func() {
		if u.onEnd != nil {
			u.onEnd()
		}
	})
	return err
}

// CloseWrite half-closes the connection towards the origin (when it can).
func (u *switchedConn) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
