package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// NewCommand returns `outpost bench`: the scorecard, HTTP load, cache curve and DNS load
// tools. version is shown in HTML reports (empty: the binary's build information). Its flag
// and option errors are *UsageError (exit status 2; detect with IsUsage or
// errors.As(err, new(*UsageError))).
func NewCommand(version string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure servers over the network: page-load scorecard, HTTP load, cache curve, DNS load, peer comparison",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown bench command %q (want scorecard, http, cache, dns, delay, compare or soak)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	cmd.Annotations = map[string]string{versionKey: version}
	cmd.AddCommand(benchScorecardCmd(), benchHTTPCmd(), benchCacheCmd(), benchDNSCmd(), benchDelayCmd(), benchCompareCmd(), benchSoakCmd())
	return cmd
}

// usageArgs turns cobra's positional-argument errors into usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &UsageError{Err: err}
		}
		return nil
	}
}

// outputFlags are the output options every bench subcommand shares.
type outputFlags struct {
	json   bool
	report string
}

func (o *outputFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as JSON")
	cmd.Flags().StringVar(&o.report, "report", "", "also write a self-contained HTML report to `FILE.html`")
}

// versionKey annotates the bench command with the Outpost version for reports.
const versionKey = "outpost-version"

// reportVersion finds the version NewCommand was given, on cmd or a parent.
func reportVersion(cmd *cobra.Command) string {
	for c := cmd; c != nil; c = c.Parent() {
		if v := c.Annotations[versionKey]; v != "" {
			return v
		}
	}
	return ""
}

// newReport starts an HTML report of the running command.
func newReport(cmd *cobra.Command, title string) *Report {
	return NewReport(title, commandLine(cmd), reportVersion(cmd))
}

// commandLine reconstructs the command line: the command path, every flag that was set and
// the arguments.
func commandLine(cmd *cobra.Command) []string {
	args := strings.Fields(cmd.CommandPath())
	if len(args) == 0 || args[0] != "outpost" {
		args = append([]string{"outpost"}, args...)
	}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			args = append(args, "--"+f.Name+"="+strings.Join(sv.GetSlice(), ","))
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return append(args, cmd.Flags().Args()...)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func benchScorecardCmd() *cobra.Command {
	var (
		o                           ScorecardOptions
		size, bandwidth, sweep, plt string
		originRTT                   time.Duration
		csv                         bool
		out                         outputFlags
	)
	cmd := &cobra.Command{
		Use:   "scorecard",
		Short: "Load a page of n objects in each HTTP strategy and compare with the textbook models",
		Long: `Fetches /page/N (a base page embedding N objects) from the origin, directly or through the
proxy, over an emulated link (delay line) of the given RTT and bandwidth, in each strategy:
nonpersistent 2(n+1) RTT, parallel 2(1+⌈n/m⌉) RTT, persistent n+2 RTT, pipelined 3 RTT,
pipelined-warm 2 RTT, pipelined-revisit 1 RTT, and multiplexed 1+1+1+1 RTT (TCP, TLS 1.3,
base page, all objects as concurrent HTTP/2 streams on one connection), plus bytes/bandwidth
with --bandwidth. multiplexed loads from --tls-origin, or (by default) from a TLS + HTTP/2
terminator bench starts in front of --origin, on the origin's side of the link; it runs with
--target origin only.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if size != "" {
				if o.Size, err = ParseSize("--size", size); err != nil {
					return err
				}
			}
			if o.Bandwidth, err = ParseBandwidth("--bandwidth", bandwidth); err != nil {
				return err
			}
			o.OriginRTT = o.RTT
			if cmd.Flags().Changed("origin-rtt") {
				o.OriginRTT = originRTT
			}
			var sw *Sweep
			if sweep != "" {
				if sw, err = ParseSweep(sweep); err != nil {
					return err
				}
			}
			if plt != "" && !strings.HasSuffix(plt, ".png") && !strings.HasSuffix(plt, ".svg") {
				return &UsageError{Err: fmt.Errorf("--plot %s: want a .png or .svg file", plt)}
			}
			if err := o.Validate(); err != nil {
				return err
			}
			scs, err := RunScorecards(cmd.Context(), o, sw)
			if err != nil {
				return err
			}
			return scorecardOutput(cmd, scs, sw, csv, plt, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Origin, "origin", "http://127.0.0.1:8081", "origin base `URL` (serves /page/N)")
	f.StringVar(&o.Proxy, "proxy", "http://127.0.0.1:8080", "proxy `URL`, used as a forward proxy with --target proxy")
	f.StringVar(&o.Target, "target", "origin", "fetch from the origin or through the proxy: origin|proxy")
	f.IntVar(&o.N, "n", 10, "embedded objects per page")
	f.StringVar(&size, "size", "", "object `size` (e.g. 1KiB, 1MiB; default: the origin's)")
	f.DurationVar(&o.RTT, "rtt", 40*time.Millisecond, "round-trip time of the client link")
	f.DurationVar(&originRTT, "origin-rtt", 0, "round-trip time of the proxy→origin link (default: --rtt)")
	f.StringVar(&bandwidth, "bandwidth", "", "bandwidth cap of the client link per direction (e.g. 1MiB = bytes/s, 8Mbit)")
	f.IntVar(&o.Parallel, "parallel", 4, "connections `m` of the parallel strategy")
	f.StringVar(&o.ProxyCache, "proxy-cache", "cold", "proxy cache state for --target proxy: cold|warm")
	f.IntVar(&o.Repeat, "repeat", 3, "runs per strategy")
	f.StringVar(&o.Stat, "stat", "median", "summary of the runs: median or min (fastest)")
	f.StringSliceVar(&o.Strategies, "strategy", nil, "strategies to run (default all): "+strings.Join(Strategies, ","))
	f.StringVar(&sweep, "sweep", "", "sweep a parameter: n=1..64 (doubling), n=1,5,10, rtt=10ms..160ms, rtt=10ms,50ms")
	f.StringVar(&o.TLSOrigin, "tls-origin", "", "TLS + HTTP/2 server `URL` (https://host:port) of the multiplexed strategy (default: bench's TLS front of --origin)")
	f.BoolVar(&o.TLS.Insecure, "insecure", false, "do not verify --tls-origin's certificate")
	f.StringVar(&o.TLS.CACert, "cacert", "", "trust the CA certificates in PEM `FILE` for --tls-origin")
	f.BoolVar(&csv, "csv", false, "print the result as CSV")
	f.StringVar(&plt, "plot", "", "write a chart to `FILE.png` or FILE.svg")
	out.add(cmd)
	return cmd
}

// scorecardOutput prints the scorecard and writes the chart and report.
func scorecardOutput(cmd *cobra.Command, scs []*Scorecard, sw *Sweep, csv bool, plt string, out outputFlags) error {
	w := cmd.OutOrStdout()
	var err error
	switch {
	case out.json:
		err = writeJSON(w, scs)
	case csv:
		err = WriteScoreCSV(w, scs)
	default:
		err = WriteScoreTable(w, scs)
	}
	if err != nil {
		return err
	}
	if plt == "" && out.report == "" {
		return nil
	}
	p, err := ScorePlot(scs, sw)
	if err != nil {
		return err
	}
	if plt != "" {
		if err := p.Save(8*72, 4.5*72, plt); err != nil {
			return fmt.Errorf("write plot: %w", err)
		}
	}
	if out.report != "" {
		r := newReport(cmd, "Outpost page-load scorecard")
		r.AddTable("Measured against the textbook model", "Measured summarises the runs (see the column head); the model counts round trips of the emulated link.", ScoreTable(scs))
		if err := r.AddChart("Chart", p); err != nil {
			return err
		}
		return r.WriteFile(out.report)
	}
	return nil
}

func benchHTTPCmd() *cobra.Command {
	var (
		o        LoadOptions
		urlsFile string
		out      outputFlags
	)
	cmd := &cobra.Command{
		Use:   "http [flags] URL...",
		Short: "Load-test an HTTP/1.x or HTTP/2 server or proxy (like wrk and h2load)",
		Long: `Sends requests on -c connections for -d or -n requests: closed loop by default, open loop at
--rate (latencies measured from each request's intended send time, correcting coordinated
omission). With --zipf-k K the first URL is a template: {i} becomes the object rank.
https:// URLs speak TLS (--insecure or --cacert for test certificates; a new connection never
resumes a session, so --keepalive=false measures full handshakes). --h2 speaks HTTP/2 (ALPN h2
over TLS, prior knowledge to http:// URLs) with -m streams per connection: -c × -m requests in
flight, as h2load -c -m.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.URLs = args
			if urlsFile != "" {
				b, err := os.ReadFile(urlsFile)
				if err != nil {
					return &UsageError{Err: fmt.Errorf("--urls: %w", err)}
				}
				for _, l := range strings.Split(string(b), "\n") {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
						o.URLs = append(o.URLs, l)
					}
				}
			}
			if o.Requests > 0 && !cmd.Flags().Changed("duration") {
				o.Duration = 0
			}
			if err := o.Validate(); err != nil {
				return err
			}
			stop := progress(&o)
			r, err := RunLoad(cmd.Context(), o)
			stop()
			if err != nil {
				return err
			}
			return loadOutput(cmd, out, "Outpost HTTP load", r, func(w io.Writer) { WriteLoad(w, r) }, LoadTable(r), r.Latency)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.Connections, "connections", "c", 10, "concurrent connections")
	f.DurationVarP(&o.Duration, "duration", "d", 10*time.Second, "test duration")
	f.Int64VarP(&o.Requests, "requests", "n", 0, "total requests (instead of -d)")
	f.IntVar(&o.Pipeline, "pipeline", 1, "requests pipelined per connection")
	f.BoolVar(&o.KeepAlive, "keepalive", true, "keep connections open (false: one connection per request)")
	f.BoolVar(&o.HTTP10, "http1.0", false, "send HTTP/1.0 requests")
	f.StringVar(&urlsFile, "urls", "", "read URLs from `FILE`, one per line")
	f.IntVar(&o.ZipfK, "zipf-k", 0, "Zipf workload over K URLs made from the first URL ({i} = rank)")
	f.Float64Var(&o.ZipfAlpha, "zipf-alpha", 0.8, "Zipf exponent α")
	f.Float64Var(&o.Rate, "rate", 0, "open loop: total requests per second (0: closed loop)")
	f.StringVar(&o.Proxy, "proxy", "", "send absolute-form requests to this forward proxy `URL`")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "per-request timeout")
	f.Uint64Var(&o.Seed, "seed", 0, "random seed of the Zipf workload (0: random)")
	f.BoolVar(&o.H2, "h2", false, "speak HTTP/2 (TLS with ALPN h2 for https://, prior knowledge for http://)")
	f.IntVarP(&o.Streams, "streams", "m", 1, "concurrent streams per connection (--h2)")
	f.BoolVar(&o.TLS.Insecure, "insecure", false, "do not verify the server's certificate (https://)")
	f.StringVar(&o.TLS.CACert, "cacert", "", "trust the CA certificates in PEM `FILE` (https://)")
	f.StringSliceVar(&o.TLS.Curves, "curves", nil, "key exchanges to offer (x25519,p256,p384,p521,x25519mlkem768; default Go's)")
	f.BoolVar(&o.TLS.TLS13, "tls13", false, "refuse TLS versions older than 1.3")
	out.add(cmd)
	return cmd
}

// progress shows a live progress line while a load runs, only when stderr is a terminal.
func progress(o *LoadOptions) func() {
	if fi, err := os.Stderr.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	total := o.Requests
	if total == 0 {
		total = -1
	}
	bar := progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("requests"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("req"),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
	o.Progress = func(done int64, _ time.Duration) { bar.Set64(done) }
	return func() { bar.Finish() }
}

func benchCacheCmd() *cobra.Command {
	var (
		o            CacheOptions
		sizes        []string
		objSize, plt string
		out          outputFlags
	)
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Hit ratio and origin traffic versus cache size for a Zipf workload through the proxy",
		Long: `For each --sizes point, runs a Zipf(α) workload over K objects (/bytes/SIZE?obj=I on the
origin) through a caching proxy and reads hits and misses from Cache-Status. Either --outpost
BINARY starts "BINARY up" per point (OUTPOST_CACHE_MEMORY_SIZE=<size>, free loopback ports,
a temporary data directory, disk tier off), or --proxies gives one running proxy per size.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range sizes {
				n, err := ParseSize("--sizes", s)
				if err != nil {
					return err
				}
				o.Sizes = append(o.Sizes, n)
			}
			var err error
			if o.MinObject, o.MaxObject, err = ParseSizeRange("--object-size", objSize); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			if !out.json {
				o.Log = cmd.ErrOrStderr()
			}
			pts, err := RunCacheCurve(cmd.Context(), o)
			if err != nil {
				return err
			}
			return cacheOutput(cmd, pts, o, plt, out)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&sizes, "sizes", []string{"256KiB", "1MiB", "4MiB", "16MiB", "64MiB"}, "cache sizes, one point each")
	f.StringVar(&o.Binary, "outpost", "", "outpost `BINARY` to start per point")
	f.StringSliceVar(&o.ProxyURLs, "proxies", nil, "running proxy URLs, one per size (instead of --outpost)")
	f.StringArrayVar(&o.Env, "env", nil, "extra KEY=VALUE environment for the started binary")
	f.StringVar(&o.Origin, "origin", "", "origin base `URL` (default with --outpost: the started origin)")
	f.BoolVar(&o.Reverse, "reverse", false, "send origin-form requests to the proxy (reverse proxy) instead of absolute-form")
	f.IntVar(&o.K, "zipf-k", 10000, "number of distinct objects")
	f.Float64Var(&o.Alpha, "zipf-alpha", 0.8, "Zipf exponent α")
	f.StringVar(&objSize, "object-size", "1KiB..64KiB", "object size, or MIN..MAX for log-uniform sizes")
	f.Int64Var(&o.Warmup, "warmup", 20000, "requests that fill the cache before measuring")
	f.Int64Var(&o.Requests, "requests", 50000, "measured requests per point")
	f.IntVarP(&o.Connections, "connections", "c", 8, "concurrent connections")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "per-request timeout")
	f.Uint64Var(&o.Seed, "seed", 1, "random seed of the workload")
	f.StringVar(&plt, "plot", "", "write the curve to `FILE.png` or FILE.svg")
	out.add(cmd)
	return cmd
}

func cacheOutput(cmd *cobra.Command, pts []CachePoint, o CacheOptions, plt string, out outputFlags) error {
	w := cmd.OutOrStdout()
	var err error
	if out.json {
		err = writeJSON(w, pts)
	} else {
		err = WriteCacheTable(w, pts)
	}
	if err != nil || (plt == "" && out.report == "") {
		return err
	}
	p, err := CachePlot(pts, o.K, o.Alpha)
	if err != nil {
		return err
	}
	if plt != "" {
		if err := p.Save(8*72, 4.5*72, plt); err != nil {
			return fmt.Errorf("write plot: %w", err)
		}
	}
	if out.report != "" {
		r := newReport(cmd, "Outpost cache curve")
		r.AddTable("Hit ratio by cache size", fmt.Sprintf("Zipf α=%g over %d objects.", o.Alpha, o.K), CacheTable(pts))
		if err := r.AddChart("Curve", p); err != nil {
			return err
		}
		return r.WriteFile(out.report)
	}
	return nil
}

func benchDNSCmd() *cobra.Command {
	var (
		o        DNSOptions
		file     string
		queries  []string
		generate string
		random   int
		out      outputFlags
	)
	cmd := &cobra.Command{
		Use:   "dns [flags] SERVER:PORT",
		Short: "Load-test an authoritative DNS server (like dnsperf)",
		Long: `Sends the query mix (--queries FILE in dnsperf format, --query "name TYPE", or --generate ZONE
with --random-names N) from --clients
sockets with up to --outstanding queries in flight each, over UDP or --tcp, optionally with a
random EDNS Client Subnet per query (--ecs-random).`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Server = args[0]
			if file != "" {
				qs, err := ReadQueryFile(file)
				if err != nil {
					return &UsageError{Err: fmt.Errorf("--queries: %w", err)}
				}
				o.Queries = qs
			}
			if generate != "" {
				qs, err := GenerateQueries(generate, random, o.Seed)
				if err != nil {
					return &UsageError{Err: fmt.Errorf("--generate: %w", err)}
				}
				o.Queries = append(o.Queries, qs...)
			}
			for _, q := range queries {
				dq, err := ParseQuery(strings.Fields(q))
				if err != nil {
					return &UsageError{Err: fmt.Errorf("--query %q: %w", q, err)}
				}
				o.Queries = append(o.Queries, dq)
			}
			if o.Requests > 0 && !cmd.Flags().Changed("duration") {
				o.Duration = 0
			}
			if err := o.Validate(); err != nil {
				return err
			}
			r, err := RunDNS(cmd.Context(), o)
			if err != nil {
				return err
			}
			return loadOutput(cmd, out, "Outpost DNS load", r, func(w io.Writer) { WriteDNS(w, r) }, DNSTable(r), r.Latency)
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "queries", "", "query `FILE`: \"name TYPE\" per line")
	f.StringArrayVar(&queries, "query", nil, "a query \"name [TYPE]\" (repeatable)")
	f.StringVar(&generate, "generate", "", "generate a mix for `ZONE`: SOA, NS, www A and AAAA, plus --random-names")
	f.IntVar(&random, "random-names", 0, "with --generate: add N random names under the zone (NXDOMAIN load)")
	f.IntVar(&o.Clients, "clients", 4, "sockets (UDP) or connections (TCP)")
	f.IntVar(&o.Outstanding, "outstanding", 64, "queries in flight per client")
	f.DurationVarP(&o.Duration, "duration", "d", 10*time.Second, "test duration")
	f.Int64VarP(&o.Requests, "requests", "n", 0, "total queries (instead of -d)")
	f.BoolVar(&o.TCP, "tcp", false, "query over TCP")
	f.BoolVar(&o.ECSRandom, "ecs-random", false, "add a random EDNS Client Subnet (/24) to every query")
	f.BoolVar(&o.EDNS, "edns", false, "add an EDNS OPT record")
	f.DurationVar(&o.Timeout, "timeout", 2*time.Second, "time before an unanswered query counts as lost")
	f.Uint64Var(&o.Seed, "seed", 0, "random seed for the client subnets (0: random)")
	out.add(cmd)
	return cmd
}

func benchDelayCmd() *cobra.Command {
	var (
		listen, bandwidth string
		rtt               time.Duration
		noSetup           bool
	)
	cmd := &cobra.Command{
		Use:   "delay [flags] TARGET:PORT",
		Short: "Run a delay line (emulated RTT and bandwidth) in front of a TCP server until interrupted",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			bw, err := ParseBandwidth("--bandwidth", bandwidth)
			if err != nil {
				return err
			}
			if rtt < 0 {
				return usagef("--rtt must not be negative")
			}
			d, err := NewDelayLine(listen, args[0], Link{Delay: rtt / 2, Bandwidth: bw, NoSetupCost: noSetup})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "delay line %s → %s, RTT %v\n", d.Addr(), args[0], rtt)
			<-cmd.Context().Done()
			return d.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:0", "listen `address`")
	f.DurationVar(&rtt, "rtt", 50*time.Millisecond, "round-trip time added (half each way)")
	f.StringVar(&bandwidth, "bandwidth", "", "bandwidth cap per direction (e.g. 1MiB = bytes/s, 8Mbit)")
	f.BoolVar(&noSetup, "no-setup-cost", false, "do not charge new connections one RTT for the handshake")
	return cmd
}

// loadOutput prints a load test's result (text, or JSON with --json) and, with --report, writes
// the HTML report with its result table and latency chart. It serves `bench http` and `bench dns`.
func loadOutput(cmd *cobra.Command, out outputFlags, title string, result any, text func(io.Writer), table *Table, lat Latency) error {
	w := cmd.OutOrStdout()
	if out.json {
		if err := writeJSON(w, result); err != nil {
			return err
		}
	} else {
		text(w)
	}
	if out.report == "" {
		return nil
	}
	rep := newReport(cmd, title)
	rep.AddTable("Result", "", table)
	p, err := LatencyPlot("Latency percentiles", lat)
	if err != nil {
		return err
	}
	if err := rep.AddChart("Latency", p); err != nil {
		return err
	}
	return rep.WriteFile(out.report)
}
