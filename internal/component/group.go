package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Group runs several components as one: all listen or none serve; the first failure or a
// cancelled context shuts everything down.
type Group struct {
	components []Component
	logger     *slog.Logger
	ready      atomic.Bool
}

// NewGroup returns a group of the given components, started in order and stopped in reverse.
func NewGroup(logger *slog.Logger, cs ...Component) *Group {
	return &Group{components: cs, logger: logger}
}

// Ready reports whether every component has bound its listeners and is serving.
func (g *Group) Ready() bool { return g.ready.Load() }

// Components returns the group's components.
func (g *Group) Components() []Component { return g.components }

// Listen binds every component's listeners; on the first error it shuts down those already
// bound and returns the error, naming the component.
func (g *Group) Listen(ctx context.Context) error {
	for i, c := range g.components {
		if err := c.Listen(ctx); err != nil {
			for j := i - 1; j >= 0; j-- {
				_ = g.components[j].Shutdown(ctx)
			}
			return fmt.Errorf("%s: %w", c.Name(), err)
		}
		for _, a := range c.Addrs() {
			g.logger.Info("listening", "component", c.Name(), "addr", a)
		}
	}
	return nil
}

// Run serves every component until ctx is cancelled or one fails, then shuts all down within
// grace (a fresh context with that timeout). It returns the first serving error, if any.
func (g *Group) Run(ctx context.Context, shutdownCtx func() (context.Context, context.CancelFunc)) error {
	errc := make(chan error, len(g.components))
	var wg sync.WaitGroup
	for _, c := range g.components {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Serve(ctx); err != nil {
				errc <- fmt.Errorf("%s: %w", c.Name(), err)
			}
		}()
	}
	g.ready.Store(true)
	var runErr error
	select {
	case <-ctx.Done():
		g.logger.Info("shutting down", "reason", context.Cause(ctx))
	case runErr = <-errc:
		g.logger.Error("component failed, shutting down", "err", runErr)
	}
	g.ready.Store(false)
	sctx, cancel := shutdownCtx()
	defer cancel()
	var shutErrs []error
	for i := len(g.components) - 1; i >= 0; i-- {
		c := g.components[i]
		if err := c.Shutdown(sctx); err != nil {
			shutErrs = append(shutErrs, fmt.Errorf("%s shutdown: %w", c.Name(), err))
		}
	}
	wg.Wait()
	g.logger.Info("stopped", "errors", len(shutErrs))
	if runErr != nil {
		return runErr
	}
	return errors.Join(shutErrs...)
}
