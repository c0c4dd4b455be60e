package mailstore

import (
	"net"
	"net/netip"
)

// PlaintextAuthAllowed decides whether a client may send a password in the clear (SMTP AUTH
// PLAIN/LOGIN, POP3 USER/PASS, IMAP LOGIN): always over TLS; without TLS only when
// allowInsecure is set AND the client is on loopback (127.0.0.0/8, ::1), so the
// allow_insecure_auth switch of the demo never exposes passwords on a real network.
func PlaintextAuthAllowed(remote net.Addr, tls, allowInsecure bool) bool {
	if tls {
		return true
	}
	return allowInsecure && IsLoopback(remote)
}

// IsLoopback reports whether a client address is a loopback IP address (IPv4-mapped too).
// Anything that is not an IP address (a pipe, a Unix socket, nil) is not loopback.
func IsLoopback(remote net.Addr) bool {
	var ip netip.Addr
	switch a := remote.(type) {
	case *net.TCPAddr:
		if a == nil {
			return false
		}
		ip, _ = netip.AddrFromSlice(a.IP)
	case nil:
		return false
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return false
		}
		ip = ap.Addr()
	}
	return ip.IsValid() && ip.Unmap().IsLoopback()
}
