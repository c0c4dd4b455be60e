package ftpgw_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/origin/ftp"
	"github.com/outpost-proxy/outpost/proxy"
	"github.com/outpost-proxy/outpost/proxy/ftpgw"
)

// start runs a component until the test ends.
func start(t *testing.T, c component.Component) string {
	t.Helper()
	if err := c.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Shutdown(ctx)
		<-done
	})
	return strings.TrimPrefix(c.Addrs()[0], "tcp ")
}

// TestCurlThroughProxy is acceptance 4: curl -x through the real proxy and cache fetches a
// file and a directory listing from the FTP origin; the second fetch is a cache hit.
func TestCurlThroughProxy(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (Debian package curl)")
	}
	data := t.TempDir()
	cfg := config.Default()
	cfg.FTP.Listen = "127.0.0.1:0"
	cfg.Proxy.Listen = []string{"127.0.0.1:0"}
	cfg.Cache.DiskEnabled = false
	accessLog := filepath.Join(data, "access.log")
	cfg.Proxy.AccessLog.Destination = accessLog

	origin, err := ftp.New(cfg.FTP, component.Test(data))
	if err != nil {
		t.Fatal(err)
	}
	ftpAddr := start(t, origin)
	c, err := cache.New(cfg.Cache, component.Test(data))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := ftpgw.New(cfg.Proxy.FTP, component.Test(data).Logger)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg.Proxy, component.Test(data), proxy.Options{FTP: gw, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := start(t, p)

	want, _ := os.ReadFile(filepath.Join(data, "ftp", "anonymous", "pub", "sample.bin"))
	for _, tc := range []struct {
		name, path string
		want       []byte
		contains   string
	}{
		{name: "file", path: "/pub/sample.bin", want: want},
		{name: "listing", path: "/pub/", contains: `href="README.txt"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var statuses []string
			for i := range 2 {
				out := filepath.Join(t.TempDir(), "body")
				hdr := run(t, "curl", "-sS", "-D", "-", "-o", out, "-x", "http://"+proxyAddr, "ftp://"+ftpAddr+tc.path)
				body, _ := os.ReadFile(out)
				if !bytes.HasPrefix(hdr, []byte("HTTP/1.1 200")) {
					t.Fatalf("fetch %d: %s", i, hdr)
				}
				if tc.want != nil && !bytes.Equal(body, tc.want) {
					t.Fatalf("fetch %d: %d bytes, want %d", i, len(body), len(tc.want))
				}
				if tc.contains != "" && !bytes.Contains(body, []byte(tc.contains)) {
					t.Fatalf("fetch %d: listing lacks %s:\n%s", i, tc.contains, body)
				}
				statuses = append(statuses, header(hdr, "Cache-Status"))
			}
			if strings.Contains(statuses[0], "hit") || !strings.Contains(statuses[1], "hit") {
				t.Errorf("Cache-Status: first %q, second %q; want a miss then a hit", statuses[0], statuses[1])
			}
			if codes := logCodes(t, accessLog, tc.path); len(codes) != 2 || codes[0] != "TCP_MISS" || !strings.Contains(codes[1], "HIT") {
				t.Errorf("access log codes for %s: %v, want TCP_MISS then a hit", tc.path, codes)
			}
		})
	}
}

// logCodes returns the Squid result codes logged for URLs ending in suffix, polling briefly
// because the proxy writes the log line after the response.
func logCodes(t *testing.T, path, suffix string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var codes []string
		b, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 7 && strings.HasSuffix(f[6], suffix) {
				codes = append(codes, strings.SplitN(f[3], "/", 2)[0])
			}
		}
		if len(codes) >= 2 || time.Now().After(deadline) {
			return codes
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs a client with a deadline and returns its standard output.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}

// header returns a field from a raw response head.
func header(head []byte, name string) string {
	for _, line := range strings.Split(string(head), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
