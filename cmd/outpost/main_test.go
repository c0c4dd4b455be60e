package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	outpost "github.com/outpost-proxy/outpost"
	"github.com/outpost-proxy/outpost/internal/config"
)

// loopbackAddr matches a quoted loopback host:port string in the example configuration.
var loopbackAddr = regexp.MustCompile(`"(127\.0\.0\.\d+):\d+"`)

// ephemeralConfig is the example configuration with every loopback address on port 0 and the
// data directory in a temporary directory: the whole demo suite, on ports nobody else uses.
func ephemeralConfig(t *testing.T) string {
	t.Helper()
	text := loopbackAddr.ReplaceAllString(string(outpost.ExampleConfig), `"$1:0"`)
	text = regexp.MustCompile(`(?m)^data_dir = .*$`).ReplaceAllString(text, fmt.Sprintf("data_dir = %q", filepath.Join(t.TempDir(), "var")))
	f := filepath.Join(t.TempDir(), "outpost.toml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := config.Load(config.Source{Default: outpost.ExampleConfig, Env: []string{}}); err != nil {
		t.Fatalf("config.example.toml does not load: %v", err)
	}
}

func TestCommandExitStatus(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name   string
		args   []string
		status int
		output string // fragment of stdout+stderr
	}{
		{"check default", []string{"config", "check"}, exitOK, "ok"},
		{"check bad cache-key glob", []string{"config", "check", "--config", write("ck.toml", "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n[proxy.routes.cache_key]\nignore_query = [\"utm_[\"]\n")}, exitUsage, "proxy.routes[0].cache_key.ignore_query[0]"},
		{"check unknown key", []string{"config", "check", "--config", write("a.toml", "[proxy]\nlistn = \"x\"\n")}, exitUsage, "proxy.listn"},
		{"check malformed address", []string{"config", "check", "--config", write("b.toml", "[web]\nlisten = \"127.0.0.1\"\n")}, exitUsage, "web.listen"},
		{"check negative size", []string{"config", "check", "--config", write("c.toml", "[cache]\nmemory_size = -1\n")}, exitUsage, "cache.memory_size"},
		{"check tag header", []string{"config", "check", "--config", write("tag.toml", "[cache]\ntag_header = \"Surrogate Key\"\n")}, exitUsage, "cache.tag_header"},
		{"check max tags", []string{"config", "check", "--config", write("tags.toml", "[cache]\nmax_tags = 0\n")}, exitUsage, "cache.max_tags"},
		{"check dashboard interval", []string{"config", "check", "--config", write("dash.toml", "[admin]\ndashboard_interval = \"1ms\"\n")}, exitUsage, "admin.dashboard_interval"},
		{"check missing file", []string{"config", "check", "--config", filepath.Join(dir, "nope.toml")}, exitUsage, "no such file"},
		{"flag override printed", []string{"config", "print", "--proxy-listen", "127.0.0.1:18081"}, exitOK, "127.0.0.1:18081"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"unknown flag", []string{"up", "--frob"}, exitUsage, "unknown flag"},
		{"version", []string{"version"}, exitOK, "outpost"},
		{"bench bad option", []string{"bench", "scorecard", "--n", "0"}, exitUsage, "n"},
		{"bench bad duration", []string{"bench", "scorecard", "--rtt", "soon"}, exitUsage, "rtt"},
		{"mail queue empty", []string{"mail", "queue", "--data-dir", filepath.Join(dir, "var")}, exitOK, "Mail queue is empty"},
		{"mail queue bad config", []string{"mail", "queue", "--config", write("d.toml", "[mail]\nbogus = 1\n")}, exitUsage, "mail.bogus"},
		{"mail flush without server", []string{"mail", "flush", "--admin-listen", "127.0.0.1:1"}, exitFailure, "is outpost running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			got := run(context.Background(), tt.args, &out, &out)
			if got != tt.status {
				t.Errorf("exit status %d, want %d; output:\n%s", got, tt.status, out.String())
			}
			if !strings.Contains(out.String(), tt.output) {
				t.Errorf("output does not contain %q:\n%s", tt.output, out.String())
			}
		})
	}
}

func TestEnvironmentMovesProxy(t *testing.T) {
	t.Setenv("OUTPOST_PROXY_LISTEN", "127.0.0.1:18080")
	var out bytes.Buffer
	if got := run(context.Background(), []string{"config", "print"}, &out, &out); got != exitOK {
		t.Fatalf("exit %d: %s", got, out.String())
	}
	if !strings.Contains(out.String(), "listen = ['127.0.0.1:18080']") {
		t.Errorf("config print does not show the environment's proxy address:\n%s", out.String())
	}
}

// TestSuiteInProcess starts every enabled component of the demo configuration on ephemeral
// ports, checks each TCP listener accepts a connection and /readyz turns 200, then shuts down.
func TestSuiteInProcess(t *testing.T) {
	cfg, err := config.Load(config.Source{File: ephemeralConfig(t), Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	s, stop := runSuite(t, cfg, nil)
	var adminAddr string
	for _, c := range s.group.Components() {
		for _, a := range c.Addrs() { // background workers such as the mail queue have none
			network, addr, _ := strings.Cut(a, " ")
			if c.Name() == "admin" {
				adminAddr = addr
			}
			if network != "tcp" {
				continue
			}
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Errorf("%s: %s does not accept: %v", c.Name(), a, err)
				continue
			}
			conn.Close()
		}
	}
	waitReady(t, adminAddr, 30*time.Second)
	stop()
}

// runSuite starts the suite of cfg in-process (every enabled component, or only the named
// ones) and returns it with a function that stops it, failing the test unless it shuts down
// cleanly within the grace period.
func runSuite(t *testing.T, cfg *config.Config, only []string) (*suite, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := startSuite(ctx, cfg, only, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("shutdown: %v", err)
				}
			case <-time.After(cfg.GracePeriod + 5*time.Second):
				t.Error("suite did not shut down within the grace period")
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// waitReady polls /readyz until it answers 200 or the deadline passes.
func waitReady(t *testing.T, adminAddr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not answer 200 within %s (last: %v)", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buildBinary builds cmd/outpost once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "outpost-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "outpost")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// freePort returns a loopback address whose port was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBinary runs the real binary with extra environment variables and returns it with a
// channel of its stderr lines.
func startBinary(t *testing.T, env []string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "OUTPOST_LOG_LEVEL=info"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

var adminLine = regexp.MustCompile(`component=admin addr="tcp ([0-9.:]+)"`)

// TestBinarySIGTERM runs the real binary on the demo configuration, waits for /readyz, sends
// SIGTERM and expects exit status 0 within the grace period.
//
// The proxy's address comes from OUTPOST_PROXY_LISTEN, so the test also shows the environment
// moving a listener of the real binary.
func TestBinarySIGTERM(t *testing.T) {
	proxyAddr := freePort(t)
	cmd, lines := startBinary(t, []string{"OUTPOST_PROXY_LISTEN=" + proxyAddr}, "up", "--config", ephemeralConfig(t))
	var admin string
	var seen []string
	proxyLogged := false
	timeout := time.After(60 * time.Second)
	for admin == "" || !proxyLogged {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("outpost exited before listening:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if m := adminLine.FindStringSubmatch(l); m != nil {
				admin = m[1]
			}
			if strings.Contains(l, "component=proxy") && strings.Contains(l, "tcp "+proxyAddr) {
				proxyLogged = true
			}
		case <-timeout:
			t.Fatalf("admin or proxy address not logged:\n%s", strings.Join(seen, "\n"))
		}
	}
	waitReady(t, admin, 60*time.Second)
	resp, err := http.Get("http://" + proxyAddr + "/proxy.pac")
	if err != nil {
		t.Fatalf("proxy does not answer on the address from OUTPOST_PROXY_LISTEN: %v", err)
	}
	resp.Body.Close()
	go func() {
		for range lines { // keep draining so the process never blocks on stderr
		}
	}()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("outpost exited with %v after SIGTERM; want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("outpost did not exit within the grace period after SIGTERM")
	}
}

// TestBinaryPortTaken: a listener that cannot bind is an error naming the component and the
// address, exit status 1; the components bound before it (admin, origins, DNS, mail) are shut
// down again.
func TestBinaryPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd, lines := startBinary(t, nil, "up", "--config", ephemeralConfig(t), "--proxy-listen", ln.Addr().String())
	var all []string
	for l := range lines {
		all = append(all, l)
	}
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitFailure {
		t.Fatalf("exit %v, want status %d; stderr:\n%s", err, exitFailure, strings.Join(all, "\n"))
	}
	text := strings.Join(all, "\n")
	if !strings.Contains(text, "proxy") || !strings.Contains(text, ln.Addr().String()) {
		t.Errorf("error does not name the component and address:\n%s", text)
	}
}
