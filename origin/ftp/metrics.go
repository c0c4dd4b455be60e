package ftp

import "github.com/prometheus/client_golang/prometheus"

// metrics are the FTP server's Prometheus collectors.
type metrics struct {
	connections prometheus.Counter
	logins      *prometheus.CounterVec
	refused     *prometheus.CounterVec
}

// newMetrics registers the collectors on reg (nil means a private registry); the byte and
// connection gauges read live values.
func newMetrics(reg prometheus.Registerer, st *fsStats, active func() float64) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "ftp", Name: "connections_total",
			Help: "Control connections admitted.",
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "ftp", Name: "logins_total",
			Help: "Login attempts by result (success, failure, locked_out).",
		}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "ftp", Name: "refused_total",
			Help: "Connections or commands refused by a limit (max_connections, max_connections_per_ip, bounce).",
		}, []string{"reason"}),
	}
	cs := []prometheus.Collector{
		m.connections, m.logins, m.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "outpost", Subsystem: "ftp", Name: "connections_active",
			Help: "Open control connections.",
		}, active),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "ftp", Name: "sent_bytes_total",
			Help: "File bytes sent to clients (RETR).",
		}, func() float64 { return float64(st.sent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "ftp", Name: "received_bytes_total",
			Help: "File bytes stored by clients (STOR, APPE).",
		}, func() float64 { return float64(st.received.Load()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
