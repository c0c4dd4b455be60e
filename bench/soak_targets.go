package bench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// faultMode is what the fault origin does with the next request.
type faultMode int32

// The fault origin's modes.
const (
	faultNone      faultMode = iota // answer 200
	faultReset                      // read the request, then reset the connection
	faultStall                      // read the request, then say nothing for faultStallFor
	faultMidBody                    // send the head and half the body, then reset
	faultStatus                     // answer 503
	faultGarbage                    // answer bytes that are not HTTP, then close
	faultIdleClose                  // answer a connection's first request; close on its next one unanswered
)

// faultStallFor is how long a stalled request waits before the origin closes it; it exceeds
// the proxy's response_header_timeout in the soak's configuration.
const faultStallFor = 4 * time.Second

// faultBodySize is the size of the fault origin's answers.
const faultBodySize = 8 << 10

// faultOrigin is the soak's own HTTP/1.1 origin: it answers GETs with a body derived from the
// path (Cache-Control: no-store, so every request reaches it) unless a fault mode is set, and
// can be stopped and restarted on the same address (the origin restart).
type faultOrigin struct {
	addr string
	mode atomic.Int32

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newFaultOrigin listens on a free loopback port.
func newFaultOrigin() (*faultOrigin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault origin: %w", err)
	}
	o := &faultOrigin{addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	o.serve(ln)
	return o, nil
}

// faultBody is the fault origin's body for path.
func faultBody(path string) []byte {
	b := make([]byte, faultBodySize)
	seed := []byte("outpost soak " + path + " ")
	for i := range b {
		b[i] = seed[i%len(seed)]
	}
	return b
}

func (o *faultOrigin) serve(ln net.Listener) {
	o.mu.Lock()
	o.ln = ln
	o.mu.Unlock()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.track(c, true)
			o.wg.Add(1)
			go func() { defer o.wg.Done(); defer o.track(c, false); o.handle(c) }()
		}
	}()
}

func (o *faultOrigin) track(c net.Conn, add bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if add {
		o.conns[c] = struct{}{}
	} else {
		delete(o.conns, c)
		c.Close()
	}
}

// handle serves one connection's requests until it closes, idles 30 s or a fault ends it.
func (o *faultOrigin) handle(c net.Conn) {
	br := bufio.NewReader(c)
	for n := 1; ; n++ {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		body := faultBody(req.URL.Path)
		head := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: no-store\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		switch faultMode(o.mode.Load()) {
		case faultReset:
			reset(c)
			return
		case faultStall:
			time.Sleep(faultStallFor)
			return
		case faultMidBody:
			c.Write([]byte(head))
			c.Write(body[:len(body)/2])
			reset(c)
			return
		case faultStatus:
			msg := "503 origin unavailable (soak fault)\n"
			c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nCache-Control: no-store\r\nContent-Length: " + strconv.Itoa(len(msg)) + "\r\n\r\n" + msg))
			continue
		case faultGarbage:
			c.Write([]byte("HTTP/1.1 2OO 0K\r\nthis is not a header\r\n\x00\x01\x02\r\n\r\n"))
			return
		case faultIdleClose:
			if n > 1 { // the idle connection the proxy reused: gone just as it was reused
				return
			}
		}
		if _, err := c.Write(append([]byte(head), body...)); err != nil || req.Close {
			return
		}
	}
}

// reset closes c with a TCP RST (SO_LINGER 0) instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// set switches the mode for the requests that follow.
func (o *faultOrigin) set(m faultMode) { o.mode.Store(int32(m)) }

// stop closes the listener and every connection (the origin goes away).
func (o *faultOrigin) stop() {
	o.mu.Lock()
	if o.ln != nil {
		o.ln.Close()
		o.ln = nil
	}
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
}

// start listens on the origin's address again, retrying for up to 5 s.
func (o *faultOrigin) start() error {
	ln, err := listenAgain(o.addr)
	if err != nil {
		return fmt.Errorf("fault origin restart: %w", err)
	}
	o.serve(ln)
	return nil
}

// close stops the origin and waits for its goroutines.
func (o *faultOrigin) close() {
	o.stop()
	o.wg.Wait()
}

// listenAgain listens on addr, retrying while the port is briefly unavailable.
func listenAgain(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// echoTarget is a TLS echo server, the far end of the soak's CONNECT tunnels.
type echoTarget struct {
	ln   net.Listener
	pool *x509.CertPool
	wg   sync.WaitGroup
}

// newEchoTarget listens on a free loopback port with a fresh self-signed certificate for
// 127.0.0.1.
func newEchoTarget() (*echoTarget, error) {
	cert, pool, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("echo target: %w", err)
	}
	e := &echoTarget{ln: ln, pool: pool}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	return e, nil
}

func (e *echoTarget) addr() string { return e.ln.Addr().String() }

func (e *echoTarget) port() int { return e.ln.Addr().(*net.TCPAddr).Port }

func (e *echoTarget) close() { e.ln.Close(); e.wg.Wait() }

// selfSigned makes an ECDSA certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "outpost soak echo"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// soakEdge is one CDN edge address the suite's DNS health-checks (tcp://): a listener the soak
// runs, accepts and closes, and can stop and restart.
type soakEdge struct {
	name, addr string
	mu         sync.Mutex
	ln         net.Listener
	downSince  time.Time // zero while up
	upAt       time.Time // when it last started
	wg         sync.WaitGroup
}

// newSoakEdge listens on a free port of ip (127.0.0.11 etc.).
func newSoakEdge(name, ip string) (*soakEdge, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", name, err)
	}
	e := &soakEdge{name: name, addr: ln.Addr().String(), upAt: time.Now()}
	e.serve(ln)
	return e, nil
}

func (e *soakEdge) serve(ln net.Listener) {
	e.mu.Lock()
	e.ln = ln
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// ip is the edge's address without the port.
func (e *soakEdge) ip() string { h, _, _ := net.SplitHostPort(e.addr); return h }

// down reports since when the edge has been stopped (zero: up).
func (e *soakEdge) down() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.downSince
}

// upSince reports when the edge last started.
func (e *soakEdge) upSince() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.upAt
}

func (e *soakEdge) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln != nil {
		e.ln.Close()
		e.ln = nil
		e.downSince = time.Now()
	}
}

func (e *soakEdge) start() error {
	ln, err := listenAgain(e.addr)
	if err != nil {
		return fmt.Errorf("edge %s restart: %w", e.name, err)
	}
	e.serve(ln)
	e.mu.Lock()
	e.downSince, e.upAt = time.Time{}, time.Now()
	e.mu.Unlock()
	return nil
}

func (e *soakEdge) close() { e.stop(); e.wg.Wait() }

// waitCtx sleeps for d or until ctx ends, reporting whether the full time passed.
func waitCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
