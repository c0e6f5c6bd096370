package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/ketabridge/ketabridge/store/postgres"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// The same micro-benchmarks as store/sqlite's, each on a fresh schema of the
// test database (KETABRIDGE_TEST_DATABASE_URL).

// BenchmarkApply writes batches of 1000 new records of one ~1 KB resource and
// 5 index rows each.
func BenchmarkApply(b *testing.B) {
	storetest.BenchApply(b, openFresh(b, storetest.NewFakeClock(storetest.T0)))
}

// BenchmarkApplyUnchanged re-applies batches whose bodies are unchanged (new
// record hashes): the common re-send.
func BenchmarkApplyUnchanged(b *testing.B) {
	storetest.BenchApplyUnchanged(b, openFresh(b, storetest.NewFakeClock(storetest.T0)))
}

// BenchmarkAuth measures the storage side of a refresh-token exchange.
func BenchmarkAuth(b *testing.B) {
	storetest.BenchAuth(b, openFresh(b, storetest.NewFakeClock(storetest.T0)))
}

// benchSearchSize is the number of Observations BenchmarkSearch loads.
const benchSearchSize = 20000

// searchSchema is the schema BenchmarkSearch loads on first use and reuses
// (benchmarks run several times per process); TestMain drops it.
var searchSchema struct {
	url  string
	drop func() error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if searchSchema.drop != nil {
		if err := searchSchema.drop(); err != nil {
			fmt.Fprintln(os.Stderr, "drop the search benchmark schema:", err)
		}
	}
	os.Exit(code)
}

// searchURL returns the URL of a schema holding the search benchmark's
// Observations, with fresh planner statistics.
func searchURL(b *testing.B) string {
	if searchSchema.url != "" {
		return searchSchema.url
	}
	u, drop := createSchema(b)
	searchSchema.drop = drop
	s, err := postgres.Open(context.Background(), u, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchLoad(b, s, benchSearchSize)
	if err := s.Analyze(context.Background()); err != nil {
		b.Fatal(err)
	}
	searchSchema.url = u
	return u
}

// BenchmarkSearch measures
// Observation?patient=X&code=Y&date=ge..&date=le..&_count=50 on a store of
// 20000 Observations (100 per patient, 8 codes, one per minute), reporting
// p50 and p99 latency.
func BenchmarkSearch(b *testing.B) {
	s, err := postgres.Open(context.Background(), searchURL(b), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchSearch(b, s, benchSearchSize)
}
