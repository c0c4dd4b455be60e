package ftp

import (
	"net/netip"
	"sync"
	"time"
)

// loginGuard counts failed logins per address: max failures within window lock the address
// out for window.
type loginGuard struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	now    func() time.Time
	state  map[netip.Addr]*failures
}

// failures is one address's record.
type failures struct {
	count       int
	first       time.Time
	lockedUntil time.Time
}

// maxTracked bounds the addresses remembered; expired records are dropped beyond it.
const maxTracked = 10000

// newLoginGuard returns a guard allowing max failures per window.
func newLoginGuard(max int, window time.Duration, now func() time.Time) *loginGuard {
	return &loginGuard{max: max, window: window, now: now, state: map[netip.Addr]*failures{}}
}

// locked reports whether ip is locked out now.
func (g *loginGuard) locked(ip netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.state[ip]
	return f != nil && g.now().Before(f.lockedUntil)
}

// fail records a failed login from ip.
func (g *loginGuard) fail(ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if len(g.state) >= maxTracked {
		g.prune(now)
	}
	f := g.state[ip]
	if f == nil || now.Sub(f.first) > g.window {
		f = &failures{first: now}
		g.state[ip] = f
	}
	f.count++
	if f.count >= g.max {
		f.lockedUntil = now.Add(g.window)
	}
}

// succeed forgets ip's failures.
func (g *loginGuard) succeed(ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.state, ip)
}

// prune drops records whose window and lockout are over.
func (g *loginGuard) prune(now time.Time) {
	for ip, f := range g.state {
		if now.Sub(f.first) > g.window && !now.Before(f.lockedUntil) {
			delete(g.state, ip)
		}
	}
}
