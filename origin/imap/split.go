package imap

import (
	"net"
	"sync"

	"github.com/outpost-proxy/outpost/internal/component"
)

// go-imap decides "may this connection LOGIN without TLS" server-wide (Options.InsecureAuth).
// To allow it for loopback clients only, accepted connections are split between two go-imap
// servers that differ only in that option.

// chanListener is a net.Listener fed with connections by splitConns.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// newChanListener returns an open chanListener reporting addr.
func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next routed connection, or net.ErrClosed once closed.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept fail; connections routed afterwards are closed by splitConns.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the real listener's address.
func (l *chanListener) Addr() net.Addr { return l.addr }

// hand passes c to the listener's Accept, or closes it when the listener is closed.
func (l *chanListener) hand(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// splitConns accepts from ln until it fails, handing each connection to local when isLocal
// says so and to remote otherwise; it then closes both and returns the accept error.
func splitConns(ln net.Listener, isLocal func(net.Addr) bool, local, remote *chanListener) error {
	defer local.Close()
	defer remote.Close()
	var backoff component.AcceptBackoff
	for {
		c, err := ln.Accept()
		if backoff.Retry(err) {
			continue
		}
		if err != nil {
			return err
		}
		backoff.Reset()
		if isLocal(c.RemoteAddr()) {
			local.hand(c)
		} else {
			remote.hand(c)
		}
	}
}
