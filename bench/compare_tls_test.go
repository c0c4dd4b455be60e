package bench

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// TestTLSServerConfigs checks the TLS-capable servers' configurations: nginx's `listen … ssl
// http2` with the run's certificate (and nothing of TLS without a TLS port), Outpost's
// [proxy.tls] section as valid TOML with the keys the TLS listener reads.
func TestTLSServerConfigs(t *testing.T) {
	certs := certFiles{ca: "/w/tls/ca.pem", cert: "/w/tls/cert.pem", key: "/w/tls/key.pem"}
	plain := serverEnv{dir: "/w/x", port: 4001, origin: 4000}
	e := plain
	e.tlsPort, e.certs = 4002, certs

	ng := nginxConf(e)
	for _, w := range []string{"listen 127.0.0.1:4001;", "listen 127.0.0.1:4002 ssl http2;", "ssl_certificate /w/tls/cert.pem;",
		"ssl_certificate_key /w/tls/key.pem;", "ssl_protocols TLSv1.2 TLSv1.3;", "proxy_cache c;"} {
		if !strings.Contains(ng, w) {
			t.Errorf("nginx config lacks %q:\n%s", w, ng)
		}
	}
	if c := nginxConf(plain); strings.Contains(c, "ssl") {
		t.Errorf("nginx without a TLS port has TLS:\n%s", c)
	}

	text := outpostConf(e)
	var conf struct {
		Proxy struct {
			Listen []string
			TLS    struct {
				Listen       []string
				Certificates []struct {
					CertFile string `toml:"cert_file"`
					KeyFile  string `toml:"key_file"`
				}
			}
		}
	}
	if err := toml.Unmarshal([]byte(text), &conf); err != nil {
		t.Fatalf("outpost config is not TOML: %v\n%s", err, text)
	}
	tls := conf.Proxy.TLS
	if len(tls.Listen) != 1 || tls.Listen[0] != "127.0.0.1:4002" || len(tls.Certificates) != 1 ||
		tls.Certificates[0].CertFile != certs.cert || tls.Certificates[0].KeyFile != certs.key || conf.Proxy.Listen[0] != "127.0.0.1:4001" {
		t.Errorf("outpost TLS config %+v from:\n%s", conf.Proxy, text)
	}
	if strings.Contains(text, "@") {
		t.Errorf("unfilled placeholder:\n%s", text)
	}
	if c := outpostConf(plain); strings.Contains(c, "proxy.tls") {
		t.Errorf("outpost without a TLS port has [proxy.tls]:\n%s", c)
	}
}

// TestNginxTLSConfigLoads has nginx itself check the TLS peer's configuration with a
// certificate made as a run makes it (nginx -t; skipped without nginx).
func TestNginxTLSConfigLoads(t *testing.T) {
	addSbinToPath()
	if _, ok := lookTool("nginx"); !ok {
		t.Skip("nginx not installed")
	}
	dir := t.TempDir()
	c, err := newTestCerts()
	if err != nil {
		t.Fatal(err)
	}
	files, err := c.write(dir)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	e := serverEnv{dir: dir, port: ports[0], origin: ports[1], tlsPort: ports[2], certs: files}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(e)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nginx", "-t", "-q", "-e", filepath.Join(dir, "error.log"), "-c", conf, "-p", dir).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

func TestNoTLSListener(t *testing.T) {
	for _, tc := range []struct {
		log  string
		want bool
	}{
		{"outpost: config: proxy.tls: unknown key (see config.example.toml for the keys there are)", true},
		{"outpost: config: proxy.tls.certificates[0].cert_file: open x: no such file", false},
		{"outpost: listen 127.0.0.1:1: address already in use", false},
	} {
		if got := noTLSListener(tc.log); got != tc.want {
			t.Errorf("noTLSListener(%q) = %v", tc.log, got)
		}
	}
}

// h2loadOutput is h2load 1.52's summary of a 2 s run (-c 2 -m 2 -D 2) against nginx.
const h2loadOutput = `starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.00s, 16751.00 req/s, 18.37MB/s
requests: 33502 total, 33506 started, 33502 done, 33502 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 33502 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 36.74MB (38527398) total, 3.45MB (3618216) headers (space savings 39.66%), 32.72MB (34306048) data
                     min         max         mean         sd        +/- sd
time for request:       18us    172.97ms       212us      2.24ms    98.12%
time for connect:     4.76ms      5.26ms      5.01ms       351us   100.00%
time to 1st byte:     5.50ms      5.55ms      5.53ms        34us   100.00%
req/s           :    8350.01     8391.49     8370.75       29.33   100.00%
`

func TestH2load(t *testing.T) {
	args := strings.Join(h2loadArgs(scenarioByName("h2hit1k"), 50, 3*time.Second, "https://127.0.0.1:9/obj.bin"), " ")
	if args != "-t1 -c50 -m10 -D 3 https://127.0.0.1:9/obj.bin" {
		t.Errorf("h2load args %q", args)
	}
	r, err := parseH2load(h2loadOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 33502, Bytes: 38527398, Elapsed: 2 * time.Second, Max: 172970 * time.Microsecond}
	if r != want {
		t.Errorf("parsed %+v, want %+v", r, want)
	}
	bad := strings.Replace(strings.Replace(h2loadOutput, "0 failed, 0 errored, 3 timeout", "", 1), "33502 succeeded, 0 failed, 0 errored, 0 timeout", "33000 succeeded, 502 failed, 2 errored, 3 timeout", 1)
	bad = strings.Replace(bad, "0 4xx, 0 5xx", "500 4xx, 2 5xx", 1)
	if r, err := parseH2load(bad); err != nil || r.Errors != 505 || r.Status != 502 {
		t.Errorf("errors %+v, %v; want 505 errors of which 502 status", r, err)
	}
	for _, out := range []string{"", "finished in 2.00s\n", "h2load: connection refused"} {
		if _, err := parseH2load(out); err == nil {
			t.Errorf("parseH2load(%q) succeeded", out)
		}
	}
	if d, err := parseH2loadDuration("1.5s"); err != nil || d != 1500*time.Millisecond {
		t.Errorf("1.5s: %v %v", d, err)
	}
	if _, err := parseH2loadDuration("12parsecs"); err == nil {
		t.Error("12parsecs parsed")
	}
}

func TestBenchLoadArgsAndParse(t *testing.T) {
	args := strings.Join(benchLoadArgs(scenarioByName("tlsnew"), 50, 3*time.Second, "https://127.0.0.1:9/obj.bin"), " ")
	for _, w := range []string{"bench http", "-c 50", "-d 3s", "--json", "--keepalive=false", "--insecure", "--tls13", "--curves x25519", "https://127.0.0.1:9/obj.bin"} {
		if !strings.Contains(args, w) {
			t.Errorf("args %q lack %q", args, w)
		}
	}
	lr := LoadResult{Requests: 900, Bytes: 1 << 20, Elapsed: 3 * time.Second, Errors: map[string]int64{"connect": 2, "status 5xx": 3},
		Latency: Latency{P50: time.Millisecond, P90: 2 * time.Millisecond, P99: 3 * time.Millisecond, Max: 4 * time.Millisecond}, Handshakes: 905}
	b, _ := json.Marshal(lr)
	r, err := parseBenchLoad(string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 900, Bytes: 1 << 20, Elapsed: 3 * time.Second, Errors: 5, Status: 3, P50: time.Millisecond,
		P90: 2 * time.Millisecond, P99: 3 * time.Millisecond, Max: 4 * time.Millisecond}
	if r != want {
		t.Errorf("parsed %+v, want %+v", r, want)
	}
	lr.Resumed = 4
	b, _ = json.Marshal(lr)
	if _, err := parseBenchLoad(string(b)); err == nil || !strings.Contains(err.Error(), "resumed 4") {
		t.Errorf("resumed sessions: %v", err)
	}
	if _, err := parseBenchLoad("bench: connection refused"); err == nil {
		t.Error("no JSON parsed")
	}
}

// TestTLSLoadersRun drives each TLS scenario's load generator for a second, with the command
// line a cell uses, against a Go TLS + HTTP/2 server: bench http in-process (tlsnew), h2load
// (h2hit1k) and wrk over https (tls1k) when installed.
func TestTLSLoadersRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	srv := newTLSServer(t, testOriginHandler(), true)
	url := srv.URL + "/bytes/1024"
	check := func(t *testing.T, r wrkResult, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests == 0 || r.Errors != 0 || r.Elapsed < 900*time.Millisecond || r.Bytes < r.Requests*1024 {
			t.Errorf("%+v", r)
		}
	}
	t.Run("tlsnew bench http", func(t *testing.T) {
		args := benchLoadArgs(scenarioByName("tlsnew"), 4, time.Second, url)
		out, err := runCLI(t, args[1:]...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		r, err := parseBenchLoad(out)
		check(t, r, err)
		if r.P50 <= 0 || srv.conns.Load() < r.Requests {
			t.Errorf("p50 %v, %d server connections for %d requests", r.P50, srv.conns.Load(), r.Requests)
		}
	})
	for _, tc := range []struct{ scenario, tool string }{{"h2hit1k", "h2load"}, {"tls1k", "wrk"}} {
		t.Run(tc.scenario+" "+tc.tool, func(t *testing.T) {
			if _, err := exec.LookPath(tc.tool); err != nil {
				t.Skipf("%s not installed", tc.tool)
			}
			sc := scenarioByName(tc.scenario)
			script := filepath.Join(t.TempDir(), "s.lua")
			if err := os.WriteFile(script, []byte(wrkScript(sc, "1", "127.0.0.1:9")), 0o644); err != nil {
				t.Fatal(err)
			}
			r := &compareRun{o: CompareOptions{Connections: 4, Duration: time.Second}}
			args, parse := r.loadCommand(sc, script, url)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
			res, err := parse(string(out))
			check(t, res, err)
		})
	}
}

// TestCheckTargetsTLS: the TLS scenarios' targets are Outpost over nginx, ≥ 1.0 (tlsnew also
// per CPU-second), and are left out when Outpost did not run them.
func TestCheckTargetsTLS(t *testing.T) {
	var cells []Cell
	for _, sc := range []string{"h2hit1k", "tlsnew", "tls1k"} {
		cells = append(cells, cell(1, sc, "outpost", 120, 200, time.Millisecond, 2*time.Millisecond, false),
			cell(1, sc, "nginx", 100, 250, time.Millisecond, 2*time.Millisecond, false))
	}
	ts := CheckTargets(Summarise(cells, []string{"h2hit1k", "tlsnew", "tls1k"}))
	got := map[string]bool{}
	for _, tc := range ts {
		got[tc.Target] = tc.Met
	}
	want := map[string]bool{"h2hit1k req/s vs nginx": true, "tlsnew req/s vs nginx": true, "tlsnew req/CPU-s vs nginx": false, "tls1k req/s vs nginx": true}
	for k, v := range want {
		if m, ok := got[k]; !ok || m != v {
			t.Errorf("target %q: met %v (present %v), want %v; all %+v", k, m, ok, v, ts)
		}
	}
	if ts := CheckTargets(Summarise(cells[1:2], []string{"h2hit1k"})); len(ts) != 0 {
		t.Errorf("targets without outpost: %+v", ts)
	}
}

// FuzzParseH2load feeds arbitrary text to the h2load summary parser: a result or an error,
// never a panic.
func FuzzParseH2load(f *testing.F) {
	f.Add(h2loadOutput)
	f.Add("finished in 1.5ms, 0 req/s\nrequests: 1 total, 1 started, 1 done, 1 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 1 2xx, 0 3xx, 0 4xx, 0 5xx\ntraffic: 1B (1) total\ntime for request: 1us 99999999999999999999s 1us\n")
	f.Add("time for request: x y z\n")
	f.Fuzz(func(t *testing.T, out string) {
		r, err := parseH2load(out)
		if err == nil && (r.Requests < 0 || r.Bytes < 0) {
			t.Errorf("negative counts %+v", r)
		}
	})
}

// FuzzParseBenchLoad feeds arbitrary text to the bench http JSON reader.
func FuzzParseBenchLoad(f *testing.F) {
	f.Add(`{"requests": 3, "errors": {"status 5xx": 1}, "latency": {"p50_ns": 5}}`)
	f.Add(`noise {"tls_resumed": 2, "tls_handshakes": 2}`)
	f.Add(`{"errors": 7}`)
	f.Fuzz(func(t *testing.T, out string) {
		parseBenchLoad(out)
	})
}

// TestRunBoundedOverrun: a load generator still running past its limit is killed and reported
// as errOverrun (an h2load cell is then measured again).
func TestRunBoundedOverrun(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = ownGroup()
	start := time.Now()
	err := runBounded(context.Background(), cmd, 100*time.Millisecond)
	if !errors.Is(err, errOverrun) || time.Since(start) > 10*time.Second {
		t.Errorf("err %v after %v, want errOverrun at once", err, time.Since(start))
	}
	if err := runBounded(context.Background(), exec.Command("true"), time.Minute); err != nil {
		t.Errorf("true: %v", err)
	}
}
