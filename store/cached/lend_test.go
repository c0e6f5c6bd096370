package cached_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
)

// pages is an inner store whose searches and $everything answer a page
// that differs in every body from patient to patient: the patient's id in
// each body and bytes drawn from a generator seeded by it.
type pages struct {
	store.Store // nil: only Search and Everything are called
	n           int
}

func pageOf(patient string, n int) []store.Resource {
	seed := uint64(len(patient))
	for _, c := range patient {
		seed = seed*31 + uint64(c)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	rs := make([]store.Resource, n)
	for i := range rs {
		var pad strings.Builder
		for range 40 + r.IntN(40) {
			fmt.Fprintf(&pad, "%s-%d,", []string{"alpha", "beta", "gamma", "delta"}[r.IntN(4)], r.IntN(100))
		}
		id := fmt.Sprintf("%s-%d", patient, i)
		rs[i] = store.Resource{Type: "Observation", ID: id, Patient: patient, Version: 1,
			Body: fmt.Appendf(nil, `{"resourceType":"Observation","id":%q,"subject":{"reference":"Patient/%s"},"note":%q}`, id, patient, pad.String())}
	}
	return rs
}

func (p pages) Search(_ context.Context, q store.Query) (store.SearchResult, error) {
	return store.SearchResult{Resources: pageOf(q.Patients[0], p.n), Total: -1}, nil
}

func (p pages) Everything(_ context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	rs := pageOf(q.Patient, p.n)
	return rs, len(rs), nil
}

func (p pages) Close() error { return nil }

// Requests for different patients' pages, concurrently, each under its own
// Lease through the in-process cache, get every body byte for byte as the
// store answers it, however the lent buffers circulate: between getting
// its answer and checking it, each request reads (and releases) other
// patients' pages, which take buffers from the pool and write into them. A
// buffer given back before its Lease is released (or given to two answers)
// would show another patient's bytes here (docs/design/security.md
// PERF-ST-18). Run with -race, it also catches a write to a lent buffer
// racing a read of it.
func TestLentPagesStayTheirs(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int // resources a page: 20 is a search page (~40 KB), 500 (~300 KB) is above the hot table's minimum
		ever bool
	}{{"search", 20, false}, {"everything", 500, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const patients = 24
			inner := pages{n: tc.n}
			cs := cached.New(inner, memory.NewCache(256<<20), cached.Options{})
			ask := func(ctx context.Context, p string) []store.Resource {
				if tc.ever {
					rs, _, err := cs.Everything(ctx, store.EverythingQuery{Patient: p, Count: 500})
					if err != nil {
						t.Error(err)
					}
					return rs
				}
				res, err := cs.Search(ctx, store.Query{Type: "Observation", Patients: []string{p}, Count: tc.n})
				if err != nil {
					t.Error(err)
				}
				return res.Resources
			}
			want := make([][]store.Resource, patients)
			for i := range want {
				p := fmt.Sprintf("p%d", i)
				want[i] = pageOf(p, tc.n)
				ask(context.Background(), p) // fills the cache
			}
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 40 {
						k := (g*7 + i) % patients
						ctx, lease := store.WithLease(context.Background())
						got := ask(ctx, fmt.Sprintf("p%d", k))
						for j := 1; j <= 4; j++ {
							octx, other := store.WithLease(context.Background())
							ask(octx, fmt.Sprintf("p%d", (k+j)%patients))
							other.Release()
						}
						if len(got) != len(want[k]) {
							t.Errorf("p%d: %d resources, want %d", k, len(got), len(want[k]))
						} else {
							for j := range got {
								if !bytes.Equal(got[j].Body, want[k][j].Body) || got[j].ID != want[k][j].ID {
									t.Errorf("p%d: resource %d is not the store's: %.60q", k, j, got[j].Body)
									break
								}
							}
						}
						lease.Release()
					}
				})
			}
			wg.Wait()
		})
	}
}

// leaseSeen is an inner store that records whether each page call's context
// carried a store.Lease.
type leaseSeen struct {
	pages
	mu   sync.Mutex
	seen []bool
}

func (l *leaseSeen) note(ctx context.Context) {
	l.mu.Lock()
	l.seen = append(l.seen, store.LeaseFrom(ctx) != nil)
	l.mu.Unlock()
}

func (l *leaseSeen) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	l.note(ctx)
	return l.pages.Search(ctx, q)
}

func (l *leaseSeen) Everything(ctx context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	l.note(ctx)
	return l.pages.Everything(ctx, q)
}

// nearMemory is the in-process cache offered as a shared one
// (store.NearCache), so that the read cache keeps a near cache in front of
// it, as it does in front of Redis.
type nearMemory struct{ *memory.Cache }

func (n nearMemory) Stamps(_ context.Context, stamps []string) (string, error) {
	return n.At(stamps), nil
}

// The store below the read cache may lend a page's bodies under the
// caller's Lease (SQLite does, docs/design/security.md PERF-ST-21), which
// is sound only where nothing keeps the page past the request. The near
// cache keeps what a miss loads, so with a near cache the read cache must
// not pass the Lease down; without one (the in-process cache, which keeps
// only its compressed copy) it passes it, or nothing is ever lent.
func TestNearCacheGetsNoLentPages(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache store.Cache
		lease bool // whether the inner store may see the Lease
	}{
		{"in-process cache", memory.NewCache(64 << 20), true},
		{"near cache", nearMemory{memory.NewCache(64 << 20)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &leaseSeen{pages: pages{n: 20}}
			cs := cached.New(inner, tc.cache, cached.Options{NearBytes: 8 << 20})
			for _, p := range []string{"p1", "p2", "p3"} {
				ctx, lease := store.WithLease(context.Background())
				if _, _, err := cs.Everything(ctx, store.EverythingQuery{Patient: p, Count: 500}); err != nil {
					t.Fatal(err)
				}
				if _, err := cs.Search(ctx, store.Query{Type: "Observation", Patients: []string{p}, Count: 20}); err != nil {
					t.Fatal(err)
				}
				lease.Release()
			}
			inner.mu.Lock()
			defer inner.mu.Unlock()
			if len(inner.seen) == 0 {
				t.Fatal("the inner store was never asked")
			}
			for i, seen := range inner.seen {
				if seen != tc.lease {
					t.Errorf("call %d: the inner store saw a Lease: %v, want %v", i, seen, tc.lease)
				}
			}
		})
	}
}
