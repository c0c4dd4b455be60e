package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Scenario is one workload of the comparison, run against each server with wrk.
type Scenario struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Path is the URL path requested (the script may make its own).
	Path string `json:"path"`
	// Connections overrides the run's connection count (misslat: 1).
	Connections int `json:"connections,omitempty"`
	// Close asks for a new connection per request (Connection: close).
	Close bool `json:"close,omitempty"`
	// Pipeline writes this many requests at once.
	Pipeline int `json:"pipeline,omitempty"`
	// Miss makes every request a new URL under /miss/ (no-store at the origin).
	Miss bool `json:"miss,omitempty"`
	// Forward sends absolute-form requests to Outpost as a forward proxy.
	Forward bool `json:"forward,omitempty"`
	// Hit: every measured request should be answered from the cache (origin count ~0).
	Hit bool `json:"hit,omitempty"`
	// Bytes: report bytes/s as the headline (large objects).
	Bytes bool `json:"bytes,omitempty"`
	// Direct also measures the origin directly (for the added latency of a miss).
	Direct bool `json:"direct,omitempty"`
	// TLS runs against the servers' TLS listeners (https://, the run's certificate): only the
	// TLS-capable servers (Outpost with [proxy.tls], its baseline, nginx) take part.
	TLS bool `json:"tls,omitempty"`
	// H2 speaks HTTP/2 (ALPN h2); Streams is the concurrent streams per connection.
	H2      bool `json:"h2,omitempty"`
	Streams int  `json:"streams,omitempty"`
	// Tool is the load generator: "" (wrk), "h2load", or "bench" (`outpost bench http`, whose
	// TLS client never resumes a session).
	Tool string `json:"tool,omitempty"`
}

// Scenarios are the comparison's workloads, in run order.
var Scenarios = []Scenario{
	{Name: "hit1k", Title: "1 KiB hit, keep-alive", Path: "/obj.bin", Hit: true},
	{Name: "pipe16", Title: "1 KiB hit, 16 pipelined requests per write", Path: "/obj.bin", Pipeline: 16, Hit: true},
	{Name: "hit1m", Title: "1 MiB hit, keep-alive", Path: "/obj1m.bin", Hit: true, Bytes: true},
	{Name: "miss", Title: "miss: no-store, a new URL each request", Path: "/miss/obj.bin", Miss: true},
	{Name: "close", Title: "1 KiB hit, a new connection per request", Path: "/obj.bin", Close: true, Hit: true},
	{Name: "forward", Title: "1 KiB hit, Outpost as a forward proxy (absolute-form requests)", Path: "/obj.bin", Forward: true, Hit: true},
	{Name: "misslat", Title: "miss latency: one connection, no-store, a new URL each request", Path: "/miss/obj.bin", Miss: true, Connections: 1, Direct: true},
	{Name: "h2hit1k", Title: "1 KiB hit over HTTP/2 + TLS 1.3 (h2load, 10 streams per connection)", Path: "/obj.bin", Hit: true, TLS: true, H2: true, Streams: 10, Tool: "h2load"},
	{Name: "tlsnew", Title: "1 KiB hit, a new TLS 1.3 connection per request (full handshake, x25519, no resumption)", Path: "/obj.bin", Hit: true, TLS: true, Close: true, Tool: "bench"},
	{Name: "tls1k", Title: "1 KiB hit over HTTP/1.1 + TLS 1.3, keep-alive", Path: "/obj.bin", Hit: true, TLS: true},
}

// ScenarioNames lists the scenario names.
func ScenarioNames() []string {
	names := make([]string, len(Scenarios))
	for i, s := range Scenarios {
		names[i] = s.Name
	}
	return names
}

// wrkDone is the Lua done() every script ends with: one line with the totals and wrk's
// latency percentiles (µs), which parseWrk reads.
const wrkDone = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("outpost-compare %d %d %d %d %d %d %d %d %d %d %d %d\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`

// wrkScript is the Lua script for a scenario. tag makes a cell's miss URLs its own; origin is
// the origin's host:port for forward requests.
func wrkScript(s Scenario, tag, origin string) string {
	var b strings.Builder
	switch {
	case s.Forward:
		fmt.Fprintf(&b, "local req\ninit = function(args)\n  req = wrk.format(\"GET\", %q, {Host = %q})\nend\nrequest = function() return req end\n",
			"http://"+origin+s.Path, origin)
	case s.Pipeline > 1:
		fmt.Fprintf(&b, "local req\ninit = function(args)\n  local r = {}\n  for i = 1, %d do r[i] = wrk.format(nil, %q) end\n  req = table.concat(r)\nend\nrequest = function() return req end\n",
			s.Pipeline, s.Path)
	case s.Miss:
		fmt.Fprintf(&b, "local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, %q .. n)\nend\n", s.Path+"?c="+tag+"&n=")
	}
	b.WriteString(wrkDone)
	return b.String()
}

// wrkArgs is the wrk command line for one cell (after taskset).
func wrkArgs(s Scenario, conns int, d time.Duration, script, url string) []string {
	if s.Connections > 0 {
		conns = s.Connections
	}
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s",
		"--timeout", "5s", "-s", script}
	if s.Close {
		args = append(args, "-H", "Connection: close")
	}
	return append(args, url)
}

// wrkResult is what one wrk run measured.
type wrkResult struct {
	Requests int64         `json:"requests"`
	Bytes    int64         `json:"bytes"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Errors   int64         `json:"errors"` // connect + read + write + timeout + non-2xx/3xx
	Status   int64         `json:"status_errors"`
	P50      time.Duration `json:"p50_ns"`
	P90      time.Duration `json:"p90_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
}

// parseWrk finds the line wrkDone printed in wrk's output.
func parseWrk(out string) (wrkResult, error) {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 13 || f[0] != "outpost-compare" {
			continue
		}
		var n [12]int64
		for i := range n {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return wrkResult{}, fmt.Errorf("wrk result field %d: %w", i+1, err)
			}
			n[i] = v
		}
		us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
		return wrkResult{Requests: n[0], Bytes: n[1], Elapsed: us(n[2]),
			Errors: n[3] + n[4] + n[5] + n[6] + n[7], Status: n[6],
			P50: us(n[8]), P90: us(n[9]), P99: us(n[10]), Max: us(n[11])}, nil
	}
	return wrkResult{}, fmt.Errorf("no result line in wrk's output: %.300q", out)
}

// parseStubStatus reads the request counter from nginx's stub_status page.
func parseStubStatus(body string) (int64, error) {
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		if strings.Contains(l, "accepts handled requests") && i+1 < len(lines) {
			f := strings.Fields(lines[i+1])
			if len(f) == 3 {
				return strconv.ParseInt(f[2], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no request counter in stub_status: %.200q", body)
}
