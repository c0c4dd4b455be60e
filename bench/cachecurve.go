package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gonum.org/v1/plot"
)

// CacheOptions configure `outpost bench cache`: a Zipf workload through a caching proxy whose
// cache size changes from point to point.
type CacheOptions struct {
	// Sizes are the cache sizes, one point each.
	Sizes []int64
	// ProxyURLs are running proxies, one per size (each configured with that size), or
	// Binary is an outpost binary started per point as `outpost up` with
	// OUTPOST_CACHE_MEMORY_SIZE=<size>, its own ports and data directory. Exactly one is set.
	ProxyURLs []string
	Binary    string
	// Env adds KEY=VALUE settings to the started binary's environment.
	Env []string
	// Origin is the origin's base URL; with Binary it defaults to the started origin.
	Origin string
	// Reverse sends origin-form requests to the proxy (a reverse proxy routing to the origin)
	// instead of absolute-form requests (a forward proxy).
	Reverse bool
	// K objects, popularity Zipf(Alpha), sizes log-uniform in [MinObject, MaxObject].
	K                    int
	Alpha                float64
	MinObject, MaxObject int64
	// Warmup requests fill the cache before Requests are measured.
	Warmup, Requests int64
	// Connections is the load's concurrency.
	Connections int
	Timeout     time.Duration
	Seed        uint64
	// Log, when set, receives one line per point as it completes.
	Log io.Writer
}

// Validate checks the options, returning a *UsageError naming the flag.
func (o *CacheOptions) Validate() error {
	switch {
	case len(o.Sizes) == 0 || len(o.Sizes) > 64:
		return usagef("--sizes: give 1..64 cache sizes")
	case (len(o.ProxyURLs) == 0) == (o.Binary == ""):
		return usagef("give either --outpost BINARY (started per size) or --proxies URL,... (one per size)")
	case len(o.ProxyURLs) > 0 && len(o.ProxyURLs) != len(o.Sizes):
		return usagef("--proxies has %d URLs for %d --sizes", len(o.ProxyURLs), len(o.Sizes))
	case o.Binary == "" && o.Origin == "":
		return usagef("--origin is needed with --proxies")
	case o.K <= 0 || o.K > 1_000_000:
		return usagef("--zipf-k must be 1..1000000, got %d", o.K)
	case o.Alpha < 0 || math.IsNaN(o.Alpha):
		return usagef("--zipf-alpha must not be negative")
	case o.MinObject <= 0 || o.MaxObject < o.MinObject:
		return usagef("--object-size must be a positive size or range MIN..MAX")
	case o.Warmup < 0 || o.Requests <= 0:
		return usagef("--requests must be positive and --warmup not negative")
	case o.Connections <= 0:
		return usagef("-c must be positive")
	case o.Timeout <= 0:
		return usagef("--timeout must be positive")
	}
	for _, s := range o.Sizes {
		if s < 0 {
			return usagef("--sizes: negative size %d", s)
		}
	}
	return nil
}

// CachePoint is the measurement at one cache size.
type CachePoint struct {
	Size         int64            `json:"cache_size"`
	Requests     int64            `json:"requests"`
	HitRatio     float64          `json:"hit_ratio"`
	ByteHitRatio float64          `json:"byte_hit_ratio"`
	OriginBytes  int64            `json:"origin_bytes"` // body bytes of the misses
	Errors       map[string]int64 `json:"errors"`
	Latency      Latency          `json:"latency"`
}

// RunCacheCurve measures every point in turn.
func RunCacheCurve(ctx context.Context, o CacheOptions) ([]CachePoint, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	var out []CachePoint
	for i, size := range o.Sizes {
		pt, err := o.point(ctx, i, size)
		if err != nil {
			return out, fmt.Errorf("cache size %d: %w", size, err)
		}
		if o.Log != nil {
			fmt.Fprintf(o.Log, "size %-12s hit ratio %.3f  byte hit ratio %.3f  origin %s\n",
				humanBytes(float64(size)), pt.HitRatio, pt.ByteHitRatio, humanBytes(float64(pt.OriginBytes)))
		}
		out = append(out, pt)
	}
	return out, nil
}

// point measures one cache size: it starts the proxy when a binary is given, warms the cache,
// then measures.
func (o *CacheOptions) point(ctx context.Context, i int, size int64) (CachePoint, error) {
	proxy, origin := "", o.Origin
	if o.Binary != "" {
		srv, err := startOutpost(ctx, o.Binary, size, o.Env)
		if err != nil {
			return CachePoint{}, err
		}
		defer srv.stop()
		proxy = srv.proxyURL
		if origin == "" {
			origin = srv.originURL
		}
	} else {
		proxy = o.ProxyURLs[i]
	}
	lo := o.loadOptions(proxy, origin)
	if o.Warmup > 0 {
		lo.Requests = o.Warmup
		if _, err := RunLoad(ctx, lo); err != nil {
			return CachePoint{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	lo.Requests, lo.Seed = o.Requests, lo.Seed+1
	r, err := RunLoad(ctx, lo)
	if err != nil {
		return CachePoint{}, err
	}
	if r.CacheHits+r.CacheMisses == 0 {
		return CachePoint{}, errors.New("no response carried Cache-Status: is the target a caching proxy?")
	}
	pt := CachePoint{Size: size, Requests: r.Requests, HitRatio: r.HitRatio, ByteHitRatio: r.ByteHitRatio,
		Errors: r.Errors, Latency: r.Latency}
	pt.OriginBytes = r.MissBytes
	return pt, nil
}

// loadOptions builds the Zipf load through a proxy.
func (o *CacheOptions) loadOptions(proxy, origin string) LoadOptions {
	origin = strings.TrimSuffix(origin, "/")
	lo := LoadOptions{URLs: []string{origin + "/bytes/1"}, ZipfK: o.K, ZipfAlpha: o.Alpha, Connections: o.Connections,
		Pipeline: 1, KeepAlive: true, Timeout: o.Timeout, Seed: o.Seed}
	lo.rankURL = func(rank int) string { return fmt.Sprintf("%s/bytes/%d?obj=%d", origin, o.objectSize(rank), rank) }
	if o.Reverse {
		p := strings.TrimSuffix(proxy, "/")
		lo.URLs = []string{p + "/bytes/1"}
		lo.rankURL = func(rank int) string { return fmt.Sprintf("%s/bytes/%d?obj=%d", p, o.objectSize(rank), rank) }
	} else {
		lo.Proxy = proxy
	}
	return lo
}

// objectSize is the size of the object of a rank: log-uniform in [MinObject, MaxObject],
// fixed by a hash of the rank so every run and point sees the same objects.
func (o *CacheOptions) objectSize(rank int) int64 {
	if o.MinObject == o.MaxObject {
		return o.MinObject
	}
	h := fnv.New64a()
	fmt.Fprint(h, rank)
	u := float64(h.Sum64()>>11) / float64(1<<53)
	lo, hi := math.Log(float64(o.MinObject)), math.Log(float64(o.MaxObject))
	return int64(math.Exp(lo + u*(hi-lo)))
}

// outpostProcess is an `outpost up` started for one point.
type outpostProcess struct {
	cmd                 *exec.Cmd
	dir                 string
	proxyURL, originURL string
	done                chan error
}

// startOutpost starts binary with the proxy and origin on free loopback ports, a fresh data
// directory and the given cache size, and waits until the proxy accepts connections.
func startOutpost(ctx context.Context, binary string, size int64, extra []string) (*outpostProcess, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "outpost-bench-cache-")
	if err != nil {
		return nil, err
	}
	proxyAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	webAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	env := append(os.Environ(),
		"OUTPOST_DATA_DIR="+filepath.Join(dir, "data"),
		"OUTPOST_PROXY_LISTEN="+proxyAddr,
		"OUTPOST_PROXY_FORWARD=true",
		"OUTPOST_WEB_LISTEN="+webAddr,
		"OUTPOST_ADMIN_LISTEN=127.0.0.1:"+strconv.Itoa(ports[2]),
		"OUTPOST_CACHE_MEMORY_SIZE="+strconv.FormatInt(size, 10),
		"OUTPOST_CACHE_DISK_ENABLED=false",
		"OUTPOST_DNS_ENABLED=false", "OUTPOST_FTP_ENABLED=false", "OUTPOST_MAIL_ENABLED=false",
		"OUTPOST_LOG_LEVEL=warn")
	env = append(env, extra...)
	cmd := exec.CommandContext(ctx, binary, "up")
	cmd.Env = env
	log, err := os.Create(filepath.Join(dir, "outpost.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &outpostProcess{cmd: cmd, dir: dir, proxyURL: "http://" + proxyAddr, originURL: "http://" + webAddr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); log.Close() }()
	if err := p.waitListening(proxyAddr, webAddr); err != nil {
		p.stop()
		out, _ := os.ReadFile(filepath.Join(dir, "outpost.log"))
		return nil, fmt.Errorf("%w; its log:\n%s", err, trunc(out))
	}
	return p, nil
}

// waitListening polls until every address accepts a connection or the process exits.
func (p *outpostProcess) waitListening(addrs ...string) error {
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-p.done:
				p.done <- err
				return fmt.Errorf("outpost exited before listening on %s: %v", a, err)
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("outpost did not listen on %s within 15s", a)
			}
		}
	}
	return nil
}

// stop asks the process to shut down (SIGTERM), waits for it (killing it after 10 s) and
// removes its data.
func (p *outpostProcess) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	os.RemoveAll(p.dir)
}

// freePorts finds n free loopback TCP ports (the kernel may hand one out again before use,
// which startOutpost then reports).
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// CachePlot charts hit ratio and byte hit ratio against cache size on a log axis.
func CachePlot(pts []CachePoint, k int, alpha float64) (*plot.Plot, error) {
	hit := series{name: "hit ratio", line: true, points: true, color: 0}
	bhit := series{name: "byte hit ratio", line: true, points: true, color: 1}
	for _, p := range pts {
		x := float64(max(p.Size, 1)) / (1 << 20)
		hit.xs, hit.ys = append(hit.xs, x), append(hit.ys, p.HitRatio)
		bhit.xs, bhit.ys = append(bhit.xs, x), append(bhit.ys, p.ByteHitRatio)
	}
	title := fmt.Sprintf("Cache effectiveness: Zipf(α=%g) over %d objects", alpha, k)
	p, err := linePlot(title, "cache size (MiB, log scale)", "ratio", true, []series{hit, bhit})
	if err != nil {
		return nil, err
	}
	p.Y.Max = 1
	return p, nil
}

// CacheTable returns the points as a report table.
func CacheTable(pts []CachePoint) *Table {
	t := &Table{Header: []string{"cache size", "requests", "hit ratio", "byte hit ratio", "origin bytes", "p50", "p99", "errors"}}
	for _, p := range pts {
		t.Rows = append(t.Rows, []string{humanBytes(float64(p.Size)), fmt.Sprint(p.Requests),
			fmt.Sprintf("%.3f", p.HitRatio), fmt.Sprintf("%.3f", p.ByteHitRatio), humanBytes(float64(p.OriginBytes)),
			p.Latency.P50.String(), p.Latency.P99.String(), formatCounts(p.Errors)})
	}
	return t
}

// WriteCacheTable writes the points as an aligned text table.
func WriteCacheTable(w io.Writer, pts []CachePoint) error {
	return writeTable(w, CacheTable(pts))
}
