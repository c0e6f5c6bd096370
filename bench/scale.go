package bench

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store/postgres"
)

// The scale run (`ketabridge-bench --scale`, `make bench-scale`): the cost
// curve. One store is loaded in steps up to each size (synthetic patients in
// order, the next ones at each step) and measured at each: ingest
// resources/s, the database's size on disk, read-uniform, search and
// $everything requests/s and p99, and peak RSS.
//
// Incremental, not a fresh store per size: patient n's records depend only
// on the seed and n (synth.Options.From), so the store at each step holds
// exactly what a fresh load of that size would; and the ingest rate of each
// step is measured against a database that already holds the previous
// size, which is the question "does ingest slow down as the database
// grows". It also loads 3M resources in all, not 4.1M.
const (
	// DefaultScaleSizes are the sizes of `make bench-scale`, in resources.
	DefaultScaleSizes = "100k,1m,3m"
	// scaleChunkPatients caps the patients synthesised and ingested per
	// Ingest call (~43,000 resources): what is in memory at once.
	scaleChunkPatients = 50
	// scaleTail is the span the marginal ingest rate is measured over: the
	// last scaleTail resources (whole chunks) of a step, or the whole step.
	scaleTail = 100_000
	// perPatientGuess is the first estimate of resources per patient (the
	// 1,100-patient data set's), refined as patients are loaded.
	perPatientGuess = 866
	// Targets (issue 18, PERF-SCALE-1): search and read p99 grow by less
	// than 1.5x from the first size to the last; the marginal ingest rate
	// falls by less than 30 %.
	scaleP99Growth = 1.5
	scaleIngestMin = 0.7
)

// ScaleScenarios are the scenarios run at each size unless --scenarios says
// otherwise.
var ScaleScenarios = []string{"read-uniform", "search", "everything", "everything-default"}

// ParseSizes reads a comma-separated list of sizes in resources: integers
// with an optional k (thousands) or m (millions) suffix, decimals allowed
// before a suffix (1.5m), strictly increasing.
func ParseSizes(s string) ([]int, error) {
	var sizes []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		mult := 1.0
		switch {
		case strings.HasSuffix(f, "k"):
			mult, f = 1e3, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "m"):
			mult, f = 1e6, strings.TrimSuffix(f, "m")
		}
		v, err := strconv.ParseFloat(f, 64)
		n := math.Round(v * mult)
		if err != nil || math.IsNaN(v) || n < 1 || n > 1e9 || (mult == 1 && n != v) {
			return nil, fmt.Errorf("size %q: want a number of resources such as 20000, 100k or 1.5m", f)
		}
		if len(sizes) > 0 && int(n) <= sizes[len(sizes)-1] {
			return nil, fmt.Errorf("sizes must increase: %s after %s", thousands(int(n)), thousands(sizes[len(sizes)-1]))
		}
		sizes = append(sizes, int(n))
	}
	if len(sizes) == 0 {
		return nil, errors.New("no size")
	}
	return sizes, nil
}

// scaleResults is scale.json.
type scaleResults struct {
	Machine machine    `json:"machine"`
	Run     scaleRun   `json:"run"`
	Rows    []scaleRow `json:"rows"`
	// Targets compare the last size with the first.
	Targets []scaleTarget `json:"targets"`
}

// scaleRun holds the scale run's parameters.
type scaleRun struct {
	Sizes         []int   `json:"sizes"`
	Seed          int64   `json:"seed"`
	DurationS     float64 `json:"duration_s"`
	Connections   int     `json:"connections"`
	Store         string  `json:"store"`
	ChunkPatients int     `json:"chunk_patients"`
	TailResources int     `json:"tail_resources"`
}

// scaleRow is one size's figures.
type scaleRow struct {
	Size      int `json:"size"`
	Resources int `json:"resources"`
	Patients  int `json:"patients"`
	// StepResources were ingested in StepSeconds (the Ingest calls only, not
	// the synthesis): IngestPerS; IngestTailPerS is the rate over the step's
	// last TailResources (the rate at this size).
	StepResources  int     `json:"step_resources"`
	StepSeconds    float64 `json:"step_seconds"`
	IngestPerS     float64 `json:"ingest_resources_per_s"`
	TailResources  int     `json:"tail_resources"`
	IngestTailPerS float64 `json:"ingest_tail_resources_per_s"`
	// DBBytes is the database on disk: the SQLite file once its WAL has
	// been checkpointed into it, or the PostgreSQL schema's tables with
	// their indexes and TOAST. WALBytes is the SQLite WAL file's size (it
	// keeps the largest size it reached until truncated).
	DBBytes  int64 `json:"db_bytes"`
	WALBytes int64 `json:"wal_bytes"`
	// EverythingSize is the compartment the everything scenario read.
	EverythingSize int              `json:"everything_resources"`
	Scenarios      []scenarioResult `json:"scenarios"`
	// Peak RSS (VmHWM, reset before the step) of the ingest and of the
	// serving phase (the highest scenario's).
	IngestPeakRSSMB float64 `json:"ingest_peak_rss_mb"`
	ServePeakRSSMB  float64 `json:"serve_peak_rss_mb"`
	// Load1 is the machine's one-minute load average after the scenarios:
	// figures of a loaded machine compare only with each other.
	Load1 float64 `json:"load1,omitempty"`
}

// scenario returns the row's figures of the named scenario (nil: not run).
func (r *scaleRow) scenario(name string) *scenarioResult {
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == name {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// scaleTarget is one target, the last size against the first.
type scaleTarget struct {
	Name  string  `json:"name"`
	First float64 `json:"first"`
	Last  float64 `json:"last"`
	Ratio float64 `json:"ratio"`
	// Bound is the ratio's limit: at most (p99 growth) or at least (ingest).
	Bound   float64 `json:"bound"`
	AtLeast bool    `json:"at_least,omitempty"`
	Met     bool    `json:"met"`
}

// Scale runs the scale benchmark on cfg's store (a temporary SQLite file, or
// a fresh schema and key prefix), prints progress to stderr and the table to
// stdout, and writes scale.json and scale.svg to p.Out and the dated rows to
// p.Docs.
func Scale(ctx context.Context, cfg server.Config, p Params, sizes []int, stdout, stderr io.Writer) error {
	if len(sizes) == 0 {
		return errors.New("bench: scale: no size")
	}
	bcfg, cleanup, err := freshNamespace(ctx, cfg, "scale")
	if err != nil {
		return err
	}
	defer cleanup()
	if len(p.Only) == 0 {
		p.Only = ScaleScenarios
	}
	if p.store == "" {
		p.store = storeLabel(bcfg)
	}
	res, err := runScale(ctx, bcfg, p, sizes, stderr)
	if err != nil {
		return err
	}
	printScale(stdout, res)
	if err := writeScale(p.Out, res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", joinPath(p.Out, "scale.json"), joinPath(p.Out, scaleChart))
	if p.Docs != "" {
		if err := appendScaleDocs(p.Docs, p.Out, res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "appended the run to %s\n", p.Docs)
	}
	return nil
}

// ingestChunk is one Ingest call of a step.
type ingestChunk struct {
	resources int
	took      time.Duration
}

// runScale loads the store size by size and measures it at each.
func runScale(ctx context.Context, cfg server.Config, p Params, sizes []int, stderr io.Writer) (*scaleResults, error) {
	res := &scaleResults{Machine: machineInfo(), Run: scaleRun{Sizes: sizes, Seed: p.Seed, DurationS: p.Duration.Seconds(),
		Connections: p.Connections, Store: p.store, ChunkPatients: scaleChunkPatients, TailResources: scaleTail}}
	gr, err := startGateway(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer gr.stop()
	if err := gr.obtainToken(ctx); err != nil {
		return nil, fmt.Errorf("bench: token: %w", err)
	}
	var pids []string
	stored, next := 0, 0 // resources ingested, the next patient's number
	for _, size := range sizes {
		row := scaleRow{Size: size}
		debug.FreeOSMemory()
		resetPeakRSS()
		fmt.Fprintf(stderr, "scale: loading up to %s resources\n", thousands(size))
		var chunks []ingestChunk
		for stored < size {
			perPatient := float64(perPatientGuess)
			if next > 0 {
				perPatient = float64(stored) / float64(next)
			}
			n := min(max(int(math.Ceil(float64(size-stored)/perPatient)), 1), scaleChunkPatients)
			raw, err := synthRange(next, next+n, p.Seed)
			if err != nil {
				return nil, err
			}
			start := time.Now()
			_, sum, err := gr.g.Ingester().Ingest(ctx, raw)
			took := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("bench: scale: ingest: %w", err)
			}
			if sum.Rejected > 0 {
				return nil, fmt.Errorf("bench: scale: %d synthetic records rejected", sum.Rejected)
			}
			pids = append(pids, patientIDs(raw)...)
			stored, next = stored+sum.Resources, next+n
			chunks = append(chunks, ingestChunk{sum.Resources, took})
			fmt.Fprintf(stderr, "scale: %s resources (%s patients): +%s in %.1f s, %s resources/s\n",
				thousands(stored), thousands(next), thousands(sum.Resources), took.Seconds(),
				thousands(int(float64(sum.Resources)/took.Seconds()+0.5)))
		}
		if len(chunks) == 0 {
			fmt.Fprintf(stderr, "scale: the store already holds %s resources: nothing to ingest\n", thousands(stored))
		}
		row.Resources, row.Patients = stored, next
		row.StepResources, row.StepSeconds, row.IngestPerS = rate(chunks, 0)
		row.TailResources, _, row.IngestTailPerS = rate(chunks, scaleTail)
		row.IngestPeakRSSMB = peakRSSMB()
		if pg, ok := gr.g.Store().(*postgres.Store); ok {
			// Planner statistics that describe the loaded data, as Run.
			if err := pg.Analyze(ctx); err != nil {
				return nil, err
			}
		}
		if row.DBBytes, row.WALBytes, err = dbSize(ctx, gr.cfg); err != nil {
			return nil, fmt.Errorf("bench: scale: database size: %w", err)
		}
		runtime.GC()
		debug.FreeOSMemory()

		fmt.Fprintf(stderr, "scale: %s resources: reading ids from the store\n", thousands(stored))
		ds, err := datasetFrom(ctx, gr.g.Store(), pids, p.Seed)
		if err != nil {
			return nil, err
		}
		row.EverythingSize = ds.size
		// A step can outlast a token.
		if err := gr.refreshTokens(ctx); err != nil {
			return nil, fmt.Errorf("bench: token: %w", err)
		}
		var r results
		r.Run.Connections = p.Connections
		ps := p
		if p.CPUProfile != "" {
			// One profile per size (PROFILE.<resources>), so that sizes
			// can be compared rather than the last overwriting the rest.
			ps.CPUProfile = p.CPUProfile + "." + strconv.Itoa(stored)
		}
		if err := runScenarios(ctx, gr, ds, ps, &r, stderr); err != nil {
			return nil, err
		}
		r.finish()
		row.Scenarios, row.ServePeakRSSMB, row.Load1 = r.Scenarios, r.PeakRSSMB, loadAverage()
		res.Rows = append(res.Rows, row)
	}
	res.Targets = scaleTargets(res.Rows)
	return res, nil
}

// rate sums the chunks from the end until tail resources (0: all of them)
// and returns the resources, the seconds and their rate.
func rate(chunks []ingestChunk, tail int) (resources int, seconds, perS float64) {
	var d time.Duration
	for i := len(chunks) - 1; i >= 0 && (tail == 0 || resources < tail); i-- {
		resources += chunks[i].resources
		d += chunks[i].took
	}
	if d > 0 {
		perS = round1(float64(resources) / d.Seconds())
	}
	return resources, round3(d.Seconds()), perS
}

// synthRange synthesises patients from to to-1 (with the reference records
// when from is 0) as the benchmark's data set has them.
func synthRange(from, to int, seed int64) ([]json.RawMessage, error) {
	var buf bytes.Buffer
	if _, err := synth.Generate(&buf, synth.Options{From: from, Patients: to, Seed: seed, Start: server.DemoStart,
		LongCourse: server.DemoLongCourse}); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	var out []json.RawMessage
	for l := range bytes.Lines(buf.Bytes()) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			out = append(out, json.RawMessage(l))
		}
	}
	return out, nil
}

// dbSize is the store's size on disk: the SQLite database file, once a
// checkpoint has copied the WAL's pages into it (on a connection of its
// own, while the gateway is idle), and the WAL file's size; or the total
// size of the PostgreSQL schema's tables (indexes and TOAST included).
func dbSize(ctx context.Context, cfg server.Config) (db, wal int64, err error) {
	if cfg.DatabaseURL != "" {
		db, err = pgSchemaSize(ctx, cfg.DatabaseURL)
		return db, 0, err
	}
	c, err := sql.Open("sqlite", "file:"+cfg.DBPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return 0, 0, err
	}
	var busy, logPages, done int
	err = c.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done)
	c.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 || done < logPages {
		return 0, 0, fmt.Errorf("checkpoint: %d of %d WAL pages copied", done, logPages)
	}
	for _, f := range []struct {
		suffix string
		n      *int64
	}{{"", &db}, {"-wal", &wal}} {
		fi, err := os.Stat(cfg.DBPath() + f.suffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		*f.n = fi.Size()
	}
	return db, wal, nil
}

// pgSchemaSize sums pg_total_relation_size over the tables of the schema the
// URL's search_path names (freshNamespace's).
func pgSchemaSize(ctx context.Context, dbURL string) (int64, error) {
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return 0, errors.New("invalid database url") // the parse error may echo a password
	}
	conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'm')`).Scan(&n)
	return n, err
}

// scaleTargets compares the last size with the first: read-uniform and
// search p99 (at most scaleP99Growth times), the marginal ingest rate (at
// least scaleIngestMin times). Nothing with fewer than two sizes.
func scaleTargets(rows []scaleRow) []scaleTarget {
	if len(rows) < 2 {
		return nil
	}
	a, b := &rows[0], &rows[len(rows)-1]
	var ts []scaleTarget
	for _, name := range []string{"read-uniform", "search"} {
		sa, sb := a.scenario(name), b.scenario(name)
		if sa == nil || sb == nil || sa.P99 <= 0 {
			continue
		}
		r := sb.P99 / sa.P99
		ts = append(ts, scaleTarget{Name: name + " p99", First: sa.P99, Last: sb.P99, Ratio: round3(r), Bound: scaleP99Growth,
			Met: r < scaleP99Growth})
	}
	if a.IngestTailPerS > 0 && b.IngestTailPerS > 0 {
		r := b.IngestTailPerS / a.IngestTailPerS
		ts = append(ts, scaleTarget{Name: "ingest resources/s", First: a.IngestTailPerS, Last: b.IngestTailPerS, Ratio: round3(r),
			Bound: scaleIngestMin, AtLeast: true, Met: r > scaleIngestMin})
	}
	return ts
}

// targetLine states a target's outcome.
func (t scaleTarget) line(first, last int) string {
	verdict := "**met**"
	if !t.Met {
		verdict = "**missed**"
	}
	if t.AtLeast {
		return fmt.Sprintf("%s from %s to %s resources: %s -> %s, %.2fx (%+.0f %%; target: falls by less than %.0f %%): %s",
			t.Name, thousands(first), thousands(last), thousands(int(t.First+0.5)), thousands(int(t.Last+0.5)), t.Ratio,
			(t.Ratio-1)*100, (1-t.Bound)*100, verdict)
	}
	return fmt.Sprintf("%s from %s to %s resources: %.2f ms -> %.2f ms, %.2fx (target: less than %.1fx): %s",
		t.Name, thousands(first), thousands(last), t.First, t.Last, t.Ratio, t.Bound, verdict)
}

// scaleScenarioNames are the scenarios of the run's rows, in run order.
func scaleScenarioNames(rows []scaleRow) []string {
	var names []string
	for _, r := range rows {
		for _, s := range r.Scenarios {
			if !slices.Contains(names, s.Name) {
				names = append(names, s.Name)
			}
		}
	}
	return names
}

// scaleCells are a row's cells, the table's and the docs' alike.
func scaleCells(r *scaleRow, names []string) []string {
	ingest, tail := "-", "-" // the previous step's overshoot reached this size
	if r.StepResources > 0 {
		ingest, tail = thousands(int(r.IngestPerS+0.5)), thousands(int(r.IngestTailPerS+0.5))
	}
	c := []string{thousands(r.Resources), thousands(r.Patients), ingest, tail,
		strconv.FormatFloat(float64(r.DBBytes)/(1<<20), 'f', 0, 64), strconv.FormatFloat(float64(r.WALBytes)/(1<<20), 'f', 0, 64), thousands(int(float64(r.DBBytes)/float64(max(r.Resources, 1)) + 0.5))}
	for _, n := range names {
		if s := r.scenario(n); s != nil {
			c = append(c, thousands(int(s.RPS+0.5)), strconv.FormatFloat(s.P99, 'f', 2, 64))
		} else {
			c = append(c, "", "")
		}
	}
	return append(c, strconv.FormatFloat(r.IngestPeakRSSMB, 'f', 0, 64), strconv.FormatFloat(r.ServePeakRSSMB, 'f', 0, 64),
		strconv.FormatFloat(r.Load1, 'f', 1, 64))
}

// scaleHeader is the table's header for the scenarios names.
func scaleHeader(names []string) []string {
	h := []string{"resources", "patients", "ingest res/s (step)", "ingest res/s (last 100k)", "database MiB", "WAL MiB", "bytes/resource"}
	for _, n := range names {
		h = append(h, n+" req/s", n+" p99 ms")
	}
	return append(h, "peak RSS MB ingest", "peak RSS MB serving", "load average")
}

// printScale prints the scale run's table and targets.
func printScale(w io.Writer, r *scaleResults) {
	fmt.Fprintf(w, "scale: %s, %d connections, %s per scenario, %d cores; ingest in Ingest calls of %d patients\n",
		r.Run.Store, r.Run.Connections, time.Duration(r.Run.DurationS*float64(time.Second)), r.Machine.Cores, r.Run.ChunkPatients)
	names := scaleScenarioNames(r.Rows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(scaleHeader(names), "\t")+"\t")
	for i := range r.Rows {
		fmt.Fprintln(tw, strings.Join(scaleCells(&r.Rows[i], names), "\t")+"\t")
	}
	tw.Flush()
	for _, t := range r.Targets {
		fmt.Fprintln(w, strings.ReplaceAll(t.line(r.Rows[0].Resources, r.Rows[len(r.Rows)-1].Resources), "**", ""))
	}
	for _, row := range r.Rows {
		for _, s := range row.Scenarios {
			if s.firstError != "" {
				fmt.Fprintf(w, "%s at %s resources: first error: %s\n", s.Name, thousands(row.Resources), s.firstError)
			}
		}
	}
}

// scaleChart is the scale run's chart file, in the output directory.
const scaleChart = "scale.svg"

// writeScale writes scale.json and scale.svg to dir.
func writeScale(dir string, r *scaleResults) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "scale.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, scaleChart), scaleSVG(r), 0o644)
}

// scaleSVG draws the cost curve: for each measure (the scenarios' p99, the
// marginal ingest rate, the database's bytes per resource), one bar per size
// whose length is the value relative to the first size's, with the target's
// bound as a dashed line where there is one.
func scaleSVG(r *scaleResults) []byte {
	type measure struct {
		name  string
		unit  func(float64) string
		value func(*scaleRow) float64
		bound float64
	}
	var ms []measure
	for _, n := range scaleScenarioNames(r.Rows) {
		bound := 0.0
		if n == "read-uniform" || n == "search" {
			bound = scaleP99Growth
		}
		ms = append(ms, measure{n + " p99", func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + " ms" },
			func(row *scaleRow) float64 {
				if s := row.scenario(n); s != nil {
					return s.P99
				}
				return 0
			}, bound})
	}
	ms = append(ms,
		measure{"ingest resources/s (last 100k)", func(v float64) string { return thousands(int(v+0.5)) + "/s" },
			func(row *scaleRow) float64 { return row.IngestTailPerS }, scaleIngestMin},
		measure{"database bytes per resource", func(v float64) string { return thousands(int(v+0.5)) + " B" },
			func(row *scaleRow) float64 { return float64(row.DBBytes) / float64(max(row.Resources, 1)) }, 0})

	const (
		w, left, right, top, barH, gap, groupGap, headH = 640, 110, 150, 56, 16, 4, 14, 18
	)
	n := len(r.Rows)
	h := top + len(ms)*(headH+n*(barH+gap)+groupGap) + 16
	// One scale for every group: ratios up to the largest, and the bounds.
	top1 := scaleP99Growth
	for _, m := range ms {
		if len(r.Rows) == 0 || m.value(&r.Rows[0]) <= 0 {
			continue
		}
		for i := range r.Rows {
			top1 = max(top1, m.value(&r.Rows[i])/m.value(&r.Rows[0]))
		}
	}
	span := float64(w-left-right) / top1
	var sizes []string
	for _, row := range r.Rows {
		sizes = append(sizes, thousands(row.Resources))
	}
	var buf bytes.Buffer
	svgOpen(&buf, w, h, left, "Cost curve: each size relative to the first ("+strings.Join(sizes, " / ")+" resources)",
		fmt.Sprintf("%s, %d connections, %s per scenario, %s; dashed: the target's bound",
			r.Run.Store, r.Run.Connections, time.Duration(r.Run.DurationS*float64(time.Second)), r.Machine.Date))
	y := top
	colors := []string{"#9bb7d4", "#3b6ea8", "#1f3f66", "#0d1f33"}
	for _, m := range ms {
		fmt.Fprintf(&buf, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", left, y+12, svgEsc(m.name))
		y += headH
		base := 0.0
		if n > 0 {
			base = m.value(&r.Rows[0])
		}
		for i := range r.Rows {
			v, ratio := m.value(&r.Rows[i]), 0.0
			if base > 0 {
				ratio = v / base
			}
			svgBar(&buf, left, y+i*(barH+gap), barH, ratio*span, ratio > 0, thousands(r.Rows[i].Resources),
				colors[min(i, len(colors)-1)], fmt.Sprintf("%.2fx (%s)", ratio, m.unit(v)))
		}
		if m.bound > 0 {
			x := float64(left) + m.bound*span
			fmt.Fprintf(&buf, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c0392b" stroke-dasharray="4 3"/>`+"\n",
				x, y-2, x, y+n*(barH+gap))
		}
		y += n*(barH+gap) + groupGap
	}
	fmt.Fprintf(&buf, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", left, top-4, left, h-12)
	// 1.0x: the first size.
	fmt.Fprintf(&buf, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#bbb" stroke-dasharray="1 3"/>`+"\n",
		float64(left)+span, top-4, float64(left)+span, h-12)
	buf.WriteString("</svg>\n")
	return buf.Bytes()
}

// appendScaleDocs appends the scale run's dated section to the Markdown
// file at path (appendDocsSection).
func appendScaleDocs(path, outDir string, r *scaleResults) error {
	return appendDocsSection(path, func(w *bufio.Writer) {
		m := r.Machine
		var sizes []string
		for _, row := range r.Rows {
			sizes = append(sizes, thousands(row.Resources))
		}
		fmt.Fprintf(w, "\n### %s - scale, %s resources, %s, %d connections, %s per scenario\n\n",
			m.Date, strings.Join(sizes, " / "), r.Run.Store, r.Run.Connections, time.Duration(r.Run.DurationS*float64(time.Second)))
		mem, cpu := machineText(m)
		var ev []string
		for _, row := range r.Rows {
			ev = append(ev, strconv.Itoa(row.EverythingSize))
		}
		fmt.Fprintf(w, "Machine: %s, %d cores, %s, %s %s. Seed %d; one store loaded in steps (Ingest calls of %d patients); "+
			"`everything` on a compartment of %s resources at each size. [chart](%s/%s)\n\n",
			cpu, m.Cores, mem, m.Go, m.OS, r.Run.Seed, r.Run.ChunkPatients, strings.Join(ev, " / "), relPath(path, outDir), scaleChart)
		names := scaleScenarioNames(r.Rows)
		h := scaleHeader(names)
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(h, " | "), strings.Repeat("---|", len(h)))
		for i := range r.Rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(scaleCells(&r.Rows[i], names), " | "))
		}
		if len(r.Targets) > 0 {
			fmt.Fprintln(w)
		}
		for _, t := range r.Targets {
			fmt.Fprintf(w, "- %s\n", t.line(r.Rows[0].Resources, r.Rows[len(r.Rows)-1].Resources))
		}
	})
}

// relPath is outDir relative to the directory of the file at path, with
// forward slashes (outDir itself when that fails).
func relPath(path, outDir string) string {
	rel := outDir
	if absOut, err1 := filepath.Abs(outDir); err1 == nil {
		if absDoc, err2 := filepath.Abs(filepath.Dir(path)); err2 == nil {
			if p, err3 := filepath.Rel(absDoc, absOut); err3 == nil {
				rel = p
			}
		}
	}
	return filepath.ToSlash(rel)
}
