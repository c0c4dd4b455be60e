package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// Active health checks of route origins ([proxy.routes.health]). Each origin of a route with a
// health path has one checker goroutine: every interval it GETs the path (under the origin's
// base path, with the origin's Host) within timeout and reads the status line. fall failures
// in a row take an origin that is up down; rise passes in a row bring it back. An origin that
// is down gets no requests (pool.pick); when all of a route's are down, its requests fail
// with a cache.UnavailableError: stale where allowed, else 503 with Retry-After. Origins start
// up, and the first check runs at once. Passive health (fail_timeout after a refused
// connection) applies on top. A reload that keeps a route's pool keeps its checkers and their
// state (live.go).

// originCheck is one origin's active health state and checker.
type originCheck struct {
	cfg config.ProxyRouteHealth // with defaults applied
	up  atomic.Bool

	passed atomic.Uint64 // checks that passed (metrics)
	failed atomic.Uint64 // checks that failed (metrics)

	mu      sync.Mutex // guards the fields below
	streak  int        // checks in a row that disagree with the current state
	lastErr string     // the last failed check's reason
	lastAt  time.Time  // when the last check ended
	started bool
	stopped bool
	stop    chan struct{}
}

// newOriginCheck builds an origin's checker (not started); the origin starts up.
func newOriginCheck(cfg config.ProxyRouteHealth) *originCheck {
	c := &originCheck{cfg: cfg, stop: make(chan struct{})}
	c.up.Store(true)
	return c
}

// healthy reports whether the origin passes its checks (true without a check; nil-safe).
func (c *originCheck) healthy() bool { return c == nil || c.up.Load() }

// backIn is how long an origin that is down needs at least to come back (nil-safe).
func (c *originCheck) backIn() time.Duration {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	left := c.cfg.Rise
	if !c.up.Load() {
		left -= c.streak
	}
	return time.Duration(max(left, 1)) * c.cfg.Interval
}

// startChecks starts the checkers of every origin of t that has one and is not running yet.
func (t *routeTable) startChecks(srv *Server) {
	for _, rt := range t.routes {
		for _, o := range rt.pool.origins {
			o.startCheck(srv, rt.pool.name)
		}
	}
}

// stopChecks stops every checker of t.
func (t *routeTable) stopChecks() {
	for _, rt := range t.routes {
		for _, o := range rt.pool.origins {
			o.stopCheck()
		}
	}
}

// startCheck runs o's checker until stopCheck or the server's shutdown (once; no checker: no-op).
func (o *origin) startCheck(srv *Server, route string) {
	c := o.hc
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.stopped || srv.closing.Load() {
		return
	}
	c.started = true
	srv.checks.Add(1)
	go func() {
		defer srv.checks.Done()
		o.watch(srv, route)
	}()
}

// stopCheck stops o's checker (idempotent; nil-safe).
func (o *origin) stopCheck() {
	c := o.hc
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.stopped = true
		close(c.stop)
	}
}

// watch checks o at once, then every interval.
func (o *origin) watch(srv *Server, route string) {
	c := o.hc
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for {
		err := o.check(srv.dialer)
		o.record(srv, route, err)
		select {
		case <-c.stop:
			return
		case <-srv.stopAccept:
			return
		case <-tick.C:
		}
	}
}

// record applies one check's result: fall failures in a row take an origin that is up down,
// rise passes in a row bring one that is down back.
func (o *origin) record(srv *Server, route string, err error) {
	c := o.hc
	ok := err == nil
	if ok {
		c.passed.Add(1)
	} else {
		c.failed.Add(1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastAt = time.Now()
	if err != nil {
		c.lastErr = err.Error()
	}
	up := c.up.Load()
	if ok == up {
		c.streak = 0
		return
	}
	c.streak++
	switch {
	case up && c.streak >= c.cfg.Fall:
		c.up.Store(false)
		c.streak = 0
		srv.log.Warn("proxy: origin down: failed its health check", "route", route, "origin", o.u.Redacted(), "fall", c.cfg.Fall, "err", err)
	case !up && c.streak >= c.cfg.Rise:
		c.up.Store(true)
		c.streak = 0
		srv.log.Info("proxy: origin up: passed its health check", "route", route, "origin", o.u.Redacted(), "rise", c.cfg.Rise)
	}
}

// check GETs the health path of o once within the timeout and checks the status.
func (o *origin) check(d *dialer) error {
	cfg := o.hc.cfg
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	_, addr := hostKey(o.u.Scheme, o.u.Host)
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(cfg.Timeout))
	if o.u.Scheme == "https" {
		conf := upstreamTLS(d.roots)
		conf.ServerName = o.u.Hostname()
		tc := tls.Client(nc, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("health check: TLS: %w", err)
		}
		nc = tc
	}
	path := cfg.Path
	if p := strings.TrimSuffix(o.u.Path, "/"); p != "" {
		path = p + path
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + o.u.Host + "\r\nUser-Agent: outpost-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	status, err := probeStatus(nc, req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if !cfg.Passes(status) {
		return fmt.Errorf("health check: GET %s: status %d", path, status)
	}
	return nil
}

// probeStatus sends a check's request head req on nc and returns the status of the response
// head, read as strictly as any origin response (the active health checks of origins and of
// parents).
func probeStatus(nc net.Conn, req string) (int, error) {
	if _, err := nc.Write([]byte(req)); err != nil {
		return 0, err
	}
	var head wire.ResponseHead
	if err := head.Read(bufio.NewReaderSize(nc, 4<<10), wire.Limits{MaxBytes: maxResponseHead}); err != nil {
		return 0, err
	}
	return head.Status, nil
}

// originMetrics exposes every route origin of the running configuration at scrape time:
// outpost_proxy_origin_up{route,origin} (1: taking traffic; 0: failing its health check, or
// skipped after a refused connection) and outpost_proxy_origin_checks_total{route,origin,result}.
type originMetrics struct {
	srv          *Server
	upDesc       *prometheus.Desc
	checksDesc   *prometheus.Desc
	inFlightDesc *prometheus.Desc
}

func newOriginMetrics(srv *Server) *originMetrics {
	labels := []string{"route", "origin"}
	return &originMetrics{srv: srv,
		upDesc: prometheus.NewDesc("outpost_proxy_origin_up",
			"1 while a route origin takes traffic; 0 while it fails its health check or is skipped after a refused connection (fail_timeout).", labels, nil),
		checksDesc: prometheus.NewDesc("outpost_proxy_origin_checks_total",
			"Active health checks of route origins ([proxy.routes.health]) by result (pass, fail).", append(labels, "result"), nil),
		inFlightDesc: prometheus.NewDesc("outpost_proxy_origin_requests_in_flight",
			"Requests in flight to a route origin.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *originMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.upDesc
	ch <- m.checksDesc
	ch <- m.inFlightDesc
}

// Collect implements prometheus.Collector over the running configuration's origins. Two routes
// of one spec share their origins; each is reported under its own route.
func (m *originMetrics) Collect(ch chan<- prometheus.Metric) {
	lv := m.srv.live.Load()
	now := time.Now().UnixNano()
	seen := map[[2]string]bool{}
	for _, rt := range lv.routes.routes {
		for _, o := range rt.pool.origins {
			u := o.u.Redacted()
			if k := [2]string{rt.pool.name, u}; seen[k] {
				continue // the same origin twice in one route
			} else {
				seen[k] = true
			}
			up := 0.0
			if o.hc.healthy() && o.downUntil.Load() <= now {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(m.upDesc, prometheus.GaugeValue, up, rt.pool.name, u)
			ch <- prometheus.MustNewConstMetric(m.inFlightDesc, prometheus.GaugeValue, float64(o.active.Load()), rt.pool.name, u)
			if o.hc != nil {
				ch <- prometheus.MustNewConstMetric(m.checksDesc, prometheus.CounterValue, float64(o.hc.passed.Load()), rt.pool.name, u, "pass")
				ch <- prometheus.MustNewConstMetric(m.checksDesc, prometheus.CounterValue, float64(o.hc.failed.Load()), rt.pool.name, u, "fail")
			}
		}
	}
}
