//go:build unix

package proxy

import (
	"io"
	"syscall"
)

// init binds the source to c's socket.
func (s *connSource) init(c *conn) {
	s.nc = c.nc
	if sc, ok := c.nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
			s.readFn, s.peekFn = s.readOnce, s.peekOnce
		}
	}
}

// readOnce is the raw read callback of a read that does not wait.
func (s *connSource) readOnce(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), s.p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.n, s.err = 0, errWouldBlock
		case err != nil:
			s.n, s.err = 0, err
		case n == 0 && len(s.p) > 0:
			s.n, s.err = 0, io.EOF
		default:
			s.n, s.err = n, nil
		}
		return true
	}
}

// peekOnce is the raw read callback of waitReadable. Its first call looks (without reading)
// whether data has arrived; a later call comes only after the poller reported the socket
// readable (or closed: the read that follows says so), so it needs no second look.
func (s *connSource) peekOnce(fd uintptr) bool {
	if s.waited {
		s.waited = false
		return true
	}
	for {
		_, _, err := syscall.Recvfrom(int(fd), s.one[:], syscall.MSG_PEEK)
		if err == syscall.EINTR {
			continue
		}
		s.waited = err == syscall.EAGAIN
		return !s.waited
	}
}
