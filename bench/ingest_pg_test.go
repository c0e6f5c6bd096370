package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
)

// BenchmarkIngestPostgres is BenchmarkIngest into a fresh PostgreSQL schema
// per iteration (KETABRIDGE_TEST_DATABASE_URL; skipped without it), in
// the bench's batches of ingestBatch records: the whole ingest path, for
// CPU profiles of the Go side (go test -bench IngestPostgres -cpuprofile).
// It reports the CPU time per resource of both sides: this process's, and
// that of the PostgreSQL backends the store's pool opened (read from /proc,
// so only with the server on this machine): on a machine loaded by others
// these move far less than resources/s. KB_BENCH_KEEP=1 keeps the schema
// (its name is logged) for a look at its tables and indexes.
func BenchmarkIngestPostgres(b *testing.B) { ingestPostgres(b, false) }

// BenchmarkIngestPostgresBulk is BenchmarkIngestPostgres inside a bulk load
// (store.BulkWriter, docs/design/security.md PERF-PG-3), its end (the
// index builds) included in the time and the CPU. The index builds' CPU
// lands on the store's backend only when the server builds without
// parallel workers: add max_parallel_maintenance_workers=0 to the URL to
// count all of it (the workers' processes are gone when it is read).
func BenchmarkIngestPostgresBulk(b *testing.B) { ingestPostgres(b, true) }

func ingestPostgres(b *testing.B, bulk bool) {
	url := os.Getenv("KETABRIDGE_TEST_DATABASE_URL")
	if url == "" {
		b.Skip("KETABRIDGE_TEST_DATABASE_URL not set")
	}
	raw, err := server.SynthRecords(100, 1, server.DemoStart)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m := mapping.New(mapping.Options{})
	var resources int
	var elapsed time.Duration
	var goCPU, pgCPU, wal float64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		u, app, drop := ingestSchema(ctx, b, url, i)
		st, err := postgres.Open(ctx, u, store.SystemClock{})
		if err != nil {
			b.Fatal(err)
		}
		svc := ingest.New(st, m, search.Extract, store.SystemClock{})
		b.StartTimer()
		start, goCPU0, lsn0 := time.Now(), cpuSeconds(), walLSN(b, url)
		end := func(context.Context) error { return nil }
		if bulk {
			if end, err = st.BeginBulk(ctx); err != nil {
				b.Fatal(err)
			}
		}
		for j := 0; j < len(raw); j += ingestBatch {
			_, sum, err := svc.Ingest(ctx, raw[j:min(j+ingestBatch, len(raw))])
			if err != nil || sum.Rejected > 0 {
				b.Fatalf("ingest: %v, %d rejected", err, sum.Rejected)
			}
			resources += sum.Resources
		}
		endStart := time.Now()
		if err := end(ctx); err != nil {
			b.Fatal(err)
		}
		if bulk {
			b.Logf("the load's end (the index builds) took %v", time.Since(endStart).Round(time.Millisecond))
		}
		elapsed += time.Since(start)
		goCPU += cpuSeconds() - goCPU0
		b.StopTimer()
		wal += walLSN(b, url) - lsn0
		pgCPU += backendCPU(b, url, app)
		st.Close()
		if os.Getenv("KB_BENCH_KEEP") != "" {
			b.Logf("kept %s", u)
		} else if err := drop(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(len(raw)), "records/op")
	reportIngest(b, resources, elapsed, goCPU, pgCPU)
	b.ReportMetric(wal/float64(resources), "wal-bytes/resource")
}

// walLSN is the server's current WAL insert position in bytes. The
// difference across an ingest is the WAL it wrote, and whatever else the
// server wrote meanwhile (other schemas, checkpoints' full-page images):
// compare runs on a quiet server, or pairs.
func walLSN(b *testing.B, url string) float64 {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n float64
	if err := conn.QueryRow(context.Background(), `SELECT pg_current_wal_lsn() - '0/0'`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// ingestSchema makes a fresh schema for iteration i and returns its URL,
// tagged with an application name (app) that backendCPU finds its
// backends by, and the function that drops it.
func ingestSchema(ctx context.Context, b *testing.B, url string, i int) (u, app string, drop func(context.Context) error) {
	u, drop, err := postgres.NewSchema(ctx, url, fmt.Sprintf("kb_benchingest_%d", time.Now().UnixNano()))
	if err != nil {
		b.Fatal(err)
	}
	app = fmt.Sprintf("kb_benchingest_%d", i)
	return u + "&application_name=" + app, app, drop
}

// reportIngest reports the resources/s and the CPU per resource of the Go
// process and of the PostgreSQL backends.
func reportIngest(b *testing.B, resources int, elapsed time.Duration, goCPU, pgCPU float64) {
	b.ReportMetric(float64(resources)/elapsed.Seconds(), "resources/s")
	b.ReportMetric(goCPU*1e6/float64(resources), "go-cpu-us/resource")
	b.ReportMetric(pgCPU*1e6/float64(resources), "pg-cpu-us/resource")
}

// backendCPU is the CPU time (user and system, seconds) the PostgreSQL
// backends of application app have used, read from /proc: the server must
// run on this machine (0 otherwise).
func backendCPU(b *testing.B, url, app string) float64 {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var ticks float64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: utime and stime
		// are the 12th and 13th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			ticks += u + s
		}
	}
	return ticks / 100 // USER_HZ
}

// BenchmarkIngestPostgresReplicas is BenchmarkIngestPostgres by two
// replicas at once (two stores on one schema, each with its own ingest
// service), each ingesting its own 50 patients after the shared reference
// records are stored (docs/design/security.md PERF-PG-2: batches of
// different patients overlap their index writes). It reports the total
// resources/s and the CPU per resource of both sides.
func BenchmarkIngestPostgresReplicas(b *testing.B) {
	url := os.Getenv("KETABRIDGE_TEST_DATABASE_URL")
	if url == "" {
		b.Skip("KETABRIDGE_TEST_DATABASE_URL not set")
	}
	gen := func(from, patients int) []json.RawMessage {
		var buf bytes.Buffer
		if _, err := synth.Generate(&buf, synth.Options{Patients: patients, From: from, Seed: 1, Start: server.DemoStart, LongCourse: server.DemoLongCourse}); err != nil {
			b.Fatal(err)
		}
		var out []json.RawMessage
		for line := range bytes.Lines(buf.Bytes()) {
			if l := bytes.TrimSpace(line); len(l) > 0 {
				out = append(out, json.RawMessage(l))
			}
		}
		return out
	}
	shared := gen(0, 0)
	halves := [2][]json.RawMessage{gen(1, 51), gen(51, 101)}
	ctx := context.Background()
	m := mapping.New(mapping.Options{})
	var resources int
	var elapsed time.Duration
	var goCPU, pgCPU float64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		u, app, drop := ingestSchema(ctx, b, url, i)
		var svcs [2]*ingest.Service
		var stores [2]*postgres.Store
		for r := range stores {
			var err error
			if stores[r], err = postgres.Open(ctx, u, store.SystemClock{}); err != nil {
				b.Fatal(err)
			}
			svcs[r] = ingest.New(stores[r], m, search.Extract, store.SystemClock{})
		}
		if _, sum, err := svcs[0].Ingest(ctx, shared); err != nil || sum.Rejected > 0 {
			b.Fatalf("ingest the shared records: %v, %d rejected", err, sum.Rejected)
		}
		b.StartTimer()
		start, goCPU0 := time.Now(), cpuSeconds()
		var wg sync.WaitGroup
		var sums [2]int
		var errs [2]error
		for r := range svcs {
			wg.Go(func() {
				for j := 0; j < len(halves[r]); j += ingestBatch {
					_, sum, err := svcs[r].Ingest(ctx, halves[r][j:min(j+ingestBatch, len(halves[r]))])
					if err == nil && sum.Rejected > 0 {
						err = fmt.Errorf("%d rejected", sum.Rejected)
					}
					if err != nil {
						errs[r] = err
						return
					}
					sums[r] += sum.Resources
				}
			})
		}
		wg.Wait()
		elapsed += time.Since(start)
		goCPU += cpuSeconds() - goCPU0
		b.StopTimer()
		for r := range errs {
			if errs[r] != nil {
				b.Fatalf("replica %d: %v", r, errs[r])
			}
			resources += sums[r]
		}
		pgCPU += backendCPU(b, url, app)
		for r := range stores {
			stores[r].Close()
		}
		if err := drop(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportIngest(b, resources, elapsed, goCPU, pgCPU)
}
