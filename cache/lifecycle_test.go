package cache

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// TestMetricsRegistered checks the collectors on the component's registry.
func TestMetricsRegistered(t *testing.T) {
	h := newHarness(t, reply(200, "x", "Cache-Control: max-age=60"), nil)
	reg := prometheus.NewRegistry()
	if err := h.c.registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	h.do("GET", "/m")
	h.do("GET", "/m")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			got[mf.GetName()] = m.GetCounter().GetValue()
		} else {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	if got["outpost_cache_hits_total"] != 1 || got["outpost_cache_misses_total"] != 1 || got["outpost_cache_memory_bytes"] <= 0 {
		t.Fatalf("metrics: %v", got)
	}
}

// TestCloseLeavesNoGoroutines: after Close, the memory tier's and the disk writer's goroutines
// are gone.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := config.Default().Cache
	cfg.MemorySize = 1 << 20
	c, err := New(cfg, component.Test(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // goroutines exit asynchronously
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		buf = buf[:runtime.Stack(buf, true)]
		if strings.Contains(string(buf), "outpost/cache") || strings.Contains(string(buf), "ristretto") {
			t.Fatalf("%d goroutines left (had %d):\n%s", n, before, buf)
		}
	}
}
