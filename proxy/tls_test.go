package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/http2"

	"github.com/outpost-proxy/outpost/internal/democa"
)

// tlsProxy is a running proxy with a TLS listener and the CA its certificate comes from.
type tlsProxy struct {
	*testProxy
	tlsAddr string
	ca      *democa.CA
	caFile  string // the CA certificate in PEM, for curl --cacert and friends
	leaf    *x509.Certificate
}

// startTLSProxy starts a proxy from a [proxy] section with a TLS listener on 127.0.0.1:0 and a
// certificate for *.cdn.test, localhost and 127.0.0.1 signed by a fresh CA. extra is TOML
// appended after the section (tables such as [proxy.http2]).
func startTLSProxy(t testing.TB, section, extra string, opts Options) *tlsProxy {
	t.Helper()
	ca, err := democa.New("test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(democa.DemoNames...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	if err := democa.WritePair(leaf, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	writeFile(t, caFile, string(ca.CertPEM()))
	text := fmt.Sprintf("%s\n[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\n[[proxy.tls.certificates]]\ncert_file = %q\nkey_file = %q\n%s\n",
		section, certFile, keyFile, extra)
	p := startProxy(t, text, opts)
	return &tlsProxy{testProxy: p, tlsAddr: p.srv.TLSAddrs()[0], ca: ca, caFile: caFile, leaf: leaf.Leaf}
}

// writeFile writes a test file.
func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// clientTLS is a client configuration trusting the proxy's CA, for serverName.
func (p *tlsProxy) clientTLS(serverName string, protos ...string) *tls.Config {
	return &tls.Config{RootCAs: p.ca.Pool(), ServerName: serverName, NextProtos: protos}
}

// h1Client is an HTTP/1.1-only client for the TLS listener (every request dialled there).
func (p *tlsProxy) h1Client() *http.Client {
	tr := &http.Transport{TLSClientConfig: p.clientTLS("www.cdn.test", "http/1.1"),
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", p.tlsAddr)
		}}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// h2Client is an HTTP/2 client for the TLS listener: https:// URLs go there with SNI from the
// URL's host, http:// URLs too (as :scheme http, a forward-proxy request).
func (p *tlsProxy) h2Client() *http.Client {
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		d := tls.Dialer{Config: p.clientTLS(host, "h2")}
		if net.ParseIP(host) != nil || !strings.HasSuffix(host, ".cdn.test") {
			d.Config.ServerName = "www.cdn.test"
		}
		return d.DialContext(ctx, "tcp", p.tlsAddr)
	}}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// fetchURL fetches url with c and returns the response and its body.
func fetchURL(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp, string(body)
}

// cacheableOrigin answers every path with a cacheable body naming the path.
func cacheableOrigin(t testing.TB) *testOrigin {
	return startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "object %s via %s", r.URL.Path, r.Header.Get("Via"))
	})
}

// TestTLSReverseSameRequestPath serves a reverse route over TLS with HTTP/1.1 and HTTP/2: the
// same cache (a miss, then hits across both protocols), the same Cache-Status, Via, access log
// (the protocol in the line) and metrics.
func TestTLSReverseSameRequestPath(t *testing.T) {
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{Cache: newRealCache(t)})
	resp, body := fetchURL(t, p.h1Client(), "https://www.cdn.test/a")
	if resp.Proto != "HTTP/1.1" || resp.TLS == nil || body != "object /a via 1.1 outpost" {
		t.Fatalf("HTTP/1.1 over TLS: %s %q", resp.Proto, body)
	}
	h2 := p.h2Client()
	resp, body = fetchURL(t, h2, "https://www.cdn.test/a")
	if resp.Proto != "HTTP/2.0" || body != "object /a via 1.1 outpost" {
		t.Fatalf("HTTP/2: %s %q", resp.Proto, body)
	}
	if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "hit") {
		t.Errorf("HTTP/2 request after an HTTP/1.1 miss: Cache-Status %q, want a hit", cs)
	}
	if via := resp.Header.Get("Via"); via != "1.1 outpost" {
		t.Errorf("Via %q", via)
	}
	resp, _ = fetchURL(t, h2, "https://www.cdn.test/b") // a miss over HTTP/2: HTTP/1.1 to the origin
	if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "fwd=") {
		t.Errorf("first /b over HTTP/2: Cache-Status %q, want a miss", cs)
	}
	if last := o.last(); last.Proto != "HTTP/1.1" || !strings.Contains(last.Header.Get("Via"), "2 outpost") {
		t.Errorf("the origin got %s with Via %q, want HTTP/1.1 with Via 2 outpost", last.Proto, last.Header.Get("Via"))
	}
	if o.seen() != 2 {
		t.Errorf("origin saw %d requests, want 2 (/a once, /b once)", o.seen())
	}
	waitFor(t, "three log lines", func() bool { return len(p.log.lines()) == 3 })
	lines := p.log.lines()
	if strings.Contains(lines[0], "HTTP/2.0") || !strings.Contains(lines[1], "TCP_MEM_HIT/200") ||
		!strings.HasSuffix(lines[1], " HTTP/2.0") || !strings.Contains(lines[2], "TCP_MISS/200") {
		t.Errorf("access log:\n%s", strings.Join(lines, "\n"))
	}
	if n := counterValue(p.srv.m.connsH2); n != 1 {
		t.Errorf("h2 connections counted: %v", n)
	}
}

// TestTLSVersionsSNIResumption checks the handshake: TLS 1.1 refused, 1.2 and 1.3 accepted,
// ALPN, the certificate chosen by SNI (a second certificate for another name, the first as
// the default), and session resumption.
func TestTLSVersionsSNIResumption(t *testing.T) {
	o := cacheableOrigin(t)
	other, err := democa.New("other CA")
	if err != nil {
		t.Fatal(err)
	}
	otherLeaf, _ := other.Issue("other.test")
	dir := t.TempDir()
	oc, ok := filepath.Join(dir, "o.pem"), filepath.Join(dir, "o-key.pem")
	if err := democa.WritePair(otherLeaf, oc, ok); err != nil {
		t.Fatal(err)
	}
	p := startTLSProxy(t, reverseRoute(o), fmt.Sprintf("[[proxy.tls.certificates]]\ncert_file = %q\nkey_file = %q\n", oc, ok), Options{})
	dial := func(cfg *tls.Config) (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.tlsAddr, cfg)
	}
	if _, err := dial(&tls.Config{RootCAs: p.ca.Pool(), ServerName: "www.cdn.test", MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := p.clientTLS("www.cdn.test", "h2", "http/1.1")
		cfg.MinVersion, cfg.MaxVersion = v, v
		c, err := dial(cfg)
		if err != nil {
			t.Fatalf("%s: %v", tls.VersionName(v), err)
		}
		if st := c.ConnectionState(); st.NegotiatedProtocol != "h2" {
			t.Errorf("%s: ALPN chose %q", tls.VersionName(v), st.NegotiatedProtocol)
		}
		c.Close()
	}
	c, err := dial(&tls.Config{RootCAs: other.Pool(), ServerName: "other.test"})
	if err != nil {
		t.Fatalf("SNI other.test: %v", err)
	}
	if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "other.test" {
		t.Errorf("SNI other.test got %q", cn)
	}
	c.Close()
	c, err = dial(&tls.Config{RootCAs: p.ca.Pool(), ServerName: "unknown.example"})
	if err == nil || !strings.Contains(err.Error(), "*.cdn.test") {
		t.Errorf("an unknown name should get the default certificate (*.cdn.test): %v", err)
	}
	cache := tls.NewLRUClientSessionCache(4)
	for i, want := range []bool{false, true} {
		cfg := p.clientTLS("www.cdn.test", "http/1.1")
		cfg.ClientSessionCache = cache
		c, err := dial(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// TLS 1.3 tickets arrive after the handshake: one request and its answer bring them.
		fmt.Fprintf(c, "GET /r HTTP/1.1\r\nHost: www.cdn.test\r\nConnection: close\r\n\r\n")
		_, _ = io.ReadAll(bufio.NewReader(c))
		if got := c.ConnectionState().DidResume; got != want {
			t.Errorf("connection %d: resumed %v, want %v", i, got, want)
		}
		c.Close()
	}
}

// TestTLSForwardProxy uses the TLS listener as an HTTPS proxy: forward requests and CONNECT
// over HTTP/1.1 (Go's Transport with an https:// proxy URL) and over HTTP/2 (:scheme http
// requests, CONNECT on a stream).
func TestTLSForwardProxy(t *testing.T) {
	o := cacheableOrigin(t)
	_, port, _ := net.SplitHostPort(o.hostport())
	p := startTLSProxy(t, "connect_ports = ["+port+"]\n", "", Options{Cache: newRealCache(t)})
	t.Run("http1 forward", func(t *testing.T) {
		tr := &http.Transport{Proxy: http.ProxyURL(mustURL(t, "https://"+p.tlsAddr)), TLSClientConfig: p.clientTLS("")}
		resp, body := fetchURL(t, &http.Client{Transport: tr, Timeout: 20 * time.Second}, o.URL+"/fwd1")
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "object /fwd1") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("http1 connect", func(t *testing.T) {
		c, err := tls.Dial("tcp", p.tlsAddr, p.clientTLS("localhost", "http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nGET /tun1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", o.hostport(), o.hostport())
		all, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(all), "HTTP/1.1 200") || !strings.Contains(string(all), "object /tun1") {
			t.Fatalf("tunnel over TLS:\n%s", all)
		}
	})
	t.Run("h2 forward", func(t *testing.T) {
		resp, body := fetchURL(t, p.h2Client(), o.URL+"/fwd2")
		if resp.Proto != "HTTP/2.0" || !strings.HasPrefix(body, "object /fwd2 via 2 outpost") {
			t.Fatalf("%s %q", resp.Proto, body)
		}
		resp, _ = fetchURL(t, p.h2Client(), o.URL+"/fwd2")
		if !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
			t.Errorf("second forward request over h2: Cache-Status %q", resp.Header.Get("Cache-Status"))
		}
	})
	t.Run("h2 connect", func(t *testing.T) {
		pr, pw := io.Pipe()
		req := &http.Request{Method: http.MethodConnect, URL: mustURL(t, "https://"+o.hostport()), Host: o.hostport(),
			Header: http.Header{}, Body: pr}
		resp, err := p.h2Client().Transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT over h2: %d", resp.StatusCode)
		}
		go func() {
			fmt.Fprintf(pw, "GET /tun2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		}()
		all, _ := io.ReadAll(resp.Body)
		pw.Close()
		if !strings.Contains(string(all), "object /tun2") {
			t.Fatalf("tunnel over h2:\n%s", all)
		}
	})
	waitFor(t, "the tunnels in the log", func() bool { return strings.Count(p.log.String(), "TCP_TUNNEL/200") == 2 })
}

// mustURL parses a URL.
func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestH2RequestBodies: request bodies over HTTP/2 reach the origin (with and without a
// content-length), and max_body_size holds for them (413).
func TestH2RequestBodies(t *testing.T) {
	o := echoOrigin(t)
	p := startTLSProxy(t, "max_body_size = \"1KiB\"\n"+reverseRoute(o), "", Options{})
	c := p.h2Client()
	for _, tt := range []struct {
		name   string
		body   io.Reader
		length int64
		status int
		echo   string
	}{
		{"with content-length", strings.NewReader("hello"), 5, 200, "POST /up hello"},
		{"without content-length", io.MultiReader(strings.NewReader("chun"), strings.NewReader("ked")), -1, 200, "POST /up chunked"},
		{"declared too large", strings.NewReader(strings.Repeat("x", 2000)), 2000, 413, ""},
		{"streamed too large", io.MultiReader(strings.NewReader(strings.Repeat("x", 1000)), strings.NewReader(strings.Repeat("y", 1000))), -1, 413, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "https://www.cdn.test/up", tt.body)
			req.ContentLength = tt.length
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || tt.echo != "" && string(body) != tt.echo {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, body, tt.status, tt.echo)
			}
		})
	}
}

// TestH2C: with [proxy.http2] h2c, a plain connection that opens with the client preface
// speaks HTTP/2 (prior knowledge) through the same path; HTTP/1.1 on the same listener,
// a POST included, is unchanged; curl and h2load speak h2c to it.
func TestH2C(t *testing.T) {
	o := cacheableOrigin(t)
	p := startProxy(t, reverseRoute(o)+"[proxy.http2]\nh2c = true\n", Options{Cache: newRealCache(t)})
	h2c := &http.Client{Timeout: 20 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", p.addr)
		}}}
	resp, body := fetchURL(t, h2c, "http://www.cdn.test/h2c")
	if resp.Proto != "HTTP/2.0" || body != "object /h2c via 2 outpost" {
		t.Fatalf("h2c: %s %q", resp.Proto, body)
	}
	c := dialRaw(t, p.addr)
	c.send("POST /echo HTTP/1.1\r\nHost: www.cdn.test\r\nContent-Length: 2\r\n\r\nhi")
	if resp, _ := c.response("POST"); resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" {
		t.Errorf("HTTP/1.1 POST with h2c on: %d %s", resp.StatusCode, resp.Proto)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		out := run(t, "curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-H", "Host: www.cdn.test", "http://"+p.addr+"/h2c")
		if !strings.HasPrefix(out, "HTTP/2 200") || !strings.Contains(out, "hit") {
			t.Errorf("curl --http2-prior-knowledge:\n%s", out)
		}
	}
	if _, err := exec.LookPath("h2load"); err == nil {
		out := run(t, "h2load", "-n", "100", "-c", "2", "-m", "10", "http://"+p.addr+"/h2c")
		if !strings.Contains(out, "100 succeeded") || !strings.Contains(out, "Application protocol: h2c") {
			t.Errorf("h2load h2c:\n%s", out)
		}
	}
	if n := counterValue(p.srv.m.connsH2C); n < 2 {
		t.Errorf("h2c connections counted: %v", n)
	}
}

// TestTLSForwardedProto: over TLS, upstream requests say proto=https in Forwarded (HTTP/1.1
// and HTTP/2) and the access log names the URL https://.
func TestTLSForwardedProto(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Header.Get("Forwarded")) })
	p := startTLSProxy(t, "forwarded = true\n"+reverseRoute(o), "", Options{})
	for name, c := range map[string]*http.Client{"http/1.1": p.h1Client(), "h2": p.h2Client()} {
		if _, body := fetchURL(t, c, "https://www.cdn.test/f"); !strings.Contains(body, "proto=https") {
			t.Errorf("%s: Forwarded %q", name, body)
		}
	}
	waitFor(t, "two log lines", func() bool { return len(p.log.lines()) == 2 })
	for _, l := range p.log.lines() {
		if !strings.Contains(l, " https://www.cdn.test/f ") {
			t.Errorf("log line without https://: %s", l)
		}
	}
}

// TestTLSIdleConnHoldsNoBuffers: between requests an idle TLS keep-alive connection gives its
// read and write buffers back (readFirstTLS); the next request, and pipelined requests sent as
// separate TLS records, are answered.
func TestTLSIdleConnHoldsNoBuffers(t *testing.T) {
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{Cache: newRealCache(t)})
	c, err := tls.Dial("tcp", p.tlsAddr, p.clientTLS("www.cdn.test", "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	read := func(path string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(body), "object "+path) {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
	}
	fmt.Fprintf(c, "GET /idle1 HTTP/1.1\r\nHost: www.cdn.test\r\n\r\n")
	read("/idle1")
	waitFor(t, "the idle connection's buffers released", func() bool {
		p.srv.mu.Lock()
		defer p.srv.mu.Unlock()
		for cn := range p.srv.conns {
			cn.mu.Lock()
			held := cn.bufs != nil
			cn.mu.Unlock()
			if held || !cn.idle.Load() {
				return false
			}
		}
		return len(p.srv.conns) == 1
	})
	fmt.Fprintf(c, "GET /idle2 HTTP/1.1\r\nHost: www.cdn.test\r\n\r\n")
	fmt.Fprintf(c, "GET /idle3 HTTP/1.1\r\nHost: www.cdn.test\r\n\r\n") // a second TLS record
	read("/idle2")
	read("/idle3")
}

// TestH2ProxyAuth: the HTTPS forward proxy asks HTTP/2 clients for credentials like HTTP/1.1
// ones: 407 with Proxy-Authenticate, then 200 with Proxy-Authorization.
func TestH2ProxyAuth(t *testing.T) {
	o := cacheableOrigin(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users")
	writeFile(t, users, "alice:"+string(hash)+"\n")
	p := startTLSProxy(t, fmt.Sprintf("auth_users_file = %q\n", users), "", Options{})
	c := p.h2Client()
	resp, _ := fetchURL(t, c, o.URL+"/auth")
	if resp.StatusCode != http.StatusProxyAuthRequired || !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic realm=") {
		t.Fatalf("without credentials: %d %v", resp.StatusCode, resp.Header)
	}
	req, _ := http.NewRequest(http.MethodGet, o.URL+"/auth", nil)
	req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:s3cret")))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with credentials: %d", resp.StatusCode)
	}
	if last := o.last(); last.Header.Get("Proxy-Authorization") != "" {
		t.Error("Proxy-Authorization went on to the origin")
	}
	waitFor(t, "the user in the log", func() bool { return strings.Contains(p.log.String(), " alice HIER_DIRECT") })
}
