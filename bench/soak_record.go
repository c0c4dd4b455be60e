package bench

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// soakKind is one kind of soak traffic.
type soakKind string

// The soak's traffic kinds, in report order.
const (
	kindHit      soakKind = "hit"       // GET of a cached object through the reverse route
	kindMiss     soakKind = "miss"      // GET of a new object (stored, then evicted)
	kindPipeline soakKind = "pipeline"  // a burst of pipelined GETs on one connection
	kindConnect  soakKind = "connect"   // a CONNECT tunnel to the TLS echo target
	kindFTP      soakKind = "ftp"       // an ftp:// fetch through the forward proxy
	kindDNS      soakKind = "dns"       // a steered A query with EDNS Client Subnet
	kindSMTP     soakKind = "smtp"      // one message sent (local or relayed)
	kindPOP3     soakKind = "pop3"      // one POP3 session reading and deleting
	kindIMAP     soakKind = "imap"      // one IMAP session reading and expunging
	kindPurge    soakKind = "purge"     // a PURGE of a hit object
	kindFaulty   soakKind = "fault-rte" // a GET on the route to the fault origin
	kindCheck    soakKind = "check"     // the final checks and the suite's own state
)

// soakKinds lists the kinds in report order.
var soakKinds = []soakKind{kindHit, kindMiss, kindPipeline, kindConnect, kindFTP, kindDNS, kindSMTP, kindPOP3, kindIMAP, kindPurge, kindFaulty, kindCheck}

// Error classes that faults excuse. Other classes name an HTTP status ("502"), a protocol
// reply or a client-side failure.
const (
	classCut      = "cut"       // a response whose body ended early (the head was sent)
	classReset    = "reset"     // the connection was reset or closed before a response
	classTimeout  = "timeout"   // the client gave up waiting
	classDownEdge = "down-edge" // DNS answered with an edge the soak had stopped
	classCorrupt  = "corrupt"   // a body that differs from the origin's bytes
)

// faultWindow is one injected fault: from Start until End (plus its grace, for requests
// in flight and for the suite to notice recovery), it excuses the listed error classes of
// the listed traffic kinds.
type faultWindow struct {
	Name       string
	Start      time.Time
	End        time.Time
	Grace      time.Duration
	Excuses    map[soakKind][]string
	ExpectedN  int // errors this window excused
	endPending bool
}

// covers reports whether the window excuses class for kind over [from, to].
func (w *faultWindow) covers(kind soakKind, class string, from, to time.Time) bool {
	if !slices.Contains(w.Excuses[kind], class) {
		return false
	}
	end := w.End
	if w.endPending {
		end = time.Now().Add(time.Hour)
	}
	return !to.Before(w.Start) && !from.After(end.Add(w.Grace))
}

// soakError is one failed operation, kept as an example in the report.
type soakError struct {
	Time   time.Duration `json:"t_ns"` // since the run started
	Kind   soakKind      `json:"kind"`
	Class  string        `json:"class"`
	Detail string        `json:"detail"`
}

// maxErrorSamples bounds the unexpected errors kept verbatim.
const maxErrorSamples = 50

// errKey counts errors by kind and class.
type errKey struct {
	Kind  soakKind
	Class string
}

// soakRecorder collects every operation's outcome: latencies per kind and time bucket, and
// errors classified against the fault windows. It is safe for concurrent use.
type soakRecorder struct {
	start  time.Time
	bucket time.Duration

	mu         sync.Mutex
	windows    []*faultWindow
	ok         map[soakKind]int64
	expected   map[errKey]int64
	unexpected map[errKey]int64
	samples    []soakError
	total      map[soakKind]*hdrhistogram.Histogram
	buckets    map[soakKind][]*hdrhistogram.Histogram
}

// newRecorder starts a recorder at start with latency buckets of the given width.
func newRecorder(start time.Time, bucket time.Duration) *soakRecorder {
	return &soakRecorder{start: start, bucket: bucket,
		ok: map[soakKind]int64{}, expected: map[errKey]int64{}, unexpected: map[errKey]int64{},
		total: map[soakKind]*hdrhistogram.Histogram{}, buckets: map[soakKind][]*hdrhistogram.Histogram{}}
}

// beginFault opens a fault window now; the returned func closes it.
func (r *soakRecorder) beginFault(name string, grace time.Duration, excuses map[soakKind][]string) func() {
	w := &faultWindow{Name: name, Start: time.Now(), Grace: grace, Excuses: excuses, endPending: true}
	r.mu.Lock()
	r.windows = append(r.windows, w)
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		w.End, w.endPending = time.Now(), false
		r.mu.Unlock()
	}
}

// success records a successful operation of kind that started at from.
func (r *soakRecorder) success(kind soakKind, from time.Time) {
	now := time.Now()
	us := max(now.Sub(from).Microseconds(), 1)
	i := int(now.Sub(r.start) / r.bucket)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ok[kind]++
	if r.total[kind] == nil {
		r.total[kind] = hdrhistogram.New(1, 100_000_000, 3)
	}
	r.total[kind].RecordValue(min(us, 100_000_000))
	bs := r.buckets[kind]
	for len(bs) <= i {
		bs = append(bs, nil)
	}
	if bs[i] == nil {
		bs[i] = hdrhistogram.New(1, 100_000_000, 2)
	}
	bs[i].RecordValue(min(us, 100_000_000))
	r.buckets[kind] = bs
}

// failure records a failed operation of kind over [from, now]: expected when a fault window
// excuses its class, unexpected otherwise. It returns whether it was expected.
func (r *soakRecorder) failure(kind soakKind, class, detail string, from time.Time) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	k := errKey{kind, class}
	for _, w := range r.windows {
		if w.covers(kind, class, from, now) {
			r.expected[k]++
			w.ExpectedN++
			return true
		}
	}
	r.unexpected[k]++
	if len(r.samples) < maxErrorSamples {
		r.samples = append(r.samples, soakError{Time: now.Sub(r.start), Kind: kind, Class: class, Detail: detail})
	}
	return false
}

// unexpectedTotal is the number of unexpected errors so far.
func (r *soakRecorder) unexpectedTotal() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, v := range r.unexpected {
		n += v
	}
	return n
}

// ErrorCount is the number of errors of one kind and class.
type ErrorCount struct {
	Kind  soakKind `json:"kind"`
	Class string   `json:"class"`
	Count int64    `json:"count"`
}

// KindStats summarises one traffic kind over the run.
type KindStats struct {
	Kind       soakKind `json:"kind"`
	OK         int64    `json:"ok"`
	Expected   int64    `json:"expected_errors"`
	Unexpected int64    `json:"unexpected_errors"`
	Latency    Latency  `json:"latency"`
}

// LatencyPoint is the p50 and p99 of one kind in one time bucket.
type LatencyPoint struct {
	T   time.Duration `json:"t_ns"` // bucket start since the run started
	N   int64         `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
}

// errorCounts returns m sorted by kind order, then class.
func errorCounts(m map[errKey]int64) []ErrorCount {
	out := make([]ErrorCount, 0, len(m))
	for k, v := range m {
		out = append(out, ErrorCount{k.Kind, k.Class, v})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := slices.Index(soakKinds, out[i].Kind), slices.Index(soakKinds, out[j].Kind)
		if a != b {
			return a < b
		}
		return out[i].Class < out[j].Class
	})
	return out
}

// kindStats summarises every kind that saw traffic.
func (r *soakRecorder) kindStats() []KindStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []KindStats
	for _, k := range soakKinds {
		s := KindStats{Kind: k, OK: r.ok[k]}
		for ek, v := range r.expected {
			if ek.Kind == k {
				s.Expected += v
			}
		}
		for ek, v := range r.unexpected {
			if ek.Kind == k {
				s.Unexpected += v
			}
		}
		if h := r.total[k]; h != nil {
			s.Latency = latencyHist{h}.summary()
		}
		if s.OK+s.Expected+s.Unexpected > 0 {
			out = append(out, s)
		}
	}
	return out
}

// latencySeries returns each kind's p50/p99 per time bucket.
func (r *soakRecorder) latencySeries() map[soakKind][]LatencyPoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[soakKind][]LatencyPoint{}
	for k, bs := range r.buckets {
		for i, h := range bs {
			if h == nil {
				continue
			}
			out[k] = append(out[k], LatencyPoint{T: time.Duration(i) * r.bucket, N: h.TotalCount(),
				P50: time.Duration(h.ValueAtQuantile(50)) * time.Microsecond,
				P99: time.Duration(h.ValueAtQuantile(99)) * time.Microsecond})
		}
	}
	return out
}
