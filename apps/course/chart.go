package course

import (
	"fmt"
	"strings"
	"time"
)

// chart is an inline SVG chart. Every number in it is also in the table
// beside it (the table is the accessible form; the SVG is an image with a
// title and a description).
type chart struct {
	ID, Title, Desc string
	W, H            float64
	// The plot area.
	L, R, T, B float64
	Bands      []rect
	HLines     []hline
	VLines     []vline
	XTicks     []tick
	YTicks     []tick
	Markers    []float64
	Series     []series
}

type rect struct {
	Y, H  float64
	Class string
	Label string
}

type hline struct {
	Y     float64
	Class string
	Label string
}

type vline struct {
	X     float64
	Class string
	Label string
}

// Anchor keeps a label at x inside the chart.
func (c chart) Anchor(x float64) string {
	switch {
	case x > c.R-30:
		return "end"
	case x < c.L+30:
		return "start"
	}
	return "middle"
}

type tick struct {
	X, Y  float64
	Label string
}

type series struct {
	Name, Class string
	Points      string
	Dots        []dot
}

type dot struct {
	X, Y  float64
	Label string
	// Value and At are the plotted numbers, for anyone (and the browser
	// test) reading the chart back.
	Value string
	At    string
}

const (
	chartW, chartH = 480, 210
	padL, padR     = 34, 10
	padT, padB     = 12, 28
)

func newChart(id, title, desc string) chart {
	return chart{ID: id, Title: title, Desc: desc, W: chartW, H: chartH, L: padL, R: chartW - padR, T: padT, B: chartH - padB}
}

// y maps v in [lo, hi] to the plot's vertical axis.
func (c *chart) y(v, lo, hi float64) float64 {
	if hi <= lo {
		return c.B
	}
	v = min(max(v, lo), hi)
	return round1(c.B - (v-lo)/(hi-lo)*(c.B-c.T))
}

func (c *chart) x(v, lo, hi float64) float64 {
	if hi <= lo {
		return round1((c.L + c.R) / 2)
	}
	return round1(c.L + (v-lo)/(hi-lo)*(c.R-c.L))
}

func round1(f float64) float64 { return float64(int(f*10+0.5)) / 10 }

func (c *chart) yTicks(lo, hi, step float64) {
	for v := lo; v <= hi; v += step {
		c.YTicks = append(c.YTicks, tick{X: c.L - 4, Y: c.y(v, lo, hi), Label: fmtNum(v)})
	}
}

func trendChart(tr trend, sessions []sessionRow) chart {
	sc := tr.Scale
	c := newChart("chart-"+sc.Key, sc.Name+" total over the course",
		fmt.Sprintf("%s totals from %s to %s with severity bands, baseline %s, the response line at half the baseline%s and the session days marked. The table after the chart lists the same values.",
			sc.Name, tr.Points[0].Date, tr.Points[len(tr.Points)-1].Date, fmtNum(tr.Baseline),
			map[bool]string{true: fmt.Sprintf(" and the remission line at %s", fmtNum(sc.Remission)), false: ""}[sc.Remission > 0]))
	lo, hi := 0.0, sc.Max
	t0, t1 := tr.Points[0].When, tr.Points[len(tr.Points)-1].When
	for _, s := range sessions {
		if t, ok := parseWhen(s.Date); ok && s.Status == "finished" {
			t0, t1 = minTime(t0, t), maxTime(t1, t.Add(24*time.Hour))
		}
	}
	xs := func(t time.Time) float64 { return c.x(float64(t.Unix()), float64(t0.Unix()), float64(t1.Unix())) }
	for i, b := range sc.Bands {
		top := hi
		if i+1 < len(sc.Bands) {
			top = sc.Bands[i+1].From
		}
		yTop, yBot := c.y(top, lo, hi), c.y(b.From, lo, hi)
		c.Bands = append(c.Bands, rect{Y: yTop, H: round1(yBot - yTop), Class: b.Class, Label: b.Name})
	}
	c.HLines = append(c.HLines, hline{Y: c.y(tr.Baseline, lo, hi), Class: "baseline", Label: "baseline " + fmtNum(tr.Baseline)})
	if tr.Baseline > 0 {
		c.HLines = append(c.HLines, hline{Y: c.y(tr.Baseline/2, lo, hi), Class: "response", Label: "response " + fmtNum(tr.Baseline/2)})
	}
	if sc.Remission > 0 {
		c.HLines = append(c.HLines, hline{Y: c.y(sc.Remission, lo, hi), Class: "remission", Label: "remission < " + fmtNum(sc.Remission)})
	}
	step := 5.0
	if hi > 40 {
		step = 10
	}
	c.yTicks(lo, hi, step)
	for _, s := range sessions {
		if t, ok := parseWhen(s.Date); ok && s.Status == "finished" {
			c.Markers = append(c.Markers, xs(t))
		}
	}
	se := series{Name: sc.Name, Class: "s-" + sc.Key}
	var pts []string
	for _, p := range tr.Points {
		d := dot{X: xs(p.When), Y: c.y(p.Value, lo, hi), Value: fmtNum(p.Value), At: p.Date}
		d.Label = p.Date + ": " + d.Value
		se.Dots = append(se.Dots, d)
		pts = append(pts, fmt.Sprintf("%g,%g", d.X, d.Y))
	}
	se.Points = strings.Join(pts, " ")
	c.Series = []series{se}
	c.XTicks = []tick{{X: c.L, Y: c.B + 18, Label: t0.Format("2006-01-02")}, {X: c.R, Y: c.B + 18, Label: t1.Format("2006-01-02")}}
	return c
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// monitoringCharts are blood pressure, heart rate and SpO2 against minutes
// since the dose, with the REMS timepoints and the pre-dose threshold.
func monitoringCharts(rows []vitalRow) []chart {
	if len(rows) == 0 {
		return nil
	}
	m0, m1 := float64(min(rows[0].Minute, -10)), float64(max(rows[len(rows)-1].Minute, 60))
	mk := func(id, title, desc string, lo, hi, step float64, lines []hline, ss ...struct {
		name, class string
		get         func(vitalRow) (float64, string, bool)
	}) chart {
		c := newChart(id, title, desc)
		c.yTicks(lo, hi, step)
		for _, l := range lines {
			l.Y = c.y(l.Y, lo, hi)
			c.HLines = append(c.HLines, l)
		}
		xs := func(m float64) float64 { return c.x(m, m0, m1) }
		c.VLines = []vline{{X: xs(0), Class: "dose", Label: "dose"}, {X: xs(40), Class: "rems", Label: "40 min"},
			{X: xs(float64(rows[len(rows)-1].Minute)), Class: "rems", Label: "discharge"}}
		for _, s := range ss {
			se := series{Name: s.name, Class: s.class}
			var pts []string
			for _, r := range rows {
				v, txt, ok := s.get(r)
				if !ok {
					continue
				}
				d := dot{X: xs(float64(r.Minute)), Y: c.y(v, lo, hi), Value: txt, At: fmt.Sprint(r.Minute)}
				d.Label = fmt.Sprintf("%s %s at %d min", s.name, txt, r.Minute)
				se.Dots = append(se.Dots, d)
				pts = append(pts, fmt.Sprintf("%g,%g", d.X, d.Y))
			}
			se.Points = strings.Join(pts, " ")
			c.Series = append(c.Series, se)
		}
		c.XTicks = []tick{{X: c.L, Y: c.B + 18, Label: fmt.Sprintf("%.0f min", m0)}, {X: xs(0), Y: c.B + 18, Label: "0"},
			{X: c.R, Y: c.B + 18, Label: fmt.Sprintf("%.0f min", m1)}}
		return c
	}
	type get = struct {
		name, class string
		get         func(vitalRow) (float64, string, bool)
	}
	return []chart{
		mk("chart-bp", "Blood pressure (mmHg) by minutes since dose",
			"Systolic and diastolic blood pressure against minutes since the dose, with the 140/90 pre-dose limit and the dose, 40-minute and discharge timepoints. The table after the charts lists the same values.",
			40, 200, 20, []hline{{Y: preDoseSys, Class: "limit", Label: "140"}, {Y: preDoseDia, Class: "limit", Label: "90"}},
			get{"Systolic", "s-sys", func(r vitalRow) (float64, string, bool) { return r.sys, r.Sys, r.hasSys }},
			get{"Diastolic", "s-dia", func(r vitalRow) (float64, string, bool) { return r.dia, r.Dia, r.hasSys && r.Dia != "" }}),
		mk("chart-hr", "Heart rate (beats/min) by minutes since dose",
			"Heart rate against minutes since the dose. The table after the charts lists the same values.",
			40, 160, 20, nil, get{"Heart rate", "s-hr", func(r vitalRow) (float64, string, bool) { return r.hr, r.HR, r.hasHR }}),
		mk("chart-spo2", "SpO2 (%) by minutes since dose",
			"Oxygen saturation against minutes since the dose, with the 90% line. The table after the charts lists the same values.",
			80, 100, 5, []hline{{Y: 90, Class: "limit", Label: "90"}},
			get{"SpO2", "s-spo2", func(r vitalRow) (float64, string, bool) { return r.spo2, r.SpO2, r.hasSpO2 }}),
	}
}
