// Package proxy is Outpost's HTTP/1.0 and HTTP/1.1 forward and reverse proxy: persistent and
// pipelined client connections, request smuggling defences, policy (ACL, Basic auth, deny
// lists), reverse routes with origin pools, CONNECT tunnels, header hygiene and the seam to the
// cache (cache.Handler).
//
// A request's path, one file per step: frontend.go (accept, connection loop) → request.go (read
// and check one request) → pipeline.go (its slot in the connection's window) → policy.go
// (loop, ACL, auth, route) → handle.go (local answer, tunnel, cache or upstream) → upstream.go
// (origin pools, hygiene both ways) → respond.go (write in order).
package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// Options are the proxy's collaborators.
type Options struct {
	// Cache answers proxied requests; nil means no caching (every request goes upstream).
	Cache cache.Handler
	// FTP fetches ftp:// URLs for forward-proxy clients; nil means such requests get 501.
	FTP RequestFetcher
	// UpstreamRoots are the certificate authorities https:// origins are verified against; nil
	// means the system's roots.
	UpstreamRoots *x509.CertPool
}

// RequestFetcher answers one request in full: the FTP gateway (proxy/ftpgw) for ftp:// URLs.
type RequestFetcher interface {
	Fetch(r *http.Request) (*http.Response, error)
}

// Server is the proxy component.
type Server struct {
	cfg    config.ProxyConfig
	env    component.Env
	opts   Options
	log    *slog.Logger
	policy *policy
	routes *routeTable
	fwd    *pool       // forward-proxy upstream (the URL's own host)
	tier   *parentTier // [proxy.parents] (parents.go); nil = none
	dialer *dialer
	alog   *accessLog
	m      *metrics
	status *status // the admin listener's /proxy/top and /proxy/routes (status.go)

	viaLine       []byte     // "Via: 1.1 <pseudonym>\r\n", appended to every response
	keepAliveLine []byte     // Connection: keep-alive and Keep-Alive: timeout=N, for HTTP/1.0 clients
	forwarding    forwarding // the fields added to upstream requests (hygiene.go)

	mu         sync.Mutex
	lns        []net.Listener
	addrs      []string
	self       map[string]bool // bound host:port addresses: requests to these are for the proxy itself
	conns      map[*conn]struct{}
	closing    atomic.Bool
	done       chan struct{} // closed when Shutdown is complete
	stopAccept chan struct{} // closed when Shutdown begins
	connWG     sync.WaitGroup
	slots      chan struct{} // one per open client connection when max_connections > 0
}

// New builds the proxy from its configuration. It loads the users file and the routes; it
// binds nothing (Listen does).
func New(cfg config.ProxyConfig, env component.Env, opts Options) (*Server, error) {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, env: env, opts: opts, log: env.Logger, done: make(chan struct{}),
		stopAccept: make(chan struct{}),
		conns:      map[*conn]struct{}{}, self: map[string]bool{}}
	var err error
	if s.policy, err = newPolicy(cfg); err != nil {
		return nil, err
	}
	s.dialer = newDialer(cfg)
	s.dialer.roots = opts.UpstreamRoots
	s.fwd = newPool("forward", nil, "", false, cfg, s.dialer)
	if s.routes, err = newRouteTable(cfg, s.dialer); err != nil {
		return nil, err
	}
	s.fwd.bg.srv = s
	for _, rt := range s.routes.routes {
		rt.pool.bg.srv = s
	}
	if err := s.useParents(newParentTier(cfg.Parents, s.dialer, s.log)); err != nil {
		return nil, err
	}
	s.joinHierarchy()
	if s.alog, err = newAccessLog(cfg.AccessLog, env.Logger, env.Metrics); err != nil {
		return nil, err
	}
	if s.m, err = newMetrics(env.Metrics); err != nil {
		return nil, err
	}
	if s.status, err = newStatus(s, env.Metrics, env.Admin); err != nil {
		return nil, err
	}
	if cfg.MaxConnections > 0 {
		s.slots = make(chan struct{}, cfg.MaxConnections)
	}
	s.forwarding = newForwarding(cfg)
	s.viaLine = []byte("Via: 1.1 " + cfg.ViaPseudonym + "\r\n")
	s.keepAliveLine = []byte(fmt.Sprintf("Connection: keep-alive\r\nKeep-Alive: timeout=%d\r\n", int(cfg.IdleTimeout.Seconds())))
	return s, nil
}

// Name is "proxy".
func (s *Server) Name() string { return "proxy" }

// Listen binds every configured address.
func (s *Server) Listen(ctx context.Context) error {
	// No TCP keep-alive probes on client connections: idle_timeout and the tunnels' own
	// timeouts end idle ones, and arming the probes costs four setsockopt(2) calls per
	// accepted connection (nginx leaves them off too, unless so_keepalive is set).
	lc := net.ListenConfig{KeepAlive: -1}
	for _, a := range s.cfg.Listen {
		ln, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s: %w", a, err)
		}
		s.mu.Lock()
		s.self[ln.Addr().String()] = true
		if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil {
			s.self["localhost:"+port] = true
		}
		s.addrs = append(s.addrs, "tcp "+ln.Addr().String())
		s.lns = append(s.lns, ln)
		s.mu.Unlock()
	}
	return nil
}

// Addrs lists the bound addresses, e.g. "tcp 127.0.0.1:8080".
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Serve accepts connections on every listener until Shutdown, then returns nil.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	lns := append([]net.Listener(nil), s.lns...)
	s.mu.Unlock()
	if len(lns) == 0 {
		return errors.New("proxy: Serve called before Listen")
	}
	s.tier.start()
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- s.acceptLoop(ln) }()
	}
	var first error
	for range lns {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	if s.closing.Load() {
		<-s.done
		return nil
	}
	return first
}

// Shutdown stops accepting, closes idle connections, lets in-flight requests finish within
// ctx (closing the rest when it expires), then closes the cache if it is an io.Closer.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closing.Swap(true) {
		<-s.done
		return nil
	}
	close(s.stopAccept)
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.wakeIfIdle()
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.connWG.Wait(); close(finished) }()
	var err error
	select {
	case <-finished:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.closeNow()
		}
		s.mu.Unlock()
		<-finished
		err = fmt.Errorf("proxy: shutdown: %w", ctx.Err())
	}
	s.tier.close()
	s.fwd.closeIdle()
	s.routes.closeIdle()
	if cl, ok := s.opts.Cache.(io.Closer); ok && s.opts.Cache != nil {
		if cerr := cl.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("proxy: closing cache: %w", cerr)
		}
	}
	if cerr := s.alog.Close(); cerr != nil && err == nil {
		err = cerr
	}
	close(s.done)
	return err
}

// closeListeners closes every listener (idempotent).
func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.lns {
		_ = ln.Close()
	}
}

// isSelf reports whether host:port names one of the proxy's own listeners. The map is written
// only by Listen, before anything is served.
func (s *Server) isSelf(hostport string) bool { return s.self[strings.ToLower(hostport)] }
