package web

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the origin's Prometheus collectors, with every label combination resolved up
// front so the request path does no label lookups.
type metrics struct {
	requests [numRoutes][6]prometheus.Counter // by route and status class (index 1-5; 0 unused)
	bytes    [numRoutes]prometheus.Counter
	duration [numRoutes]prometheus.Observer
}

// newMetrics registers the collectors on reg (nil means a private registry).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	req := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outpost", Subsystem: "web", Name: "requests_total",
		Help: "Requests answered by the web origin, by route and status class.",
	}, []string{"route", "code"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outpost", Subsystem: "web", Name: "response_bytes_total",
		Help: "Response body bytes sent by the web origin, by route.",
	}, []string{"route"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "outpost", Subsystem: "web", Name: "request_duration_seconds",
		Help:    "Time to answer a request, by route.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"route"})
	for _, c := range []prometheus.Collector{req, bytes, dur} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &metrics{}
	classes := [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}
	for r := range numRoutes {
		for c := 1; c < 6; c++ {
			m.requests[r][c] = req.WithLabelValues(routeNames[r], classes[c])
		}
		m.bytes[r] = bytes.WithLabelValues(routeNames[r])
		m.duration[r] = dur.WithLabelValues(routeNames[r])
	}
	return m, nil
}

// observe records one answered request.
func (m *metrics) observe(r route, status int, n int64, d time.Duration) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 5
	}
	m.requests[r][class].Inc()
	m.bytes[r].Add(float64(n))
	m.duration[r].Observe(d.Seconds())
}
