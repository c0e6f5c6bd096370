package sqlite_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// lendPatients writes patients p0..p(k-1), each with n Observations whose
// bodies differ from patient to patient (the patient's id in each, sizes
// from 100 B to several KB, some over SQLite's overflow pages), and returns
// every stored body by type/id, read by id (a path that never lends).
func lendPatients(t testing.TB, s store.Store, k, n int) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	want := map[string][]byte{}
	for p := range k {
		pid := fmt.Sprintf("p%d", p)
		res := []store.ResourceWrite{storetest.Res("Patient", pid, pid, "")}
		for i := range n {
			note := strings.Repeat(fmt.Sprintf("%s-%c", pid, 'a'+(i+p)%26), 20+(i*37+p*11)%400)
			res = append(res, storetest.Res("Observation", fmt.Sprintf("%s-o%03d", pid, i), pid, `,"note":"`+note+`"`))
		}
		if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", pid, "h"+pid, res...)}); err != nil {
			t.Fatal(err)
		}
		for _, w := range res {
			r, err := s.Read(ctx, w.Type, w.ID)
			if err != nil {
				t.Fatal(err)
			}
			want[w.Type+"/"+w.ID] = bytes.Clone(r.Body)
		}
	}
	return want
}

// Pages read under a store.Lease (their bodies copied into chunks lent for
// the request, docs/design/security.md PERF-ST-21) answer byte for byte as
// pages read without one, for $everything and searches, concurrently and
// however the chunks circulate: each goroutine reads other patients' pages
// under leases of their own, released at once (so their chunks go back to
// the pool and are written again), between getting its answer and checking
// it. A chunk given back before its Lease is released, or lent to two
// answers, would put another patient's bytes here; -race also reports a
// write to a chunk racing a read of it.
func TestLentBodiesStayTheirs(t *testing.T) {
	s := openTemp(t, storetest.NewFakeClock(storetest.T0))
	const patients, per = 6, 300
	want := lendPatients(t, s, patients, per)
	check := func(what string, rs []store.Resource, n int) {
		t.Helper()
		if len(rs) != n {
			t.Errorf("%s: %d resources, want %d", what, len(rs), n)
		}
		for _, r := range rs {
			if w, ok := want[r.Type+"/"+r.ID]; !ok || !bytes.Equal(r.Body, w) {
				t.Errorf("%s: %s/%s: body is not the stored one (%d bytes, want %d)", what, r.Type, r.ID, len(r.Body), len(w))
				return
			}
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for round := range 6 {
				p := fmt.Sprintf("p%d", (g+round)%patients)
				other := fmt.Sprintf("p%d", (g+round+1)%patients)
				lctx, lease := store.WithLease(context.Background())
				rs, total, err := s.Everything(lctx, store.EverythingQuery{Patient: p, Count: 500})
				if err != nil {
					t.Error(err)
					lease.Release()
					return
				}
				sr, err := s.Search(lctx, store.Query{Type: "Observation", Patients: []string{p}, Count: 50})
				if err != nil {
					t.Error(err)
					lease.Release()
					return
				}
				// Other patients' pages under their own leases, released
				// while this request still holds its answer.
				for range 3 {
					octx, ol := store.WithLease(context.Background())
					if _, _, err := s.Everything(octx, store.EverythingQuery{Patient: other, Count: 500}); err != nil {
						t.Error(err)
					}
					ol.Release()
				}
				check("everything "+p, rs, per+1)
				if total != per+1 {
					t.Errorf("everything %s: total %d, want %d", p, total, per+1)
				}
				check("search "+p, sr.Resources, 50)
				lease.Release()
			}
		})
	}
	wg.Wait()
	// Without a Lease the same.
	rs, _, err := s.Everything(context.Background(), store.EverythingQuery{Patient: "p0", Count: 500})
	if err != nil {
		t.Fatal(err)
	}
	check("everything p0 without a lease", rs, per+1)
}

// Under a Lease a page's bodies cost no new memory once the pool holds
// chunks: a $everything page allocates at least half its bodies' bytes
// less than without a Lease, where the driver's copy per row allocates all
// of them on every page. Counted by the runtime, not timed.
func TestLentBodiesAllocateLess(t *testing.T) {
	s := openTemp(t, storetest.NewFakeClock(storetest.T0))
	const per = 400
	lendPatients(t, s, 1, per)
	ctx := context.Background()
	q := store.EverythingQuery{Patient: "p0", Count: 500}
	page := func(lent bool) int {
		c := ctx
		var lease *store.Lease
		if lent {
			c, lease = store.WithLease(ctx)
		}
		rs, _, err := s.Everything(c, q)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rs {
			n += len(r.Body)
		}
		if lease != nil {
			lease.Release()
		}
		return n
	}
	measure := func(lent bool) (alloc, bodies uint64) {
		for range 3 { // prepared statements, pool filled
			page(lent)
		}
		const rounds = 20
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range rounds {
			bodies += uint64(page(lent))
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, bodies
	}
	copied, bodies := measure(false)
	lent, _ := measure(true)
	t.Logf("bytes allocated for %d bytes of bodies: %d without a lease, %d under one", bodies, copied, lent)
	if copied < bodies {
		t.Fatalf("without a lease: %d bytes allocated for %d bytes of bodies: the driver no longer copies each body? (this test's premise)", copied, bodies)
	}
	// The bodies' copies are what a Lease saves: at least half of their
	// bytes (the rest of a page, its resources' fields and the queries,
	// is allocated either way).
	if lent > copied || copied-lent < bodies/2 {
		t.Errorf("under a lease: %d bytes allocated against %d without, for %d bytes of bodies: want at least half the bodies' bytes less", lent, copied, bodies)
	}
}

// BenchmarkEverythingLent is a 500-resource $everything page read from
// SQLite with the driver's copy of each body (copied) and under a Lease
// (lent, PERF-ST-21), alternately in one process: the CPU and the bytes
// allocated per page.
func BenchmarkEverythingLent(b *testing.B) {
	s := openTemp(b, storetest.NewFakeClock(storetest.T0))
	lendPatients(b, s, 1, 499)
	q := store.EverythingQuery{Patient: "p0", Count: 500}
	for _, lent := range []bool{false, true} {
		name := "copied"
		if lent {
			name = "lent"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx := context.Background()
				var lease *store.Lease
				if lent {
					ctx, lease = store.WithLease(ctx)
				}
				if _, _, err := s.Everything(ctx, q); err != nil {
					b.Fatal(err)
				}
				if lease != nil {
					lease.Release()
				}
			}
		})
	}
}
