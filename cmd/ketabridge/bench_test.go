package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// BenchmarkIngest measures the whole ingest path (decode, validate,
// reference check, map, index, SQLite write) over synthetic records into a
// fresh store per iteration, and reports FHIR resources per second.
func BenchmarkIngest(b *testing.B) {
	raw, err := synthRecords(100, 1, demoStart)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m := mapping.New(mapping.Options{Canonical: "http://localhost:8080/fhir"})
	var resources int
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), store.SystemClock{})
		if err != nil {
			b.Fatal(err)
		}
		svc := ingest.New(st, m, search.Extract, store.SystemClock{})
		b.StartTimer()
		start := time.Now()
		_, sum, err := svc.Ingest(ctx, raw)
		elapsed += time.Since(start)
		if err != nil || sum.Rejected > 0 {
			b.Fatalf("ingest: %v, %d rejected", err, sum.Rejected)
		}
		resources += sum.Resources
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(resources)/elapsed.Seconds(), "resources/s")
	b.ReportMetric(float64(len(raw)), "records/op")
}

// TestBenchCommand runs the bench subcommand at a tiny size, so it stays
// working.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("bench")
	}
	code := run(context.Background(), []string{"bench", "--patients", "2", "--clients", "2", "--requests", "20"},
		env{stdout: io.Discard, stderr: io.Discard, getenv: envOf(nil)})
	if code != 0 {
		t.Fatalf("bench exited %d", code)
	}
}
