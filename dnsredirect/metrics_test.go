package dnsredirect

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsTwiceOnOneRegistry: a second Server on the same registry shares the series.
func TestMetricsTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	a.ecs.Inc()
	b.ecs.Inc()
	a.rrlDrop.Inc()
	b.rrlDrop.Inc()
	if v := counterValue(t, reg, "outpost_dns_rrl_limited_total", "drop"); v != 2 {
		t.Errorf("drops = %v, want 2 (shared series)", v)
	}
}
