package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestUpstreamTLS: https:// origins are reached with SNI and a verified certificate; an origin
// whose certificate does not verify gets the client a 502.
func TestUpstreamTLS(t *testing.T) {
	var sni atomic.Value
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s", r.URL.Path)
	}))
	o.TLS = &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni.Store(h.ServerName)
		return nil, nil
	}}
	o.StartTLS()
	t.Cleanup(o.Close)
	_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
	roots := x509.NewCertPool()
	roots.AddCert(o.Certificate())
	route := fmt.Sprintf("resolve = [\"example.com=127.0.0.1\"]\n[[proxy.routes]]\nhost = \"*\"\norigins = [\"https://example.com:%s\"]\n", port)
	cases := []struct {
		name   string
		roots  *x509.CertPool
		status int
	}{
		{"verified", roots, 200},
		{"untrusted certificate", nil, 502},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, route, Options{UpstreamRoots: tc.roots})
			c := dialRaw(t, p.addr)
			for range 2 { // the second request reuses the pooled TLS connection
				c.send("GET /x HTTP/1.1\r\nHost: site.test\r\n\r\n")
				resp, body := c.response("GET")
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tc.status)
				}
				if tc.status == 200 && body != "tls /x" {
					t.Fatalf("body %q", body)
				}
			}
			if got, _ := sni.Load().(string); got != "example.com" {
				t.Errorf("SNI %q, want example.com", got)
			}
		})
	}
}

// closingOrigin answers each connection's first request with a keep-alive response, then closes
// it: a pooled connection the proxy holds is dead by its next use. It counts connections.
func closingOrigin(t *testing.T) (addr string, conns *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int64)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer nc.Close()
				if _, err := http.ReadRequest(bufio.NewReader(nc)); err == nil {
					_, _ = io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// TestUpstreamClosedIdleConnection: an origin that closes a keep-alive connection after its
// response costs the next request nothing: the dead pooled connection is noticed and replaced.
func TestUpstreamClosedIdleConnection(t *testing.T) {
	addr, conns := closingOrigin(t)
	p := startProxy(t, "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://"+addr+"\"]\n", Options{})
	c := dialRaw(t, p.addr)
	for i := range 5 {
		c.send("GET /n HTTP/1.1\r\nHost: site.test\r\n\r\n")
		if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 5 {
		t.Errorf("%d origin connections for 5 requests", n)
	}
}

// TestUpstreamKeepAlive: sequential requests to one origin share one pooled connection, and
// idle_conn_timeout closes it once idle.
func TestUpstreamKeepAlive(t *testing.T) {
	var conns atomic.Int64
	closed := make(chan struct{}, 1)
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ka") }))
	o.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed:
			select {
			case closed <- struct{}{}:
			default:
			}
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	p := startProxy(t, "[proxy.upstream]\nidle_conn_timeout = \"200ms\"\n[[proxy.routes]]\nhost = \"*\"\norigins = [\""+o.URL+"\"]\n", Options{})
	c := dialRaw(t, p.addr)
	for i := range 10 {
		c.send("GET /k HTTP/1.1\r\nHost: site.test\r\n\r\n")
		if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "ka" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d origin connections for 10 sequential requests, want 1", n)
	}
	<-closed // the idle connection is reaped (the test's own timeout bounds the wait)
}

// FuzzUpstreamResponse feeds arbitrary origin bytes to the upstream client's response reading
// and body framing: it must never panic or loop, a response it accepts has one framing, and a
// connection is pooled again only when the body ended by its framing with nothing after it.
func FuzzUpstreamResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nclose-delimited",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		cl := newClient(nil, upstreamLimits{maxIdle: 4})
		fc := &fakeConn{Reader: bytes.NewReader(data)}
		uc := &upConn{nc: fc, br: bufio.NewReaderSize(fc, 64), bw: bufio.NewWriter(fc), key: "k"}
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		r := &http.Request{Method: method, Header: http.Header{}, Body: http.NoBody}
		resp, err := cl.readResponse(uc, &outRequest{r: r, interim: func(int, http.Header) {}}, nil)
		if err != nil {
			return
		}
		if resp.StatusCode < 101 || resp.StatusCode > 999 || resp.StatusCode == http.StatusSwitchingProtocols {
			t.Fatalf("accepted status %d", resp.StatusCode)
		}
		_, rerr := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if h := cl.hosts["k"]; h != nil && len(h.idle) > 0 && (rerr != nil || uc.br.Buffered() > 0) {
			t.Fatalf("connection pooled after a body error %v or with %d bytes left", rerr, uc.br.Buffered())
		}
	})
}

// TestUpstreamMaxConnsPerHost: with max_conns_per_host = 1, concurrent requests to one origin
// wait for its one connection instead of opening more, and all are answered.
func TestUpstreamMaxConnsPerHost(t *testing.T) {
	var conns, inFlight, most atomic.Int64
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		_, _ = io.WriteString(w, "one")
		inFlight.Add(-1)
	}))
	o.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	p := startProxy(t, "[proxy.upstream]\nmax_conns_per_host = 1\n[[proxy.routes]]\nhost = \"*\"\norigins = [\""+o.URL+"\"]\n", Options{})
	const clients = 4
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			nc, err := net.Dial("tcp", p.addr)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			for j := range 5 {
				fmt.Fprintf(nc, "GET /c%d/%d HTTP/1.1\r\nHost: site.test\r\n\r\n", i, j)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != "one" {
					errs <- fmt.Errorf("%d %q", resp.StatusCode, body)
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d origin connections, want 1", n)
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d requests at the origin at once, want 1", m)
	}
}
