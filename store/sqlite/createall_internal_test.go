package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestCreateAllRows pins PERF-SQLB-5's multi-row creates: a new record's
// resources get the rids and hids the one-at-a-time path gives them (the
// next ones, in the record's order, history rows matching), across more
// than one statement; and a new record one of whose resources exists is
// written a resource at a time, with the outcomes, versions and gap-free
// rids of that path.
func TestCreateAllRows(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "kb.db"), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rids := func() (out []string) {
		t.Helper()
		rows, err := s.rdb.QueryContext(ctx, `SELECT r.rid, r.id, r.version, r.hid, h.rid, h.version FROM resources r JOIN history h ON h.hid = r.hid ORDER BY r.rid`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var rid, ver, hid, hrid, hver int64
			var id string
			if err := rows.Scan(&rid, &id, &ver, &hid, &hrid, &hver); err != nil {
				t.Fatal(err)
			}
			if hrid != rid || hver != ver {
				t.Errorf("%s: history row %d names rid %d version %d, want %d %d", id, hid, hrid, hver, rid, ver)
			}
			out = append(out, fmt.Sprintf("%d:%s", rid, id))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	base := len(rids())
	var big []store.ResourceWrite
	var want []string
	for i := range 45 { // statements of 32, 8, 4 and 1 rows
		id := fmt.Sprintf("o%02d", i)
		big = append(big, storetest.Res("Observation", id, "p1", `,"status":"final"`, storetest.Token("code", "s", "c"), storetest.Ref("subject", "Patient/p1")))
		want = append(want, fmt.Sprintf("%d:%s", base+1+i, id))
	}
	res, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "a", "h1", big...)})
	if err != nil {
		t.Fatal(err)
	}
	for i, rr := range res[0].Resources {
		if rr.Outcome != store.Created || rr.Version != 1 || rr.ID != big[i].ID {
			t.Errorf("resource %d: %+v, want %s created", i, rr, big[i].ID)
		}
	}
	if got := rids()[base:]; !slices.Equal(got, want) {
		t.Errorf("rids = %v, want %v", got, want)
	}
	got, err := s.Search(ctx, store.Query{Type: "Observation", Count: 100, Clauses: []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "s", Code: "c"}}}}})
	if err != nil || len(got.Resources) != 45 || got.Resources[0].ID != "o00" || got.Resources[44].ID != "o44" {
		t.Fatalf("search by code: %d resources, %v", len(got.Resources), err)
	}

	// A new record producing an existing resource between two new ones,
	// and one naming a resource twice.
	res, err = s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "b", "h1",
			storetest.Res("Observation", "n1", "p1", `,"status":"final"`),
			storetest.Res("Observation", "o05", "p1", `,"status":"amended"`, storetest.Token("code", "s", "c2")),
			storetest.Res("Observation", "n2", "p1", `,"status":"final"`)),
		storetest.Rec("session", "c", "h1",
			storetest.Res("Observation", "d1", "p1", `,"status":"final"`),
			storetest.Res("Observation", "d2", "p1", `,"status":"final"`)),
	})
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		id      string
		version int64
		outcome store.Outcome
	}
	var outs []outcome
	for _, r := range res {
		for _, rr := range r.Resources {
			outs = append(outs, outcome{rr.ID, rr.Version, rr.Outcome})
		}
	}
	wantOuts := []outcome{{"n1", 1, store.Created}, {"o05", 2, store.Updated}, {"n2", 1, store.Created}, {"d1", 1, store.Created}, {"d2", 1, store.Created}}
	if !slices.Equal(outs, wantOuts) {
		t.Errorf("outcomes = %+v, want %+v", outs, wantOuts)
	}
	want = append(want, fmt.Sprintf("%d:n1", base+46), fmt.Sprintf("%d:n2", base+47), fmt.Sprintf("%d:d1", base+48), fmt.Sprintf("%d:d2", base+49))
	if got := rids()[base:]; !slices.Equal(got, want) {
		t.Errorf("rids = %v, want %v", got, want)
	}
	got, err = s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "s", Code: "c2"}}}}})
	if err != nil || len(got.Resources) != 1 || got.Resources[0].ID != "o05" || got.Resources[0].Version != 2 {
		t.Errorf("search by the updated code: %+v, %v", got.Resources, err)
	}
}
