// Package component is the lifecycle every Outpost server shares: bind, serve, shut down. `outpost
// up`, the single-component subcommands and the tests all start components through it.
package component

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// Component is one server (or a small family of listeners, like the mail servers).
//
// The lifecycle is Listen, then Serve in its own goroutine, then Shutdown. Listen binds every
// listener so that a taken port is reported before anything serves; its error names the
// component and the address. Serve returns nil after Shutdown; any other return is a failure
// that brings the process down. Shutdown stops accepting, lets in-flight work finish until ctx
// is done, flushes what must be flushed and then returns.
type Component interface {
	// Name is the short name used in logs and errors: "proxy", "dns", "web", "ftp", "mail", "admin".
	Name() string
	// Listen binds every listener of the component.
	Listen(ctx context.Context) error
	// Addrs lists the bound addresses (valid after Listen), e.g. ["tcp 127.0.0.1:8080"].
	Addrs() []string
	// Serve serves until Shutdown.
	Serve(ctx context.Context) error
	// Shutdown stops the component gracefully within ctx.
	Shutdown(ctx context.Context) error
}

// Env is what the process gives every component.
type Env struct {
	// Logger is the component's logger (already tagged with its name).
	Logger *slog.Logger
	// Metrics is where the component registers its Prometheus collectors.
	Metrics prometheus.Registerer
	// Admin is the admin listener's mux; components mount their endpoints under their own paths
	// (e.g. /cache/, /dns/). Nil when the admin listener is disabled.
	Admin *http.ServeMux
	// DataDir is the data directory (already created).
	DataDir string
}

// Named returns a copy of env whose logger carries component=name.
func (e Env) Named(name string) Env {
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
	e.Logger = e.Logger.With("component", name)
	return e
}

// Test returns an Env for tests: a discarding logger unless verbose, a fresh registry, a
// fresh admin mux and the given data directory.
func Test(dataDir string) Env {
	return Env{
		Logger:  slog.New(slog.DiscardHandler),
		Metrics: prometheus.NewRegistry(),
		Admin:   http.NewServeMux(),
		DataDir: dataDir,
	}
}
