//go:build linux

package dnsredirect

import (
	"net"
	"net/netip"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched UDP I/O: one recvmmsg reads up to udpBatch queries and one sendmmsg writes their
// answers, so the two system calls per query of a plain read/write loop are shared by a batch
// (gdnsd does the same). Nothing is allocated per query.
const (
	udpBatch   = 32
	udpInSize  = 4096        // larger queries are truncated by the kernel and dropped
	udpOutSize = 4096 + 1024 // responses are capped at edns_udp_size (≤ 4096); TC ones are small
)

// udpBatchIO is one reader's buffers and message headers; it lives on the heap, pinned while in
// use by the kernel.
type udpBatchIO struct {
	rhdr  [udpBatch]unix.Mmsghdr
	shdr  [udpBatch]unix.Mmsghdr
	riov  [udpBatch]unix.Iovec
	siov  [udpBatch]unix.Iovec
	names [udpBatch]unix.RawSockaddrInet6
	in    [udpBatch][udpInSize]byte
	out   [udpBatch][udpOutSize]byte
	qs    [udpBatch]query
}

// serveUDP reads batches of queries from c and writes their answers until c is closed. The
// reads and writes are raw non-blocking system calls (they never wait, so the goroutine keeps its
// P and the scheduler does no hand-off); only an empty queue parks the goroutine in the
// netpoller.
func (s *Server) serveUDP(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		s.serveUDPPlain(c)
		return
	}
	b := new(udpBatchIO)
	var pin runtime.Pinner
	pin.Pin(b)
	defer pin.Unpin()
	b.init()
	lc := &localCache{tally: map[counter]uint64{}}
	for i := range b.qs {
		b.qs[i].lc = lc
	}
	var got, k, sent int
	var rerr unix.Errno
	recv := func(fd uintptr) bool {
		for i := range b.rhdr {
			b.rhdr[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			b.rhdr[i].Hdr.Flags = 0
		}
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rhdr[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false // wait in the netpoller
		}
		got, rerr = int(n), e
		return true
	}
	send := func(fd uintptr) bool {
		for sent < k {
			n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.shdr[sent])), uintptr(k-sent), unix.MSG_DONTWAIT, 0, 0)
			switch {
			case e == unix.EAGAIN:
				return false
			case e == unix.EINTR:
			case e != 0:
				sent++
			default:
				sent += int(n)
			}
		}
		return true
	}
	for {
		if err := rc.Read(recv); err != nil {
			return
		}
		if rerr != 0 {
			continue
		}
		k, sent = s.answerBatch(b, got), 0
		lc.flush()
		if k > 0 {
			if err := rc.Write(send); err != nil {
				return
			}
		}
	}
}

// init points the receive headers at the buffers.
func (b *udpBatchIO) init() {
	for i := range b.rhdr {
		b.riov[i].Base = &b.in[i][0]
		b.riov[i].SetLen(udpInSize)
		b.rhdr[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.rhdr[i].Hdr.Iov = &b.riov[i]
		b.rhdr[i].Hdr.SetIovlen(1)
	}
}

// answerBatch answers the n queries read into b and prepares their send headers; it returns
// how many answers to send.
func (s *Server) answerBatch(b *udpBatchIO, n int) int {
	st := s.st.Load()
	r := s.rrl.Load()
	tp, qtime := s.tapNow()
	k := 0
	for i := range n {
		h := &b.rhdr[i]
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			s.m.dropped.Inc()
			continue
		}
		src := sockaddrAddr(&b.names[i])
		q := &b.qs[i]
		resp := st.handle(b.in[i][:h.Len], b.out[i][:0], q, src, false, s.m)
		if resp == nil {
			continue
		}
		if r != nil {
			switch r.check(src) {
			case rrlDrop:
				s.m.rrlDrop.Inc()
				resp = nil
			case rrlSlip:
				s.m.rrlTC.Inc()
				resp = slipped(resp, q)
			}
		}
		if tp != nil {
			tp.record(b.in[i][:h.Len], resp, netip.AddrPortFrom(src, sockaddrPort(&b.names[i])), false, qtime)
		}
		if resp == nil {
			continue
		}
		b.siov[k].Base = &resp[0]
		b.siov[k].SetLen(len(resp))
		b.shdr[k].Hdr.Name = h.Hdr.Name
		b.shdr[k].Hdr.Namelen = h.Hdr.Namelen
		b.shdr[k].Hdr.Iov = &b.siov[k]
		b.shdr[k].Hdr.SetIovlen(1)
		k++
	}
	return k
}

// sockaddrPort decodes the source port of a received datagram (network byte order, at the
// same offset for both families).
func sockaddrPort(sa *unix.RawSockaddrInet6) uint16 {
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return uint16(p[0])<<8 | uint16(p[1])
}

// sockaddrAddr decodes the source address of a received datagram.
func sockaddrAddr(sa *unix.RawSockaddrInet6) netip.Addr {
	if sa.Family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(sa4.Addr)
	}
	return netip.AddrFrom16(sa.Addr).Unmap()
}
