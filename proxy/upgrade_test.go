package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// wsOrigin is a raw-socket WebSocket-style origin: a request asking for "Upgrade: websocket"
// gets 101 and an echo of every byte after the request head (with half-close passed back);
// paths /refuse400 and /refuse200 answer normally instead, on a keep-alive connection.
type wsOrigin struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []*http.Request // the requests read, in order
}

// startWSOrigin starts a wsOrigin on 127.0.0.1:0.
func startWSOrigin(t *testing.T) *wsOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &wsOrigin{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
				o.serve(nc)
			}()
		}
	}()
	return o
}

// serve answers requests on one origin connection.
func (o *wsOrigin) serve(nc net.Conn) {
	br := bufio.NewReader(nc)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		o.mu.Lock()
		o.seen = append(o.seen, req)
		o.mu.Unlock()
		switch {
		case req.URL.Path == "/refuse400":
			io.WriteString(nc, "HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\nno ws\r\n")
		case req.URL.Path == "/refuse200" || req.Header.Get("Upgrade") != "websocket" ||
			!strings.EqualFold(req.Header.Get("Connection"), "upgrade"):
			body := "plain " + req.URL.Path
			fmt.Fprintf(nc, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		default:
			io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"+
				"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
			_, _ = io.Copy(nc, br)
			_ = nc.(*net.TCPConn).CloseWrite()
			_, _ = io.Copy(io.Discard, br)
			return
		}
	}
}

// requests returns the paths of the requests the origin read.
func (o *wsOrigin) requests() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.seen...)
}

// upgradeHead is an upgrade request head for target (origin-form or absolute-form).
func upgradeHead(target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: site.test\r\nConnection: keep-alive, Upgrade\r\n" +
		"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// TestUpgradeSplices: an upgrade request reaches the origin with Upgrade and Connection kept,
// the origin's 101 reaches the client with its fields, then bytes flow both ways (the pipelined
// request sent right behind the upgrade is tunnel data, not a request), half-close passes
// through both ways, and the access log has a TCP_TUNNEL/101 line. Through a reverse route
// (with and without a cache, which an upgrade bypasses) and as a forward request.
func TestUpgradeSplices(t *testing.T) {
	o := startWSOrigin(t)
	originURL := "http://" + o.ln.Addr().String()
	for _, tc := range []struct {
		name, section, target string
		cache                 bool
	}{
		{"reverse route", fmt.Sprintf("[[proxy.routes]]\nhost = \"*\"\norigins = [%q]\n", originURL), "/ws", false},
		{"reverse route with a cache", fmt.Sprintf("[[proxy.routes]]\nhost = \"*\"\norigins = [%q]\n", originURL), "/ws", true},
		{"forward", "", originURL + "/ws", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(o.requests())
			var opts Options
			if tc.cache {
				opts.Cache = newRealCache(t)
			}
			p := startProxy(t, tc.section, opts)
			c := dialRaw(t, p.addr)
			pipelined := "GET /after HTTP/1.1\r\nHost: site.test\r\n\r\n"
			c.send(upgradeHead(tc.target) + pipelined)
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" ||
				!strings.EqualFold(resp.Header.Get("Connection"), "upgrade") ||
				resp.Header.Get("Sec-WebSocket-Accept") == "" || resp.Header.Get("Via") == "" {
				t.Fatalf("response %d %v", resp.StatusCode, resp.Header)
			}
			got := make([]byte, len(pipelined))
			if _, err := io.ReadFull(c.br, got); err != nil || string(got) != pipelined {
				t.Fatalf("echo of the bytes behind the upgrade: %q, %v", got, err)
			}
			c.send("hello, tunnel")
			got = make([]byte, len("hello, tunnel"))
			if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "hello, tunnel" {
				t.Fatalf("echo: %q, %v", got, err)
			}
			if err := c.nc.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if rest, err := io.ReadAll(c.br); err != nil || len(rest) != 0 {
				t.Fatalf("after half-close: %q, %v; want EOF passed back", rest, err)
			}
			reqs := o.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("origin read %d requests, want only the upgrade", len(reqs))
			}
			if h := reqs[0].Header; h.Get("Upgrade") != "websocket" || !strings.EqualFold(h.Get("Connection"), "upgrade") ||
				h.Get("Sec-WebSocket-Key") == "" {
				t.Errorf("origin got header %v", h)
			}
			waitFor(t, "upgrade logged", func() bool {
				log := p.log.String()
				return strings.Contains(log, "TCP_TUNNEL/101") && strings.Contains(log, "/ws")
			})
		})
	}
}

// TestUpgradeRefused: an origin that answers an upgrade request with anything but 101 has its
// response relayed as usual, and the client's connection goes on as HTTP.
func TestUpgradeRefused(t *testing.T) {
	o := startWSOrigin(t)
	p := startProxy(t, fmt.Sprintf("[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://%s\"]\n", o.ln.Addr()), Options{})
	for _, tc := range []struct {
		name, path string
		status     int
		body       string
	}{
		{"400", "/refuse400", 400, "no ws\r\n"},
		{"200", "/refuse200", 200, "plain /refuse200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, p.addr)
			c.send(upgradeHead(tc.path))
			resp, body := c.response("GET")
			if resp.StatusCode != tc.status || body != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if resp.Header.Get("Upgrade") != "" {
				t.Errorf("Upgrade leaked into a refused upgrade's response: %v", resp.Header)
			}
			reqs := o.requests()
			if h := reqs[len(reqs)-1].Header; h.Get("Upgrade") != "websocket" || !strings.EqualFold(h.Get("Connection"), "upgrade") {
				t.Errorf("origin got header %v, want Upgrade and Connection kept", h)
			}
			c.send("GET /next HTTP/1.1\r\nHost: site.test\r\n\r\n")
			if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "plain /next" {
				t.Fatalf("next request on the connection: %d %q", resp.StatusCode, body)
			}
			if !strings.Contains(p.log.String(), fmt.Sprintf("/%d", tc.status)) {
				t.Errorf("log %q", p.log.String())
			}
		})
	}
}

// TestUpgradeIdleTunnelCloses: an upgraded connection with no traffic either way is closed
// after proxy.tunnel_idle_timeout.
func TestUpgradeIdleTunnelCloses(t *testing.T) {
	o := startWSOrigin(t)
	p := startProxy(t, fmt.Sprintf("tunnel_idle_timeout = \"200ms\"\n[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://%s\"]\n", o.ln.Addr()), Options{})
	c := dialRaw(t, p.addr)
	c.send(upgradeHead("/ws"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	if !c.closed() {
		t.Fatal("idle upgraded connection was not closed")
	}
}

// TestIsUpgrade: which requests ask to switch protocols.
func TestIsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		want       bool
	}{
		{"websocket", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", true},
		{"token in a list, any case", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, uPgRaDe\r\nUpgrade: websocket\r\n\r\n", true},
		{"no Connection token", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false},
		{"no Upgrade field", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n", false},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
		{"HEAD", "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
		{"with a body", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h wire.RequestHead
			if err := h.Read(bufio.NewReader(strings.NewReader(tc.head)), wire.Limits{MaxBytes: 8 << 10, MaxFields: 100}); err != nil {
				t.Fatal(err)
			}
			if got := isUpgrade(&h); got != tc.want {
				t.Errorf("isUpgrade = %v, want %v", got, tc.want)
			}
		})
	}
}
