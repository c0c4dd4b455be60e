package proxy

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/diskspace"
	"github.com/outpost-proxy/outpost/internal/tmpfstest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// fileLogProxy starts a reverse proxy whose access log goes to dest, through the log's own
// buffer, with the log's warnings captured in the returned buffer.
func fileLogProxy(t *testing.T, dest string) (*testProxy, *syncBuffer) {
	t.Helper()
	o := echoOrigin(t)
	p := startProxyConfig(t, loadProxyConfig(t, reverseRoute(o)+fmt.Sprintf("[proxy.access_log]\ndestination = %q\n", dest)), Options{})
	p.srv.alog.setOutput(nil)
	warnings := &syncBuffer{}
	p.srv.alog.mu.Lock()
	p.srv.alog.warn = diskspace.NewWarner(slog.New(slog.NewTextHandler(warnings, nil)), time.Minute)
	p.srv.alog.mu.Unlock()
	return p, warnings
}

// get sends n requests on one connection and checks every answer.
func get(t *testing.T, p *testProxy, n int, path string) {
	t.Helper()
	c := dialRaw(t, p.addr)
	for range n {
		c.send("GET " + path + " HTTP/1.1\r\nHost: s\r\n\r\n")
		if resp, _ := c.response("GET"); resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
}

// TestAccessLogWriteFailure: with /dev/full as the destination every request is still
// answered; the failed writes and the lost lines are counted, and logged once per interval.
func TestAccessLogWriteFailure(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	p, warnings := fileLogProxy(t, "/dev/full")
	for range 3 {
		get(t, p, 10, "/x")
		p.srv.alog.flush()
	}
	if got := counterValue(p.srv.alog.lost); got != 30 {
		t.Fatalf("access_log_lines_lost_total = %v, want 30", got)
	}
	if got := counterValue(p.srv.alog.errs); got != 3 {
		t.Fatalf("access_log_errors_total = %v, want 3", got)
	}
	if n := strings.Count(warnings.String(), "access log write failed"); n != 1 {
		t.Fatalf("%d warnings for 3 failed writes, want 1 per interval:\n%s", n, warnings.String())
	}
}

// blockedWriter is a destination whose writes wait until it is opened.
type blockedWriter struct {
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	b.once.Do(func() { close(b.entered) })
	<-b.open
	return len(p), nil
}

// TestAccessLogStuckDestination: a destination that does not return (a hung disk, a full
// pipe) does not hold up serving.
func TestAccessLogStuckDestination(t *testing.T) {
	p, _ := fileLogProxy(t, filepath.Join(t.TempDir(), "access.log"))
	bw := &blockedWriter{entered: make(chan struct{}), open: make(chan struct{})}
	p.srv.alog.flushing.Lock()
	p.srv.alog.out = bw
	p.srv.alog.flushing.Unlock()
	defer close(bw.open)
	get(t, p, 1, "/first")
	go p.srv.alog.flush()
	<-bw.entered
	get(t, p, 50, "/while-stuck") // answered while the writer is stuck
}

// TestAccessLogDiskFull: the log's file system fills and empties: requests are answered
// throughout, the lost lines are counted, and logging resumes once space returns.
func TestAccessLogDiskFull(t *testing.T) {
	dir := tmpfstest.Mount(t, 1<<20)
	path := filepath.Join(dir, "access.log")
	p, _ := fileLogProxy(t, path)
	fill := tmpfstest.Fill(t, dir, 0)
	get(t, p, 20, "/while-full")
	p.srv.alog.flush()
	if got := counterValue(p.srv.alog.lost); got != 20 {
		t.Fatalf("access_log_lines_lost_total = %v, want 20", got)
	}
	fill.Release(t)
	get(t, p, 1, "/after")
	p.srv.alog.flush()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "http://s/after") || strings.Contains(string(data), "while-full") {
		t.Fatalf("access log after space returned:\n%s", data)
	}
}
