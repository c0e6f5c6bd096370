package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/bench"
)

// TestBench runs `ketabridge-bench --small` with tiny durations and checks the
// outputs: results.json with every scenario, each with requests served and
// no errors, a chart per scenario, and the docs row appended after the
// existing content.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("bench")
	}
	out := t.TempDir()
	docs := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	const before = "# Benchmarks\n\nearlier rows\n"
	if err := os.MkdirAll(filepath.Dir(docs), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(docs, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--small", "--patients", "8", "--duration", "300ms",
		"--out", out, "--docs", docs}, &stdout, &stderr, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Machine   map[string]any `json:"machine"`
		Ingest    map[string]any `json:"ingest"`
		Scenarios []struct {
			Name       string
			RPS        float64  `json:"rps"`
			P50        float64  `json:"p50_ms"`
			P95        float64  `json:"p95_ms"`
			P99        float64  `json:"p99_ms"`
			Max        float64  `json:"max_ms"`
			Errors     *int     `json:"errors"`
			LimitRatio *float64 `json:"limit_ratio"`
			Conns      int      `json:"connections"`
			AuditEv    int64    `json:"audit_events"`
			AuditBytes int64    `json:"audit_bytes"`
			Writes     int      `json:"writes"`
			StaleReads int      `json:"stale_reads"`
		} `json:"scenarios"`
		PeakRSSMB *float64 `json:"peak_rss_mb"`
		Export    *struct {
			ResourcesPerS float64 `json:"resources_per_s"`
			Resources     int     `json:"resources"`
			Files         int     `json:"files"`
			Bytes         int64   `json:"bytes"`
			Seconds       float64 `json:"seconds"`
			JobSeconds    float64 `json:"job_seconds"`
			PeakRSSMB     float64 `json:"peak_rss_mb"`
			CPUSeconds    float64 `json:"cpu_seconds"`
			PerCPUSecond  float64 `json:"resources_per_cpu_s"`
		} `json:"export"`
		ExportAfter *struct {
			Resources int     `json:"resources"`
			PeakRSSMB float64 `json:"peak_rss_mb"`
		} `json:"export_after"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if rps, _ := res.Ingest["resources_per_s"].(float64); rps <= 0 {
		t.Errorf("ingest.resources_per_s = %v", res.Ingest["resources_per_s"])
	}
	if bulk, ok := res.Ingest["bulk"].(bool); !ok || bulk {
		t.Errorf("ingest.bulk = %v, want false (a plain ingest unless --bulk-ingest)", res.Ingest["bulk"])
	}
	if cores, _ := res.Machine["cores"].(float64); cores < 1 {
		t.Errorf("machine.cores = %v", res.Machine["cores"])
	}
	if res.PeakRSSMB == nil {
		t.Error("peak_rss_mb missing")
	}
	names := []string{"read-hot", "read-uniform", "search", "search-writes", "search-include", "search-assessments", "search-payer", "everything", "everything-default", "pa-criteria", "limit"}
	if len(res.Scenarios) != len(names) {
		t.Fatalf("got %d scenarios, want %d", len(res.Scenarios), len(names))
	}
	doc, err := os.ReadFile(docs)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			s := res.Scenarios[i]
			if s.Name != name {
				t.Fatalf("scenario %d is %q, want %q", i, s.Name, name)
			}
			if s.RPS <= 0 || s.P50 <= 0 || s.P95 < s.P50 || s.Max < s.P99 || s.P99 < s.P95 {
				t.Errorf("rps %v p50 %v p99 %v max %v", s.RPS, s.P50, s.P99, s.Max)
			}
			if s.Errors == nil || *s.Errors != 0 {
				t.Errorf("errors = %v, want 0", s.Errors)
			}
			if s.LimitRatio == nil || *s.LimitRatio <= 0 {
				t.Errorf("limit_ratio = %v", s.LimitRatio)
			}
			// Every gateway read is audited; the limit serves no gateway
			// request. (A few dozen events may fit in the pages' free
			// space: bytes are checked over the run, below.)
			if name != "limit" && (s.AuditEv <= 0 || s.AuditBytes < 0) {
				t.Errorf("audit growth = %d events, %d bytes; want events > 0", s.AuditEv, s.AuditBytes)
			}
			// search-writes changed records while it ran, and every search
			// right after a write showed it.
			if wrote := name == "search-writes"; wrote != (s.Writes > 0) || s.StaleReads != 0 {
				t.Errorf("writes = %d, stale reads = %d", s.Writes, s.StaleReads)
			}
			svg, err := os.ReadFile(filepath.Join(out, "latency-"+name+".svg"))
			if err != nil || !bytes.HasPrefix(svg, []byte("<svg")) {
				t.Errorf("chart: %v, %.20q", err, svg)
			}
			// pa-criteria runs on one connection (its target is a
			// latency) and says so; the others at the run's.
			label := name
			if want := map[bool]int{true: 1}[name == "pa-criteria"]; s.Conns != want {
				t.Errorf("connections = %d, want %d", s.Conns, want)
			} else if want > 0 {
				label = name + " (1 conn.)"
			}
			if !strings.Contains(stdout.String(), label+"  ") {
				t.Errorf("the table has no %s row:\n%s", label, stdout.String())
			}
			if !strings.Contains(string(doc), "| "+label+" |") || !strings.Contains(string(doc), "latency-"+name+".svg") {
				t.Errorf("docs have no %s row", name)
			}
		})
	}
	var auditBytes int64
	for _, s := range res.Scenarios {
		auditBytes += s.AuditBytes
	}
	if auditBytes <= 0 || !strings.Contains(stdout.String(), "bytes/event") {
		t.Errorf("the audit trail grew by %d bytes over the run; stdout:\n%s", auditBytes, stdout.String())
	}
	t.Run("export", func(t *testing.T) {
		e := res.Export
		if e == nil {
			t.Fatal("results.json has no export")
		}
		// Every resource ingested is exported (the store also holds the
		// gateway's own conformance resources).
		ingested, _ := res.Ingest["resources"].(float64)
		if e.Resources < int(ingested) || e.Files < 1 || e.Bytes <= int64(e.Resources) || e.ResourcesPerS <= 0 ||
			e.Seconds < e.JobSeconds || e.JobSeconds <= 0 || e.PeakRSSMB < 0 {
			t.Errorf("export %+v (ingested %v)", *e, ingested)
		}
		if runtime.GOOS == "linux" && (e.CPUSeconds <= 0 || e.PerCPUSecond <= 0) {
			t.Errorf("export CPU time %v s, %v resources per CPU-second", e.CPUSeconds, e.PerCPUSecond)
		}
		// A full run repeats the export after the read scenarios; the
		// snapshot holds the same resources both times (the scenarios only
		// read).
		if a := res.ExportAfter; a == nil || a.Resources != e.Resources || a.PeakRSSMB < 0 {
			t.Errorf("export after the scenarios %+v, want %d resources", a, e.Resources)
		}
		for _, out := range []string{stdout.String(), string(doc)} {
			if !strings.Contains(out, "Export: a system `$export`, run first on the gateway at rest after the ingest, of ") ||
				!strings.Contains(out, "The same export repeated after the read scenarios") || !strings.Contains(out, "resources/s") {
				t.Errorf("no export lines in:\n%s", out)
			}
		}
	})
	if !strings.HasPrefix(string(doc), before) || !strings.Contains(string(doc), bench.DocsSection) {
		t.Errorf("docs lost their content or the section heading:\n%s", doc)
	}
}

// TestScale runs `ketabridge-bench --scale` at two tiny sizes with tiny
// durations and checks the outputs: scale.json with a row per size (the
// store grown to at least each size, ingest and every scale scenario
// measured without errors, the database's size), the chart, the docs
// section appended after the existing content.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("bench")
	}
	out := t.TempDir()
	docs := filepath.Join(t.TempDir(), "benchmarks.md")
	const before = "# Benchmarks\n\nearlier rows\n"
	if err := os.WriteFile(docs, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	code := run(context.Background(), []string{"--scale", "2k,5k", "--duration", "300ms", "--connections", "4",
		"--out", out, "--docs", docs, "--cpuprofile", prof}, &stdout, &stderr, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "scale.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Rows []struct {
			Size, Resources, Patients int
			StepResources             int     `json:"step_resources"`
			IngestPerS                float64 `json:"ingest_resources_per_s"`
			IngestTailPerS            float64 `json:"ingest_tail_resources_per_s"`
			DBBytes                   int64   `json:"db_bytes"`
			Scenarios                 []struct {
				Name   string
				RPS    float64 `json:"rps"`
				P99    float64 `json:"p99_ms"`
				Errors int     `json:"errors"`
				// The read cache (on by default) was consulted, and
				// the share of its lookups that hit reported.
				Lookups  int64   `json:"cache_lookups"`
				HitRatio float64 `json:"cache_hit_ratio"`
				// --scale warms the patient-scoped scenarios: one
				// request per patient.
				Warm int `json:"warm_requests"`
			}
		}
		Targets []struct{ Name string }
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 || len(res.Targets) != 3 {
		t.Fatalf("%d rows, %d targets, want 2 and 3: %s", len(res.Rows), len(res.Targets), b)
	}
	for i, size := range []int{2000, 5000} {
		r := res.Rows[i]
		if r.Size != size || r.Resources < size || r.IngestPerS <= 0 || r.IngestTailPerS <= 0 || r.DBBytes <= 0 {
			t.Errorf("row %d: %+v", i, r)
		}
		if i > 0 && (r.Patients <= res.Rows[0].Patients || r.StepResources != r.Resources-res.Rows[0].Resources) {
			t.Errorf("row %d did not grow the store of row 0: %+v after %+v", i, r, res.Rows[0])
		}
		var names []string
		for _, s := range r.Scenarios {
			names = append(names, s.Name)
			if s.RPS <= 0 || s.P99 <= 0 || s.Errors != 0 || s.Lookups <= 0 || s.HitRatio < 0 || s.HitRatio > 1 {
				t.Errorf("size %d, %s: %+v", size, s.Name, s)
			}
			if warmed := s.Name == "search" || s.Name == "everything-default"; warmed != (s.Warm == r.Patients) {
				t.Errorf("size %d, %s: %d warm-up requests for %d patients", size, s.Name, s.Warm, r.Patients)
			}
		}
		// One CPU profile per size, named by the resources it held.
		if fi, err := os.Stat(prof + "." + strconv.Itoa(r.Resources)); err != nil || fi.Size() == 0 {
			t.Errorf("size %d: no CPU profile of its own: %v", size, err)
		}
		if !slices.Equal(names, bench.ScaleScenarios) {
			t.Errorf("size %d: scenarios %v, want %v", size, names, bench.ScaleScenarios)
		}
	}
	if svg, err := os.ReadFile(filepath.Join(out, "scale.svg")); err != nil || !bytes.HasPrefix(svg, []byte("<svg")) {
		t.Errorf("chart: %v, %.20q", err, svg)
	}
	doc, err := os.ReadFile(docs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(doc), before) || !strings.Contains(string(doc), bench.DocsSection) ||
		!strings.Contains(string(doc), "- scale, ") || !strings.Contains(stdout.String(), "search p99 from ") {
		t.Errorf("docs or table lack the run:\n%s\n%s", doc, stdout.String())
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		out  string // substring of stdout (code 0) or stderr
	}{
		{"help", []string{"--help"}, 0, "--compare"},
		{"help lists the shared flags", []string{"-h"}, 0, "KETABRIDGE_DATABASE_URL"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"unknown scenario", []string{"--scenarios", "read-hot,fly"}, 2, `unknown scenario "fly"`},
		{"bad configuration", []string{"--database-url", "mysql://db/kb"}, 2, "invalid --database-url"},
		{"no connections", []string{"--connections", "0"}, 2, "--connections"},
		{"positional argument", []string{"extra"}, 2, "unexpected argument"},
		{"help lists --scale", []string{"--help"}, 0, "--scale SIZES"},
		{"scale sizes not increasing", []string{"--scale", "1m,100k"}, 2, "--scale: sizes must increase"},
		{"scale size not a number", []string{"--scale", "lots"}, 2, `--scale: size "lots"`},
		{"scale with compare", []string{"--scale", "100k", "--compare"}, 2, "separate runs"},
		{"scale with patients", []string{"--scale", "100k", "--patients", "10"}, 2, "--patients does not apply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr, func(string) string { return "" })
			got := stderr.String()
			if tc.code == 0 {
				got = stdout.String()
			}
			if code != tc.code || !strings.Contains(got, tc.out) {
				t.Errorf("exit %d, want %d; output %q, want %q", code, tc.code, got, tc.out)
			}
		})
	}
}

// TestBenchAuditOff: --audit-off (the harness's baseline) serves the reads
// without writing AuditEvents, says so, and appends no docs row by default.
func TestBenchAuditOff(t *testing.T) {
	if testing.Short() {
		t.Skip("bench")
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--small", "--patients", "4", "--duration", "300ms", "--scenarios", "read-hot",
		"--out", out, "--audit-off"}, &stdout, &stderr, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Scenarios []struct {
			RPS     float64 `json:"rps"`
			AuditEv int64   `json:"audit_events"`
		} `json:"scenarios"`
		Run struct {
			Audit string `json:"audit"`
		} `json:"run"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Scenarios) != 1 || res.Scenarios[0].RPS <= 0 || res.Scenarios[0].AuditEv != 0 {
		t.Errorf("scenarios = %+v, want read-hot served with no audit events", res.Scenarios)
	}
	if !strings.HasPrefix(res.Run.Audit, "off") || !strings.Contains(stdout.String(), "audit trail: off") {
		t.Errorf("run.audit = %q; stdout:\n%s", res.Run.Audit, stdout.String())
	}
}

// TestBenchWaitProfile: --waitprofile (PERF-ST-14) writes the scenario's
// block and mutex profiles and trace and prints its waiting and its
// handlers' latency shares; --pace runs the scenario open loop.
func TestBenchWaitProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("bench")
	}
	dir := t.TempDir()
	prefix := filepath.Join(dir, "w")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--small", "--patients", "4", "--duration", "300ms", "--scenarios", "read-hot",
		"--out", dir, "--waitprofile", prefix, "--pace", "200"}, &stdout, &stderr, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr.String())
	}
	for _, ext := range []string{"block", "mutex", "trace"} {
		if fi, err := os.Stat(prefix + ".read-hot." + ext); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", ext, err)
		}
	}
	for _, s := range []string{"bench: read-hot waiting: GC cycles", "runnable waiting for a P", "bench: read-hot in the gateway's handlers", "over 5 ms"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
		}
	}
}
