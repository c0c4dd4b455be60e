package bench

import (
	"bytes"
	"fmt"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Chart size.
const (
	chartW = 8 * vg.Inch
	chartH = 4.5 * vg.Inch
)

// series is one curve: a model drawn as a line, measurements drawn as points, or both.
type series struct {
	name   string
	xs, ys []float64
	line   bool // draw a line through the points
	dashed bool
	points bool // draw the points
	color  int  // palette index: a model and its measurements share one
}

// linePlot draws series against a numeric x axis, optionally logarithmic.
func linePlot(title, xLabel, yLabel string, logX bool, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xLabel, yLabel
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	for _, s := range ss {
		xys := make(plotter.XYs, len(s.xs))
		for i := range s.xs {
			xys[i].X, xys[i].Y = s.xs[i], s.ys[i]
		}
		if s.line {
			l, err := plotter.NewLine(xys)
			if err != nil {
				return nil, fmt.Errorf("plot %s: %w", s.name, err)
			}
			l.Color, l.Width = plotutil.Color(s.color), vg.Points(1.5)
			if s.dashed {
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			p.Add(l)
			if !s.points {
				p.Legend.Add(s.name, l)
			}
		}
		if s.points {
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, fmt.Errorf("plot %s: %w", s.name, err)
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: plotutil.Color(s.color), Radius: vg.Points(3.5), Shape: plotutil.Shape(s.color)}
			p.Add(sc)
			p.Legend.Add(s.name, sc)
		}
	}
	p.Y.Min = 0
	return p, nil
}

// barGroup is one set of bars, one bar per category.
type barGroup struct {
	name   string
	values []float64
	color  int
}

// barPlot draws groups of bars side by side over named categories.
func barPlot(title, yLabel string, categories []string, groups []barGroup) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text, p.Y.Label.Text = title, yLabel
	p.Legend.Top = true // top right: the tallest bars are usually on the left
	p.Add(plotter.NewGrid())
	top := 0.0
	for _, g := range groups {
		for _, v := range g.values {
			top = max(top, v)
		}
	}
	w := vg.Points(float64(min(40, 300/max(1, len(categories)*len(groups)))))
	for i, g := range groups {
		b, err := plotter.NewBarChart(plotter.Values(g.values), w)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", g.name, err)
		}
		b.Color = plotutil.Color(g.color)
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(groups)-1)/2)
		p.Add(b)
		p.Legend.Add(g.name, b)
	}
	p.NominalX(categories...)
	p.X.Min, p.X.Max = -0.6, float64(len(categories))-0.4
	p.Y.Min, p.Y.Max = 0, top*1.2 // headroom for the legend
	p.X.Tick.Label.Rotation = 0.35
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = draw.XRight, draw.YCenter
	return p, nil
}

// svgOf renders a plot as an SVG document for inlining in HTML.
func svgOf(p *plot.Plot) (string, error) {
	wt, err := p.WriterTo(chartW, chartH, "svg")
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return "", err
	}
	s := b.String()
	if i := strings.Index(s, "<svg"); i > 0 { // drop the XML prolog inside HTML
		s = s[i:]
	}
	return s, nil
}

// ms converts a duration in nanoseconds to milliseconds.
func ms(ns float64) float64 { return math.Round(ns/1e4) / 100 }
