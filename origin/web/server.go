// Package web is Outpost's HTTP origin: a static file server over a directory (seeded with a
// demo site) with per-path cache policy, plus synthetic endpoints for tests and benchmarks
// (/bytes/N, /delay/MS/..., /page/N, /status/CODE, /headers, /mutable/NAME).
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/net/netutil"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// Server is the HTTP origin. It implements component.Component.
type Server struct {
	cfg     config.WebConfig
	env     component.Env
	root    *os.Root
	handler *handler
	srv     *http.Server
	ln      net.Listener
}

// New builds the origin from its configuration: it resolves the document root (creating and
// seeding it on first start), compiles the cache policy and registers the metrics.
func New(cfg config.WebConfig, env component.Env) (*Server, error) {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	dir := cfg.Root
	if dir == "" {
		dir = filepath.Join(env.DataDir, "www")
	}
	if err := seedSite(dir); err != nil {
		return nil, fmt.Errorf("web: seed %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("web: open root: %w", err)
	}
	m, err := newMetrics(env.Metrics)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("web: metrics: %w", err)
	}
	h := newHandler(cfg, root, m, env.Logger)
	s := &Server{cfg: cfg, env: env, root: root, handler: h}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    int(cfg.MaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(env.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Name returns "web".
func (s *Server) Name() string { return "web" }

// Listen binds the listener, capped at max_connections.
func (s *Server) Listen(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("web: listen %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, s.cfg.MaxConnections)
	}
	s.ln = ln
	return nil
}

// Addrs lists the bound address.
func (s *Server) Addrs() []string {
	if s.ln == nil {
		return nil
	}
	return []string{"tcp " + s.ln.Addr().String()}
}

// Serve serves HTTP until Shutdown.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		return errors.New("web: Serve before Listen")
	}
	s.srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	s.env.Logger.Info("web origin serving", "addr", s.ln.Addr().String())
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting and waits for in-flight responses (sleeping /delay requests
// included) until ctx is done, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.root.Close()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("web: shutdown: %w", err)
	}
	return nil
}

// synthEpoch is the Last-Modified of synthetic content, which never changes.
var synthEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
