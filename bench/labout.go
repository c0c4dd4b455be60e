package bench

import (
	"fmt"
	"html"
	"html/template"
	"strings"
)

// LabRegionTable is the per-region result: steering, page times against the model, tiers.
func LabRegionTable(res *LabResult) *Table {
	t := &Table{Header: []string{"region", "edge expected", "edge answered", "cold ms", "model cold (measured links)", "warm ms",
		"model warm (measured links)", "warm/model", "origin requests", "cold hits edge/parent/miss", "warm hits edge/parent/miss"}}
	for _, r := range res.Regions {
		t.Rows = append(t.Rows, []string{r.Name, r.EdgeExpected, r.EdgeAnswered, fmt.Sprint(r.ColdMS),
			fmt.Sprintf("%g (%g)", r.ModelColdMS, r.ModelColdLinksMS), fmt.Sprint(r.WarmMS),
			fmt.Sprintf("%g (%g)", r.ModelWarmMS, r.ModelWarmLinksMS), fmt.Sprintf("%.2f", r.WarmRatio), fmt.Sprint(r.OriginRequests),
			r.ColdHits.String(), r.WarmHits.String()})
	}
	return t
}

// String is "edge/parent/miss".
func (h TierHits) String() string { return fmt.Sprintf("%d/%d/%d", h.Edge, h.Parent, h.Miss) }

// LabLinkTable lists every link with its configured and measured RTT.
func LabLinkTable(res *LabResult) *Table {
	t := &Table{Header: []string{"link", "addresses", "RTT ms", "measured ms", "carries"}}
	for _, l := range res.Links {
		m := "-"
		if l.MeasuredMS > 0 {
			m = fmt.Sprint(l.MeasuredMS)
		}
		t.Rows = append(t.Rows, []string{l.A + " ↔ " + l.B, l.AAddr + " ↔ " + l.BAddr, fmt.Sprint(l.RTTms), m, l.Use})
	}
	return t
}

// LabEventTable is the origin load, failover and purge in one table.
func LabEventTable(res *LabResult) *Table {
	t := &Table{Header: []string{"measure", "value"}}
	add := func(k, v string) { t.Rows = append(t.Rows, []string{k, v}) }
	add("origin requests per object (cold, all regions)", fmt.Sprint(res.OriginRequestsPerObject))
	f := res.Failover
	fo := fmt.Sprintf("%s stopped: %s answered with %s after %.3fs (bound %.3fs); page %.1f ms (model %.1f), ok=%t",
		f.EdgeStopped, f.Region, f.EdgeAfter, f.Seconds, f.BoundSeconds, f.PageMS, f.ModelMS, f.PageOK)
	if f.Error != "" {
		fo += "; " + f.Error
	}
	add("failover", fo)
	p := res.Purge
	pv := fmt.Sprintf("PURGE %s at %s → %d after %.3fs", p.URL, p.PurgedAt, p.Status, p.AnsweredSeconds)
	if p.Answer != "" {
		pv += " " + p.Answer
	}
	pv += "; checked " + strings.Join(p.TiersChecked, ", ")
	if p.Converged {
		pv += fmt.Sprintf("; no tier serves it after %.3fs", p.Seconds)
	} else {
		pv += fmt.Sprintf("; after %.3fs %d tier(s) still serve it: %s", p.Seconds, p.TiersStillServing, strings.Join(p.StillServing, ", "))
	}
	add("purge", pv)
	add("parent tier", res.ParentTier)
	return t
}

// addLabSections adds the lab's diagram, charts and tables to a report.
func addLabSections(rep *Report, res *LabResult) error {
	rep.Sections = append(rep.Sections, Section{Heading: "Topology",
		Note: "Each line is a veth link with a delay line on it; labels are round-trip times. " + res.ParentTier,
		SVG:  labDiagram(res)})
	for _, c := range labCharts(res) {
		p, err := barPlot(c.title, "page time (ms)", c.cats, c.groups)
		if err != nil {
			return err
		}
		if err := rep.AddChart(c.title, p); err != nil {
			return err
		}
	}
	rep.AddTable("Regions", "Demo page "+res.Page+", pipelined on a new connection. Model: the scorecard's pipelined model through a proxy.", LabRegionTable(res))
	rep.AddTable("Origin, failover, purge", strings.Join(res.Notes, " "), LabEventTable(res))
	rep.AddTable("Links", "Measured: fastest request/response round trip on an open connection through the link's delay line.", LabLinkTable(res))
	l := res.Leftover
	rep.AddTable("Clean-up", "", &Table{Header: []string{"namespaces", "links", "processes", "run seconds"},
		Rows: [][]string{{fmt.Sprint(l.Namespaces), fmt.Sprint(l.Links), fmt.Sprint(l.Processes), fmt.Sprintf("%.1f", res.Seconds)}}})
	return nil
}

// labChart is one bar chart of the report.
type labChart struct {
	title  string
	cats   []string
	groups []barGroup
}

// labCharts are the page times per region and phase, measured next to the model: the cold
// phase, and the warm phase with the failover region's page after the failover (on its own
// chart, as warm times are a few per cent of cold ones).
func labCharts(res *LabResult) []labChart {
	cold := labChart{title: "Cold page load per region (edge caches empty)",
		groups: []barGroup{{"measured", nil, 0}, {"model", nil, 1}}}
	warm := labChart{title: "Warm page load per region, and after the failover",
		groups: []barGroup{{"measured (median)", nil, 2}, {"model", nil, 3}}}
	for _, r := range res.Regions {
		cat := r.Name + " → " + r.EdgeAnswered
		cold.cats, warm.cats = append(cold.cats, cat), append(warm.cats, cat)
		cold.groups[0].values = append(cold.groups[0].values, r.ColdMS)
		cold.groups[1].values = append(cold.groups[1].values, r.ModelColdMS)
		warm.groups[0].values = append(warm.groups[0].values, r.WarmMS)
		warm.groups[1].values = append(warm.groups[1].values, r.ModelWarmMS)
	}
	if f := res.Failover; f.EdgeAfter != "" {
		warm.cats = append(warm.cats, f.Region+" → "+f.EdgeAfter+" (failover)")
		warm.groups[0].values = append(warm.groups[0].values, f.PageMS)
		warm.groups[1].values = append(warm.groups[1].values, f.ModelMS)
	}
	return []labChart{cold, warm}
}

// labDiagram draws regions, edges, parent, origin and DNS with the links' RTTs as an SVG.
func labDiagram(res *LabResult) template.HTML {
	pos := map[string][2]int{"parent": {610, 110}, "origin": {830, 250}, "dns": {610, 380}}
	for i := range labRegions {
		pos[fmt.Sprintf("region%d", i+1)] = [2]int{80, 90 + 130*i}
		pos[fmt.Sprintf("edge%d", i+1)] = [2]int{360, 90 + 130*i}
	}
	near := map[string]string{}
	for _, r := range res.Regions {
		near[r.Name] = r.EdgeAnswered
	}
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 920 440" width="920" height="440" font-family="sans-serif" font-size="12">`)
	b.WriteString(`<rect width="920" height="440" fill="#fcfcfc"/>`)
	for _, l := range res.Links {
		if l.Use == purgeUse {
			continue // the edge → parent link's way back, drawn once
		}
		a, b2 := pos[l.A], pos[l.B]
		color, width, dash := "#999", 1.2, ""
		switch {
		case l.B == "dns" || l.A == "dns":
			color, dash = "#c9c9ff", ` stroke-dasharray="2 3"`
		case near[l.A] == l.B:
			color, width = "#2a8f3c", 3
		case strings.HasPrefix(l.Use, "none") || strings.HasPrefix(l.Use, "health"):
			dash = ` stroke-dasharray="6 4"`
		case strings.HasPrefix(l.Use, "edge misses"):
			color, width = "#c77d00", 2
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%.1f"%s/>`, a[0], a[1], b2[0], b2[1], color, width, dash)
		if l.RTTms > 0 {
			// Label a third of the way from a, where the region's lines fan out.
			x, y := a[0]+(b2[0]-a[0])*2/5, a[1]+(b2[1]-a[1])*2/5
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s" text-anchor="middle" font-weight="bold" paint-order="stroke" stroke="#fcfcfc" stroke-width="3">%g ms</text>`, x, y-3, color, l.RTTms)
		}
	}
	stopped := res.Failover.EdgeStopped
	for name, p := range pos {
		fill := map[byte]string{'r': "#e8f1ff", 'e': "#e9f7ec", 'p': "#fff3dd", 'o': "#f3e8ff", 'd': "#eeeeff"}[name[0]]
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="110" height="40" rx="6" fill="%s" stroke="#555"/>`, p[0]-55, p[1]-20, fill)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-size="14">%s</text>`, p[0], p[1]+5, html.EscapeString(name))
		if name == stopped {
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#c00" font-size="11">stopped (failover)</text>`, p[0], p[1]+34)
		}
	}
	b.WriteString(`<text x="10" y="425" fill="#555">green: region → the edge the DNS answered · orange: edge misses · dashed: idle today · dotted: DNS (UDP, undelayed)</text>`)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
