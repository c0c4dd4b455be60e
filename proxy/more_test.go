package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHTTP10Origin: an HTTP/1.0 origin that delimits its body by closing is relayed chunked
// to HTTP/1.1 clients (connection kept) and close-delimited to HTTP/1.0 clients.
func TestHTTP10Origin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold-style body")
			}()
		}
	}()
	p := startProxy(t, fmt.Sprintf("[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://%s\"]\n", ln.Addr()), Options{})
	c := dialRaw(t, p.addr)
	for range 2 {
		c.send("GET /a HTTP/1.1\r\nHost: s\r\n\r\n")
		resp, body := c.response("GET")
		if body != "old-style body" || len(resp.TransferEncoding) == 0 || resp.Close {
			t.Fatalf("1.1 client: %q TE %v close %v", body, resp.TransferEncoding, resp.Close)
		}
	}
	c10 := dialRaw(t, p.addr)
	c10.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body := c10.response("GET")
	if body != "old-style body" || !resp.Close || !c10.closed() {
		t.Fatalf("1.0 client: %q close %v", body, resp.Close)
	}
}

// TestChunkedUploadStreams: a chunked request body larger than request_buffer streams to the
// origin intact.
func TestChunkedUploadStreams(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	})
	p := startProxy(t, "request_buffer = \"4KiB\"\n"+reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	var req bytes.Buffer
	req.WriteString("POST /up HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 64 {
		fmt.Fprintf(&req, "%x\r\n%s\r\n", 4096, bytes.Repeat([]byte("q"), 4096))
	}
	req.WriteString("0\r\n\r\n")
	go c.nc.Write(req.Bytes())
	if _, body := c.response("POST"); body != fmt.Sprint(64*4096) {
		t.Fatalf("origin got %s bytes", body)
	}
}

// fakeFTP answers ftp:// URLs for the gateway seam.
type fakeFTP struct{ urls []string }

func (f *fakeFTP) Fetch(r *http.Request) (*http.Response, error) {
	f.urls = append(f.urls, r.URL.String())
	body := "ftp file " + r.URL.Path
	return &http.Response{StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/plain"}}, ContentLength: int64(len(body)),
		Body: io.NopCloser(strings.NewReader(body))}, nil
}

// TestFTPGateway: ftp:// forward requests go to Options.FTP.
func TestFTPGateway(t *testing.T) {
	f := &fakeFTP{}
	p := startProxy(t, "", Options{FTP: f})
	c := dialRaw(t, p.addr)
	c.send("GET ftp://127.0.0.1:2121/pub/readme.txt HTTP/1.1\r\nHost: 127.0.0.1:2121\r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "ftp file /pub/readme.txt" || len(f.urls) != 1 {
		t.Fatalf("%d %q %v", resp.StatusCode, body, f.urls)
	}
}

// TestAccessLogFormats: the combined format and a file destination.
func TestAccessLogFormats(t *testing.T) {
	o := echoOrigin(t)
	path := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, reverseRoute(o)+"[proxy.access_log]\nformat = \"combined\"\n", Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /c?q=1 HTTP/1.1\r\nHost: s\r\nUser-Agent: tester/1.0\r\nReferer: http://ref/\r\n\r\n")
	c.response("GET")
	waitFor(t, "combined line", func() bool { return len(p.log.lines()) == 1 })
	line := p.log.lines()[0]
	for _, want := range []string{`127.0.0.1 - - [`, `] "GET /c?q=1 HTTP/1.1" 200 `, `"http://ref/" "tester/1.0" TCP_MISS ` + o.hostport() + ` `} {
		if !strings.Contains(line, want) {
			t.Errorf("combined line %q lacks %q", line, want)
		}
	}

	cfg := loadProxyConfig(t, reverseRoute(o)+fmt.Sprintf("[proxy.access_log]\ndestination = %q\n", path))
	pf := startProxyConfig(t, cfg, Options{})
	pf.srv.alog.setOutput(nil) // undo the test buffer: write through the log's own buffer
	cf := dialRaw(t, pf.addr)
	cf.send("GET /f HTTP/1.1\r\nHost: s\r\n\r\n")
	cf.response("GET")
	waitFor(t, "the file log", func() bool {
		pf.srv.alog.flush()
		data, _ := os.ReadFile(path)
		return strings.Contains(string(data), "TCP_MISS/200") && strings.Contains(string(data), "http://s/f")
	})
}
