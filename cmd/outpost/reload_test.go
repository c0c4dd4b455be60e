package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// reloadSuiteConfig is a lean suite (admin, proxy, cache) with its routes; the admin listener
// needs token.
func reloadSuiteConfig(dataDir, proxyAddr, tokenFile, cache, routes string) string {
	return fmt.Sprintf(`data_dir = %q
[admin]
listen = "127.0.0.1:0"
dashboard = false
token_file = %q
[web]
enabled = false
[ftp]
enabled = false
[mail]
enabled = false
[dns]
enabled = false
[cache]
disk_enabled = false
%s
[proxy]
listen = [%q]
[proxy.access_log]
destination = "off"
[proxy.ftp]
enabled = false
%s`, dataDir, tokenFile, cache, proxyAddr, routes)
}

func route(host string, origins ...string) string {
	q := make([]string, len(origins))
	for i, o := range origins {
		q[i] = fmt.Sprintf("%q", o)
	}
	return fmt.Sprintf("[[proxy.routes]]\nhost = %q\norigins = [%s]\n", host, strings.Join(q, ", "))
}

// named is an origin that answers its name.
func named(t *testing.T, name string) *httptest.Server {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, name)
	}))
	t.Cleanup(o.Close)
	return o
}

// generated is a body of n bytes made on the fly.
type generated struct{ n, off int64 }

func (g *generated) Read(p []byte) (int, error) {
	if g.off >= g.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.n-g.off)]
	for i := range p {
		p[i] = byte(g.off+int64(i)) ^ 0x5a
	}
	g.off += int64(len(p))
	return len(p), nil
}

// TestBinaryReloadUnderLoad is acceptance point 3 on the real binary: a 1 GiB download
// through the proxy (curl) is half way and concurrent keep-alive clients run a bounded loop of
// requests when the configuration file changes a route and SIGHUP arrives. No request fails,
// the download completes (curl exits 0 with every byte), and the changed and added routes
// answer afterwards. Then a bad configuration over POST /reload (with the admin token) is
// rejected with 422 naming the key, the old one keeps serving, POST /reload without the
// token is 401, and the reload metrics count both results.
func TestBinaryReloadUnderLoad(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	a, b := named(t, "A"), named(t, "B")
	const size = 1 << 30
	midway, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Header().Set("Cache-Control", "no-store")
		g := &generated{n: size}
		if _, err := io.CopyN(w, g, size/2); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		once.Do(func() { close(midway) })
		select {
		case <-release:
		case <-time.After(60 * time.Second):
		}
		_, _ = io.Copy(w, g)
	}))
	t.Cleanup(big.Close)

	dir := t.TempDir()
	token := "reload-token-0123456789abcdef"
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	proxyAddr := freePort(t)
	cfgFile := filepath.Join(dir, "outpost.toml")
	write := func(cache, routes string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(reloadSuiteConfig(filepath.Join(dir, "var"), proxyAddr, tokenFile, cache, routes)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("", route("www.test", a.URL)+route("big.test", big.URL))
	cmd, lines := startBinary(t, nil, "up", "--config", cfgFile)
	var logMu sync.Mutex
	var logged []string
	adminCh := make(chan string, 1)
	reloadedCh := make(chan struct{}, 4)
	go func() {
		for l := range lines {
			logMu.Lock()
			logged = append(logged, l)
			logMu.Unlock()
			if m := adminLine.FindStringSubmatch(l); m != nil {
				adminCh <- m[1]
			}
			if strings.Contains(l, "proxy: configuration reloaded") {
				reloadedCh <- struct{}{}
			}
		}
	}()
	logText := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Join(logged, "\n")
	}
	var admin string
	select {
	case admin = <-adminCh:
	case <-time.After(60 * time.Second):
		t.Fatalf("admin address not logged:\n%s", logText())
	}
	waitReady(t, admin, 60*time.Second)

	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	defer cl.CloseIdleConnections()
	hit := func(host string) (int, string, error) {
		req, _ := http.NewRequest("GET", "http://"+proxyAddr+"/", nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	if code, body, err := hit("www.test"); err != nil || code != 200 || body != "A" {
		t.Fatalf("www.test before: %d %q %v", code, body, err)
	}

	// The 1 GiB download, by curl.
	var curlOut bytes.Buffer
	curl := exec.Command("curl", "-sS", "-o", "/dev/null", "--max-time", "120", "-w", "%{http_code} %{size_download}",
		"-H", "Host: big.test", "http://"+proxyAddr+"/big")
	curl.Stdout, curl.Stderr = &curlOut, &curlOut
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	curlDone := make(chan error, 1)
	go func() { curlDone <- curl.Wait() }()
	select {
	case <-midway:
	case err := <-curlDone:
		t.Fatalf("curl ended before the reload: %v %s", err, curlOut.String())
	case <-time.After(60 * time.Second):
		t.Fatal("the download did not get half way")
	}

	// Clients across the reload.
	const clients, perClient = 8, 50
	var wg sync.WaitGroup
	var failures atomic.Int64
	begun := make(chan struct{}, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				if i == perClient/5 {
					begun <- struct{}{}
				}
				code, body, err := hit("www.test")
				if err != nil || code != 200 || (body != "A" && body != "B") {
					failures.Add(1)
					t.Errorf("request %d across the reload: %d %q %v", i, code, body, err)
				}
			}
		}()
	}
	for range clients {
		<-begun
	}
	write("", route("www.test", b.URL)+route("new.test", b.URL)+route("big.test", big.URL))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reloadedCh:
	case <-time.After(30 * time.Second):
		t.Fatalf("no reload logged after SIGHUP:\n%s", logText())
	}
	close(release)
	wg.Wait()
	select {
	case err := <-curlDone:
		if err != nil || curlOut.String() != fmt.Sprintf("200 %d", size) {
			t.Fatalf("the 1 GiB download across the reload: %v, curl says %q", err, curlOut.String())
		}
	case <-time.After(120 * time.Second):
		t.Fatal("the download did not finish")
	}
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d requests failed across the reload", n)
	}
	for _, c := range []struct{ host, want string }{{"www.test", "B"}, {"new.test", "B"}} {
		if code, body, err := hit(c.host); err != nil || code != 200 || body != c.want {
			t.Errorf("%s after the reload: %d %q %v, want %q", c.host, code, body, err, c.want)
		}
	}

	// A bad configuration over POST /reload: 401 without the token, 422 with it, old one serving.
	write("heuristic_fraction = 7", route("www.test", a.URL)+"[[proxy.routes]]\nhost = \"bad.test\"\norigins = []\n")
	post := func(auth string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", "http://"+admin+"/reload", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&res)
		return resp.StatusCode, res
	}
	if code, _ := post(""); code != http.StatusUnauthorized {
		t.Errorf("POST /reload without the token = %d, want 401", code)
	}
	code, res := post(token)
	errsText := fmt.Sprint(res["errors"])
	if code != http.StatusUnprocessableEntity || res["ok"] != false || !strings.Contains(errsText, "proxy.routes[1].origins") || !strings.Contains(errsText, "cache.heuristic_fraction") {
		t.Errorf("bad reload = %d %v; want 422 naming proxy.routes[1].origins and cache.heuristic_fraction", code, res)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) { // stderr arrives on its own
		if l := logText(); strings.Contains(l, "proxy.routes[1].origins") && strings.Contains(l, "cache.heuristic_fraction") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the log does not name each bad key:\n%s", logText())
			break
		}
	}
	if code, body, err := hit("www.test"); err != nil || code != 200 || body != "B" {
		t.Errorf("after the rejected reload: %d %q %v, want the running route (B)", code, body, err)
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`outpost_reloads_total{result="ok"} 1`, `outpost_reloads_total{result="rejected"} 1`, `outpost_proxy_reloads_total{result="ok"} 1`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// `outpost reload` does the same from the command line, with the token from the file.
	var out bytes.Buffer
	if got := run(context.Background(), []string{"reload", "--config", cfgFile, "--admin-listen", admin}, &out, &out); got != exitUsage || !strings.Contains(out.String(), "proxy.routes[1].origins") {
		t.Errorf("outpost reload with the bad file: exit %d, want %d naming the key:\n%s", got, exitUsage, out.String())
	}
	write("", route("www.test", a.URL))
	out.Reset()
	if got := run(context.Background(), []string{"reload", "--config", cfgFile, "--admin-listen", admin}, &out, &out); got != exitOK || !strings.Contains(out.String(), "reloaded") {
		t.Errorf("outpost reload: exit %d, want 0:\n%s", got, out.String())
	}
	if code, body, err := hit("www.test"); err != nil || code != 200 || body != "A" {
		t.Errorf("after outpost reload: %d %q %v, want A", code, body, err)
	}
}

// TestAdminTokenRequiredOffLoopback: an admin listener on a non-loopback address without
// admin.token_file does not start: exit 2 naming the key (nothing is bound: validation fails
// first). An empty token file is refused the same way.
func TestAdminTokenRequiredOffLoopback(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.token")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, admin string }{
		{"all interfaces, no token", "[admin]\nlisten = \"0.0.0.0:0\"\n"},
		{"non-loopback address, no token", "[admin]\nlisten = \"192.0.2.1:9090\"\n"},
		{"empty token file", fmt.Sprintf("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = %q\n[web]\nenabled = false\n[ftp]\nenabled = false\n[mail]\nenabled = false\n[dns]\nenabled = false\n[proxy]\nenabled = false\n", empty)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "outpost.toml")
			if err := os.WriteFile(f, []byte(fmt.Sprintf("data_dir = %q\n%s", filepath.Join(dir, "var"), tc.admin)), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if got := run(ctx, []string{"up", "--config", f}, &out, &out); got != exitUsage {
				t.Fatalf("exit %d, want %d:\n%s", got, exitUsage, out.String())
			}
			if !strings.Contains(out.String(), "admin.token_file") {
				t.Errorf("the error does not name admin.token_file:\n%s", out.String())
			}
		})
	}
}

// TestDemoSuiteReload: the whole demo suite takes its own configuration again on reload (what
// a SIGHUP with an unchanged file does): accepted by every component, no key reported as
// needing a restart; a changed listen address is reported by key and kept, the rest applied.
func TestDemoSuiteReload(t *testing.T) {
	file := ephemeralConfig(t)
	cfg, err := config.Load(config.Source{File: file, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	s, stop := runSuite(t, cfg, nil)
	defer stop()
	var logged lockedLog
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	again, err := config.Load(config.Source{File: file, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if errs := s.reload(again, logger); len(errs) != 0 {
		t.Fatalf("the demo configuration was rejected on reload: %v", errs)
	}
	if strings.Contains(logged.String(), "restart only") {
		t.Errorf("an unchanged configuration reported keys needing a restart:\n%s", logged.String())
	}
	moved := *again
	moved.Admin.Listen = "127.0.0.1:1"
	moved.Proxy.Listen = []string{"127.0.0.1:2"}
	if errs := s.reload(&moved, logger); len(errs) != 0 {
		t.Fatalf("reload: %v", errs)
	}
	for _, key := range []string{"key=admin.listen"} { // proxy.listen: the proxy's own log (TestReloadRejected)
		if !strings.Contains(logged.String(), key) {
			t.Errorf("changed %s not logged as needing a restart:\n%s", key, logged.String())
		}
	}
}

// lockedLog is a goroutine-safe log buffer.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
