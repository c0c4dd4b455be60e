package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The page-load strategies of the scorecard.
const (
	StrategyNonPersistent    = "nonpersistent"     // HTTP/1.0, one fetch at a time, a connection each
	StrategyParallel         = "parallel"          // m parallel non-persistent connections
	StrategyPersistent       = "persistent"        // one keep-alive connection, one request at a time
	StrategyPipelined        = "pipelined"         // one connection, all objects pipelined
	StrategyPipelinedWarm    = "pipelined-warm"    // pipelined on an already open connection
	StrategyPipelinedRevisit = "pipelined-revisit" // warm connection, page and objects in one round
	StrategyMultiplexed      = "multiplexed"       // one TLS 1.3 connection, HTTP/2, n concurrent streams
)

// Strategies lists every strategy in table order.
var Strategies = []string{
	StrategyNonPersistent, StrategyParallel, StrategyPersistent,
	StrategyPipelined, StrategyPipelinedWarm, StrategyPipelinedRevisit, StrategyMultiplexed,
}

// proxyStrategies are the strategies a forward proxy target runs (multiplexed needs a TLS
// server at the far end of the link, which a forward proxy is not).
var proxyStrategies = Strategies[:len(Strategies)-1]

// ScorecardOptions configure one scorecard run.
type ScorecardOptions struct {
	// Origin is the origin's base URL (http://host:port); it serves /page/N.
	Origin string
	// Proxy is the proxy's URL, used when Target is "proxy" (as a forward proxy).
	Proxy string
	// Target is "origin" or "proxy".
	Target string
	// N is the number of embedded objects; Size their size in bytes (0: the origin's default).
	N    int
	Size int64
	// RTT is the client leg's round-trip time; OriginRTT the proxy→origin leg's (proxy target).
	RTT, OriginRTT time.Duration
	// Bandwidth caps the client leg, bytes per second per direction (0: none).
	Bandwidth int64
	// Parallel is m, the connections of the parallel strategy.
	Parallel int
	// ProxyCache is "cold" (every run fetches fresh URLs) or "warm" (fetched once first).
	ProxyCache string
	// Repeat is how many runs each strategy gets; the median is reported.
	Repeat int
	// Strategies to run; empty means all.
	Strategies []string
	// Stat summarises the runs: "median" (default) or "min" (the fastest run, the best
	// estimate of the protocol's cost on a machine busy with other work).
	Stat string
	// TLSOrigin is the TLS + HTTP/2 server the multiplexed strategy loads the page from
	// (https://host:port, serving /page/N like Origin: the origin itself, or a proxy's TLS
	// listener in front of it). Empty: bench puts its own TLS terminator in front of Origin,
	// on the origin's side of the link.
	TLSOrigin string
	// TLS says how TLSOrigin's certificate is trusted.
	TLS TLSOptions
}

// Validate checks the options, returning a *UsageError naming the flag.
func (o *ScorecardOptions) Validate() error {
	switch {
	case o.N <= 0:
		return usagef("--n must be positive, got %d", o.N)
	case o.N > 10000:
		return usagef("--n must be at most 10000, got %d", o.N)
	case o.Size < 0:
		return usagef("--size must not be negative")
	case o.RTT < 0 || o.OriginRTT < 0:
		return usagef("--rtt and --origin-rtt must not be negative")
	case o.Bandwidth < 0:
		return usagef("--bandwidth must not be negative")
	case o.Parallel <= 0:
		return usagef("--parallel must be positive, got %d", o.Parallel)
	case o.Repeat <= 0:
		return usagef("--repeat must be positive, got %d", o.Repeat)
	case o.Target != "origin" && o.Target != "proxy":
		return usagef("--target must be origin or proxy, got %q", o.Target)
	case o.ProxyCache != "cold" && o.ProxyCache != "warm":
		return usagef("--proxy-cache must be cold or warm, got %q", o.ProxyCache)
	case o.Target == "proxy" && o.Proxy == "":
		return usagef("--target proxy needs --proxy URL")
	case o.Stat != "" && o.Stat != "median" && o.Stat != "min":
		return usagef("--stat must be median or min, got %q", o.Stat)
	}
	for _, s := range o.Strategies {
		if !slices.Contains(Strategies, s) {
			return usagef("unknown strategy %q (want one of %s)", s, strings.Join(Strategies, ", "))
		}
		if s == StrategyMultiplexed && o.Target == "proxy" {
			return usagef("strategy multiplexed needs --target origin (give a TLS proxy listener as --tls-origin)")
		}
	}
	if o.TLSOrigin != "" {
		if u, err := url.Parse(o.TLSOrigin); err != nil || u.Scheme != "https" || u.Host == "" {
			return usagef("--tls-origin: want https://host:port, got %q", o.TLSOrigin)
		}
	}
	if err := o.TLS.Validate(); err != nil {
		return err
	}
	if _, err := hostOf(o.Origin); err != nil {
		return &UsageError{Err: fmt.Errorf("--origin: %w", err)}
	}
	if o.Target == "proxy" {
		if _, err := hostOf(o.Proxy); err != nil {
			return &UsageError{Err: fmt.Errorf("--proxy: %w", err)}
		}
	}
	return nil
}

// hostOf returns host:port of an http URL.
func hostOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("want http://host:port, got %q", raw)
	}
	if u.Port() == "" {
		return u.Host + ":80", nil
	}
	return u.Host, nil
}

// ScoreRow is one strategy's result.
type ScoreRow struct {
	Strategy string          `json:"strategy"`
	N        int             `json:"n"`
	RTT      time.Duration   `json:"rtt_ns"`
	Measured time.Duration   `json:"measured_ns"` // median of the runs
	Runs     []time.Duration `json:"runs_ns"`
	Model    time.Duration   `json:"model_ns"`
	Formula  string          `json:"formula"`
	Ratio    float64         `json:"ratio"` // measured / model
	// CacheHits and CacheMisses count the measured responses' Cache-Status over all runs
	// (through a proxy).
	CacheHits   int64 `json:"cache_hits"`
	CacheMisses int64 `json:"cache_misses"`
}

// Scorecard is the result of a scorecard run.
type Scorecard struct {
	Options ScorecardOptions `json:"options"`
	Rows    []ScoreRow       `json:"rows"`
}

// RunScorecard measures every selected strategy. Each run starts the delay lines afresh so
// that every connection pays its handshake.
func RunScorecard(ctx context.Context, o ScorecardOptions) (*Scorecard, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	strategies := o.Strategies
	if len(strategies) == 0 {
		strategies = Strategies
		if o.Target == "proxy" {
			strategies = proxyStrategies
		}
	}
	sc := &Scorecard{Options: o}
	for _, s := range strategies {
		row, err := runStrategy(ctx, o, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		sc.Rows = append(sc.Rows, row)
	}
	return sc, nil
}

// legs are the delay lines of one scorecard run.
type legs struct {
	client *DelayLine // client → origin or proxy
	origin *DelayLine // proxy → origin (proxy target only)
	front  *tlsFront  // multiplexed without TLSOrigin: the TLS terminator in front of the origin
	pc     *pageClient
}

// openLegs starts the delay lines for the options' target (and, for the multiplexed
// strategy, the TLS server the client leg ends at).
func openLegs(o ScorecardOptions, strategy string) (*legs, error) {
	originAddr, _ := hostOf(o.Origin)
	l := &legs{}
	first := originAddr
	host := originAddr
	if strategy == StrategyMultiplexed {
		return l, l.openTLS(o)
	}
	if o.Target == "proxy" {
		var err error
		l.origin, err = NewDelayLine("", originAddr, Link{Delay: o.OriginRTT / 2})
		if err != nil {
			return nil, err
		}
		host = l.origin.Addr()
		first, _ = hostOf(o.Proxy)
	}
	c, err := NewDelayLine("", first, Link{Delay: o.RTT / 2, Bandwidth: o.Bandwidth})
	if err != nil {
		l.close()
		return nil, err
	}
	l.client = c
	l.pc = &pageClient{addr: c.Addr(), proxy: o.Target == "proxy", host: host, rtt: o.RTT}
	return l, nil
}

// openTLS starts the client leg to the TLS server of the multiplexed strategy: TLSOrigin, or
// a TLS front of the origin started here.
func (l *legs) openTLS(o ScorecardOptions) error {
	conf, err := o.TLS.config("")
	if err != nil {
		return err
	}
	conf.MinVersion, conf.NextProtos = tls.VersionTLS13, []string{"h2"}
	var addr string
	if o.TLSOrigin != "" {
		u, _ := url.Parse(o.TLSOrigin)
		addr = u.Host
		if u.Port() == "" {
			addr = u.Host + ":443"
		}
		conf.ServerName = u.Hostname()
	} else {
		if l.front, err = newTLSFront(o.Origin); err != nil {
			return err
		}
		addr, conf.ServerName, conf.RootCAs, conf.InsecureSkipVerify = l.front.Addr(), "localhost", l.front.roots, false
	}
	c, err := NewDelayLine("", addr, Link{Delay: o.RTT / 2, Bandwidth: o.Bandwidth})
	if err != nil {
		l.close()
		return err
	}
	l.client = c
	l.pc = &pageClient{addr: c.Addr(), host: addr, rtt: o.RTT, tls: conf}
	return nil
}

func (l *legs) close() {
	if l.client != nil {
		l.client.Close()
	}
	if l.origin != nil {
		l.origin.Close()
	}
	if l.front != nil {
		l.front.Close()
	}
}

// runStrategy measures one strategy Repeat times and fits the model.
func runStrategy(ctx context.Context, o ScorecardOptions, strategy string) (ScoreRow, error) {
	l, err := openLegs(o, strategy)
	if err != nil {
		return ScoreRow{}, err
	}
	defer l.close()
	row := ScoreRow{Strategy: strategy, N: o.N, RTT: o.RTT}
	var bytes int64
	if strategy == StrategyMultiplexed {
		// One unmeasured load first: the first TLS handshakes of a process pay one-time
		// initialisation (key tables, the front's upstream connections), not round trips. Every
		// measured run still makes a new connection and a full handshake.
		if _, err := fetchPage(l.pc, strategy, pagePath(o), "", o.Parallel); err != nil {
			return row, fmt.Errorf("warm-up: %w", err)
		}
	}
	for i := 0; i < o.Repeat; i++ {
		if err := ctx.Err(); err != nil {
			return row, err
		}
		page := pagePath(o)
		if o.Target == "proxy" && o.ProxyCache == "warm" {
			if _, err := fetchPage(l.pc, StrategyPersistent, page, "", o.Parallel); err != nil {
				return row, fmt.Errorf("warming the cache: %w", err)
			}
		}
		suffix := ""
		if o.Target == "proxy" && o.ProxyCache == "cold" {
			suffix = "bust=" + nonce()
			page = withQuery(page, suffix)
		}
		if l.origin != nil {
			l.origin.CloseConns() // the proxy's upstream connections start cold in every run
		}
		l.pc.resetCounters()
		d, err := fetchPage(l.pc, strategy, page, suffix, o.Parallel)
		if err != nil {
			return row, err
		}
		row.CacheHits += l.pc.hits.Load()
		row.CacheMisses += l.pc.misses.Load()
		row.Runs = append(row.Runs, d)
		bytes = l.pc.bytes.Load()
	}
	sorted := slices.Clone(row.Runs)
	slices.Sort(sorted)
	row.Measured = sorted[len(sorted)/2]
	if o.Stat == "min" {
		row.Measured = sorted[0]
	}
	row.Model, row.Formula = modelStreams(o, strategy, bytes, int(l.pc.streamLimit.Load()))
	row.Ratio = float64(row.Measured) / float64(row.Model)
	return row, nil
}

// pagePath is the base page's path on the origin.
func pagePath(o ScorecardOptions) string {
	p := "/page/" + strconv.Itoa(o.N)
	if o.Size > 0 {
		p += "?size=" + strconv.FormatInt(o.Size, 10)
	}
	return p
}

// nonce returns a random cache-busting token.
func nonce() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// fetchPage loads a page and its objects with a strategy and returns the elapsed time. Warm
// strategies open their connection (and, for revisit, learn the object list) before the clock
// starts.
func fetchPage(pc *pageClient, strategy, page, suffix string, m int) (time.Duration, error) {
	switch strategy {
	case StrategyNonPersistent:
		return timed(func() error { return pageNonPersistent(pc, page, suffix, 1) })
	case StrategyParallel:
		return timed(func() error { return pageNonPersistent(pc, page, suffix, m) })
	case StrategyPersistent, StrategyPipelined:
		return timed(func() error {
			p, err := pc.openPersistent()
			if err != nil {
				return err
			}
			defer p.close()
			return pageOnConn(p, page, suffix, strategy == StrategyPipelined)
		})
	case StrategyPipelinedWarm, StrategyPipelinedRevisit:
		return pageWarm(pc, strategy, page, suffix)
	case StrategyMultiplexed:
		return timed(func() error { return pageMultiplexed(pc, page, suffix) })
	}
	return 0, usagef("unknown strategy %q", strategy)
}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// pageNonPersistent fetches the page, then its objects with m workers, a connection per fetch.
func pageNonPersistent(pc *pageClient, page, suffix string, m int) error {
	base, err := pc.fetchNew(page)
	if err != nil {
		return err
	}
	objs, err := objectsOf(base, page, suffix)
	if err != nil {
		return err
	}
	work := make(chan string)
	errs := make(chan error, m)
	var wg sync.WaitGroup
	for range min(m, len(objs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range work {
				if _, err := pc.fetchNew(path); err != nil {
					errs <- err
					for range work {
					}
					return
				}
			}
		}()
	}
	for _, p := range objs {
		work <- p
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

// pageOnConn fetches the page then its objects on one connection, pipelined or one by one.
func pageOnConn(p *persistentConn, page, suffix string, pipelined bool) error {
	base, err := p.pipeline(page)
	if err != nil {
		return err
	}
	objs, err := objectsOf(base[0], page, suffix)
	if err != nil {
		return err
	}
	if pipelined {
		_, err = p.pipeline(objs...)
		return err
	}
	for _, o := range objs {
		if _, err := p.pipeline(o); err != nil {
			return err
		}
	}
	return nil
}

// pageWarm runs the warm pipelined strategies: the connection is open (its handshake done)
// before the clock starts; revisit also knows the objects and sends everything in one round.
func pageWarm(pc *pageClient, strategy, page, suffix string) (time.Duration, error) {
	var objs []string
	if strategy == StrategyPipelinedRevisit {
		base, err := pc.fetchNew(page)
		if err != nil {
			return 0, err
		}
		if objs, err = objectsOf(base, page, ""); err != nil {
			return 0, err
		}
		if suffix != "" { // a cold proxy cache: new URLs for the measured visit
			suffix = "bust=" + nonce()
			page = withQuery(stripBust(page), suffix)
			for i := range objs {
				objs[i] = withQuery(stripBust(objs[i]), suffix)
			}
		}
	}
	pc.resetCounters() // the learning visit is not part of the measurement
	p, err := pc.openPersistent()
	if err != nil {
		return 0, err
	}
	defer p.close()
	if err := waitHandshake(p); err != nil {
		return 0, err
	}
	return timed(func() error {
		if strategy == StrategyPipelinedWarm {
			return pageOnConn(p, page, suffix, true)
		}
		_, err := p.pipeline(append([]string{page}, objs...)...)
		return err
	})
}

// waitHandshake lets the emulated handshake of a fresh connection complete: the delay line
// holds a new connection's first byte for one RTT, as TCP's three-way handshake would.
func waitHandshake(p *persistentConn) error {
	time.Sleep(p.c.rtt + time.Millisecond)
	return nil
}

// stripBust removes a bust= parameter added by an earlier visit.
func stripBust(path string) string {
	u, err := url.Parse(path)
	if err != nil {
		return path
	}
	q := u.Query()
	q.Del("bust")
	u.RawQuery = q.Encode()
	return u.RequestURI()
}

// objectsOf lists a fetched page's embedded objects.
func objectsOf(base *response, page, suffix string) ([]string, error) {
	objs, err := embeddedObjects(base.body, stripBust(page), suffix)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("page %s embeds no objects", page)
	}
	return objs, nil
}

// model returns the textbook time for a strategy, and its formula. The client leg counts RTTs
// of the client link, plus the transmission time of the bytes over the bandwidth cap; through
// a cold proxy, the origin leg adds its own round trips (the proxy reuses upstream
// connections and opens new ones, each costing one origin RTT, for concurrent requests).
func model(o ScorecardOptions, strategy string, bytes int64) (time.Duration, string) {
	return modelStreams(o, strategy, bytes, 0)
}

// modelStreams is model with the multiplexed strategy's stream limit: the server's
// SETTINGS_MAX_CONCURRENT_STREAMS (0: unknown, taken as no limit). Over the limit the objects
// go in ⌈n/s⌉ rounds.
func modelStreams(o ScorecardOptions, strategy string, bytes int64, limit int) (time.Duration, string) {
	n, m := float64(o.N), float64(o.Parallel)
	waves := math.Ceil(n / m)
	var c, up float64 // client-leg and origin-leg round trips
	var f string
	switch strategy {
	case StrategyNonPersistent:
		c, up, f = 2*(n+1), n+2, "2(n+1)"
	case StrategyParallel:
		c, up, f = 2*(1+waves), 3+waves, "2(1+⌈n/m⌉)"
	case StrategyPersistent:
		c, up, f = n+2, n+2, "n+2"
	case StrategyPipelined:
		c, up, f = 3, 4, "3"
	case StrategyPipelinedWarm:
		c, up, f = 2, 4, "2"
	case StrategyPipelinedRevisit:
		c, up, f = 1, 2, "1"
	case StrategyMultiplexed: // TCP + TLS 1.3 + base page + objects
		c, up, f = 4, 0, "1+1+1+1"
		if limit > 0 && o.N > limit {
			w := math.Ceil(n / float64(limit))
			c, f = 3+w, fmt.Sprintf("1+1+1+⌈n/%d⌉", limit)
		}
	}
	f += " RTT"
	t := c * float64(o.RTT)
	if o.Target == "proxy" && o.ProxyCache == "cold" {
		t += up * float64(o.OriginRTT)
		f += fmt.Sprintf(" + %g RTTo", up)
	}
	if o.Bandwidth > 0 {
		t += float64(bytes) / float64(o.Bandwidth) * float64(time.Second)
		f += " + bytes/B"
	}
	return time.Duration(t), f
}
