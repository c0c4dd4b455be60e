package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultOrigin is a raw-TCP origin that answers GET /ok well and /bad/<case> with the case's
// bytes, and records which requests arrived on which connection.
type faultOrigin struct {
	ln    net.Listener
	cases map[string]string
	mu    sync.Mutex
	conns [][]string // per connection, the paths it carried
	wg    sync.WaitGroup
}

// okResponse is the good, cacheable answer.
const okResponse = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok"

// startFaultOrigin starts the origin; it stops with the test.
func startFaultOrigin(t *testing.T, cases map[string]string) *faultOrigin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &faultOrigin{ln: ln, cases: cases}
	o.wg.Add(1)
	go o.serve()
	t.Cleanup(func() { _ = ln.Close(); o.wg.Wait() })
	return o
}

// serve accepts connections until the listener closes.
func (o *faultOrigin) serve() {
	defer o.wg.Done()
	for {
		nc, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		id := len(o.conns)
		o.conns = append(o.conns, nil)
		o.mu.Unlock()
		o.wg.Add(1)
		go o.conn(nc, id)
	}
}

// conn answers the requests of one connection (bodiless requests only).
func (o *faultOrigin) conn(nc net.Conn, id int) {
	defer o.wg.Done()
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		o.mu.Lock()
		o.conns[id] = append(o.conns[id], req.URL.Path)
		o.mu.Unlock()
		name, bad := strings.CutPrefix(req.URL.Path, "/bad/")
		if !bad {
			_, _ = io.WriteString(nc, okResponse)
			continue
		}
		if name == "endless 1xx" {
			for range 100000 {
				if _, err := io.WriteString(nc, "HTTP/1.1 102 Processing\r\n\r\n"); err != nil {
					return
				}
			}
			return
		}
		_, _ = io.WriteString(nc, o.cases[name])
	}
}

// seen counts the requests for path, and reports whether any connection carried a request
// after a /bad/ one (a faulty connection reused).
func (o *faultOrigin) seen(path string) (n int, reused bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, paths := range o.conns {
		for i, p := range paths {
			if p == path {
				n++
			}
			if strings.HasPrefix(p, "/bad/") && i < len(paths)-1 {
				reused = true
			}
		}
	}
	return n, reused
}

// readFinal reads responses until a final one (skipping forwarded 1xx) and its body; ok is false
// when the connection ended before a complete response (a clean close after the head).
func readFinal(br *bufio.Reader, method string) (status int, complete bool) {
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return 0, false
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err == nil
	}
}

// TestResponseSmugglingRejected: an origin's ambiguous or malformed response gets the client a
// 502 (or a clean close when the head was already forwarded), is not stored (the second request
// reaches the origin again), and its connection is never reused, so the next exchange through
// the pool is in step.
func TestResponseSmugglingRejected(t *testing.T) {
	ok := "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
	chunked := ok + "Transfer-Encoding: chunked\r\n\r\n"
	cases := []struct {
		name, resp, method string
		headSent           bool // the head may reach the client before the fault shows
	}{
		{"CL and TE", ok + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET", false},
		{"TE and CL", ok + "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n", "GET", false},
		{"two CLs", ok + "Content-Length: 2\r\nContent-Length: 40\r\n\r\nok" + okResponse, "GET", false},
		{"negative chunk size", chunked + "-2\r\nok\r\n0\r\n\r\n", "GET", true},
		{"overflowing chunk size", chunked + "FFFFFFFFFFFFFFFFFF\r\nok\r\n0\r\n\r\n", "GET", true},
		{"non-hex chunk size", chunked + "zz\r\nok\r\n0\r\n\r\n", "GET", true},
		{"TE chunked not last", ok + "Transfer-Encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n", "GET", false},
		{"TE unknown coding", ok + "Transfer-Encoding: br, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "GET", false},
		{"TE list and CL", ok + "Transfer-Encoding: gzip, chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n", "GET", false},
		{"bare LF", "HTTP/1.1 200 OK\nCache-Control: max-age=60\nContent-Length: 2\n\nok", "GET", false},
		{"bare LF in a field", ok + "X-A: a\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"bare CR", ok + "X-A: a\rContent-Length: 0\r\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"obs-fold", ok + "X-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"NUL in a value", ok + "X-A: a\x00b\r\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"CR in a value", ok + "X-A: a\r\rContent-Length: 2\r\n\r\nok", "GET", false},
		{"endless 1xx", "", "GET", false},
		{"body on 304", "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\n\r\n" + okResponse, "GET", false},
		{"body on HEAD", ok + "Content-Length: 2\r\n\r\nok", "HEAD", false},
		{"head over the limit", ok + "X-Big: " + strings.Repeat("b", 80<<10) + "\r\nContent-Length: 2\r\n\r\nok", "GET", false},
	}
	byName := map[string]string{}
	for _, tc := range cases {
		byName[tc.name] = tc.resp
	}
	o := startFaultOrigin(t, byName)
	p := startProxy(t, "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://"+o.ln.Addr().String()+"\"]\n", Options{Cache: newRealCache(t)})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/bad/" + tc.name
			for round := 1; round <= 2; round++ {
				c := dialRaw(t, p.addr)
				c.send(tc.method + " " + strings.ReplaceAll(path, " ", "%20") + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
				status, complete := readFinal(c.br, tc.method)
				switch {
				case status == http.StatusBadGateway && complete:
				case tc.headSent && status == http.StatusOK && !complete:
				default:
					t.Fatalf("round %d: status %d (complete %v), want 502", round, status, complete)
				}
				if n, _ := o.seen(path); n != round {
					t.Fatalf("round %d: the origin saw %d requests: the bad response was served from storage", round, n)
				}
				c.send("GET /ok HTTP/1.1\r\nHost: site.test\r\nCache-Control: no-cache\r\n\r\n")
				if status != http.StatusBadGateway || !complete {
					c = dialRaw(t, p.addr)
					c.send("GET /ok HTTP/1.1\r\nHost: site.test\r\nCache-Control: no-cache\r\n\r\n")
				}
				resp, body := c.response("GET")
				if resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("the next exchange: %d %q", resp.StatusCode, body)
				}
			}
			if _, reused := o.seen(path); reused {
				t.Error("a connection that carried a faulty response was reused")
			}
		})
	}
}
