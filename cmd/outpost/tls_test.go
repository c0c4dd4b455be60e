package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/clienttest"
)

// caFileLine finds the proxy's demo-CA log line and returns the CA file it names and whether
// it was made on this start.
var caFileLine = regexp.MustCompile(`TLS listener with the demo CA.*ca_file=(\S+) created=(true|false)`)

// startDemo starts the real binary on the demo configuration (the embedded default, moved to
// free ports and a temporary data_dir) and returns the demo-CA file the log named, whether it
// was created, and a stop function.
func startDemo(t *testing.T, cfg string, moved map[string]string) (caFile string, created bool, stop func()) {
	t.Helper()
	cmd, lines := startBinary(t, nil, "up", "--config", cfg)
	deadline := time.After(60 * time.Second)
	for caFile == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("outpost exited before logging the demo CA")
			}
			if m := caFileLine.FindStringSubmatch(l); m != nil {
				caFile, created = m[1], m[2] == "true"
			}
		case <-deadline:
			t.Fatal("no demo-CA log line within 60s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	waitReady(t, moved["127.0.0.1:9090"], 60*time.Second)
	return caFile, created, func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }
}

// TestDemoTLS is acceptance 1 of issue 13: the default `outpost up` serves
// https://127.0.0.1:8443 with the demo CA it made in data_dir/tls/, over HTTP/2 and HTTP/1.1,
// with the README's curl line; a restart reuses the CA.
func TestDemoTLS(t *testing.T) {
	clienttest.Need(t, "curl", "curl")
	cfg, moved := demoConfig(t)
	caFile, created, stop := startDemo(t, cfg, moved)
	if !created || filepath.Base(caFile) != "demo-ca.pem" || filepath.Base(filepath.Dir(caFile)) != "tls" {
		t.Fatalf("first start: ca_file %s created %v, want a new data_dir/tls/demo-ca.pem", caFile, created)
	}
	addr := moved["127.0.0.1:8443"]
	for _, c := range []struct{ flag, status string }{{"--http2", "HTTP/2 200"}, {"--http1.1", "HTTP/1.1 200"}} {
		// The README's line, with the flag and the moved port.
		out := output(t, "curl", "-sS", c.flag, "-D", "-", "--cacert", caFile, "https://"+addr+"/page/3", "-H", "Host: www.cdn.test")
		if !strings.HasPrefix(out, c.status) || strings.Count(out, "/page/3/obj/") != 3 {
			t.Errorf("curl %s:\n%s", c.flag, out)
		}
	}
	ca, _ := os.ReadFile(caFile)
	stop()
	caFile2, created, stop := startDemo(t, cfg, moved)
	defer stop()
	ca2, _ := os.ReadFile(caFile2)
	if created || caFile2 != caFile || !bytes.Equal(ca, ca2) {
		t.Errorf("restart: created %v, %s, same CA %v; want the first start's CA reused", created, caFile2, bytes.Equal(ca, ca2))
	}
	if out := output(t, "curl", "-sS", "--cacert", caFile, "-o", "/dev/null", "-w", "%{http_version}", "https://"+addr+"/", "-H", "Host: www.cdn.test"); out != "2" {
		t.Errorf("after the restart: HTTP version %q", out)
	}
}

// TestAdminTLS: with [admin] tls = true (here from the environment) the admin listener serves
// HTTPS with the proxy's demo certificate; without the proxy's certificates the binary exits 2
// naming admin.tls.
func TestAdminTLS(t *testing.T) {
	clienttest.Need(t, "curl", "curl")
	cfg, moved := demoConfig(t)
	cmd, lines := startBinary(t, []string{"OUTPOST_ADMIN_TLS=true"}, "up", "--config", cfg)
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	var caFile string
	for l := range lines {
		if m := caFileLine.FindStringSubmatch(l); m != nil {
			caFile = m[1]
			break
		}
	}
	go func() {
		for range lines {
		}
	}()
	if caFile == "" {
		t.Fatal("no demo-CA log line")
	}
	url := "https://" + moved["127.0.0.1:9090"] + "/readyz"
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("curl", "-sS", "--cacert", caFile, url).CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin over TLS: %v %s", err, out)
		}
		time.Sleep(50 * time.Millisecond) // polling the starting process
	}
	plain := filepath.Join(t.TempDir(), "plain.toml")
	if err := os.WriteFile(plain, []byte("data_dir = \""+t.TempDir()+"\"\n[admin]\ntls = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(mustBinary(t), "up", "--config", plain).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "admin.tls") {
		t.Errorf("admin.tls without certificates: %v\n%s", err, out)
	}
}

// mustBinary returns the built outpost binary.
func mustBinary(t *testing.T) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestTLSBadCertificateExit2: `outpost up` with a certificate file that does not exist exits 2
// naming the key.
func TestTLSBadCertificateExit2(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.toml")
	text := "data_dir = \"" + dir + "\"\n[admin]\nenabled = false\n[proxy]\nlisten = [\"127.0.0.1:0\"]\n[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\n" +
		"[[proxy.tls.certificates]]\ncert_file = \"" + filepath.Join(dir, "missing.pem") + "\"\nkey_file = \"" + filepath.Join(dir, "missing-key.pem") + "\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(mustBinary(t), "proxy", "--config", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "proxy.tls.certificates[0].cert_file") {
		t.Errorf("missing certificate: %v\n%s", err, out)
	}
}
