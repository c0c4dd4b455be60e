package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// compareBinary skips unless OUTPOST_COMPARE=1 and the peers are installed, and builds
// outpost for the run.
func compareBinary(t *testing.T) string {
	t.Helper()
	if os.Getenv("OUTPOST_COMPARE") != "1" || testing.Short() {
		t.Skip("set OUTPOST_COMPARE=1 (and no -short) to run the comparison against nginx, varnish, squid and trafficserver")
	}
	addSbinToPath()
	if pkgs, _ := missingPackages(CompareServers, lookTool); len(pkgs) > 0 {
		t.Skipf("missing Debian packages: %s", strings.Join(pkgs, " "))
	}
	bin := filepath.Join(t.TempDir(), "outpost")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/outpost").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestCompareEndToEnd runs `bench compare` for real with a 1 s duration and two rounds: the
// origin, Outpost and the four peers, every scenario. It needs the peers installed and
// OUTPOST_COMPARE=1 (it takes about two minutes and pins two CPUs, so CI does not run it).
func TestCompareEndToEnd(t *testing.T) {
	bin := compareBinary(t)
	var log bytes.Buffer
	// The same binary as its own baseline: the before/after rows and ratios (~1) come out too.
	o := CompareOptions{Outpost: bin, Baseline: bin, Loader: bin, Rounds: 2, Duration: time.Second, Connections: 20, ServerCPU: 0, LoadCPU: 1, Threshold: 0.15, Log: &log}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := RunCompare(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, c := range res.Cells {
		sc := scenarioByName(c.Scenario)
		if c.Requests == 0 || c.Errors > 0 || c.ServerCPU <= 0 && c.Server != "origin" {
			t.Errorf("round %d %s %s: %d requests, %d errors, %.2f CPU-s", c.Round, c.Scenario, c.Server, c.Requests, c.Errors, c.ServerCPU)
		}
		perReq := float64(c.OriginRequests) / float64(max(c.Requests, 1))
		if sc.Hit && perReq > 0.01 || sc.Miss && c.Server != "origin" && perReq < 0.99 {
			t.Errorf("round %d %s %s: %.3f origin requests per request", c.Round, c.Scenario, c.Server, perReq)
		}
	}
	// The TLS scenarios run on outpost, its baseline and nginx, or skip when this outpost has no
	// TLS listener yet.
	tlsScenarios, tlsTargets := 3, 4
	if len(res.Skipped) > 0 {
		tlsScenarios, tlsTargets = 0, 0
	}
	if want := 2 * (6*(len(CompareServers)+1) + 2 + 1 + 3*tlsScenarios); len(res.Cells) != want {
		t.Errorf("%d cells, want %d", len(res.Cells), want)
	}
	if len(res.Summary) != len(Scenarios)-3+tlsScenarios || len(res.Targets) != 8+tlsTargets {
		t.Errorf("%d summaries, %d targets (skipped %v)", len(res.Summary), len(res.Targets), res.Skipped)
	}
	var md bytes.Buffer
	if err := WriteCompare(&md, res); err != nil {
		t.Fatal(err)
	}
	if vs := res.Summary[0].Row("outpost").VsBaseline; vs == nil || vs.RequestsPerSec <= 0 {
		t.Errorf("hit1k: no ratio to the baseline (%+v)", vs)
	}
	for _, w := range []string{"| outpost |", "| outpost (baseline) |", "| nginx |", "| varnish |", "| squid |", "| trafficserver |", "| origin (direct) |"} {
		if !strings.Contains(md.String(), w) {
			t.Errorf("tables lack %q:\n%s", w, md.String())
		}
	}
	// Everything it started is gone: its process groups and its work directory.
	for _, g := range res.groups {
		if err := syscall.Kill(-g, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists after the run (%v)", g, err)
		}
	}
	if _, err := os.Stat(res.workDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work directory %s left behind (%v)", res.workDir, err)
	}
	t.Logf("\n%s", md.String())
}

// TestCompareInterrupt: Ctrl-C in the middle of a cell stops every server the run started and
// removes its directory. Gated like TestCompareEndToEnd.
func TestCompareInterrupt(t *testing.T) {
	bin := compareBinary(t)
	cmd := exec.Command(bin, "bench", "compare", "--no-append", "-d", "30s", "--scenarios", "hit1k")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Read the log until the last server started, then interrupt during the first cell.
	var pids []int
	var log strings.Builder
	buf := make([]byte, 4096)
	deadline := time.Now().Add(2 * time.Minute)
	for len(pids) < 1+len(CompareServers) && time.Now().Before(deadline) {
		n, err := stderr.Read(buf) // the run's progress lines, read as they come
		log.Write(buf[:n])
		if err != nil {
			break
		}
		pids = startedPIDs(log.String())
	}
	if len(pids) < 1+len(CompareServers) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("servers did not start:\n%s", log.String())
	}
	cmd.Process.Signal(os.Interrupt)
	for { // the rest of the log, until the run exits and closes it
		n, err := stderr.Read(buf)
		log.Write(buf[:n])
		if err != nil {
			break
		}
	}
	err = cmd.Wait()
	if err == nil {
		t.Error("an interrupted run exited 0")
	}
	if _, dir, ok := strings.Cut(strings.Split(log.String(), "\n")[0], "work directory "); !ok {
		t.Errorf("no work directory in the log:\n%s", log.String())
	} else if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work directory %s left behind (%v)", dir, err)
	}
	for _, pg := range pids {
		if err := syscall.Kill(-pg, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d survived the interrupt (%v)", pg, err)
		}
	}
}

// startedPIDs reads the "started NAME (pid N)" lines of a run's log.
func startedPIDs(log string) []int {
	var pids []int
	for _, l := range strings.Split(log, "\n") {
		_, rest, ok := strings.Cut(l, "(pid ")
		if !ok {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(rest, "%d)", &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestCompareTLS runs the TLS scenarios for real and briefly (about 15 s): Outpost and nginx,
// one round of 1 s cells, h2hit1k, tlsnew and tls1k. With an Outpost binary from before its TLS
// listener the scenarios skip, saying why, and the run still works. It needs nginx, wrk,
// h2load and two CPUs (it pins CPUs 0 and 1 for those seconds); -short skips it.
func TestCompareTLS(t *testing.T) {
	if testing.Short() || runtime.NumCPU() < 2 || runtime.GOOS != "linux" {
		t.Skip("-short, fewer than 2 CPUs, or not Linux")
	}
	addSbinToPath()
	for _, tool := range []string{"nginx", "wrk", "h2load", "taskset"} {
		if _, ok := lookTool(tool); !ok {
			t.Skipf("%s not installed", tool)
		}
	}
	// This tree's build: the Outpost measured, and the bench http that drives tlsnew.
	// OUTPOST_COMPARE_BINARY measures a given build (e.g. another branch's) instead.
	loader := filepath.Join(t.TempDir(), "outpost")
	if out, err := exec.Command("go", "build", "-o", loader, "../cmd/outpost").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bin := loader
	if b := os.Getenv("OUTPOST_COMPARE_BINARY"); b != "" {
		bin = b
	}
	var log bytes.Buffer
	scenarios := []string{"h2hit1k", "tlsnew", "tls1k"}
	o := CompareOptions{Outpost: bin, Loader: loader, Servers: []string{"outpost", "nginx"}, Scenarios: scenarios, Rounds: 1,
		Duration: time.Second, Connections: 10, ServerCPU: 0, LoadCPU: 1, Threshold: 2, Log: &log}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunCompare(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var md bytes.Buffer
	if err := WriteCompare(&md, res); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s\n%s", log.String(), md.String())
	if len(res.Skipped) > 0 {
		// This Outpost has no [proxy.tls]: every TLS scenario skips, cleanly.
		if len(res.Skipped) != 3 || len(res.Cells) != 0 || !strings.Contains(md.String(), "needs [proxy.tls]") {
			t.Errorf("skipped %v, %d cells", res.Skipped, len(res.Cells))
		}
		return
	}
	if len(res.Cells) != 2*len(scenarios) || len(res.Targets) != 4 {
		t.Errorf("%d cells, %d targets; want 6 and 4", len(res.Cells), len(res.Targets))
	}
	for _, c := range res.Cells {
		if c.Requests == 0 || c.Errors > 0 || c.ServerCPU <= 0 || float64(c.OriginRequests) > 0.01*float64(c.Requests) {
			t.Errorf("%s %s: %d requests, %d errors, %.2f CPU-s, %d origin requests", c.Scenario, c.Server, c.Requests, c.Errors, c.ServerCPU, c.OriginRequests)
		}
	}
	for _, g := range res.groups {
		if err := syscall.Kill(-g, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists after the run (%v)", g, err)
		}
	}
	if _, err := os.Stat(res.workDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work directory %s left behind (%v)", res.workDir, err)
	}
}
