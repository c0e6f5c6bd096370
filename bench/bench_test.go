package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// BenchmarkIngest measures the whole ingest path (decode, validate,
// reference check, map, index, SQLite write) over synthetic records into a
// fresh store per iteration, and reports FHIR resources per second.
func BenchmarkIngest(b *testing.B) {
	raw, err := server.SynthRecords(100, 1, server.DemoStart)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m := mapping.New(mapping.Options{})
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

// TestThousands checks the docs' number format.
func TestThousands(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		want string
	}{
		{"small", 7, "7"}, {"three digits", 999, "999"}, {"four digits", 1000, "1,000"},
		{"million", 1234567, "1,234,567"}, {"negative", -12345, "-12,345"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := thousands(tc.n); got != tc.want {
				t.Errorf("thousands(%d) = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
}
