package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// rawOrigin is a minimal keep-alive HTTP/1.1 origin on a raw socket (as cheap as nginx per
// request, so a benchmark measures the proxy, not net/http's server): every request head gets
// the same 1 KiB no-store response.
type rawOrigin struct {
	ln   net.Listener
	resp []byte
	wg   sync.WaitGroup
}

// startRawOrigin starts the origin; it stops with the test.
func startRawOrigin(tb testing.TB) *rawOrigin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 1024)
	o := &rawOrigin{ln: ln, resp: []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\nDate: Mon, 23 Nov 2026 00:00:00 GMT\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))}
	o.wg.Add(1)
	go o.serve()
	tb.Cleanup(func() { _ = ln.Close(); o.wg.Wait() })
	return o
}

// serve accepts connections until the listener closes.
func (o *rawOrigin) serve() {
	defer o.wg.Done()
	for {
		nc, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.wg.Add(1)
		go o.conn(nc)
	}
}

// conn answers each request head on nc (requests have no body) until the client closes.
func (o *rawOrigin) conn(nc net.Conn) {
	defer o.wg.Done()
	defer nc.Close()
	br := bufio.NewReader(nc)
	for {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		if _, err := nc.Write(o.resp); err != nil {
			return
		}
	}
}

// missRequests returns n requests for distinct URLs (a miss each) of the same length.
func missRequests(n int) [][]byte {
	reqs := make([][]byte, n)
	for i := range reqs {
		reqs[i] = []byte("GET /obj/" + strconv.Itoa(1_000_000+i) + " HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	}
	return reqs
}

// runSerial sends the requests one at a time on one keep-alive connection to addr, reading
// each fixed-size response, b.N in all, and reports requests/s.
func runSerial(b *testing.B, addr string, respLen int) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	reqs := missRequests(4096)
	buf := make([]byte, respLen)
	lat := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		t0 := time.Now()
		if _, err := nc.Write(reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	_ = nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := nc.Read(buf[:1]); n > 0 {
		b.Fatal("responses longer than measured: the load is out of step")
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}

// BenchmarkMiss: a miss each request (no-store, a new URL) through the real proxy and the
// project's cache to a local keep-alive origin; ns/op minus BenchmarkMissDirect's is the
// latency the proxy adds.
func BenchmarkMiss(b *testing.B) {
	o := startRawOrigin(b)
	p := benchProxy(b, "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://"+o.ln.Addr().String()+"\"]\n", Options{Cache: newRealCache(b)})
	req := string(missRequests(1)[0])
	runSerial(b, p.addr, benchResponseLen(b, p.addr, req))
}

// BenchmarkMissNoCache: the same through the proxy without a cache.
func BenchmarkMissNoCache(b *testing.B) {
	o := startRawOrigin(b)
	p := benchProxy(b, "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://"+o.ln.Addr().String()+"\"]\n", Options{})
	req := string(missRequests(1)[0])
	runSerial(b, p.addr, benchResponseLen(b, p.addr, req))
}

// BenchmarkMissDirect: the same requests straight to the origin (the baseline).
func BenchmarkMissDirect(b *testing.B) {
	o := startRawOrigin(b)
	runSerial(b, o.ln.Addr().String(), len(o.resp))
}
