// Package plot draws the benchmark's charts with gonum/plot: response-time
// CDFs per policy (like the paper's Fig. 9) and where requests were served.
package plot

import (
	"fmt"
	"image/color"
	"math"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"kantai.dev/kantai/internal/bench/stats"
)

// maxCDFPoints bounds the points drawn per curve; more are not visible.
const maxCDFPoints = 2000

// Series is one curve of a CDF chart.
type Series struct {
	Name string
	// Latencies of the successful requests, ascending.
	Latencies []time.Duration
	// Dashed draws the curve dashed, e.g. for the oracle.
	Dashed bool
}

// CDF writes a PNG with one response-time CDF per series, x in ms. The x axis
// stops at 1.2× the largest p99 of the series so that long tails do not
// flatten the curves; the tails are in the table and the JSON.
func CDF(path, title string, series []Series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "response time (ms)"
	p.Y.Label.Text = "share of requests"
	p.Y.Min, p.Y.Max = 0, 1
	p.X.Min = 0
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	xmax := 0.0
	drawn := 0
	for i, s := range series {
		if len(s.Latencies) == 0 {
			continue
		}
		pts := stats.CDFSorted(s.Latencies, maxCDFPoints)
		xys := make(plotter.XYs, 0, len(pts)+1)
		xys = append(xys, plotter.XY{X: pts[0].X, Y: 0})
		for _, pt := range pts {
			xys = append(xys, plotter.XY{X: pt.X, Y: pt.Y})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("plotting %s: %w", s.Name, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		if s.Dashed {
			l.Color = color.Gray{Y: 90}
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(s.Name, l)
		p99 := float64(stats.Percentile(s.Latencies, 99)) / float64(time.Millisecond)
		xmax = math.Max(xmax, p99)
		drawn++
	}
	if drawn == 0 {
		p.Title.Text = title + " (no completed requests)"
	}
	if xmax > 0 {
		p.X.Max = xmax * 1.2
	}
	return save(p, 8*vg.Inch, 5*vg.Inch, path)
}

// Group is one bar of the served-where chart: the shares of a policy's
// requests from one origin (or all origins) served by each node.
type Group struct {
	Policy string
	// Origin is the users' node, or "all".
	Origin string
	// Shares maps node → share (0–1).
	Shares map[string]float64
}

// ServedWhere writes a PNG of stacked bars, one per group, each split by
// serving node in the order of nodes. Shares on nodes not listed are drawn
// as "other".
func ServedWhere(path, title string, nodes []string, groups []Group) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "share served"
	// Headroom above 1 keeps the legend clear of the bars.
	p.Y.Min, p.Y.Max = 0, 1.25
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{
		{Value: 0, Label: "0"}, {Value: 0.25, Label: "25%"}, {Value: 0.5, Label: "50%"},
		{Value: 0.75, Label: "75%"}, {Value: 1, Label: "100%"},
	})
	p.Legend.Top = true
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	if len(groups) == 0 {
		p.Title.Text = title + " (no data)"
		return save(p, 8*vg.Inch, 5*vg.Inch, path)
	}
	layers := slices.Clone(nodes)
	other := false
	for _, g := range groups {
		for n := range g.Shares {
			if !slices.Contains(nodes, n) {
				other = true
			}
		}
	}
	if other {
		layers = append(layers, "other")
	}
	labels := make([]string, len(groups))
	for i, g := range groups {
		labels[i] = g.Policy + "\n" + g.Origin
	}
	width := vg.Points(math.Max(8, math.Min(40, 480/float64(len(groups)))))
	var below *plotter.BarChart
	for li, node := range layers {
		vals := make(plotter.Values, len(groups))
		for gi, g := range groups {
			if node == "other" && other {
				for n, v := range g.Shares {
					if !slices.Contains(nodes, n) {
						vals[gi] += v
					}
				}
				continue
			}
			vals[gi] = g.Shares[node]
		}
		b, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return fmt.Errorf("plotting node %s: %w", node, err)
		}
		b.Color = plotutil.Color(li)
		b.LineStyle.Width = 0
		if below != nil {
			b.StackOn(below)
		}
		below = b
		p.Add(b)
		p.Legend.Add(node, b)
	}
	p.NominalX(labels...)
	if len(groups) > 8 {
		p.X.Tick.Label.Rotation = math.Pi / 4
		p.X.Tick.Label.XAlign = draw.XRight
	}
	w := vg.Length(math.Max(8, 1.2+0.55*float64(len(groups)))) * vg.Inch
	return save(p, w, 5*vg.Inch, path)
}

func save(p *plot.Plot, w, h vg.Length, path string) error {
	if err := p.Save(w, h, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
