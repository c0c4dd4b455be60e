package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/internal/democa"
)

// The TLS listener with the real clients: curl (HTTP/2, HTTP/1.1, HTTPS proxy), openssl
// s_client (ALPN, SNI, TLS 1.1 refused), h2load, Python's ssl and http.client, and headless
// Chromium (a page over https:// through a reverse route, and through the HTTPS proxy).

// run runs a client and returns its standard output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return string(clienttest.Run(t, 60*time.Second, name, args...))
}

// TestTLSCurl fetches over TLS with curl: HTTP/2 and HTTP/1.1 to a reverse route (SNI
// www.cdn.test, the CA given with --cacert), then curl using the listener as an HTTPS proxy
// for an http:// URL and, with CONNECT, an https:// one.
func TestTLSCurl(t *testing.T) {
	clienttest.Need(t, "curl", "curl")
	o := cacheableOrigin(t)
	tlsOrigin := httptest.NewTLSServer(o.Config.Handler)
	t.Cleanup(tlsOrigin.Close)
	_, tport, _ := net.SplitHostPort(strings.TrimPrefix(tlsOrigin.URL, "https://"))
	p := startTLSProxy(t, "connect_ports = ["+tport+"]\n"+reverseRoute(o), "", Options{Cache: newRealCache(t)})
	_, port, _ := net.SplitHostPort(p.tlsAddr)
	site := "https://www.cdn.test:" + port + "/curl"
	resolve := "www.cdn.test:" + port + ":127.0.0.1"
	for _, c := range []struct{ flag, status string }{{"--http2", "HTTP/2 200"}, {"--http1.1", "HTTP/1.1 200"}} {
		out := run(t, "curl", "-sS", c.flag, "--cacert", p.caFile, "--resolve", resolve, "-D", "-", site)
		if !strings.HasPrefix(out, c.status) || !strings.Contains(out, "object /curl") {
			t.Errorf("curl %s:\n%s", c.flag, out)
		}
	}
	out := run(t, "curl", "-sS", "--proxy", "https://"+p.tlsAddr, "--proxy-cacert", p.caFile, "-D", "-", o.URL+"/viaproxy")
	if !strings.Contains(out, "200") || !strings.Contains(out, "object /viaproxy") {
		t.Errorf("curl through the HTTPS proxy (http:// URL):\n%s", out)
	}
	out = run(t, "curl", "-sS", "-k", "--proxy", "https://"+p.tlsAddr, "--proxy-cacert", p.caFile, tlsOrigin.URL+"/tunnel")
	if !strings.Contains(out, "object /tunnel") {
		t.Errorf("curl through the HTTPS proxy (CONNECT):\n%s", out)
	}
	waitFor(t, "the h2 request in the log", func() bool { return strings.Contains(p.log.String(), "/curl - HIER_DIRECT") })
}

// TestTLSOpenSSL checks the handshake with openssl s_client: ALPN h2 and http/1.1, the
// certificate chosen by SNI and verified against the CA, and TLS 1.1 refused by the server
// (the client allowed to offer it).
func TestTLSOpenSSL(t *testing.T) {
	clienttest.Need(t, "openssl", "openssl")
	o := cacheableOrigin(t)
	other, _ := democa.New("other CA")
	otherLeaf, _ := other.Issue("other.test")
	dir := t.TempDir()
	oc, ok := filepath.Join(dir, "o.pem"), filepath.Join(dir, "o-key.pem")
	if err := democa.WritePair(otherLeaf, oc, ok); err != nil {
		t.Fatal(err)
	}
	p := startTLSProxy(t, reverseRoute(o), fmt.Sprintf("[[proxy.tls.certificates]]\ncert_file = %q\nkey_file = %q\n", oc, ok), Options{})
	sclient := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "openssl", append([]string{"s_client", "-connect", p.tlsAddr}, args...)...)
		out, _ := cmd.CombinedOutput() // s_client exits 1 on a failed handshake: the output says why
		return string(out)
	}
	for _, proto := range []string{"h2", "http/1.1"} {
		out := sclient("-servername", "www.cdn.test", "-alpn", proto, "-CAfile", p.caFile)
		if !strings.Contains(out, "ALPN protocol: "+proto) || !strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("ALPN %s:\n%s", proto, out)
		}
	}
	writeFile(t, filepath.Join(dir, "other-ca.pem"), string(other.CertPEM()))
	if out := sclient("-servername", "other.test", "-CAfile", filepath.Join(dir, "other-ca.pem")); !strings.Contains(out, "CN = other.test") ||
		!strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("SNI other.test did not get its certificate:\n%s", out)
	}
	if out := sclient("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-servername", "www.cdn.test"); !strings.Contains(out, "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256") {
		t.Errorf("TLS 1.2 with an AEAD suite:\n%s", out)
	}
	if out := sclient("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:AES128-GCM-SHA256", "-servername", "www.cdn.test"); !strings.Contains(out, "handshake failure") {
		t.Errorf("TLS 1.2 with only CBC or non-ECDHE suites was not refused:\n%s", out)
	}
	out := sclient("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "www.cdn.test")
	if !strings.Contains(out, "protocol version") && !strings.Contains(out, "unsupported protocol") {
		t.Errorf("TLS 1.1 was not refused for the right reason:\n%s", out)
	}
	if strings.Contains(out, "Cipher is") && !strings.Contains(out, "Cipher is (NONE)") {
		t.Errorf("a TLS 1.1 session was established:\n%s", out)
	}
}

// TestTLSH2load runs short bounded h2load loads on the TLS listener: HTTP/2 with 10 streams
// per connection, and HTTP/1.1 (--h1) over TLS; every request must succeed.
func TestTLSH2load(t *testing.T) {
	clienttest.Need(t, "h2load", "nghttp2-client")
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{Cache: newRealCache(t)})
	url := "https://" + p.tlsAddr + "/load"
	for _, c := range []struct {
		args []string
		n    string
	}{{[]string{"-n", "400", "-c", "4", "-m", "10"}, "400"}, {[]string{"--h1", "-n", "200", "-c", "4"}, "200"}} {
		out := run(t, "h2load", append(c.args, url)...)
		n := c.n
		if want := "requests: " + n + " total, " + n + " started, " + n + " done, " + n + " succeeded"; !strings.Contains(out, want) {
			t.Errorf("h2load %v: want %q in\n%s", c.args, want, out)
		}
		if c.args[0] != "--h1" && !strings.Contains(out, "Application protocol: h2") {
			t.Errorf("h2load did not speak h2:\n%s", out)
		}
	}
}

// TestTLSPython fetches over TLS with Python's ssl and http.client: the CA verified, the
// negotiated version TLS 1.2 or 1.3, a miss then a hit.
func TestTLSPython(t *testing.T) {
	clienttest.Need(t, "python3", "python3")
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{Cache: newRealCache(t)})
	host, port, _ := net.SplitHostPort(p.tlsAddr)
	script := `
import ssl, sys, http.client
ctx = ssl.create_default_context(cafile=sys.argv[1])
for i in range(2):
    c = http.client.HTTPSConnection(sys.argv[2], int(sys.argv[3]), context=ctx, timeout=20)
    c.request("GET", "/py", headers={"Host": "www.cdn.test"})
    r = c.getresponse()
    print(c.sock.version(), r.status, r.getheader("Cache-Status"), r.read().decode())
    c.close()
`
	out := run(t, "python3", "-c", script, p.caFile, host, port)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "TLSv1.3 200") || !strings.Contains(lines[0], "fwd=") ||
		!strings.Contains(lines[1], "hit") || !strings.HasSuffix(lines[1], "object /py via 1.1 outpost") {
		t.Errorf("python:\n%s", out)
	}
}

// TestTLSChromium loads a page with its objects in headless Chromium over https:// through a
// reverse route (HTTP/2: the access log shows each object with HTTP/2.0), and a page over
// http:// through the listener as an HTTPS proxy, named by --proxy-server and by the PAC file. Chromium trusts the proxy's certificate by
// its public key's hash (--ignore-certificate-errors-spki-list).
func TestTLSChromium(t *testing.T) {
	clienttest.Chromium(t)
	o, objects := demoPage(t)
	oport := o.URL[strings.LastIndex(o.URL, ":")+1:]
	p := startTLSProxy(t, "resolve = [\"demo.outpost.test=127.0.0.1\"]\n"+reverseRoute(o), "", Options{})
	_, port, _ := net.SplitHostPort(p.tlsAddr)
	spki := "--ignore-certificate-errors-spki-list=" + democa.SPKIHash(p.leaf)
	runs := []struct {
		name, page string
		flags      []string
	}{
		{"reverse", "https://www.cdn.test:" + port + "/", []string{"--host-resolver-rules=MAP www.cdn.test 127.0.0.1"}},
		{"https proxy", "http://demo.outpost.test:" + oport + "/", []string{"--proxy-server=https://127.0.0.1:" + port, "--proxy-bypass-list=<-loopback>"}},
		// The PAC file fetched from the TLS listener names it as "HTTPS 127.0.0.1:port".
		{"pac naming the https proxy", "http://demo.outpost.test:" + oport + "/", []string{"--proxy-pac-url=https://127.0.0.1:" + port + "/proxy.pac", "--proxy-bypass-list=<-loopback>"}},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			before := len(p.log.lines())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append(append([]string{spki}, r.flags...), "--virtual-time-budget=5000", "--dump-dom", r.page)
			out, err := clienttest.ChromiumCommand(ctx, t, args...).Output()
			if err != nil {
				t.Fatalf("chromium: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "Outpost demo") || !strings.Contains(string(out), "<title>loaded</title>") {
				t.Fatalf("page not loaded with its script:\n%s", out)
			}
			waitFor(t, "every object in the access log over HTTP/2", func() bool {
				lines := p.log.lines()[before:]
				for _, obj := range append([]string{"/"}, objects...) {
					found := false
					for _, l := range lines {
						found = found || strings.Contains(l, obj+" ") && strings.HasSuffix(l, " HTTP/2.0")
					}
					if !found {
						return false
					}
				}
				return true
			})
		})
	}
}
