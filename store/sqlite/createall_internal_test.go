package sqlite

import (
	"context"
	"errors"
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
	rids := func() []string { return createdRIDs(t, s) }
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

// createdRIDs lists the stored resources as "rid:id" in rid order, failing t
// when a resource's current history row names another rid or version.
func createdRIDs(t *testing.T, s *Store) (out []string) {
	t.Helper()
	ctx := context.Background()
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

// TestCreateAllAfterARolledBackRecord pins PERF-SQLB-6: createAll leaves
// the rids to SQLite (the largest plus one), which are not the ones the
// one-at-a-time path gives after a record was rolled back to its
// savepoint (its rids are not reused in the transaction). The record after
// it must get that path's rids, with history and index rows naming its own
// rows; the one after that, the next rids again.
func TestCreateAllAfterARolledBackRecord(t *testing.T) {
	ctx := context.Background()
	errDisk := errors.New("disk I/O error")
	failWriteOf(t, "bad", errDisk)
	s, err := Open(ctx, filepath.Join(t.TempDir(), "kb.db"), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := len(createdRIDs(t, s))
	obs := func(id string) store.ResourceWrite {
		return storetest.Res("Observation", id, "p1", `,"status":"final"`, storetest.Token("code", "s", id))
	}
	_, err = s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "a", "h1", obs("bad")),
		storetest.Rec("session", "b", "h1", obs("x1"), obs("x2")),
		storetest.Rec("session", "c", "h1", obs("y1"), obs("y2"), obs("y3")),
	})
	var be *store.BatchError
	if !errors.As(err, &be) || len(be.Records) != 1 || be.Records[0].Index != 0 {
		t.Fatalf("Apply err = %v, want a BatchError for record 0", err)
	}
	// The one-at-a-time path's rids: the rolled back record's rid stays
	// unused in its transaction.
	var want []string
	for i, id := range []string{"x1", "x2", "y1", "y2", "y3"} {
		want = append(want, fmt.Sprintf("%d:%s", base+2+i, id))
	}
	if got := createdRIDs(t, s)[base:]; !slices.Equal(got, want) {
		t.Errorf("rids = %v, want %v", got, want)
	}
	for _, id := range []string{"x1", "x2", "y1", "y2", "y3"} {
		got, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "s", Code: id}}}}})
		var ids []string
		for _, r := range got.Resources {
			ids = append(ids, r.ID)
		}
		if err != nil || !slices.Equal(ids, []string{id}) {
			t.Errorf("search by code %s: %v, %v", id, ids, err)
		}
		r, err := s.Read(ctx, "Observation", id)
		if err != nil || r.ID != id || r.Version != 1 {
			t.Errorf("read %s: %s version %d, %v", id, r.ID, r.Version, err)
		}
	}
	if _, err := s.Read(ctx, "Observation", "bad"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("read bad: %v, want not found", err)
	}
}
