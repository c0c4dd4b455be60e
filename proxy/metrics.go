package proxy

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus collectors.
type metrics struct {
	requests        *prometheus.CounterVec // by method, status, mode
	requestSeconds  prometheus.Histogram
	clientConns     prometheus.Gauge
	pipelineDepth   prometheus.Histogram // requests in flight on a connection when one is read
	upstreamSeconds prometheus.Histogram
	upstreamErrors  *prometheus.CounterVec // by kind
	bytesIn         prometheus.Counter
	bytesOut        prometheus.Counter
	clientWrites    prometheus.Counter     // socket writes to clients (fewer than responses when pipelined)
	reloads         *prometheus.CounterVec // configuration reloads by result (live.go)
	// TLS and HTTP/2 (tls.go, h2.go).
	tlsHandshakeErrors                       prometheus.Counter
	clientProtocols                          *prometheus.CounterVec // connections by protocol (http/1.1, h2, tls-http/1.1)
	h2Errors                                 *prometheus.CounterVec // HTTP/2 protocol errors by x/net/http2's type
	connsHTTP, connsHTTPS, connsH2, connsH2C prometheus.Counter     // clientProtocols' children

	mu       sync.RWMutex
	counters map[uint32]prometheus.Counter // requests children, so the hot path does not allocate
}

// newMetrics registers the collectors on reg (nil: a private registry).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "requests_total", Help: "Requests answered, by method, status and mode (forward, reverse, connect, local)."},
			[]string{"method", "status", "mode"}),
		requestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "request_duration_seconds", Help: "Time from reading a request to completing its response.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		clientConns: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "client_connections", Help: "Open client connections."}),
		pipelineDepth: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "pipeline_depth", Help: "Requests in flight on a connection, counting the one just read.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64}}),
		upstreamSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "upstream_duration_seconds", Help: "Time to an upstream response header (or tunnel connect).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "upstream_errors_total", Help: "Upstream failures by kind (dns, connect_refused, unreachable, timeout, reset, bad_response, upstream; cut_<kind>: a response cut mid-body)."},
			[]string{"kind"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "client_bytes_received_total", Help: "Bytes received from clients (request heads, and tunnel payload)."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "client_bytes_sent_total", Help: "Bytes sent to clients."}),
		clientWrites: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "client_writes_total", Help: "Socket writes to clients; below the response count when pipelined responses are batched."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy", Name: "reloads_total",
			Help: "Configuration reloads of the proxy by result (ok, rejected)."}, []string{"result"}),
		tlsHandshakeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "tls_handshake_errors_total", Help: "TLS handshakes with clients that failed or timed out."}),
		clientProtocols: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "client_connections_total", Help: "Client connections accepted, by protocol (http, https, h2, h2c)."},
			[]string{"protocol"}),
		h2Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
			Name: "http2_errors_total", Help: "HTTP/2 errors detected on client connections, by type, as x/net/http2 names them (conn_ENHANCE_YOUR_CALM_too_many_early_resets: a rapid reset)."},
			[]string{"type"}),
		counters: map[uint32]prometheus.Counter{},
	}
	m.connsHTTP = m.clientProtocols.WithLabelValues("http")
	m.connsHTTPS = m.clientProtocols.WithLabelValues("https")
	m.connsH2 = m.clientProtocols.WithLabelValues("h2")
	m.connsH2C = m.clientProtocols.WithLabelValues("h2c")
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("rejected")
	for _, c := range []prometheus.Collector{m.requests, m.requestSeconds, m.clientConns, m.pipelineDepth,
		m.upstreamSeconds, m.upstreamErrors, m.bytesIn, m.bytesOut, m.clientWrites,
		m.tlsHandshakeErrors, m.clientProtocols, m.h2Errors, m.reloads} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy: registering metrics: %w", err)
		}
	}
	return m, nil
}

// knownMethods are the method label values; others count as OTHER (bounded cardinality).
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PURGE"}

// methodIndex returns the label index of a method (len(knownMethods) for OTHER).
func methodIndex(m string) int {
	for i, k := range knownMethods {
		if k == m {
			return i
		}
	}
	return len(knownMethods)
}

// observe counts a finished request.
func (m *metrics) observe(s *slot, dur time.Duration) {
	mi := len(knownMethods) + 1
	if m := s.method(); m != "" {
		mi = methodIndex(m)
	}
	key := uint32(mi)<<16 | uint32(s.status)<<4 | uint32(s.mode)
	c := s.c // its last counter is kept, guarded by c.mu like every call here
	if c.mCounter == nil || c.mKey != key {
		c.mKey, c.mCounter = key, m.requestCounter(s, key, mi)
	}
	c.mCounter.Inc()
	m.requestSeconds.Observe(dur.Seconds())
	m.bytesOut.Add(float64(s.bytesOut))
	if s.head != nil || s.h2 != nil {
		m.bytesIn.Add(float64(s.reqBytes))
	}
}

// requestCounter returns the requests_total child for key (method index mi, status, mode),
// resolving its labels once per server.
func (m *metrics) requestCounter(s *slot, key uint32, mi int) prometheus.Counter {
	method := "-"
	m.mu.RLock()
	c, ok := m.counters[key]
	m.mu.RUnlock()
	if !ok {
		switch {
		case mi < len(knownMethods):
			method = knownMethods[mi]
		case mi == len(knownMethods):
			method = "OTHER"
		}
		c = m.requests.WithLabelValues(method, strconv.Itoa(s.status), s.mode.String())
		m.mu.Lock()
		m.counters[key] = c
		m.mu.Unlock()
	}
	return c
}
