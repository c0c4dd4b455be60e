package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/bench"
)

// shortLab is the lab shortened for tests: a fast health check and fewer loads.
func shortLab(bin string) bench.LabOptions {
	return bench.LabOptions{Binary: bin, Delays: bench.DefaultLabDelays(), PageObjects: 4, WarmRuns: 2, FailRegion: 1,
		ParentTier: "auto", Health: bench.LabHealth{Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond, Fall: 2, Rise: 1}}
}

// shortLabArgs are the same options as flags.
var shortLabArgs = []string{"lab", "--objects=4", "--warm-runs=2", "--health-interval=200ms", "--health-timeout=150ms", "--health-fall=2", "--health-rise=1"}

// labBinary builds the binary and skips unless the test can make network namespaces.
func labBinary(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("outpost lab needs root (network namespaces); CI runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("outpost lab needs ip (Debian package iproute2)")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// netnsWith lists the named network namespaces with a prefix (`ip netns list`).
func netnsWith(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		if prefix != "" && strings.HasPrefix(l, prefix) {
			got = append(got, l)
		}
	}
	return got
}

// processesWith counts live processes whose command line mentions s.
func processesWith(s string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) && e.Name() != "self" {
			n++
		}
	}
	return n
}

// TestLab runs the shortened lab end to end: steering, cold and warm loads, failover, purge,
// and a clean-up that leaves nothing (acceptance 1, 2, 3 and 5 of issue 12, as far as edges
// without a parent tier go).
func TestLab(t *testing.T) {
	bin := labBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := bench.RunLab(ctx, shortLab(bin))
	if bench.IsUsage(err) {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	bench.WriteLab(&out, res)
	t.Logf("lab result:\n%s", out.String())
	if !res.Leftover.Zero() {
		t.Errorf("leftover after a normal run: %+v", res.Leftover)
	}
	if got := netnsWith(t, res.Prefix); len(got) > 0 {
		t.Errorf("ip netns list still shows %v", got)
	}
	for _, r := range res.Regions {
		if r.EdgeAnswered != r.EdgeExpected {
			t.Errorf("%s answered with %s, want its near edge %s", r.Name, r.EdgeAnswered, r.EdgeExpected)
		}
		if r.ColdMS <= r.WarmMS || r.ColdMS < r.ModelColdMS*0.8 {
			t.Errorf("%s: cold %.1f ms should include the origin legs (model %.1f), and exceed warm %.1f", r.Name, r.ColdMS, r.ModelColdMS, r.WarmMS)
		}
		if r.WarmHits.Edge == 0 || r.WarmHits.Miss != 0 {
			t.Errorf("%s: warm loads should all hit the edge, got %s", r.Name, r.WarmHits)
		}
	}
	if res.OriginRequestsPerObject < 1 {
		t.Errorf("origin requests per object = %d: the origin log was not read", res.OriginRequestsPerObject)
	}
	if strings.HasPrefix(res.ParentTier, "on") && res.OriginRequestsPerObject != 1 {
		t.Errorf("with a parent tier the origin should see each object once, saw %d", res.OriginRequestsPerObject)
	}
	f := res.Failover
	if f.EdgeStopped != "edge1" || f.EdgeAfter != "edge2" || !f.PageOK {
		t.Errorf("failover: %+v, want edge1 stopped, region1 moved to edge2 and its page loading", f)
	}
	if f.Seconds > f.BoundSeconds+2 {
		t.Errorf("failover took %.3fs, the health check's bound is %.3fs", f.Seconds, f.BoundSeconds)
	}
	p := res.Purge
	if p.Status != 200 || len(p.StillServing) != p.TiersStillServing || strings.Contains(strings.Join(p.StillServing, ","), p.PurgedAt) {
		t.Errorf("purge: %+v: the edge that took the PURGE must have dropped the object", p)
	}
	if strings.HasPrefix(res.ParentTier, "on") && (p.TiersStillServing != 0 || !p.Converged || p.Seconds > 1) {
		t.Errorf("purge: %+v: with the parent tier one PURGE must reach every edge and the parent within 1 s", p)
	}
	if res.Seconds > 30 {
		t.Errorf("the shortened lab took %.1fs, want under 30s", res.Seconds)
	}
}

// startLabMidway starts `outpost lab` and returns it once its measurements began, with the
// run's namespace prefix.
func startLabMidway(t *testing.T, bin string, stdout *bytes.Buffer) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append(shortLabArgs, "--json")...)
	cmd.Stdout = stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	midway := make(chan string, 1)
	var logged bytes.Buffer
	prefix := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logged.WriteString(line + "\n")
			if p, _, ok := strings.Cut(strings.TrimPrefix(line, "lab: "), "*: "); ok && strings.HasPrefix(p, "olab-") {
				prefix <- p
			}
			if strings.Contains(line, "links done") {
				midway <- line
			}
		}
		close(midway)
	}()
	select {
	case _, ok := <-midway:
		if !ok {
			cmd.Wait()
			if strings.Contains(logged.String(), "unavailable") {
				t.Skipf("network namespaces unavailable: %s", logged.String())
			}
			t.Fatalf("the lab ended before its measurements:\n%s", logged.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the lab did not reach its measurements within 60s")
	}
	return cmd, <-prefix
}

// waitExit waits up to 30 s for a process to end.
func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the lab did not exit within 30s")
	}
	return nil
}

// TestLabInterrupted sends SIGINT to a running `outpost lab` midway and checks that it removed
// every namespace, link and process it made (acceptance 5 of issue 12).
func TestLabInterrupted(t *testing.T) {
	bin := labBinary(t)
	var stdout bytes.Buffer
	cmd, prefix := startLabMidway(t, bin, &stdout)
	cmd.Process.Signal(syscall.SIGINT)
	err := waitExit(t, cmd)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("an interrupted lab should fail, got %v", err)
	}
	var res bench.LabResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("no JSON result after the interrupt: %v\n%s", err, stdout.String())
	}
	if res.Prefix != prefix || !res.Leftover.Zero() {
		t.Errorf("after SIGINT: prefix %q (want %q), leftover %+v", res.Prefix, prefix, res.Leftover)
	}
	if got := netnsWith(t, prefix); len(got) > 0 {
		t.Errorf("ip netns list still shows %v", got)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(prefix, "olab-"), "-")
	if n := processesWith("outpost-lab-" + id); n > 0 {
		t.Errorf("%d processes of the run are still alive", n)
	}
}

// TestLabKilledThenCleanStale kills a running lab with SIGKILL (no clean-up possible): its
// servers die with it (parent-death signal), its namespaces stay, and `outpost lab
// --clean-stale` removes them.
func TestLabKilledThenCleanStale(t *testing.T) {
	bin := labBinary(t)
	var stdout bytes.Buffer
	cmd, prefix := startLabMidway(t, bin, &stdout)
	cmd.Process.Kill()
	waitExit(t, cmd)
	id := strings.TrimSuffix(strings.TrimPrefix(prefix, "olab-"), "-")
	deadline := time.Now().Add(10 * time.Second)
	for processesWith("outpost-lab-"+id) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the killed lab's servers are still running")
		}
		time.Sleep(20 * time.Millisecond) // polling the kernel's reaping, not synchronising
	}
	if len(netnsWith(t, prefix)) == 0 {
		t.Fatal("a SIGKILLed lab cannot clean up, yet its namespaces are gone")
	}
	out, err := exec.Command(bin, "lab", "--clean-stale").CombinedOutput()
	if err != nil || !strings.Contains(string(out), prefix) {
		t.Fatalf("lab --clean-stale: %v\n%s", err, out)
	}
	if got := netnsWith(t, prefix); len(got) > 0 {
		t.Errorf("after --clean-stale ip netns list still shows %v", got)
	}
}

// TestLabConcurrentRuns runs two labs at once in one process: their names never collide and
// each cleans up only its own.
func TestLabConcurrentRuns(t *testing.T) {
	bin := labBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type run struct {
		res *bench.LabResult
		err error
	}
	runs := make(chan run, 2)
	for range 2 {
		go func() {
			o := shortLab(bin)
			o.WarmRuns = 1
			res, err := bench.RunLab(ctx, o)
			runs <- run{res, err}
		}()
	}
	var prefixes []string
	for range 2 {
		r := <-runs
		if bench.IsUsage(r.err) {
			t.Skipf("network namespaces unavailable: %v", r.err)
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !r.res.Leftover.Zero() {
			t.Errorf("%s left %+v", r.res.Prefix, r.res.Leftover)
		}
		for _, reg := range r.res.Regions {
			if reg.EdgeAnswered != reg.EdgeExpected {
				t.Errorf("%s: %s answered with %s", r.res.Prefix, reg.Name, reg.EdgeAnswered)
			}
		}
		prefixes = append(prefixes, r.res.Prefix)
	}
	if prefixes[0] == prefixes[1] {
		t.Fatalf("two runs shared the prefix %s", prefixes[0])
	}
}

// TestLabCleansUpOnError runs the lab with servers that cannot start: the run fails and leaves
// nothing behind.
func TestLabCleansUpOnError(t *testing.T) {
	labBinary(t)
	o := shortLab("/bin/false")
	res, err := bench.RunLab(context.Background(), o)
	if bench.IsUsage(err) {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("want a start-up error, got %v", err)
	}
	if res == nil || !res.Leftover.Zero() {
		t.Fatalf("leftover after an error: %+v", res)
	}
	if got := netnsWith(t, res.Prefix); len(got) > 0 {
		t.Errorf("ip netns list still shows %v", got)
	}
}

// TestLabNeedsRoot: without root, `outpost lab` says so and exits with status 2.
func TestLabNeedsRoot(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "lab")
	if os.Geteuid() == 0 {
		// Run it as nobody: the binary's directory must be reachable for that user.
		os.Chmod(filepath.Dir(bin), 0o755)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "needs root") {
		t.Fatalf("outpost lab without root: %v, %s; want exit status 2 saying it needs root", err, out)
	}
}
