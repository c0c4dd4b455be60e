// Package ftpgw is the proxy's ftp:// gateway: it answers a forward-proxy GET or HEAD of an
// ftp:// URL by fetching over FTP (passive mode) and returning an HTTP response — files with
// their type, length and modification time, directories as an HTML listing — that the cache
// stores like any other. It implements cache.Fetcher.
package ftpgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// Gateway fetches ftp:// URLs. It is safe for concurrent use; every Fetch has an FTP control
// connection to itself until its response body is closed; then the connection goes back to
// a small idle pool (max_idle_conns, idle_conn_timeout) for the next fetch from the same
// server with the same login.
type Gateway struct {
	cfg  config.FTPGatewayConfig
	log  *slog.Logger
	pool *pool
}

// New returns a gateway for the [proxy.ftp] configuration.
func New(cfg config.FTPGatewayConfig, logger *slog.Logger) (*Gateway, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Timeout <= 0 || cfg.ConnectTimeout <= 0 {
		return nil, errors.New("ftpgw: timeout and connect_timeout must be positive")
	}
	return &Gateway{cfg: cfg, log: logger, pool: newPool(cfg.MaxIdleConns, cfg.IdleConnTimeout)}, nil
}

// Close closes the idle pooled connections (QUIT); sessions in use close when their
// responses' bodies are closed. Fetch keeps working afterwards, without pooling.
func (g *Gateway) Close() error {
	g.pool.closeAll()
	return nil
}

// Fetch answers a GET or HEAD of an ftp:// URL. FTP failures become HTTP statuses (see
// statusFor); the returned error is non-nil only when the request is not an ftp:// request at
// all. The caller closes the response body, which ends the FTP session.
func (g *Gateway) Fetch(r *http.Request) (*http.Response, error) {
	if r.URL == nil || !strings.EqualFold(r.URL.Scheme, "ftp") {
		return nil, fmt.Errorf("ftpgw: not an ftp:// URL: %v", r.URL)
	}
	if !g.cfg.Enabled {
		return errorResponse(r, http.StatusForbidden, "The ftp:// gateway is disabled on this proxy."), nil
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		resp := errorResponse(r, http.StatusMethodNotAllowed, "Only GET and HEAD are supported for ftp:// URLs.")
		resp.Header.Set("Allow", "GET, HEAD")
		return resp, nil
	}
	t, err := parseTarget(r)
	if err != nil {
		return errorResponse(r, http.StatusBadRequest, err.Error()), nil
	}
	s, err := g.open(r.Context(), t)
	if err != nil {
		return g.fail(r, t, err), nil
	}
	resp, err := s.serve(r, t)
	if err != nil {
		s.close()
		return g.fail(r, t, err), nil
	}
	return resp, nil
}

// fail logs an FTP failure and turns it into an error response.
func (g *Gateway) fail(r *http.Request, t *target, err error) *http.Response {
	code := statusFor(err)
	g.log.Info("ftp gateway error", "url", t.display(), "status", code, "err", err)
	resp := errorResponse(r, code, "FTP request for "+t.display()+" failed: "+err.Error())
	if code == http.StatusUnauthorized {
		resp.Header.Set("WWW-Authenticate", `Basic realm="FTP `+t.hostport+`"`)
	}
	return resp
}

// statusFor maps an FTP or network error to an HTTP status: 530 (login) → 401, 550 → 404,
// 421/450/451/452 → 503, other FTP replies → 502; timeouts → 504; anything else (refused,
// unreachable) → 502.
func statusFor(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		switch te.Code {
		case 530, 532:
			return http.StatusUnauthorized
		case 550, 553:
			return http.StatusNotFound
		case 421, 450, 451, 452:
			return http.StatusServiceUnavailable
		}
		return http.StatusBadGateway
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	if errors.Is(err, errTooLarge) {
		return http.StatusBadGateway
	}
	return http.StatusBadGateway
}

// errTooLarge is returned for files above max_size.
var errTooLarge = errors.New("file exceeds the gateway's size limit (proxy.ftp.max_size)")

// session is one logged-in FTP control connection.
type session struct {
	g     *Gateway
	c     *ftp.ServerConn
	conns *connSet
	stop  func() bool // detaches the request-context watcher

	key       poolKey
	home      string      // the login directory (relative URL paths start there)
	moved     bool        // a CWD left home
	ascii     bool        // TYPE A is in force
	idleTimer *time.Timer // while pooled: closes the session after idle_conn_timeout
}

// attach makes ctx the session's request context: cancelling it closes the connections, and
// data connections are dialled with it.
func (s *session) attach(ctx context.Context) {
	s.conns.setContext(ctx)
	s.stop = context.AfterFunc(ctx, s.conns.closeAll)
}

// detach ends the request's hold; it reports whether the connections are still open.
func (s *session) detach() bool {
	ok := s.stop()
	s.conns.setContext(context.Background())
	return ok && !s.conns.isClosed()
}

// changeDir is CWD, remembering that the session left its login directory.
func (s *session) changeDir(p string) error {
	s.moved = true
	return s.c.ChangeDir(p)
}

// connSet holds a session's network connections (control first, then data) so they can be
// closed from another goroutine when the request is cancelled, without touching the FTP
// client; and the context new connections are dialled with.
type connSet struct {
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	ctx    context.Context
}

// setContext sets the context for dialling.
func (s *connSet) setContext(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
}

// context is the context for dialling.
func (s *connSet) context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

// isClosed reports whether closeAll has run.
func (s *connSet) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// keepControl forgets the (finished) data connections, keeping the control connection.
func (s *connSet) keepControl() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns[min(1, len(s.conns)):] {
		c.Close()
	}
	s.conns = s.conns[:min(1, len(s.conns))]
}

// add records a new connection (closing it at once if the set is closed).
func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	s.conns = append(s.conns, c)
}

// closeAll closes every connection.
func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// open returns a logged-in session for t: a pooled one when there is a healthy one, else a
// new connection. Control and data connections carry an idle deadline of timeout, and
// cancelling the request's context closes them.
func (g *Gateway) open(ctx context.Context, t *target) (*session, error) {
	user, pass := t.user, t.pass
	if user == "" {
		user, pass = "anonymous", g.cfg.AnonymousPassword
	}
	key := poolKey{hostport: t.hostport, user: user, pass: pass}
	if s := g.checkout(ctx, key); s != nil {
		return s, nil
	}
	conns := &connSet{ctx: ctx}
	dialer := &net.Dialer{Timeout: g.cfg.ConnectTimeout}
	dial := func(network, addr string) (net.Conn, error) {
		nc, err := dialer.DialContext(conns.context(), network, addr)
		if err != nil {
			return nil, err
		}
		conns.add(nc)
		return &deadlineConn{Conn: nc, timeout: g.cfg.Timeout}, nil
	}
	stop := context.AfterFunc(ctx, conns.closeAll)
	c, err := ftp.Dial(t.hostport, ftp.DialWithDialFunc(dial), ftp.DialWithTimeout(g.cfg.ConnectTimeout))
	if err != nil {
		stop()
		conns.closeAll()
		return nil, fmt.Errorf("connect to %s: %w", t.hostport, err)
	}
	s := &session{g: g, c: c, conns: conns, stop: stop, key: key}
	if err := c.Login(user, pass); err != nil {
		s.close()
		return nil, fmt.Errorf("login as %s: %w", user, err)
	}
	if g.pool.max > 0 {
		if s.home, err = c.CurrentDir(); err != nil {
			s.close()
			return nil, fmt.Errorf("PWD after login: %w", err)
		}
	}
	return s, nil
}

// close ends the FTP session: QUIT, then every connection is closed.
func (s *session) close() {
	s.stop()
	s.c.Quit()
	s.conns.closeAll()
}

// deadlineConn pushes the deadline forward on every read and write: an idle timeout.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

// Read reads with a fresh deadline.
func (c *deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

// Write writes with a fresh deadline.
func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// errorResponse is a small, uncacheable HTML error page.
func errorResponse(r *http.Request, code int, msg string) *http.Response {
	body := "<!DOCTYPE html>\n<html><head><title>" + htmlEscape(wire.Reason(code)) + "</title></head><body><h1>" +
		htmlEscape(wire.StatusText(code)) + "</h1><p>" + htmlEscape(msg) + "</p></body></html>\n"
	h := http.Header{}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	return newResponse(r, code, h, body)
}

// newResponse builds an HTTP/1.1 response with an in-memory body (none for HEAD).
func newResponse(r *http.Request, code int, h http.Header, body string) *http.Response {
	resp := &http.Response{
		Status:     wire.StatusText(code),
		StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: int64(len(body)), Request: r,
		Body: io.NopCloser(strings.NewReader(body)),
	}
	if r.Method == http.MethodHead {
		resp.Body = http.NoBody
	}
	return resp
}
