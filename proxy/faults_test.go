package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultCase is one origin fault and the answer the client must get for it.
type faultCase struct {
	name   string
	fault  string // the request's fault (its path /f/<fault>/…)
	method string // GET when empty
	body   string // request body
	down   string // how the origin goes down after priming (chaosOrigin.goes)
	stale  bool   // a stale object that allows stale-if-error is stored first
	cc     string // X-CC: the Cache-Control the origin's answers carry
	status int    // the status the client must see
	cut    bool   // the head arrives, the body ends early, the connection closes
	kind   string // the access log's error:kind ("" for none)
	http10 bool   // the client speaks HTTP/1.0 (with keep-alive)
	fwd    bool   // a forward-proxy request (absolute-form) instead of a reverse route's
}

// staleCC is the Cache-Control of the stale objects: stale at once, usable on error for an hour.
const staleCC = "max-age=0, stale-if-error=3600"

// faultCases is the origin-fault table: the documented answers (proxy/README.md, "Origin
// faults", and the README's operator section).
var faultCases = []faultCase{
	{name: "healthy origin", fault: faultOK, status: 200},
	{name: "connect refused", fault: faultOK, down: downRefuse, status: 502, kind: "connect_refused"},
	{name: "connect reset right after accept", fault: faultOK, down: downReset, status: 502, kind: "reset"},
	{name: "connect hangs", fault: faultOK, down: downBlackhole, status: 504, kind: "timeout"},
	{name: "reset mid-head", fault: faultResetHead, status: 502, kind: "reset"},
	{name: "POST reset mid-head", fault: faultResetHead, method: "POST", body: "a=1", status: 502, kind: "reset"},
	{name: "reset mid-body, Content-Length", fault: faultResetBody, status: 200, cut: true, kind: "cut_reset"},
	{name: "reset mid-body, chunked", fault: faultResetChunked, status: 200, cut: true, kind: "cut_reset"},
	{name: "reset mid-body, cacheable", fault: faultResetBody, cc: "max-age=60", status: 200, cut: true, kind: "cut_reset"},
	{name: "HTTP/1.0 client, reset mid-body", fault: faultResetBody, http10: true, status: 200, cut: true, kind: "cut_reset"},
	{name: "stall before the head", fault: faultStallHead, status: 504, kind: "timeout"},
	{name: "HEAD stall before the head", fault: faultStallHead, method: "HEAD", status: 504, kind: "timeout"},
	{name: "stall between body bytes", fault: faultStallBody, status: 200, cut: true, kind: "cut_timeout"},
	{name: "garbage instead of a head", fault: faultGarbage, status: 502, kind: "bad_response"},
	{name: "503 from the origin", fault: faultStatus503, status: 503},
	{name: "closed after a keep-alive response", fault: faultCloseAfter, status: 200},
	{name: "closed as the pooled connection is reused", fault: faultCloseNext, status: 200},
	{name: "forward: reset mid-head", fault: faultResetHead, fwd: true, status: 502, kind: "reset"},
	{name: "forward: reset mid-body", fault: faultResetBody, fwd: true, status: 200, cut: true, kind: "cut_reset"},
	{name: "forward: stall before the head", fault: faultStallHead, fwd: true, status: 504, kind: "timeout"},
	{name: "forward: closed as the pooled connection is reused", fault: faultCloseNext, fwd: true, status: 200},
	{name: "stale: connect refused", fault: faultOK, down: downRefuse, stale: true, status: 200, kind: "connect_refused"},
	{name: "stale: connect reset right after accept", fault: faultOK, down: downReset, stale: true, status: 200, kind: "reset"},
	{name: "stale: connect hangs", fault: faultOK, down: downBlackhole, stale: true, status: 200, kind: "timeout"},
	{name: "stale: reset mid-head", fault: faultResetHead, stale: true, status: 200, kind: "reset"},
	{name: "stale: reset mid-body", fault: faultResetBody, stale: true, status: 200},
	{name: "stale: stall before the head", fault: faultStallHead, stale: true, status: 200, kind: "timeout"},
	{name: "stale: stall between body bytes", fault: faultStallBody, stale: true, status: 200},
	{name: "stale: garbage", fault: faultGarbage, stale: true, status: 200, kind: "bad_response"},
	{name: "stale: 503", fault: faultStatus503, stale: true, status: 200},
}

// faultProfiles are the upstream settings of the fault proxies, by the timeout a case tests:
// each case runs on the proxy whose one small timeout (1 s) it exercises, every other limit
// generous (5 s), so that a loaded machine cannot turn a healthy exchange into a timeout.
// Idle pooled connections close after 500 ms, so that the pools empty themselves after the
// run (for the goroutine and fd baseline).
var faultProfiles = map[string]string{
	"":        `connect_timeout = "5s"` + "\n" + `response_header_timeout = "5s"` + "\n" + `read_timeout = "5s"`,
	"connect": `connect_timeout = "1s"` + "\n" + `response_header_timeout = "5s"` + "\n" + `read_timeout = "5s"`,
	"header":  `connect_timeout = "5s"` + "\n" + `response_header_timeout = "1s"` + "\n" + `read_timeout = "5s"`,
	"body":    `connect_timeout = "5s"` + "\n" + `response_header_timeout = "5s"` + "\n" + `read_timeout = "1s"`,
}

// profile names the timeout the case tests (a key of faultProfiles).
func (tc *faultCase) profile() string {
	switch {
	case tc.down == downBlackhole:
		return "connect"
	case tc.fault == faultStallHead:
		return "header"
	case tc.fault == faultStallBody:
		return "body"
	}
	return ""
}

// faultAnswer is what a client saw.
type faultAnswer struct {
	status      int
	body        string
	cacheStatus string
	bodyErr     error // reading the body failed (a cut response)
	closed      bool  // the proxy closed the connection after the response
}

// faultClient is one client of the load: a keep-alive connection to the proxy, used for its
// next request unless the answer ended it (a cut response, Connection: close).
type faultClient struct {
	addr string
	nc   net.Conn
	br   *bufio.Reader
}

// close closes the client's connection, if any.
func (c *faultClient) close() {
	if c.nc != nil {
		_ = c.nc.Close()
		c.nc = nil
	}
}

// ask sends case tc's request for path and reads the answer.
func (c *faultClient) ask(host string, tc *faultCase, path string) (faultAnswer, error) {
	if c.nc == nil {
		nc, err := net.Dial("tcp", c.addr)
		if err != nil {
			return faultAnswer{}, err
		}
		c.nc, c.br = nc, bufio.NewReader(nc)
	}
	_ = c.nc.SetDeadline(time.Now().Add(20 * time.Second))
	method, proto := tc.method, "HTTP/1.1"
	if method == "" {
		method = "GET"
	}
	var req strings.Builder
	if tc.http10 {
		proto = "HTTP/1.0"
		req.WriteString("Connection: keep-alive\r\n")
	}
	if cc := tc.requestCC(); cc != "" {
		fmt.Fprintf(&req, "X-CC: %s\r\n", cc)
	}
	if tc.body != "" || method == "POST" {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(tc.body))
	}
	target := path
	if tc.fwd {
		target = "http://" + host + path
	}
	head := fmt.Sprintf("%s %s %s\r\nHost: %s\r\n", method, target, proto, host)
	req.WriteString("\r\n" + tc.body)
	if _, err := io.WriteString(c.nc, head+req.String()); err != nil {
		c.close()
		return faultAnswer{}, err
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.close()
		return faultAnswer{}, fmt.Errorf("reading the response head: %w", err)
	}
	got, berr := io.ReadAll(resp.Body)
	a := faultAnswer{status: resp.StatusCode, body: string(got), cacheStatus: resp.Header.Get("Cache-Status"), bodyErr: berr}
	if berr != nil || resp.Close {
		_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.br.ReadByte()
		a.closed = err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
		c.close()
	}
	return a, nil
}

// check compares an answer with the case's.
func (tc *faultCase) check(a faultAnswer) error {
	if a.status != tc.status {
		return fmt.Errorf("status %d (%q), want %d", a.status, trim(a.body), tc.status)
	}
	switch {
	case tc.cut:
		if a.bodyErr == nil || !errors.Is(a.bodyErr, io.ErrUnexpectedEOF) {
			return fmt.Errorf("a complete-looking body of %d bytes (error %v), want a cut one", len(a.body), a.bodyErr)
		}
		if len(a.body) >= faultBodyLen || !strings.HasPrefix(faultBody, a.body) {
			return fmt.Errorf("cut body of %d bytes is not a prefix of the origin's", len(a.body))
		}
		if !a.closed {
			return errors.New("the connection stayed open after a cut response")
		}
	case a.bodyErr != nil:
		return fmt.Errorf("body: %w", a.bodyErr)
	case tc.stale:
		if a.body != faultBody || !strings.Contains(a.cacheStatus, "stale-if-error") {
			return fmt.Errorf("want the stale object: %d bytes, Cache-Status %q", len(a.body), a.cacheStatus)
		}
	case tc.status == 200 && tc.method != "HEAD" && a.body != faultBody:
		return fmt.Errorf("body of %d bytes, want the whole %d", len(a.body), faultBodyLen)
	case tc.status == 503 && a.body != "origin 503\n":
		return fmt.Errorf("503 body %q, want the origin's", a.body)
	}
	return nil
}

// trim shortens a body for a message.
func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// faultRig is one chaos origin per fault case, and a proxy per profile (faultProfiles) with a
// route to each case's origin; a case's requests go to the proxy of its profile.
type faultRig struct {
	proxies  map[string]*testProxy
	origins  []*chaosOrigin
	fwdHosts []string // a forward case's host:port (resolved to its origin), "" for the others
}

// proxy is the proxy case tc runs on.
func (rig *faultRig) proxy(tc *faultCase) *testProxy { return rig.proxies[tc.profile()] }

// startFaultRig starts the origins and the proxies (each with the project's cache), and
// primes the stale objects; the origins of down cases go down after priming.
func startFaultRig(t *testing.T, cases []faultCase) *faultRig {
	rig := &faultRig{proxies: map[string]*testProxy{}}
	var routes strings.Builder
	var names []string
	for i, tc := range cases {
		o := startChaosOrigin(t)
		rig.origins = append(rig.origins, o)
		if tc.fwd {
			_, port, _ := net.SplitHostPort(o.addr)
			rig.fwdHosts = append(rig.fwdHosts, fmt.Sprintf("f%d.faults.test:%s", i, port))
			names = append(names, fmt.Sprintf("%q", fmt.Sprintf("f%d.faults.test=127.0.0.1", i)))
		} else {
			rig.fwdHosts = append(rig.fwdHosts, "")
			fmt.Fprintf(&routes, "[[proxy.routes]]\nhost = \"c%d.faults.test\"\norigins = [%q]\n", i, o.url())
		}
	}
	for name, limits := range faultProfiles {
		cfg := "resolve = [" + strings.Join(names, ", ") + "]\n[proxy.upstream]\n" + limits +
			"\nidle_conn_timeout = \"500ms\"\n" + routes.String()
		rig.proxies[name] = startProxy(t, cfg, Options{Cache: newRealCache(t)})
	}
	for i, tc := range cases {
		for try := 0; tc.stale; try++ { // a second try if a loaded machine made it time out
			a, err := askPrimed(rig.proxy(&tc).addr, rig.host(i), tc.path(0, 0))
			if err == nil && a.status == 200 && a.body == faultBody {
				break
			}
			if try > 0 {
				t.Fatalf("%s: priming: %v %d", tc.name, err, a.status)
			}
		}
		rig.origins[i].goes(t, tc.down)
	}
	return rig
}

// quiesce waits until no client or origin connection is open (the pools' idle connections
// closed after idle_conn_timeout), for a baseline of goroutines and fds without them.
func (rig *faultRig) quiesce(t *testing.T) {
	waitFor(t, "no connection open", func() bool {
		n := 0
		for _, p := range rig.proxies {
			p.srv.mu.Lock()
			n += len(p.srv.conns)
			p.srv.mu.Unlock()
		}
		for _, o := range rig.origins {
			n += int(o.live.Load())
		}
		return n == 0
	})
}

// askPrimed stores the stale object of a path (X-Fault: ok, with staleCC).
func askPrimed(addr, host, path string) (faultAnswer, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return faultAnswer{}, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Fault: ok\r\nX-CC: %s\r\nConnection: close\r\n\r\n", path, host, staleCC)
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return faultAnswer{}, err
	}
	body, err := io.ReadAll(resp.Body)
	return faultAnswer{status: resp.StatusCode, body: string(body)}, err
}

// host is the Host of case i's requests: its route's, or its origin's name for a forward case.
func (rig *faultRig) host(i int) string {
	if h := rig.fwdHosts[i]; h != "" {
		return h
	}
	return fmt.Sprintf("c%d.faults.test", i)
}

// path is the request path of a case for client i's round j: one object for the stale
// cases, a new one per request otherwise.
func (tc *faultCase) path(i, j int) string {
	if tc.stale {
		return "/f/" + tc.fault + "/stale"
	}
	return fmt.Sprintf("/f/%s/%d-%d", tc.fault, i, j)
}

// requestCC is the X-CC a case's requests carry.
func (tc *faultCase) requestCC() string {
	if tc.stale {
		return staleCC
	}
	return tc.cc
}

// resources are the goroutines and open file descriptors of the process.
type resources struct{ goroutines, fds int }

// current counts them.
func currentResources(t testing.TB) resources {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return resources{goroutines: runtime.NumGoroutine(), fds: len(ents)}
}

// waitForBaseline polls until goroutines and fds are back to base (the pools' idle
// connections closing after idle_conn_timeout), and fails with the goroutines' stacks
// otherwise.
func waitForBaseline(t *testing.T, base resources) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := currentResources(t)
		if now.goroutines <= base.goroutines && now.fds <= base.fds {
			t.Logf("back to baseline: %d goroutines (baseline %d), %d fds (baseline %d)", now.goroutines, base.goroutines, now.fds, base.fds)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("after the run: %d goroutines and %d fds, baseline %d and %d\n%s",
				now.goroutines, now.fds, base.goroutines, base.fds, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOriginFaultsUnderLoad: 200 concurrent clients, each sending a bounded series of requests
// spread over the fault table on a keep-alive connection (a new one after an answer that
// ended it), get each fault's documented answer — 502, 504 on a timeout,
// the stale object where it allows stale-if-error, a cut response when the head was already
// sent, a transparent retry for a pooled connection the origin closed. No connection that saw
// a fault is used again, and no goroutine or file descriptor outlives the run.
func TestOriginFaultsUnderLoad(t *testing.T) {
	const clients, rounds = 200, 4
	cases := faultCases
	rig := startFaultRig(t, cases)
	rig.quiesce(t)
	base := currentResources(t)
	start := make(chan struct{})
	errs := make(chan error, clients*rounds)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c := map[string]*faultClient{} // a keep-alive connection to each proxy
			for name, p := range rig.proxies {
				c[name] = &faultClient{addr: p.addr}
				defer c[name].close()
			}
			for j := range rounds {
				k := (i + j*7) % len(cases)
				tc := &cases[k]
				a, err := c[tc.profile()].ask(rig.host(k), tc, tc.path(i, j))
				if err == nil {
					err = tc.check(a)
				}
				if err != nil {
					errs <- fmt.Errorf("%s (client %d round %d): %w", tc.name, i, j, err)
				}
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 20 || testing.Verbose() {
			t.Error(err)
		}
	}
	if failed > 20 {
		t.Errorf("… %d failures in all", failed)
	}
	t.Logf("%d requests in %v", clients*rounds, time.Since(began).Round(time.Millisecond))
	for k, o := range rig.origins {
		tc := &cases[k]
		if bad := o.reuseAfterFault(); bad != "" {
			t.Errorf("%s: a connection that saw a fault was used again: %s", tc.name, bad)
		}
		leftOpen := tc.fault == faultStallHead || tc.fault == faultStallBody || tc.fault == faultGarbage
		if leftOpen && tc.down == "" && o.faultedConns() == 0 {
			t.Errorf("%s: no connection saw the fault", tc.name)
		}
		t.Logf("%s: %d connections, requests on each: %v", tc.name, o.accepts.Load(), o.requestCounts())
	}
	checkLogKinds(t, rig, cases, clients*rounds)
	waitForBaseline(t, base)
}

// TestUpstreamRetryClosedPooledConnection: a pooled connection the origin closes as the proxy
// reuses it (the origin reads the request, then resets the connection unanswered) is replaced
// once by a new connection for an idempotent request (RFC 9110 §9.2.2) — its body, if any,
// sent again whole — and never for POST or PATCH, whose client gets 502; nor when part of the
// response had arrived. The origin's per-connection counts show which connection carried what.
func TestUpstreamRetryClosedPooledConnection(t *testing.T) {
	big := strings.Repeat("b", replayMax+1)
	cases := []struct {
		name    string
		prime   string // the fault of the first request, which leaves the pooled connection
		method  string
		path    string
		body    string
		status  int
		retried bool
	}{
		{"GET", faultCloseNext, "GET", "/x", "", 200, true},
		{"HEAD", faultCloseNext, "HEAD", "/x", "", 200, true},
		{"OPTIONS", faultCloseNext, "OPTIONS", "/x", "", 200, true},
		{"TRACE", faultCloseNext, "TRACE", "/x", "", 200, true},
		{"DELETE", faultCloseNext, "DELETE", "/x", "", 200, true},
		{"PUT with a body", faultCloseNext, "PUT", "/x", "put body", 200, true},
		{"PUT without a body", faultCloseNext, "PUT", "/x", "", 200, true},
		{"PUT with a body too large to replay", faultCloseNext, "PUT", "/x", big, 502, false},
		{"POST with a body", faultCloseNext, "POST", "/x", "post body", 502, false},
		{"POST without a body", faultCloseNext, "POST", "/x", "", 502, false},
		{"PATCH", faultCloseNext, "PATCH", "/x", "patch", 502, false},
		{"GET, part of the head received", faultOK, "GET", "/f/" + faultResetHead + "/x", "", 502, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := startChaosOrigin(t)
			p := startProxy(t, "allow_trace = true\n[[proxy.routes]]\nhost = \"*\"\norigins = [\""+o.url()+"\"]\n", Options{})
			c := dialRaw(t, p.addr)
			c.send("GET /f/" + tc.prime + "/prime HTTP/1.1\r\nHost: site.test\r\n\r\n")
			if resp, body := c.response("GET"); resp.StatusCode != 200 || body != faultBody {
				t.Fatalf("priming: %d (%d bytes)", resp.StatusCode, len(body))
			}
			req := tc.method + " " + tc.path + " HTTP/1.1\r\nHost: site.test\r\n"
			if tc.body != "" || tc.method == "POST" || tc.method == "PUT" {
				req += fmt.Sprintf("Content-Length: %d\r\n", len(tc.body))
			}
			c.send(req + "\r\n" + tc.body)
			resp, body := c.response(tc.method)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, trim(body), tc.status)
			}
			var want []seenRequest // the prime on connection 0, the request on it, the retry on 1
			want = append(want, seenRequest{conn: 0, method: "GET", path: "/f/" + tc.prime + "/prime"},
				seenRequest{conn: 0, method: tc.method, path: tc.path, body: tc.body})
			if tc.retried {
				want = append(want, seenRequest{conn: 1, method: tc.method, path: tc.path, body: tc.body})
			}
			got := o.requests()
			if len(got) != len(want) {
				t.Fatalf("the origin read %d requests, want %d: %+v", len(got), len(want), got)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("request %d: %+v, want %+v", i, trimSeen(got[i]), trimSeen(want[i]))
				}
			}
			waitFor(t, "the access log", func() bool { return len(p.log.lines()) == 2 })
			line := p.log.lines()[1]
			if logged := strings.Contains(line, " error:reset"); logged == tc.retried {
				t.Errorf("logged %q: want error:reset only when not retried", line)
			}
		})
	}
}

// caseOfLine finds the case index in an access log line (by its route's host); -1 if none.
var caseOfLine = regexp.MustCompile(`http://[cf](\d+)\.faults\.test[:/]`)

// checkLogKinds waits for the access logs of the run (each stale case's priming first, then
// n requests in all) and checks that every line names its case's error kind.
func checkLogKinds(t *testing.T, rig *faultRig, cases []faultCase, n int) {
	t.Helper()
	primes := 0
	for _, tc := range cases {
		if tc.stale {
			primes++
		}
	}
	lines := func() []string {
		var all []string
		for _, p := range rig.proxies {
			all = append(all, p.log.lines()...)
		}
		return all
	}
	waitFor(t, "the access logs", func() bool { return len(lines()) >= primes+n })
	primed := map[int]bool{}
	bad := 0
	logged := map[string]int{}
	for _, line := range lines() {
		m := caseOfLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		k, _ := strconv.Atoi(m[1])
		want := cases[k].kind
		if cases[k].stale && !primed[k] {
			primed[k], want = true, ""
		}
		got := ""
		if i := strings.LastIndex(line, " error:"); i >= 0 {
			got = line[i+len(" error:"):]
			logged[got]++
		}
		if got != want {
			if bad++; bad <= 10 {
				t.Errorf("%s: logged error kind %q, want %q: %s", cases[k].name, got, want, line)
			}
		}
	}
	for kind, n := range logged { // the metric counts what the log names, cut responses included
		counted := 0.0
		for _, p := range rig.proxies {
			counted += counterValue(p.srv.m.upstreamErrors.WithLabelValues(kind))
		}
		if int(counted) != n {
			t.Errorf("outpost_proxy_upstream_errors_total{kind=%q} = %v, the log has %d", kind, counted, n)
		}
	}
}

// trimSeen shortens a recorded request's body for a message.
func trimSeen(r seenRequest) seenRequest {
	r.body = trim(r.body)
	return r
}

// TestOriginFaultsPipelined: a fault in the middle of a pipeline costs only its own response.
// Requests before it are answered whole; a 502 is followed by the rest of the pipeline on the
// same connection; a cut response is the last thing on the connection (nothing after it could
// be told apart from its body), and it closes.
func TestOriginFaultsPipelined(t *testing.T) {
	o := startChaosOrigin(t)
	p := startProxy(t, "[proxy.upstream]\n"+faultProfiles["body"]+"\n[[proxy.routes]]\nhost = \"*\"\norigins = [\""+o.url()+"\"]\n", Options{Cache: newRealCache(t)})
	cases := []struct {
		fault  string
		status int  // the middle response's status
		cut    bool // the middle response is cut and the connection closes
	}{
		{faultResetHead, 502, false},
		{faultGarbage, 502, false},
		{faultStatus503, 503, false},
		{faultCloseNext, 200, false},
		{faultResetBody, 200, true},
		{faultResetChunked, 200, true},
		{faultStallBody, 200, true},
	}
	for _, tc := range cases {
		t.Run(tc.fault, func(t *testing.T) {
			c := dialRaw(t, p.addr)
			var req strings.Builder
			for i, fault := range []string{faultOK, tc.fault, faultOK} {
				fmt.Fprintf(&req, "GET /f/%s/pipe-%d HTTP/1.1\r\nHost: site.test\r\n\r\n", fault, i)
			}
			c.send(req.String())
			if resp, body := c.response("GET"); resp.StatusCode != 200 || body != faultBody {
				t.Fatalf("first: %d (%d bytes), want the whole 200", resp.StatusCode, len(body))
			}
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("second: %v", err)
			}
			body, berr := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || (berr != nil) != tc.cut {
				t.Fatalf("second: %d, body error %v, want %d cut=%v", resp.StatusCode, berr, tc.status, tc.cut)
			}
			if tc.cut {
				if !c.closed() {
					t.Fatal("the connection stayed open after a cut response")
				}
				return
			}
			if tc.status == 200 && string(body) != faultBody {
				t.Fatalf("second: %d bytes, want the whole body", len(body))
			}
			if resp, body := c.response("GET"); resp.StatusCode != 200 || body != faultBody {
				t.Fatalf("third: %d (%d bytes), want the whole 200", resp.StatusCode, len(body))
			}
		})
	}
}
