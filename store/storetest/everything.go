package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

func testRefs(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	fixture(t, s, clock)
	k := func(typ, id string) store.Key { return store.Key{Type: typ, ID: id} }
	for _, tc := range []struct {
		name   string
		from   []store.Key
		params []string
		want   []string
	}{
		{"all params, by param then target", []store.Key{k("Observation", "o1")}, nil, []string{
			"Observation/o1 patient Patient/p1", "Observation/o1 performer Practitioner/pr1", "Observation/o1 subject Patient/p1"}},
		{"one param", []store.Key{k("Observation", "o1")}, []string{"performer"}, []string{"Observation/o1 performer Practitioner/pr1"}},
		{"several sources in order, missing and deleted skipped", []store.Key{k("Observation", "o3"), k("Observation", "nope"), k("Observation", "o6"), k("Observation", "o2")}, []string{"subject"}, []string{
			"Observation/o3 subject Patient/p2", "Observation/o2 subject Patient/p1"}},
		{"no references", []store.Key{k("Observation", "o5")}, nil, nil},
		{"unknown param", []store.Key{k("Observation", "o1")}, []string{"nothing"}, nil},
		{"none", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refs, err := s.Refs(ctx, tc.from, tc.params)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range refs {
				got = append(got, r.From.String()+" "+r.Param+" "+r.Target.String())
			}
			wantStrings(t, "refs", got, tc.want)
		})
	}
}

func testEverything(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	fixture(t, s, clock)
	all := []string{"Patient/p1", "Condition/z1", "Encounter/e1", "Observation/o1", "Observation/o2"}
	for _, tc := range []struct {
		name  string
		q     store.EverythingQuery
		want  []string
		total int
	}{
		{"whole compartment, Patient first", store.EverythingQuery{Patient: "p1"}, all, 5},
		{"first page", store.EverythingQuery{Patient: "p1", Count: 2}, all[:2], 5},
		{"second page", store.EverythingQuery{Patient: "p1", Count: 2, Offset: 2}, all[2:4], 5},
		{"last page", store.EverythingQuery{Patient: "p1", Count: 2, Offset: 4}, all[4:], 5},
		{"past the end", store.EverythingQuery{Patient: "p1", Count: 2, Offset: 9}, nil, 5},
		{"offset without count", store.EverythingQuery{Patient: "p1", Offset: 3}, all[3:], 5},
		{"types", store.EverythingQuery{Patient: "p1", Types: []string{"Observation", "Condition"}}, []string{"Condition/z1", "Observation/o1", "Observation/o2"}, 3},
		{"types with Patient", store.EverythingQuery{Patient: "p1", Types: []string{"Observation", "Patient"}}, []string{"Patient/p1", "Observation/o1", "Observation/o2"}, 3},
		{"since", store.EverythingQuery{Patient: "p1", Since: tObs1}, []string{"Observation/o1", "Observation/o2"}, 2},
		{"since and paging", store.EverythingQuery{Patient: "p1", Since: tObs1, Count: 1}, []string{"Observation/o1"}, 2},
		{"another patient", store.EverythingQuery{Patient: "p2"}, []string{"Patient/p2", "Observation/o3"}, 2},
		{"unknown patient", store.EverythingQuery{Patient: "nope"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, total, err := s.Everything(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			wantStrings(t, "keys", keys(got), tc.want)
			if total != tc.total {
				t.Errorf("total = %d, want %d", total, tc.total)
			}
			for _, r := range got {
				if r.Patient != tc.q.Patient || len(r.Body) == 0 || r.Version == 0 {
					t.Errorf("incomplete resource %+v", r)
				}
			}
		})
	}
}

// testConcurrency runs readers while a large write is in progress: every read
// succeeds and sees either the state before the write or after it.
func testConcurrency(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	apply(t, s, Rec("patient", "p1", "h1", Res("Patient", "p1", "p1", `,"v":1`, Str("name", "Ada"))))

	const n = 3000
	batch := make([]store.RecordWrite, 0, n+1)
	batch = append(batch, Rec("patient", "p1", "h2", Res("Patient", "p1", "p1", `,"v":2`, Str("name", "Ada"))))
	for i := range n {
		id := fmt.Sprintf("o%05d", i)
		batch = append(batch, Rec("session", id, "h1", Res("Observation", id, "p1", `,"status":"final"`,
			Ref("patient", "Patient/p1"), Token("code", loinc, "1234"), Date("date", T0, T0))))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reads := 0
			for {
				select {
				case <-done:
					if reads == 0 {
						errs <- errors.New("reader made no reads")
					}
					return
				default:
				}
				r, err := s.Read(ctx, "Patient", "p1")
				if err != nil || (r.Version != 1 && r.Version != 2) {
					errs <- fmt.Errorf("Read during write: v%d, %v", r.Version, err)
					return
				}
				res, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{clause("patient", store.KindReference, strV("Patient/p1"))}, CountOnly: true})
				if err != nil || (res.Total != 0 && res.Total != n) {
					errs <- fmt.Errorf("Search during write: total %d, %v", res.Total, err)
					return
				}
				reads++
			}
		}()
	}
	start := time.Now()
	if _, err := s.Apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Let the readers see the committed state too.
	time.Sleep(20 * time.Millisecond)
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := s.Search(ctx, store.Query{Type: "Observation", CountOnly: true})
	if err != nil || got.Total != n {
		t.Errorf("after write: total %d, %v; want %d", got.Total, err, n)
	}
	t.Logf("wrote %d records in %v", n+1, time.Since(start))

	// Concurrent writers serialize.
	var wwg sync.WaitGroup
	for w := range 4 {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			id := fmt.Sprintf("w%d", w)
			if _, err := s.Apply(ctx, []store.RecordWrite{Rec("session", id, "h1", Res("Observation", id, "p1", ""))}); err != nil {
				t.Errorf("concurrent Apply: %v", err)
			}
		}()
	}
	wwg.Wait()
	got, err = s.Search(ctx, store.Query{Type: "Observation", CountOnly: true})
	if err != nil || got.Total != n+4 {
		t.Errorf("after concurrent writes: total %d, %v; want %d", got.Total, err, n+4)
	}
}

func testLifecycle(t *testing.T, newStore NewStoreFunc) {
	s := newStore(t, NewFakeClock(T0))
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Error("Ping after Close succeeded")
	}
	if _, err := s.Read(context.Background(), "Patient", "p1"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read after Close: %v, want a non-sentinel error", err)
	}
}
