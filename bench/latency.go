package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// latencyHist records latencies in microseconds from 1 µs to 100 s with 3 significant digits.
type latencyHist struct{ h *hdrhistogram.Histogram }

func newLatencyHist() latencyHist {
	return latencyHist{hdrhistogram.New(1, 100_000_000, 3)}
}

// record adds one latency; values beyond the range are clamped to it.
func (l latencyHist) record(d time.Duration) {
	us := max(d.Microseconds(), 1)
	if us > l.h.HighestTrackableValue() {
		us = l.h.HighestTrackableValue()
	}
	l.h.RecordValue(us)
}

func (l latencyHist) merge(o latencyHist) { l.h.Merge(o.h) }

// Latency summarises a latency distribution.
type Latency struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	Max   time.Duration `json:"max_ns"`
}

// summary returns the percentiles of the recorded latencies.
func (l latencyHist) summary() Latency {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	h := l.h
	return Latency{
		Count: h.TotalCount(),
		Mean:  time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
	}
}
