package bench

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func benchSoakCmd() *cobra.Command {
	var (
		o   SoakOptions
		out outputFlags
	)
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Mixed traffic with injected faults against a whole suite for a duration, then check nothing was lost",
		Long: `Starts "outpost up" (this binary, or --outpost) with a configuration it writes: every listener
on a free loopback port, a temporary data_dir, a fault origin, a TLS echo target and three
DNS-health-checked edges run by the soak. After a warm-up (cache filled) and an idle baseline
it runs, for -d, hits, misses, pipelined bursts, CONNECT tunnels, ftp:// fetches, DNS queries
with ECS, SMTP sends with POP3 and IMAP reads, and purges, while injecting origin resets,
stalls, mid-body resets, an origin restart, an edge restart and a SIGHUP reload. Every error is
expected (an injected fault's documented answer, in its window) or unexpected. At the end every
accepted mail must have arrived exactly once, every stored body must match the origin's
bytes, RSS must be within 10% of its level after the warm-up and goroutines and fds back to
the baseline. Exit status 1 when a check fails.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return usagef("--outpost: %v", err)
				}
				o.Binary = exe
			}
			if f := cmd.Flag("config"); f != nil && f.Changed {
				o.ConfigOut = f.Value.String()
			}
			if err := o.Validate(); err != nil {
				return err
			}
			o.Log = cmd.ErrOrStderr()
			res, err := RunSoak(cmd.Context(), o)
			if err != nil {
				return err
			}
			if err := soakOutput(cmd, res, out); err != nil {
				return err
			}
			if !res.Pass {
				return fmt.Errorf("%w: %s (suite data kept in %s)", errSoakFailed, strings.Join(res.Failures, "; "), res.WorkDir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVarP(&o.Duration, "duration", "d", 60*time.Second, "main phase (with faults)")
	f.DurationVar(&o.Warmup, "warmup", 10*time.Second, "traffic before the baseline")
	f.IntVarP(&o.Connections, "connections", "c", 4, "concurrent hit clients")
	f.DurationVar(&o.Interval, "interval", time.Second, "sampling interval of RSS, goroutines and fds")
	f.StringVar(&o.Binary, "outpost", "", "outpost `BINARY` to start (default: this one)")
	f.StringVar(&o.WorkDir, "work-dir", "", "keep the suite's data, config and logs in `DIR` (default: a temporary directory, removed when the run passes)")
	out.add(cmd)
	return cmd
}

// soakOutput prints the result (text or JSON) and writes the HTML report.
func soakOutput(cmd *cobra.Command, res *SoakResult, out outputFlags) error {
	w := cmd.OutOrStdout()
	if out.json {
		if err := writeJSON(w, res); err != nil {
			return err
		}
	} else if err := WriteSoak(w, res); err != nil {
		return err
	}
	if out.report == "" {
		return nil
	}
	rep := newReport(cmd, "Outpost soak")
	if err := soakReport(rep, res); err != nil {
		return err
	}
	return rep.WriteFile(out.report)
}

// WriteSoak writes a human-readable summary of a soak.
func WriteSoak(w io.Writer, res *SoakResult) error {
	verdict := "PASS"
	if !res.Pass {
		verdict = "FAIL: " + strings.Join(res.Failures, "; ")
	}
	fmt.Fprintf(w, "soak %v (+%v warm-up): %s\n\n", res.Duration, res.Warmup, verdict)
	if err := writeTable(w, soakVerdictTable(res)); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := writeTable(w, soakKindTable(res)); err != nil {
		return err
	}
	if len(res.Leaks) > 0 {
		fmt.Fprintln(w, "\nthe idle suite holds beyond its baseline:")
		for _, l := range res.Leaks {
			fmt.Fprintln(w, "  "+l)
		}
	}
	if len(res.Samples) > 0 {
		fmt.Fprintln(w, "\nunexpected errors (first ones):")
		for _, s := range res.Samples {
			fmt.Fprintf(w, "  %7.1fs %s %s: %s\n", s.Time.Seconds(), s.Kind, s.Class, s.Detail)
		}
	}
	return nil
}

func soakVerdictTable(res *SoakResult) *Table {
	t := &Table{Header: []string{"check", "value", "limit"}}
	add := func(k, v, l string) { t.Rows = append(t.Rows, []string{k, v, l}) }
	add("unexpected errors", fmt.Sprint(res.UnexpectedErrors), "0")
	add("expected errors (in fault windows)", fmt.Sprint(res.ExpectedErrors), "-")
	add("RSS after warm-up → end", fmt.Sprintf("%s → %s (%+.1f%%)", humanBytes(float64(res.RSSAfterWarmup)), humanBytes(float64(res.RSSAtEnd)), res.RSSGrowthPct), fmt.Sprintf("≤ +%.0f%%", maxRSSGrowthPct))
	add("goroutines baseline → end", fmt.Sprintf("%d → %d (%+d)", res.Baseline.Goroutines, res.End.Goroutines, res.GoroutinesDelta), "≤ baseline")
	add("fds baseline → end", fmt.Sprintf("%d → %d (%+d)", res.Baseline.FDs, res.End.FDs, res.FDsDelta), "≤ baseline")
	add("mails accepted / lost / duplicated", fmt.Sprintf("%d / %d / %d", res.Mail.Accepted, res.LostMails, res.DuplicatedMails), "lost 0, duplicated 0")
	add("stored bodies checked / corrupt", fmt.Sprintf("%d / %d", res.CheckedBodies, res.CorruptBodies), "corrupt 0")
	return t
}

func soakKindTable(res *SoakResult) *Table {
	t := &Table{Header: []string{"kind", "ok", "expected errors", "unexpected errors", "p50", "p99", "max"}}
	for _, k := range res.Kinds {
		l := k.Latency
		t.Rows = append(t.Rows, []string{string(k.Kind), fmt.Sprint(k.OK), fmt.Sprint(k.Expected), fmt.Sprint(k.Unexpected),
			roundDur(l.P50), roundDur(l.P99), roundDur(l.Max)})
	}
	return t
}

func roundDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}

func errorTable(es []ErrorCount) *Table {
	t := &Table{Header: []string{"kind", "class", "count"}}
	for _, e := range es {
		t.Rows = append(t.Rows, []string{string(e.Kind), e.Class, fmt.Sprint(e.Count)})
	}
	return t
}

// soakReport adds the soak's tables and charts to rep.
func soakReport(rep *Report, res *SoakResult) error {
	verdict := "Passed every check."
	if !res.Pass {
		verdict = "Failed: " + strings.Join(res.Failures, "; ") + "."
	}
	rep.AddTable("Verdict", verdict+" RSS is the median over the first and the last tenth of the main phase (same clean load); goroutines and fds are the idle suite after the warm-up and after the run.", soakVerdictTable(res))
	rep.AddTable("Traffic by kind", "Latency of the successful operations over the whole run (warm-up included).", soakKindTable(res))
	ft := &Table{Header: []string{"fault", "start", "end", "expected errors"}}
	for _, f := range res.Faults {
		ft.Rows = append(ft.Rows, []string{f.Name, fmt.Sprintf("%.1fs", f.Start.Seconds()), fmt.Sprintf("%.1fs", f.End.Seconds()), fmt.Sprint(f.Expected)})
	}
	rep.AddTable("Faults injected", "Origin faults excuse 502, 503, 504, cut bodies, resets and timeouts of the fault route only, until 4 s after the window; an edge restart excuses DNS answers naming the stopped edge for the health checks' detection time; a SIGHUP reload excuses nothing.", ft)
	rep.AddTable("Expected errors", "", errorTable(res.Expected))
	rep.AddTable("Unexpected errors", "", errorTable(res.Unexpected))
	if len(res.Samples) > 0 {
		st := &Table{Header: []string{"t", "kind", "class", "detail"}}
		for _, s := range res.Samples {
			st.Rows = append(st.Rows, []string{fmt.Sprintf("%.1fs", s.Time.Seconds()), string(s.Kind), s.Class, s.Detail})
		}
		rep.AddTable("Unexpected errors, first ones", "", st)
	}
	if len(res.Leaks) > 0 {
		lt := &Table{Header: []string{"beyond the baseline"}}
		for _, l := range res.Leaks {
			lt.Rows = append(lt.Rows, []string{l})
		}
		rep.AddTable("What the idle suite holds beyond its baseline", "Goroutines grouped by stack (innermost first) and open fds (TCP sockets by address).", lt)
	}
	for _, q := range []struct {
		name string
		p99  bool
	}{{"p50", false}, {"p99", true}} {
		p, err := soakLatencyPlot(res, q.name, q.p99)
		if err != nil {
			return err
		}
		if err := rep.AddChart("Latency "+q.name+" per kind over time", p); err != nil {
			return err
		}
	}
	p, err := soakProcPlot(res, "RSS and Go heap in use (MiB)", func(s ProcSample) []float64 {
		return []float64{float64(s.RSS) / (1 << 20), float64(s.HeapInuse) / (1 << 20)}
	}, "RSS", "heap in use")
	if err != nil {
		return err
	}
	if err := rep.AddChart("Suite memory over time", p); err != nil {
		return err
	}
	p, err = soakProcPlot(res, "goroutines, fds and threads", func(s ProcSample) []float64 {
		return []float64{float64(s.Goroutines), float64(s.FDs), float64(s.Threads)}
	}, "goroutines", "fds", "threads")
	if err != nil {
		return err
	}
	if err := rep.AddChart("Suite goroutines, fds and threads over time", p); err != nil {
		return err
	}
	p, err = soakProcPlot(res, "suite CPU (cores), machine load average, /metrics answer (s)", func(s ProcSample) []float64 {
		return []float64{s.cpuRate, s.Load1, s.Scrape.Seconds()}
	}, "suite CPU (cores)", "load average (1 min)", "admin /metrics answer (s)")
	if err != nil {
		return err
	}
	return rep.AddChart("Suite CPU and machine load over time", p)
}

// soakLatencyPlot draws p50 or p99 per kind over time on a log axis, with the main phase's
// bounds marked.
func soakLatencyPlot(res *SoakResult, title string, p99 bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = "Latency "+title+" per kind", "time (s)", "ms (log)"
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	top := 0.01
	for i, k := range soakKinds {
		pts := res.Latency[k]
		if len(pts) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(pts))
		for j, pt := range pts {
			v := pt.P50
			if p99 {
				v = pt.P99
			}
			xys[j].X, xys[j].Y = pt.T.Seconds(), max(float64(v)/1e6, 0.01)
			top = max(top, xys[j].Y)
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", k, err)
		}
		l.Color, l.Width = plotutil.Color(i), vg.Points(1.2)
		if i >= 7 {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(l)
		p.Legend.Add(string(k), l)
	}
	return p, markFaults(p, res, 0.01, top)
}

// markFaults draws a grey dotted line from lo to hi at the start of each fault and of the
// main phase's bounds.
func markFaults(p *plot.Plot, res *SoakResult, lo, hi float64) error {
	at := []float64{res.MainStart.Seconds(), res.MainEnd.Seconds()}
	for _, f := range res.Faults {
		at = append(at, f.Start.Seconds())
	}
	for i, x := range at {
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}})
		if err != nil {
			return err
		}
		l.Color, l.Width = color.Gray{Y: 150}, vg.Points(0.8)
		l.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		if i < 2 {
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		}
		p.Add(l)
		switch i {
		case 0:
			p.Legend.Add("main phase", l)
		case 2:
			p.Legend.Add("fault start", l)
		}
	}
	return nil
}

// maxChartPoints bounds the points of one line of a resource chart.
const maxChartPoints = 300

// soakProcPlot draws values of the suite's samples over time, one line per name.
func soakProcPlot(res *SoakResult, title string, vals func(ProcSample) []float64, names ...string) (*plot.Plot, error) {
	var ss []series
	step := max(1, len(res.Proc)/maxChartPoints) // keeps the report small for long runs
	for i, n := range names {
		s := series{name: n, line: true, color: i}
		for j := 0; j < len(res.Proc); j += step {
			smp := res.Proc[j]
			if j >= step {
				prev := res.Proc[j-step]
				if dt := (smp.T - prev.T).Seconds(); dt > 0 {
					smp.cpuRate = (smp.CPU - prev.CPU) / dt
				}
			}
			s.xs = append(s.xs, smp.T.Seconds())
			s.ys = append(s.ys, vals(smp)[i])
		}
		ss = append(ss, s)
	}
	ss = slices.DeleteFunc(ss, func(s series) bool { return len(s.xs) == 0 })
	p, err := linePlot(title, "time (s)", "", false, ss)
	if err != nil {
		return nil, err
	}
	top := 1.0
	for _, s := range ss {
		for _, y := range s.ys {
			top = max(top, y)
		}
	}
	return p, markFaults(p, res, 0, top)
}
