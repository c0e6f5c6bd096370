package sqlite_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// BenchmarkApply writes batches of 1000 new records of one ~1 KB resource and
// 5 index rows each.
func BenchmarkApply(b *testing.B) {
	storetest.BenchApply(b, openTemp(b, storetest.NewFakeClock(storetest.T0)))
}

// BenchmarkApplyUnchanged re-applies batches whose bodies are unchanged (new
// record hashes): the common re-send.
func BenchmarkApplyUnchanged(b *testing.B) {
	storetest.BenchApplyUnchanged(b, openTemp(b, storetest.NewFakeClock(storetest.T0)))
}

// BenchmarkAuth measures the storage side of a refresh-token exchange.
func BenchmarkAuth(b *testing.B) {
	storetest.BenchAuth(b, openTemp(b, storetest.NewFakeClock(storetest.T0)))
}

// benchSize is the number of Observations BenchmarkSearch loads:
// KETABRIDGE_BENCH_RESOURCES, default 20000 (set 1000000 for the p99 target).
func benchSize(b *testing.B) int {
	if v := os.Getenv("KETABRIDGE_BENCH_RESOURCES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("KETABRIDGE_BENCH_RESOURCES=%q: want an integer >= 1000", v)
		}
		return n
	}
	return 20000
}

// benchDir holds databases the benchmarks build once per process.
var benchDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		_ = os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

var searchDBs = map[int]string{}

// searchDB returns the path of a database of n bench Observations, built on
// first use (benchmarks run several times per process).
func searchDB(b *testing.B, n int) string {
	if p, ok := searchDBs[n]; ok {
		return p
	}
	if benchDir == "" {
		d, err := os.MkdirTemp("", "ketabridge-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchDir = d
	}
	path := filepath.Join(benchDir, fmt.Sprintf("search-%d.db", n))
	s, err := sqlite.Open(b.Context(), path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	storetest.BenchLoad(b, s, n)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	searchDBs[n] = path
	return path
}

// BenchmarkSearch measures
// Observation?patient=X&code=Y&date=ge..&date=le..&_count=50 on a store of
// KETABRIDGE_BENCH_RESOURCES Observations (100 per patient, 8 codes, one per
// minute), reporting p50 and p99 latency.
func BenchmarkSearch(b *testing.B) {
	n := benchSize(b)
	s, err := sqlite.Open(b.Context(), searchDB(b, n), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if plan, err := s.ExplainSearch(b.Context(), storetest.BenchSearchQuery(rand.New(rand.NewPCG(1, 1)), n)); err == nil {
		b.Logf("query plan:\n%s", plan)
	}
	storetest.BenchSearch(b, s, n)
}

// BenchmarkEverything measures Patient/$everything with _count=50 over a
// compartment of 100 Observations on the BenchmarkSearch database: a page
// and the compartment's total (PERF-SQLB-3: one pass for both).
func BenchmarkEverything(b *testing.B) {
	n := benchSize(b)
	s, err := sqlite.Open(b.Context(), searchDB(b, n), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchEverything(b, s, n, 50)
}

// openSearch opens the BenchmarkSearch database of n Observations and logs
// the plan of q's shape.
func openSearch(b *testing.B, n int, q store.Query) *sqlite.Store {
	s, err := sqlite.Open(b.Context(), searchDB(b, n), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if plan, err := s.ExplainSearch(b.Context(), q); err == nil {
		b.Logf("query plan:\n%s", plan)
	}
	return s
}

// BenchmarkSearchAccess is BenchmarkSearch's search made alternately by
// an unrestricted client and by a payer client, under an access
// restriction of 2,000 patients in 3 terms (storetest.BenchAccess).
// Design target: access/p50 at most 1.2.
func BenchmarkSearchAccess(b *testing.B) {
	n := benchSize(b)
	q := storetest.BenchSearchQuery(rand.New(rand.NewPCG(1, 1)), n)
	q.Access = storetest.BenchAccess(n)
	storetest.BenchSearchAccess(b, openSearch(b, n, q), n)
}

// BenchmarkSearchCodeAccess is BenchmarkSearchAccess for
// Observation?code=Y&date=ge..&date=le..&_count=50, a search of every
// patient the client may see.
func BenchmarkSearchCodeAccess(b *testing.B) {
	n := benchSize(b)
	q := storetest.BenchSearchCodeQuery(rand.New(rand.NewPCG(1, 1)), n)
	q.Access = storetest.BenchAccess(n)
	storetest.BenchSearchCodeAccess(b, openSearch(b, n, q), n)
}
