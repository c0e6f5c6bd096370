package cached_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// gated counts every Search that reaches the store once it has read its
// answer, and then holds it until release is closed.
type gated struct {
	store.Store
	searches atomic.Int64
	release  chan struct{}
}

func (g *gated) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	res, err := g.Store.Search(ctx, q)
	g.searches.Add(1)
	<-g.release
	return res, err
}

// flightCaches are the caches the flight tests run over: the in-process
// cache, and Redis with a near cache in front (a replica).
func flightCaches(t *testing.T) map[string]func(t *testing.T, inner store.Store) *cached.Store {
	return map[string]func(t *testing.T, inner store.Store) *cached.Store{
		"memory": func(t *testing.T, inner store.Store) *cached.Store {
			return cached.New(inner, memory.NewCache(16<<20), cached.Options{})
		},
		"redis near": func(t *testing.T, inner store.Store) *cached.Store {
			return cached.New(inner, openRedisCache(t, redisURL(t)), cached.Options{NearBytes: 4 << 20})
		},
	}
}

// flightPatient writes patient p1 with the body rest.
func flightPatient(t *testing.T, s store.Store, h, rest string) {
	t.Helper()
	if _, err := s.Apply(context.Background(), []store.RecordWrite{storetest.Rec("patient", "p1", h,
		storetest.Res("Patient", "p1", "p1", rest, storetest.Str("name", "Ada")))}); err != nil {
		t.Fatal(err)
	}
}

// waitUntil yields until cond holds (no timing: the test's goroutines
// reach a state the condition names).
func waitUntil(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

// TestConcurrentMissesShareOneLoad: misses of the same answer while its
// load is in flight wait for that load instead of each searching the
// store (CACHE-7), and all get the store's answer.
func TestConcurrentMissesShareOneLoad(t *testing.T) {
	for name, open := range flightCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			g := &gated{Store: openSQLite(t, storetest.NewFakeClock(storetest.T0)), release: make(chan struct{})}
			s := open(t, g)
			flightPatient(t, s, "h1", `,"v":1`)
			q := store.Query{Type: "Patient", Patients: []string{"p1"}}
			const misses = 5
			var wg sync.WaitGroup
			got := make([]store.SearchResult, misses)
			errs := make([]error, misses)
			wg.Go(func() { got[0], errs[0] = s.Search(ctx, q) })
			waitUntil(func() bool { return g.searches.Load() == 1 })
			for i := 1; i < misses; i++ {
				wg.Go(func() { got[i], errs[i] = s.Search(ctx, q) })
			}
			// Every later miss either waits for the first load or (without
			// the flights) reached the store itself.
			waitUntil(func() bool {
				return int64(cached.FlightWaiters(s))+g.searches.Load() == misses
			})
			close(g.release)
			wg.Wait()
			if n := g.searches.Load(); n != 1 {
				t.Errorf("%d concurrent misses of one answer ran %d store searches, want 1", misses, n)
			}
			for i := range misses {
				if errs[i] != nil || len(got[i].Resources) != 1 || got[i].Resources[0].Version != 1 {
					t.Errorf("miss %d: %+v, %v; want Patient/p1 v1", i, got[i], errs[i])
				}
			}
			// The answers are the callers' own: one changing its slice
			// changes no other's.
			got[0].Resources[0].Version = 99
			if got[1].Resources[0].Version != 1 {
				t.Error("two misses share one slice of resources")
			}
		})
	}
}

// TestMissAfterWriteLoadsAgain: a load in flight that began before a
// write is not shared with a miss that began after the write was
// acknowledged: that miss reads other stamp values and searches the store
// itself, and sees the write (CACHE-1, CACHE-7).
func TestMissAfterWriteLoadsAgain(t *testing.T) {
	for name, open := range flightCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			g := &gated{Store: openSQLite(t, storetest.NewFakeClock(storetest.T0)), release: make(chan struct{})}
			s := open(t, g)
			flightPatient(t, s, "h1", `,"v":1`)
			q := store.Query{Type: "Patient", Patients: []string{"p1"}}
			var wg sync.WaitGroup
			var old, fresh store.SearchResult
			var oldErr, freshErr error
			wg.Go(func() { old, oldErr = s.Search(ctx, q) })
			// The first load has read version 1 and is held.
			waitUntil(func() bool { return g.searches.Load() == 1 })
			flightPatient(t, s, "h2", `,"v":2`)
			wg.Go(func() { fresh, freshErr = s.Search(ctx, q) })
			waitUntil(func() bool { return cached.FlightWaiters(s) == 1 || g.searches.Load() == 2 })
			close(g.release)
			wg.Wait()
			if oldErr != nil || len(old.Resources) != 1 || old.Resources[0].Version != 1 {
				t.Errorf("the search begun before the write: %+v, %v; want v1", old, oldErr)
			}
			if freshErr != nil || len(fresh.Resources) != 1 || fresh.Resources[0].Version != 2 {
				t.Errorf("the search begun after the write was acknowledged: %+v, %v; want v2", fresh, freshErr)
			}
			if n := g.searches.Load(); n != 2 {
				t.Errorf("%d store searches, want 2 (the second miss must not share the first load)", n)
			}
			// And the cache holds the new answer.
			if res, err := s.Search(ctx, q); err != nil || len(res.Resources) != 1 || res.Resources[0].Version != 2 {
				t.Errorf("search after both: %+v, %v; want v2", res, err)
			}
		})
	}
}
