package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// This file turns a comparison's cells into its summary (medians over rounds and ratios to the
// best peer), checks issue 11's targets, and writes the tables as markdown.

// Ratios are a server's values over the baseline's in the same round (the best peer's; for
// forward, Outpost's reverse hit1k), median over the rounds used. NaN when there is none.
type Ratios struct {
	RequestsPerSec Metric `json:"requests_per_sec"`
	RequestsPerCPU Metric `json:"requests_per_cpu_s"`
	P50            Metric `json:"p50"`
	P99            Metric `json:"p99"`
}

// Metric is a ratio or measured value that may be missing: NaN, which JSON encodes as null.
type Metric float64

// MarshalJSON encodes NaN and ±Inf as null (encoding/json refuses them).
func (m Metric) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(m)) || math.IsInf(float64(m), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(m))
}

// UnmarshalJSON decodes null as NaN.
func (m *Metric) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*m = Metric(math.NaN())
		return nil
	}
	return json.Unmarshal(b, (*float64)(m))
}

// ratiosOf is the medians of four series of per-round ratios.
func ratiosOf(rr [4][]float64) Ratios {
	return Ratios{Metric(median(rr[0])), Metric(median(rr[1])), Metric(median(rr[2])), Metric(median(rr[3]))}
}

// ServerSummary is one server in one scenario: medians over the rounds used.
type ServerSummary struct {
	Server         string        `json:"server"`
	RequestsPerSec float64       `json:"requests_per_sec"`
	BytesPerSec    float64       `json:"bytes_per_sec"`
	RequestsPerCPU float64       `json:"requests_per_cpu_s"`
	P50            time.Duration `json:"p50_ns"`
	P99            time.Duration `json:"p99_ns"`
	Ratio          Ratios        `json:"ratio"`
	// OriginPerRequest is the share of requests that reached the origin (hits: ~0, misses: 1).
	OriginPerRequest float64 `json:"origin_per_request"`
	Errors           int64   `json:"errors"`
	// AddedP50 is the p50 minus the direct-to-origin p50 of the same round (misslat only).
	AddedP50 time.Duration `json:"added_p50_ns,omitempty"`
	// VsBaseline is Outpost over its baseline binary, per round, median (with --baseline).
	VsBaseline *Ratios `json:"vs_baseline,omitempty"`
}

// ScenarioSummary is one scenario over all rounds.
type ScenarioSummary struct {
	Scenario string `json:"scenario"`
	Title    string `json:"title"`
	// Baseline names what the ratios divide by: "best peer" or "outpost reverse (hit1k)".
	Baseline string `json:"baseline"`
	// BestPeer is the peer with the most requests/s (median), BestPeerCPU the most per CPU-second,
	// BestPeerP99 the lowest p99.
	BestPeer    string `json:"best_peer,omitempty"`
	BestPeerCPU string `json:"best_peer_cpu,omitempty"`
	BestPeerP99 string `json:"best_peer_p99,omitempty"`
	// Disturbed are the rounds with a disturbed cell; Used the rounds the medians are over
	// (the undisturbed ones, or all when every round was disturbed: AllDisturbed).
	Disturbed    []int           `json:"disturbed_rounds"`
	Used         []int           `json:"used_rounds"`
	AllDisturbed bool            `json:"all_disturbed"`
	Rows         []ServerSummary `json:"rows"`
}

// Row returns the summary of one server (nil when it was not measured).
func (s *ScenarioSummary) Row(server string) *ServerSummary {
	for i := range s.Rows {
		if s.Rows[i].Server == server {
			return &s.Rows[i]
		}
	}
	return nil
}

// cellIndex finds cells by scenario, server and round.
type cellIndex map[[2]string]map[int]*Cell

func indexCells(cells []Cell) cellIndex {
	ix := cellIndex{}
	for i := range cells {
		c := &cells[i]
		k := [2]string{c.Scenario, c.Server}
		if ix[k] == nil {
			ix[k] = map[int]*Cell{}
		}
		ix[k][c.Round] = c
	}
	return ix
}

func (ix cellIndex) get(scenario, server string, round int) *Cell {
	return ix[[2]string{scenario, server}][round]
}

// Summarise computes every scenario's summary from the cells.
func Summarise(cells []Cell, scenarios []string) []ScenarioSummary {
	ix := indexCells(cells)
	var out []ScenarioSummary
	for _, name := range scenarios {
		if s, ok := summarise(ix, cells, scenarioByName(name)); ok {
			out = append(out, s)
		}
	}
	return out
}

// summarise is one scenario: which rounds count, the medians, then the ratios per round.
func summarise(ix cellIndex, cells []Cell, sc Scenario) (ScenarioSummary, bool) {
	s := ScenarioSummary{Scenario: sc.Name, Title: sc.Title, Baseline: "best peer"}
	var servers []string
	rounds := map[int]bool{}
	for _, c := range cells {
		if c.Scenario != sc.Name {
			continue
		}
		if !slices.Contains(servers, c.Server) {
			servers = append(servers, c.Server)
		}
		rounds[c.Round] = true
		if c.Outside.Disturbed || sc.Forward && disturbedCell(ix.get("hit1k", c.Server, c.Round)) {
			if !slices.Contains(s.Disturbed, c.Round) {
				s.Disturbed = append(s.Disturbed, c.Round)
			}
		}
	}
	if len(servers) == 0 {
		return s, false
	}
	slices.SortFunc(servers, func(a, b string) int { return serverOrder(a) - serverOrder(b) })
	for r := range rounds {
		if !slices.Contains(s.Disturbed, r) {
			s.Used = append(s.Used, r)
		}
	}
	slices.Sort(s.Disturbed)
	if len(s.Used) == 0 {
		s.AllDisturbed = true
		for r := range rounds {
			s.Used = append(s.Used, r)
		}
	}
	slices.Sort(s.Used)
	for _, srv := range servers {
		s.Rows = append(s.Rows, medianRow(ix, sc.Name, srv, s.Used))
	}
	s.pickBestPeers()
	for i := range s.Rows {
		s.Rows[i].Ratio = ratios(ix, sc, s.Rows[i].Server, s.Used)
		if sc.Direct && s.Rows[i].Server != "origin" {
			s.Rows[i].AddedP50 = medianDuration(perRound(s.Used, func(r int) (float64, bool) {
				c, o := ix.get(sc.Name, s.Rows[i].Server, r), ix.get(sc.Name, "origin", r)
				if c == nil || o == nil {
					return 0, false
				}
				return float64(c.P50 - o.P50), true
			}))
		}
	}
	if sc.Forward {
		s.Baseline = "outpost reverse (hit1k)"
	}
	if o := s.Row("outpost"); o != nil && s.Row("baseline") != nil {
		vs := vsBaseline(ix, sc.Name, s.Used)
		o.VsBaseline = &vs
	}
	return s, true
}

// vsBaseline is Outpost's values over its baseline binary's in the same round, median over the
// rounds.
func vsBaseline(ix cellIndex, scenario string, rounds []int) Ratios {
	var rr [4][]float64
	for _, r := range rounds {
		c, b := ix.get(scenario, "outpost", r), ix.get(scenario, "baseline", r)
		if c == nil || b == nil {
			continue
		}
		mine := [4]float64{c.RequestsPerSec, c.RequestsPerCPU, float64(c.P50), float64(c.P99)}
		base := [4]float64{b.RequestsPerSec, b.RequestsPerCPU, float64(b.P50), float64(b.P99)}
		for i := range rr {
			if base[i] > 0 && mine[i] > 0 {
				rr[i] = append(rr[i], mine[i]/base[i])
			}
		}
	}
	return ratiosOf(rr)
}

func disturbedCell(c *Cell) bool { return c != nil && c.Outside.Disturbed }

// serverOrder sorts Outpost first, then its baseline, the peers in table order, the origin.
func serverOrder(s string) int {
	if i := slices.Index(serverOrderList, s); i >= 0 {
		return i
	}
	return len(serverOrderList)
}

func isPeer(s string) bool { return slices.Contains(Peers, s) }

// medianRow is a server's medians over the rounds.
func medianRow(ix cellIndex, scenario, server string, rounds []int) ServerSummary {
	row := ServerSummary{Server: server}
	var rps, bps, cpu, p50, p99, origin []float64
	for _, r := range rounds {
		c := ix.get(scenario, server, r)
		if c == nil {
			continue
		}
		rps, bps, cpu = append(rps, c.RequestsPerSec), append(bps, c.BytesPerSec), append(cpu, c.RequestsPerCPU)
		if c.P50 > 0 && c.P99 > 0 { // 0: wrk found no percentile
			p50, p99 = append(p50, float64(c.P50)), append(p99, float64(c.P99))
		}
		if c.Requests > 0 {
			origin = append(origin, float64(c.OriginRequests)/float64(c.Requests))
		}
		row.Errors += c.Errors
	}
	row.RequestsPerSec, row.BytesPerSec, row.RequestsPerCPU = zeroNaN(median(rps)), zeroNaN(median(bps)), zeroNaN(median(cpu))
	row.P50, row.P99 = medianDuration(p50), medianDuration(p99)
	row.OriginPerRequest = zeroNaN(median(origin))
	return row
}

// pickBestPeers names the best peer by each measure (on the medians).
func (s *ScenarioSummary) pickBestPeers() {
	var rps, cpu float64
	var p99 time.Duration
	for _, r := range s.Rows {
		if !isPeer(r.Server) {
			continue
		}
		if s.BestPeer == "" || r.RequestsPerSec > rps {
			s.BestPeer, rps = r.Server, r.RequestsPerSec
		}
		if s.BestPeerCPU == "" || r.RequestsPerCPU > cpu {
			s.BestPeerCPU, cpu = r.Server, r.RequestsPerCPU
		}
		if r.P99 > 0 && (s.BestPeerP99 == "" || r.P99 < p99) {
			s.BestPeerP99, p99 = r.Server, r.P99
		}
	}
}

// ratios are a server's per-round ratios to the round's baseline, median over the rounds.
// The baseline of each measure is the best peer of that round by that measure (the highest
// rate, the lowest latency); for forward it is Outpost's own reverse hit1k cell.
func ratios(ix cellIndex, sc Scenario, server string, rounds []int) Ratios {
	var rr [4][]float64
	for _, r := range rounds {
		c := ix.get(sc.Name, server, r)
		if c == nil {
			continue
		}
		base := bestOfRound(ix, sc.Name, r)
		if sc.Forward {
			if h := ix.get("hit1k", server, r); h != nil {
				base = [4]float64{h.RequestsPerSec, h.RequestsPerCPU, float64(h.P50), float64(h.P99)}
			} else {
				base = [4]float64{}
			}
		}
		mine := [4]float64{c.RequestsPerSec, c.RequestsPerCPU, float64(c.P50), float64(c.P99)}
		for i := range rr {
			// A latency of 0 is wrk finding no percentile: unknown, not fast.
			if base[i] > 0 && (i < 2 || mine[i] > 0) {
				rr[i] = append(rr[i], mine[i]/base[i])
			}
		}
	}
	return ratiosOf(rr)
}

// bestOfRound is the best peer value of each measure in one round: max req/s, max req/CPU-s,
// min p50, min p99 (0 when no peer ran).
func bestOfRound(ix cellIndex, scenario string, round int) [4]float64 {
	var b [4]float64
	for _, p := range Peers {
		c := ix.get(scenario, p, round)
		if c == nil {
			continue
		}
		v := [4]float64{c.RequestsPerSec, c.RequestsPerCPU, float64(c.P50), float64(c.P99)}
		for i := range 2 {
			b[i] = max(b[i], v[i])
		}
		for i := 2; i < 4; i++ {
			if b[i] == 0 || (v[i] > 0 && v[i] < b[i]) {
				b[i] = v[i]
			}
		}
	}
	return b
}

// perRound collects f over the rounds where it has a value.
func perRound(rounds []int, f func(r int) (float64, bool)) []float64 {
	var out []float64
	for _, r := range rounds {
		if v, ok := f(r); ok {
			out = append(out, v)
		}
	}
	return out
}

// median of the values (NaN for none; the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// zeroNaN is v, or 0 for NaN (a rate with no cell to measure it).
func zeroNaN(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

// medianDuration is the median of nanosecond values as a duration (none: 0).
func medianDuration(v []float64) time.Duration {
	m := median(v)
	if math.IsNaN(m) {
		return 0
	}
	return time.Duration(m)
}

// TargetCheck is one of issue 11's targets against the run.
type TargetCheck struct {
	Target   string `json:"target"`
	Want     string `json:"want"`
	Measured string `json:"measured"`
	Value    Metric `json:"value"`
	Met      bool   `json:"met"`
	// Note says when the value comes from disturbed rounds only.
	Note string `json:"note,omitempty"`
}

// CheckTargets compares the summary with the targets of issues 11 and 13 (ratios in one run,
// one server core each). Targets whose scenario did not run are left out.
func CheckTargets(sum []ScenarioSummary) []TargetCheck {
	var out []TargetCheck
	find := func(name string) *ScenarioSummary {
		for i := range sum {
			if sum[i].Scenario == name {
				return &sum[i]
			}
		}
		return nil
	}
	add := func(s *ScenarioSummary, target, want string, v Metric, met bool, measured string) {
		tc := TargetCheck{Target: target, Want: want, Value: v, Met: met && !math.IsNaN(float64(v)), Measured: measured}
		if s.AllDisturbed {
			tc.Note = "every round disturbed"
		}
		out = append(out, tc)
	}
	for _, t := range []struct {
		scenario string
		min      float64
	}{{"hit1k", 1.4}, {"pipe16", 3.0}, {"hit1m", 1.0}, {"miss", 1.0}, {"close", 1.0}} {
		s := find(t.scenario)
		if s == nil || s.Row("outpost") == nil || s.BestPeer == "" {
			continue
		}
		v := s.Row("outpost").Ratio.RequestsPerSec
		what := "req/s"
		if scenarioByName(t.scenario).Bytes {
			what = "bytes/s"
		}
		add(s, t.scenario+" "+what+" vs best peer", fmt.Sprintf("≥ %.1f", t.min), v, float64(v) >= t.min, fmtRatio(v)+" vs "+s.BestPeer)
	}
	if s := find("forward"); s != nil && s.Row("outpost") != nil {
		v := s.Row("outpost").Ratio.RequestsPerSec
		add(s, "forward vs reverse at hit1k", "≥ 0.95", v, v >= 0.95, fmtRatio(v))
	}
	if s := find("hit1k"); s != nil && s.Row("outpost") != nil && s.BestPeer != "" {
		v := s.Row("outpost").Ratio.P99
		add(s, "hit1k p99 vs best peer's p99", "≤ 1.5", v, v <= 1.5, fmtRatio(v)+" ("+fmtDur(s.Row("outpost").P99)+" vs "+s.BestPeerP99+")")
	}
	// Issue 13's TLS targets: Outpost over nginx (the TLS peer), ≥ 1.0. tlsnew is also judged
	// per server CPU-second: one load core doing full handshakes may saturate before a server.
	for _, t := range []struct {
		scenario, what string
		cpu            bool
	}{{"h2hit1k", "req/s", false}, {"tlsnew", "req/s", false}, {"tlsnew", "req/CPU-s", true}, {"tls1k", "req/s", false}} {
		s := find(t.scenario)
		if s == nil || s.Row("outpost") == nil || s.Row("nginx") == nil {
			continue
		}
		v := s.Row("outpost").Ratio.RequestsPerSec
		if t.cpu {
			v = s.Row("outpost").Ratio.RequestsPerCPU
		}
		add(s, t.scenario+" "+t.what+" vs nginx", "≥ 1.0", v, v >= 1.0, fmtRatio(v)+" vs nginx")
	}
	if s := find("misslat"); s != nil && s.Row("outpost") != nil && s.Row("origin") != nil {
		d := s.Row("outpost").AddedP50
		add(s, "miss p50 added over a direct origin fetch", "≤ 100µs", Metric(d), d <= 100*time.Microsecond, fmtDur(d))
	}
	return out
}

// CompareTables are the run's tables: the summary, the targets, each scenario and the rounds.
func CompareTables(res *CompareResult) (names []string, tables []*Table) {
	add := func(n string, t *Table) { names, tables = append(names, n), append(tables, t) }
	add("Summary (Outpost against the best peer; medians of per-round ratios)", summaryTable(res.Summary))
	if len(res.Targets) > 0 {
		add("Targets (issues 11 and 13)", targetTable(res.Targets))
	}
	for i := range res.Summary {
		s := &res.Summary[i]
		add(scenarioHeading(s), scenarioTable(s))
	}
	add("Rounds (req/s per cell; * = disturbed cell)", roundsTable(res))
	return names, tables
}

func scenarioHeading(s *ScenarioSummary) string {
	h := fmt.Sprintf("%s: %s (ratios to the %s", s.Scenario, s.Title, s.Baseline)
	if s.Baseline == "best peer" && s.BestPeer != "" {
		h += fmt.Sprintf(": %s by req/s, %s by req/CPU-s", s.BestPeer, s.BestPeerCPU)
		if s.BestPeerP99 != "" {
			h += ", " + s.BestPeerP99 + " by p99"
		}
	}
	h += "; " + roundsNote(s) + ")"
	return h
}

// roundsNote says which rounds the medians are over.
func roundsNote(s *ScenarioSummary) string {
	switch {
	case s.AllDisturbed:
		return fmt.Sprintf("every round disturbed: rounds %s used anyway", joinInts(s.Used))
	case len(s.Disturbed) > 0:
		return fmt.Sprintf("rounds %s, round %s disturbed and left out", joinInts(s.Used), joinInts(s.Disturbed))
	default:
		return fmt.Sprintf("rounds %s, none disturbed", joinInts(s.Used))
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

func summaryTable(sum []ScenarioSummary) *Table {
	t := &Table{Header: []string{"scenario", "best peer", "best peer rate", "outpost rate", "ratio", "by req/CPU-s", "p50 ratio", "p99 ratio", "rounds"}}
	withBaseline := slices.ContainsFunc(sum, func(s ScenarioSummary) bool { return s.Row("baseline") != nil })
	if withBaseline {
		t.Header = append(t.Header, "baseline rate", "outpost ÷ baseline", "÷ baseline by req/CPU-s", "p99 ÷ baseline")
	}
	for i := range sum {
		s := &sum[i]
		o := s.Row("outpost")
		if o == nil {
			continue
		}
		bytes := scenarioByName(s.Scenario).Bytes
		best, bestRate := s.BestPeer, "–"
		if s.Baseline != "best peer" {
			best = s.Baseline
		}
		if b := s.Row(s.BestPeer); b != nil && s.Baseline == "best peer" {
			bestRate = fmtRate(b, bytes)
		}
		if best == "" {
			best = "–"
		}
		row := []string{s.Scenario, best, bestRate, fmtRate(o, bytes), fmtRatio(o.Ratio.RequestsPerSec),
			fmtRatio(o.Ratio.RequestsPerCPU), fmtRatio(o.Ratio.P50), fmtRatio(o.Ratio.P99), roundsShort(s)}
		if withBaseline {
			row = append(row, "–", "–", "–", "–")
			if b, vs := s.Row("baseline"), o.VsBaseline; b != nil && vs != nil {
				row = append(row[:len(row)-4], fmtRate(b, bytes), fmtRatio(vs.RequestsPerSec), fmtRatio(vs.RequestsPerCPU), fmtRatio(vs.P99))
			}
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

func roundsShort(s *ScenarioSummary) string {
	switch {
	case s.AllDisturbed:
		return joinInts(s.Used) + " (all disturbed)"
	case len(s.Disturbed) > 0:
		return joinInts(s.Used) + " (" + joinInts(s.Disturbed) + " disturbed)"
	}
	return joinInts(s.Used)
}

func targetTable(ts []TargetCheck) *Table {
	t := &Table{Header: []string{"target", "want", "measured", "met"}}
	for _, c := range ts {
		met := "no"
		if c.Met {
			met = "yes"
		}
		if c.Note != "" {
			met += " (" + c.Note + ")"
		}
		t.Rows = append(t.Rows, []string{c.Target, c.Want, c.Measured, met})
	}
	return t
}

func scenarioTable(s *ScenarioSummary) *Table {
	direct := scenarioByName(s.Scenario).Direct
	t := &Table{Header: []string{"server", "req/s", "bytes/s", "req/CPU-s", "p50", "p99", "req/s ratio", "req/CPU-s ratio", "p50 ratio", "p99 ratio", "origin req per req", "errors"}}
	if direct {
		t.Header = append(t.Header, "p50 − direct")
	}
	for _, r := range s.Rows {
		row := []string{serverSpecs[r.Server].label, fmtCount(r.RequestsPerSec), humanBytes(r.BytesPerSec) + "/s", fmtCount(r.RequestsPerCPU),
			fmtLatency(r.P50), fmtLatency(r.P99), fmtRatio(r.Ratio.RequestsPerSec), fmtRatio(r.Ratio.RequestsPerCPU),
			fmtRatio(r.Ratio.P50), fmtRatio(r.Ratio.P99), fmt.Sprintf("%.3f", r.OriginPerRequest), fmt.Sprint(r.Errors)}
		if direct {
			added := "–"
			if r.Server != "origin" {
				added = fmtDur(r.AddedP50)
			}
			row = append(row, added)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// roundsTable has a row per round and scenario: each server's req/s (* when its cell was
// disturbed), the largest outside load and who caused it.
func roundsTable(res *CompareResult) *Table {
	servers := append(slices.Clone(res.Options.Servers), "origin")
	ix := indexCells(res.Cells)
	t := &Table{Header: []string{"round", "scenario"}}
	for _, s := range servers {
		t.Header = append(t.Header, serverSpecs[s].label)
	}
	t.Header = append(t.Header, "outside load (cores, max)", "load avg", "busiest outside")
	for round := 1; round <= res.Options.Rounds; round++ {
		for _, sc := range res.Options.Scenarios {
			row := []string{fmt.Sprint(round), sc}
			var worst *Cell
			any := false
			for _, s := range servers {
				c := ix.get(sc, s, round)
				if c == nil {
					row = append(row, "")
					continue
				}
				any = true
				v := fmtCount(c.RequestsPerSec)
				if c.Outside.Disturbed {
					v += "*"
				}
				row = append(row, v)
				if worst == nil || c.Outside.OutsideCores > worst.Outside.OutsideCores {
					worst = c
				}
			}
			if !any {
				continue
			}
			var top []string
			for _, o := range worst.Outside.Top {
				top = append(top, fmt.Sprintf("%s %.2f", o.Comm, o.Cores))
			}
			row = append(row, fmt.Sprintf("%.2f", worst.Outside.OutsideCores), fmt.Sprintf("%.1f", worst.Outside.Load1), strings.Join(top, ", "))
			t.Rows = append(t.Rows, row)
		}
	}
	// Drop the origin column when no scenario measured it directly.
	if !slices.ContainsFunc(res.Cells, func(c Cell) bool { return c.Server == "origin" }) {
		col := 2 + len(servers) - 1
		t.Header = slices.Delete(t.Header, col, col+1)
		for i := range t.Rows {
			t.Rows[i] = slices.Delete(t.Rows[i], col, col+1)
		}
	}
	return t
}

func fmtRate(r *ServerSummary, bytes bool) string {
	if bytes {
		return humanBytes(r.BytesPerSec) + "/s"
	}
	return fmtCount(r.RequestsPerSec) + "/s"
}

// fmtCount formats a rate: 82.0k, 950.
func fmtCount(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func fmtRatio(m Metric) string {
	v := float64(m)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// fmtDur formats a latency in µs or ms with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDur(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	default:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
}

// fmtLatency is fmtDur with 0 (not measured) as a dash.
func fmtLatency(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmtDur(d)
}

// WriteMarkdownTable writes t as a markdown table, numbers right-aligned.
func WriteMarkdownTable(w io.Writer, t *Table) error {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.Header, " | ") + " |\n|")
	for i := range t.Header {
		if i == 0 {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCompare writes the run as markdown: a heading, the exact command, what was measured,
// then every table. It is what stdout shows and what is appended to RESULTS.md.
func WriteCompare(w io.Writer, res *CompareResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## outpost bench compare, %s\n\n", res.Date.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "    %s\n\n", res.Command)
	fmt.Fprintf(&b, "Outpost %s, commit %s. ", res.Outpost, res.Commit)
	if res.BaselineCommit != "" {
		fmt.Fprintf(&b, "Baseline Outpost (--baseline, measured alike in the same rounds): commit %s. ", res.BaselineCommit)
	}
	var vs []string
	for _, s := range append(slices.Clone(res.Options.Servers), "origin", "wrk", "h2load") {
		if v, ok := res.Versions[s]; ok {
			vs = append(vs, s+": "+v)
		}
	}
	fmt.Fprintf(&b, "Packages: %s. ", strings.Join(vs, "; "))
	facts := map[string]string{}
	for _, f := range res.Facts {
		facts[f.Name] = f.Value
	}
	o := res.Options
	fmt.Fprintf(&b, "Machine: %s CPUs (%s), kernel %s, load average %s at the start. ", facts["CPUs"], facts["CPU"], facts["kernel"], facts["load average"])
	fmt.Fprintf(&b, "Every server on CPU %d (one worker/thread pool, Outpost GOMAXPROCS=1, access logs off), wrk -t1 -c%d %v per cell and the nginx origin on CPU %d; %d rounds, servers rotated per round; a cell is disturbed when processes the run did not start used more than %.2f cores in its window (machine busy time from /proc/stat minus the run's own processes from /proc/PID/stat). Run took %v.\n\n",
		o.ServerCPU, o.Connections, o.Duration, o.LoadCPU, o.Rounds, o.Threshold, res.Elapsed.Round(time.Second))
	for _, sk := range res.Skipped {
		fmt.Fprintf(&b, "Skipped %s.\n\n", sk)
	}
	if slices.ContainsFunc(res.Cells, func(c Cell) bool { return scenarioByName(c.Scenario).TLS }) {
		fmt.Fprintf(&b, "TLS scenarios on the TLS listeners (the run's ECDSA P-256 certificate): h2hit1k with h2load -t1 -c%d -m10, tlsnew with outpost bench http -c%d --keepalive=false --tls13 --curves x25519 (a full handshake per request, no resumption), tls1k with wrk over https.\n\n", o.Connections, o.Connections)
	}
	names, tables := CompareTables(res)
	for i, t := range tables {
		fmt.Fprintf(&b, "%s:\n\n", names[i])
		if err := WriteMarkdownTable(&b, t); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// AppendCompare appends the run's markdown to file (RESULTS.md).
func AppendCompare(file string, res *CompareResult) error {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("append results: %w", err)
	}
	if _, err := f.WriteString("\n"); err == nil {
		err = WriteCompare(f, res)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append results to %s: %w", file, err)
	}
	return nil
}
