package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs `outpost bench ARGS` and returns its output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCommand("outpost v0.0.0-test")
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// TestCLIUsageErrors checks that bad flags are usage errors (exit status 2 in outpost).
func TestCLIUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"bad duration", []string{"scorecard", "--rtt", "40 parsecs"}, "--rtt"},
		{"n zero", []string{"scorecard", "--n", "0"}, "--n must be positive"},
		{"n negative", []string{"scorecard", "--n", "-2"}, "--n must be positive"},
		{"unknown strategy", []string{"scorecard", "--strategy", "carrier-pigeon"}, "unknown strategy"},
		{"bad sweep", []string{"scorecard", "--sweep", "q=1..3"}, "--sweep"},
		{"bad stat", []string{"scorecard", "--stat", "mean"}, "--stat"},
		{"bad plot file", []string{"scorecard", "--plot", "x.gif"}, "--plot"},
		{"bad bandwidth", []string{"scorecard", "--bandwidth", "fast"}, "--bandwidth"},
		{"unknown flag", []string{"scorecard", "--frobnicate"}, "unknown flag"},
		{"http without urls", []string{"http", "-n", "1"}, "URL"},
		{"http bad duration", []string{"http", "-d", "soon", "http://127.0.0.1:1/"}, "duration"},
		{"http negative connections", []string{"http", "-c", "-1", "http://127.0.0.1:1/"}, "-c"},
		{"http streams without h2", []string{"http", "-m", "4", "-n", "1", "https://127.0.0.1:1/"}, "--streams needs --h2"},
		{"http h2 with pipeline", []string{"http", "--h2", "--pipeline", "4", "-n", "1", "https://127.0.0.1:1/"}, "--streams instead"},
		{"http missing cacert", []string{"http", "--cacert", "/nonexistent.pem", "-n", "1", "https://127.0.0.1:1/"}, "--cacert"},
		{"http bad curve", []string{"http", "--curves", "x448", "-n", "1", "https://127.0.0.1:1/"}, "--curves"},
		{"dns without server", []string{"dns", "--query", "a.test A"}, "arg"},
		{"dns bad query type", []string{"dns", "--query", "a.test BOGUS", "127.0.0.1:53"}, "BOGUS"},
		{"cache bad size", []string{"cache", "--sizes", "huge", "--proxies", "http://127.0.0.1:1"}, "--sizes"},
		{"cache no proxy", []string{"cache", "--sizes", "1MiB"}, "--outpost"},
		{"compare zero rounds", []string{"compare", "--rounds", "0"}, "--rounds"},
		{"compare short duration", []string{"compare", "-d", "500ms"}, "--duration"},
		{"compare bad duration", []string{"compare", "-d", "soon"}, "duration"},
		{"compare zero connections", []string{"compare", "-c", "0"}, "--connections"},
		{"compare unknown server", []string{"compare", "--servers", "outpost,apache"}, `unknown server "apache"`},
		{"compare unknown scenario", []string{"compare", "--scenarios", "hit1k,slowloris"}, `unknown scenario "slowloris"`},
		{"compare same cpu", []string{"compare", "--server-cpu", "1", "--load-cpu", "1"}, "two different CPUs"},
		{"compare bad threshold", []string{"compare", "--disturbed", "0"}, "--disturbed"},
		{"compare missing binary", []string{"compare", "--outpost", "/nonexistent/outpost"}, "--outpost"},
		{"compare missing results", []string{"compare", "--results", "/nonexistent/RESULTS.md"}, "--results"},
		{"compare with args", []string{"compare", "nginx"}, "unknown command"},
		{"compare bad nice", []string{"compare", "--nice", "-30"}, "--nice"},
		{"compare missing baseline", []string{"compare", "--baseline", "/nonexistent/outpost-old"}, "--baseline"},
		{"compare baseline as a server", []string{"compare", "--servers", "outpost,baseline"}, `unknown server "baseline"`},
		{"bench with args", []string{"whatever"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCLI(t, tc.args...)
			if !IsUsage(err) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestCLIScorecardOutputs(t *testing.T) {
	origin := testOrigin(t)
	dir := t.TempDir()
	png, svg, html := filepath.Join(dir, "s.png"), filepath.Join(dir, "s.svg"), filepath.Join(dir, "s.html")
	base := []string{"scorecard", "--origin", origin, "--n", "2", "--rtt", "4ms", "--repeat", "1", "--strategy", "persistent,pipelined"}
	out, err := runCLI(t, append(base, "--plot", png, "--report", html)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "measured/model") || !strings.Contains(out, "pipelined") {
		t.Errorf("table output:\n%s", out)
	}
	out, err = runCLI(t, append(base, "--json", "--sweep", "n=1,2", "--plot", svg)...)
	if err != nil {
		t.Fatal(err)
	}
	var scs []Scorecard
	if err := json.Unmarshal([]byte(out), &scs); err != nil || len(scs) != 2 || len(scs[1].Rows) != 2 {
		t.Fatalf("JSON output %v: %s", err, out)
	}
	out, err = runCLI(t, append(base, "--csv")...)
	if err != nil || !strings.HasPrefix(out, "strategy,n,rtt_ms") || strings.Count(out, "\n") != 3 {
		t.Fatalf("CSV output %v:\n%s", err, out)
	}
	checkFile(t, png, "\x89PNG")
	checkFile(t, svg, "<?xml")
	checkFile(t, html, "<!doctype html>", "<svg", "outpost bench scorecard", "--n=2", "--rtt=4ms", "measured/model", "GOMAXPROCS", "outpost v0.0.0-test")
}

func TestCLIHTTPAndDNSReports(t *testing.T) {
	origin := testOrigin(t)
	td := startTestDNS(t)
	dir := t.TempDir()
	h1, h2 := filepath.Join(dir, "http.html"), filepath.Join(dir, "dns.html")
	out, err := runCLI(t, "http", "-c", "2", "-n", "100", "--report", h1, origin+"/bytes/10")
	if err != nil || !strings.Contains(out, "requests/s") {
		t.Fatalf("%v:\n%s", err, out)
	}
	out, err = runCLI(t, "dns", "-n", "100", "--clients", "1", "--query", "www.example.test A", "--json", "--report", h2, td.addr)
	if err != nil {
		t.Fatal(err)
	}
	var r DNSResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Completed != 100 {
		t.Fatalf("JSON %v: %s", err, out)
	}
	checkFile(t, h1, "<svg", "requests/s")
	checkFile(t, h2, "<svg", "queries/s")
}

// TestCLIHTTPH2 runs `bench http --h2` against a TLS HTTP/2 server, trusting its certificate
// with --cacert and then with --insecure.
func TestCLIHTTPH2(t *testing.T) {
	srv := newTLSServer(t, testOriginHandler(), true)
	out, err := runCLI(t, "http", "--h2", "-c", "2", "-m", "4", "-n", "200", "--cacert", srv.caFile, srv.URL+"/bytes/1024")
	if err != nil || !strings.Contains(out, "200 requests") || !strings.Contains(out, "2 connections × 4 streams, HTTP/2 over TLS") ||
		!strings.Contains(out, "TLS 1.3, ") || !strings.Contains(out, "handshakes, 0 resumed") || !strings.Contains(out, "latency     p50") {
		t.Fatalf("%v:\n%s", err, out)
	}
	html := filepath.Join(t.TempDir(), "h2.html")
	out, err = runCLI(t, "http", "--h2", "--insecure", "-m", "3", "-n", "30", "--json", "--report", html, srv.URL+"/bytes/10")
	if err != nil {
		t.Fatal(err)
	}
	var r LoadResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Requests != 30 || r.Protocol != "HTTP/2 over TLS" || r.Streams != 3 {
		t.Fatalf("JSON %v: %s", err, out)
	}
	checkFile(t, html, "HTTP/2 over TLS, 10 connections × 3 streams", "TLS 1.3, ", " handshakes, 0 resumed", "--h2=true")
}

// checkFile checks that a file exists and contains every string.
func checkFile(t *testing.T, file string, want ...string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !bytes.Contains(b, []byte(w)) {
			t.Errorf("%s does not contain %q", filepath.Base(file), w)
		}
	}
}
