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
// strips hop-by-hop fields from the response. The reader role moves on first: the next
// pipelined requests are read and started while this one waits.
func (s *slot) Fetch(r *http.Request) (*http.Response, error) {
	s.detach()
	srv := s.c.srv
	start := time.Now()
	var resp *http.Response
	var err error
	if r.URL.Scheme == "ftp" {
		if srv.opts.FTP == nil {
			return nil, errors.New("proxy: no FTP gateway")
		}
		s.upstream = r.URL.Host
		resp, err = srv.opts.FTP.Fetch(r)
	} else {
		p := srv.fwd
		if s.route != nil {
			p = s.route.pool
		}
		resp, err = p.roundTrip(s, r)
	}
	srv.m.upstreamSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		_, kind, _ := classifyError(err)
		s.fetchErr, s.errKind = err, kind
		srv.m.upstreamErrors.WithLabelValues(kind).Inc()
		return nil, err
	}
	return resp, nil
}

// roundTrip sends the request to the pool's upstream.
func (p *pool) roundTrip(s *slot, r *http.Request) (*http.Response, error) {
	out := s.outgoing(r)
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
	s.upstream = out.URL.Host
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		if o != nil {
			o.active.Add(-1)
			if isConnectError(err) && p.failTimeout > 0 {
				o.downUntil.Store(time.Now().Add(p.failTimeout).UnixNano())
			}
		}
		return nil, fmt.Errorf("proxy: %s: %s %s: %w", p.name, out.Method, out.URL.Host, err)
	}
	stripHopByHop(resp.Header)
	if o != nil {
		resp.Body = &doneBody{ReadCloser: resp.Body, o: o}
	}
	return resp, nil
}

// outgoing derives the upstream request: a shallow copy with its own URL and header, this
// hop's forwarding fields, the request's context (the direct path gives it the connection's;
// the cache may detach it from the client) and, for HTTP/1.1 clients, a hook that forwards
// interim 1xx responses.
func (s *slot) outgoing(r *http.Request) *http.Request {
	ctx := r.Context()
	if !s.proto10 {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error { return s.writeInterim(code, h) },
		})
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
	s.addForwarding(out)
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
	if s.fetchErr != nil {
		err = s.fetchErr
	}
	status, kind, msg := classifyError(err)
	s.c.srv.log.Debug("upstream failed", "url", s.req.URL.String(), "kind", kind, "err", err)
	if s.errKind == "" {
		s.errKind = kind
	}
	if status == http.StatusRequestEntityTooLarge || status == http.StatusBadRequest {
		s.closeAfter = true
	}
	s.writeError(&protoError{status: status, msg: msg})
}
