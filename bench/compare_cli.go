package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// benchCompareCmd is `outpost bench compare`: Outpost against nginx, Varnish, Squid and
// Traffic Server, one server core each, interleaved rounds, appended to RESULTS.md.
func benchCompareCmd() *cobra.Command {
	var (
		o        CompareOptions
		results  string
		noAppend bool
		out      outputFlags
	)
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Compare Outpost with nginx, Varnish, Squid and Traffic Server, one core each (installs them)",
		Long: `Installs the peers from Debian packages when missing (nginx-light, varnish, squid,
trafficserver, wrk, nghttp2-client), starts an nginx origin and every server as a caching
reverse proxy in front of it, each pinned to --server-cpu with one worker, and runs wrk on
--load-cpu for each scenario: hit1k, pipe16, hit1m, miss, close, forward (Outpost as a forward
proxy) and misslat (one connection, for the latency a miss adds over a direct origin fetch).
The TLS scenarios run Outpost's [proxy.tls] listener against nginx's 'listen … ssl http2' with
a certificate made for the run: h2hit1k (h2load -m 10), tlsnew (this binary's bench http, a new
TLS 1.3 connection per request, no session resumption) and tls1k (wrk over https, keep-alive);
they skip when the Outpost binary has no TLS listener. Rounds interleave the
servers; a cell during which other processes used more than --disturbed cores is marked and its
round left out of the medians. The tables go to stdout and are appended to --results with the
exact command, the date and the commit. Everything started is stopped at the end, on an error
or on Ctrl-C.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Outpost == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find this binary (give --outpost): %w", err)
				}
				o.Outpost = exe
			}
			// tlsnew's load generator is this binary's bench http, whatever Outpost is measured.
			if exe, err := os.Executable(); err == nil {
				o.Loader = exe
			}
			for flag, bin := range map[string]string{"--outpost": o.Outpost, "--baseline": o.Baseline} {
				if fi, err := os.Stat(bin); bin != "" && (err != nil || fi.IsDir()) {
					return usagef("%s %s: not an executable file", flag, bin)
				}
			}
			if err := o.Validate(); err != nil {
				return err
			}
			if !noAppend {
				if fi, err := os.Stat(results); err != nil || fi.IsDir() {
					return usagef("--results %s: not a file to append to (give an existing file, or --no-append)", results)
				}
			}
			o.Log = cmd.ErrOrStderr()
			res, err := RunCompare(cmd.Context(), o)
			if err != nil {
				return err
			}
			res.Command = shellQuote(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...))
			if out.json {
				err = writeJSON(cmd.OutOrStdout(), res)
			} else {
				err = WriteCompare(cmd.OutOrStdout(), res)
			}
			if err != nil {
				return err
			}
			if !noAppend {
				if err := AppendCompare(results, res); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "bench compare: appended to %s\n", results)
			}
			if out.report != "" {
				return compareReport(cmd, res, out.report)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Outpost, "outpost", "", "Outpost `BINARY` to measure (default: this one)")
	f.StringVar(&o.Baseline, "baseline", "", "another Outpost `BINARY` (e.g. the build before a change) measured alike in the same rounds")
	f.IntVar(&o.Nice, "nice", 0, "nice value for the servers, origin and wrk (negative: take the CPU from everything else)")
	f.StringSliceVar(&o.Servers, "servers", nil, "servers to run (default all): outpost,nginx,varnish,squid,ats")
	f.StringSliceVar(&o.Scenarios, "scenarios", nil, "scenarios to run (default all): "+strings.Join(ScenarioNames(), ","))
	f.IntVar(&o.Rounds, "rounds", 2, "rounds (each runs every scenario against every server)")
	f.DurationVarP(&o.Duration, "duration", "d", 5*time.Second, "wrk duration per cell (whole seconds)")
	f.IntVarP(&o.Connections, "connections", "c", 50, "wrk connections (misslat uses 1)")
	f.IntVar(&o.ServerCPU, "server-cpu", 0, "CPU the servers are pinned to")
	f.IntVar(&o.LoadCPU, "load-cpu", 1, "CPU wrk and the origin are pinned to")
	f.Float64Var(&o.Threshold, "disturbed", 0.15, "outside load (cores) above which a cell is disturbed")
	f.BoolVar(&o.Install, "install", true, "install missing packages with apt-get")
	f.StringVar(&results, "results", "bench/RESULTS.md", "markdown `FILE` the tables are appended to")
	f.BoolVar(&noAppend, "no-append", false, "do not append to --results")
	out.add(cmd)
	return cmd
}

// compareReport writes the run as an HTML report.
func compareReport(cmd *cobra.Command, res *CompareResult, file string) error {
	r := newReport(cmd, "Outpost against nginx, Varnish, Squid and Traffic Server")
	names, tables := CompareTables(res)
	for i, t := range tables {
		r.AddTable(names[i], "", t)
	}
	if len(res.Skipped) > 0 {
		t := &Table{Header: []string{"skipped scenario"}}
		for _, s := range res.Skipped {
			t.Rows = append(t.Rows, []string{s})
		}
		r.AddTable("Skipped", "Scenarios that could not run, and why.", t)
	}
	return r.WriteFile(file)
}
