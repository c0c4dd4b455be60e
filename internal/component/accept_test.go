package component

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestAcceptBackoff(t *testing.T) {
	timeout := &net.OpError{Op: "accept", Err: os.ErrDeadlineExceeded}
	emfile := &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	tests := []struct {
		name  string
		err   error
		retry bool
	}{
		{"timeout", timeout, true},
		{"too many open files", emfile, true},
		{"wrapped", fmt.Errorf("serve: %w", emfile), true},
		{"closed listener", net.ErrClosed, false},
		{"other", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var slept time.Duration
			b := AcceptBackoff{sleep: func(d time.Duration) { slept += d }}
			if got := b.Retry(tt.err); got != tt.retry {
				t.Fatalf("Retry(%v) = %v, want %v", tt.err, got, tt.retry)
			}
			if tt.retry && (b.Delay() != 5*time.Millisecond || slept != b.Delay()) {
				t.Errorf("first back-off %v (slept %v), want 5ms", b.Delay(), slept)
			}
		})
	}
	b := AcceptBackoff{delay: 800 * time.Millisecond, sleep: func(time.Duration) {}}
	b.Retry(timeout)
	if b.Delay() != time.Second {
		t.Errorf("back-off grew to %v, want the 1s cap", b.Delay())
	}
	b.Reset()
	if b.Delay() != 0 {
		t.Errorf("Reset left %v", b.Delay())
	}
}
