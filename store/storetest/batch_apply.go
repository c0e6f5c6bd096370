package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// RunBatchApply checks that one Apply of many records answers exactly as
// applying them one at a time in batch order would: records of one batch
// that depend on each other (the same record twice, a resource one record
// drops and another produces, a precondition on what an earlier record
// wrote), unchanged, failing and updating records mixed with new ones, and
// a resource's duplicate index rows. A backend writing a batch set-based
// (store/postgres's bulk path) must
// decide these in order as the per-record path does.
func RunBatchApply(t *testing.T, newStore NewStoreFunc) {
	t.Run("SameRecordTwice", func(t *testing.T) { testBatchSameRecordTwice(t, newStore) })
	t.Run("MoveWithinBatch", func(t *testing.T) { testBatchMove(t, newStore) })
	t.Run("TakeOverWithinBatch", func(t *testing.T) { testBatchTakeOver(t, newStore) })
	t.Run("ExpectWithinBatch", func(t *testing.T) { testBatchExpect(t, newStore) })
	t.Run("Mixed", func(t *testing.T) { testBatchMixed(t, newStore) })
	t.Run("DuplicateIndexRows", func(t *testing.T) { testBatchDuplicateIndexRows(t, newStore) })
	t.Run("Large", func(t *testing.T) { testBatchLarge(t, newStore) })
}

// versions lists a resource's history, newest first, as "v<n>" or
// "v<n>-deleted".
func versions(t *testing.T, s store.Store, typ, id string) []string {
	t.Helper()
	hs, total, err := s.History(context.Background(), typ, id, 0, 0)
	if err != nil {
		t.Fatalf("History %s/%s: %v", typ, id, err)
	}
	if total != len(hs) {
		t.Errorf("History %s/%s: total %d, %d versions", typ, id, total, len(hs))
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = fmt.Sprintf("v%d", h.Version)
		if h.Deleted {
			out[i] += "-deleted"
		}
	}
	return out
}

// searchIDs are the ids of the current resources of typ matching clauses,
// in the store's order (insertion order when nothing sorts).
func searchIDs(t *testing.T, s store.Store, typ string, clauses ...store.Clause) []string {
	t.Helper()
	res, err := s.Search(context.Background(), store.Query{Type: typ, Clauses: clauses})
	if err != nil {
		t.Fatalf("Search %s: %v", typ, err)
	}
	return ids(res.Resources)
}

// testBatchSameRecordTwice: the second copy of a record in one batch is an
// update of what the first wrote, and drops what it no longer produces.
func testBatchSameRecordTwice(t *testing.T, newStore NewStoreFunc) {
	s := newStore(t, NewFakeClock(T0))
	res := apply(t, s,
		Rec("patient", "p1", "h1", Res("Patient", "p1", "p1", `,"v":1`), Res("Observation", "o1", "p1", `,"status":"final"`, Token("code", loinc, "1"))),
		Rec("patient", "p1", "h2", Res("Patient", "p1", "p1", `,"v":2`)))
	wantResult(t, "first", res[0], "created Patient/p1@1:created Observation/o1@1:created")
	wantResult(t, "second", res[1], "updated Patient/p1@2:updated Observation/o1@2:deleted")
	wantStrings(t, "Patient/p1 history", versions(t, s, "Patient", "p1"), []string{"v2", "v1"})
	wantStrings(t, "Observation/o1 history", versions(t, s, "Observation", "o1"), []string{"v2-deleted", "v1"})
	if _, err := s.Read(context.Background(), "Observation", "o1"); !errors.Is(err, store.ErrGone) {
		t.Errorf("Read Observation/o1: %v, want ErrGone", err)
	}
	wantStrings(t, "code search", searchIDs(t, s, "Observation", clause("code", store.KindToken, tokV(loinc, "1"))), nil)
	// Re-sending the last copy changes nothing.
	res = apply(t, s, Rec("patient", "p1", "h2", Res("Patient", "p1", "p1", `,"v":2`)))
	wantResult(t, "re-send", res[0], "unchanged Patient/p1@2:unchanged")
}

// testBatchMove: record a drops a resource that record b, later in the same
// batch, produces: a deletes it, then b creates it again.
func testBatchMove(t *testing.T, newStore NewStoreFunc) {
	s := newStore(t, NewFakeClock(T0))
	x := Res("Observation", "x", "p1", `,"status":"final"`, Token("code", loinc, "x"))
	y := Res("Observation", "y", "p1", `,"status":"final"`)
	apply(t, s, Rec("session", "a", "h1", x, y))
	res := apply(t, s, Rec("session", "a", "h2", y), Rec("session", "b", "h1", x))
	wantResult(t, "a", res[0], "updated Observation/y@1:unchanged Observation/x@2:deleted")
	wantResult(t, "b", res[1], "created Observation/x@3:created")
	wantStrings(t, "Observation/x history", versions(t, s, "Observation", "x"), []string{"v3", "v2-deleted", "v1"})
	wantStrings(t, "code search", searchIDs(t, s, "Observation", clause("code", store.KindToken, tokV(loinc, "x"))), []string{"x"})
	// x is b's now: b dropping it deletes it.
	res = apply(t, s, Rec("session", "b", "h2"))
	wantResult(t, "b drops x", res[0], "updated Observation/x@4:deleted")
}

// testBatchTakeOver: record b takes over a resource record a produced,
// then a, later in the same batch, drops it: it is b's, so it stays.
func testBatchTakeOver(t *testing.T, newStore NewStoreFunc) {
	s := newStore(t, NewFakeClock(T0))
	x := Res("Observation", "x", "p1", `,"status":"final"`)
	y := Res("Observation", "y", "p1", `,"status":"final"`)
	apply(t, s, Rec("session", "a", "h1", x, y))
	res := apply(t, s, Rec("session", "b", "h1", x), Rec("session", "a", "h2", y))
	wantResult(t, "b", res[0], "created Observation/x@1:unchanged")
	wantResult(t, "a", res[1], "updated Observation/y@1:unchanged")
	r, err := s.Read(context.Background(), "Observation", "x")
	if err != nil || r.Version != 1 {
		t.Errorf("Read Observation/x: v%d, %v; want v1", r.Version, err)
	}
	// x moved to b: b dropping it deletes it, a no longer can.
	res = apply(t, s, Rec("session", "a", "h3", y))
	wantResult(t, "a again", res[0], "updated Observation/y@1:unchanged")
	res = apply(t, s, Rec("session", "b", "h2"))
	wantResult(t, "b drops x", res[0], "updated Observation/x@2:deleted")
}

// testBatchExpect: a precondition sees what earlier records of the batch
// wrote.
func testBatchExpect(t *testing.T, newStore NewStoreFunc) {
	s := newStore(t, NewFakeClock(T0))
	second := Rec("fhir-update", "Task/t1#2", "h1", Res("Task", "t1", "", `,"status":"accepted"`))
	second.Expect = []store.Expectation{{Key: store.Key{Type: "Task", ID: "t1"}, Version: 1}}
	stale := Rec("fhir-update", "Task/t1#3", "h1", Res("Task", "t1", "", `,"status":"rejected"`))
	stale.Expect = []store.Expectation{{Key: store.Key{Type: "Task", ID: "t1"}, Version: 1}}
	fresh := Rec("fhir-create", "Task/t2", "h1", Res("Task", "t2", "", `,"status":"requested"`))
	fresh.Expect = []store.Expectation{{Key: store.Key{Type: "Task", ID: "t2"}, Version: 0}}
	res, err := s.Apply(context.Background(), []store.RecordWrite{
		Rec("fhir-create", "Task/t1", "h1", Res("Task", "t1", "", `,"status":"requested"`)),
		second, stale, fresh,
	})
	var be *store.BatchError
	if !errors.As(err, &be) || len(be.Records) != 1 || be.Records[0].Index != 2 {
		t.Fatalf("Apply: %v, want a BatchError naming record 2", err)
	}
	var pe *store.PreconditionError
	if !errors.As(be.Records[0].Err, &pe) || pe.Want != 1 || pe.Have != 2 {
		t.Errorf("record 2: %v, want a precondition failure (want 1, have 2)", be.Records[0].Err)
	}
	wantResult(t, "create", res[0], "created Task/t1@1:created")
	wantResult(t, "update", res[1], "created Task/t1@2:updated")
	wantResult(t, "stale", res[2], "failed")
	wantResult(t, "fresh", res[3], "created Task/t2@1:created")
	wantStrings(t, "Task/t1 history", versions(t, s, "Task", "t1"), []string{"v2", "v1"})
}

// testBatchMixed: new, unchanged, failing, updating and deleting records
// in one batch; new resources take their place in insertion order in
// batch order, an updated one keeps its place.
func testBatchMixed(t *testing.T, newStore NewStoreFunc) {
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	obs := func(id, rest string) store.ResourceWrite {
		return Res("Observation", id, "p1", rest, Ref("patient", "Patient/p1"))
	}
	apply(t, s, Rec("session", "r1", "h1", obs("a1", "")), Rec("session", "r2", "h1", obs("b1", ""), obs("b2", "")))
	clock.Advance(time.Minute)
	bad := Rec("session", "bad", "", obs("z", ""))
	res, err := s.Apply(context.Background(), []store.RecordWrite{
		Rec("session", "n1", "h1", obs("n1", "")),
		Rec("session", "r1", "h1", obs("a1", "")),
		bad,
		Rec("session", "r2", "h2", obs("b1", `,"note":"changed"`)),
		Rec("session", "n2", "h1", obs("n2", "")),
	})
	var be *store.BatchError
	if !errors.As(err, &be) || len(be.Records) != 1 || be.Records[0].Index != 2 {
		t.Fatalf("Apply: %v, want a BatchError naming record 2", err)
	}
	wantResult(t, "n1", res[0], "created Observation/n1@1:created")
	wantResult(t, "r1", res[1], "unchanged Observation/a1@1:unchanged")
	wantResult(t, "bad", res[2], "failed")
	wantResult(t, "r2", res[3], "updated Observation/b1@2:updated Observation/b2@2:deleted")
	wantResult(t, "n2", res[4], "created Observation/n2@1:created")
	wantStrings(t, "insertion order", searchIDs(t, s, "Observation", clause("patient", store.KindReference, strV("Patient/p1"))),
		[]string{"a1", "b1", "n1", "n2"})
	if _, err := s.Read(context.Background(), "Observation", "z"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read Observation/z of the failed record: %v, want ErrNotFound", err)
	}
	r, err := s.Read(context.Background(), "Observation", "b1")
	if err != nil || r.Version != 2 || !r.LastUpdated.Equal(T0.Add(time.Minute)) {
		t.Errorf("Read Observation/b1: v%d at %s, %v; want v2 at %s", r.Version, r.LastUpdated, err, T0.Add(time.Minute))
	}
	got, err := s.SourceRecords(context.Background(), []store.RecordKey{{Kind: "session", ClinicID: "r2"}, {Kind: "session", ClinicID: "bad"}})
	if err != nil || len(got) != 1 || string(got[store.RecordKey{Kind: "session", ClinicID: "r2"}]) != `{"kind":"session","id":"r2","hash":"h2"}` {
		t.Errorf("SourceRecords: %q, %v; want r2's second source only", got, err)
	}
}

// testBatchDuplicateIndexRows: index rows a resource lists twice (or that
// normalize to the same row) are stored once; the write succeeds.
func testBatchDuplicateIndexRows(t *testing.T, newStore NewStoreFunc) {
	s := newStore(t, NewFakeClock(T0))
	lo, hi := Day("2024-03-01")
	rw := Res("Observation", "o1", "p1", `,"status":"final"`,
		Token("code", loinc, "1"), Token("code", loinc, "1"),
		store.IndexRow{Param: "name", Kind: store.KindString, Value: "Ada"}, store.IndexRow{Param: "name", Kind: store.KindString, Value: "ada"},
		Date("date", lo, hi), Date("date", lo, hi),
		Ref("subject", "Patient/p1"), Ref("subject", "Patient/p1"),
		Num("n", 0), Num("n", math.Copysign(0, -1)), Qty("value", 5, "http://unitsofmeasure.org", "mg"), Qty("value", 5, "http://unitsofmeasure.org", "mg"))
	res := apply(t, s, Rec("session", "s1", "h1", rw), Rec("session", "s2", "h1", Res("Observation", "o2", "p1", "", Token("code", loinc, "1"))))
	wantResult(t, "s1", res[0], "created Observation/o1@1:created")
	wantStrings(t, "code", searchIDs(t, s, "Observation", clause("code", store.KindToken, tokV(loinc, "1"))), []string{"o1", "o2"})
	wantStrings(t, "name", searchIDs(t, s, "Observation", clause("name", store.KindString, strV("ada"))), []string{"o1"})
	wantStrings(t, "subject", searchIDs(t, s, "Observation", clause("subject", store.KindReference, strV("Patient/p1"))), []string{"o1"})
	// A new version replaces the rows: still once each.
	rw.Body = Body("Observation", "o1", `,"status":"amended"`)
	res = apply(t, s, Rec("session", "s1", "h2", rw))
	wantResult(t, "s1 again", res[0], "updated Observation/o1@2:updated")
	wantStrings(t, "code after update", searchIDs(t, s, "Observation", clause("code", store.KindToken, tokV(loinc, "1"))), []string{"o1", "o2"})
}

// testBatchLarge: a batch of many records over many patients, then the same
// batch with every third record changed: counts, versions and searches as
// record-at-a-time writes give them.
func testBatchLarge(t *testing.T, newStore NewStoreFunc) {
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	const n = 600
	batch := func(round int) []store.RecordWrite {
		out := make([]store.RecordWrite, 0, n)
		for i := range n {
			p := fmt.Sprintf("p%d", i%40)
			id := fmt.Sprintf("o%04d", i)
			hash, rest := "h1", ""
			if round > 0 && i%3 == 0 {
				hash, rest = "h2", `,"note":"changed"`
			}
			out = append(out, Rec("session", id, hash,
				Res("Observation", id, p, rest, Ref("patient", "Patient/"+p), Token("code", loinc, fmt.Sprint(i%7)), Date("date", T0, T0)),
				Res("Encounter", "e"+id, p, rest, Ref("patient", "Patient/"+p))))
		}
		return out
	}
	for _, r := range apply(t, s, batch(0)...) {
		if r.Outcome != store.Created {
			t.Fatalf("first batch: %s", resultString(r))
		}
	}
	clock.Advance(time.Minute)
	res := apply(t, s, batch(1)...)
	for i, r := range res {
		want := store.Unchanged
		if i%3 == 0 {
			want = store.Updated
		}
		if r.Outcome != want {
			t.Errorf("second batch record %d: %s, want %s", i, resultString(r), want)
		}
	}
	count := func(typ string, clauses ...store.Clause) int {
		t.Helper()
		res, err := s.Search(context.Background(), store.Query{Type: typ, Clauses: clauses, CountOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		return res.Total
	}
	if got := count("Observation"); got != n {
		t.Errorf("Observations: %d, want %d", got, n)
	}
	if got := count("Encounter", clause("patient", store.KindReference, strV("Patient/p3"))); got != n/40 {
		t.Errorf("Encounters of p3: %d, want %d", got, n/40)
	}
	// Codes 0..6 over 600 records: code 3 on i = 3, 10, 17, ... (86).
	if got := count("Observation", clause("code", store.KindToken, tokV(loinc, "3"))); got != 86 {
		t.Errorf("Observations with code 3: %d, want 86", got)
	}
	wantStrings(t, "o0003 history", versions(t, s, "Observation", "o0003"), []string{"v2", "v1"})
	wantStrings(t, "o0004 history", versions(t, s, "Observation", "o0004"), []string{"v1"})
	got := searchIDs(t, s, "Observation", clause("patient", store.KindReference, strV("Patient/p1")))
	want := make([]string, 0, n/40)
	for i := 1; i < n; i += 40 {
		want = append(want, fmt.Sprintf("o%04d", i))
	}
	wantStrings(t, "p1's Observations in insertion order", got, want)
}
