// Package smtp is Outpost's SMTP origin: RFC 5321 mail hosts (on emersion/go-smtp) that accept
// mail into a durable queue, deliver local recipients to the shared Maildir store and relay the
// others by MX lookup, with retries, back-off and RFC 3464 bounces.
package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// HostOptions configure one SMTP host (one listener and the domains it is final for).
type HostOptions struct {
	// Listen is the listen address.
	Listen string
	// Hostname is the name in the greeting, Received headers and bounces.
	Hostname string
	// Domains are delivered locally (lowercase); other domains are relayed.
	Domains []string
	// OtherLocal are domains served by the other hosts of this process (551 when not relayable).
	OtherLocal []string
	// RelayNetworks may relay without authentication.
	RelayNetworks []netip.Prefix
	// MaxMessageSize, MaxRecipients, MaxLineLength, MaxConnections and MaxAuthFailures are the
	// limits (552, 452, 500, refused connection, 421).
	MaxMessageSize                                                int64
	MaxRecipients, MaxLineLength, MaxConnections, MaxAuthFailures int
	// ReadTimeout and WriteTimeout bound each exchange.
	ReadTimeout, WriteTimeout time.Duration
	// TLS enables STARTTLS when non-nil.
	TLS *tls.Config
	// AllowInsecureAuth allows AUTH without TLS, for loopback clients only (others get 538).
	AllowInsecureAuth bool
	// AllowSenderLoginMismatch lets an authenticated user send with any MAIL FROM address.
	// The zero value enforces ownership (553 5.7.1, as Postfix's reject_sender_login_mismatch):
	// a logged-in user may only use their own address (or the null sender of a bounce).
	AllowSenderLoginMismatch bool
}

// Server is one SMTP host; it is a component.Component.
type Server struct {
	opts   HostOptions
	q      *Queue
	log    *slog.Logger
	local  map[string]bool
	other  map[string]bool
	srv    *gosmtp.Server
	mu     sync.Mutex
	ln     net.Listener
	closed bool
	// isLocal classifies client addresses for plaintext auth (tests make loopback look remote).
	isLocal func(net.Addr) bool
}

// NewServer builds an SMTP host that queues into q.
func NewServer(opts HostOptions, q *Queue, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, q: q, log: logger.With("host", opts.Hostname), local: lowerSet(opts.Domains), other: lowerSet(opts.OtherLocal),
		isLocal: mailstore.IsLoopback}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageSize
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = opts.MaxLineLength
	srv.ReadTimeout, srv.WriteTimeout = opts.ReadTimeout, opts.WriteTimeout
	srv.TLSConfig = opts.TLS
	// go-smtp's switch is server-wide; the per-client decision (TLS, or loopback and
	// AllowInsecureAuth) is the session's: AuthMechanisms and Auth.
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = log.New(slogWriter{s.log}, "", 0)
	s.srv = srv
	return s
}

// lowerSet makes a lowercase set.
func lowerSet(xs []string) map[string]bool {
	out := map[string]bool{}
	for _, x := range xs {
		out[strings.ToLower(x)] = true
	}
	return out
}

// slogWriter adapts go-smtp's logger to slog.
type slogWriter struct{ l *slog.Logger }

// Write logs one go-smtp log line as a warning.
func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Name is the component name.
func (s *Server) Name() string { return "smtp" }

// Listen binds the host's listener.
func (s *Server) Listen(ctx context.Context) error {
	ln, err := component.ListenTCP(ctx, s.opts.Listen, s.opts.MaxConnections)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.opts.Hostname, err)
	}
	ln = hangupListener{ln}
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
	s.mu.Unlock()
	if ln == nil {
		return errors.New("smtp: Serve before Listen")
	}
	if closed {
		return nil
	}
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("smtp %s: %w", s.opts.Hostname, err)
	}
	return nil
}

// Shutdown stops accepting and waits for sessions to end until ctx is done, then closes them.
// A message is never lost: it is either committed (and acknowledged) or not acknowledged.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	_ = ln.Close() // in case Serve had not yet handed it to go-smtp
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		_ = s.srv.Close()
		return nil
	}
	if errors.Is(err, gosmtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// relayAllowed reports whether a client address may relay without authentication.
func (s *Server) relayAllowed(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.opts.RelayNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
