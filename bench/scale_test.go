package bench

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  string
	}{
		{in: DefaultScaleSizes, want: []int{100_000, 1_000_000, 3_000_000}},
		{in: "20000, 60K,1.5M", want: []int{20_000, 60_000, 1_500_000}},
		{in: "2.5k", want: []int{2_500}},
		{in: "100k,100k", err: "sizes must increase: 100,000 after 100,000"},
		{in: "1m,100k", err: "must increase"},
		{in: "", err: `size ""`},
		{in: "0", err: `size "0"`},
		{in: "-5k", err: `size "-5"`},
		{in: "12.5", err: `size "12.5"`},
		{in: "3g", err: `size "3g"`},
		{in: "nank", err: `size "nan"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSizes(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseSizes(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseSizes(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestIngestRate checks the step and tail rates: whole chunks from the
// end until the tail is covered.
func TestIngestRate(t *testing.T) {
	chunks := []ingestChunk{{40_000, 2 * time.Second}, {50_000, 5 * time.Second}, {60_000, 10 * time.Second}}
	if n, s, r := rate(chunks, 0); n != 150_000 || s != 17 || r != round1(150_000.0/17) {
		t.Errorf("whole step: %d resources, %v s, %v/s", n, s, r)
	}
	// 100k: the last two chunks (110,000 resources in 15 s).
	if n, s, r := rate(chunks, 100_000); n != 110_000 || s != 15 || r != round1(110_000.0/15) {
		t.Errorf("tail: %d resources, %v s, %v/s", n, s, r)
	}
	if n, _, r := rate(nil, 100_000); n != 0 || r != 0 {
		t.Errorf("no chunk: %d resources, %v/s", n, r)
	}
}

// scaleFixture is a three-size run: read p99 grows 1.2x (met), search p99
// 2x (missed), the tail ingest rate falls 25 % (met).
func scaleFixture() *scaleResults {
	row := func(res, patients int, ingest float64, db int64, read, search, every float64) scaleRow {
		return scaleRow{Size: res, Resources: res, Patients: patients, StepResources: res / 2, IngestPerS: ingest + 500, IngestTailPerS: ingest,
			DBBytes: db, WALBytes: 4 << 20, EverythingSize: 503, IngestPeakRSSMB: 300, ServePeakRSSMB: 150, Load1: 1.25,
			Scenarios: []scenarioResult{
				{Name: "read-uniform", RPS: 9000, P99: read},
				{Name: "search", RPS: 800, P99: search},
				{Name: "everything", RPS: 40, P99: every},
			}}
	}
	r := &scaleResults{
		Machine: machine{Date: "2026-12-06 07:00 UTC", CPU: "Test CPU", Cores: 2, MemoryMB: 4096, Go: "go1.26", OS: "linux/amd64"},
		Run:     scaleRun{Sizes: []int{100_000, 1_000_000, 3_000_000}, Seed: 1, DurationS: 10, Connections: 32, Store: "sqlite", ChunkPatients: scaleChunkPatients, TailResources: scaleTail},
		Rows: []scaleRow{
			row(100_000, 116, 10_000, 400<<20, 4, 20, 100),
			row(1_000_000, 1_155, 9_000, 4000<<20, 4.4, 30, 110),
			row(3_000_000, 3_465, 7_500, 12000<<20, 4.8, 40, 150),
		},
	}
	r.Targets = scaleTargets(r.Rows)
	return r
}

func TestScaleTargets(t *testing.T) {
	got := scaleFixture().Targets
	want := []scaleTarget{
		{Name: "read-uniform p99", First: 4, Last: 4.8, Ratio: 1.2, Bound: scaleP99Growth, Met: true},
		{Name: "search p99", First: 20, Last: 40, Ratio: 2, Bound: scaleP99Growth, Met: false},
		{Name: "ingest resources/s", First: 10_000, Last: 7_500, Ratio: 0.75, Bound: scaleIngestMin, AtLeast: true, Met: true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("targets\n got %+v\nwant %+v", got, want)
	}
	// A fall of more than 30 % misses; one size has no target.
	rows := scaleFixture().Rows
	rows[2].IngestTailPerS = 6_900
	if ts := scaleTargets(rows); ts[2].Met {
		t.Errorf("a 31 %% fall met the target: %+v", ts[2])
	}
	if ts := scaleTargets(rows[:1]); ts != nil {
		t.Errorf("one size: targets %+v", ts)
	}
}

// TestScaleTable checks the printed table and the docs section: a row per
// size with its figures, the targets' outcomes, the chart link, the file's
// earlier content kept.
func TestScaleTable(t *testing.T) {
	r := scaleFixture()
	var out bytes.Buffer
	printScale(&out, r)
	docs := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	if err := os.MkdirAll(filepath.Dir(docs), 0o755); err != nil {
		t.Fatal(err)
	}
	const before = "# Benchmarks\n\n" + DocsSection + "\n\nearlier rows"
	if err := os.WriteFile(docs, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := appendScaleDocs(docs, filepath.Join(filepath.Dir(docs), "..", "bench"), r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(docs)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if !strings.HasPrefix(doc, before+"\n") || strings.Count(doc, DocsSection) != 1 {
		t.Errorf("the docs lost their content or repeat the section heading:\n%s", doc)
	}
	for _, want := range []string{
		"### 2026-12-06 07:00 UTC - scale, 100,000 / 1,000,000 / 3,000,000 resources, sqlite, 32 connections, 10s per scenario",
		"[chart](../bench/scale.svg)",
		"| resources | patients | ingest res/s (step) | ingest res/s (last 100k) | database MiB | WAL MiB | bytes/resource | read-uniform req/s | read-uniform p99 ms | search req/s | search p99 ms | everything req/s | everything p99 ms | peak RSS MB ingest | peak RSS MB serving | load average |",
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
		// 12,000 MiB over 3M resources: 4,194 bytes each.
		"| 3,000,000 | 3,465 | 8,000 | 7,500 | 12000 | 4 | 4,194 | 9,000 | 4.80 | 800 | 40.00 | 40 | 150.00 | 300 | 150 | 1.2 |",
		"- read-uniform p99 from 100,000 to 3,000,000 resources: 4.00 ms -> 4.80 ms, 1.20x (target: less than 1.5x): **met**",
		"- search p99 from 100,000 to 3,000,000 resources: 20.00 ms -> 40.00 ms, 2.00x (target: less than 1.5x): **missed**",
		"- ingest resources/s from 100,000 to 3,000,000 resources: 10,000 -> 7,500, 0.75x (-25 %; target: falls by less than 30 %): **met**",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs have no %q:\n%s", want, doc)
		}
	}
	lines := strings.Split(out.String(), "\n")
	var rows []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && (f[0] == "100,000" || f[0] == "1,000,000" || f[0] == "3,000,000") {
			rows = append(rows, strings.Join(f, " "))
		}
	}
	if want := "1,000,000 1,155 9,500 9,000 4000 4 4,194 9,000 4.40 800 30.00 40 110.00 300 150 1.2"; len(rows) != 3 || rows[1] != want {
		t.Errorf("table rows %q, want the second %q:\n%s", rows, want, out.String())
	}
	if !strings.Contains(out.String(), "search p99 from 100,000 to 3,000,000 resources: 20.00 ms -> 40.00 ms, 2.00x (target: less than 1.5x): missed") {
		t.Errorf("the table has no target line:\n%s", out.String())
	}
	// A size the previous step's last Ingest call already reached has no
	// ingest of its own: no rate, rather than a rate of 0.
	r.Rows[1].StepResources, r.Rows[1].IngestPerS, r.Rows[1].IngestTailPerS = 0, 0, 0
	if c := scaleCells(&r.Rows[1], []string{"search"}); c[2] != "-" || c[3] != "-" || c[4] != "4000" {
		t.Errorf("cells of a step with no ingest: %q", c)
	}
}

// TestScaleSVG checks the chart: well-formed SVG, per measure one bar per
// size whose width is proportional to the value relative to the first
// size, and the targets' bounds where there are targets.
func TestScaleSVG(t *testing.T) {
	r := scaleFixture()
	svg := scaleSVG(r)
	type rect struct {
		Width string `xml:"width,attr"`
	}
	type line struct {
		X1    string `xml:"x1,attr"`
		Dash  string `xml:"stroke-dasharray,attr"`
		Color string `xml:"stroke,attr"`
	}
	var doc struct {
		XMLName xml.Name
		Rects   []rect   `xml:"rect"`
		Lines   []line   `xml:"line"`
		Texts   []string `xml:"text"`
	}
	if err := xml.Unmarshal(svg, &doc); err != nil || doc.XMLName.Local != "svg" {
		t.Fatalf("not an SVG document: %v\n%s", err, svg)
	}
	// The background, then five measures (three scenarios, ingest, bytes
	// per resource) of three bars.
	if len(doc.Rects) != 1+5*3 {
		t.Fatalf("%d rects, want %d", len(doc.Rects), 1+5*3)
	}
	width := func(i int) float64 {
		f, err := strconv.ParseFloat(doc.Rects[1+i].Width, 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for m, ratios := range [][3]float64{{1, 1.1, 1.2}, {1, 1.5, 2}, {1, 1.1, 1.5}, {1, 0.9, 0.75}} {
		base := width(m * 3)
		for i, want := range ratios {
			if got := width(m*3+i) / base; got < want-0.01 || got > want+0.01 {
				t.Errorf("measure %d, size %d: bar %.3fx the first, want %.2fx", m, i, got, want)
			}
		}
	}
	// The bounds: read and search p99 at 1.5x, ingest at 0.7x, at those
	// fractions of the first bar's width past the axis.
	var bounds []float64
	for _, l := range doc.Lines {
		if l.Color == "#c0392b" {
			x, _ := strconv.ParseFloat(l.X1, 64)
			bounds = append(bounds, (x-110)/width(0))
		}
	}
	if len(bounds) != 3 || abs1(bounds[0]-1.5) > 0.01 || abs1(bounds[1]-1.5) > 0.01 || abs1(bounds[2]-0.7) > 0.01 {
		t.Errorf("target lines at %v of the first bar, want 1.5, 1.5, 0.7", bounds)
	}
	text := strings.Join(doc.Texts, "\n")
	for _, want := range []string{"search p99", "2.00x (40.00 ms)", "ingest resources/s (last 100k)", "0.75x (7,500/s)", "3,000,000",
		"100,000 / 1,000,000 / 3,000,000 resources"} {
		if !strings.Contains(text, want) {
			t.Errorf("chart has no %q:\n%s", want, text)
		}
	}
	// writeScale writes it with scale.json.
	dir := t.TempDir()
	if err := writeScale(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"scale.json", scaleChart} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || len(b) == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func abs1(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
