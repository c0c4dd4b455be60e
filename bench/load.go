package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadOptions configure `outpost bench http`.
type LoadOptions struct {
	// URLs are requested in turn by every connection, unless ZipfK is set.
	URLs []string
	// ZipfK > 0 generates a Zipf(ZipfAlpha) workload over K URLs from the first URL: its
	// "{i}" is replaced by the object's rank (1 = most popular), or "obj=i" is appended to its
	// query when it has no "{i}".
	ZipfK     int
	ZipfAlpha float64
	// Proxy sends every request in absolute form to this forward proxy (http://host:port).
	Proxy string
	// Connections is the number of concurrent connections (-c).
	Connections int
	// Duration bounds the run (-d); Requests bounds it by count (-n). At least one is set.
	Duration time.Duration
	Requests int64
	// Pipeline is the number of requests written back to back before reading the responses.
	Pipeline int
	// KeepAlive keeps connections open between requests; false opens one per request.
	KeepAlive bool
	// HTTP10 sends HTTP/1.0 requests.
	HTTP10 bool
	// Rate > 0 runs an open loop at that many requests/s in total, measuring each latency from
	// the request's intended send time (coordinated-omission correction); 0 is a closed loop.
	Rate float64
	// Timeout bounds one request (connect, write, read).
	Timeout time.Duration
	// Seed makes the Zipf sequence reproducible.
	Seed uint64
	// Progress, when set, is called about once a second with the requests so far.
	Progress func(done int64, elapsed time.Duration)
	// H2 speaks HTTP/2: over TLS (ALPN h2) to https:// URLs, with prior knowledge (h2c) to
	// http:// ones. Each of the Connections carries Streams concurrent streams.
	H2      bool
	Streams int
	// TLS says how https:// servers are trusted and which key exchanges are offered. A new
	// connection never resumes a session: each makes a full handshake.
	TLS TLSOptions

	// rankURL, when set with ZipfK, names the URL of each rank (the cache curve's objects of
	// varied sizes) instead of the template in URLs[0].
	rankURL func(rank int) string
}

// Validate checks the options, returning a *UsageError naming the flag.
func (o *LoadOptions) Validate() error {
	switch {
	case len(o.URLs) == 0:
		return usagef("give at least one URL")
	case o.Connections <= 0 || o.Connections > 20000:
		return usagef("-c must be 1..20000, got %d", o.Connections)
	case o.Duration < 0:
		return usagef("-d must not be negative")
	case o.Requests < 0:
		return usagef("-n must not be negative")
	case o.Duration == 0 && o.Requests == 0:
		return usagef("give -d duration or -n requests")
	case o.Pipeline <= 0 || o.Pipeline > 1024:
		return usagef("--pipeline must be 1..1024, got %d", o.Pipeline)
	case !o.KeepAlive && o.Pipeline > 1:
		return usagef("--pipeline needs keep-alive connections")
	case o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0):
		return usagef("--rate must be a positive number")
	case o.Rate > 0 && o.Pipeline > 1:
		return usagef("--rate (open loop) sends one request at a time per connection: drop --pipeline")
	case o.ZipfK < 0 || o.ZipfK > 10_000_000:
		return usagef("--zipf-k must be 0..10000000")
	case o.ZipfAlpha < 0 || math.IsNaN(o.ZipfAlpha):
		return usagef("--zipf-alpha must not be negative")
	case o.Timeout <= 0:
		return usagef("--timeout must be positive")
	case o.Streams < 0 || o.Streams > 1000:
		return usagef("--streams must be 1..1000, got %d", o.Streams)
	case o.Streams > 1 && !o.H2:
		return usagef("--streams needs --h2 (HTTP/1.1 multiplexes nothing: use --pipeline)")
	case o.H2 && o.Pipeline > 1:
		return usagef("--h2 multiplexes streams: use --streams instead of --pipeline")
	case o.H2 && !o.KeepAlive:
		return usagef("--h2 needs keep-alive connections")
	case o.H2 && o.HTTP10:
		return usagef("--h2 and --http1.0 exclude each other")
	case o.H2 && o.Proxy != "":
		return usagef("--h2 does not go through a forward --proxy")
	}
	if err := o.TLS.Validate(); err != nil {
		return err
	}
	for _, u := range o.URLs {
		if _, err := parseTarget(strings.ReplaceAll(u, "{i}", "1"), o.Proxy); err != nil {
			return &UsageError{Err: err}
		}
	}
	return nil
}

// LoadResult is what one load run measured.
type LoadResult struct {
	Elapsed        time.Duration    `json:"elapsed_ns"`
	Requests       int64            `json:"requests"`
	Bytes          int64            `json:"bytes"`
	RequestsPerSec float64          `json:"requests_per_sec"`
	BytesPerSec    float64          `json:"bytes_per_sec"`
	Status         map[string]int64 `json:"status"`
	Errors         map[string]int64 `json:"errors"`
	CacheHits      int64            `json:"cache_hits"`
	CacheMisses    int64            `json:"cache_misses"`
	HitRatio       float64          `json:"hit_ratio"` // hits / (hits + misses), from Cache-Status
	ByteHitRatio   float64          `json:"byte_hit_ratio"`
	HitBytes       int64            `json:"hit_bytes"`  // body bytes of cache hits
	MissBytes      int64            `json:"miss_bytes"` // body bytes of cache misses (origin traffic)
	Latency        Latency          `json:"latency"`
	OpenLoop       bool             `json:"open_loop"`
	Connections    int              `json:"connections"`
	// Streams is the concurrent streams per connection (HTTP/2); Protocol "HTTP/1.1" or
	// "HTTP/2" (with "over TLS").
	Streams  int    `json:"streams,omitempty"`
	Protocol string `json:"protocol"`
	// TLSVersion is the version the last TLS handshake negotiated; Handshakes counts the
	// handshakes made and Resumed those that resumed a session (the load generator offers none,
	// so 0).
	TLSVersion string `json:"tls_version,omitempty"`
	Handshakes int64  `json:"tls_handshakes,omitempty"`
	Resumed    int64  `json:"tls_resumed,omitempty"`
}

// requestSource yields the bytes of successive requests for one connection.
type requestSource interface {
	next(buf []byte) []byte
}

// listSource cycles through prebuilt requests.
type listSource struct {
	reqs [][]byte
	i    int
}

func (s *listSource) next(buf []byte) []byte {
	r := s.reqs[s.i]
	s.i = (s.i + 1) % len(s.reqs)
	return append(buf, r...)
}

// zipfSource draws object ranks from a shared Zipf distribution and splices them into a
// request template.
type zipfSource struct {
	z         *zipf
	rng       *rand.Rand
	pre, post []byte
	reqs      [][]byte // prebuilt requests per rank (index rank-1), when set
}

func (s *zipfSource) next(buf []byte) []byte {
	if s.reqs != nil {
		return append(buf, s.reqs[s.z.draw(s.rng)-1]...)
	}
	buf = append(buf, s.pre...)
	buf = strconv.AppendInt(buf, int64(s.z.draw(s.rng)), 10)
	return append(buf, s.post...)
}

// zipf samples ranks 1..K with probability ∝ 1/rank^α by inverting its CDF.
type zipf struct{ cdf []float64 }

func newZipf(k int, alpha float64) *zipf {
	cdf := make([]float64, k)
	sum := 0.0
	for i := range cdf {
		sum += 1 / math.Pow(float64(i+1), alpha)
		cdf[i] = sum
	}
	for i := range cdf {
		cdf[i] /= sum
	}
	return &zipf{cdf}
}

// draw returns a rank in 1..K.
func (z *zipf) draw(r *rand.Rand) int {
	u := r.Float64()
	lo, hi := 0, len(z.cdf)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if z.cdf[mid] < u {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo + 1
}

// zipfURL returns the URL of rank i from a template.
func zipfURL(tmpl string, i int) string {
	if strings.Contains(tmpl, "{i}") {
		return strings.ReplaceAll(tmpl, "{i}", strconv.Itoa(i))
	}
	return withQuery(tmpl, "obj="+strconv.Itoa(i))
}

// loadPlan is what every connection shares.
type loadPlan struct {
	o        LoadOptions
	addr     string
	reqOpts  requestOptions
	zipf     *zipf
	tmpl     target   // the first URL's target (the Zipf template's)
	rankReqs [][]byte // prebuilt requests per rank, with rankURL
	targets  []target
	tls      *tls.Config  // https:// targets: the client's TLS configuration
	budget   atomic.Int64 // requests left to claim with -n
	sent     atomic.Int64 // responses completed, for the progress line
	start    time.Time
	end      time.Time // zero without -d
}

// RunLoad runs the load and returns the merged result. ctx cancels it early.
func RunLoad(ctx context.Context, o LoadOptions) (*LoadResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	p, err := newLoadPlan(o)
	if err != nil {
		return nil, err
	}
	if o.H2 {
		return runH2(ctx, p)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := make([]*loadWorker, o.Connections)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = p.newWorker(i)
		wg.Add(1)
		go func() { defer wg.Done(); workers[i].run(ctx) }()
	}
	stop := p.progress(ctx)
	wg.Wait()
	elapsed := time.Since(p.start)
	stop()
	return p.merge(workers, elapsed), nil
}

func newLoadPlan(o LoadOptions) (*loadPlan, error) {
	p := &loadPlan{o: o, reqOpts: requestOptions{http10: o.HTTP10, keepAlive: o.KeepAlive}, start: time.Now()}
	if o.ZipfK > 0 {
		p.zipf = newZipf(o.ZipfK, o.ZipfAlpha)
		t, err := parseTarget(strings.ReplaceAll(o.URLs[0], "{i}", "1"), o.Proxy)
		if err != nil {
			return nil, err
		}
		p.addr, p.tmpl = t.addr, t
		if o.rankURL != nil {
			for i := 1; i <= o.ZipfK; i++ {
				t, err := parseTarget(o.rankURL(i), o.Proxy)
				if err != nil {
					return nil, err
				}
				p.rankReqs = append(p.rankReqs, buildRequest(t, p.reqOpts))
			}
		}
	} else {
		for _, u := range o.URLs {
			t, err := parseTarget(u, o.Proxy)
			if err != nil {
				return nil, err
			}
			p.targets = append(p.targets, t)
		}
		p.addr, p.tmpl = p.targets[0].addr, p.targets[0]
		for _, t := range p.targets {
			if t.addr != p.addr || t.tls != p.tmpl.tls {
				return nil, usagef("every URL must name the same scheme and host:port (or use --proxy)")
			}
		}
	}
	if p.tmpl.tls {
		alpn := []string{"http/1.1"}
		if o.H2 {
			alpn = []string{"h2"}
		}
		c, err := o.TLS.config(hostName(p.tmpl.host), alpn...)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		p.tls = c
	}
	if o.Requests > 0 {
		p.budget.Store(o.Requests)
	} else {
		p.budget.Store(math.MaxInt64)
	}
	if o.Duration > 0 {
		p.end = p.start.Add(o.Duration)
	}
	return p, nil
}

// source returns a request source for worker i.
func (p *loadPlan) source(i int) requestSource {
	if p.zipf == nil {
		s := &listSource{i: i % len(p.targets)}
		for _, t := range p.targets {
			s.reqs = append(s.reqs, buildRequest(t, p.reqOpts))
		}
		return s
	}
	seed := p.o.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	if p.rankReqs != nil {
		return &zipfSource{z: p.zipf, rng: rng, reqs: p.rankReqs}
	}
	raw := p.o.URLs[0]
	if !strings.Contains(raw, "{i}") {
		raw = withQuery(raw, "obj={i}")
	}
	const mark = "OUTPOSTBENCHRANK"
	t, _ := parseTarget(strings.ReplaceAll(raw, "{i}", mark), p.o.Proxy)
	pre, post, _ := strings.Cut(string(buildRequest(t, p.reqOpts)), mark)
	return &zipfSource{z: p.zipf, rng: rng, pre: []byte(pre), post: []byte(post)}
}

// claim takes up to n requests from the -n budget.
func (p *loadPlan) claim(n int) int {
	for {
		left := p.budget.Load()
		if left <= 0 {
			return 0
		}
		k := min(int64(n), left)
		if p.budget.CompareAndSwap(left, left-k) {
			return int(k)
		}
	}
}

// progress calls Progress every second until the returned stop is called.
func (p *loadPlan) progress(ctx context.Context) func() {
	if p.o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.o.Progress(p.sent.Load(), time.Since(p.start))
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

// loadWorker drives one connection.
type loadWorker struct {
	p        *loadPlan
	src      requestSource
	conn     net.Conn
	r        *respReader
	hist     latencyHist
	buf      []byte
	resp     response
	interval time.Duration // open loop: time between this connection's requests
	next     time.Time     // open loop: the next intended send time
	h2       *h2Stream     // HTTP/2: the stream's connection and URLs (nil: HTTP/1.x)

	requests, bytes, hits, misses, hitBytes, missBytes int64
	handshakes, resumed                                int64
	tlsVersion                                         uint16
	status                                             map[int]int64
	errors                                             map[string]int64
}

func (p *loadPlan) newWorker(i int) *loadWorker {
	w := &loadWorker{p: p, src: p.source(i), hist: newLatencyHist(), status: map[int]int64{}, errors: map[string]int64{}}
	if p.o.Rate > 0 {
		n := p.concurrency()
		w.interval = time.Duration(float64(time.Second) * float64(n) / p.o.Rate)
		// Spread the connections' (streams') schedules over one interval.
		w.next = p.start.Add(w.interval * time.Duration(i) / time.Duration(n))
	}
	return w
}

// run sends batches until the duration ends, the budget is spent or ctx is done.
func (w *loadWorker) run(ctx context.Context) {
	defer w.closeConn()
	for ctx.Err() == nil {
		if !w.p.end.IsZero() && !time.Now().Before(w.p.end) {
			return
		}
		k := w.p.claim(w.p.o.Pipeline)
		if k == 0 {
			return
		}
		if !w.batch(ctx, k) {
			return
		}
	}
}

// batch sends k requests back to back and reads their responses; it reports whether to go on.
func (w *loadWorker) batch(ctx context.Context, k int) bool {
	start := time.Now()
	if w.interval > 0 {
		if !w.waitUntil(ctx, w.next) {
			return false
		}
		start = w.next
		w.next = w.next.Add(w.interval)
	}
	if w.conn == nil && !w.connect() {
		return w.pause(ctx)
	}
	w.buf = w.buf[:0]
	for range k {
		w.buf = w.src.next(w.buf)
	}
	w.conn.SetDeadline(w.deadline())
	if _, err := w.conn.Write(w.buf); err != nil {
		w.fail("write", err)
		return true
	}
	for i := range k {
		if err := w.r.read(false, &w.resp); err != nil {
			if w.finished() {
				return false
			}
			w.fail("read", err)
			w.errors["lost"] += int64(k - i - 1)
			return true
		}
		w.account(time.Since(start))
		if w.resp.close || !w.p.o.KeepAlive {
			w.closeConn()
			w.errors["lost"] += int64(k - i - 1)
			return true
		}
	}
	return true
}

// account records one completed response.
func (w *loadWorker) account(lat time.Duration) {
	w.hist.record(lat)
	w.requests++
	w.p.sent.Add(1)
	w.bytes += w.resp.wireSize
	w.status[w.resp.status]++
	switch w.resp.cache {
	case cacheHit:
		w.hits++
		w.hitBytes += w.resp.bodyLen
	case cacheMiss:
		w.misses++
		w.missBytes += w.resp.bodyLen
	}
}

// connect opens the worker's connection, counting a failure.
func (w *loadWorker) connect() bool {
	c, err := net.DialTimeout("tcp", w.p.addr, w.p.o.Timeout)
	if err != nil {
		if !w.finished() {
			w.errors["connect"]++
		}
		return false
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if w.p.tls != nil {
		tc, err := w.handshake(c)
		if err != nil {
			return false
		}
		c = tc
	}
	w.conn = c
	if w.r == nil {
		w.r = newRespReader(c, false)
	} else {
		w.r.br.Reset(c)
	}
	return true
}

// handshake makes a TLS client handshake on c within the timeout, counting it (and a
// failure, which closes c).
func (w *loadWorker) handshake(c net.Conn) (*tls.Conn, error) {
	tc := tls.Client(c, w.p.tls)
	c.SetDeadline(w.deadline())
	if err := tc.Handshake(); err != nil {
		c.Close()
		if !w.finished() {
			w.errors["tls"]++
		}
		return nil, err
	}
	st := tc.ConnectionState()
	w.handshakes++
	if st.DidResume {
		w.resumed++
	}
	w.tlsVersion = st.Version
	return tc, nil
}

// pause backs off briefly after a failed connect so a dead server does not spin the loop.
func (w *loadWorker) pause(ctx context.Context) bool {
	return w.waitUntil(ctx, time.Now().Add(10*time.Millisecond))
}

// waitUntil sleeps until t, the end of the run or ctx; it reports whether to go on.
func (w *loadWorker) waitUntil(ctx context.Context, t time.Time) bool {
	if !w.p.end.IsZero() && t.After(w.p.end) {
		return false
	}
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// deadline is the I/O deadline for one batch: the timeout, cut at the end of the run.
func (w *loadWorker) deadline() time.Time {
	d := time.Now().Add(w.p.o.Timeout)
	if !w.p.end.IsZero() && w.p.end.Before(d) {
		return w.p.end
	}
	return d
}

// finished reports whether the run's time is up (in-flight requests are then not errors).
func (w *loadWorker) finished() bool {
	return !w.p.end.IsZero() && !time.Now().Before(w.p.end)
}

// fail counts an error by kind and drops the connection.
func (w *loadWorker) fail(op string, err error) {
	var ne net.Error
	switch {
	case w.finished(): // cut by the end of the run: not an error of the server
	case errors.As(err, &ne) && ne.Timeout():
		w.errors["timeout"]++
	case errors.Is(err, errProtocol):
		w.errors["parse"]++
	default:
		w.errors[op]++
	}
	w.closeConn()
}

func (w *loadWorker) closeConn() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// merge sums the workers' counters and histograms.
func (p *loadPlan) merge(ws []*loadWorker, elapsed time.Duration) *LoadResult {
	r := &LoadResult{Elapsed: elapsed, Status: map[string]int64{}, Errors: map[string]int64{},
		OpenLoop: p.o.Rate > 0, Connections: p.o.Connections, Protocol: "HTTP/1.1"}
	if p.o.HTTP10 {
		r.Protocol = "HTTP/1.0"
	}
	if p.o.H2 {
		r.Protocol, r.Streams = "HTTP/2", max(p.o.Streams, 1)
	}
	if p.tls != nil {
		r.Protocol += " over TLS"
	}
	h := newLatencyHist()
	for _, w := range ws {
		r.Handshakes += w.handshakes
		r.Resumed += w.resumed
		if w.tlsVersion != 0 {
			r.TLSVersion = tlsVersionName(w.tlsVersion)
		}
		r.Requests += w.requests
		r.Bytes += w.bytes
		r.CacheHits += w.hits
		r.CacheMisses += w.misses
		r.HitBytes += w.hitBytes
		r.MissBytes += w.missBytes
		for s, n := range w.status {
			r.Status[strconv.Itoa(s)] += n
		}
		for k, n := range w.errors {
			if n > 0 {
				r.Errors[k] += n
			}
		}
		h.merge(w.hist)
	}
	for s, n := range r.Status {
		if s >= "400" {
			r.Errors["status "+s[:1]+"xx"] += n
		}
	}
	r.Latency = h.summary()
	if s := elapsed.Seconds(); s > 0 {
		r.RequestsPerSec = float64(r.Requests) / s
		r.BytesPerSec = float64(r.Bytes) / s
	}
	if n := r.CacheHits + r.CacheMisses; n > 0 {
		r.HitRatio = float64(r.CacheHits) / float64(n)
	}
	if n := r.HitBytes + r.MissBytes; n > 0 {
		r.ByteHitRatio = float64(r.HitBytes) / float64(n)
	}
	return r
}

// WriteLoad writes a human-readable summary of a load result.
func WriteLoad(w io.Writer, r *LoadResult) {
	fmt.Fprintf(w, "%d requests in %v over %d connections", r.Requests, r.Elapsed.Round(time.Millisecond), r.Connections)
	if r.Streams > 0 {
		fmt.Fprintf(w, " × %d streams", r.Streams)
	}
	if r.Protocol != "" {
		fmt.Fprintf(w, ", %s", r.Protocol)
	}
	if r.OpenLoop {
		fmt.Fprint(w, " (open loop, latencies corrected for coordinated omission)")
	}
	fmt.Fprintf(w, "\n  requests/s  %12.1f\n  bytes/s     %12s\n", r.RequestsPerSec, humanBytes(r.BytesPerSec))
	l := r.Latency
	fmt.Fprintf(w, "  latency     p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	if r.CacheHits+r.CacheMisses > 0 {
		fmt.Fprintf(w, "  cache       hit ratio %.3f  byte hit ratio %.3f (%d hits, %d misses)\n",
			r.HitRatio, r.ByteHitRatio, r.CacheHits, r.CacheMisses)
	}
	if r.Handshakes > 0 {
		fmt.Fprintf(w, "  tls         %s, %d handshakes, %d resumed\n", r.TLSVersion, r.Handshakes, r.Resumed)
	}
	fmt.Fprintf(w, "  status      %s\n", formatCounts(r.Status))
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors      %s\n", formatCounts(r.Errors))
	}
}
