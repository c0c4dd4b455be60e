package component

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/net/netutil"
)

// ListenTCP binds addr for a TCP server. With maxConns > 0 the listener accepts at most that
// many connections at once (the rest wait in the kernel's backlog). The error names the address.
func ListenTCP(ctx context.Context, addr string, maxConns int) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if maxConns > 0 {
		ln = netutil.LimitListener(ln, maxConns)
	}
	return ln, nil
}

// Addrs renders bound listeners the way Component.Addrs reports them ("tcp 127.0.0.1:8080"),
// skipping nil ones (not yet bound).
func Addrs(lns ...net.Listener) []string {
	var out []string
	for _, ln := range lns {
		if ln != nil {
			out = append(out, ln.Addr().Network()+" "+ln.Addr().String())
		}
	}
	return out
}
