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

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy/wire"
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
	bg          poolFetcher // this pool for the cache's background fetches (slot.Background)
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
	p := &pool{name: name, origins: origins, leastConn: balance == "least_conn",
		rewriteHost: rewriteHost, failTimeout: up.FailTimeout, tr: tr}
	p.bg.pool = p
	return p
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

// Fetch reaches the origin for the cache (cache.Fetcher), through the pool classify bound the
// request to: the upstream request is built from the client's (which passed policy and
// hygiene) with the cache's additions u; exchange adds this hop's forwarding fields, and the
// response comes back without hop-by-hop fields. The reader role moves on first, so the next
// pipelined requests are read and started while this one waits.
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
	s.detach(seq)
	var interim func(int, textproto.MIMEHeader) error
	if !s.proto10 {
		interim = func(code int, h textproto.MIMEHeader) error { return s.writeInterim(seq, code, h) }
	}
	if s.pool == nil {
		return nil, errors.New("proxy: the request has no upstream pool")
	}
	resp, upstream, err := s.c.srv.exchange(s.pool, s.req, u, parent, interim)
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
	r := s.req.Clone(context.Background())
	r.RemoteAddr = s.c.remote
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
// to the FTP gateway) with a context derived from parent and bounded by a watchdog, and
// records the upstream metrics. It uses only its arguments, so it serves the cache's
// background calls too. It returns the upstream's host:port.
func (srv *Server) exchange(p *pool, r *http.Request, u cache.Upstream, parent context.Context, interim func(int, textproto.MIMEHeader) error) (*http.Response, string, error) {
	start := time.Now()
	var resp *http.Response
	var upstream string
	var err error
	if r.URL.Scheme == "ftp" {
		upstream = r.URL.Host
		if srv.opts.FTP == nil {
			err = errors.New("proxy: no FTP gateway")
		} else {
			resp, err = srv.opts.FTP.Fetch(withAdditions(r.WithContext(parent), u))
		}
	} else {
		ctx, wd := newWatchdog(parent, srv.cfg.Upstream.ConnectTimeout, srv.cfg.Upstream.ResponseHeaderTimeout, srv.cfg.Upstream.ReadTimeout)
		out := srv.outgoing(r, u, ctx, interim)
		if out.Body != nil && out.Body != http.NoBody && out.ContentLength != 0 {
			out.Body = &progressBody{ReadCloser: out.Body, wd: wd}
		}
		resp, upstream, err = p.roundTrip(out, wd)
	}
	srv.m.upstreamSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		srv.m.upstreamErrors.WithLabelValues(errKind(err)).Inc()
	}
	return resp, upstream, err
}

// roundTrip sends the upstream request to the pool: to one of the route's origins, or to the
// URL's own host. It returns the upstream host:port it used. The response body, closed by the
// caller, stops wd and releases the origin.
func (p *pool) roundTrip(out *http.Request, wd *watchdog) (*http.Response, string, error) {
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
		wd.stop()
		if o != nil {
			o.active.Add(-1)
			if isConnectError(err) && p.failTimeout > 0 {
				o.downUntil.Store(time.Now().Add(p.failTimeout).UnixNano())
			}
		}
		return nil, upstream, fmt.Errorf("proxy: %s: %s %s: %w", p.name, out.Method, upstream, wd.explain(err))
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		// The origin switched protocols (an upgrade request, upgrade.go): the connection is
		// the caller's now, and the tunnel's idle timeout bounds it instead of the watchdog.
		protos := resp.Header.Values("Upgrade")
		wire.StripHopByHop(resp.Header)
		resp.Header["Upgrade"] = protos
		wd.timer.Stop()
		resp.Body = &switchedBody{ReadWriteCloser: rwc, o: o}
		return resp, upstream, nil
	}
	wire.StripHopByHop(resp.Header)
	wd.progress()
	resp.Body = &upstreamBody{ReadCloser: resp.Body, o: o, wd: wd}
	return resp, upstream, nil
}

// outgoing derives the upstream request from the client's r: a shallow copy with its own URL
// and header, the cache's additions u, this hop's forwarding fields and context ctx. interim,
// when set, receives 1xx interim responses.
func (srv *Server) outgoing(r *http.Request, u cache.Upstream, ctx context.Context, interim func(int, textproto.MIMEHeader) error) *http.Request {
	if interim != nil {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: interim})
	}
	out := r.WithContext(ctx)
	target := *r.URL
	out.URL = &target
	out.Header = r.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	out.Method = u.Method(r.Method)
	u.ApplyHeader(out.Header)
	out.RequestURI = ""
	out.Close = false
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	srv.addForwarding(r, out)
	return out
}

// withAdditions applies the cache's additions u to r (a shallow copy the caller owns): the
// header is copied first when there are any.
func withAdditions(r *http.Request, u cache.Upstream) *http.Request {
	if u == (cache.Upstream{}) {
		return r
	}
	r.Header = r.Header.Clone()
	r.Method = u.Method(r.Method)
	u.ApplyHeader(r.Header)
	return r
}

// errUpstreamStalled ends an exchange in which the origin made no progress for the idle limit.
// It counts as a timeout (504, error:timeout).
var errUpstreamStalled = fmt.Errorf("proxy: the origin made no progress within proxy.upstream.read_timeout: %w", context.DeadlineExceeded)

// watchdog bounds one upstream exchange that no client can cancel. Connecting is bounded by
// connect_timeout (the dialer) and waiting for the response header by response_header_timeout
// (the transport); the watchdog cancels the exchange when neither the request body nor the
// response body moves for the idle limit (read_timeout), so an origin that stalls mid-body,
// or stops reading an upload, cannot hold a shared fetch forever. An idle limit of 0 leaves
// the body unbounded.
type watchdog struct {
	idle   time.Duration // read_timeout; 0 = none
	header time.Duration // the wait for the response header: the longer of the two limits
	timer  *time.Timer
	cancel context.CancelCauseFunc
	fired  atomic.Bool
}

// newWatchdog starts a watchdog and returns the exchange's context. The first period covers
// connecting and the header wait, so that the transport's own header timeout fires first.
func newWatchdog(parent context.Context, connect, header, idle time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(parent)
	wd := &watchdog{idle: idle, header: max(header, idle), cancel: cancel}
	wd.timer = time.AfterFunc(connect+wd.header, wd.expire)
	return ctx, wd
}

// expire cancels the exchange (the timer ran out).
func (wd *watchdog) expire() {
	wd.fired.Store(true)
	wd.cancel(errUpstreamStalled)
}

// progress restarts the idle period (or stops the timer when there is no idle limit).
func (wd *watchdog) progress() {
	if wd.idle > 0 {
		wd.timer.Reset(wd.idle)
	} else {
		wd.timer.Stop()
	}
}

// uploaded restarts the header wait: the request went out whole.
func (wd *watchdog) uploaded() { wd.timer.Reset(wd.header) }

// stop ends the watchdog and the exchange's context.
func (wd *watchdog) stop() {
	wd.timer.Stop()
	wd.cancel(context.Canceled)
}

// explain replaces the error of an exchange the watchdog cut by errUpstreamStalled.
func (wd *watchdog) explain(err error) error {
	if err != nil && wd.fired.Load() {
		return errUpstreamStalled
	}
	return err
}

// progressBody is a request body going upstream: each read is progress.
type progressBody struct {
	io.ReadCloser
	wd *watchdog
}

// Read reads and restarts the idle period; at the end of the body the header wait starts.
func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.wd.uploaded()
	} else {
		b.wd.progress()
	}
	return n, err
}

// upstreamBody is an origin's response body: reads are progress for the watchdog; Close stops
// it and counts the request out of its origin's in-flight total (least_conn). It holds nothing
// of the client's connection, so the cache may read it after the client's request is over.
type upstreamBody struct {
	io.ReadCloser
	o    *origin // nil for the forward pool
	wd   *watchdog
	done atomic.Bool
}

// Read reads the origin's body, restarting the idle period.
func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.wd.progress()
	}
	if err != nil && err != io.EOF {
		err = b.wd.explain(err)
	}
	return n, err
}

// Close closes the body once, stops the watchdog and releases the origin.
func (b *upstreamBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.done.Swap(true) {
		b.wd.stop()
		if b.o != nil {
			b.o.active.Add(-1)
		}
	}
	return err
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
	if s.errKind == "" {
		s.errKind = kind
	}
	s.c.srv.log.Debug("upstream failed", "url", s.req.URL.String(), "kind", kind, "err", err)
	if status == http.StatusRequestEntityTooLarge || status == http.StatusBadRequest {
		s.closeAfter = true
	}
	s.writeError(&protoError{status: status, msg: msg})
}
