package dnsredirect

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// Force is an operator's override of an edge's health (admin API).
type Force int32

// The overrides: auto follows the checks; up and down (drain) ignore them.
const (
	ForceAuto Force = iota
	ForceUp
	ForceDown
)

func (f Force) String() string { return [...]string{"auto", "up", "down"}[f] }

// ParseForce parses "auto", "up" or "down" ("drain" is down).
func ParseForce(s string) (Force, error) {
	switch s {
	case "auto":
		return ForceAuto, nil
	case "up":
		return ForceUp, nil
	case "down", "drain":
		return ForceDown, nil
	}
	return 0, fmt.Errorf("state %q is not auto, up or down", s)
}

// checkSpec is what a checker does; a change restarts the checker.
type checkSpec struct {
	target            string // http://… or tcp://…, "" for none
	interval, timeout time.Duration
	rise, fall        int
	startUp           bool
}

// edgeHealth is the health of one edge by name. It survives reloads: a reload that keeps an
// edge's check keeps its state and its checker.
type edgeHealth struct {
	name    string
	checked atomic.Bool  // state from the checks (or the start state)
	force   atomic.Int32 // Force

	mu        sync.Mutex
	spec      checkSpec
	stop      context.CancelFunc
	done      chan struct{}
	streak    int // consecutive results agreeing with each other: +passes / -failures
	checks    int
	lastCheck time.Time
	lastErr   string
	changed   time.Time
}

// up reports whether the edge may be handed out.
func (h *edgeHealth) up() bool {
	switch Force(h.force.Load()) {
	case ForceUp:
		return true
	case ForceDown:
		return false
	}
	return h.checked.Load()
}

// healthSet holds the edges' health by name and runs their checkers.
type healthSet struct {
	log     *slog.Logger
	m       *metrics
	client  func(timeout time.Duration) *http.Client
	mu      sync.Mutex
	byName  map[string]*edgeHealth
	ctx     context.Context // the checkers' parent; nil until Serve
	onState func(name string, up bool)
}

func newHealthSet(log *slog.Logger, m *metrics) *healthSet {
	return &healthSet{log: log, m: m, byName: map[string]*edgeHealth{}, client: checkClient}
}

// checkClient is an HTTP client for checks: no keep-alive, no redirects, no proxy.
func checkClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get returns the health of an edge, creating it in the start state.
func (hs *healthSet) get(name string, spec checkSpec) *edgeHealth {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.byName[name]
	if h == nil {
		h = &edgeHealth{name: name, spec: spec, changed: time.Now()}
		h.checked.Store(spec.startUp || spec.target == "")
		hs.byName[name] = h
	}
	return h
}

// sync makes the checkers match the edges of a newly loaded state: stops removed edges' and
// changed checks' checkers and starts the missing ones (once Serve has started).
func (hs *healthSet) sync(specs map[string]checkSpec) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for name, h := range hs.byName {
		spec, ok := specs[name]
		h.mu.Lock()
		same := ok && spec == h.spec
		h.mu.Unlock()
		if !same {
			hs.stopOne(h)
		}
		if !ok {
			delete(hs.byName, name)
			continue
		}
		if !same {
			h.mu.Lock()
			h.spec = spec
			h.checks, h.streak = 0, 0
			if spec.target == "" {
				h.checked.Store(true)
			}
			h.mu.Unlock()
		}
		if hs.ctx != nil {
			hs.startLocked(h)
		}
	}
}

// start starts every checker under ctx (Serve).
func (hs *healthSet) start(ctx context.Context) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.ctx = ctx
	for _, h := range hs.byName {
		hs.startLocked(h)
	}
}

// stopAll stops every checker and waits for them.
func (hs *healthSet) stopAll() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.ctx = nil
	for _, h := range hs.byName {
		hs.stopOne(h)
	}
}

// stopOne stops one checker and waits for it (without holding h.mu, which the checker takes).
func (hs *healthSet) stopOne(h *edgeHealth) {
	h.mu.Lock()
	stop, done := h.stop, h.done
	h.stop, h.done = nil, nil
	h.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (hs *healthSet) startLocked(h *edgeHealth) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop != nil || h.spec.target == "" {
		return
	}
	ctx, cancel := context.WithCancel(hs.ctx)
	h.stop, h.done = cancel, make(chan struct{})
	go hs.run(ctx, h, h.spec, h.done)
}

// run checks one edge every interval until ctx ends. The first check sets the state directly
// (the start state holds until then); after it, rise passes or fall failures flip it.
func (hs *healthSet) run(ctx context.Context, h *edgeHealth, spec checkSpec, done chan struct{}) {
	defer close(done)
	client := hs.client(spec.timeout)
	defer client.CloseIdleConnections()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := probe(ctx, client, spec)
		if ctx.Err() != nil {
			return
		}
		hs.record(h, spec, err)
		t.Reset(spec.interval)
	}
}

// record applies one check result.
func (hs *healthSet) record(h *edgeHealth, spec checkSpec, err error) {
	h.mu.Lock()
	pass := err == nil
	first := h.checks == 0
	h.checks++
	h.lastCheck = time.Now()
	h.lastErr = ""
	if err != nil {
		h.lastErr = err.Error()
	}
	switch {
	case pass && h.streak >= 0:
		h.streak++
	case pass:
		h.streak = 1
	case h.streak <= 0:
		h.streak--
	default:
		h.streak = -1
	}
	was := h.checked.Load()
	now := was
	switch {
	case first:
		now = pass
	case !was && h.streak >= spec.rise:
		now = true
	case was && -h.streak >= spec.fall:
		now = false
	}
	if now != was {
		h.checked.Store(now)
		h.changed = h.lastCheck
	}
	h.mu.Unlock()
	if now != was {
		hs.transition(h.name, now, err)
	}
}

// transition logs and counts a health change.
func (hs *healthSet) transition(name string, up bool, err error) {
	state := map[bool]string{true: "up", false: "down"}[up]
	if up {
		hs.log.Info("dns: edge is up", "edge", name)
	} else {
		hs.log.Warn("dns: edge is down", "edge", name, "err", err)
	}
	if hs.m != nil {
		hs.m.health.WithLabelValues(name, state).Inc()
	}
	if hs.onState != nil {
		hs.onState(name, up)
	}
}

// probe runs one check: an HTTP GET through the edge (2xx/3xx passes) or a TCP connect.
func probe(ctx context.Context, client *http.Client, spec checkSpec) error {
	ctx, cancel := context.WithTimeout(ctx, spec.timeout)
	defer cancel()
	u, err := url.Parse(spec.target)
	if err != nil {
		return err
	}
	if u.Scheme == "tcp" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec.target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "outpost-dns-health/1")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	return nil
}

// specFor is the check of one edge under the section's schedule.
func specFor(e config.DNSEdgeConfig, h config.DNSHealthConfig) checkSpec {
	return checkSpec{target: e.Check, interval: h.Interval, timeout: h.Timeout, rise: h.Rise,
		fall: h.Fall, startUp: h.Start == "up"}
}
