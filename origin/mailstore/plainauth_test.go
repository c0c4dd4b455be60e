package mailstore

import (
	"net"
	"testing"
)

// TestPlaintextAuthAllowed: cleartext passwords only over TLS, or from loopback when allowed.
func TestPlaintextAuthAllowed(t *testing.T) {
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
	for _, tc := range []struct {
		name          string
		remote        net.Addr
		tls, insecure bool
		want          bool
	}{
		{"loopback v4, insecure allowed", tcp("127.0.0.1"), false, true, true},
		{"loopback 127.0.0.2, insecure allowed", tcp("127.0.0.2"), false, true, true},
		{"loopback v6, insecure allowed", tcp("::1"), false, true, true},
		{"v4-mapped loopback", tcp("::ffff:127.0.0.1"), false, true, true},
		{"loopback, insecure off", tcp("127.0.0.1"), false, false, false},
		{"LAN client, insecure allowed", tcp("192.168.1.20"), false, true, false},
		{"public v6 client, insecure allowed", tcp("2001:db8::1"), false, true, false},
		{"unspecified address", tcp("0.0.0.0"), false, true, false},
		{"LAN client over TLS", tcp("192.168.1.20"), true, false, true},
		{"loopback over TLS", tcp("127.0.0.1"), true, false, true},
		{"UDP-style addr string", &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, false, true, true},
		{"unix socket", &net.UnixAddr{Name: "/tmp/x", Net: "unix"}, false, true, false},
		{"nil address", nil, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PlaintextAuthAllowed(tc.remote, tc.tls, tc.insecure); got != tc.want {
				t.Fatalf("PlaintextAuthAllowed(%v, tls=%v, insecure=%v) = %v, want %v", tc.remote, tc.tls, tc.insecure, got, tc.want)
			}
		})
	}
}
