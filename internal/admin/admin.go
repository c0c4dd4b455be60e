// Package admin is the admin listener: /healthz, /readyz, /metrics, /debug/pprof/, the live
// dashboard at / and the endpoints components mount on its mux (/cache/, /dns/, /mail/ ...).
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-proxy/outpost/internal/component"
)

// Server is the admin listener, a component.Component.
type Server struct {
	addr     string
	mux      *http.ServeMux
	ready    func() bool
	logger   *slog.Logger
	ln       net.Listener
	srv      *http.Server
	gatherer prometheus.Gatherer
	dash     *dashboard  // nil unless MountDashboard was called
	tlsConf  *tls.Config // nil: plain HTTP (UseTLS)
	token    []byte      // admin.token_file's token; empty: nothing guarded (token.go)
}

// New returns an admin server for addr. mux is shared with the components (they mount their
// endpoints on it); ready reports whether every component is serving; gatherer serves /metrics.
func New(addr string, mux *http.ServeMux, gatherer prometheus.Gatherer, ready func() bool, logger *slog.Logger) *Server {
	s := &Server{addr: addr, mux: mux, ready: ready, logger: logger, gatherer: gatherer}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.srv = &http.Server{
		Handler:           s.guard(mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	return s
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.ready != nil && !s.ready() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// UseTLS makes the listener serve HTTPS (HTTP/1.1 and HTTP/2) with cfg's certificates: the
// proxy's ([admin] tls = true). Call it before Serve.
func (s *Server) UseTLS(cfg *tls.Config) {
	s.tlsConf = cfg
	s.srv.ErrorLog = slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug) // failed handshakes
}

// Name implements component.Component.
func (s *Server) Name() string { return "admin" }

// Listen binds the admin address.
func (s *Server) Listen(ctx context.Context) error {
	ln, err := component.ListenTCP(ctx, s.addr, 0)
	if err != nil {
		return err
	}
	s.ln = ln
	return nil
}

// Addrs returns the bound address.
func (s *Server) Addrs() []string {
	return component.Addrs(s.ln)
}

// Serve serves until Shutdown.
func (s *Server) Serve(context.Context) error {
	if s.dash != nil {
		go s.dash.run()
	}
	serve := s.srv.Serve
	if s.tlsConf != nil {
		s.srv.TLSConfig = s.tlsConf
		serve = func(ln net.Listener) error { return s.srv.ServeTLS(ln, "", "") }
	}
	if err := serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Shutdown stops the admin listener.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}
