package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
)

// SoakOptions configure `outpost bench soak`.
type SoakOptions struct {
	Binary      string        // the outpost binary to start (`BINARY up --config ...`)
	Duration    time.Duration // the main phase, with faults
	Warmup      time.Duration // traffic before the baseline is taken
	Connections int           // concurrent hit clients (every other kind has one or two)
	Interval    time.Duration // how often the suite's RSS, goroutines and fds are sampled
	WorkDir     string        // the suite's data, config and logs ("": a temporary directory)
	ConfigOut   string        // also write the suite's configuration here
	Log         io.Writer     // progress lines (nil: none)
}

// Validate checks the options, returning a *UsageError naming the flag.
func (o *SoakOptions) Validate() error {
	switch {
	case o.Binary == "":
		return usagef("--outpost: no binary")
	case o.Duration < 20*time.Second:
		return usagef("-d/--duration %v: want at least 20s (the fault schedule needs room)", o.Duration)
	case o.Duration > 24*time.Hour:
		return usagef("-d/--duration %v: want at most 24h", o.Duration)
	case o.Warmup < 2*time.Second:
		return usagef("--warmup %v: want at least 2s", o.Warmup)
	case o.Connections < 1 || o.Connections > 64:
		return usagef("-c/--connections %d: want 1..64", o.Connections)
	case o.Interval < 100*time.Millisecond || o.Interval > time.Minute:
		return usagef("--interval %v: want 100ms..1m", o.Interval)
	}
	return nil
}

// Limits a soak run is judged by.
const (
	maxRSSGrowthPct = 10.0
	mailDrainWait   = 45 * time.Second // for queued (relayed) mail to arrive after the traffic
	quiesceSettle   = 7 * time.Second  // beyond the suite's 5 s idle timeouts
	quiesceWait     = 30 * time.Second // for goroutines and fds to come back down
	faultGrace      = 4 * time.Second  // response_header_timeout + fail_timeout + slack
	faultGap        = 2 * time.Second  // between two faults of the schedule
)

// SoakResult is what a soak run found; Pass is false when any check failed (Failures says
// which).
type SoakResult struct {
	Pass             bool                        `json:"pass"`
	Failures         []string                    `json:"failures"`
	UnexpectedErrors int64                       `json:"unexpected_errors"`
	ExpectedErrors   int64                       `json:"expected_errors"`
	LostMails        int                         `json:"lost_mails"`
	DuplicatedMails  int                         `json:"duplicated_mails"`
	CorruptBodies    int                         `json:"corrupt_bodies"`
	CheckedBodies    int                         `json:"checked_bodies"`
	RSSGrowthPct     float64                     `json:"rss_growth_pct"`
	GoroutinesDelta  int                         `json:"goroutines_delta"`
	FDsDelta         int                         `json:"fds_delta"`
	RSSAfterWarmup   int64                       `json:"rss_after_warmup_bytes"` // median over the first window of the main phase
	RSSAtEnd         int64                       `json:"rss_at_end_bytes"`       // median over its last window
	Baseline         ProcSample                  `json:"baseline"`               // idle, after the warm-up
	End              ProcSample                  `json:"end"`                    // idle, after the run
	Duration         time.Duration               `json:"duration_ns"`
	Warmup           time.Duration               `json:"warmup_ns"`
	MainStart        time.Duration               `json:"main_start_ns"` // since the run started
	MainEnd          time.Duration               `json:"main_end_ns"`
	Kinds            []KindStats                 `json:"kinds"`
	Expected         []ErrorCount                `json:"expected"`
	Unexpected       []ErrorCount                `json:"unexpected"`
	Samples          []soakError                 `json:"unexpected_samples"`
	Faults           []FaultRecord               `json:"faults"`
	Mail             MailResult                  `json:"mail"`
	Proc             []ProcSample                `json:"proc"`
	Latency          map[soakKind][]LatencyPoint `json:"latency"`
	Leaks            []string                    `json:"leaks,omitempty"`    // goroutine stacks and fds the end has beyond the baseline
	WorkDir          string                      `json:"work_dir,omitempty"` // kept when the run failed
}

// FaultRecord is one injected fault as it happened.
type FaultRecord struct {
	Name     string        `json:"name"`
	Start    time.Duration `json:"start_ns"` // since the run started
	End      time.Duration `json:"end_ns"`
	Expected int           `json:"expected_errors"`
}

// soakRun is one soak: the suite, the soak's own servers, the traffic and the recorder.
type soakRun struct {
	o     SoakOptions
	dir   string
	start time.Time
	suite *soakSuite
	conf  string // the configuration text, rewritten before each SIGHUP
	fault *faultOrigin
	echo  *echoTarget
	edges []*soakEdge
	rec   *soakRecorder
	t     *soakTraffic
	// edgeTurn picks the edge the next edge restart stops.
	edgeTurn int

	mu      sync.Mutex
	samples []ProcSample
}

func (r *soakRun) logf(format string, args ...any) {
	if r.o.Log != nil {
		fmt.Fprintf(r.o.Log, "soak %6.1fs: "+format+"\n", append([]any{time.Since(r.start).Seconds()}, args...)...)
	}
}

// RunSoak runs the soak and judges it. An error means the soak could not run (the suite did
// not start); a run that ran but failed a check returns its result with Pass false.
func RunSoak(ctx context.Context, o SoakOptions) (*SoakResult, error) {
	r := &soakRun{o: o, start: time.Now()}
	if err := r.setup(ctx); err != nil {
		r.teardown(false)
		return nil, err
	}
	res := r.run(ctx)
	r.teardown(res.Pass)
	if !res.Pass {
		res.WorkDir = r.dir
	}
	return res, nil
}

// setup starts the soak's servers and the suite.
func (r *soakRun) setup(ctx context.Context) error {
	var err error
	r.dir = r.o.WorkDir
	if r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "outpost-soak-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	if r.fault, err = newFaultOrigin(); err != nil {
		return err
	}
	if r.echo, err = newEchoTarget(); err != nil {
		return err
	}
	for i := range soakRegions {
		e, err := newSoakEdge("edge"+strconv.Itoa(i+1), "127.0.0."+strconv.Itoa(11+i))
		if err != nil {
			return err
		}
		r.edges = append(r.edges, e)
	}
	ports, err := pickSoakPorts()
	if err != nil {
		return err
	}
	if r.conf, err = soakConfig(r.dir, ports, r.fault.addr, r.echo.port(), r.edges); err != nil {
		return err
	}
	confFile := filepath.Join(r.dir, "outpost.toml")
	if err := os.WriteFile(confFile, []byte(r.conf), 0o600); err != nil {
		return err
	}
	if r.o.ConfigOut != "" {
		if err := os.WriteFile(r.o.ConfigOut, []byte(r.conf), 0o600); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
	}
	files, err := writeFTPFiles(filepath.Join(r.dir, "data"))
	if err != nil {
		return err
	}
	r.logf("starting %s up --config %s", r.o.Binary, confFile)
	if r.suite, err = startSoakSuite(ctx, r.o.Binary, confFile, filepath.Join(r.dir, "outpost.log"), ports); err != nil {
		return err
	}
	bucket := max(5*time.Second, ((r.o.Warmup + r.o.Duration) / 60).Round(time.Second))
	r.rec = newRecorder(r.start, bucket)
	id := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	if r.t, err = newSoakTraffic(r.rec, ports, id, r.echo, r.edges, files); err != nil {
		return err
	}
	r.t.mail.runID = id
	return nil
}

// teardown stops the suite and the soak's servers; the work directory goes unless kept.
func (r *soakRun) teardown(pass bool) {
	if r.suite != nil {
		r.suite.stop()
	}
	if r.fault != nil {
		r.fault.close()
	}
	if r.echo != nil {
		r.echo.close()
	}
	for _, e := range r.edges {
		e.close()
	}
	if pass && r.o.WorkDir == "" && r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// run is the soak's timeline: warm-up, idle baseline, main phase with faults, mail drain,
// body check, idle end state.
func (r *soakRun) run(ctx context.Context) *SoakResult {
	res := &SoakResult{Duration: r.o.Duration, Warmup: r.o.Warmup, Failures: []string{}, Samples: []soakError{}}
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.sampleLoop(sctx) }()
	defer func() { stopSampling(); wg.Wait() }()

	r.logf("warm-up: filling the cache, then %v of traffic", r.o.Warmup)
	if err := r.t.fillCache(ctx, 10000); err != nil {
		r.rec.failure(kindCheck, classOf(err), "cache fill: "+err.Error(), time.Now())
	}
	r.traffic(ctx, r.o.Warmup, nil)
	res.Baseline = r.quiesce(ctx, nil)
	baseSnap := r.suite.snapshot()
	r.logf("baseline: %d goroutines, %d fds, RSS %s", res.Baseline.Goroutines, res.Baseline.FDs, humanBytes(float64(res.Baseline.RSS)))

	r.suite.saveHeap(filepath.Join(r.dir, "heap-baseline.pprof"))
	res.MainStart = time.Since(r.start)
	r.logf("main phase: %v with faults", r.o.Duration)
	r.traffic(ctx, r.o.Duration, r.faults)
	res.MainEnd = time.Since(r.start)

	r.logf("draining mail (%d accepted, %d not read yet)", r.t.mail.result().Accepted, r.t.mail.missing())
	r.drainMail(ctx)
	res.CheckedBodies, res.CorruptBodies = r.t.checkObjects(ctx)
	r.logf("checked %d stored bodies, %d corrupt", res.CheckedBodies, res.CorruptBodies)
	res.End = r.quiesce(ctx, &res.Baseline)
	if res.End.Goroutines > res.Baseline.Goroutines || res.End.FDs > res.Baseline.FDs {
		res.Leaks = r.suite.snapshot().since(baseSnap)
	}
	r.logf("end: %d goroutines, %d fds, RSS %s", res.End.Goroutines, res.End.FDs, humanBytes(float64(res.End.RSS)))
	r.suite.saveHeap(filepath.Join(r.dir, "heap-end.pprof"))
	if r.suite.proc.exited() {
		r.rec.failure(kindCheck, "suite-exited", fmt.Sprintf("outpost exited during the run: %v", r.suite.proc.err), time.Now())
	}
	stopSampling()
	wg.Wait()
	r.judge(res)
	return res
}

// soakLoad is one traffic kind: its workers, the pause between operations, and an operation
// maker (one per worker, with its cleanup).
type soakLoad struct {
	kind    soakKind
	workers int
	pause   time.Duration
	op      func(w int) (op func(context.Context, *mrand.Rand) error, done func())
}

// plain wraps an operation that keeps no per-worker state.
func plain(op func(context.Context, *mrand.Rand) error) func(int) (func(context.Context, *mrand.Rand) error, func()) {
	return func(int) (func(context.Context, *mrand.Rand) error, func()) { return op, func() {} }
}

// loads is the traffic mix. Every kind is bounded: a fixed number of workers, each pausing
// between operations.
func (r *soakRun) loads() []soakLoad {
	t := r.t
	readers := []string{"bob", "carol"}
	return []soakLoad{
		{kindHit, r.o.Connections, 2 * time.Millisecond, plain(t.hit)},
		{kindMiss, 2, 20 * time.Millisecond, plain(t.miss)},
		{kindPipeline, 1, 50 * time.Millisecond, plain(t.pipeline)},
		{kindConnect, 1, 100 * time.Millisecond, plain(t.connect)},
		{kindFTP, 1, 50 * time.Millisecond, func(int) (func(context.Context, *mrand.Rand) error, func()) {
			var rc *rawConn
			return func(ctx context.Context, rnd *mrand.Rand) error { return t.ftpFetch(ctx, rnd, &rc) },
				func() {
					if rc != nil {
						rc.c.Close()
					}
				}
		}},
		{kindDNS, 1, 10 * time.Millisecond, plain(t.dnsQuery)},
		{kindSMTP, 1, 200 * time.Millisecond, plain(func(ctx context.Context, _ *mrand.Rand) error { return t.mail.send(ctx) })},
		{kindPOP3, 1, time.Second, plain(func(ctx context.Context, _ *mrand.Rand) error { return t.mail.readPOP3(ctx, "alice") })},
		{kindIMAP, len(readers), time.Second, func(w int) (func(context.Context, *mrand.Rand) error, func()) {
			return func(ctx context.Context, _ *mrand.Rand) error { return t.mail.readIMAP(ctx, readers[w]) }, func() {}
		}},
		{kindPurge, 1, 500 * time.Millisecond, plain(t.purge)},
		{kindFaulty, 2, 20 * time.Millisecond, plain(t.faulty)},
	}
}

// traffic runs the mix for d, and faults (when given) alongside.
func (r *soakRun) traffic(ctx context.Context, d time.Duration, faults func(context.Context, time.Duration)) {
	until := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, l := range r.loads() {
		for w := range l.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				op, done := l.op(w)
				defer done()
				rnd := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
				for time.Now().Before(until) && ctx.Err() == nil {
					start := time.Now()
					if err := op(ctx, rnd); err != nil {
						r.rec.failure(l.kind, classOf(err), err.Error(), start)
					} else {
						r.rec.success(l.kind, start)
					}
					if !waitCtx(ctx, l.pause) {
						return
					}
				}
			}()
		}
	}
	if faults != nil {
		fctx, cancel := context.WithDeadline(ctx, until)
		wg.Add(1)
		go func() { defer wg.Done(); defer cancel(); faults(fctx, d) }()
	}
	wg.Wait()
	r.t.closeIdle()
}

// faultStep is one fault of the schedule: it runs for about hold.
type faultStep struct {
	name string
	hold time.Duration
	run  func(ctx context.Context)
}

// originExcuse is what an origin fault excuses: the fault route's answers for a broken origin.
var originExcuse = map[soakKind][]string{kindFaulty: {"502", "503", "504", classCut, classReset, classTimeout}}

// faults injects the schedule over the main phase of length d: nothing in its first and last
// tenth (so RSS is compared under the same clean load), and in between, in a cycle with 2 s
// gaps: origin resets, stalls, an edge restart, an origin closing reused connections, a SIGHUP
// reload, mid-body resets, an origin restart, 503s and garbage. The steps that excuse nothing
// follow ones without grace, so no earlier window hides their errors.
func (r *soakRun) faults(ctx context.Context, d time.Duration) {
	quiet := max(5*time.Second, d/10)
	end := time.Now().Add(d - quiet - faultGrace)
	steps := r.faultSteps()
	if !waitCtx(ctx, quiet) {
		return
	}
	for i := 0; ; i++ {
		s := steps[i%len(steps)]
		if time.Now().Add(faultGap+s.hold).After(end) || !waitCtx(ctx, faultGap) {
			return
		}
		r.logf("fault: %s", s.name)
		s.run(ctx)
	}
}

// faultSteps is one cycle of the schedule.
func (r *soakRun) faultSteps() []faultStep {
	return []faultStep{
		r.originMode("origin resets", faultReset, 3*time.Second),
		r.originMode("origin stalls", faultStall, 5*time.Second),
		{"edge restart", 8 * time.Second, r.edgeRestart},
		{"origin closes reused connections", 3 * time.Second, r.reusedClose},
		{"SIGHUP reload", 5 * time.Second, r.reload},
		r.originMode("origin resets mid-body", faultMidBody, 3*time.Second),
		{"origin restart", 3 * time.Second, r.originRestart},
		r.originMode("origin answers 503", faultStatus, 3*time.Second),
		r.originMode("origin sends garbage", faultGarbage, 3*time.Second),
	}
}

// originMode is a step that puts the fault origin in mode m for hold.
func (r *soakRun) originMode(name string, m faultMode, hold time.Duration) faultStep {
	return faultStep{name, hold, func(ctx context.Context) {
		done := r.rec.beginFault(name, faultGrace, originExcuse)
		r.fault.set(m)
		waitCtx(ctx, hold)
		r.fault.set(faultNone)
		done()
	}}
}

// originRestart stops the fault origin for 3 s (connections refused) and starts it again.
func (r *soakRun) originRestart(ctx context.Context) {
	done := r.rec.beginFault("origin restart", faultGrace, originExcuse)
	defer done()
	r.fault.stop()
	waitCtx(ctx, 3*time.Second)
	if err := r.fault.start(); err != nil {
		r.rec.failure(kindCheck, "soak", err.Error(), time.Now())
	}
}

// edgeRestart stops the next edge for 8 s. DNS answers naming it are excused for the health
// checks' detection time only.
func (r *soakRun) edgeRestart(ctx context.Context) {
	e := r.edges[r.edgeTurn%len(r.edges)]
	r.edgeTurn++
	e.stop()
	done := r.rec.beginFault("edge restart ("+e.name+")", 0, map[soakKind][]string{kindDNS: {classDownEdge}})
	waitCtx(ctx, dnsDetect)
	done()
	waitCtx(ctx, 8*time.Second-dnsDetect)
	if err := e.start(); err != nil {
		r.rec.failure(kindCheck, "soak", err.Error(), time.Now())
	}
}

// reusedClose has the origin close each idle keep-alive connection as the proxy reuses it, for
// 3 s. Nothing is excused: the proxy retries the GET once on a new connection (RFC 9110
// §9.2.2).
func (r *soakRun) reusedClose(ctx context.Context) {
	done := r.rec.beginFault("origin closes reused connections", 0, nil)
	defer done()
	r.fault.set(faultIdleClose)
	waitCtx(ctx, 3*time.Second)
	r.fault.set(faultNone)
}

// reload rewrites the configuration file (unchanged) and sends SIGHUP. Nothing is excused:
// a reload must not drop a request, a mail or a query. The suite must stay ready and keep its
// pid.
func (r *soakRun) reload(ctx context.Context) {
	start := time.Now()
	done := r.rec.beginFault("SIGHUP reload", 0, nil)
	defer done()
	if err := os.WriteFile(r.suite.conf, []byte(r.conf), 0o600); err != nil {
		r.rec.failure(kindCheck, "soak", err.Error(), start)
		return
	}
	if err := r.suite.hup(); err != nil {
		r.rec.failure(kindCheck, "sighup", "SIGHUP: "+err.Error(), start)
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for !r.suite.ready() {
		if r.suite.proc.exited() || time.Now().After(deadline) {
			r.rec.failure(kindCheck, "sighup", "the suite is not ready within 5s of SIGHUP", start)
			return
		}
		waitCtx(ctx, 100*time.Millisecond)
	}
	waitCtx(ctx, 2*time.Second)
}

// drainMail reads the mailboxes until every accepted message arrived or mailDrainWait passed.
func (r *soakRun) drainMail(ctx context.Context) {
	deadline := time.Now().Add(mailDrainWait)
	for {
		for _, read := range []func() error{
			func() error { return r.t.mail.readPOP3(ctx, "alice") },
			func() error { return r.t.mail.readIMAP(ctx, "bob") },
			func() error { return r.t.mail.readIMAP(ctx, "carol") },
		} {
			start := time.Now()
			if err := read(); err != nil {
				r.rec.failure(kindCheck, classOf(err), "final mail read: "+err.Error(), start)
			}
		}
		if r.t.mail.missing() == 0 || time.Now().After(deadline) || !waitCtx(ctx, time.Second) {
			return
		}
	}
}

// sampleLoop samples the suite every interval until ctx ends.
func (r *soakRun) sampleLoop(ctx context.Context) {
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	for {
		if s, err := r.suite.sample(r.start); err == nil {
			r.mu.Lock()
			r.samples = append(r.samples, s)
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// quiesce waits, with no traffic, for the suite's idle connections to time out, then samples
// it every 500 ms and returns the median of the last five samples (transient goroutines of a
// health check or a sampler neither raise nor lower it). With a baseline it polls until that
// median is back to it (or quiesceWait passed).
func (r *soakRun) quiesce(ctx context.Context, base *ProcSample) ProcSample {
	r.t.closeIdle()
	waitCtx(ctx, quiesceSettle)
	var last []ProcSample
	deadline := time.Now().Add(quiesceWait)
	for ctx.Err() == nil {
		if s, err := r.suite.sample(r.start); err == nil {
			last = append(last, s)
			if len(last) > 5 {
				last = last[1:]
			}
		}
		if len(last) == 5 {
			m := medianSample(last)
			if base == nil || m.Goroutines <= base.Goroutines && m.FDs <= base.FDs || time.Now().After(deadline) {
				return m
			}
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			break
		}
		waitCtx(ctx, 500*time.Millisecond)
	}
	if len(last) == 0 {
		return ProcSample{}
	}
	return medianSample(last)
}

// medianSample is the last sample with goroutines and fds replaced by their medians.
func medianSample(ss []ProcSample) ProcSample {
	m := ss[len(ss)-1]
	g, f := make([]int, len(ss)), make([]int, len(ss))
	for i, s := range ss {
		g[i], f[i] = s.Goroutines, s.FDs
	}
	slices.Sort(g)
	slices.Sort(f)
	m.Goroutines, m.FDs = g[len(g)/2], f[len(f)/2]
	return m
}

// judge fills in the result and decides whether the run passed.
func (r *soakRun) judge(res *SoakResult) {
	r.rec.mu.Lock()
	res.Expected, res.Unexpected = errorCounts(r.rec.expected), errorCounts(r.rec.unexpected)
	res.Samples = append(res.Samples, r.rec.samples...)
	for _, w := range r.rec.windows {
		res.Faults = append(res.Faults, FaultRecord{Name: w.Name, Start: w.Start.Sub(r.start), End: w.End.Sub(r.start), Expected: w.ExpectedN})
	}
	r.rec.mu.Unlock()
	for _, e := range res.Expected {
		res.ExpectedErrors += e.Count
	}
	for _, e := range res.Unexpected {
		res.UnexpectedErrors += e.Count
	}
	res.Kinds, res.Latency = r.rec.kindStats(), r.rec.latencySeries()
	res.Mail = r.t.mail.result()
	res.LostMails, res.DuplicatedMails = res.Mail.Lost, res.Mail.Duplicated
	r.mu.Lock()
	res.Proc = slices.Clone(r.samples)
	r.mu.Unlock()
	win := max(5*time.Second, r.o.Duration/10)
	res.RSSAfterWarmup = medianRSS(res.Proc, res.MainStart, res.MainStart+win)
	res.RSSAtEnd = medianRSS(res.Proc, res.MainEnd-win, res.MainEnd)
	if res.RSSAfterWarmup > 0 {
		res.RSSGrowthPct = float64(res.RSSAtEnd-res.RSSAfterWarmup) / float64(res.RSSAfterWarmup) * 100
	}
	res.GoroutinesDelta = res.End.Goroutines - res.Baseline.Goroutines
	res.FDsDelta = res.End.FDs - res.Baseline.FDs
	check := func(ok bool, format string, args ...any) {
		if !ok {
			res.Failures = append(res.Failures, fmt.Sprintf(format, args...))
		}
	}
	check(res.UnexpectedErrors == 0, "%d unexpected errors", res.UnexpectedErrors)
	check(res.RSSAfterWarmup > 0 && res.RSSGrowthPct <= maxRSSGrowthPct, "RSS grew %.1f%% (limit %.0f%%)", res.RSSGrowthPct, maxRSSGrowthPct)
	check(res.GoroutinesDelta <= 0, "%+d goroutines over the baseline", res.GoroutinesDelta)
	check(res.FDsDelta <= 0, "%+d fds over the baseline", res.FDsDelta)
	check(res.LostMails == 0, "%d accepted mails lost", res.LostMails)
	check(res.DuplicatedMails == 0, "%d duplicated mails", res.DuplicatedMails)
	check(res.CorruptBodies == 0, "%d corrupt cached bodies", res.CorruptBodies)
	check(res.Mail.Accepted > 0 && res.CheckedBodies > 0, "nothing checked: %d mails accepted, %d bodies checked", res.Mail.Accepted, res.CheckedBodies)
	res.Pass = len(res.Failures) == 0
}

// medianRSS is the median RSS of the samples in [from, to].
func medianRSS(ss []ProcSample, from, to time.Duration) int64 {
	var v []int64
	for _, s := range ss {
		if s.T >= from && s.T <= to {
			v = append(v, s.RSS)
		}
	}
	if len(v) == 0 {
		return 0
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v[len(v)/2]
}

// errSoakFailed is returned by the command when the run failed a check (exit status 1).
var errSoakFailed = errors.New("soak failed")
