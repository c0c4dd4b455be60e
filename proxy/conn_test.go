package proxy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestTunnelHalfClose: a CONNECT tunnel passes bytes both ways and passes a half-close: the
// client's FIN reaches the server, which still answers; then the server's FIN reaches the client.
func TestTunnelHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c) // until the client's half-close arrives
		fmt.Fprintf(c, "server got %d bytes: %s", len(got), got)
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p := startProxy(t, "connect_ports = ["+port+"]\n", Options{})
	c := dialRaw(t, p.addr)
	c.send("CONNECT " + ln.Addr().String() + " HTTP/1.1\r\nHost: " + ln.Addr().String() + "\r\n\r\nearly")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	c.send(" and late")
	if err := c.nc.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatal(err)
	}
	if want := "server got 14 bytes: early and late"; string(reply) != want {
		t.Fatalf("reply %q, want %q", reply, want)
	}
	waitFor(t, "tunnel logged", func() bool { return strings.Contains(p.log.String(), "TCP_TUNNEL/200") })
}

// TestIdleAndRequestLimits: an idle connection is closed after idle_timeout; a connection
// reaches max_requests_per_connection with Connection: close on the last response.
func TestIdleAndRequestLimits(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, "idle_timeout = \"200ms\"\nmax_requests_per_connection = 2\n"+reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /1 HTTP/1.1\r\nHost: s\r\n\r\n")
	if resp, _ := c.response("GET"); resp.Close {
		t.Fatal("first response closes")
	}
	c.send("GET /2 HTTP/1.1\r\nHost: s\r\n\r\n")
	if resp, _ := c.response("GET"); !resp.Close {
		t.Fatal("second response should carry Connection: close")
	}
	if !c.closed() {
		t.Fatal("connection open after the request limit")
	}
	idle := dialRaw(t, p.addr)
	if !idle.closed() {
		t.Fatal("idle connection not closed")
	}
}

// TestLargeBodiesStream: large request and response bodies go through intact, chunked and with
// Content-Length, and the origin's trailers reach an HTTP/1.1 client.
func TestLargeBodiesStream(t *testing.T) {
	const size = 8 << 20
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, _ := io.Copy(sum, r.Body)
		if r.URL.Path == "/download" {
			w.Header().Set("Trailer", "X-Sum")
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
			for i := 0; i < size/len(chunk); i++ {
				w.Write(chunk)
			}
			w.Header().Set("X-Sum", "done")
			return
		}
		fmt.Fprintf(w, "%d %x", n, sum.Sum(nil))
	})
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	payload := bytes.Repeat([]byte("z"), size)
	c.send(fmt.Sprintf("PUT /upload HTTP/1.1\r\nHost: s\r\nContent-Length: %d\r\n\r\n", size))
	go c.nc.Write(payload)
	_, body := c.response("PUT")
	if want := fmt.Sprintf("%d %x", size, sha256.Sum256(payload)); body != want {
		t.Fatalf("upload: %q want %q", body, want)
	}
	c.send("GET /download HTTP/1.1\r\nHost: s\r\n\r\n")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size || len(resp.TransferEncoding) == 0 {
		t.Fatalf("download: %d bytes, err %v, TE %v", n, err, resp.TransferEncoding)
	}
	if resp.Trailer.Get("X-Sum") != "done" {
		t.Errorf("trailer %v", resp.Trailer)
	}
}

// TestHeaderTimeout: a request head that stops arriving gets 408 after read_header_timeout and
// the connection closes (slowloris).
func TestHeaderTimeout(t *testing.T) {
	p := startProxy(t, "read_header_timeout = \"150ms\"\n", Options{})
	c := dialRaw(t, p.addr)
	c.send("GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127")
	resp, _ := c.response("GET")
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if !c.closed() {
		t.Fatal("connection open after 408")
	}
}
