package proxy

import (
	"errors"
	"io"
	"syscall"
)

// errWouldBlock is what a read without waiting returns when nothing has arrived.
var errWouldBlock = errors.New("proxy: no data yet")

// connSource is what a connection's read buffer reads from: the socket. Between requests the
// reader first reads without waiting (peekNoWait); only when nothing has arrived does it give
// its buffers back and wait for the socket to become readable (waitReadable), which needs no
// buffer. raw is nil for connections that are not sockets: they keep their buffers.
type connSource struct {
	nc     io.Reader
	raw    syscall.RawConn
	noWait bool // the next Read must not wait

	// The read in progress inside raw.Read (the callbacks are bound once, so reading
	// allocates nothing).
	p      []byte
	n      int
	err    error
	one    [1]byte
	waited bool // waitReadable found nothing and waits for the poller
	readFn func(fd uintptr) bool
	peekFn func(fd uintptr) bool
}

// Read reads from the socket; with noWait set it returns errWouldBlock instead of waiting.
func (s *connSource) Read(p []byte) (int, error) {
	if !s.noWait {
		return s.nc.Read(p)
	}
	s.p = p
	err := s.raw.Read(s.readFn)
	n, rerr := s.n, s.err
	s.p, s.err = nil, nil
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// peekNoWait fills br with whatever has arrived, without waiting.
func (s *connSource) peekNoWait(br interface{ Peek(int) ([]byte, error) }) ([]byte, error) {
	s.noWait = true
	defer func() { s.noWait = false }()
	return br.Peek(1)
}

// waitReadable waits until the socket has data (or end of stream, or an error) without
// reading any: false when the wait failed (deadline, closed).
func (s *connSource) waitReadable() bool {
	s.waited = false
	return s.raw.Read(s.peekFn) == nil
}
