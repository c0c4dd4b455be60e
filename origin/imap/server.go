// Package imap is Outpost's IMAP4rev1 origin (RFC 3501, IDLE from RFC 2177, UIDPLUS) on
// emersion/go-imap's server, with its own Session over the shared Maildir store: several sessions
// on one mailbox see each other's changes, and mail delivered by SMTP shows up in IDLE.
package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/origin/mailstore"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure the IMAP server.
type Options struct {
	// Listen is the listen address.
	Listen string
	// MaxConnections bounds concurrent connections.
	MaxConnections int
	// MaxAuthFailures closes the connection (BYE) after this many failed logins.
	MaxAuthFailures int
	// MaxMessageSize is the APPEND limit (APPENDLIMIT).
	MaxMessageSize int64
	// TLS enables STARTTLS when non-nil.
	TLS *tls.Config
	// AllowInsecureAuth allows LOGIN/AUTHENTICATE before STARTTLS, for loopback clients only
	// (others see LOGINDISABLED and get NO [PRIVACYREQUIRED]).
	AllowInsecureAuth bool
	// isLocal classifies clients for plaintext login (mailstore.IsLoopback; tests override).
	isLocal func(net.Addr) bool
	// Logger and Metrics (either may be nil).
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Server is the IMAP server; it is a component.Component.
type Server struct {
	opts  Options
	store *mailstore.Store
	log   *slog.Logger
	srv   *imapserver.Server // for clients that must use TLS before logging in
	local *imapserver.Server // for loopback clients when AllowInsecureAuth (else nil)
	m     *metrics

	mu     sync.Mutex
	ln     net.Listener
	boxes  map[string]*mailbox
	closed bool
	served chan struct{} // closed when Serve's accept loop has ended (nil: Serve not called)
}

// New returns an IMAP server over store.
func New(opts Options, store *mailstore.Store) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxAuthFailures <= 0 {
		opts.MaxAuthFailures = 3
	}
	if opts.MaxMessageSize <= 0 || opts.MaxMessageSize > 1<<31 {
		opts.MaxMessageSize = 1 << 31
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, store: store, log: opts.Logger, m: m, boxes: map[string]*mailbox{}}
	if opts.isLocal == nil {
		s.opts.isLocal = mailstore.IsLoopback
	}
	s.srv = s.newIMAPServer(false)
	if opts.AllowInsecureAuth {
		s.local = s.newIMAPServer(true)
	}
	return s, nil
}

// newIMAPServer builds a go-imap server whose sessions are ours.
func (s *Server) newIMAPServer(insecureAuth bool) *imapserver.Server {
	return imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps: goimap.CapSet{
			goimap.CapIMAP4rev1: {}, goimap.CapUIDPlus: {}, goimap.CapChildren: {}, goimap.CapLiteralPlus: {},
			goimap.CapMove: {},
		},
		Logger:       logAdapter{s.log},
		TLSConfig:    s.opts.TLS,
		InsecureAuth: insecureAuth,
	})
}

// logAdapter sends go-imap's log lines to slog.
type logAdapter struct{ l *slog.Logger }

// Printf logs one go-imap line: panics as errors, the rest (client mistakes) at debug level.
func (a logAdapter) Printf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if strings.HasPrefix(msg, "panic") {
		a.l.Error(msg)
		return
	}
	a.l.Debug(msg)
}

// Name is the component name.
func (s *Server) Name() string { return "imap" }

// Listen binds the listener.
func (s *Server) Listen(ctx context.Context) error {
	ln, err := component.ListenTCP(ctx, s.opts.Listen, s.opts.MaxConnections)
	if err != nil {
		return fmt.Errorf("imap: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return nil
}

// Addrs lists the bound address.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return component.Addrs(s.ln)
}

// Addr is the bound address (valid after Listen).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln.Addr().String()
}

// Serve accepts connections until Shutdown.
func (s *Server) Serve(context.Context) error {
	s.mu.Lock()
	ln, closed := s.ln, s.closed
	if ln != nil && !closed {
		s.served = make(chan struct{})
	}
	served := s.served
	s.mu.Unlock()
	if ln == nil {
		return errors.New("imap: Serve before Listen")
	}
	if closed {
		return nil
	}
	err := s.serve(ln)
	close(served)
	s.mu.Lock()
	closed = s.closed
	s.mu.Unlock()
	if closed || err == nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("imap: %w", err)
}

// serve runs the go-imap server(s) on ln: with AllowInsecureAuth, loopback clients go to the
// one that allows plaintext LOGIN and everyone else to the one that does not.
func (s *Server) serve(ln net.Listener) error {
	if s.local == nil {
		return s.srv.Serve(ln)
	}
	local, remote := newChanListener(ln.Addr()), newChanListener(ln.Addr())
	var wg sync.WaitGroup
	for _, p := range []struct {
		srv *imapserver.Server
		ln  net.Listener
	}{{s.local, local}, {s.srv, remote}} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.srv.Serve(p.ln); p.ln.Close() }()
	}
	err := splitConns(ln, s.opts.isLocal, local, remote)
	wg.Wait()
	return err
}

// Shutdown closes the listener and the connections. go-imap's server has no graceful shutdown
// (its issue #498); nothing is lost by closing, because every store change is already durable
// when its command completes.
func (s *Server) Shutdown(context.Context) error {
	s.mu.Lock()
	s.closed = true
	ln, served := s.ln, s.served
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	// go-imap's Close must not run while its Serve is starting (its WaitGroup Add races with
	// Wait): let the accept loops end on the closed listener first, then close the sessions.
	if served != nil {
		<-served
	}
	_ = s.srv.Close()
	if s.local != nil {
		_ = s.local.Close()
	}
	return nil
}

// metrics are the IMAP counters.
type metrics struct {
	sessions     prometheus.Counter
	authFailures prometheus.Counter
}

// newMetrics registers the IMAP counters on reg (nil: not exported).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions:     prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_imap_sessions_total", Help: "IMAP connections accepted."}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_imap_auth_failures_total", Help: "Failed IMAP logins."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sessions, m.authFailures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("imap: metrics: %w", err)
			}
		}
	}
	return m, nil
}
