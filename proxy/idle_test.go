package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// idleClientEnv makes the test binary a client of the proxy in a child process (see
// runIdleClient), so that the client side's memory and allocations do not count against the
// proxy's: its value is "addr count" or "addr count close".
const idleClientEnv = "OUTPOST_IDLE_CLIENT"

// runIdleClient opens count keep-alive connections to addr, sends one request on each and
// reads its response, prints "ready" and holds the connections until stdin closes. With
// "close" it makes the count connections one after another, closing each after its response.
func runIdleClient(spec string) error {
	fields := strings.Fields(spec)
	var count int
	var err error
	if len(fields) >= 2 {
		count, err = strconv.Atoi(fields[1])
	}
	if len(fields) < 2 || len(fields) > 3 || err != nil {
		return fmt.Errorf("bad %s %q", idleClientEnv, spec)
	}
	addr := fields[0]
	if len(fields) == 3 {
		for i := range count {
			nc, err := oneRequest(addr)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			nc.Close()
		}
		return nil
	}
	raiseFileLimit(count + 64)
	conns := make([]net.Conn, count)
	errs := make(chan error, count)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				nc, err := oneRequest(addr)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					continue
				}
				conns[i] = nc
			}
		}()
	}
	for i := range count {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, nc := range conns {
		_ = nc.Close()
	}
	return nil
}

// oneRequest connects to addr and makes one keep-alive request, leaving the connection open.
func oneRequest(addr string) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(nc, "GET /obj HTTP/1.1\r\nHost: idle.test\r\n\r\n"); err != nil {
		nc.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

// raiseFileLimit raises the soft RLIMIT_NOFILE to at least n (up to the hard limit).
func raiseFileLimit(n int) {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Cur >= uint64(n) {
		return
	}
	lim.Cur = min(uint64(n), lim.Max)
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// fileLimit returns the hard RLIMIT_NOFILE.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0
	}
	return lim.Max
}

// vmRSS returns this process's resident set size in bytes, after collecting garbage and
// returning free memory to the system. Each collection halves an idle goroutine's stack at
// most, so it collects four times: the steady state of a connection idle for a while.
func vmRSS(t testing.TB) int64 {
	t.Helper()
	for range 4 {
		runtime.GC()
	}
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmRSS in /proc/self/status")
	return 0
}

// memClasses returns the bytes of goroutine stacks and of live heap objects.
func memClasses() (stacks, heap int64) {
	m := []rtmetrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(m)
	return int64(m[0].Value.Uint64()), int64(m[1].Value.Uint64())
}

// idleConnCost holds count idle keep-alive connections (each after one 1 KiB cache hit) on a
// proxy and returns the proxy process's RSS growth per connection.
func idleConnCost(t testing.TB, count int) float64 {
	t.Helper()
	if fileLimit() < uint64(count+256) {
		t.Skipf("RLIMIT_NOFILE hard limit %d is below %d connections", fileLimit(), count)
	}
	raiseFileLimit(count + 256)
	p := startProxy(t, fmt.Sprintf("max_connections = %d\nidle_timeout = \"5m\"\n[proxy.access_log]\ndestination = \"off\"\n[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n", count+16),
		Options{Cache: newHitCache()})
	// Warm the server up (pools, first-use allocations) before the baseline.
	for range 4 {
		nc, err := oneRequest(p.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	waitFor(t, "warm-up connections to close", func() bool { return p.srv.connCount() == 0 })
	before := vmRSS(t)
	beforeStacks, beforeHeap := memClasses()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), idleClientEnv+"="+p.addr+" "+strconv.Itoa(count))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("idle client: %q %v", line, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.srv.idleConns() < count {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections idle", p.srv.idleConns(), count)
		}
		time.Sleep(10 * time.Millisecond)
	}
	after := vmRSS(t)
	afterStacks, afterHeap := memClasses()
	t.Logf("%d idle connections, per connection: RSS %.0f B, goroutine stacks %.0f B, heap objects %.0f B",
		count, float64(after-before)/float64(count), float64(afterStacks-beforeStacks)/float64(count),
		float64(afterHeap-beforeHeap)/float64(count))
	return float64(after-before) / float64(count)
}

// connCount returns the number of client connections.
func (s *Server) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// idleConns returns the number of client connections waiting for their next request.
func (s *Server) idleConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.idle.Load() {
			n++
		}
	}
	return n
}

// maxIdleConnBytes is what an idle keep-alive connection may cost the proxy in RSS.
const maxIdleConnBytes = 10 << 10

// TestIdleConnMemory holds 2,000 idle keep-alive connections, each after one request, and
// checks that each costs the proxy at most 10 KiB of RSS (read buffers, write buffers and the
// pipeline's slots go back to pools while a connection idles).
func TestIdleConnMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("memory measurements are not meaningful under -race; run without -race")
	}
	per := idleConnCost(t, 2000)
	t.Logf("2000 idle keep-alive connections: %.0f bytes of RSS each", per)
	if per > maxIdleConnBytes {
		t.Fatalf("an idle keep-alive connection costs %.0f bytes of RSS, over %d", per, maxIdleConnBytes)
	}
}

// BenchmarkIdleConns10k measures the RSS cost of 10,000 idle keep-alive connections (each after
// one request); b.N is ignored beyond running the measurement once.
func BenchmarkIdleConns10k(b *testing.B) {
	if raceEnabled {
		b.Skip("memory measurements are not meaningful under -race")
	}
	var per float64
	for range b.N {
		per = idleConnCost(b, 10_000)
	}
	b.ReportMetric(per, "RSS-B/conn")
}

// BenchmarkNewConnection: a new connection per request (connect, one 1 KiB cache hit, close),
// the client in a child process, so allocs/op and B/op are the proxy's alone (accept, the
// connection's state, the request, the close), plus the child's start-up spread over b.N.
func BenchmarkNewConnection(b *testing.B) {
	p := benchProxy(b, "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n", Options{Cache: newHitCache()})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), idleClientEnv+"="+p.addr+" "+strconv.Itoa(b.N)+" close")
	cmd.Stderr = os.Stderr
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "the connections to close", func() bool { return p.srv.connCount() == 0 })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conn/s")
}
