package proxy

import (
	"io"
	"sync"
	"syscall"
)

// connSource is what a connection's read buffer reads from: the socket. Between requests the
// reader waits for the next request without holding its buffers (readFirst): it reads what
// has arrived into a pooled chunk, and only when nothing has arrived does it give its buffers
// back and wait for the socket to become readable. The read buffer, taken again, starts with
// the chunk's bytes. raw is nil for connections that are not sockets: they keep their buffers.
type connSource struct {
	nc  io.Reader
	raw syscall.RawConn
	c   *conn

	chunk    *[8 << 10]byte // holds pend
	pend     []byte         // read by readFirst, not yet handed to the read buffer
	err      error          // how readFirst's read ended, when it brought no bytes
	released bool           // readFirst gave the connection's buffers back
	one      [1]byte        // nothingPending's look
	tlsFirst [1]byte        // readFirstTLS's byte (tls.go), handed over as pend
	firstFn  func(fd uintptr) bool
}

// chunkPool holds the chunks of first reads.
var chunkPool = sync.Pool{New: func() any { return new([8 << 10]byte) }}

// Read hands over what readFirst read, then reads from the socket.
func (s *connSource) Read(p []byte) (int, error) {
	if len(s.pend) > 0 {
		n := copy(p, s.pend)
		s.pend = s.pend[n:]
		if len(s.pend) == 0 {
			s.dropChunk()
		}
		return n, nil
	}
	if err := s.err; err != nil {
		s.err = nil
		return 0, err
	}
	return s.nc.Read(p)
}

// readFirst waits for the first bytes of the next request and reads what has arrived; on the
// way, if the socket has nothing yet, it gives the connection's buffers back. false when the
// wait failed (deadline, closed). Nothing may use the buffers meanwhile (see releaseBuffers).
func (s *connSource) readFirst() bool {
	s.released = false
	return s.raw.Read(s.firstFn) == nil
}

// dropChunk gives the chunk back.
func (s *connSource) dropChunk() {
	if s.chunk != nil {
		chunkPool.Put(s.chunk)
		s.chunk, s.pend = nil, nil
	}
}
