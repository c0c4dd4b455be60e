package admin

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The dashboard's sampler reads the Prometheus registry every interval and keeps the last
// window of samples in a ring: per-second rates for counters (the increase since the previous
// sample over the time between them, a counter reset counting from zero as Prometheus's rate()
// does) and levels for gauges. Memory is fixed: the ring has window/interval slots per
// column, and there are at most maxColumns columns.

// kind says how a metric becomes a column: a rate of a counter or the level of a gauge.
type kind uint8

const (
	rate kind = iota
	level
)

// seriesSpec maps one metric family to columns: summed over all its series, or one column per
// value of the label by (named id + "." + value).
type seriesSpec struct {
	id     string
	metric string
	kind   kind
	by     string
}

// dashboardSeries are the columns the dashboard charts, from the components' metrics. A
// component that is not running has no metrics: its columns are empty (null).
var dashboardSeries = []seriesSpec{
	{"proxy.requests", "outpost_proxy_requests_total", rate, ""},
	{"proxy.connections", "outpost_proxy_client_connections", level, ""},
	{"proxy.upstream_errors", "outpost_proxy_upstream_errors_total", rate, ""},
	{"proxy.parent_up", "outpost_proxy_parent_up", level, "parent"},
	{"bytes", "outpost_proxy_served_bytes_total", rate, "source"},
	{"cache.memory", "outpost_cache_memory_hits_total", rate, ""},
	{"cache.disk", "outpost_cache_disk_hits_total", rate, ""},
	{"cache.miss", "outpost_cache_misses_total", rate, ""},
	{"cache.memory_bytes", "outpost_cache_memory_bytes", level, ""},
	{"cache.disk_bytes", "outpost_cache_disk_bytes", level, ""},
	{"dns.queries", "outpost_dns_queries_total", rate, ""},
	{"dns.edge", "outpost_dns_edge_answers_total", rate, "edge"},
	{"dns.step", "outpost_dns_steering_decisions_total", rate, "step"},
	{"mail.queue", "outpost_mail_queue_messages", level, ""},
	{"mail.accepted", "outpost_smtp_messages_accepted_total", rate, ""},
	{"mail.deliveries", "outpost_mail_queue_deliveries_total", rate, "outcome"},
}

// maxColumns bounds the columns (label values come from configuration, but a bound is a bound).
const maxColumns = 128

// sample is one row as it is streamed: the time and the columns that have a value.
type sample struct {
	Seq  uint64             `json:"seq"`
	Unix int64              `json:"t"` // milliseconds
	Vals map[string]float64 `json:"v"`
}

// sampler gathers metrics into the ring and wakes the streams after each sample.
type sampler struct {
	gatherer prometheus.Gatherer
	specs    []seriesSpec
	interval time.Duration
	size     int // slots in the ring

	mu      sync.Mutex
	seq     uint64   // samples taken; the newest is seq, the oldest held max(1, seq-size+1)
	times   []int64  // ring of sample times (unix milliseconds)
	columns []string // column names in order of first appearance
	index   map[string]int
	values  [][]float64 // per column, a ring aligned with times; NaN where there was no value
	prev    map[string]counterReading
	dropped int           // columns refused past maxColumns
	wake    chan struct{} // closed and replaced after each sample
}

// counterReading is a counter's last raw value and when it was read.
type counterReading struct {
	v    float64
	unix int64
}

// newSampler returns a sampler of g every interval keeping window worth of samples.
func newSampler(g prometheus.Gatherer, specs []seriesSpec, interval, window time.Duration) *sampler {
	size := max(int(window/interval), 2)
	return &sampler{gatherer: g, specs: specs, interval: interval, size: size,
		times: make([]int64, size), index: map[string]int{}, prev: map[string]counterReading{},
		wake: make(chan struct{})}
}

// run samples every interval until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.sampleAt(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sampleAt(now)
		}
	}
}

// sampleAt gathers the registry and appends one row taken at now.
func (s *sampler) sampleAt(now time.Time) {
	fams, _ := s.gatherer.Gather() // a failing collector leaves its columns empty, the rest count
	raw := readSpecs(fams, s.specs)
	unix := now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := int(s.seq % uint64(s.size))
	s.seq++
	s.times[slot] = unix
	for _, col := range s.values {
		col[slot] = math.NaN()
	}
	for name, r := range raw {
		i, ok := s.column(name)
		if !ok {
			continue
		}
		s.values[i][slot] = s.valueOf(name, r, unix)
	}
	close(s.wake)
	s.wake = make(chan struct{})
}

// valueOf turns a reading into the column's value: a gauge as it is, a counter as its rate
// since the previous reading (NaN for the first).
func (s *sampler) valueOf(name string, r reading, unix int64) float64 {
	if r.kind == level {
		return r.v
	}
	p, seen := s.prev[name]
	s.prev[name] = counterReading{r.v, unix}
	if !seen || unix <= p.unix {
		return math.NaN()
	}
	inc := r.v - p.v
	if inc < 0 { // the counter was reset (a component restarted): it counted from zero
		inc = r.v
	}
	return inc / (float64(unix-p.unix) / 1000)
}

// column returns the index of a column, adding it (empty in the past) while there is room.
func (s *sampler) column(name string) (int, bool) {
	if i, ok := s.index[name]; ok {
		return i, true
	}
	if len(s.columns) >= maxColumns {
		s.dropped++
		return 0, false
	}
	col := make([]float64, s.size)
	for i := range col {
		col[i] = math.NaN()
	}
	s.columns = append(s.columns, name)
	s.values = append(s.values, col)
	s.index[name] = len(s.columns) - 1
	return len(s.columns) - 1, true
}

// reading is one column's raw value in one gather.
type reading struct {
	kind kind
	v    float64
}

// readSpecs sums the gathered families into raw column readings.
func readSpecs(fams []*dto.MetricFamily, specs []seriesSpec) map[string]reading {
	byName := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	out := map[string]reading{}
	for _, sp := range specs {
		f := byName[sp.metric]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			name := sp.id
			if sp.by != "" {
				name += "." + labelValue(m, sp.by)
			}
			r := out[name]
			r.kind = sp.kind
			r.v += metricValue(m)
			out[name] = r
		}
	}
	return out
}

// labelValue is m's value of label name ("" when it has none).
func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// metricValue is a counter's or gauge's value (an untyped value counts as either).
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// since returns the samples after seq (all held ones when seq is older than the ring), the
// newest seq, and the channel closed at the next sample.
func (s *sampler) since(seq uint64) ([]sample, uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldest := uint64(1)
	if s.seq > uint64(s.size) {
		oldest = s.seq - uint64(s.size) + 1
	}
	var out []sample
	for n := max(seq+1, oldest); n <= s.seq; n++ {
		slot := int((n - 1) % uint64(s.size))
		row := sample{Seq: n, Unix: s.times[slot], Vals: map[string]float64{}}
		for i, name := range s.columns {
			if v := s.values[i][slot]; !math.IsNaN(v) && !math.IsInf(v, 0) {
				row.Vals[name] = v
			}
		}
		out = append(out, row)
	}
	return out, s.seq, s.wake
}
