package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/internal/config"
	"golang.org/x/net/websocket"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the dashboard screenshot to internal/admin/dashboard.png")

// TestDashboardInChromium starts the whole demo suite in-process, runs a bounded load of hits,
// misses and DNS queries, opens the dashboard in headless Chromium while the load runs and
// checks from the DOM that the page took samples from the stream and drew them: requests/s
// above zero, points in the charts, rows in the top-URL and health tables. It then takes a
// screenshot (committed as internal/admin/dashboard.png with -update-screenshot).
func TestDashboardInChromium(t *testing.T) {
	chromium := clienttest.Chromium(t)
	file, moved := demoConfig(t)
	cfg, err := config.Load(config.Source{File: file, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admin.DashboardInterval = 250 * time.Millisecond // samples arrive quickly in the test
	cfg.Proxy.AccessLog.Destination = "off"
	_, stop := runSuite(t, cfg, nil)
	admin := moved["127.0.0.1:9090"]
	waitReady(t, admin, 60*time.Second)

	var wg sync.WaitGroup
	loadCtx, stopLoad := context.WithTimeout(context.Background(), 2*time.Minute)
	defer wg.Wait() // after stopLoad (deferred calls run last first): no load outlives the test
	defer stopLoad()
	wg.Go(func() { proxyLoad(loadCtx, t, moved["127.0.0.1:8080"], moved["127.0.0.1:8081"]) })
	wg.Go(func() { dnsLoad(loadCtx, moved["127.0.0.1:5353"]) })
	waitSampled(t, admin, 30*time.Second)

	page := "http://" + admin + "/"
	b := startChromium(t, chromium, "--window-size=1400,1500", "--hide-scrollbars")
	b.call(t, "Page.navigate", map[string]any{"url": page}, nil)
	// The page draws what the stream brings: wait (with a deadline) until it has samples,
	// a nonzero rate and filled tables, then read the DOM and take the screenshot.
	minSamples := 20
	if *updateScreenshot {
		minSamples = 160 // 40 s of charts for the README
	}
	b.waitDOM(t, minSamples, "live")
	var shot struct {
		Data []byte `json:"data"` // base64 in JSON: decoded by encoding/json
	}
	b.call(t, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	if len(shot.Data) < 8 || string(shot.Data[1:4]) != "PNG" {
		t.Fatalf("no screenshot (%d bytes)", len(shot.Data))
	}
	if *updateScreenshot {
		if err := os.WriteFile("../../internal/admin/dashboard.png", shot.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Without EventSource the page polls /dashboard/samples and draws the same.
	b.call(t, "Page.enable", map[string]any{}, nil)
	b.call(t, "Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": "Object.defineProperty(window, 'EventSource', {value: undefined})"}, nil)
	b.call(t, "Page.navigate", map[string]any{"url": page}, nil)
	b.waitDOM(t, 20, "live (polling)")

	stopLoad()
	wg.Wait()
	stop() // with the page's event stream still open: it must not hold the shutdown
}

// domChecks lists what the dashboard's DOM lacks: samples from the stream, requests/s above
// zero, points in the charts, rows in the top-URL and health tables.
func domChecks(dom string) []string {
	checks := []struct {
		name string
		re   string
		ok   func(float64) bool
	}{
		{"samples taken from the stream (5 s of them)", `<body[^>]* data-samples="(\d+)"`, func(v float64) bool { return v >= 20 }},
		{"requests/s above zero", `<body[^>]* data-rps="([0-9.e+-]+)"`, func(v float64) bool { return v > 0 }},
		{"stream state live", `<body[^>]* data-state="(live)"`, nil},
		{"requests chart drawn", `id="chart-requests" data-points="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"hit ratio chart drawn", `id="chart-hits" data-points="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"bytes chart drawn", `id="chart-bytes" data-points="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"edge answers chart drawn", `id="chart-edges" data-points="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"steering steps chart drawn", `id="chart-steps" data-points="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"mail queue chart drawn", `id="chart-mail" data-points="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"top URLs by requests", `id="top-requests" data-rows="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"top URLs by bytes", `id="top-bytes" data-rows="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"route origins listed", `id="routes" data-rows="(\d+)"`, func(v float64) bool { return v > 0 }},
		{"DNS edges listed", `id="edges" data-rows="(\d+)"`, func(v float64) bool { return v >= 3 }},
	}
	var failed []string
	for _, c := range checks {
		m := regexp.MustCompile(c.re).FindStringSubmatch(dom)
		if m == nil {
			failed = append(failed, c.name+": "+c.re+" not in the DOM")
			continue
		}
		if c.ok == nil {
			continue
		}
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || !c.ok(v) {
			failed = append(failed, fmt.Sprintf("%s: got %q", c.name, m[1]))
		}
	}
	return failed
}

// waitDOM polls the page's DOM until domChecks passes, the page holds minSamples samples and
// its connection state reads state, failing the test past a deadline.
func (b *browser) waitDOM(t *testing.T, minSamples int, state string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		dom := b.eval(t, "document.documentElement.outerHTML")
		failed := domChecks(dom)
		if !strings.Contains(dom, `id="state" class="state live">`+state+"<") {
			failed = append(failed, "connection state is not "+state)
		}
		if len(failed) == 0 && samplesIn(dom) >= minSamples {
			return
		}
		if time.Now().After(deadline) {
			for _, f := range failed {
				t.Error(f)
			}
			t.Fatalf("DOM after %d samples:\n%s", samplesIn(dom), dom)
		}
		time.Sleep(100 * time.Millisecond) // polling the page's state with a deadline
	}
}

// samplesIn is the page's sample count.
func samplesIn(dom string) int {
	m := regexp.MustCompile(`<body[^>]* data-samples="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// browser is headless Chromium driven over the DevTools protocol (one page target).
type browser struct {
	ws *websocket.Conn
	id int
}

// startChromium starts headless Chromium with a fresh profile and a DevTools port, and
// connects to its first page. It is killed when the test ends.
func startChromium(t *testing.T, chromium string, args ...string) *browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	base := append(clienttest.HeadlessFlags(t.TempDir()),
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=http://127.0.0.1")
	cmd := exec.CommandContext(ctx, chromium, append(append(base, args...), "about:blank")...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	// Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), "DevTools listening on "); ok {
				found <- u
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	var wsURL string
	select {
	case wsURL = <-found:
	case <-time.After(60 * time.Second):
		t.Fatal("chromium did not open its DevTools port")
	}
	u, err := url.Parse(wsURL)
	if err != nil {
		t.Fatalf("DevTools address %q: %v", wsURL, err)
	}
	target := pageTarget(t, u.Host, 30*time.Second)
	ws, err := websocket.Dial(target, "", "http://127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &browser{ws: ws}
}

// pageTarget polls the DevTools target list until the first page shows, and returns its
// WebSocket address.
func pageTarget(t *testing.T, devtools string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var targets []struct{ Type, WebSocketDebuggerURL string }
		resp, err := http.Get("http://" + devtools + "/json/list")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
		}
		for _, tg := range targets {
			if tg.Type == "page" {
				return tg.WebSocketDebuggerURL
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no page target in %+v (%v)", targets, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// call sends one DevTools command and decodes its result into result (when not nil).
func (b *browser) call(t *testing.T, method string, params any, result any) {
	t.Helper()
	b.id++
	b.ws.SetDeadline(time.Now().Add(30 * time.Second))
	if err := websocket.JSON.Send(b.ws, map[string]any{"id": b.id, "method": method, "params": params}); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(b.ws, &msg); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if msg.ID != b.id {
			continue // an event
		}
		if msg.Error != nil {
			t.Fatalf("%s: %s", method, msg.Error.Message)
		}
		if result != nil {
			if err := json.Unmarshal(msg.Result, result); err != nil {
				t.Fatalf("%s: %v", method, err)
			}
		}
		return
	}
}

// eval evaluates a JavaScript expression in the page and returns its string value.
func (b *browser) eval(t *testing.T, expr string) string {
	t.Helper()
	var r struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
	}
	b.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	return r.Result.Value
}

// proxyLoad sends paced requests through the proxy until ctx ends or a bound is reached: a
// few hot objects (hits after their first miss), a stream of new URLs (misses), and reverse
// requests by Host.
func proxyLoad(ctx context.Context, t *testing.T, proxy, origin string) {
	proxyURL := &url.URL{Scheme: "http", Host: proxy}
	fwd := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
	rev := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(4 * time.Millisecond) // pacing the load, at most 250 requests/s
	defer tick.Stop()
	hot := []string{"/bytes/1k", "/bytes/16k", "/page/1", "/page/2"}
	for i := 0; i < 20000; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var req *http.Request
		switch {
		case i%5 == 4:
			req, _ = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/bytes/2k?miss=%d", origin, i), nil)
		case i%5 == 3:
			req, _ = http.NewRequestWithContext(ctx, "GET", "http://"+proxy+"/page/3", nil)
			req.Host = "www.cdn.test"
		default:
			req, _ = http.NewRequestWithContext(ctx, "GET", "http://"+origin+hot[i%len(hot)], nil)
		}
		c := fwd
		if req.Host == "www.cdn.test" {
			c = rev
		}
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("load request %s: %v", req.URL, err)
			}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// dnsLoad asks the demo DNS for the steered name from the three demo regions (ECS), paced and
// bounded, so answers count per edge and per steering step.
func dnsLoad(ctx context.Context, server string) {
	c := &dns.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond) // pacing, at most 50 queries/s
	defer tick.Stop()
	subnets := []string{"192.0.2.1", "198.51.100.7", "203.0.113.7", "10.9.8.7"}
	for i := 0; i < 5000; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m := new(dns.Msg)
		m.SetQuestion("www.cdn.test.", dns.TypeA)
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP(subnets[i%len(subnets)]).To4()})
		m.Extra = append(m.Extra, o)
		_, _, _ = c.ExchangeContext(ctx, m, server)
	}
}

// waitSampled polls /dashboard/samples until a sample shows proxied requests, DNS answers and
// cache hits, so the page opens on data.
func waitSampled(t *testing.T, admin string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + admin + "/dashboard/samples")
		if err == nil {
			var h struct {
				Samples []struct {
					V map[string]float64 `json:"v"`
				} `json:"samples"`
			}
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && len(h.Samples) > 0 {
				v := h.Samples[len(h.Samples)-1].V
				if v["proxy.requests"] > 0 && v["cache.memory"] > 0 && v["dns.queries"] > 0 {
					return
				}
				last = fmt.Sprint(v)
			}
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	t.Fatalf("no sample with proxy requests, memory hits and DNS queries within %s; last %s", within, last)
}

// TestDashboardProxyAlone runs `outpost proxy` alone (in-process): the dashboard serves, its
// samples carry the proxy's and cache's columns and none of the absent components', and the
// absent components' endpoints, which the page shows as "not running", answer 404.
func TestDashboardProxyAlone(t *testing.T) {
	file, moved := demoConfig(t)
	cfg, err := config.Load(config.Source{File: file, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admin.DashboardInterval = 100 * time.Millisecond
	cfg.Proxy.AccessLog.Destination = "off"
	runSuite(t, cfg, []string{"proxy"})
	admin := moved["127.0.0.1:9090"]
	waitReady(t, admin, 30*time.Second)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// A request the proxy answers itself (the origin is not running: 502) still counts.
	resp, err := http.Get("http://" + moved["127.0.0.1:8080"] + "/nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := get("/dashboard/samples")
		if strings.Contains(body, `"proxy.requests":`) && strings.Contains(body, `"bytes.origin":`) {
			if strings.Contains(body, `"dns.`) || strings.Contains(body, `"mail.`) {
				t.Fatalf("samples have columns of components that do not run:\n%s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no proxy columns in the samples:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	for path, want := range map[string]int{"/": 200, "/dashboard/static/app.js": 200, "/proxy/top": 200, "/proxy/routes": 200, "/dns/edges": 404, "/mail/queue": 404} {
		if status, _ := get(path); status != want {
			t.Errorf("GET %s = %d, want %d", path, status, want)
		}
	}
	if _, body := get("/metrics"); !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_cpu_seconds_total") || !strings.Contains(body, "outpost_proxy_served_bytes_total") {
		t.Errorf("/metrics lacks the runtime's or the components' metrics")
	}
	if _, body := get("/proxy/top"); !strings.Contains(body, "/nothing-here") {
		t.Errorf("/proxy/top lacks the request:\n%s", body)
	}
}
