//go:build unix

package proxy

import (
	"io"
	"syscall"
)

// init binds the source to c's socket.
func (s *connSource) init(c *conn) {
	s.nc, s.c = c.nc, c
	if sc, ok := c.nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
			s.firstFn = s.firstRead
		}
	}
}

// firstRead is readFirst's raw read callback (bound once: reading allocates nothing). Each call
// reads without waiting; when nothing has arrived it gives the buffers back (once) and has the
// poller wait for readability, then it is called again.
func (s *connSource) firstRead(fd uintptr) bool {
	for {
		if s.chunk == nil {
			s.chunk = chunkPool.Get().(*[8 << 10]byte)
		}
		n, err := syscall.Read(int(fd), s.chunk[:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.dropChunk()
			if !s.released {
				s.released = true
				s.c.idleBuffers()
			}
			return false
		case err != nil:
			s.dropChunk()
			s.err = err
		case n == 0:
			s.dropChunk()
			s.err = io.EOF
		default:
			s.pend = s.chunk[:n]
		}
		return true
	}
}

// nothingPending reports whether the socket holds no unread bytes (a look without reading and
// without waiting; the peer's end of stream counts as none); false when it cannot tell.
func (s *connSource) nothingPending() bool {
	if s.raw == nil || len(s.pend) > 0 {
		return false
	}
	empty := false
	_ = s.raw.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), s.one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			// Nothing arrived, or only the client's FIN (a close with no unread data
			// does not reset the connection).
			empty = err == syscall.EAGAIN || err == nil && n == 0
			return true
		}
	})
	return empty
}
