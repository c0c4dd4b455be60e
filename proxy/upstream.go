package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// dialer opens upstream connections, applying proxy.resolve overrides.
type dialer struct {
	d     net.Dialer
	hosts map[string]string // lowercased name → ip
	roots *x509.CertPool    // CAs for https:// origins (Options.UpstreamRoots); nil = the system's
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
	hc        *originCheck // the active health check (health.go); nil: none
}

// pool is an upstream pool: a route's origins, or the forward proxy's "the URL's own host"
// (origins nil), with its client's persistent connections (client.go).
type pool struct {
	name        string
	origins     []*origin
	leastConn   bool
	rewriteHost bool
	failTimeout time.Duration
	rr          atomic.Uint64
	cl          *client
	bg          poolFetcher // this pool for the cache's background fetches (slot.Background)
	parents     *parentTier // misses go to a parent first (parents.go); nil = none
	spec        string      // what a reload compares to carry the pool over (routes.go poolSpec)

	keys *cache.KeyRules // the route's cache-key rules: the parent is chosen by the ruled key
}

// newPool builds a pool with its own connections.
func newPool(name string, origins []*origin, balance string, rewriteHost bool, cfg config.ProxyConfig, d *dialer) *pool {
	up := cfg.Upstream
	lim := upstreamLimits{connect: up.ConnectTimeout, header: up.ResponseHeaderTimeout, idle: up.IdleConnTimeout,
		maxIdle: up.MaxIdleConnsPerHost, maxConns: up.MaxConnsPerHost, tls: upstreamTLS(d.roots)}
	p := &pool{name: name, origins: origins, leastConn: balance == "least_conn",
		rewriteHost: rewriteHost, failTimeout: up.FailTimeout, cl: newClient(d, lim)}
	p.bg.pool = p
	return p
}

// upstreamTLS is the TLS configuration towards origins: HTTP/1.1, certificates verified against
// roots (nil: the system's), session resumption.
func upstreamTLS(roots *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}, RootCAs: roots,
		ClientSessionCache: tls.NewLRUClientSessionCache(64)}
}

// originForm is the request-target sent upstream: the client's own when it was origin-form,
// else the path and query of the absolute URL.
func originForm(r *http.Request) string {
	if len(r.RequestURI) > 0 && r.RequestURI[0] == '/' {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// carriedOver returns a pool for a reloaded route with p's spec: a new value, named name, that
// shares p's client (its connections) and origins (their health).
func (p *pool) carriedOver(name string) *pool {
	q := &pool{name: name, origins: p.origins, leastConn: p.leastConn, rewriteHost: p.rewriteHost,
		failTimeout: p.failTimeout, cl: p.cl, spec: p.spec}
	q.bg.pool = q
	return q
}

// closeIdle closes the pool's idle connections.
func (p *pool) closeIdle() { p.cl.closeIdle() }

// pick chooses an origin: round-robin or least connections among those up — passing their
// health checks and not skipped after a failure (fail_timeout). When every origin that passes
// its checks was skipped, one of them is tried anyway; when every origin fails its checks,
// pick returns an originsDown error.
func (p *pool) pick() (*origin, error) {
	now := time.Now().UnixNano()
	n := len(p.origins)
	start := int((p.rr.Add(1) - 1) % uint64(n))
	var best, fallback *origin
	for i := range n {
		o := p.origins[(start+i)%n]
		if !o.hc.healthy() {
			continue
		}
		if fallback == nil {
			fallback = o
		}
		if o.downUntil.Load() > now {
			continue
		}
		if !p.leastConn {
			return o, nil
		}
		if best == nil || o.active.Load() < best.active.Load() {
			best = o
		}
	}
	if best == nil {
		best = fallback
	}
	if best == nil {
		return nil, p.originsDown()
	}
	return best, nil
}

// originsDown is the error of a pool whose every origin fails its health checks: the cache
// serves a stale response where the object allows it, else the client gets 503 with a
// Retry-After of the time the first origin needs to come back (rise checks).
func (p *pool) originsDown() error {
	after := time.Duration(0)
	for _, o := range p.origins {
		if d := o.hc.backIn(); after == 0 || d < after {
			after = d
		}
	}
	return &cache.UnavailableError{Err: fmt.Errorf("proxy: %s: every origin fails its health check", p.name), RetryAfter: after}
}

// Fetch reaches the origin for the cache (cache.Fetcher), through the pool classify bound the
// request to: the upstream request is built from the client's (which passed policy and
// hygiene) with the cache's additions u; exchange adds this hop's forwarding fields, and the
// response comes back without hop-by-hop fields. The reader role moves on first when the next
// pipelined request is already buffered, so it is read and started while this one waits (else
// the stall watch hands it on should one arrive: detachIfPipelined).
//
// The slot is the Fetcher only while the cache's Serve runs for its request (the seam's
// contract); for work after that the cache takes Background. The cache may share the fetch
// between clients (collapsing) and read the body after Serve returned, so a client's
// departure never cancels it: the exchange is bounded by the pool's own limits (watchdog).
func (s *slot) Fetch(u cache.Upstream) (*http.Response, error) {
	return s.fetch(u, context.Background())
}

// fetch sends the request upstream through s.pool under parent: the cache's fetches are
// detached from the client, the direct path's (no cache, nothing shared) end with the
// client's connection. It records the upstream and any failure for the log and the error
// answer.
func (s *slot) fetch(u cache.Upstream, parent context.Context) (*http.Response, error) {
	seq := s.seq
	s.detachIfPipelined(seq)
	var interim func(int, http.Header)
	if !s.proto10 && s.h2 == nil {
		interim = func(code int, h http.Header) { _ = s.writeInterim(seq, code, textproto.MIMEHeader(h)) }
	}
	if s.pool == nil {
		return nil, errors.New("proxy: the request has no upstream pool")
	}
	resp, upstream, err := s.c.srv.exchange(s.pool, s.request(), u, parent, interim)
	s.upstream = upstream
	if err != nil {
		s.fetchErr, s.errKind = err, errKind(err)
	}
	return resp, err
}

// Background returns a copy of the request and a Fetcher for it through the same pool, tied
// to neither s nor its connection (cache.BackgroundFetcher): the cache refreshes stale
// responses with them after the client's response was written (stale-while-revalidate), when
// s may serve another request or the client may be gone.
func (s *slot) Background() (cache.Request, cache.Fetcher) {
	r := s.request().Clone(context.Background())
	r.RemoteAddr = s.c.remote
	r.Body, r.ContentLength = http.NoBody, 0 // the client's body belongs to its connection
	return cache.FromHTTP(r), &poolFetcher{srv: s.c.srv, pool: s.pool, r: r}
}

var _ cache.BackgroundFetcher = (*slot)(nil)

// poolFetcher fetches one request through one upstream pool on the cache's behalf, detached
// from any client: no slot, no connection, no interim responses (slot.Background).
type poolFetcher struct {
	srv  *Server
	pool *pool
	r    *http.Request
}

// Fetch sends the request with the cache's additions to the pool (ftp:// URLs to the FTP
// gateway).
func (f *poolFetcher) Fetch(u cache.Upstream) (*http.Response, error) {
	resp, _, err := f.srv.exchange(f.pool, f.r, u, context.Background(), nil)
	return resp, err
}

// errKind classifies an upstream failure for the log and metrics ("" for none).
func errKind(err error) string {
	if err == nil {
		return ""
	}
	_, kind, _ := classifyError(err)
	return kind
}

// exchange sends the client's request r with the cache's additions u through p (ftp:// URLs
// to the FTP gateway), under parent (a client's connection, or nothing for the cache's
// detached fetches), and records the upstream metrics. It uses only its arguments, so it
// serves the cache's background calls too. It returns the upstream's host:port.
func (srv *Server) exchange(p *pool, r *http.Request, u cache.Upstream, parent context.Context, interim func(int, http.Header)) (*http.Response, string, error) {
	r = withAdditions(r, u)
	start := time.Now()
	var resp *http.Response
	var upstream string
	var err error
	if r.URL.Scheme == "ftp" {
		upstream = r.URL.Host
		if srv.opts.FTP == nil {
			err = errors.New("proxy: no FTP gateway")
		} else {
			resp, err = srv.opts.FTP.Fetch(r.WithContext(parent))
		}
	} else {
		out := outRequest{r: r, fwd: srv.forwarding, interim: interim, idle: srv.cfg.Upstream.ReadTimeout}
		resp, upstream, err = p.roundTrip(parent, &out)
	}
	srv.m.upstreamSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		srv.m.upstreamErrors.WithLabelValues(errKind(err)).Inc()
	}
	return resp, upstream, err
}

// roundTrip sends the upstream request to the pool: to one of the route's origins (skipping
// those that failed to connect within fail_timeout), or to the URL's own host. It returns the
// upstream host:port it used. The response comes back without hop-by-hop fields (but for a
// 101's Upgrade); its body, closed by the caller, releases the origin.
func (p *pool) roundTrip(ctx context.Context, out *outRequest) (*http.Response, string, error) {
	r := out.r
	if resp, host, asked, err := p.parents.ask(ctx, p.cl, p.origins == nil, out, p.keys); asked {
		if err != nil {
			return nil, host, fmt.Errorf("proxy: %s: %s %w", p.name, r.Method, err)
		}
		stripResponse(resp)
		return resp, host, nil
	}
	out.scheme, out.host, out.hostHdr = r.URL.Scheme, r.URL.Host, r.Host
	out.target = originForm(r)
	var o *origin
	if p.origins != nil {
		var err error
		if o, err = p.pick(); err != nil {
			return nil, "", err
		}
		base := o.u
		out.scheme, out.host = base.Scheme, base.Host
		if base.Path != "" && base.Path != "/" {
			out.target = strings.TrimSuffix(base.Path, "/") + out.target
		}
		if p.rewriteHost {
			out.hostHdr = base.Host
		}
		o.active.Add(1)
		out.done = func() { o.active.Add(-1) }
	}
	if out.hostHdr == "" {
		out.hostHdr = out.host
	}
	resp, err := p.cl.roundTrip(ctx, out)
	if err != nil {
		if o != nil {
			o.active.Add(-1)
			if isConnectError(err) && p.failTimeout > 0 {
				o.downUntil.Store(time.Now().Add(p.failTimeout).UnixNano())
			}
		}
		return nil, out.host, fmt.Errorf("proxy: %s: %s %s: %w", p.name, r.Method, out.host, err)
	}
	stripResponse(resp)
	return resp, out.host, nil
}

// stripResponse removes the hop-by-hop fields of an upstream response, but for a 101's Upgrade.
func stripResponse(resp *http.Response) {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		protos := resp.Header.Values("Upgrade")
		wire.StripHopByHop(resp.Header)
		resp.Header["Upgrade"] = protos
		return
	}
	wire.StripHopByHop(resp.Header)
}

// withAdditions returns the request to send for the client's r with the cache's additions u:
// r itself when there are none, else a shallow copy with u's method, and a copy of the header
// edited by u when u changes it.
func withAdditions(r *http.Request, u cache.Upstream) *http.Request {
	if u == (cache.Upstream{}) || u.Method(r.Method) == r.Method && !u.ChangesHeader(r.Header) {
		return r // a plain GET miss fetched for storage: nothing to change
	}
	out := new(http.Request)
	*out = *r
	out.Method = u.Method(r.Method)
	if u.ChangesHeader(r.Header) {
		out.Header = r.Header.Clone()
		u.ApplyHeader(out.Header)
	}
	return out
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
	var down *cache.UnavailableError
	switch {
	case errors.As(err, &down):
		return http.StatusServiceUnavailable, "origins_down", "every origin of this route is down (failing its health check)"
	case errors.As(err, &perr):
		return perr.status, "client_body", perr.msg
	case errors.Is(err, errBadResponse):
		return http.StatusBadGateway, "bad_response", "the origin sent an invalid response"
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
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
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
	if s.errKind == "" {
		s.errKind = kind
	}
	s.c.srv.log.Debug("upstream failed", "url", s.request().URL.String(), "kind", kind, "err", err)
	if status == http.StatusRequestEntityTooLarge || status == http.StatusBadRequest {
		s.closeAfter = true
	}
	perr := &protoError{status: status, msg: msg}
	var down *cache.UnavailableError
	if errors.As(err, &down) {
		perr.extra = "Retry-After: " + strconv.Itoa(down.RetryAfterSeconds()) + "\r\n"
	}
	s.writeError(perr)
}
