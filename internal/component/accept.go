package component

import (
	"errors"
	"net"
	"time"
)

// AcceptBackoff paces a server's accept loop after a transient accept error (a timeout, or
// EMFILE/ENFILE and their kin) as net/http does: wait 5 ms, doubling up to 1 s, until an accept
// succeeds. Without it a loop either spins on the error or gives up and takes the server down.
type AcceptBackoff struct {
	delay time.Duration
	sleep func(time.Duration) // time.Sleep; tests replace it
}

// Retry reports whether err is transient. When it is, Retry first sleeps the next back-off, so
// the caller simply accepts again; otherwise the caller handles err (closed listener, ...).
func (b *AcceptBackoff) Retry(err error) bool {
	if !isTransient(err) {
		return false
	}
	b.delay = min(max(2*b.delay, 5*time.Millisecond), time.Second)
	if b.sleep == nil {
		b.sleep = time.Sleep
	}
	b.sleep(b.delay)
	return true
}

// Reset clears the back-off after a successful accept.
func (b *AcceptBackoff) Reset() { b.delay = 0 }

// Delay is the back-off slept by the last Retry (for logging).
func (b *AcceptBackoff) Delay() time.Duration { return b.delay }

// isTransient reports accept errors worth retrying.
func isTransient(err error) bool {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
