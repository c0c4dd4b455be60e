//go:build !linux

package dnsredirect

import "net"

// serveUDP reads and answers one datagram at a time (batched I/O is Linux only).
func (s *Server) serveUDP(c *net.UDPConn) {
	s.serveUDPPlain(c)
}
