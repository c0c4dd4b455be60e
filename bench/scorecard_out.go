package bench

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
)

// Sweep is a parsed --sweep: the parameter ("n" or "rtt") and its values.
type Sweep struct {
	Param string
	Ns    []int
	RTTs  []time.Duration
}

// maxSweepPoints bounds a sweep.
const maxSweepPoints = 32

// ParseSweep parses "n=1..64" (doubling from 1 to 64), "n=1,4,16", "rtt=10ms..80ms" or
// "rtt=10ms,50ms".
func ParseSweep(spec string) (*Sweep, error) {
	param, vals, ok := strings.Cut(spec, "=")
	if !ok || (param != "n" && param != "rtt") {
		return nil, usagef("--sweep %q: want n=A..B, n=a,b,c, rtt=A..B or rtt=a,b,c", spec)
	}
	var items []string
	if lo, hi, ok := strings.Cut(vals, ".."); ok {
		items = []string{lo, hi}
	} else {
		items = strings.Split(vals, ",")
	}
	s := &Sweep{Param: param}
	for _, it := range items {
		if param == "n" {
			v, err := strconv.Atoi(strings.TrimSpace(it))
			if err != nil || v <= 0 {
				return nil, usagef("--sweep %q: %q is not a positive count", spec, it)
			}
			s.Ns = append(s.Ns, v)
		} else {
			v, err := time.ParseDuration(strings.TrimSpace(it))
			if err != nil || v <= 0 {
				return nil, usagef("--sweep %q: %q is not a positive duration", spec, it)
			}
			s.RTTs = append(s.RTTs, v)
		}
	}
	if strings.Contains(vals, "..") {
		s.double()
	}
	if n := len(s.Ns) + len(s.RTTs); n == 0 || n > maxSweepPoints {
		return nil, usagef("--sweep %q: want 1..%d points", spec, maxSweepPoints)
	}
	return s, nil
}

// double expands a two-value range into a doubling sequence that ends at the upper bound.
func (s *Sweep) double() {
	if len(s.Ns) == 2 {
		lo, hi := s.Ns[0], s.Ns[1]
		s.Ns = nil
		for v := lo; v < hi && len(s.Ns) < maxSweepPoints; v *= 2 {
			s.Ns = append(s.Ns, v)
		}
		s.Ns = append(s.Ns, hi)
	}
	if len(s.RTTs) == 2 {
		lo, hi := s.RTTs[0], s.RTTs[1]
		s.RTTs = nil
		for v := lo; v < hi && len(s.RTTs) < maxSweepPoints; v *= 2 {
			s.RTTs = append(s.RTTs, v)
		}
		s.RTTs = append(s.RTTs, hi)
	}
}

// RunScorecards runs one scorecard, or one per sweep point when sweep is not nil.
func RunScorecards(ctx context.Context, o ScorecardOptions, sweep *Sweep) ([]*Scorecard, error) {
	if sweep == nil {
		sc, err := RunScorecard(ctx, o)
		if err != nil {
			return nil, err
		}
		return []*Scorecard{sc}, nil
	}
	var out []*Scorecard
	for _, n := range sweep.Ns {
		p := o
		p.N = n
		sc, err := RunScorecard(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("n=%d: %w", n, err)
		}
		out = append(out, sc)
	}
	for _, rtt := range sweep.RTTs {
		p := o
		if p.OriginRTT == p.RTT {
			p.OriginRTT = rtt
		}
		p.RTT = rtt
		sc, err := RunScorecard(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("rtt=%v: %w", rtt, err)
		}
		out = append(out, sc)
	}
	return out, nil
}

// WriteScoreTable writes the rows as an aligned table.
func WriteScoreTable(w io.Writer, scs []*Scorecard) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cache := scs[0].Options.Target == "proxy"
	head := "strategy\tn\tRTT\tmeasured (" + statName(scs[0].Options.Stat) + ")\tmodel\tformula\tmeasured/model\t"
	if cache {
		head += "cache hits/misses\t"
	}
	fmt.Fprintln(tw, head)
	for _, sc := range scs {
		for _, r := range sc.Rows {
			fmt.Fprintf(tw, "%s\t%d\t%v\t%v\t%v\t%s\t%.2f\t", r.Strategy, r.N, r.RTT,
				r.Measured.Round(100*time.Microsecond), r.Model.Round(100*time.Microsecond), r.Formula, r.Ratio)
			if cache {
				fmt.Fprintf(tw, "%d/%d\t", r.CacheHits, r.CacheMisses)
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

// WriteScoreCSV writes the rows as CSV with times in milliseconds.
func WriteScoreCSV(w io.Writer, scs []*Scorecard) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"strategy", "n", "rtt_ms", "measured_ms", "model_ms", "formula", "ratio", "runs_ms"})
	for _, sc := range scs {
		for _, r := range sc.Rows {
			runs := make([]string, len(r.Runs))
			for i, d := range r.Runs {
				runs[i] = strconv.FormatFloat(ms(float64(d)), 'f', -1, 64)
			}
			cw.Write([]string{r.Strategy, strconv.Itoa(r.N), fmtMS(r.RTT), fmtMS(r.Measured), fmtMS(r.Model),
				r.Formula, strconv.FormatFloat(r.Ratio, 'f', 3, 64), strings.Join(runs, " ")})
		}
	}
	cw.Flush()
	return cw.Error()
}

func fmtMS(d time.Duration) string { return strconv.FormatFloat(ms(float64(d)), 'f', -1, 64) }

// ScorePlot charts scorecards: measured and model bars per strategy for one point, or time
// against n or RTT for a sweep, the model as dashed lines and the measurements as points.
func ScorePlot(scs []*Scorecard, sweep *Sweep) (*plot.Plot, error) {
	if len(scs) == 0 {
		return nil, fmt.Errorf("nothing to plot")
	}
	o := scs[0].Options
	if sweep == nil {
		var names []string
		var meas, mod []float64
		for _, r := range scs[0].Rows {
			names = append(names, r.Strategy)
			meas = append(meas, ms(float64(r.Measured)))
			mod = append(mod, ms(float64(r.Model)))
		}
		title := fmt.Sprintf("Page load, n=%d objects, RTT %v, target %s", o.N, o.RTT, o.Target)
		return barPlot(title, "time (ms)", names, []barGroup{{"measured (" + statName(o.Stat) + ")", meas, 0}, {"textbook model", mod, 1}})
	}
	var ss []series
	for i, r := range scs[0].Rows {
		m := series{name: r.Strategy + " model", line: true, dashed: true, color: i}
		p := series{name: r.Strategy + " measured", points: true, color: i}
		for _, sc := range scs {
			row := sc.Rows[i]
			x := float64(row.N)
			if sweep.Param == "rtt" {
				x = ms(float64(row.RTT))
			}
			m.xs, m.ys = append(m.xs, x), append(m.ys, ms(float64(row.Model)))
			p.xs, p.ys = append(p.xs, x), append(p.ys, ms(float64(row.Measured)))
		}
		ss = append(ss, m, p)
	}
	xl := "n (embedded objects)"
	title := fmt.Sprintf("Page load time vs n, RTT %v, target %s", o.RTT, o.Target)
	if sweep.Param == "rtt" {
		xl = "RTT (ms)"
		title = fmt.Sprintf("Page load time vs RTT, n=%d, target %s", o.N, o.Target)
	}
	title += fmt.Sprintf(" (%s of %d runs)", statName(o.Stat), o.Repeat)
	return linePlot(title, xl, "time (ms)", false, ss)
}

// statName names the summary statistic of the runs.
func statName(s string) string {
	if s == "min" {
		return "fastest"
	}
	return "median"
}
