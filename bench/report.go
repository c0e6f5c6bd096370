package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// results is results.json: the machine, one row per scenario and the
// Run parameters needed to reproduce it.
type results struct {
	Machine   machine          `json:"machine"`
	Ingest    ingestInfo       `json:"ingest"`
	Scenarios []scenarioResult `json:"scenarios"`
	// Export is the export scenario's figures (nil when it did not run),
	// measured first, on the gateway at rest after the ingest.
	Export *exportInfo `json:"export,omitempty"`
	// ExportAfter is the same export repeated after the read scenarios
	// (full runs only): the process then also holds what they left.
	ExportAfter *exportInfo `json:"export_after,omitempty"`
	// PeakRSSMB is the highest per-scenario peak RSS of the serving phase
	// (the export's included).
	PeakRSSMB float64 `json:"peak_rss_mb"`
	Run       runInfo `json:"run"`
}

// machine describes where the run happened.
type machine struct {
	Date     string `json:"date"`
	CPU      string `json:"cpu,omitempty"`
	Cores    int    `json:"cores"`
	MemoryMB int    `json:"memory_mb,omitempty"`
	Go       string `json:"go"`
	OS       string `json:"os"`
}

// ingestInfo is the ingest phase of the run.
type ingestInfo struct {
	ResourcesPerS float64 `json:"resources_per_s"`
	Resources     int     `json:"resources"`
	Records       int     `json:"records"`
	Rejected      int     `json:"rejected"`
	Seconds       float64 `json:"seconds"`
	// PeakRSSMB is the process's peak RSS up to the end of ingest (the
	// records stream from a file, ingestBatch at a time).
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// Bulk reports that the ingest ran inside a bulk load.
	Bulk bool `json:"bulk"`
	// BulkEndSeconds is the part of Seconds the bulk load's end took
	// (search tables filled, indexes built; PERF-SQLB-7).
	BulkEndSeconds float64 `json:"bulk_end_s,omitempty"`
}

// runInfo holds the run's parameters.
type runInfo struct {
	Patients    int      `json:"patients"`
	Seed        int64    `json:"seed"`
	DurationS   float64  `json:"duration_s"`
	Connections int      `json:"connections"`
	Store       string   `json:"store"`
	Load        string   `json:"load"`
	RSSScope    string   `json:"rss_scope"`
	Types       []string `json:"uniform_types"`
	// EverythingSize is the compartment size $everything was measured on.
	EverythingSize int `json:"everything_resources"`
	// RSSEndAnonMB and RSSEndFileMB split the RSS at the end of the run into
	// anonymous pages (Go heap and stacks, SQLite page caches) and file-backed
	// ones (the binary and mapped files).
	RSSEndAnonMB float64 `json:"rss_end_anon_mb"`
	RSSEndFileMB float64 `json:"rss_end_file_mb"`
	// Audit is "on", or "off (bench baseline)" for a run with --audit-off.
	Audit string `json:"audit"`
}

// scenarioResult is one scenario's figures; the exported fields are the
// issue's JSON, the rest go to the table, the charts and the docs.
type scenarioResult struct {
	Name       string  `json:"name"`
	RPS        float64 `json:"rps"`
	P50        float64 `json:"p50_ms"`
	P95        float64 `json:"p95_ms"`
	P99        float64 `json:"p99_ms"`
	Max        float64 `json:"max_ms"`
	Errors     int     `json:"errors"`
	LimitRatio float64 `json:"limit_ratio"`
	// Connections is set when the scenario ran at its own number of
	// connections instead of the run's (pa-criteria: one).
	Connections int `json:"connections,omitempty"`
	// AuditEvents and AuditBytes are what the audit trail grew by during
	// the scenario: events, and bytes on disk of its tables and indexes.
	AuditEvents int64 `json:"audit_events"`
	AuditBytes  int64 `json:"audit_bytes"`
	// CPUPerRequestUS is the process's CPU time (gateway, load generator,
	// audit writer) per request of the scenario, in microseconds.
	CPUPerRequestUS float64 `json:"cpu_us_per_request,omitempty"`
	// CacheHitRatio is the read cache's hits over its lookups (every
	// store operation) during the scenario, from the gateway's
	// ketabridge_cache_requests_total; CacheLookups counts the lookups
	// (0: no cache, or none consulted).
	CacheHitRatio float64 `json:"cache_hit_ratio,omitempty"`
	CacheLookups  int64   `json:"cache_lookups,omitempty"`
	// P99Late is the p99 of the requests sent in the scenario's second
	// half: against P99, how much of the tail the start of the run made
	// (a cache still filling).
	P99Late float64 `json:"p99_late_ms,omitempty"`
	// WarmRequests and WarmSeconds are the untimed warm-up before the
	// scenario (Params.Warm): one request per patient, and how long they
	// took (the cache filling, at conns connections).
	WarmRequests int     `json:"warm_requests,omitempty"`
	WarmSeconds  float64 `json:"warm_s,omitempty"`
	// Writes, StaleReads and WriteLagMS are search-writes' writes
	// acknowledged during the scenario, the reads right after one that did
	// not show it (the target: none), and the mean time from a write's
	// acknowledgement to the answer of the read that checked it.
	Writes     int     `json:"writes,omitempty"`
	StaleReads int     `json:"stale_reads,omitempty"`
	WriteLagMS float64 `json:"write_lag_ms,omitempty"`
	// SearchHitRatio is search-writes' hit ratio of the search lookups
	// alone (the writes' own lookups are in CacheHitRatio).
	SearchHitRatio float64 `json:"search_hit_ratio,omitempty"`

	requests   uint64
	p90, mean  float64
	peakRSS    float64
	firstError string
}

// label is the scenario's name in the tables, with its connections when
// they are its own.
func (s scenarioResult) label() string {
	if s.Connections > 0 {
		return fmt.Sprintf("%s (%d conn.)", s.Name, s.Connections)
	}
	return s.Name
}

// finish sets the limit ratios and the overall peak RSS.
func (r *results) finish() {
	var limit float64
	for _, s := range r.Scenarios {
		if s.Name == "limit" {
			limit = s.RPS
		}
	}
	r.PeakRSSMB = 0
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if limit > 0 {
			s.LimitRatio = round3(s.RPS / limit)
		}
		r.PeakRSSMB = max(r.PeakRSSMB, s.peakRSS)
	}
	for _, e := range []*exportInfo{r.Export, r.ExportAfter} {
		if e != nil {
			r.PeakRSSMB = max(r.PeakRSSMB, e.PeakRSSMB)
		}
	}
}

// machineInfo reads the CPU model and memory from /proc where present.
func machineInfo() machine {
	m := machine{
		Date:  time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.Atoi(f[1]); err == nil {
					m.MemoryMB = kb / 1024
				}
			}
		}
	}
	return m
}

// printTable prints the run's one table.
func printTable(w io.Writer, r *results) {
	fmt.Fprintf(w, "ingest: %d records, %d resources in %.1f s: %.0f resources/s (%d rejected, peak RSS %.0f MB)\n",
		r.Ingest.Records, r.Ingest.Resources, r.Ingest.Seconds, r.Ingest.ResourcesPerS, r.Ingest.Rejected, r.Ingest.PeakRSSMB)
	if r.Ingest.Bulk {
		fmt.Fprintf(w, "ingest: a bulk load; its end (search tables filled, indexes built) took %.1f s of it\n", r.Ingest.BulkEndSeconds)
	}
	fmt.Fprintf(w, "%d connections, %s per scenario; gateway, SQLite and load generator in one process on %d cores; peak RSS: %s\n",
		r.Run.Connections, time.Duration(r.Run.DurationS*float64(time.Second)), r.Machine.Cores, r.Run.RSSScope)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\tlimit ratio\tpeak RSS MB\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%.2f\t%.0f\t\n",
			s.label(), s.RPS, s.P50, s.P95, s.P99, s.Max, s.Errors, s.LimitRatio, s.peakRSS)
	}
	tw.Flush()
	if e := r.Export; e != nil {
		fmt.Fprintf(w, "%s\n", exportLine(e))
	}
	if e := r.ExportAfter; e != nil {
		fmt.Fprintf(w, "%s\n", exportAfterLine(e))
	}
	printAudit(w, r)
	fmt.Fprintf(w, "RSS at the end: %.0f MB anonymous (Go heap, SQLite page caches), %.0f MB file-backed (the binary, mapped files)\n",
		r.Run.RSSEndAnonMB, r.Run.RSSEndFileMB)
	for _, s := range r.Scenarios {
		if s.firstError != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", s.Name, s.firstError)
		}
	}
}

// printAudit prints what the audit trail grew by in each scenario: bytes on
// disk per AuditEvent and per million requests (docs/benchmarks.md).
func printAudit(w io.Writer, r *results) {
	fmt.Fprintf(w, "audit trail: %s\n", r.Run.Audit)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests\tCPU us/request\taudit events\taudit bytes\tbytes/event\tMB per 1M requests\t")
	for _, s := range r.Scenarios {
		perEvent := 0.0
		if s.AuditEvents > 0 {
			perEvent = float64(s.AuditBytes) / float64(s.AuditEvents)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%d\t%d\t%.1f\t%.1f\t\n", s.label(), s.requests, s.CPUPerRequestUS, s.AuditEvents, s.AuditBytes,
			perEvent, float64(s.AuditBytes)/float64(max(s.requests, 1)))
	}
	tw.Flush()
}

// joinPath joins an output path for display.
func joinPath(dir, name string) string { return filepath.Join(dir, name) }

// writeOutputs writes results.json and latency-<scenario>.svg to dir.
func writeOutputs(dir string, r *results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	for _, s := range r.Scenarios {
		if err := os.WriteFile(filepath.Join(dir, chartName(s.Name)), latencySVG(s, r), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func chartName(scenario string) string { return "latency-" + scenario + ".svg" }

// latencySVG draws a scenario's latency percentiles (p50, p90, p95, p99,
// max) as horizontal bars on a linear millisecond scale.
func latencySVG(s scenarioResult, r *results) []byte {
	bars := []struct {
		label string
		v     float64
	}{{"p50", s.P50}, {"p90", s.p90}, {"p95", s.P95}, {"p99", s.P99}, {"max", s.Max}}
	const (
		w, left, right, top, barH, gap = 560, 50, 90, 56, 22, 10
	)
	h := top + len(bars)*(barH+gap) + 24
	top1 := 1e-9
	for _, b := range bars {
		top1 = max(top1, b.v)
	}
	span := float64(w - left - right)
	var buf bytes.Buffer
	svgOpen(&buf, w, h, left, s.Name+": latency (ms)",
		fmt.Sprintf("%s req/s, %d requests, %d connections, %d errors, %s",
			strconv.FormatFloat(s.RPS, 'f', 0, 64), s.requests, r.Run.Connections, s.Errors, r.Machine.Date))
	for i, b := range bars {
		svgBar(&buf, left, top+i*(barH+gap), barH, b.v/top1*span, b.v > 0, b.label, "#3b6ea8",
			strconv.FormatFloat(b.v, 'f', 2, 64)+" ms")
	}
	fmt.Fprintf(&buf, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", left, top-4, left, h-20)
	buf.WriteString("</svg>\n")
	return buf.Bytes()
}

// svgEsc escapes s for SVG text.
func svgEsc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// svgOpen starts a w x h chart on a white ground with a bold title and a
// grey subtitle at x left: the charts' common head.
func svgOpen(buf *bytes.Buffer, w, h, left int, title, subtitle string) {
	fmt.Fprintf(buf, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(buf, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", w, h)
	fmt.Fprintf(buf, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, svgEsc(title))
	fmt.Fprintf(buf, `<text x="%d" y="38" fill="#555">%s</text>`+"\n", left, svgEsc(subtitle))
}

// svgBar draws one horizontal bar of width bw from x left at y, labelled on
// its left and followed by text; a positive value's bar is at least 1 px.
func svgBar(buf *bytes.Buffer, left, y, barH int, bw float64, positive bool, label, color, text string) {
	if positive && bw < 1 {
		bw = 1
	}
	fmt.Fprintf(buf, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+barH/2+4, svgEsc(label))
	fmt.Fprintf(buf, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, bw, barH, color)
	fmt.Fprintf(buf, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(left)+bw+6, y+barH/2+4, svgEsc(text))
}

// DocsSection heads the appended runs in docs/benchmarks.md.
const DocsSection = "## Runs of `ketabridge-bench`"

// appendDocsSection appends a section to the Markdown file at path
// (created when missing), under DocsSection (the heading and its
// introduction written when missing), keeping everything already there;
// body writes the section.
func appendDocsSection(path string, body func(w *bufio.Writer)) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if len(old) == 0 {
		fmt.Fprintln(w, "# Benchmarks")
	} else if !bytes.HasSuffix(old, []byte("\n")) {
		fmt.Fprintln(w)
	}
	if !bytes.Contains(old, []byte(DocsSection)) {
		fmt.Fprintln(w)
		fmt.Fprintln(w, DocsSection)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Appended by `make bench` (`ketabridge-bench`, vegeta as a library): each scenario runs unpaced at a fixed")
		fmt.Fprintln(w, "number of connections for a fixed time; `limit` serves the read-hot responses' bytes from memory with a bare")
		fmt.Fprintln(w, "`net/http` handler (no auth), and the limit ratio is requests/s divided by the limit's. The gateway, SQLite")
		fmt.Fprintln(w, "and the load generator share one process and the same cores; peak RSS is that process's VmHWM.")
	}
	body(w)
	if err := w.Flush(); err != nil {
		return err
	}
	return appendFile(path, b.Bytes())
}

// machineText is how a report names the machine's memory and CPU.
func machineText(m machine) (mem, cpu string) {
	mem, cpu = "memory unknown", m.CPU
	if m.MemoryMB > 0 {
		mem = fmt.Sprintf("%.1f GiB", float64(m.MemoryMB)/1024)
	}
	if cpu == "" {
		cpu = "CPU unknown"
	}
	return mem, cpu
}

// appendDocs appends the run's dated row set to the Markdown file at
// path (appendDocsSection); chart links are relative to the file.
func appendDocs(path, outDir string, r *results) error {
	rel := relPath(path, outDir)
	return appendDocsSection(path, func(w *bufio.Writer) {
		m := r.Machine
		fmt.Fprintln(w)
		fmt.Fprintf(w, "### %s - %s patients, %s resources, %s, %d connections, %s per scenario\n\n",
			m.Date, thousands(r.Run.Patients), thousands(r.Ingest.Resources), r.Run.Store, r.Run.Connections,
			time.Duration(r.Run.DurationS*float64(time.Second)))
		mem, cpu := machineText(m)
		fmt.Fprintf(w, "Machine: %s, %d cores, %s, %s %s. Seed %d; `$everything` on a %d-resource compartment; read-uniform over %s.\n",
			cpu, m.Cores, mem, m.Go, m.OS, r.Run.Seed, r.Run.EverythingSize, strings.Join(r.Run.Types, ", "))
		mode := "plain"
		if r.Ingest.Bulk {
			mode = "bulk load"
		}
		fmt.Fprintf(w, "Ingest (%s, records streamed from a file %d at a time): %s records, %s resources in %.1f s: **%s resources/s** (%d rejected; peak RSS %.0f MB).\n",
			mode, ingestBatch, thousands(r.Ingest.Records), thousands(r.Ingest.Resources), r.Ingest.Seconds,
			thousands(int(r.Ingest.ResourcesPerS+0.5)), r.Ingest.Rejected, r.Ingest.PeakRSSMB)
		fmt.Fprintf(w, "RSS at the end of the run: %.0f MB anonymous (Go heap and stacks, SQLite page caches), %.0f MB file-backed (the binary).\n\n",
			r.Run.RSSEndAnonMB, r.Run.RSSEndFileMB)
		if len(r.Scenarios) > 0 {
			fmt.Fprintln(w, "| scenario | requests/s | p50 ms | p95 ms | p99 ms | max ms | errors | limit ratio | peak RSS MB | chart |")
			fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
		}
		for _, s := range r.Scenarios {
			fmt.Fprintf(w, "| %s | %s | %.2f | %.2f | %.2f | %.2f | %d | %.2f | %.0f | [svg](%s/%s) |\n",
				s.label(), thousands(int(s.RPS+0.5)), s.P50, s.P95, s.P99, s.Max, s.Errors, s.LimitRatio, s.peakRSS,
				rel, chartName(s.Name))
		}
		if e := r.Export; e != nil {
			fmt.Fprintf(w, "\n%s\n", exportLine(e))
		}
		if e := r.ExportAfter; e != nil {
			fmt.Fprintf(w, "\n%s\n", exportAfterLine(e))
		}
	})
}

// exportAfterLine is the sentence of the export repeated after the read
// scenarios.
func exportAfterLine(e *exportInfo) string {
	return exportSentence("The same export repeated after the read scenarios (the process also holding what they left, the read cache full): a system `$export`", e)
}

// exportLine is the export scenario's sentence of the table and the docs.
func exportLine(e *exportInfo) string {
	return exportSentence("Export: a system `$export`, run first on the gateway at rest after the ingest,", e)
}

// exportSentence describes an export run, introduced by what.
func exportSentence(what string, e *exportInfo) string {
	cpu := ""
	if e.CPUSeconds > 0 {
		cpu = fmt.Sprintf(" The process (gateway and downloading client) used %.1f s of CPU for it: %s resources per CPU-second.",
			e.CPUSeconds, thousands(int(e.ResourcesPerCPUS+0.5)))
	}
	if p := e.PeakParts; p != nil {
		cpu += fmt.Sprintf(" At its highest sample the RSS (%.0f MB) held %.0f MB of the Go runtime (a heap of %.0f MB live at the last collection, "+
			"its goal %.0f MB, %.0f MB free not yet returned), %.0f MB of other anonymous memory (SQLite's page caches) and %.0f MB file-backed (the binary).",
			p.RSSMB, p.GoMB, p.HeapLiveMB, p.HeapGoalMB, p.HeapFreeMB, p.OtherMB, p.FileMB)
	}
	return fmt.Sprintf("%s of %s resources (%d files, %.1f MB of NDJSON) from kick-off to the last byte downloaded in %.2f s "+
		"(the job's manifest after %.2f s): **%s resources/s**, peak RSS %.0f MB, load average %.2f (design target: >= 200,000 resources/s, peak RSS < 150 MB).%s",
		what, thousands(e.Resources), e.Files, float64(e.Bytes)/1e6, e.Seconds, e.JobSeconds,
		thousands(int(e.ResourcesPerS+0.5)), e.PeakRSSMB, e.Load1, cpu)
}

// appendFile appends b to the file at path, created when missing.
func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// thousands formats n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
