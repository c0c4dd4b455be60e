// Package componenttest runs a component.Component for the length of a test: Listen, Serve in
// a goroutine, and at cleanup Shutdown (5s) with a check that both returned nil, as the
// lifecycle contract says. Only tests import it.
package componenttest

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
)

// ShutdownTimeout bounds the Shutdown call made at test cleanup.
const ShutdownTimeout = 5 * time.Second

// Start binds c (failing the test if Listen fails), serves it in a goroutine and registers a
// cleanup that shuts it down and reports a non-nil Shutdown or Serve result as a test error.
func Start(t testing.TB, c component.Component) {
	t.Helper()
	if err := c.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("%s: shutdown: %v", c.Name(), err)
		}
		if err := <-done; err != nil {
			t.Errorf("%s: serve: %v", c.Name(), err)
		}
	})
}
