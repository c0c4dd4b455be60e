// Package proxy is Outpost's HTTP/1.0, HTTP/1.1 and HTTP/2 forward and reverse proxy, on plain
// and TLS listeners: persistent and pipelined client connections, request smuggling defences,
// policy (ACL, Basic auth, deny lists), reverse routes with origin pools, CONNECT tunnels,
// header hygiene and the seam to the cache (cache.Handler). TLS (tls.go) wraps the connection
// before the same front end; an HTTP/2 stream (h2.go) becomes a slot that enters the same path
// at policy.
//
// A request's path, one file per step: frontend.go (accept, connection loop) → request.go (read
// and check one request) → pipeline.go (its slot in the connection's window) → policy.go
// (loop, ACL, auth, route) → handle.go (local answer, tunnel, cache or upstream) → upstream.go
// (origin pools, hygiene both ways) → respond.go (write in order).
package proxy

import (
	"context"
	"crypto/tls"
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
	"github.com/outpost-proxy/outpost/internal/democa"
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
	live   atomic.Pointer[live] // routes, pools and policy: what a reload swaps (live.go)
	checks sync.WaitGroup       // the origins' health checkers (health.go)
	fwd    *pool                // forward-proxy upstream (the URL's own host)
	tier   *parentTier          // [proxy.parents] (parents.go); nil = none
	dialer *dialer
	alog   *accessLog
	m      *metrics
	status *status // the admin listener's /proxy/top and /proxy/routes (status.go)

	viaLine       []byte     // "Via: 1.1 <pseudonym>\r\n", appended to every response
	viaValue      string     // "1.1 <pseudonym>", for HTTP/2 responses
	viaValues     []string   // {viaValue}, shared by HTTP/2 responses (read-only)
	keepAliveLine []byte     // Connection: keep-alive and Keep-Alive: timeout=N, for HTTP/1.0 clients
	forwarding    forwarding // the fields added to upstream requests (hygiene.go)

	certs   certStore    // the TLS listeners' certificates (tls.go), swapped by SetCertificates
	tlsConf *tls.Config  // nil: no TLS listener
	h2      *h2Front     // the HTTP/2 server for h2 connections (h2.go); nil when off
	demo    *democa.Demo // the demo CA's files when the certificate is the demo's (s.mu)

	mu         sync.Mutex
	lns        []net.Listener
	tlsLns     []net.Listener // [proxy.tls] listen (also in lns)
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
	s.dialer = newDialer(cfg)
	s.dialer.roots = opts.UpstreamRoots
	s.fwd = newPool("forward", nil, "", false, cfg, s.dialer)
	s.fwd.bg.srv = s
	s.useParents(newParentTier(cfg.Parents, s.dialer, s.log))
	lv, err := s.buildLive(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.live.Store(lv)
	if err := s.registerParents(); err != nil {
		return nil, err
	}
	s.joinHierarchy()
	if err := s.setUpTLS(); err != nil { // before anything that starts a goroutine
		return nil, err
	}
	if s.alog, err = newAccessLog(cfg.AccessLog, env.Logger, env.Metrics); err != nil {
		return nil, err
	}
	if s.m, err = newMetrics(env.Metrics); err != nil {
		return nil, err
	}
	if s.status, err = newStatus(s, env.Metrics, env.Admin); err != nil {
		return nil, err
	}
	if env.Metrics != nil {
		if err := env.Metrics.Register(newOriginMetrics(s)); err != nil {
			return nil, fmt.Errorf("proxy: registering metrics: %w", err)
		}
	}
	if cfg.MaxConnections > 0 {
		s.slots = make(chan struct{}, cfg.MaxConnections)
	}
	s.forwarding = newForwarding(cfg)
	s.viaLine = []byte("Via: 1.1 " + cfg.ViaPseudonym + "\r\n")
	s.viaValue = "1.1 " + cfg.ViaPseudonym
	s.viaValues = []string{s.viaValue}
	s.keepAliveLine = []byte(fmt.Sprintf("Connection: keep-alive\r\nKeep-Alive: timeout=%d\r\n", int(cfg.IdleTimeout.Seconds())))
	return s, nil
}

// Name is "proxy".
func (s *Server) Name() string { return "proxy" }

// setUpTLS loads the certificates when [proxy.tls] has listeners, certificates or the demo,
// and makes the TLS and HTTP/2 configuration of the TLS listeners.
func (s *Server) setUpTLS() error {
	t := s.cfg.TLS
	if s.cfg.HTTP2.Enabled && (len(t.Listen) > 0 || s.cfg.HTTP2.H2C) {
		s.h2 = newH2Front(s)
	}
	if len(t.Listen) == 0 && len(t.Certificates) == 0 && !t.Demo {
		return nil
	}
	if err := s.SetCertificates(t); err != nil {
		return err
	}
	if len(t.Listen) > 0 {
		s.tlsConf = newTLSConfig(&s.certs, s.cfg.HTTP2.Enabled)
	}
	return nil
}

// Listen binds every configured address: the plain listeners, then the TLS ones.
func (s *Server) Listen(ctx context.Context) error {
	// No TCP keep-alive probes on client connections: idle_timeout and the tunnels' own
	// timeouts end idle ones, and arming the probes costs four setsockopt(2) calls per
	// accepted connection (nginx leaves them off too, unless so_keepalive is set).
	lc := net.ListenConfig{KeepAlive: -1}
	addrs := append(append([]string(nil), s.cfg.Listen...), s.cfg.TLS.Listen...)
	for i, a := range addrs {
		ln, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s: %w", a, err)
		}
		s.mu.Lock()
		if i >= len(s.cfg.Listen) {
			s.tlsLns = append(s.tlsLns, ln)
		}
		s.self[ln.Addr().String()] = true
		if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil {
			s.self["localhost:"+port] = true
		}
		s.addrs = append(s.addrs, "tcp "+ln.Addr().String())
		s.lns = append(s.lns, ln)
		s.mu.Unlock()
	}
	for _, a := range s.TLSAddrs() {
		s.logTLSListener(a)
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
	s.live.Load().routes.startChecks(s)
	errc := make(chan error, len(lns))
	for i, ln := range lns {
		secure := i >= len(lns)-len(s.tlsLns)
		go func() { errc <- s.acceptLoop(ln, secure) }()
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
	if s.h2 != nil {
		s.h2.shutdown(ctx)
	}
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
	lv := s.live.Load()
	lv.routes.stopChecks()
	s.checks.Wait()
	s.fwd.closeIdle()
	lv.routes.closeIdle()
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
