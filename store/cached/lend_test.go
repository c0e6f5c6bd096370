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
