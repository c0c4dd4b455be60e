package bench

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSoakClassifies: an error is expected only for a kind and class its fault window
// excuses, while the window is open or within its grace; everything else is unexpected.
func TestSoakClassifies(t *testing.T) {
	origin := map[soakKind][]string{kindFaulty: {"502", "504", classCut}}
	for _, tc := range []struct {
		name     string
		windows  func(r *soakRecorder)
		kind     soakKind
		class    string
		expected bool
	}{
		{"no fault", func(*soakRecorder) {}, kindFaulty, "502", false},
		{"open window", func(r *soakRecorder) { r.beginFault("resets", 0, origin) }, kindFaulty, "502", true},
		{"other class", func(r *soakRecorder) { r.beginFault("resets", 0, origin) }, kindFaulty, "503", false},
		{"other kind", func(r *soakRecorder) { r.beginFault("resets", 0, origin) }, kindHit, "502", false},
		{"closed window", func(r *soakRecorder) { r.beginFault("resets", 0, origin)() }, kindFaulty, "502", false},
		{"within grace", func(r *soakRecorder) { r.beginFault("resets", time.Minute, origin)() }, kindFaulty, "cut", true},
		{"sighup excuses nothing", func(r *soakRecorder) { r.beginFault("SIGHUP reload", time.Minute, nil) }, kindHit, classReset, false},
		{"edge window", func(r *soakRecorder) {
			r.beginFault("edge", 0, map[soakKind][]string{kindDNS: {classDownEdge}})
		}, kindDNS, classDownEdge, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(time.Now(), time.Second)
			tc.windows(r)
			from := time.Now()
			if got := r.failure(tc.kind, tc.class, "detail", from); got != tc.expected {
				t.Errorf("expected = %v, want %v", got, tc.expected)
			}
			want := int64(0)
			if !tc.expected {
				want = 1
			}
			if n := r.unexpectedTotal(); n != want {
				t.Errorf("%d unexpected, want %d", n, want)
			}
		})
	}
}

// TestSoakRequestBeforeWindow: a request that started before a window opened and failed in it
// is excused (it overlaps the window); one that ended before the window is not.
func TestSoakRequestBeforeWindow(t *testing.T) {
	r := newRecorder(time.Now(), time.Second)
	start := time.Now().Add(-time.Second)
	w := &faultWindow{Name: "w", Start: time.Now(), End: time.Now().Add(time.Second), Excuses: map[soakKind][]string{kindFaulty: {"502"}}}
	if !w.covers(kindFaulty, "502", start, time.Now().Add(time.Millisecond)) {
		t.Error("an overlapping request is not covered")
	}
	if w.covers(kindFaulty, "502", start, start.Add(time.Millisecond)) {
		t.Error("a request that ended before the window is covered")
	}
	r.success(kindHit, start)
	if s := r.kindStats(); len(s) != 1 || s[0].OK != 1 || s[0].Latency.P50 < 900*time.Millisecond {
		t.Errorf("kind stats %+v", s)
	}
	if pts := r.latencySeries()[kindHit]; len(pts) != 1 || pts[0].N != 1 {
		t.Errorf("latency series %+v", pts)
	}
}

// TestClassOf names the classes of client errors.
func TestClassOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{failf("502", "x"), "502"},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), classCut},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), classReset},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "refused"},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, classTimeout},
		{fmt.Errorf("%w: status line", errProtocol), "protocol"},
		{errors.New("odd"), "error"},
	} {
		if got := classOf(tc.err); got != tc.want {
			t.Errorf("classOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestFaultOrigin drives each fault mode with a real client and the origin restart.
func TestFaultOrigin(t *testing.T) {
	o, err := newFaultOrigin()
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 500 * time.Millisecond}
	get := func() (int, []byte, error) {
		resp, err := client.Get("http://" + o.addr + "/f/1")
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	for _, tc := range []struct {
		name  string
		mode  faultMode
		check func(status int, body []byte, err error) error
	}{
		{"none", faultNone, func(st int, b []byte, err error) error {
			if err != nil || st != 200 || sha256.Sum256(b) != sha256.Sum256(faultBody("/f/1")) {
				return fmt.Errorf("status %d, %d bytes, %v", st, len(b), err)
			}
			return nil
		}},
		{"reset", faultReset, func(st int, _ []byte, err error) error {
			if err == nil {
				return fmt.Errorf("status %d, want a transport error", st)
			}
			return nil
		}},
		{"mid-body", faultMidBody, func(st int, b []byte, err error) error {
			if st != 200 || err == nil || len(b) >= faultBodySize {
				return fmt.Errorf("status %d, %d bytes, %v: want a cut 200", st, len(b), err)
			}
			return nil
		}},
		{"503", faultStatus, func(st int, _ []byte, err error) error {
			if st != 503 || err != nil {
				return fmt.Errorf("status %d, %v: want 503", st, err)
			}
			return nil
		}},
		{"garbage", faultGarbage, func(st int, _ []byte, err error) error {
			if err == nil {
				return fmt.Errorf("status %d: want a malformed response", st)
			}
			return nil
		}},
		{"stall", faultStall, func(st int, _ []byte, err error) error {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("status %d, %v: want the client's timeout", st, err)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o.set(tc.mode)
			defer o.set(faultNone)
			if err := tc.check(get()); err != nil {
				t.Error(err)
			}
		})
	}
	o.stop()
	if _, err := net.DialTimeout("tcp", o.addr, time.Second); err == nil {
		t.Error("the stopped origin accepts connections")
	}
	if err := o.start(); err != nil {
		t.Fatal(err)
	}
	if st, _, err := get(); err != nil || st != 200 {
		t.Errorf("after restart: %d %v", st, err)
	}
}

// TestFaultOriginKeepAlive: the origin serves several requests on one connection.
func TestFaultOriginKeepAlive(t *testing.T) {
	o, err := newFaultOrigin()
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	c, err := net.Dial("tcp", o.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, p := range []string{"/a", "/b"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != string(faultBody(p)) || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d bytes, Cache-Control %q", p, len(b), resp.Header.Get("Cache-Control"))
		}
	}
}

// TestFaultOriginIdleClose: in idle-close mode a connection's first request is answered and
// the next one on it gets the connection closed, unanswered.
func TestFaultOriginIdleClose(t *testing.T) {
	o, err := newFaultOrigin()
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	o.set(faultIdleClose)
	c, err := net.Dial("tcp", o.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	fmt.Fprint(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(br, nil); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("second request: %v, want the connection closed", err)
	}
}

// TestEchoTarget: a TLS client that trusts the target's pool gets its bytes back.
func TestEchoTarget(t *testing.T) {
	e, err := newEchoTarget()
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	c, err := tls.Dial("tcp", e.addr(), &tls.Config{RootCAs: e.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo %q, %v", buf, err)
	}
}

// TestSoakEdge: an edge stops (refusing connections, down) and starts again on its address.
func TestSoakEdge(t *testing.T) {
	edge, err := newSoakEdge("edge1", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer edge.close()
	edge.stop()
	if edge.down().IsZero() {
		t.Error("a stopped edge is not down")
	}
	if err := edge.start(); err != nil || !edge.down().IsZero() {
		t.Errorf("restart: %v, down since %v", err, edge.down())
	}
	c, err := net.Dial("tcp", edge.addr)
	if err != nil {
		t.Fatalf("restarted edge: %v", err)
	}
	c.Close()
	if time.Since(edge.upSince()) > time.Minute {
		t.Error("upSince not updated")
	}
}

// TestMailResult: lost, duplicated (a second copy under another uid) and re-read (the same
// uid again: not a duplicate) messages.
func TestMailResult(t *testing.T) {
	m := newMailTracker(soakPorts{})
	for _, id := range []string{"a", "b", "c", "d"} {
		m.accepted[id] = "alice@outpost.test"
	}
	m.arrive("alice", "1.1", "a")
	m.arrive("alice", "1.1", "a") // re-read after a broken session
	m.arrive("alice", "1.2", "b")
	m.arrive("alice", "1.3", "b") // a second copy
	m.arrive("bob", "1.1", "c")
	m.arrive("bob", "1.2", "x") // never accepted
	got := m.result()
	if got.Accepted != 4 || got.Lost != 1 || got.Duplicated != 1 || got.Unknown != 1 || len(got.LostIDs) != 1 || got.LostIDs[0] != "d" {
		t.Errorf("result %+v", got)
	}
	if n := m.missing(); n != 1 {
		t.Errorf("missing %d, want 1", n)
	}
	if normID(" <soak-1@soak.test> ") != "soak-1@soak.test" {
		t.Error("normID")
	}
}

// TestParseProcStatus reads VmRSS and Threads.
func TestParseProcStatus(t *testing.T) {
	rss, th := parseProcStatus("Name:\toutpost\nVmRSS:\t  53248 kB\nThreads:\t11\n")
	if rss != 53248*1024 || th != 11 {
		t.Errorf("rss %d threads %d", rss, th)
	}
	if rss, th := parseProcStatus("garbage\nVmRSS:\n"); rss != 0 || th != 0 {
		t.Errorf("garbage: %d %d", rss, th)
	}
}

// TestParseMetrics picks unlabelled samples by name.
func TestParseMetrics(t *testing.T) {
	m := parseMetrics(strings.NewReader("# HELP go_goroutines x\ngo_goroutines 42\ngo_gc_duration_seconds{quantile=\"0\"} 1\nprocess_open_fds 7\n"), []string{"go_goroutines", "process_open_fds", "absent"})
	if m["go_goroutines"] != 42 || m["process_open_fds"] != 7 || len(m) != 2 {
		t.Errorf("%v", m)
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("go_goroutines 42\n")
	f.Add("go_goroutines{a=\"b\"} 1\ngo_goroutines NaN\n")
	f.Add("go_goroutines\n\n\x00 1e400")
	f.Fuzz(func(t *testing.T, s string) {
		parseMetrics(strings.NewReader(s), []string{"go_goroutines"})
	})
}

func FuzzParseUIDL(f *testing.F) {
	f.Add("1 1700000000.5")
	f.Add("0 x")
	f.Add("-1 x")
	f.Add("1")
	f.Fuzz(func(t *testing.T, l string) {
		num, uid, ok := parseUIDL(l)
		if ok && (num == "" || uid == "" || strings.ContainsAny(num+uid, " \t")) {
			t.Errorf("parseUIDL(%q) = %q, %q", l, num, uid)
		}
	})
}

func FuzzParseProcStatus(f *testing.F) {
	f.Add("VmRSS:\t 1 kB\nThreads: 2\n")
	f.Add("VmRSS: 99999999999999999999999 kB")
	f.Fuzz(func(t *testing.T, s string) { parseProcStatus(s) })
}

// TestSoakUsageErrors: bad soak flags are usage errors.
func TestSoakUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"short duration", []string{"soak", "-d", "5s", "--outpost", "/bin/true"}, "at least 20s"},
		{"bad duration", []string{"soak", "-d", "a while"}, "duration"},
		{"zero connections", []string{"soak", "-c", "0", "--outpost", "/bin/true"}, "--connections"},
		{"short warm-up", []string{"soak", "--warmup", "1s", "--outpost", "/bin/true"}, "--warmup"},
		{"bad interval", []string{"soak", "--interval", "1ms", "--outpost", "/bin/true"}, "--interval"},
		{"arguments", []string{"soak", "now"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCLI(t, tc.args...)
			if err == nil || !IsUsage(err) && !strings.Contains(err.Error(), "unknown command") {
				t.Fatalf("err = %v, want a usage error (%s)", err, out)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want it to mention %q", err, tc.msg)
			}
		})
	}
}

// TestSoakReport renders a result as text, JSON and HTML: the JSON carries the keys other
// tools judge a run by, the HTML the tables and the five charts.
func TestSoakReport(t *testing.T) {
	res := &SoakResult{Pass: false, Failures: []string{"1 unexpected errors"}, UnexpectedErrors: 1, Duration: time.Minute, Warmup: 10 * time.Second,
		MainStart: 20 * time.Second, MainEnd: 80 * time.Second,
		Kinds:      []KindStats{{Kind: kindHit, OK: 10, Latency: Latency{P50: time.Millisecond, P99: 3 * time.Millisecond}}},
		Unexpected: []ErrorCount{{kindHit, "502", 1}},
		Samples:    []soakError{{Time: 30 * time.Second, Kind: kindHit, Class: "502", Detail: "GET /bytes/1024?obj=1: status 502"}},
		Faults:     []FaultRecord{{Name: "origin resets", Start: 30 * time.Second, End: 33 * time.Second, Expected: 4}},
		Latency:    map[soakKind][]LatencyPoint{kindHit: {{T: 0, N: 5, P50: time.Millisecond, P99: 2 * time.Millisecond}, {T: 5 * time.Second, N: 5, P50: time.Millisecond, P99: 4 * time.Millisecond}}},
	}
	for i := range 10 {
		res.Proc = append(res.Proc, ProcSample{T: time.Duration(i) * 10 * time.Second, RSS: 50 << 20, FDs: 22 + i%2, Goroutines: 35 + i%3, Threads: 11, HeapInuse: 20 << 20, CPU: float64(i), Load1: 2})
	}
	var text bytes.Buffer
	if err := WriteSoak(&text, res); err != nil || !strings.Contains(text.String(), "FAIL: 1 unexpected errors") || !strings.Contains(text.String(), "status 502") {
		t.Errorf("text (%v):\n%s", err, text.String())
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"pass", "unexpected_errors", "lost_mails", "duplicated_mails", "corrupt_bodies", "rss_growth_pct", "goroutines_delta", "fds_delta", "faults", "proc", "latency"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	rep := NewReport("Outpost soak", []string{"outpost", "bench", "soak"}, "test")
	if err := soakReport(rep, res); err != nil {
		t.Fatal(err)
	}
	var html bytes.Buffer
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(html.String(), "<svg"); n != 5 {
		t.Errorf("%d charts, want 5", n)
	}
	for _, w := range []string{"Verdict", "Faults injected", "origin resets", "Unexpected errors, first ones"} {
		if !strings.Contains(html.String(), w) {
			t.Errorf("report lacks %q", w)
		}
	}
}

// goroutineProfile is a debug=1 goroutine listing in the shape net/http/pprof writes.
const goroutineProfile = `goroutine profile: total 5
3 @ 0x43e1ee 0x4373d7 0x46a8a5
#	0x46a8a4	internal/poll.runtime_pollWait+0x84	/go/src/runtime/netpoll.go:351
#	0x4b3f0c	net.(*conn).Read+0x2c	/go/src/net/net.go:194

2 @ 0x43e1ee 0x40a8c5
#	0x40a8c4	time.Sleep+0x124	/go/src/runtime/time.go:338
`

// TestSuiteSnapshotSince: goroutine groups and fds beyond a baseline, by stack and target.
func TestSuiteSnapshotSince(t *testing.T) {
	g := parseGoroutineGroups(strings.NewReader(goroutineProfile))
	if g["internal/poll.runtime_pollWait < net.(*conn).Read"] != 3 || g["time.Sleep"] != 2 || len(g) != 2 {
		t.Fatalf("groups %v", g)
	}
	base := suiteSnapshot{stacks: map[string]int{"time.Sleep": 2}, fds: map[string]int{"/dev/null": 1}}
	end := suiteSnapshot{stacks: g, fds: map[string]int{"/dev/null": 1, "tcp 127.0.0.1:1143 → 127.0.0.1:5000 state 01": 1}}
	got := end.since(base)
	want := []string{"+1 fd: tcp 127.0.0.1:1143 → 127.0.0.1:5000 state 01", "+3 goroutines: internal/poll.runtime_pollWait < net.(*conn).Read"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("since = %q, want %q", got, want)
	}
	if a := procAddr("0100007F:1F90"); a != "127.0.0.1:8080" {
		t.Errorf("procAddr = %q", a)
	}
	if a := procAddr("zz:1"); a != "zz:1" {
		t.Errorf("procAddr(bad) = %q", a)
	}
}

func FuzzParseGoroutineGroups(f *testing.F) {
	f.Add(goroutineProfile)
	f.Add("1 @ 0x1\n#\t0x1\n\nx @ 0x2\n#\t0x2\tf+1\tfile:1\n")
	f.Fuzz(func(t *testing.T, s string) { parseGoroutineGroups(strings.NewReader(s)) })
}

// TestMedianSample: the median of goroutines and fds ignores one dip and one spike.
func TestMedianSample(t *testing.T) {
	m := medianSample([]ProcSample{{Goroutines: 35, FDs: 22}, {Goroutines: 33, FDs: 22}, {Goroutines: 35, FDs: 30}, {Goroutines: 40, FDs: 22}, {Goroutines: 35, FDs: 21, RSS: 7}})
	if m.Goroutines != 35 || m.FDs != 22 || m.RSS != 7 {
		t.Errorf("median %+v", m)
	}
}
