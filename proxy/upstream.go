package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// dialer opens upstream connections, applying proxy.resolve overrides.
type dialer struct {
	d     net.Dialer
	hosts map[string]string // lowercased name → ip
}

// newDialer builds the dialer from configuration.
func newDialer(cfg config.ProxyConfig) *dialer {
	d := &dialer{d: net.Dialer{Timeout: cfg.Upstream.ConnectTimeout, KeepAlive: 30 * time.Second},
		hosts: map[string]string{}}
	for _, r := range cfg.Resolve {
		name, ip, _ := strings.Cut(r, "=")
		d.hosts[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(ip)
	}
	return d
}

// DialContext dials addr, replacing an overridden host name by its address.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip, ok := d.hosts[strings.ToLower(host)]; ok {
			addr = net.JoinHostPort(ip, port)
		}
	}
	return d.d.DialContext(ctx, network, addr)
}

// origin is one member of a route's pool.
type origin struct {
	u         *url.URL
	active    atomic.Int64 // requests in flight (least_conn)
	downUntil atomic.Int64 // unix nanos until which the origin is skipped after a failure
}

// pool is an upstream connection pool: a route's origins, or the forward proxy's "the URL's own
// host" (origins nil).
type pool struct {
	name        string
	origins     []*origin
	leastConn   bool
	rewriteHost bool
	failTimeout time.Duration
	rr          atomic.Uint64
	tr          *http.Transport
}

// newPool builds a pool with its own persistent-connection transport.
func newPool(name string, origins []*origin, balance string, rewriteHost bool, cfg config.ProxyConfig, d *dialer) *pool {
	up := cfg.Upstream
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSHandshakeTimeout:    up.ConnectTimeout,
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    up.MaxIdleConnsPerHost,
		MaxConnsPerHost:        up.MaxConnsPerHost,
		IdleConnTimeout:        up.IdleConnTimeout,
		ResponseHeaderTimeout:  up.ResponseHeaderTimeout,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
	}
	return &pool{name: name, origins: origins, leastConn: balance == "least_conn",
		rewriteHost: rewriteHost, failTimeout: up.FailTimeout, tr: tr}
}

// closeIdle closes the pool's idle connections.
func (p *pool) closeIdle() { p.tr.CloseIdleConnections() }

// pick chooses an origin: round-robin or least connections among those not marked down (all
// of them when every one is down).
func (p *pool) pick() *origin {
	now := time.Now().UnixNano()
	n := len(p.origins)
	start := int((p.rr.Add(1) - 1) % uint64(n))
	var best *origin
	for i := range n {
		o := p.origins[(start+i)%n]
		if o.downUntil.Load() > now {
			continue
		}
		if !p.leastConn {
			return o
		}
		if best == nil || o.active.Load() < best.active.Load() {
			best = o
		}
	}
	if best == nil {
		best = p.origins[start]
	}
	return best
}

// Fetch reaches the origin for the cache or the direct path (cache.Fetcher). The request has
// passed policy and hygiene; Fetch adds this hop's forwarding fields, picks the upstream and
// strips hop-by-hop fields from the response. When the call is for the request s is serving,
// the reader role moves on first, so the next pipelined requests are read and started while
// this one waits; calls the cache makes on its own (background revalidation) leave s alone.
func (s *slot) Fetch(r *http.Request) (*http.Response, error) {
	owned, seq := s.claim(r)
	var interim func(int, textproto.MIMEHeader) error
	if owned {
		s.detach(seq)
		if r.ProtoAtLeast(1, 1) {
			interim = func(code int, h textproto.MIMEHeader) error { return s.writeInterim(seq, code, h) }
		}
	}
	srv := s.c.srv
	start := time.Now()
	resp, upstream, err := srv.fetch(r, interim)
	srv.m.upstreamSeconds.Observe(time.Since(start).Seconds())
	kind := ""
	if err != nil {
		_, kind, _ = classifyError(err)
		srv.m.upstreamErrors.WithLabelValues(kind).Inc()
	}
	if owned {
		s.noteFetch(r, upstream, kind, err)
	}
	return resp, err
}

// noteFetch records an owned fetch's upstream and failure for the log and the error answer,
// unless s has been finished in the meantime.
func (s *slot) noteFetch(r *http.Request, upstream, kind string, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.owner == nil || !sameRequest(s.owner, r) {
		return
	}
	s.upstream = upstream
	if err != nil {
		s.fetchErr, s.errKind = err, kind
	}
}

// fetch sends r to its upstream: the FTP gateway for ftp:// URLs, the route's pool for
// reverse requests (origin-form RequestURI), else the forward pool. It uses only r, so it
// serves the cache's background calls too. It returns the upstream's host:port.
func (srv *Server) fetch(r *http.Request, interim func(int, textproto.MIMEHeader) error) (*http.Response, string, error) {
	if r.URL.Scheme == "ftp" {
		if srv.opts.FTP == nil {
			return nil, r.URL.Host, errors.New("proxy: no FTP gateway")
		}
		resp, err := srv.opts.FTP.Fetch(r)
		return resp, r.URL.Host, err
	}
	p := srv.fwd
	if strings.HasPrefix(r.RequestURI, "/") {
		rt := srv.routes.lookup(r.URL.Host, r.URL.Path)
		if rt == nil {
			return nil, "", errors.New("proxy: no route for the request any more")
		}
		p = rt.pool
	}
	return p.roundTrip(srv.outgoing(r, interim))
}

// roundTrip sends the upstream request to the pool: to one of the route's origins, or to the
// URL's own host. It returns the upstream host:port it used.
func (p *pool) roundTrip(out *http.Request) (*http.Response, string, error) {
	var o *origin
	if p.origins != nil {
		o = p.pick()
		base := o.u
		out.URL.Scheme, out.URL.Host = base.Scheme, base.Host
		if base.Path != "" && base.Path != "/" {
			out.URL.Path = strings.TrimSuffix(base.Path, "/") + out.URL.Path
			out.URL.RawPath = ""
		}
		if p.rewriteHost {
			out.Host = base.Host
		}
		o.active.Add(1)
	}
	upstream := out.URL.Host
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		if o != nil {
			o.active.Add(-1)
			if isConnectError(err) && p.failTimeout > 0 {
				o.downUntil.Store(time.Now().Add(p.failTimeout).UnixNano())
			}
		}
		return nil, upstream, fmt.Errorf("proxy: %s: %s %s: %w", p.name, out.Method, upstream, err)
	}
	stripHopByHop(resp.Header)
	if o != nil {
		resp.Body = &doneBody{ReadCloser: resp.Body, o: o}
	}
	return resp, upstream, nil
}

// outgoing derives the upstream request from r: a shallow copy with its own URL and header,
// this hop's forwarding fields and r's context (the direct path gives it the connection's; the
// cache may detach it from the client). interim, when set, receives 1xx interim responses.
func (srv *Server) outgoing(r *http.Request, interim func(int, textproto.MIMEHeader) error) *http.Request {
	ctx := r.Context()
	if interim != nil {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: interim})
	}
	out := r.WithContext(ctx)
	u := *r.URL
	out.URL = &u
	out.Header = r.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	out.RequestURI = ""
	out.Close = false
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	srv.addForwarding(r, out)
	return out
}

// doneBody counts the request out of its origin's in-flight total when the body is closed.
type doneBody struct {
	io.ReadCloser
	o    *origin
	done atomic.Bool
}

// Close closes the body once and releases the origin.
func (b *doneBody) Close() error {
	if !b.done.Swap(true) {
		b.o.active.Add(-1)
	}
	return b.ReadCloser.Close()
}

// isConnectError reports failures to establish a connection (the origin is down).
func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// classifyError maps an upstream failure to the status, a short kind for the log and metrics,
// and an explanation for the client.
func classifyError(err error) (int, string, string) {
	var dnsErr *net.DNSError
	var perr *protoError
	var ne net.Error
	switch {
	case errors.As(err, &perr):
		return perr.status, "client_body", perr.msg
	case errors.Is(err, context.Canceled):
		return http.StatusBadGateway, "client_gone", "the request was cancelled"
	case errors.As(err, &dnsErr):
		return http.StatusBadGateway, "dns", "DNS lookup failed for " + dnsErr.Name + ": " + dnsErr.Err
	case errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, "connect_refused", "the origin refused the connection"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return http.StatusBadGateway, "unreachable", "the origin is unreachable"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, "timeout", "the origin did not answer in time"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadGateway, "reset", "the origin closed the connection without a valid response"
	}
	return http.StatusBadGateway, "upstream", "the origin could not be reached"
}

// writeUpstreamError answers a request whose upstream fetch failed (or that the cache could not
// answer) with 502/504 and a short explanation.
func (s *slot) writeUpstreamError(err error) {
	s.c.mu.Lock()
	if s.fetchErr != nil {
		err = s.fetchErr
	}
	status, kind, msg := classifyError(err)
	if s.errKind == "" {
		s.errKind = kind
	}
	s.c.mu.Unlock()
	s.c.srv.log.Debug("upstream failed", "url", s.req.URL.String(), "kind", kind, "err", err)
	if status == http.StatusRequestEntityTooLarge || status == http.StatusBadRequest {
		s.closeAfter = true
	}
	s.writeError(&protoError{status: status, msg: msg})
}
