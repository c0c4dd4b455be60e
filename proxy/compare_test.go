package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCompareWithNginx measures 1 KiB cache hits through this proxy (with the project's cache)
// and through nginx's proxy_cache with h2load, keep-alive and pipelined (-m 16), one
// connection each. It only runs with OUTPOST_COMPARE=1 (it is a measurement, not a test).
func TestCompareWithNginx(t *testing.T) {
	if os.Getenv("OUTPOST_COMPARE") == "" {
		t.Skip("set OUTPOST_COMPARE=1 to measure against nginx (Debian packages nginx, nghttp2-client)")
	}
	h2load := needTool(t, "h2load", "nghttp2-client")
	body := bytes.Repeat([]byte("x"), 1024)
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	p := startProxy(t, "[proxy.access_log]\ndestination = \"off\"\n"+reverseRoute(o), Options{Cache: newRealCache(t)})
	targets := map[string]string{"outpost": p.addr}
	if nginx, err := exec.LookPath("nginx"); err == nil {
		targets["nginx"] = startNginx(t, nginx, o.hostport())
	} else {
		t.Log("nginx not installed (Debian package nginx): measuring outpost only")
	}
	if varnishd, err := exec.LookPath("varnishd"); err == nil {
		targets["varnish"] = startVarnish(t, varnishd, o.hostport())
	} else {
		t.Log("varnishd not installed (Debian package varnish)")
	}
	re := regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)
	for _, name := range []string{"outpost", "nginx", "varnish"} {
		addr, ok := targets[name]
		if !ok {
			continue
		}
		url := "http://" + addr + "/obj"
		for i := 0; i < 3; i++ { // warm the cache
			if resp, err := http.Get(url); err == nil {
				resp.Body.Close()
			}
		}
		for _, depth := range []int{1, 16} {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			out, err := exec.CommandContext(ctx, h2load, "--h1", "-c", "1", "-m", fmt.Sprint(depth), "-n", "200000", url).CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("h2load: %v\n%s", err, out)
			}
			if i := bytes.Index(out, []byte("finished in")); i >= 0 {
				out = out[i:]
			}
			m := re.FindSubmatch(out)
			if m == nil || !strings.Contains(string(out), "200000 succeeded") {
				t.Fatalf("h2load output:\n%s", out)
			}
			t.Logf("%-8s depth %2d: %s req/s", name, depth, m[1])
		}
	}
}

// startNginx runs nginx (one worker) as a caching reverse proxy to origin and returns its address.
func startNginx(t *testing.T, nginx, origin string) string {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // workers must reach the test's private directory
	}
	conf := user + fmt.Sprintf(`worker_processes 1;
daemon off;
error_log %[1]s/error.log;
pid %[1]s/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fcgi;
  uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  proxy_cache_path %[1]s/cache keys_zone=c:10m;
  server {
    listen %[2]s;
    location / { proxy_pass http://%[3]s; proxy_cache c; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`, dir, addr, origin)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	waitFor(t, "nginx listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// startVarnish runs varnishd (default VCL, 64 MiB malloc storage) in front of origin and returns
// its address.
func startVarnish(t *testing.T, varnishd, origin string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(varnishd, "-F", "-a", addr, "-b", origin, "-n", filepath.Join(t.TempDir(), "varnish"), "-s", "malloc,64m")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	waitFor(t, "varnish answering", func() bool {
		resp, err := http.Get("http://" + addr + "/obj")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return addr
}

// stopProcess asks a server to stop (SIGTERM, so a master process stops its workers too) and
// kills it if it has not exited within five seconds.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
