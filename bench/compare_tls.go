package bench

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is the comparison's TLS side: the scenarios on the servers' TLS listeners
// (h2hit1k with h2load, tlsnew with `outpost bench http`, whose client never resumes a
// session, tls1k with wrk over https), how the TLS-capable servers are configured with the
// run's certificate (nginx: `listen … ssl http2`; Outpost: [proxy.tls]), and how the load
// generators other than wrk are run and read.

//go:embed reference/outpost-tls.toml
var outpostTLSTemplate string

// tlsCapable are the servers of the comparison with a TLS listener (when their binary has
// one: Outpost's is detected at start).
var tlsCapable = []string{"outpost", "baseline", "nginx"}

// nginxTLSListen is the nginx peer's TLS listener inside its server block: TLS 1.2 and 1.3,
// HTTP/2 and HTTP/1.1 by ALPN, nginx's default session handling (tickets on).
func nginxTLSListen(e serverEnv) string {
	if e.tlsPort == 0 {
		return ""
	}
	return fmt.Sprintf(`    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3;
`, e.tlsPort, e.certs.cert, e.certs.key)
}

// outpostTLSConf is the [proxy.tls] section appended to Outpost's configuration (empty
// without a TLS port).
func outpostTLSConf(e serverEnv) string {
	if e.tlsPort == 0 {
		return ""
	}
	return strings.NewReplacer("@TLSPORT@", strconv.Itoa(e.tlsPort), "@CERT@", e.certs.cert, "@KEY@", e.certs.key).Replace(outpostTLSTemplate)
}

// noTLSListener reports whether an Outpost that exited at start refused its [proxy.tls]
// section: a binary from before the TLS listener (an unknown key, exit 2).
func noTLSListener(log string) bool {
	return strings.Contains(log, "proxy.tls") && strings.Contains(log, "unknown key")
}

// tlsTargets are the servers a TLS scenario measures: the run's servers whose TLS listener
// runs (and speaks HTTP/2 when the scenario does).
func (r *compareRun) tlsTargets(sc Scenario) []string {
	return slices.DeleteFunc(slices.Clone(r.o.Servers), func(s string) bool {
		return r.tlsPorts[s] == 0 || sc.H2 && !r.h2[s]
	})
}

// skipTLS says why a TLS scenario has no cells, once per scenario.
func (r *compareRun) skipTLS(sc Scenario) {
	if r.skipped[sc.Name] {
		return
	}
	r.skipped[sc.Name] = true
	var why string
	switch {
	case !slices.Contains(r.o.Servers, "outpost") || !slices.Contains(r.o.Servers, "nginx"):
		why = "measures outpost against nginx: give both in --servers"
	case r.tlsPorts["outpost"] == 0:
		why = "needs [proxy.tls]: the outpost binary under test has no TLS listener"
	case r.tlsPorts["nginx"] == 0:
		why = "nginx has no TLS listener"
	default:
		why = "needs HTTP/2 on both TLS listeners (ALPN did not give h2)"
	}
	r.logf("%s skipped: %s", sc.Name, why)
	r.skippedWhy = append(r.skippedWhy, sc.Name+": "+why)
}

// loadCommand is the load generator's command line for one cell (pinned to the load CPU)
// and the parser of its output.
func (r *compareRun) loadCommand(sc Scenario, script, url string) (args []string, parse func(string) (wrkResult, error)) {
	switch sc.Tool {
	case "h2load":
		return append([]string{"h2load"}, h2loadArgs(sc, r.o.Connections, r.o.Duration, url)...), parseH2load
	case "bench":
		return append([]string{r.loader()}, benchLoadArgs(sc, r.o.Connections, r.o.Duration, url)...), parseBenchLoad
	}
	return append([]string{"wrk"}, wrkArgs(sc, r.o.Connections, r.o.Duration, script, url)...), parseWrk
}

// loader is the binary whose `bench http` drives the tlsnew scenario.
func (r *compareRun) loader() string {
	if r.o.Loader != "" {
		return r.o.Loader
	}
	return r.o.Outpost
}

// h2loadArgs is h2load's command line for one cell: one thread, the run's connections, the
// scenario's streams per connection, for the run's duration.
func h2loadArgs(s Scenario, conns int, d time.Duration, url string) []string {
	if s.Connections > 0 {
		conns = s.Connections
	}
	return []string{"-t1", "-c" + strconv.Itoa(conns), "-m" + strconv.Itoa(max(s.Streams, 1)),
		"-D", strconv.Itoa(int(d.Round(time.Second) / time.Second)), url}
}

// benchLoadArgs is `outpost bench http`'s command line for one cell: a new connection per
// request when the scenario closes, TLS 1.3 with x25519 only (what both OpenSSL and Go do
// alike), the certificate not verified (no client-side cost that the server does not share).
func benchLoadArgs(s Scenario, conns int, d time.Duration, url string) []string {
	if s.Connections > 0 {
		conns = s.Connections
	}
	args := []string{"bench", "http", "-c", strconv.Itoa(conns), "-d", d.Round(time.Second).String(), "--timeout", "5s", "--json"}
	if s.TLS {
		args = append(args, "--insecure", "--tls13", "--curves", "x25519")
	}
	if s.Close {
		args = append(args, "--keepalive=false")
	}
	if s.H2 {
		args = append(args, "--h2", "-m", strconv.Itoa(max(s.Streams, 1)))
	}
	return append(args, url)
}

// h2load's summary lines.
var (
	h2loadFinished = regexp.MustCompile(`(?m)^finished in ([0-9.]+)(m?s),`)
	h2loadRequests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadStatus   = regexp.MustCompile(`(?m)^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2loadTraffic  = regexp.MustCompile(`(?m)^traffic: \S+ \((\d+)\) total`)
	h2loadRequest  = regexp.MustCompile(`(?m)^time for request:\s+(\S+)\s+(\S+)\s+(\S+)`)
)

// parseH2load reads h2load's summary: requests done, bytes, the duration, errors (failed,
// which includes errored, and timeouts), 4xx/5xx, and the slowest request. h2load gives no
// percentiles (only min, max, mean), so p50/p90/p99 stay 0: unknown.
func parseH2load(out string) (wrkResult, error) {
	fin, req, st, tr := h2loadFinished.FindStringSubmatch(out), h2loadRequests.FindStringSubmatch(out),
		h2loadStatus.FindStringSubmatch(out), h2loadTraffic.FindStringSubmatch(out)
	if fin == nil || req == nil || st == nil || tr == nil {
		return wrkResult{}, fmt.Errorf("no summary in h2load's output: %.400q", out)
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	secs, _ := strconv.ParseFloat(fin[1], 64)
	if fin[2] == "ms" {
		secs /= 1000
	}
	res := wrkResult{Requests: n(req[3]), Bytes: n(tr[1]), Elapsed: time.Duration(secs * float64(time.Second)),
		Errors: n(req[5]) + n(req[7]), Status: n(st[3]) + n(st[4])}
	if m := h2loadRequest.FindStringSubmatch(out); m != nil {
		res.Max, _ = parseH2loadDuration(m[2])
	}
	return res, nil
}

// parseH2loadDuration reads h2load's "18us", "5.51ms", "1.02s".
func parseH2loadDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("h2load duration %q: %w", s, err)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("h2load duration %q: no unit", s)
}

// parseBenchLoad reads `outpost bench http --json`. A resumed TLS session would make tlsnew
// measure something else than full handshakes: it is an error.
func parseBenchLoad(out string) (wrkResult, error) {
	i := strings.IndexByte(out, '{')
	if i < 0 {
		return wrkResult{}, fmt.Errorf("no JSON in bench http's output: %.400q", out)
	}
	var r LoadResult
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&r); err != nil {
		return wrkResult{}, fmt.Errorf("bench http's JSON: %w", err)
	}
	if r.Resumed > 0 {
		return wrkResult{}, fmt.Errorf("bench http resumed %d TLS sessions of %d", r.Resumed, r.Handshakes)
	}
	res := wrkResult{Requests: r.Requests, Bytes: r.Bytes, Elapsed: r.Elapsed,
		P50: r.Latency.P50, P90: r.Latency.P90, P99: r.Latency.P99, Max: r.Latency.Max}
	for k, v := range r.Errors {
		if strings.HasPrefix(k, "status ") {
			res.Status += v
		}
		res.Errors += v
	}
	return res, nil
}

// fetchTLS GETs u trusting only the CA in caFile and returns the protocol the response came
// in ("HTTP/2.0" when ALPN chose h2), wanting a 200 with its body read.
func fetchTLS(ctx context.Context, u, caFile string) (string, error) {
	o := TLSOptions{CACert: caFile}
	conf, err := o.config("")
	if err != nil {
		return "", err
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	return resp.Proto, nil
}

// warmTLS fetches the hit object through every TLS listener (the cache is the plain
// listener's, already warm) and notes which speak HTTP/2.
func (r *compareRun) warmTLS(ctx context.Context) error {
	for _, s := range r.o.Servers {
		if r.tlsPorts[s] == 0 {
			continue
		}
		proto, err := fetchTLS(ctx, fmt.Sprintf("https://127.0.0.1:%d/obj.bin", r.tlsPorts[s]), r.certs.ca)
		if err != nil {
			return fmt.Errorf("warm %s (TLS): %w", s, err)
		}
		r.h2[s] = proto == "HTTP/2.0"
		if !r.h2[s] {
			r.logf("%s: its TLS listener answered in %s, not HTTP/2: h2 scenarios leave it out", s, proto)
		}
	}
	return nil
}

// writeCerts makes the run's CA and server certificate in its work directory.
func (r *compareRun) writeCerts() error {
	c, err := newTestCerts()
	if err != nil {
		return err
	}
	dir := r.work + "/tls"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.certs, err = c.write(dir)
	return err
}
