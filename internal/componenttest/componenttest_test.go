package componenttest

import (
	"context"
	"sync"
	"testing"
)

// fake is a component that records its lifecycle calls; Serve blocks until Shutdown.
type fake struct {
	mu    sync.Mutex
	calls []string
	stop  chan struct{}
}

func (f *fake) record(call string) { f.mu.Lock(); f.calls = append(f.calls, call); f.mu.Unlock() }
func (f *fake) Name() string       { return "fake" }
func (f *fake) Addrs() []string    { return nil }

func (f *fake) Listen(context.Context) error { f.record("listen"); return nil }

func (f *fake) Serve(context.Context) error { <-f.stop; f.record("serve returned"); return nil }

func (f *fake) Shutdown(context.Context) error { f.record("shutdown"); close(f.stop); return nil }

// TestStartLifecycle: Listen before Start returns; Shutdown, then Serve's return, at cleanup.
func TestStartLifecycle(t *testing.T) {
	f := &fake{stop: make(chan struct{})}
	t.Run("run", func(t *testing.T) {
		Start(t, f)
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.calls) != 1 || f.calls[0] != "listen" {
			t.Fatalf("calls after Start = %q", f.calls)
		}
	})
	want := []string{"listen", "shutdown", "serve returned"}
	if len(f.calls) != len(want) {
		t.Fatalf("calls = %q, want %q", f.calls, want)
	}
	for i := range want {
		if f.calls[i] != want[i] {
			t.Fatalf("calls = %q, want %q", f.calls, want)
		}
	}
}
