package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// needTool skips the test when a client program is missing, naming its Debian package.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s)", name, pkg)
	}
	return path
}

// runTool runs a client with a deadline and a clean proxy environment.
func runTool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestClients: curl forward (-x), curl --proxy1.0, curl reverse (-H Host), wget with
// http_proxy, and curl through a CONNECT tunnel to a local TLS server all work.
func TestClients(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	o := echoOrigin(t)
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secure "+r.URL.Path)
	}))
	defer tlsOrigin.Close()
	tlsPort := tlsOrigin.URL[strings.LastIndex(tlsOrigin.URL, ":")+1:]
	p := startProxy(t, "connect_ports = [443, "+tlsPort+"]\n"+reverseRoute(o), Options{})
	proxyURL := "http://" + p.addr
	t.Run("curl -x", func(t *testing.T) {
		if out := runTool(t, nil, curl, "-sS", "-x", proxyURL, o.URL+"/fwd"); out != "GET /fwd " {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("curl --proxy1.0", func(t *testing.T) {
		if out := runTool(t, nil, curl, "-sS", "--proxy1.0", p.addr, o.URL+"/p10"); out != "GET /p10 " {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("curl reverse", func(t *testing.T) {
		if out := runTool(t, nil, curl, "-sS", "-H", "Host: www.site.test", proxyURL+"/rev"); out != "GET /rev " {
			t.Fatalf("got %q", out)
		}
		if o.last().Host != "www.site.test" {
			t.Errorf("origin saw Host %q", o.last().Host)
		}
	})
	t.Run("curl keep-alive reuse", func(t *testing.T) {
		out := runTool(t, nil, curl, "-sS", "-v", "-x", proxyURL, o.URL+"/a", o.URL+"/b")
		if !strings.Contains(out, "GET /a GET /b") && !strings.Contains(out, "Re-using existing") && !strings.Contains(out, "Reusing existing") {
			t.Fatalf("connection not reused:\n%s", out)
		}
	})
	t.Run("curl POST", func(t *testing.T) {
		if out := runTool(t, nil, curl, "-sS", "-x", proxyURL, "--data-binary", "payload", o.URL+"/post"); out != "POST /post payload" {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("curl CONNECT", func(t *testing.T) {
		if out := runTool(t, nil, curl, "-sS", "-k", "-x", proxyURL, tlsOrigin.URL+"/tls"); out != "secure /tls" {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("wget http_proxy", func(t *testing.T) {
		wget := needTool(t, "wget", "wget")
		out := runTool(t, []string{"http_proxy=" + proxyURL}, wget, "-q", "-O", "-", o.URL+"/wget")
		if out != "GET /wget " {
			t.Fatalf("got %q", out)
		}
	})
	waitFor(t, "access log lines", func() bool {
		log := p.log.String()
		return strings.Contains(log, "TCP_TUNNEL/200") && strings.Contains(log, "/wget")
	})
}
