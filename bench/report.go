package bench

import (
	"bufio"
	"fmt"
	"html/template"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
)

// Report is one self-contained HTML page: the command line, the machine, tables and charts.
type Report struct {
	Title    string
	Command  string // the exact command line
	Version  string // Outpost's version
	Facts    []Fact
	Sections []Section
	Created  time.Time
}

// Fact is one line of machine description.
type Fact struct{ Name, Value string }

// Section is a heading with an optional table, chart and note.
type Section struct {
	Heading string
	Note    string
	Table   *Table
	SVG     template.HTML // an inline chart rendered by gonum/plot
}

// Table is a plain table of strings.
type Table struct {
	Header []string
	Rows   [][]string
}

// NewReport starts a report for a command line.
func NewReport(title string, args []string, version string) *Report {
	if version == "" {
		version = "outpost " + BuildVersion()
	}
	return &Report{Title: title, Command: shellQuote(args), Version: version, Facts: MachineFacts(), Created: time.Now().UTC()}
}

// AddChart appends a section with a rendered chart.
func (r *Report) AddChart(heading string, p *plot.Plot) error {
	svg, err := svgOf(p)
	if err != nil {
		return fmt.Errorf("render %s: %w", heading, err)
	}
	r.Sections = append(r.Sections, Section{Heading: heading, SVG: template.HTML(svg)})
	return nil
}

// AddTable appends a section with a table.
func (r *Report) AddTable(heading, note string, t *Table) {
	r.Sections = append(r.Sections, Section{Heading: heading, Note: note, Table: t})
}

// WriteFile writes the report's HTML to file.
func (r *Report) WriteFile(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := r.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteHTML writes the report as one HTML document with no external resources.
func (r *Report) WriteHTML(w io.Writer) error {
	if err := reportTmpl.Execute(w, r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

var reportTmpl = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
code,pre{font:13px ui-monospace,monospace;background:#f5f5f5;padding:.2rem .4rem;border-radius:3px}
pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;margin:.5rem 0} th,td{padding:.25rem .7rem;border-bottom:1px solid #e5e5e5;text-align:right}
th{background:#fafafa} td:first-child,th:first-child{text-align:left}
.facts td{text-align:left} svg{max-width:100%;height:auto}
</style></head><body>
<h1>{{.Title}}</h1>
<p>{{.Version}} · {{.Created.Format "2006-01-02 15:04:05 MST"}}</p>
<pre>{{.Command}}</pre>
{{range .Sections}}<h2>{{.Heading}}</h2>
{{if .Note}}<p>{{.Note}}</p>{{end}}
{{with .Table}}<table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
{{if .SVG}}<figure>{{.SVG}}</figure>{{end}}
{{end}}
<h2>Machine</h2>
<table class="facts">{{range .Facts}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>{{end}}</table>
</body></html>
`))

// BuildVersion returns the module version and VCS revision of the running binary.
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

// MachineFacts describes the machine a benchmark ran on.
func MachineFacts() []Fact {
	host, _ := os.Hostname()
	facts := []Fact{
		{"host", host},
		{"os/arch", runtime.GOOS + "/" + runtime.GOARCH},
		{"CPUs", fmt.Sprint(runtime.NumCPU())},
		{"GOMAXPROCS", fmt.Sprint(runtime.GOMAXPROCS(0))},
		{"Go", runtime.Version()},
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		facts = append(facts, Fact{"kernel", strings.TrimSpace(string(b))})
	}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		facts = append(facts, Fact{"CPU", v})
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		facts = append(facts, Fact{"memory", v})
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		facts = append(facts, Fact{"load average", strings.Join(strings.Fields(string(b))[:3], " ")})
	}
	return facts
}

// procField returns the value of the first "name : value" line of a /proc file.
func procField(file, name string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// shellQuote joins args into a command line a shell would read back the same.
func shellQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ':' || r == '=' || r == ',' ||
				r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// ScoreTable returns scorecard rows as a report table.
func ScoreTable(scs []*Scorecard) *Table {
	stat := "median"
	if len(scs) > 0 {
		stat = statName(scs[0].Options.Stat)
	}
	t := &Table{Header: []string{"strategy", "n", "RTT", "measured (" + stat + ")", "model", "formula", "measured/model"}}
	for _, sc := range scs {
		for _, r := range sc.Rows {
			t.Rows = append(t.Rows, []string{r.Strategy, fmt.Sprint(r.N), r.RTT.String(),
				r.Measured.Round(100 * time.Microsecond).String(), r.Model.Round(100 * time.Microsecond).String(),
				r.Formula, fmt.Sprintf("%.2f", r.Ratio)})
		}
	}
	return t
}

// LoadTable returns a load result as a report table.
func LoadTable(r *LoadResult) *Table {
	l := r.Latency
	t := &Table{Header: []string{"measure", "value"}}
	add := func(k, v string) { t.Rows = append(t.Rows, []string{k, v}) }
	add("requests", fmt.Sprint(r.Requests))
	if r.Protocol != "" {
		conc := fmt.Sprintf("%d connections", r.Connections)
		if r.Streams > 0 {
			conc += fmt.Sprintf(" × %d streams", r.Streams)
		}
		add("protocol", r.Protocol+", "+conc)
	}
	if r.Handshakes > 0 {
		add("TLS", fmt.Sprintf("%s, %d handshakes, %d resumed", r.TLSVersion, r.Handshakes, r.Resumed))
	}
	add("elapsed", r.Elapsed.Round(time.Millisecond).String())
	add("requests/s", fmt.Sprintf("%.1f", r.RequestsPerSec))
	add("bytes/s", humanBytes(r.BytesPerSec))
	add("latency p50 / p90 / p99 / p99.9 / max", fmt.Sprintf("%v / %v / %v / %v / %v", l.P50, l.P90, l.P99, l.P999, l.Max))
	if r.CacheHits+r.CacheMisses > 0 {
		add("cache hit ratio / byte hit ratio", fmt.Sprintf("%.3f / %.3f", r.HitRatio, r.ByteHitRatio))
	}
	add("status", formatCounts(r.Status))
	add("errors", formatCounts(r.Errors))
	return t
}

// LatencyPlot charts the latency percentiles of a run.
func LatencyPlot(title string, l Latency) (*plot.Plot, error) {
	names := []string{"p50", "p90", "p99", "p99.9", "max"}
	vals := []float64{ms(float64(l.P50)), ms(float64(l.P90)), ms(float64(l.P99)), ms(float64(l.P999)), ms(float64(l.Max))}
	return barPlot(title, "latency (ms)", names, []barGroup{{"latency", vals, 0}})
}

// writeTable writes a table as aligned text.
func writeTable(w io.Writer, t *Table) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.Header, "\t"))
	for _, r := range t.Rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
