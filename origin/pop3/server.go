// Package pop3 is Outpost's POP3 origin (RFC 1939, CAPA from RFC 2449, STLS from RFC 2595)
// over the shared Maildir store: USER/PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, TOP,
// UIDL, with deletions applied only in the UPDATE state after QUIT and an exclusive maildrop
// lock per session.
package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/origin/mailstore"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure the POP3 server.
type Options struct {
	// Listen is the listen address.
	Listen string
	// Hostname appears in the greeting.
	Hostname string
	// IdleTimeout closes a connection that sends no command for this long.
	IdleTimeout time.Duration
	// MaxConnections bounds concurrent connections.
	MaxConnections int
	// MaxAuthFailures closes the connection after this many failed logins.
	MaxAuthFailures int
	// TLS enables STLS when non-nil.
	TLS *tls.Config
	// AllowInsecureAuth allows USER/PASS before STLS, for loopback clients only.
	AllowInsecureAuth bool
	// isLocal classifies clients for plaintext login (mailstore.IsLoopback; tests override).
	isLocal func(net.Addr) bool
	// LockWait is how long a login waits for the maildrop lock another session holds before
	// answering -ERR [IN-USE] (0: DefaultLockWait), so a client that reconnects at once after
	// a dropped connection is not refused while the old session winds down.
	LockWait time.Duration
	// Logger and Metrics (either may be nil).
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// DefaultLockWait is the maildrop lock wait (Dovecot's POP3 session lock waits 10 s too).
const DefaultLockWait = 10 * time.Second

// Server is the POP3 server; it is a component.Component.
type Server struct {
	opts  Options
	store *mailstore.Store
	log   *slog.Logger
	m     *metrics

	// ctx ends at Shutdown: logins waiting for a maildrop lock give up.
	ctx  context.Context
	stop context.CancelFunc

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New returns a POP3 server over store.
func New(opts Options, store *mailstore.Store) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	if opts.MaxAuthFailures <= 0 {
		opts.MaxAuthFailures = 3
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.LockWait <= 0 {
		opts.LockWait = DefaultLockWait
	}
	if opts.isLocal == nil {
		opts.isLocal = mailstore.IsLoopback
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Server{opts: opts, store: store, log: opts.Logger, m: m, conns: map[net.Conn]struct{}{},
		ctx: ctx, stop: stop}, nil
}

// Name is the component name.
func (s *Server) Name() string { return "pop3" }

// Listen binds the listener.
func (s *Server) Listen(ctx context.Context) error {
	ln, err := component.ListenTCP(ctx, s.opts.Listen, s.opts.MaxConnections)
	if err != nil {
		return fmt.Errorf("pop3: %w", err)
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
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return errors.New("pop3: Serve before Listen")
	}
	var backoff component.AcceptBackoff
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if backoff.Retry(err) {
				continue
			}
			return fmt.Errorf("pop3: accept: %w", err)
		}
		backoff.Reset()
		if !s.track(c) {
			c.Close()
			return nil
		}
		go func() {
			defer s.untrack(c)
			newSession(s, c).serve()
		}()
	}
}

// track registers a connection; false once shutting down.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// untrack forgets a finished connection.
func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
	s.wg.Done()
}

// Shutdown stops accepting and lets sessions finish until ctx is done; then it interrupts them.
// An interrupted session never enters UPDATE, so it deletes nothing (RFC 1939 section 6).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		_ = c.SetDeadline(time.Now())
	}
	s.mu.Unlock()
	<-done
	return nil
}

// metrics are the POP3 counters.
type metrics struct {
	sessions     prometheus.Counter
	authFailures prometheus.Counter
	retrieved    prometheus.Counter
	deleted      prometheus.Counter
}

// newMetrics registers the POP3 counters on reg (nil: not exported).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions:     prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_pop3_sessions_total", Help: "POP3 connections accepted."}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_pop3_auth_failures_total", Help: "Failed POP3 logins."}),
		retrieved:    prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_pop3_messages_retrieved_total", Help: "Messages sent by RETR."}),
		deleted:      prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_pop3_messages_deleted_total", Help: "Messages removed in the UPDATE state."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sessions, m.authFailures, m.retrieved, m.deleted} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("pop3: metrics: %w", err)
			}
		}
	}
	return m, nil
}
