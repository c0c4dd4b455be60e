package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/topk"
)

// status is what the proxy shows on the admin listener beyond its Prometheus counters: the
// heaviest URLs by requests and by bytes, the bytes served by source, and the routes' origin
// health. It is fed from record, once per finished request.
//
//	GET /proxy/top     {"requests": {"total": N, "top": [...]}, "bytes": {...}}
//	GET /proxy/routes  every route with its origins: up, or down until when (fail_timeout)
//	GET /proxy/origins every route origin with its active health check (health.go)
type status struct {
	srv      *Server
	requests *topk.Tracker // weight 1 per request
	bytes    *topk.Tracker // weight: bytes sent to the client
	served   [numSources]prometheus.Counter
}

// Bounds of the top-URL trackers: keys monitored, lock shards, and the longest key kept.
const (
	topCapacity = 512
	topShards   = 16
	topKeyMax   = 256
	topShown    = 20
)

// source says where a response's bytes came from.
type source uint8

const (
	sourceCache  source = iota // the cache's storage, without a fetch
	sourceOrigin               // an origin or parent
	sourceLocal                // the proxy itself (errors, upstream failures, PAC, purge, refusals)
	sourceTunnel               // CONNECT tunnels and protocol upgrades
	numSources
)

var sourceNames = [numSources]string{"cache", "origin", "local", "tunnel"}

// newStatus builds the trackers, registers outpost_proxy_served_bytes_total on reg and mounts
// the endpoints on mux (either may be nil).
func newStatus(srv *Server, reg prometheus.Registerer, mux *http.ServeMux) (*status, error) {
	st := &status{srv: srv, requests: topk.New(topCapacity, topShards, topKeyMax), bytes: topk.New(topCapacity, topShards, topKeyMax)}
	served := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
		Name: "served_bytes_total", Help: "Bytes sent to clients by where the response came from (cache, origin, local, tunnel)."},
		[]string{"source"})
	if reg != nil {
		if err := reg.Register(served); err != nil {
			return nil, fmt.Errorf("proxy: registering metrics: %w", err)
		}
	}
	for i := range st.served {
		st.served[i] = served.WithLabelValues(sourceNames[i])
	}
	if mux != nil {
		mux.HandleFunc("GET /proxy/top", st.serveTop)
		mux.HandleFunc("GET /proxy/routes", st.serveRoutes)
		mux.HandleFunc("GET /proxy/origins", st.serveOrigins)
	}
	return st, nil
}

// record counts a finished request (nothing when st is nil). It runs with the connection's
// mutex held; it allocates only when a URL enters a tracker.
func (st *status) record(s *slot) {
	if st == nil {
		return
	}
	st.served[sourceOf(s)].Add(float64(s.bytesOut))
	if s.req == nil && s.head == nil { // the request could not be read: no URL to count
		return
	}
	var arr [topKeyMax]byte
	key := appendURL(arr[:0], s)
	if i := bytes.IndexByte(key, '?'); i >= 0 {
		key = key[:i] // query strings may carry credentials and tokens: never kept
	}
	st.requests.Add(key, 1)
	st.bytes.Add(key, uint64(max(s.bytesOut, 0)))
}

// sourceOf classifies where a finished request's response came from.
func sourceOf(s *slot) source {
	switch {
	case s.mode == modeConnect || s.upgrade:
		return sourceTunnel
	case s.outcome.Hit:
		return sourceCache
	case s.errKind != "" && !s.cut: // the upstream failed: the proxy wrote the error
		return sourceLocal
	case s.outcome.Fetched || s.upstream != "":
		return sourceOrigin
	}
	return sourceLocal
}

// topList is one tracker as /proxy/top shows it.
type topList struct {
	Total uint64       `json:"total"`
	Top   []topk.Entry `json:"top"`
}

func (st *status) serveTop(w http.ResponseWriter, r *http.Request) {
	n := topShown
	if v, err := strconv.Atoi(r.FormValue("n")); err == nil && v > 0 {
		n = min(v, topCapacity)
	}
	list := func(t *topk.Tracker) topList {
		top, total := t.Top(n)
		return topList{Total: total, Top: top}
	}
	writeStatusJSON(w, map[string]topList{"requests": list(st.requests), "bytes": list(st.bytes)})
}

// routeStatus and originStatus are one route and its origins as /proxy/routes and
// /proxy/origins show them.
type routeStatus struct {
	Name    string         `json:"name"`
	Host    string         `json:"host"`
	Prefix  string         `json:"path_prefix"`
	Origins []originStatus `json:"origins"`
}

type originStatus struct {
	Route     string        `json:"route,omitempty"`
	URL       string        `json:"url"`
	Up        bool          `json:"up"` // takes traffic: passes its health check, not skipped after a failure
	DownUntil time.Time     `json:"down_until,omitzero"`
	Active    int64         `json:"active"`
	Health    *healthStatus `json:"health,omitempty"`
}

// healthStatus is an origin's active health check ([proxy.routes.health]).
type healthStatus struct {
	State     string    `json:"state"` // "up" or "down"
	Path      string    `json:"path"`
	Streak    int       `json:"streak"` // checks in a row that disagree with the state (towards fall or rise)
	Fall      int       `json:"fall"`
	Rise      int       `json:"rise"`
	Passed    uint64    `json:"passed"`
	Failed    uint64    `json:"failed"`
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// originState reports o as the status pages show it.
func originState(o *origin, now time.Time) originStatus {
	ost := originStatus{URL: o.u.Redacted(), Up: o.hc.healthy(), Active: o.active.Load()}
	if until := o.downUntil.Load(); until > now.UnixNano() {
		ost.Up, ost.DownUntil = false, time.Unix(0, until).UTC()
	}
	if c := o.hc; c != nil {
		c.mu.Lock()
		h := &healthStatus{State: "up", Path: c.cfg.Path, Streak: c.streak, Fall: c.cfg.Fall, Rise: c.cfg.Rise,
			Passed: c.passed.Load(), Failed: c.failed.Load(), LastCheck: c.lastAt.UTC(), LastError: c.lastErr}
		c.mu.Unlock()
		if !c.healthy() {
			h.State = "down"
		}
		ost.Health = h
	}
	return ost
}

func (st *status) serveRoutes(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	out := []routeStatus{}
	for _, rt := range st.srv.live.Load().routes.routes {
		rs := routeStatus{Name: rt.pool.name, Host: rt.host, Prefix: rt.prefix, Origins: []originStatus{}}
		for _, o := range rt.pool.origins {
			rs.Origins = append(rs.Origins, originState(o, now))
		}
		out = append(out, rs)
	}
	writeStatusJSON(w, out)
}

// serveOrigins is GET /proxy/origins: every origin of every route, with its health.
func (st *status) serveOrigins(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	out := []originStatus{}
	for _, rt := range st.srv.live.Load().routes.routes {
		for _, o := range rt.pool.origins {
			ost := originState(o, now)
			ost.Route = rt.pool.name
			out = append(out, ost)
		}
	}
	writeStatusJSON(w, out)
}

// writeStatusJSON writes v as an indented JSON response.
func writeStatusJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
