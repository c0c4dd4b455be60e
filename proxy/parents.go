package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// The parent tier ([proxy.parents]): a miss goes to a parent cache instead of the origin. The
// parent for a request is chosen by rendezvous (highest random weight) hashing of its cache key
// over the healthy parents, so every edge asks the same parent for the same object (one origin
// fetch per object across edges, the parent collapsing concurrent misses), and a parent that
// goes down moves only the keys it had. The request goes to the parent the way the client sent
// it: origin-form with the client's Host for reverse routes (the parent has the same routes
// and routes it as any reverse request), absolute-form for forward requests. This hop's Via
// goes with it, so a parent whose route led back here would answer 508. When no parent is
// healthy, or every one refuses the connection, the request goes to the origin directly.

// maxParents bounds how many parents one request may try (the ranking's stack buffer);
// config.MaxParents holds proxy.parents.servers to it.
const maxParents = config.MaxParents

// parentTier is the configured parents with their health.
type parentTier struct {
	cfg     config.ProxyParentsConfig
	parents []*parent
	d       *dialer
	log     *slog.Logger

	startOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
}

// parent is one parent cache.
type parent struct {
	addr string
	seed uint64 // the hash of addr, mixed with each key's hash for its weight
	up   atomic.Bool

	mu     sync.Mutex // guards streak
	streak int        // checks in a row that disagree with the current state
}

// newParentTier builds the tier, or returns nil when no parents are configured. Parents start
// healthy; the checks (start) and refused connections mark them down.
func newParentTier(cfg config.ProxyParentsConfig, d *dialer, log *slog.Logger) *parentTier {
	if len(cfg.Servers) == 0 {
		return nil
	}
	t := &parentTier{cfg: cfg, d: d, log: log, stop: make(chan struct{})}
	for _, s := range cfg.Servers[:min(len(cfg.Servers), maxParents)] { // validated: at most maxParents
		p := &parent{addr: s, seed: hashString(fnvOffset, s)}
		p.up.Store(true)
		t.parents = append(t.parents, p)
	}
	return t
}

// FNV-1a, 64 bits: a hash every edge computes alike (rendezvous weights must agree across
// processes, so no per-process seed).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashString continues an FNV-1a hash over s.
func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is SplitMix64's finaliser: spreads the combined key and parent hashes evenly.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// parentKey is the hash of a request's cache key: scheme, host and request-target as the
// cache keys it (the host lowercased by classify for reverse routes).
func parentKey(r *http.Request) uint64 {
	h := hashString(fnvOffset, "http://")
	h = hashString(h, r.URL.Host)
	return hashString(h, originForm(r))
}

// ruledParentKey is parentKey under a route's cache-key rules (ignored and reordered query
// parameters, the path's case), so that every request one stored object serves goes to the
// same parent; the include_headers part is left out (a parent holds all of a URL's variants).
func ruledParentKey(r *http.Request, keys *cache.KeyRules) uint64 {
	if keys == nil {
		return parentKey(r)
	}
	b := append(append([]byte("http://"), r.URL.Host...), originForm(r)...)
	return hashString(fnvOffset, transient(keys.ApplyURL(b)))
}

// ranked appends the healthy parents to dst, the highest weight for key first.
func (t *parentTier) ranked(key uint64, dst []*parent) []*parent {
	var w [maxParents]uint64
	for _, p := range t.parents {
		if !p.up.Load() {
			continue
		}
		wp := mix64(key ^ p.seed)
		i := len(dst)
		dst = append(dst, p)
		for ; i > 0 && w[i-1] < wp; i-- { // insertion sort, descending
			dst[i], w[i] = dst[i-1], w[i-1]
		}
		dst[i], w[i] = p, wp
	}
	return dst
}

// ask sends out to the request's parent, the next ones when a parent refuses the connection
// (marking it down). asked is false when the request goes to the origin directly: no parent
// tier, an https:// forward target, or no healthy parent that accepted the connection.
func (t *parentTier) ask(ctx context.Context, cl *client, forward bool, out *outRequest, keys *cache.KeyRules) (resp *http.Response, host string, asked bool, err error) {
	r := out.r
	if t == nil || r.URL.Scheme != "http" {
		return nil, "", false, nil
	}
	var buf [maxParents]*parent
	for _, p := range t.ranked(ruledParentKey(r, keys), buf[:0]) {
		po := *out
		po.scheme, po.host, po.hostHdr, po.target, po.done = "http", p.addr, r.Host, originForm(r), nil
		if forward {
			po.target = r.URL.String()
		}
		if po.hostHdr == "" {
			po.hostHdr = r.URL.Host
		}
		resp, err := cl.roundTrip(ctx, &po)
		if err != nil && isConnectError(err) {
			t.markDown(p, err)
			continue
		}
		if err != nil {
			return nil, p.addr, true, fmt.Errorf("parent %s: %w", p.addr, err)
		}
		return resp, p.addr, true, nil
	}
	return nil, "", false, nil
}

// markDown takes a parent out after a refused connection; it needs rise good checks to
// come back.
func (t *parentTier) markDown(p *parent, why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.up.Swap(false) {
		t.log.Warn("parent down", "parent", p.addr, "err", why)
	}
	p.streak = 0
}

// record applies one check's result: fall failures in a row take a healthy parent down, rise
// successes in a row bring one that is down back.
func (t *parentTier) record(p *parent, ok bool, why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	up := p.up.Load()
	if ok == up {
		p.streak = 0
		return
	}
	p.streak++
	switch {
	case up && p.streak >= t.cfg.Fall:
		p.up.Store(false)
		p.streak = 0
		t.log.Warn("parent down", "parent", p.addr, "check", t.cfg.Check, "err", why)
	case !up && p.streak >= t.cfg.Rise:
		p.up.Store(true)
		p.streak = 0
		t.log.Info("parent up", "parent", p.addr, "check", t.cfg.Check)
	}
}

// start runs one checker per parent until close (once; nil-safe).
func (t *parentTier) start() {
	if t == nil {
		return
	}
	t.startOnce.Do(func() {
		for _, p := range t.parents {
			t.wg.Add(1)
			go t.watch(p)
		}
	})
}

// close stops the checkers and waits for them (nil-safe, idempotent).
func (t *parentTier) close() {
	if t == nil {
		return
	}
	t.startOnce.Do(func() {}) // no checkers start after close
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	t.wg.Wait()
}

// watch checks p every interval.
func (t *parentTier) watch(p *parent) {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		err := t.check(p)
		t.record(p, err == nil, err)
	}
}

// check probes p once within the timeout: a TCP connection, or for "http" an OPTIONS * the
// parent's proxy answers itself, healthy below 500.
func (t *parentTier) check(p *parent) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
	defer cancel()
	nc, err := t.d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	if t.cfg.Check == "tcp" {
		return nil
	}
	_ = nc.SetDeadline(time.Now().Add(t.cfg.Timeout))
	req := "OPTIONS * HTTP/1.1\r\nHost: " + p.addr + "\r\nMax-Forwards: 0\r\nUser-Agent: outpost-parent-check\r\nConnection: close\r\n\r\n"
	status, err := probeStatus(nc, req)
	if err != nil {
		return fmt.Errorf("parent check: %w", err)
	}
	if status >= 500 {
		return fmt.Errorf("parent check: status %d", status)
	}
	return nil
}

// healthy reports each parent's state (tests).
func (t *parentTier) healthy() map[string]bool {
	out := map[string]bool{}
	if t == nil {
		return out
	}
	for _, p := range t.parents {
		out[p.addr] = p.up.Load()
	}
	return out
}

// useParents sets the tier the upstream pools use (nil: none); buildLive hands it to the
// route pools.
func (s *Server) useParents(t *parentTier) {
	s.tier = t
	s.fwd.parents = t
}

// registerParents exposes each parent's health as outpost_proxy_parent_up{parent}.
func (s *Server) registerParents() error {
	t := s.tier
	if t == nil || s.env.Metrics == nil {
		return nil
	}
	for _, p := range t.parents {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "outpost", Subsystem: "proxy", Name: "parent_up",
			Help: "1 while the parent passes its health checks ([proxy.parents]), else 0.", ConstLabels: prometheus.Labels{"parent": p.addr}},
			func() float64 {
				if p.up.Load() {
					return 1
				}
				return 0
			})
		if err := s.env.Metrics.Register(g); err != nil {
			return fmt.Errorf("proxy: parent metrics: %w", err)
		}
	}
	return nil
}

// hierarchy is the Squid access log's hierarchy code for an upstream host:port, with its
// leading space and trailing slash: " CARP/" for a parent (Squid's name for parents chosen by
// highest-random-weight hashing), " HIER_DIRECT/" otherwise (nil-safe).
func (t *parentTier) hierarchy(upstream string) string {
	if t != nil {
		for _, p := range t.parents {
			if p.addr == upstream {
				return " CARP/"
			}
		}
	}
	return " HIER_DIRECT/"
}
