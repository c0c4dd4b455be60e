// Package ftp is Outpost's RFC 959 FTP origin server, built on fclairamb/ftpserverlib: users
// from config with bcrypt hashes, read-only anonymous access to a seeded pub/ tree, each
// session jailed in its own directory, passive and active data connections with FTP-bounce
// protection, and limits on connections, logins, idle time and upload size.
package ftp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// Server is the FTP origin. It implements component.Component.
type Server struct {
	cfg       config.FTPConfig
	env       component.Env
	dir       string
	users     map[string]config.FTPUser
	dummyHash []byte
	guard     *loginGuard
	metrics   *metrics
	stats     fsStats

	lib      *ftpserver.FtpServer
	ln       net.Listener
	stopOnce sync.Once

	mu    sync.Mutex
	conns map[*controlConn]struct{}
	perIP map[netip.Addr]int
}

// New builds the server: it creates the user directories under the FTP root (seeding the
// anonymous pub/ tree on first start) and registers the metrics.
func New(cfg config.FTPConfig, env component.Env) (*Server, error) {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	dir := cfg.Root
	if dir == "" {
		dir = filepath.Join(env.DataDir, "ftp")
	}
	s := &Server{
		cfg: cfg, env: env, dir: dir,
		users: map[string]config.FTPUser{},
		guard: newLoginGuard(cfg.MaxLoginFailures, cfg.LockoutDuration, time.Now),
		conns: map[*controlConn]struct{}{},
		perIP: map[netip.Addr]int{},
	}
	for _, u := range cfg.Users {
		s.users[u.Name] = u
	}
	var err error
	if s.dummyHash, err = newDummyHash(s.users); err != nil {
		return nil, fmt.Errorf("ftp: %w", err)
	}
	if err := seedTree(dir, cfg); err != nil {
		return nil, fmt.Errorf("ftp: seed %s: %w", dir, err)
	}
	m, err := newMetrics(env.Metrics, &s.stats, s.activeConns)
	if err != nil {
		return nil, fmt.Errorf("ftp: metrics: %w", err)
	}
	s.metrics = m
	return s, nil
}

// Name returns "ftp".
func (s *Server) Name() string { return "ftp" }

// Listen binds the control listener.
func (s *Server) Listen(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ftp: listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.lib = ftpserver.NewFtpServer(&driver{srv: s})
	s.lib.Logger = s.env.Logger.With("lib", "ftpserverlib")
	if err := s.lib.Listen(); err != nil {
		ln.Close()
		return fmt.Errorf("ftp: %w", err)
	}
	return nil
}

// settings translates the configuration into the library's settings.
func (s *Server) settings() *ftpserver.Settings {
	st := &ftpserver.Settings{
		Listener:                &limitListener{Listener: s.ln, srv: s},
		ListenAddr:              s.cfg.Listen,
		PublicHost:              s.cfg.PublicHost,
		Banner:                  s.cfg.Banner,
		IdleTimeout:             seconds(s.cfg.IdleTimeout),
		ConnectionTimeout:       seconds(s.cfg.DataTimeout),
		ActiveTransferPortNon20: true,
		DisableSite:             true,
		DisableActiveMode:       !s.cfg.ActiveMode,
		ActiveConnectionsCheck:  ftpserver.IPMatchRequired,
		PasvConnectionsCheck:    ftpserver.IPMatchRequired,
	}
	if s.cfg.PassivePortMin > 0 {
		st.PassiveTransferPortRange = ftpserver.PortRange{Start: s.cfg.PassivePortMin, End: s.cfg.PassivePortMax}
	}
	return st
}

// seconds rounds d up to whole seconds (the library's unit), at least 1.
func seconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// Addrs lists the control listener's address.
func (s *Server) Addrs() []string {
	if s.ln == nil {
		return nil
	}
	return []string{"tcp " + s.ln.Addr().String()}
}

// Serve accepts control connections until Shutdown.
func (s *Server) Serve(ctx context.Context) error {
	if s.lib == nil {
		return errors.New("ftp: Serve before Listen")
	}
	s.env.Logger.Info("ftp server serving", "addr", s.ln.Addr().String())
	if err := s.lib.Serve(); err != nil {
		return fmt.Errorf("ftp: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, lets running transfers finish until ctx is done, then closes
// every control connection with a 421 reply.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln != nil {
		// Closing our listener ends the library's Serve loop (its Stop races with Serve).
		s.stopOnce.Do(func() { s.ln.Close() })
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.stats.open.Load() > 0 {
		select {
		case <-ctx.Done():
			s.closeAll()
			return nil
		case <-tick.C:
		}
	}
	s.closeAll()
	return nil
}

// closeAll says goodbye to every connected client and closes it.
func (s *Server) closeAll() {
	s.mu.Lock()
	conns := make([]*controlConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.reply("421 Service closing control connection (server shutting down).")
		c.Close()
	}
}

// admit applies the connection limits to a new control connection; nil means refused.
func (s *Server) admit(nc net.Conn) *controlConn {
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		nc.Close()
		return nil
	}
	ip := ap.Addr().Unmap()
	s.mu.Lock()
	switch {
	case len(s.conns) >= s.cfg.MaxConnections:
		s.mu.Unlock()
		s.metrics.refused.WithLabelValues("max_connections").Inc()
		refuse(nc, "Too many connections; try again later.")
		return nil
	case s.perIP[ip] >= s.cfg.MaxConnectionsPerIP:
		s.mu.Unlock()
		s.metrics.refused.WithLabelValues("max_connections_per_ip").Inc()
		refuse(nc, "Too many connections from your address; try again later.")
		return nil
	}
	c := &controlConn{Conn: nc, srv: s, ip: ip}
	s.conns[c] = struct{}{}
	s.perIP[ip]++
	s.mu.Unlock()
	s.metrics.connections.Inc()
	return c
}

// release frees a closed connection's slots.
func (s *Server) release(c *controlConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
}

// activeConns counts open control connections (for the gauge).
func (s *Server) activeConns() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(len(s.conns))
}
