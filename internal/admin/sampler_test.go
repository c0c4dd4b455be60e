package admin

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// TestSamplerRates drives a counter, a gauge and a labelled counter through fixed sample times
// and checks every column: rates from counter increases, resets counted from zero, levels as
// they are, label splits, and no value before a counter's second reading.
func TestSamplerRates(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounter(prometheus.CounterOpts{Name: "req_total", Help: "h"})
	queue := prometheus.NewGauge(prometheus.GaugeOpts{Name: "queue", Help: "h"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bytes_total", Help: "h"}, []string{"source"})
	reg.MustRegister(reqs, queue, bytes)
	specs := []seriesSpec{{"req", "req_total", rate, ""}, {"queue", "queue", level, ""}, {"bytes", "bytes_total", rate, "source"}, {"absent", "nothing_total", rate, ""}}
	s := newSampler(reg, specs, time.Second, time.Minute)
	t0 := time.Unix(1000, 0)
	steps := []struct {
		name string
		at   time.Duration // after t0
		do   func()
		want map[string]float64 // columns with a value; others must be absent
	}{
		{"first reading has levels only", 0, func() { reqs.Add(5); queue.Set(3); bytes.WithLabelValues("cache").Add(100) },
			map[string]float64{"queue": 3}},
		{"rate over one second", time.Second, func() { reqs.Add(10); queue.Set(1); bytes.WithLabelValues("cache").Add(300) },
			map[string]float64{"req": 10, "queue": 1, "bytes.cache": 300}},
		{"rate over two seconds, new label value", 3 * time.Second, func() { reqs.Add(4); bytes.WithLabelValues("origin").Add(50) },
			map[string]float64{"req": 2, "queue": 1, "bytes.cache": 0}},
		{"new label value rates from its second reading", 4 * time.Second, func() { bytes.WithLabelValues("origin").Add(50) },
			map[string]float64{"req": 0, "queue": 1, "bytes.cache": 0, "bytes.origin": 50}},
	}
	for i, st := range steps {
		st.do()
		s.sampleAt(t0.Add(st.at))
		rows, seq, _ := s.since(uint64(i))
		if len(rows) != 1 || seq != uint64(i+1) || rows[0].Seq != seq {
			t.Fatalf("%s: since(%d) = %d rows, seq %d", st.name, i, len(rows), seq)
		}
		if got := rows[0].Vals; fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Errorf("%s: values %v, want %v", st.name, got, st.want)
		}
		if rows[0].Unix != t0.Add(st.at).UnixMilli() {
			t.Errorf("%s: time %d", st.name, rows[0].Unix)
		}
	}
}

// TestSamplerCounterReset: a counter that goes down (its component restarted with a fresh
// registry entry) counts from zero, never as a negative rate.
func TestSamplerCounterReset(t *testing.T) {
	v := 100.0
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "c_total", Help: "h"}, func() float64 { return v }))
	s := newSampler(reg, []seriesSpec{{"c", "c_total", rate, ""}}, time.Second, time.Minute)
	t0 := time.Unix(0, 0)
	s.sampleAt(t0)
	v = 7
	s.sampleAt(t0.Add(time.Second))
	rows, _, _ := s.since(1)
	if got := rows[0].Vals["c"]; got != 7 {
		t.Errorf("rate after reset = %v, want 7", got)
	}
}

// TestSamplerRingBound: the ring holds window/interval samples however long it runs, since()
// returns only those held, and the columns stop growing at maxColumns.
func TestSamplerRingBound(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"k"})
	reg.MustRegister(c)
	s := newSampler(reg, []seriesSpec{{"c", "c_total", rate, "k"}}, time.Second, 10*time.Second)
	t0 := time.Unix(0, 0)
	for i := range 300 {
		c.WithLabelValues(fmt.Sprint(i)).Inc() // one more label value each time: past maxColumns
	}
	for i := range 100 {
		s.sampleAt(t0.Add(time.Duration(i) * time.Second))
	}
	rows, seq, _ := s.since(0)
	if len(rows) != 10 || seq != 100 || rows[0].Seq != 91 || rows[9].Seq != 100 {
		t.Fatalf("held %d rows, seq %d, first %d", len(rows), seq, rows[0].Seq)
	}
	if len(s.times) != 10 || len(s.columns) != maxColumns || len(s.values[0]) != 10 || s.dropped == 0 {
		t.Errorf("ring %d, columns %d (max %d), column length %d, dropped %d", len(s.times), len(s.columns), maxColumns, len(s.values[0]), s.dropped)
	}
	if rows, _, _ := s.since(95); len(rows) != 5 || rows[0].Seq != 96 {
		t.Errorf("since(95) = %d rows", len(rows))
	}
	if rows, _, _ := s.since(100); len(rows) != 0 {
		t.Errorf("since(newest) = %d rows", len(rows))
	}
	for _, r := range rows {
		for k, v := range r.Vals {
			if math.IsNaN(v) {
				t.Errorf("NaN streamed for %s", k)
			}
		}
	}
}

// TestSamplerWakes: the channel from since is closed by the next sample.
func TestSamplerWakes(t *testing.T) {
	s := newSampler(prometheus.NewRegistry(), nil, time.Second, time.Minute)
	_, _, wake := s.since(0)
	select {
	case <-wake:
		t.Fatal("woken before a sample")
	default:
	}
	s.sampleAt(time.Now())
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("not woken by a sample")
	}
}

// BenchmarkSampleAt is one sample of the components' registry, shaped like the demo suite's:
// every family the dashboard reads, labelled as in the demo. BenchmarkSampleAtWithRuntime adds
// the Go and process collectors, which outpost keeps out of the dashboard's registry: reading
// /proc costs more than everything else together.
func BenchmarkSampleAt(b *testing.B)            { benchSample(b, false) }
func BenchmarkSampleAtWithRuntime(b *testing.B) { benchSample(b, true) }

func benchSample(b *testing.B, runtime bool) {
	reg := prometheus.NewRegistry()
	if runtime {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for _, sp := range dashboardSeries {
		if sp.by == "" {
			reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: sp.metric, Help: "h"}))
			continue
		}
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: sp.metric, Help: "h"}, []string{sp.by})
		for i := range 5 {
			v.WithLabelValues(fmt.Sprint(i)).Inc()
		}
		reg.MustRegister(v)
	}
	s := newSampler(reg, dashboardSeries, time.Second, 10*time.Minute)
	t0 := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.sampleAt(t0.Add(time.Duration(i) * time.Second))
	}
}
