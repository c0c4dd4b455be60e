package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       procTimes
		err        bool
	}{
		{"plain", "123 (nginx) S 1 123 123 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 1000 1000 100",
			procTimes{comm: "nginx", ppid: 1, pgrp: 123, own: 300, children: 10}, false},
		{"spaces and parens in the name", "77 (a (b) c) R 5 70 70 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 0 0 0",
			procTimes{comm: "a (b) c", ppid: 5, pgrp: 70, own: 3, children: 7}, false},
		{"short", "1 (x) S 1 2", procTimes{}, true},
		{"no name", "1 x S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", procTimes{}, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u 2 3 4 20", procTimes{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat(tc.line)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseCPUStat(t *testing.T) {
	b := []byte("cpu  100 5 50 900 3 0 20 7 0 0\ncpu0 50 2 25 450 1 0 10 3 0 0\nintr 1\n")
	got, err := parseCPUStat(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpuStat{busy: 155, steal: 7, total: 1085}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseCPUStat([]byte("cpu0 1 2 3\n")); err == nil {
		t.Error("no aggregate line: want an error")
	}
}

// TestDisturbance: the outside load is the machine's busy time (and steal) beyond what the
// run's own processes used, in cores over the window.
func TestDisturbance(t *testing.T) {
	for _, tc := range []struct {
		name          string
		busy, steal   uint64 // ticks in the window
		ours          float64
		window        time.Duration
		wantOutside   float64
		wantDisturbed bool
	}{
		{"quiet: only ours", 195, 0, 1.95, time.Second, 0, false},
		{"ours measured above busy (rounding)", 190, 0, 1.95, time.Second, 0, false},
		{"a compiler on the other core", 300, 0, 1.9, 2 * time.Second, 0.55, true},
		{"just under the threshold", 209, 0, 1.95, time.Second, 0.14, false},
		{"steal counts", 180, 40, 1.8, time.Second, 0.4, true},
		{"empty window", 100, 0, 0, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := cpuStat{busy: 1000, steal: 10}
			a := cpuStat{busy: 1000 + tc.busy, steal: 10 + tc.steal}
			d := disturbance(b, a, tc.ours, tc.window, 0.15)
			if math.Abs(d.OutsideCores-tc.wantOutside) > 1e-9 || d.Disturbed != tc.wantDisturbed {
				t.Errorf("got outside %.3f disturbed %v, want %.3f %v", d.OutsideCores, d.Disturbed, tc.wantOutside, tc.wantDisturbed)
			}
		})
	}
}

// TestOutsiders names the processes the run did not start by the CPU they used in the window,
// counting a child that exited in it by its parent's reaped time, less what it had used
// before the window.
func TestOutsiders(t *testing.T) {
	before := procSnapshot{
		10: {comm: "bash", ppid: 1, pgrp: 10, own: 5, children: 1000},
		11: {comm: "go", ppid: 10, pgrp: 11, own: 300, children: 50}, // exits in the window
		20: {comm: "nginx", ppid: 1, pgrp: 20, own: 100},             // ours
		30: {comm: "gopls", ppid: 1, pgrp: 30, own: 40},
		12: {comm: "make", ppid: 10, pgrp: 12, own: 10},    // exits in the window, after reaping its child
		13: {comm: "x.test", ppid: 12, pgrp: 12, own: 900}, // exits in the window
	}
	after := procSnapshot{
		// bash reaped go (350 before + 80 in the window) and make (10 + 1, with x.test's 900 + 9).
		10: {comm: "bash", ppid: 1, pgrp: 10, own: 5, children: 1000 + 350 + 80 + 11 + 909},
		20: {comm: "nginx", ppid: 1, pgrp: 20, own: 300},
		30: {comm: "gopls", ppid: 1, pgrp: 30, own: 60},
		40: {comm: "compile", ppid: 1, pgrp: 40, own: 30}, // started in the window
	}
	got := outsiders(before, after, func(_ int, p procTimes) bool { return p.pgrp == 20 }, time.Second)
	want := []outsider{{"bash", 0.9}, {"compile", 0.3}, {"gopls", 0.2}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Comm != want[i].Comm || math.Abs(got[i].Cores-want[i].Cores) > 1e-9 {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
	if g := groupTicks(before, after, 20); g != 200 {
		t.Errorf("groupTicks = %d, want 200", g)
	}
}

// TestProcessStopsItsGroup: stop ends the started process and what it forked, and nothing
// else.
func TestProcessStopsItsGroup(t *testing.T) {
	bystander := exec.Command("sleep", "60")
	if err := bystander.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { bystander.Process.Kill(); bystander.Wait() }()
	dir := t.TempDir()
	// The shell forks a child that ignores SIGTERM; the group's SIGKILL must end it too.
	p, err := startProcess("group", exec.Command("sh", "-c", "trap '' TERM; sleep 60 & echo started; wait"), filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readFile(t, p.log), "started") {
		if time.Now().After(deadline) {
			t.Fatal("the shell did not start")
		}
		time.Sleep(10 * time.Millisecond) // polling the log for a condition, with a deadline
	}
	p.stop(100 * time.Millisecond)
	if err := syscall.Kill(-p.pgrp(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still has members (kill 0: %v)", p.pgrp(), err)
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process the run did not start was hit: %v", err)
	}
}

func readFile(t *testing.T, f string) string {
	t.Helper()
	b, _ := os.ReadFile(f)
	return string(b)
}

func TestParseWrk(t *testing.T) {
	out := "Running 1s test @ http://127.0.0.1:1/obj.bin\n  1 threads and 50 connections\noutpost-compare 1000 1234567 2000000 1 2 3 4 5 40 90 900 5000\n"
	got, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 1000, Bytes: 1234567, Elapsed: 2 * time.Second, Errors: 15, Status: 4,
		P50: 40 * time.Microsecond, P90: 90 * time.Microsecond, P99: 900 * time.Microsecond, Max: 5 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "unable to connect to 127.0.0.1:1 Connection refused\n", "outpost-compare 1 2 x 4 5 6 7 8 9 10 11 12\n"} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("parseWrk(%q): want an error", bad)
		}
	}
}

func TestParseStubStatus(t *testing.T) {
	n, err := parseStubStatus("Active connections: 3 \nserver accepts handled requests\n 16 16 1234 \nReading: 0 Writing: 1 Waiting: 2 \n")
	if err != nil || n != 1234 {
		t.Fatalf("got %d, %v; want 1234", n, err)
	}
	if _, err := parseStubStatus("<html>404</html>"); err == nil {
		t.Error("want an error for a page without the counter")
	}
}

func TestWrkScriptsAndArgs(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		want     []string
		args     []string
	}{
		{"hit1k", []string{"done = function"}, []string{"-c50", "http://x/obj.bin"}},
		{"pipe16", []string{"for i = 1, 16 do", `wrk.format(nil, "/obj.bin")`}, []string{"-c50"}},
		{"miss", []string{`"/miss/obj.bin?c=7&n=" .. n`, "n = n + 1"}, []string{"-c50"}},
		{"close", []string{"done = function"}, []string{"-H", "Connection: close"}},
		{"forward", []string{`wrk.format("GET", "http://127.0.0.1:9/obj.bin", {Host = "127.0.0.1:9"})`}, []string{"-c50"}},
		{"misslat", []string{`"/miss/obj.bin?c=7&n=" .. n`}, []string{"-c1"}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			sc := scenarioByName(tc.scenario)
			s := wrkScript(sc, "7", "127.0.0.1:9")
			for _, w := range append(tc.want, "outpost-compare", "latency:percentile(99)") {
				if !strings.Contains(s, w) {
					t.Errorf("script lacks %q:\n%s", w, s)
				}
			}
			args := strings.Join(wrkArgs(sc, 50, 3*time.Second, "s.lua", "http://x"+sc.Path), " ")
			for _, w := range append(tc.args, "-t1", "-d3s", "-s s.lua") {
				if !strings.Contains(args, w) {
					t.Errorf("args %q lack %q", args, w)
				}
			}
		})
	}
}

// TestServerConfigs checks the configuration each server is given: loopback only, the
// origin's port, caching on, logs off.
func TestServerConfigs(t *testing.T) {
	e := serverEnv{dir: "/w/x", port: 4001, origin: 4000, www: "/w/www", cpu: 0}
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"origin", originConf(serverEnv{dir: "/w/o", port: 4000, www: "/w/www"}), []string{"listen 127.0.0.1:4000;", "root /w/www;",
			`location /miss/ { alias /w/www/; add_header Cache-Control "no-store"; }`, `add_header Cache-Control "max-age=3600"`, "stub_status", "access_log off", "daemon off"}},
		{"outpost", outpostConf(e), []string{`listen = ["127.0.0.1:4001"]`, `origins = ["http://127.0.0.1:4000"]`, `data_dir = "/w/x/data"`, `destination = "off"`}},
		{"nginx", nginxConf(e), []string{"listen 127.0.0.1:4001;", "server 127.0.0.1:4000; keepalive 64;", "proxy_cache c;", "proxy_cache_path /w/x/cache", "access_log off", "worker_processes 1;"}},
		{"varnish", strings.Join(varnishArgs(e), " "), []string{"-a 127.0.0.1:4001", "-b 127.0.0.1:4000", "-T 127.0.0.1:0", "-s malloc,256m", "thread_pools=1", "-F"}},
		{"squid", squidConf(e), []string{"http_port 127.0.0.1:4001 accel", "cache_peer 127.0.0.1 parent 4000 0 no-query originserver", "cache_mem 256 MB", "access_log none", "icp_port 0"}},
		{"ats", atsRecords(e), []string{"server_ports STRING 4001:ipv4:ip-in=127.0.0.1", "exec_thread.limit INT 1", "logging_enabled INT 0", "reverse_proxy.enabled INT 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !strings.Contains(tc.text, w) {
					t.Errorf("lacks %q:\n%s", w, tc.text)
				}
			}
			if strings.Contains(tc.text, "@") || strings.Contains(tc.text, "0.0.0.0") {
				t.Errorf("unfilled placeholder or wildcard address:\n%s", tc.text)
			}
		})
	}
	yaml := "prefix: /usr\nsysconfdir: /etc/trafficserver\nlogdir: /var/log/trafficserver\n  nested: x\n"
	got := atsRunroot(yaml, "/r")
	for _, w := range []string{"prefix: /usr", "sysconfdir: /r/etc/trafficserver", "logdir: /r/log", "  nested: x"} {
		if !strings.Contains(got, w) {
			t.Errorf("runroot lacks %q:\n%s", w, got)
		}
	}
}

func TestOutpostFreeEnv(t *testing.T) {
	got := outpostFreeEnv([]string{"PATH=/bin", "OUTPOST_COMPARE=1", "OUTPOST_PROXY_LISTEN=x", "GOMAXPROCS=8", "GOGC=200"})
	if want := []string{"PATH=/bin", "GOGC=200"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPinned(t *testing.T) {
	if got := strings.Join(pinned(1, 0, "wrk", "-t1").Args, " "); got != "taskset -c 1 wrk -t1" {
		t.Errorf("got %q", got)
	}
	if got := strings.Join(pinned(0, -10, "nginx").Args, " "); got != "nice -n -10 taskset -c 0 nginx" {
		t.Errorf("got %q", got)
	}
}

// TestBaseline: a second Outpost binary is a row of its own, no peer, and Outpost's ratios to
// it are per round.
func TestBaseline(t *testing.T) {
	cells := append(syntheticCells(),
		cell(1, "hit1k", "baseline", 40000, 45000, 600*us, 9000*us, false),
		cell(3, "hit1k", "baseline", 60000, 90000, 600*us, 9000*us, false))
	o := CompareOptions{Baseline: "/old", Rounds: 2, Duration: time.Second, Connections: 1, LoadCPU: 1, Threshold: 0.1}
	if err := o.Validate(); err != nil || !slices.Equal(o.Servers, []string{"outpost", "baseline", "nginx", "varnish", "squid", "ats"}) {
		t.Fatalf("servers %v, %v", o.Servers, err)
	}
	sum := Summarise(cells, []string{"hit1k"})
	h := sum[0]
	if h.BestPeer != "nginx" || h.Rows[1].Server != "baseline" {
		t.Fatalf("best peer %s, rows %v", h.BestPeer, h.Rows)
	}
	vs := h.Row("outpost").VsBaseline
	if vs == nil || math.Abs(float64(vs.RequestsPerSec)-(2+1.5)/2) > 1e-9 || math.Abs(float64(vs.RequestsPerCPU)-(2+1.1)/2) > 1e-9 {
		t.Fatalf("vs baseline %+v, want 1.75 and 1.55", vs)
	}
	var b bytes.Buffer
	WriteMarkdownTable(&b, summaryTable(sum))
	if !strings.Contains(b.String(), "| outpost ÷ baseline |") || !strings.Contains(b.String(), "| 50.0k/s | 1.75 | 1.55 |") {
		t.Errorf("summary:\n%s", b.String())
	}
}

func TestMissingPackages(t *testing.T) {
	have := map[string]bool{"taskset": true, "nginx": true, "squid": true}
	look := func(b string) (string, bool) { return "/usr/bin/" + b, have[b] }
	pkgs, alts := missingPackages([]string{"outpost", "nginx", "varnish", "squid", "ats"}, look)
	if want := []string{"wrk", "nghttp2-client", "varnish", "trafficserver"}; !slices.Equal(pkgs, want) {
		t.Errorf("packages %v, want %v (%v)", pkgs, want, alts)
	}
	have["nginx"] = false
	pkgs, alts = missingPackages([]string{"outpost"}, look)
	if !slices.Equal(pkgs, []string{"wrk", "nghttp2-client", "nginx-light"}) || !slices.Contains(alts, "nginx-light or nginx") {
		t.Errorf("outpost alone needs wrk, h2load and the origin: %v %v", pkgs, alts)
	}
}

// cell makes a synthetic cell.
func cell(round int, scenario, server string, rps, perCPU float64, p50, p99 time.Duration, disturbed bool) Cell {
	return Cell{Round: round, Scenario: scenario, Server: server, RequestsPerSec: rps, RequestsPerCPU: perCPU, BytesPerSec: rps * 1024,
		wrkResult: wrkResult{Requests: int64(rps), P50: p50, P99: p99}, Outside: Disturbance{Disturbed: disturbed}}
}

const us = time.Microsecond

func syntheticCells() []Cell {
	return []Cell{
		// hit1k: round 2 is disturbed (an outside process during varnish's cell) and left out.
		cell(1, "hit1k", "outpost", 80000, 90000, 500*us, 8000*us, false),
		cell(1, "hit1k", "nginx", 50000, 60000, 700*us, 2000*us, false),
		cell(1, "hit1k", "varnish", 40000, 70000, 900*us, 1500*us, false),
		cell(2, "hit1k", "outpost", 10000, 90000, 500*us, 8000*us, false),
		cell(2, "hit1k", "nginx", 50000, 60000, 700*us, 2000*us, false),
		cell(2, "hit1k", "varnish", 5000, 70000, 900*us, 1500*us, true),
		cell(3, "hit1k", "outpost", 90000, 99000, 400*us, 6000*us, false),
		cell(3, "hit1k", "nginx", 60000, 66000, 600*us, 3000*us, false),
		cell(3, "hit1k", "varnish", 30000, 60000, 800*us, 2000*us, false),
		// forward: ratio to Outpost's reverse hit1k of the same round.
		cell(1, "forward", "outpost", 72000, 85000, 520*us, 8000*us, false),
		cell(2, "forward", "outpost", 76000, 85000, 520*us, 8000*us, false),
		cell(3, "forward", "outpost", 81000, 85000, 520*us, 8000*us, false),
		// misslat: both rounds disturbed, so both are used, marked.
		cell(1, "misslat", "outpost", 5000, 6000, 190*us, 900*us, true),
		cell(1, "misslat", "nginx", 7000, 9000, 140*us, 500*us, false),
		cell(1, "misslat", "origin", 60000, 99000, 20*us, 40*us, false),
		cell(2, "misslat", "outpost", 5000, 6000, 170*us, 900*us, false),
		cell(2, "misslat", "nginx", 7000, 9000, 150*us, 500*us, true),
		cell(2, "misslat", "origin", 60000, 99000, 10*us, 40*us, false),
	}
}

func TestSummarise(t *testing.T) {
	sum := Summarise(syntheticCells(), []string{"hit1k", "pipe16", "forward", "misslat"})
	if len(sum) != 3 {
		t.Fatalf("%d summaries, want 3 (pipe16 did not run)", len(sum))
	}
	h := sum[0]
	if !slices.Equal(h.Used, []int{1, 3}) || !slices.Equal(h.Disturbed, []int{2}) || h.AllDisturbed {
		t.Errorf("hit1k rounds used %v disturbed %v all %v", h.Used, h.Disturbed, h.AllDisturbed)
	}
	if h.BestPeer != "nginx" || h.BestPeerCPU != "varnish" || h.BestPeerP99 != "varnish" {
		t.Errorf("best peers %s %s %s", h.BestPeer, h.BestPeerCPU, h.BestPeerP99)
	}
	o := h.Row("outpost")
	// Per round: 80/50 = 1.6 and 90/60 = 1.5, median 1.55; per CPU 90/70, 99/66; p99 8/1.5, 6/2.
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"req/s ratio", float64(o.Ratio.RequestsPerSec), 1.55},
		{"req/CPU-s ratio", float64(o.Ratio.RequestsPerCPU), (90000.0/70000 + 99000.0/66000) / 2},
		{"p99 ratio", float64(o.Ratio.P99), (8000.0/1500 + 6000.0/2000) / 2},
		{"p50 ratio", float64(o.Ratio.P50), (500.0/700 + 400.0/600) / 2},
		{"req/s median", o.RequestsPerSec, 85000},
		{"nginx ratio", float64(h.Row("nginx").Ratio.RequestsPerSec), 1},
		{"varnish ratio", float64(h.Row("varnish").Ratio.RequestsPerSec), (0.8 + 0.5) / 2},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	f := sum[1]
	// Round 2's hit1k was disturbed in varnish's cell, not Outpost's: forward keeps it.
	if f.Baseline != "outpost reverse (hit1k)" || !slices.Equal(f.Used, []int{1, 2, 3}) {
		t.Errorf("forward baseline %q used %v", f.Baseline, f.Used)
	}
	if got, want := float64(f.Row("outpost").Ratio.RequestsPerSec), 0.9; math.Abs(got-want) > 1e-9 { // 0.9, 7.6, 0.9
		t.Errorf("forward vs reverse = %v, want %v", got, want)
	}
	m := sum[2]
	if !m.AllDisturbed || !slices.Equal(m.Used, []int{1, 2}) {
		t.Errorf("misslat all disturbed %v used %v", m.AllDisturbed, m.Used)
	}
	if got := m.Row("outpost").AddedP50; got != 165*us {
		t.Errorf("added p50 = %v, want 165µs (170 and 160)", got)
	}
	if m.BestPeer != "nginx" {
		t.Errorf("the origin is no peer: best %q", m.BestPeer)
	}

	targets := CheckTargets(sum)
	byName := map[string]TargetCheck{}
	for _, tc := range targets {
		byName[tc.Target] = tc
	}
	for _, c := range []struct {
		target string
		met    bool
		note   bool
	}{
		{"hit1k req/s vs best peer", true, false},
		{"forward vs reverse at hit1k", false, false},
		{"hit1k p99 vs best peer's p99", false, false},
		{"miss p50 added over a direct origin fetch", false, true},
	} {
		tc, ok := byName[c.target]
		if !ok {
			t.Errorf("no target %q in %+v", c.target, targets)
			continue
		}
		if tc.Met != c.met || (tc.Note != "") != c.note {
			t.Errorf("%s: met %v note %q, want met %v note %v", c.target, tc.Met, tc.Note, c.met, c.note)
		}
	}
	if _, ok := byName["pipe16 req/s vs best peer"]; ok {
		t.Error("a target for a scenario that did not run")
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1}, 2.5}, {[]float64{7}, 7}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) || fmtRatio(Metric(median(nil))) != "–" {
		t.Error("median of nothing is NaN, shown as a dash")
	}
}

// syntheticResult is a run of three rounds made of syntheticCells, one cell disturbed by "go".
func syntheticResult() *CompareResult {
	cells := syntheticCells()
	cells[5].Outside.Top = []outsider{{"go", 1.2}}
	cells[5].Outside.OutsideCores = 1.3
	sum := Summarise(cells, []string{"hit1k", "forward", "misslat"})
	return &CompareResult{Command: "outpost bench compare --rounds 3", Date: time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC),
		Commit: "abc123", Outpost: "(devel)", Versions: map[string]string{"nginx": "nginx-light 1.22"}, Cells: cells, Summary: sum,
		Targets: CheckTargets(sum), Facts: []Fact{{"CPUs", "2"}},
		Options: compareOptsJSON{Servers: []string{"outpost", "nginx", "varnish"}, Scenarios: []string{"hit1k", "forward", "misslat"}, Rounds: 3, Duration: 5 * time.Second, Connections: 50, ServerCPU: 0, LoadCPU: 1, Threshold: 0.15}}
}

// TestCompareJSONAndReport: --json is the whole result, --report an HTML page of the tables.
func TestCompareJSONAndReport(t *testing.T) {
	res := syntheticResult()
	// A run without peers has no ratios: NaN, which must encode (as null), not fail.
	res.Summary[0].Rows[0].Ratio.P99 = Metric(math.NaN())
	var b bytes.Buffer
	if err := writeJSON(&b, res); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Command string `json:"command"`
		Cells   []struct {
			Server  string      `json:"server"`
			Outside Disturbance `json:"outside"`
		} `json:"cells"`
		Summary []ScenarioSummary `json:"summary"`
		Targets []TargetCheck     `json:"targets"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Command != res.Command || len(back.Cells) != len(res.Cells) || !back.Cells[5].Outside.Disturbed || len(back.Summary) != 3 || len(back.Targets) != len(res.Targets) {
		t.Errorf("JSON round trip: %s", b.String()[:min(600, b.Len())])
	}
	if !strings.Contains(b.String(), `"p99": null`) || !math.IsNaN(float64(back.Summary[0].Rows[0].Ratio.P99)) {
		t.Error("a missing ratio is not null in JSON")
	}
	file := filepath.Join(t.TempDir(), "compare.html")
	if err := compareReport(&cobra.Command{Use: "compare"}, res, file); err != nil {
		t.Fatal(err)
	}
	checkFile(t, file, "<!doctype html>", "Targets (issues 11 and 13)", "outpost (baseline)"[:7], "hit1k: 1 KiB hit")
}

// TestWriteCompare checks the markdown: the command, the disturbed marks, every table.
func TestWriteCompare(t *testing.T) {
	res := syntheticResult()
	var b bytes.Buffer
	if err := WriteCompare(&b, res); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{
		"## outpost bench compare, 2026-12-03 17:00 UTC",
		"    outpost bench compare --rounds 3\n",
		"commit abc123",
		"nginx: nginx-light 1.22",
		"| scenario | best peer | best peer rate | outpost rate | ratio |",
		"| hit1k | nginx | 55.0k/s | 85.0k/s | 1.55 |",
		"1,3 (2 disturbed)",
		"| forward | outpost reverse (hit1k) |",
		"| miss p50 added over a direct origin fetch | ≤ 100µs | 165µs | no (every round disturbed) |",
		"| 2 | hit1k | 10.0k | 50.0k | 5000* |",
		"go 1.20",
		"| origin (direct) |",
		"p50 − direct",
		"round 2 disturbed and left out",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	file := filepath.Join(t.TempDir(), "RESULTS.md")
	os.WriteFile(file, []byte("# Results\n"), 0o644)
	if err := AppendCompare(file, res); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, file); !strings.HasPrefix(got, "# Results\n\n## outpost bench compare") || !strings.HasSuffix(got, out) {
		t.Errorf("appended file:\n%s", got)
	}
	if err := AppendCompare(filepath.Join(t.TempDir(), "missing.md"), res); err == nil {
		t.Error("appending to a missing file: want an error")
	}
}

// TestPinGroup: a thread that moved itself off the server CPU is pinned back, once.
func TestPinGroup(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	p, err := startProcess("sleeper", exec.Command("sleep", "60"), filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Skip("no sleep:", err)
	}
	defer p.stop(time.Second)
	var both unix.CPUSet
	both.Set(0)
	both.Set(1)
	if err := unix.SchedSetaffinity(p.pgrp(), &both); err != nil {
		t.Fatal(err)
	}
	if moved, err := pinGroup(p.pgrp(), 1); err != nil || moved != 1 {
		t.Fatalf("moved %d, %v; want 1 thread pinned", moved, err)
	}
	var got unix.CPUSet
	if err := unix.SchedGetaffinity(p.pgrp(), &got); err != nil || got.Count() != 1 || !got.IsSet(1) {
		t.Errorf("affinity after pinning: %v (%v)", got, err)
	}
	if moved, err := pinGroup(p.pgrp(), 1); err != nil || moved != 0 {
		t.Errorf("second pin moved %d, %v; want nothing to do", moved, err)
	}
}

// TestBinaryCommit reads the commit a binary was built from.
func TestBinaryCommit(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	_, commit := binaryCommit(exe)
	if commit == "" {
		t.Error("empty commit")
	}
	bin := filepath.Join(t.TempDir(), "stamped")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=abc1234", "-o", bin, "../cmd/outpost").CombinedOutput(); err != nil {
		t.Skipf("go build: %v\n%s", err, out)
	}
	// The -ldflags version, unless the toolchain stamped the VCS revision, which wins.
	if _, commit := binaryCommit(bin); commit != "abc1234" && len(strings.Fields(commit)[0]) != 40 {
		t.Errorf("commit = %q, want abc1234 (or a VCS revision)", commit)
	}
}
