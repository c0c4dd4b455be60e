package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The chaos origin: a fault origin for the origin-fault tests (faults_test.go), a real TCP
// listener on 127.0.0.1:0 that misbehaves on request. The fault of a request is chosen by its
// path, /f/<fault>/…, or by an X-Fault request field (which wins: a test primes a cached
// object with X-Fault: ok on the path it later faults). How connections are accepted is the
// origin's state (goes): served, reset right after accept (resetAccepts), refused (goDown
// closes the listener) or left hanging (blackhole: the accept queue full). It counts the requests read on each connection and the bytes that arrive on
// a connection after a fault left it unusable, which the proxy must never send
// (reuseAfterFault).

// Faults a request can ask for.
const (
	faultOK           = "ok"            // 200 with a faultBodyLen body, keep-alive
	faultStatus503    = "503"           // 503 with a short body, keep-alive (a valid answer)
	faultResetHead    = "reset-head"    // part of the status line and a field, then RST
	faultResetBody    = "reset-body"    // the head (Content-Length) and half the body, then RST
	faultResetChunked = "reset-chunked" // a chunked head and one chunk, then RST
	faultStallHead    = "stall-head"    // nothing: the request is read, no answer ever comes
	faultStallBody    = "stall-body"    // the head and half the body, then nothing
	faultGarbage      = "garbage"       // bytes that are not HTTP, the connection left open
	faultCloseAfter   = "close-after"   // a keep-alive 200, then the connection closed (FIN)
	faultCloseNext    = "close-next"    // a keep-alive 200; the next request on it is read and the connection reset unanswered
)

// faultBodyLen is the length of a whole 200 body (faultBody).
const faultBodyLen = 8 << 10

// faultBody is the body of a 200: faultBodyLen bytes of a repeating pattern.
var faultBody = strings.Repeat("0123456789abcdef", faultBodyLen/16)

// chaosOrigin is the misbehaving origin; see the comment at the top of the file.
type chaosOrigin struct {
	ln   net.Listener
	addr string

	reset atomic.Bool   // accepted connections are reset at once (SO_LINGER 0)
	hold  atomic.Bool   // accept no more (blackhole)
	quit  chan struct{} // closed at shutdown: ends the held accept loop

	mu      sync.Mutex
	fill    []net.Conn // the test's own connections filling the accept queue (blackhole)
	conns   []*chaosConn
	seen    []seenRequest
	down    bool
	wg      sync.WaitGroup // the accept loop and every connection's goroutine
	accepts atomic.Int64
	live    atomic.Int64 // connections being served
}

// seenRequest is a request the origin read: on which connection, and its body.
type seenRequest struct {
	conn         int // index in accept order (of connections served)
	method, path string
	body         string
}

// chaosConn is one accepted connection and what happened on it.
type chaosConn struct {
	nc       *net.TCPConn
	id       int          // index in accept order (of connections served)
	requests atomic.Int64 // requests read on it
	faulted  atomic.Bool  // a fault left it unusable (an answer that cannot be followed)
	after    atomic.Int64 // bytes received after the fault: the proxy reused a faulted connection
}

// startChaosOrigin starts a chaos origin; it is shut down (every connection closed, every
// goroutine ended) when the test ends.
func startChaosOrigin(t testing.TB) *chaosOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &chaosOrigin{ln: ln, addr: ln.Addr().String(), quit: make(chan struct{})}
	o.wg.Add(1)
	go o.acceptLoop()
	t.Cleanup(o.close)
	return o
}

// url is the origin's base URL.
func (o *chaosOrigin) url() string { return "http://" + o.addr }

// acceptLoop serves connections until the listener closes.
func (o *chaosOrigin) acceptLoop() {
	defer o.wg.Done()
	for {
		nc, err := o.ln.Accept()
		if err != nil {
			return
		}
		if o.hold.Load() {
			_ = nc.Close()
			<-o.quit // accept nothing more: the queue fills, connects hang
			return
		}
		o.accepts.Add(1)
		tc := nc.(*net.TCPConn)
		if o.reset.Load() {
			resetConn(tc)
			continue
		}
		fc := &chaosConn{nc: tc}
		o.mu.Lock()
		if o.down {
			o.mu.Unlock()
			_ = tc.Close()
			continue
		}
		fc.id = len(o.conns)
		o.conns = append(o.conns, fc)
		o.wg.Add(1)
		o.live.Add(1)
		o.mu.Unlock()
		go o.serve(fc)
	}
}

// resetConn closes a connection with a TCP reset (SO_LINGER 0) instead of a FIN.
func resetConn(nc *net.TCPConn) {
	_ = nc.SetLinger(0)
	_ = nc.Close()
}

// serve reads requests on one connection and answers each with its fault.
func (o *chaosOrigin) serve(fc *chaosConn) {
	defer o.wg.Done()
	defer o.live.Add(-1)
	defer fc.nc.Close()
	br := bufio.NewReader(fc.nc)
	closeNext := false
	for {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		fc.requests.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		o.mu.Lock()
		o.seen = append(o.seen, seenRequest{conn: fc.id, method: r.Method, path: r.URL.Path, body: string(body)})
		o.mu.Unlock()
		if closeNext {
			resetConn(fc.nc)
			return
		}
		fault := r.Header.Get("X-Fault")
		if fault == "" {
			fault = pathFault(r.URL.Path)
		}
		keep, next := o.answer(fc, br, r, fault)
		if !keep {
			return
		}
		closeNext = next
	}
}

// pathFault is the fault named by a /f/<fault>/… path ("ok" for any other path).
func pathFault(path string) string {
	rest, ok := strings.CutPrefix(path, "/f/")
	if !ok {
		return faultOK
	}
	fault, _, _ := strings.Cut(rest, "/")
	return fault
}

// answer writes the fault's answer to r. keep: the connection serves more requests; next:
// the next request on it is to be reset unanswered.
func (o *chaosOrigin) answer(fc *chaosConn, br *bufio.Reader, r *http.Request, fault string) (keep, next bool) {
	w := fc.nc
	cc := ""
	if v := r.Header.Get("X-CC"); v != "" { // the client's choice of Cache-Control (and a validator)
		cc = "Cache-Control: " + v + "\r\nETag: \"v1\"\r\n"
	}
	okHead := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n", faultBodyLen, cc)
	half := faultBody[:faultBodyLen/2]
	switch fault {
	case faultOK, faultCloseAfter, faultCloseNext:
		body := faultBody
		if r.Method == http.MethodHead {
			body = ""
		}
		if _, err := io.WriteString(w, okHead+body); err != nil {
			return false, false
		}
		return fault != faultCloseAfter, fault == faultCloseNext
	case faultStatus503:
		_, err := io.WriteString(w, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\norigin 503\n")
		return err == nil, false
	case faultResetHead:
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Type: te")
		resetConn(fc.nc)
	case faultResetBody:
		_, _ = io.WriteString(w, okHead+half)
		resetConn(fc.nc)
	case faultResetChunked:
		_, _ = fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n%s\r\n%x\r\n%s\r\n", cc, len(half), half)
		resetConn(fc.nc)
	case faultStallHead:
		fc.stall(br)
	case faultStallBody:
		if _, err := io.WriteString(w, okHead+half); err == nil {
			fc.stall(br)
		}
	case faultGarbage:
		if _, err := io.WriteString(w, "SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n"); err == nil {
			fc.stall(br)
		}
	default:
		_, _ = fmt.Fprintf(w, "HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n\r\nunknown fault %q", len(fault)+16, fault)
	}
	return false, false
}

// stall marks the connection faulted and answers nothing more: it reads until the proxy
// closes the connection (or the origin shuts down), counting any byte that arrives, which
// would be a request sent on a connection whose last exchange never ended.
func (fc *chaosConn) stall(br *bufio.Reader) {
	fc.faulted.Store(true)
	buf := make([]byte, 512)
	for {
		n, err := br.Read(buf)
		fc.after.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// goDown closes the listener and every open connection: connects are refused from now on.
func (o *chaosOrigin) goDown() {
	o.mu.Lock()
	o.down = true
	conns := o.conns
	o.mu.Unlock()
	_ = o.ln.Close()
	for _, fc := range conns {
		_ = fc.nc.Close()
	}
}

// resetAccepts makes the origin reset every new connection right after accepting it, and
// closes the open ones (so the proxy's pool holds none that still works).
func (o *chaosOrigin) resetAccepts() {
	o.reset.Store(true)
	o.closeConns()
}

// closeConns closes the open connections.
func (o *chaosOrigin) closeConns() {
	o.mu.Lock()
	conns := o.conns
	o.mu.Unlock()
	for _, fc := range conns {
		_ = fc.nc.Close()
	}
}

// Ways an origin goes down (chaosOrigin.goes).
const (
	downRefuse    = "refuse"    // the listener closed: connects are refused
	downReset     = "reset"     // connects are accepted and reset at once
	downBlackhole = "blackhole" // connects hang until the dialer's timeout
)

// goes takes the origin down the named way ("" leaves it up).
func (o *chaosOrigin) goes(t testing.TB, down string) {
	switch down {
	case downRefuse:
		o.goDown()
	case downReset:
		o.resetAccepts()
	case downBlackhole:
		o.blackhole(t)
	case "":
	default:
		t.Fatalf("unknown way down %q", down)
	}
}

// blackhole makes connects to the origin hang until the dialer gives up: it stops accepting,
// shrinks the listen backlog to 0 and fills the accept queue with connections of its own, so
// the kernel drops further SYNs; open connections are closed. Linux only: it fails the test
// where a full queue does not hold connects back.
func (o *chaosOrigin) blackhole(t testing.TB) {
	t.Helper()
	o.hold.Store(true)
	rc, err := o.ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), 0) }); err != nil || lerr != nil {
		t.Fatalf("backlog 0: %v %v", err, lerr)
	}
	o.closeConns()
	for range 8 { // the first wakes the accept loop; backlog 0 then admits one or two
		// A second is long enough that a connect which completed is not taken for a hanging
		// one, on a machine however loaded.
		nc, err := net.DialTimeout("tcp", o.addr, time.Second)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return
		case err != nil:
			t.Fatal(err)
		}
		o.mu.Lock()
		o.fill = append(o.fill, nc)
		o.mu.Unlock()
	}
	t.Fatal("connects to a full accept queue do not hang here")
}

// close shuts the origin down and waits for its goroutines.
func (o *chaosOrigin) close() {
	close(o.quit)
	o.goDown()
	o.mu.Lock()
	for _, nc := range o.fill {
		_ = nc.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// reuseAfterFault describes the connections that received bytes after a fault ("" if none).
func (o *chaosOrigin) reuseAfterFault() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var bad []string
	for i, fc := range o.conns {
		if n := fc.after.Load(); n > 0 {
			bad = append(bad, fmt.Sprintf("connection %d: %d bytes after a fault (%d requests)", i, n, fc.requests.Load()))
		}
	}
	return strings.Join(bad, "; ")
}

// requestCounts returns the requests read on each connection, in accept order.
func (o *chaosOrigin) requestCounts() []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]int64, len(o.conns))
	for i, fc := range o.conns {
		out[i] = fc.requests.Load()
	}
	return out
}

// requests returns the requests read so far, in order.
func (o *chaosOrigin) requests() []seenRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]seenRequest(nil), o.seen...)
}

// faultedConns counts the connections a stall or garbage fault left unusable.
func (o *chaosOrigin) faultedConns() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, fc := range o.conns {
		if fc.faulted.Load() {
			n++
		}
	}
	return n
}
