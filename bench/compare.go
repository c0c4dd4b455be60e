package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CompareOptions configure `outpost bench compare`.
type CompareOptions struct {
	// Outpost is the binary measured (`BINARY proxy --config ...`).
	Outpost string
	// Baseline is another Outpost binary measured the same way in the same rounds (an earlier
	// build, for before/after ratios); empty: none.
	Baseline string
	// Servers are the servers measured (default CompareServers); Scenarios the workloads.
	Servers   []string
	Scenarios []string
	// Rounds: each round runs every scenario against every server, in an order rotated per
	// round (interleaved), so drift on a shared machine hits every server alike.
	Rounds int
	// Duration of one wrk run; Connections its connection count (-c).
	Duration    time.Duration
	Connections int
	// ServerCPU is the core every server is pinned to; LoadCPU the load generator's and the
	// origin's.
	ServerCPU, LoadCPU int
	// Threshold is the outside load (cores used by processes the run did not start) above which
	// a cell, and its scenario's round, counts as disturbed.
	Threshold float64
	// Nice is the nice value of the servers, the origin and wrk (0: unchanged; negative values
	// take CPU from everything else on a shared machine).
	Nice int
	// Install installs missing packages with apt-get.
	Install bool
	// Loader is the binary whose `bench http` drives the tlsnew scenario (empty: Outpost).
	Loader string
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// Validate checks the options; errors are *UsageError.
func (o *CompareOptions) Validate() error {
	if o.Rounds < 1 || o.Rounds > 20 {
		return usagef("--rounds must be 1..20, not %d", o.Rounds)
	}
	if o.Duration < time.Second || o.Duration > time.Minute || o.Duration%time.Second != 0 {
		return usagef("--duration must be whole seconds from 1s to 1m, not %v", o.Duration)
	}
	if o.Connections < 1 || o.Connections > 10000 {
		return usagef("--connections must be 1..10000, not %d", o.Connections)
	}
	if o.ServerCPU < 0 || o.LoadCPU < 0 || o.ServerCPU == o.LoadCPU {
		return usagef("--server-cpu and --load-cpu must be two different CPUs (got %d and %d)", o.ServerCPU, o.LoadCPU)
	}
	if o.Nice < -20 || o.Nice > 19 {
		return usagef("--nice must be -20..19, not %d", o.Nice)
	}
	if o.Threshold <= 0 || o.Threshold > 2 {
		return usagef("--disturbed must be in (0, 2] cores, not %g", o.Threshold)
	}
	if len(o.Servers) == 0 {
		o.Servers = slices.Clone(CompareServers)
	}
	for _, s := range o.Servers {
		if !slices.Contains(CompareServers, s) && (s != "baseline" || o.Baseline == "") {
			return usagef("--servers: unknown server %q (want %s)", s, strings.Join(CompareServers, ","))
		}
	}
	if o.Baseline != "" && !slices.Contains(o.Servers, "baseline") {
		o.Servers = slices.Insert(o.Servers, min(1, len(o.Servers)), "baseline")
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = ScenarioNames()
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(ScenarioNames(), s) {
			return usagef("--scenarios: unknown scenario %q (want %s)", s, strings.Join(ScenarioNames(), ","))
		}
	}
	return nil
}

// Cell is one wrk run: one scenario against one server in one round.
type Cell struct {
	Round    int    `json:"round"`
	Scenario string `json:"scenario"`
	Server   string `json:"server"`
	wrkResult
	RequestsPerSec float64 `json:"requests_per_sec"`
	BytesPerSec    float64 `json:"bytes_per_sec"`
	// ServerCPU is the CPU time the server's processes used in the window (s); RequestsPerCPU
	// requests per CPU-second of it.
	ServerCPU      float64 `json:"server_cpu_s"`
	RequestsPerCPU float64 `json:"requests_per_cpu_s"`
	// OriginRequests reached the origin in the window (a hit scenario wants ~0).
	OriginRequests int64       `json:"origin_requests"`
	Window         float64     `json:"window_s"`
	Outside        Disturbance `json:"outside"`
}

// CompareResult is a whole comparison run.
type CompareResult struct {
	Command string    `json:"command"`
	Date    time.Time `json:"date"`
	Commit  string    `json:"commit"`
	Outpost string    `json:"outpost"`
	// BaselineCommit is the baseline binary's (empty without one).
	BaselineCommit string            `json:"baseline_commit,omitempty"`
	Versions       map[string]string `json:"versions"`
	Options        compareOptsJSON   `json:"options"`
	Facts          []Fact            `json:"machine"`
	Cells          []Cell            `json:"cells"`
	Summary        []ScenarioSummary `json:"summary"`
	Targets        []TargetCheck     `json:"targets"`
	// Skipped are the scenarios that could not run, with the reason.
	Skipped []string      `json:"skipped,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns"`

	// workDir and groups are what the run made and started (for tests to see them gone).
	workDir string
	groups  []int
}

type compareOptsJSON struct {
	Servers     []string      `json:"servers"`
	Scenarios   []string      `json:"scenarios"`
	Rounds      int           `json:"rounds"`
	Duration    time.Duration `json:"duration_ns"`
	Connections int           `json:"connections"`
	ServerCPU   int           `json:"server_cpu"`
	LoadCPU     int           `json:"load_cpu"`
	Threshold   float64       `json:"disturbed_threshold_cores"`
}

// compareRun is the state of one run: its work directory, the processes it started and the
// ports they listen on. Everything it starts it stops in close.
type compareRun struct {
	o       CompareOptions
	work    string
	origin  *process
	oport   int
	servers map[string]*process
	ports   map[string]int
	cells   []Cell
	seq     int
	pinned  map[string]bool // servers whose threads had to be pinned again (logged once)
	// certs are the run's CA and server certificate; tlsPorts the TLS listeners that run (a
	// server without one has none), h2 those that speak HTTP/2; skipped the TLS scenarios
	// already logged as skipped.
	certs    certFiles
	tlsPorts map[string]int
	h2       map[string]bool
	skipped  map[string]bool
	// skippedWhy are the skipped scenarios with their reasons, for the result.
	skippedWhy []string
}

// RunCompare installs what is missing, starts the origin and the servers, runs the rounds and
// stops everything it started (also on an error or an interrupt).
func RunCompare(ctx context.Context, o CompareOptions) (*CompareResult, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("bench compare needs Linux (/proc, taskset)")
	}
	if n := runtime.NumCPU(); o.ServerCPU >= n || o.LoadCPU >= n {
		return nil, fmt.Errorf("bench compare pins to CPUs %d and %d, but this machine has %d", o.ServerCPU, o.LoadCPU, n)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := ensurePackages(ctx, o); err != nil {
		return nil, err
	}
	r := &compareRun{o: o, servers: map[string]*process{}, ports: map[string]int{}, pinned: map[string]bool{},
		tlsPorts: map[string]int{}, h2: map[string]bool{}, skipped: map[string]bool{}}
	res := &CompareResult{}
	defer func() {
		r.close()
		res.workDir, res.groups = r.work, r.groups()
	}()
	if err := r.startAll(ctx); err != nil {
		return nil, err
	}
	if err := r.rounds(ctx); err != nil {
		return nil, err
	}
	res.Date, res.Versions, res.Facts, res.Cells = start.UTC(), peerVersions(o.Servers), MachineFacts(), r.cells
	res.Options = compareOptsJSON{o.Servers, o.Scenarios, o.Rounds, o.Duration, o.Connections, o.ServerCPU, o.LoadCPU, o.Threshold}
	res.Outpost, res.Commit = binaryCommit(o.Outpost)
	if o.Baseline != "" {
		_, res.BaselineCommit = binaryCommit(o.Baseline)
	}
	res.Skipped = r.skippedWhy
	res.Summary = Summarise(r.cells, o.Scenarios)
	res.Targets = CheckTargets(res.Summary)
	res.Elapsed = time.Since(start)
	return res, nil
}

func (r *compareRun) logf(format string, args ...any) {
	if r.o.Log != nil {
		fmt.Fprintf(r.o.Log, "bench compare: "+format+"\n", args...)
	}
}

// startAll makes the work directory and the origin's files, starts the origin and every
// server, and warms each cache with the hit objects.
func (r *compareRun) startAll(ctx context.Context) error {
	var err error
	if r.work, err = os.MkdirTemp("", "outpost-compare-"); err != nil {
		return err
	}
	// The peers drop privileges for their workers, which must reach their directories.
	if err := os.Chmod(r.work, 0o755); err != nil {
		return err
	}
	r.logf("work directory %s", r.work)
	www := filepath.Join(r.work, "www")
	if err := writeObjects(www); err != nil {
		return err
	}
	if err := r.writeCerts(); err != nil {
		return err
	}
	ports, err := freePorts(1 + 2*len(r.o.Servers))
	if err != nil {
		return err
	}
	r.oport = ports[0]
	// start records the process (r.origin) before it waits, so close stops it on any error.
	if _, err = r.start(ctx, "origin", serverEnv{port: r.oport, www: www, cpu: r.o.LoadCPU, nice: r.o.Nice}); err != nil {
		return err
	}
	for i, s := range r.o.Servers {
		r.ports[s] = ports[2*i+1]
		bin := r.o.Outpost
		if s == "baseline" {
			bin = r.o.Baseline
		}
		e := serverEnv{port: ports[2*i+1], origin: r.oport, cpu: r.o.ServerCPU, nice: r.o.Nice, binary: bin}
		if slices.Contains(tlsCapable, s) && r.wantsTLS() {
			e.tlsPort, e.certs = ports[2*i+2], r.certs
		}
		p, err := r.start(ctx, s, e)
		if err != nil && e.tlsPort != 0 && s != "nginx" && noTLSListener(err.Error()) {
			r.logf("%s: %s has no TLS listener (it refuses [proxy.tls]): started without; the TLS scenarios skip it", s, bin)
			r.servers[s].stop(5 * time.Second)
			e.tlsPort = 0
			p, err = r.start(ctx, s, e)
		}
		if err != nil {
			return err
		}
		r.servers[s] = p
		if e.tlsPort != 0 {
			r.tlsPorts[s] = e.tlsPort
		}
	}
	if err := r.pinAll(); err != nil {
		return err
	}
	if err := r.warm(ctx); err != nil {
		return err
	}
	return r.warmTLS(ctx)
}

// wantsTLS reports whether a TLS scenario is among the run's.
func (r *compareRun) wantsTLS() bool {
	return slices.ContainsFunc(r.o.Scenarios, func(n string) bool { return scenarioByName(n).TLS })
}

// writeObjects writes the origin's two objects.
func writeObjects(www string) error {
	if err := os.MkdirAll(www, 0o755); err != nil {
		return err
	}
	for name, size := range map[string]int{"obj.bin": 1 << 10, "obj1m.bin": 1 << 20} {
		if err := os.WriteFile(filepath.Join(www, name), []byte(strings.Repeat("x", size)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// start configures and starts one server in its own directory and waits until it listens.
func (r *compareRun) start(ctx context.Context, name string, e serverEnv) (*process, error) {
	spec := serverSpecs[name]
	e.dir = filepath.Join(r.work, name)
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	cmd, err := spec.command(e)
	if err != nil {
		return nil, fmt.Errorf("configure %s: %w", name, err)
	}
	p, err := startProcess(name, cmd, filepath.Join(e.dir, "run.log"))
	if err != nil {
		return nil, err
	}
	if name == "origin" {
		r.origin = p // so that close stops it even if it never listens
	} else {
		r.servers[name] = p
	}
	tlsNote := ""
	if e.tlsPort != 0 {
		tlsNote = fmt.Sprintf(" (TLS on %d)", e.tlsPort)
	}
	r.logf("started %s (pid %d) on 127.0.0.1:%d%s, CPU %d", name, p.pgrp(), e.port, tlsNote, e.cpu)
	if err := p.waitListening(ctx, "127.0.0.1:"+strconv.Itoa(e.port), 30*time.Second); err != nil {
		return nil, err
	}
	if e.tlsPort != 0 {
		if err := p.waitListening(ctx, "127.0.0.1:"+strconv.Itoa(e.tlsPort), 30*time.Second); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// warm fetches each hit object twice through every server (the second time from its cache),
// and through Outpost as a forward proxy.
func (r *compareRun) warm(ctx context.Context) error {
	for _, s := range r.o.Servers {
		for _, path := range []string{"/obj.bin", "/obj1m.bin"} {
			for range 2 {
				if err := fetchOK(ctx, nil, fmt.Sprintf("http://127.0.0.1:%d%s", r.ports[s], path)); err != nil {
					return fmt.Errorf("warm %s: %w", s, err)
				}
			}
		}
	}
	for _, s := range scenarioTargets(scenarioByName("forward"), r.o.Servers) {
		proxy, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", r.ports[s]))
		for range 2 {
			if err := fetchOK(ctx, proxy, fmt.Sprintf("http://127.0.0.1:%d/obj.bin", r.oport)); err != nil {
				return fmt.Errorf("warm %s (forward): %w", s, err)
			}
		}
	}
	return nil
}

// fetchOK GETs u (through proxy when set) and wants a 200 with its body read.
func fetchOK(ctx context.Context, proxy *url.URL, u string) error {
	tr := &http.Transport{DisableKeepAlives: true}
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy)
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	return nil
}

// rounds runs every round: each scenario in turn, its servers in an order rotated by the
// round number.
func (r *compareRun) rounds(ctx context.Context) error {
	for round := 1; round <= r.o.Rounds; round++ {
		for _, name := range r.o.Scenarios {
			sc := scenarioByName(name)
			targets := scenarioTargets(sc, r.o.Servers)
			if sc.TLS {
				if targets = r.tlsTargets(sc); !slices.Contains(targets, "outpost") || !slices.Contains(targets, "nginx") {
					r.skipTLS(sc)
					continue
				}
			}
			if len(targets) == 0 {
				continue
			}
			k := (round - 1) % len(targets)
			for _, t := range append(targets[k:], targets[:k]...) {
				c, err := r.measure(ctx, round, sc, t)
				if err != nil {
					return err
				}
				r.cells = append(r.cells, c)
				r.logf("round %d %-7s %-8s %9.0f req/s %8.0f req/CPU-s p50 %s p99 %s outside %.2f cores%s",
					round, sc.Name, t, c.RequestsPerSec, c.RequestsPerCPU, fmtLatency(c.P50), fmtLatency(c.P99), c.Outside.OutsideCores, disturbedMark(c.Outside.Disturbed))
			}
		}
	}
	return nil
}

func disturbedMark(d bool) string {
	if d {
		return " DISTURBED"
	}
	return ""
}

func scenarioByName(name string) Scenario {
	for _, s := range Scenarios {
		if s.Name == name {
			return s
		}
	}
	return Scenario{}
}

// scenarioTargets are the servers a scenario measures: forward only Outpost (and its
// baseline), misslat also the origin directly.
func scenarioTargets(sc Scenario, servers []string) []string {
	if sc.Forward {
		return slices.DeleteFunc(slices.Clone(servers), func(s string) bool { return s != "outpost" && s != "baseline" })
	}
	out := slices.Clone(servers)
	if sc.Direct {
		out = append(out, "origin")
	}
	return out
}

// measure runs wrk for one cell and accounts for the CPU time of the server, the run and the
// rest of the machine over its window.
func (r *compareRun) measure(ctx context.Context, round int, sc Scenario, server string) (Cell, error) {
	r.seq++
	tag := strconv.Itoa(r.seq)
	script := filepath.Join(r.work, "cell"+tag+".lua")
	if err := os.WriteFile(script, []byte(wrkScript(sc, tag, "127.0.0.1:"+strconv.Itoa(r.oport))), 0o644); err != nil {
		return Cell{}, err
	}
	port, proc := r.ports[server], r.servers[server]
	if server == "origin" {
		port, proc = r.oport, r.origin
	}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, sc.Path)
	if sc.TLS {
		url = fmt.Sprintf("https://127.0.0.1:%d%s", r.tlsPorts[server], sc.Path)
	}
	args, parse := r.loadCommand(sc, script, url)
	var cmd *exec.Cmd
	var win cellWindow
	var err error
	for attempt := 1; ; attempt++ {
		cmd = pinned(r.o.LoadCPU, r.o.Nice, args[0], args[1:]...)
		if sc.Tool == "bench" {
			cmd.Env = outpostFreeEnv(os.Environ())
		}
		win, err = r.window(ctx, cmd, parse)
		// h2load 1.52 now and then never exits after its duration ("Stopped all clients"):
		// the cell is measured again, once.
		if sc.Tool == "h2load" && attempt == 1 && errors.Is(err, errOverrun) {
			r.logf("%s %s: h2load did not exit after its duration; measuring the cell again", sc.Name, server)
			continue
		}
		break
	}
	if err != nil {
		return Cell{}, fmt.Errorf("%s %s: %w", sc.Name, server, err)
	}
	if proc.exited() {
		return Cell{}, fmt.Errorf("%s exited during %s (%v); its log:\n%s", server, sc.Name, proc.err, proc.logTail())
	}
	c := Cell{Round: round, Scenario: sc.Name, Server: server, wrkResult: win.wrk, Window: win.elapsed.Seconds(),
		ServerCPU: ticksToSeconds(groupTicks(win.snap0, win.snap1, proc.pgrp())), OriginRequests: win.origin}
	if server == "origin" {
		c.OriginRequests = 0 // its own requests, not a proxy's misses
	}
	if secs := c.Elapsed.Seconds(); secs > 0 {
		c.RequestsPerSec, c.BytesPerSec = float64(c.Requests)/secs, float64(c.Bytes)/secs
	}
	if c.ServerCPU > 0 {
		c.RequestsPerCPU = float64(c.Requests) / c.ServerCPU
	}
	c.Outside = r.outside(win, cmd)
	return c, nil
}

// cellWindow is what one wrk run measured and the machine's state around it.
type cellWindow struct {
	wrk          wrkResult
	snap0, snap1 procSnapshot
	cpu0, cpu1   cpuStat
	elapsed      time.Duration
	origin       int64 // requests that reached the origin
}

// window runs the load generator (wrk, h2load or bench http, its output read by parse)
// between two readings of the origin's counter, /proc/stat and every process's CPU time,
// after pinning the servers' threads again.
func (r *compareRun) window(ctx context.Context, wrk *exec.Cmd, parse func(string) (wrkResult, error)) (cellWindow, error) {
	var w cellWindow
	if err := r.pinAll(); err != nil {
		return w, err
	}
	before, err := r.originRequests(ctx)
	if err != nil {
		return w, err
	}
	var out strings.Builder
	wrk.Stdout, wrk.Stderr = &out, &out
	wrk.SysProcAttr = ownGroup()
	if w.cpu0, err = readCPUStat(); err != nil {
		return w, err
	}
	w.snap0 = takeProcSnapshot()
	t0 := time.Now()
	limit := r.o.Duration + 30*time.Second
	if strings.HasSuffix(wrk.Path, "h2load") || slices.Contains(wrk.Args, "h2load") {
		limit = r.o.Duration + 10*time.Second
	}
	if err := runBounded(ctx, wrk, limit); err != nil {
		return w, fmt.Errorf("%s: %w: %s", strings.Join(wrk.Args, " "), err, out.String())
	}
	w.snap1, w.elapsed = takeProcSnapshot(), time.Since(t0)
	if w.cpu1, err = readCPUStat(); err != nil {
		return w, err
	}
	after, err := r.originRequests(ctx)
	if err != nil {
		return w, err
	}
	w.origin = max(0, after-before-1) // less the status request itself
	w.wrk, err = parse(out.String())
	return w, err
}

// outside is the window's outside load: the machine's busy time minus that of every process
// the run started (all servers, the origin, wrk) and the run itself.
func (r *compareRun) outside(w cellWindow, wrk *exec.Cmd) Disturbance {
	groups := map[int]bool{}
	for _, g := range r.groups() {
		groups[g] = true
	}
	self := os.Getpid()
	var ours uint64
	for g := range groups {
		ours += groupTicks(w.snap0, w.snap1, g)
	}
	if a, ok := w.snap1[self]; ok {
		ours += a.own - w.snap0[self].own
	}
	oursSec := ticksToSeconds(ours)
	if st := wrk.ProcessState; st != nil {
		oursSec += (st.UserTime() + st.SystemTime()).Seconds()
	}
	d := disturbance(w.cpu0, w.cpu1, oursSec, w.elapsed, r.o.Threshold)
	d.Load1 = loadAverage()
	isOurs := func(pid int, t procTimes) bool { return pid == self || groups[t.pgrp] }
	top := outsiders(w.snap0, w.snap1, isOurs, w.elapsed)
	for _, t := range top[:min(3, len(top))] {
		if t.Cores >= 0.01 {
			d.Top = append(d.Top, t)
		}
	}
	return d
}

// originRequests reads the origin's request counter.
func (r *compareRun) originRequests(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/__status", r.oport), nil)
	if err != nil {
		return 0, err
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, fmt.Errorf("origin status: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, fmt.Errorf("origin status: %w", err)
	}
	return parseStubStatus(string(b))
}

// errOverrun is a load generator still running long after its duration.
var errOverrun = errors.New("did not finish within")

// runBounded runs cmd (in its own process group) and kills the group if ctx ends or the
// limit passes.
func runBounded(ctx context.Context, cmd *exec.Cmd, limit time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return ctx.Err()
	case <-timer.C:
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("%w %v", errOverrun, limit)
	}
}

// pinAll keeps every server's threads on the server CPU and the origin's on the load CPU
// (re-pinning threads a server moved itself, once it started and again before each cell).
func (r *compareRun) pinAll() error {
	pins := map[*process]int{r.origin: r.o.LoadCPU}
	for _, p := range r.servers {
		pins[p] = r.o.ServerCPU
	}
	for p, cpu := range pins {
		moved, err := pinGroup(p.pgrp(), cpu)
		if err != nil {
			return err
		}
		if moved > 0 && !r.pinned[p.name] {
			r.logf("%s had moved %d thread(s) off CPU %d: pinned again", p.name, moved, cpu)
			r.pinned[p.name] = true
		}
	}
	return nil
}

// groups are the process groups the run started.
func (r *compareRun) groups() []int {
	var g []int
	if r.origin != nil {
		g = append(g, r.origin.pgrp())
	}
	for _, p := range r.servers {
		g = append(g, p.pgrp())
	}
	return g
}

// close stops every server and the origin and removes the work directory.
func (r *compareRun) close() {
	for name, p := range r.servers {
		p.stop(5 * time.Second)
		r.logf("stopped %s", name)
	}
	if r.origin != nil {
		r.origin.stop(5 * time.Second)
	}
	if r.work != "" {
		os.RemoveAll(r.work)
	}
}
