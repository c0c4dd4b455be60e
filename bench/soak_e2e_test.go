package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSoakEndToEnd runs `outpost bench soak -d 60s` for real: it builds the binary, which
// starts its own suite (`outpost up`) on free ports with a temporary data_dir, drives the
// whole traffic mix with the fault schedule, and must pass every check. It adds about 95 s
// to `go test ./bench/` (60 s of faults, a 10 s warm-up, the idle baselines and the final
// checks); -short skips it.
func TestSoakEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s soak; run without -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "outpost")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/outpost").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	report := filepath.Join(dir, "soak.html")
	work := filepath.Join(dir, "work")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "soak", "-d", "60s", "--warmup", "10s", "--json", "--report", report, "--work-dir", work)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res map[string]any
	if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil {
		t.Fatalf("soak: %v, output is not JSON (%v):\n%s\n%s", err, jerr, stdout.String(), stderr.String())
	}
	for _, k := range []string{"unexpected_errors", "lost_mails", "duplicated_mails", "corrupt_bodies", "rss_growth_pct", "goroutines_delta", "fds_delta"} {
		if _, ok := res[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if err != nil || res["pass"] != true {
		log, _ := os.ReadFile(filepath.Join(work, "outpost.log"))
		t.Fatalf("soak failed (%v): %v\nunexpected: %v\nsamples: %v\nbaseline %v\nend %v\nleaks: %v\n%s\nsuite log tail:\n%s", err, res["failures"], res["unexpected"], res["unexpected_samples"],
			res["baseline"], res["end"], res["leaks"], stderr.String(), tail(log, 3000))
	}
	if n, _ := res["expected_errors"].(float64); n == 0 {
		t.Error("no expected errors: the faults did not happen")
	}
	faults, _ := res["faults"].([]any)
	names := map[string]bool{}
	for _, f := range faults {
		n, _ := f.(map[string]any)["name"].(string)
		names[strings.Fields(n)[0]+" "+strings.Fields(n)[1]] = true
	}
	for _, want := range []string{"origin resets", "origin stalls", "edge restart", "origin closes", "SIGHUP reload"} {
		if !names[want] {
			t.Errorf("fault %q not injected (got %v)", want, names)
		}
	}
	html, err := os.ReadFile(report)
	if err != nil || !bytes.Contains(html, []byte("<svg")) || !bytes.Contains(html, []byte("Unexpected errors")) {
		t.Errorf("report: %v, %d bytes", err, len(html))
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
