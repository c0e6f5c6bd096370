package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// RunBulk runs only the suite's bulk-load test ("Bulk"), for a backend
// that tests its bulk path under more than one setting.
func RunBulk(t *testing.T, newStore NewStoreFunc) { testBulk(t, newStore) }

// testBulk: a bulk load (store.BulkWriter) gives the same store as the same
// Apply calls made without one - reads, versions, history, searches of
// every index kind, sorts, compartments, $everything, refs and source
// records - whether the store was empty or already held resources, and
// writes made after the load ends land as they would on a store loaded
// without it. Stores without the interface skip.
func testBulk(t *testing.T, newStore NewStoreFunc) {
	probe := newStore(t, NewFakeClock(T0))
	if _, ok := probe.(store.BulkWriter); !ok {
		t.Skip("the store has no bulk path (store.BulkWriter)")
	}
	ctx := context.Background()
	// Reference: every step through plain Apply.
	plainClock := NewFakeClock(T0)
	plain := newStore(t, plainClock)
	bulkWorkload(t, plain, plainClock, 0, 3)
	want := bulkDump(t, plain)
	for _, sub := range []string{"o1", "o2", "Patient/p1", "Observation/o6 deleted", "code=http://loinc.org|1234"} {
		if !strings.Contains(want, sub) {
			t.Fatalf("the reference dump lacks %q: the comparison would prove nothing\n%s", sub, want)
		}
	}

	t.Run("IntoEmpty", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		end := beginBulk(t, s)
		bulkWorkload(t, s, clock, 0, 2)
		if err := end(ctx); err != nil {
			t.Fatalf("end bulk: %v", err)
		}
		bulkWorkload(t, s, clock, 2, 3) // after the load
		if got := bulkDump(t, s); got != want {
			t.Fatalf("bulk load into an empty store differs from plain writes:\n%s", diffLines(want, got))
		}
	})
	t.Run("IntoExisting", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		bulkWorkload(t, s, clock, 0, 1)
		end := beginBulk(t, s)
		bulkWorkload(t, s, clock, 1, 3)
		if err := end(ctx); err != nil {
			t.Fatalf("end bulk: %v", err)
		}
		if got := bulkDump(t, s); got != want {
			t.Fatalf("bulk load into a store holding resources differs from plain writes:\n%s", diffLines(want, got))
		}
	})
	t.Run("NoNesting", func(t *testing.T) {
		s := newStore(t, NewFakeClock(T0))
		end := beginBulk(t, s)
		if end2, err := s.(store.BulkWriter).BeginBulk(ctx); err == nil {
			_ = end2(ctx)
			t.Fatal("a second BeginBulk while a load runs succeeded")
		}
		if err := end(ctx); err != nil {
			t.Fatalf("end bulk: %v", err)
		}
		if err := end(ctx); err == nil {
			t.Fatal("ending a load twice succeeded")
		}
		// A new load may start once the first has ended.
		end = beginBulk(t, s)
		if err := end(ctx); err != nil {
			t.Fatalf("end bulk: %v", err)
		}
	})
}

func beginBulk(t *testing.T, s store.Store) func(context.Context) error {
	t.Helper()
	end, err := s.(store.BulkWriter).BeginBulk(context.Background())
	if err != nil {
		t.Fatalf("BeginBulk: %v", err)
	}
	return end
}

// bulkWorkload runs steps [from, to) of the bulk test's writes: 0 is the
// search fixture (creates, a deletion), 1 updates, moves a resource to
// another compartment, re-sends a record unchanged and drops a resource,
// 2 writes again after the load.
func bulkWorkload(t *testing.T, s store.Store, clock *FakeClock, from, to int) {
	t.Helper()
	for step := from; step < to; step++ {
		switch step {
		case 0:
			fixture(t, s, clock)
		case 1:
			clock.Set(T0.Add(time.Hour))
			lo, hi := Day("2024-03-01")
			apply(t, s,
				// o1: a new body (version 2), a new date and score.
				Rec("session", "o1", "h2", Res("Observation", "o1", "p1", `,"status":"amended"`,
					Ref("patient", "Patient/p1"), Ref("subject", "Patient/p1"),
					Token("code", loinc, "1234"), Token("status", "", "amended"), Date("date", lo, hi),
					Num("score", 4), Qty("value-quantity", 6, ucum, "mg"))),
				// o2 moves to p2's compartment.
				Rec("session", "o2", "h2", Res("Observation", "o2", "p2", `,"status":"final"`,
					Ref("patient", "Patient/p2"), Ref("subject", "Patient/p2"),
					Token("code", loinc, "5678"), Token("status", "", "final"))),
				Rec("patient", "p3", "h1", Res("Patient", "p3", "p3", "", Str("name", "Smith"))),          // unchanged
				Rec("course", "e1", "h2", Res("Condition", "z2", "p1", "", Ref("patient", "Patient/p1"))), // e1 dropped
			)
		case 2:
			clock.Set(T0.Add(2 * time.Hour))
			apply(t, s,
				Rec("session", "o7", "h1", Res("Observation", "o7", "p3", `,"status":"final"`,
					Ref("patient", "Patient/p3"), Token("code", loinc, "1234"), Num("score", 3))),
				Rec("session", "o3", "h2", Res("Observation", "o3", "p2", `,"status":"cancelled"`,
					Ref("patient", "Patient/p2"), Token("code", snomed, "1234"), Token("status", "", "cancelled"))),
			)
		}
	}
}

// bulkKeys are every resource the workload writes.
var bulkKeys = []store.Key{
	{Type: "Patient", ID: "p1"}, {Type: "Patient", ID: "p2"}, {Type: "Patient", ID: "p3"},
	{Type: "Practitioner", ID: "pr1"}, {Type: "Condition", ID: "z1"}, {Type: "Condition", ID: "z2"},
	{Type: "Encounter", ID: "e1"},
	{Type: "Observation", ID: "o1"}, {Type: "Observation", ID: "o2"}, {Type: "Observation", ID: "o3"},
	{Type: "Observation", ID: "o4"}, {Type: "Observation", ID: "o5"}, {Type: "Observation", ID: "o6"},
	{Type: "Observation", ID: "o7"},
}

// bulkDump renders what the store answers about the workload as text.
func bulkDump(t *testing.T, s store.Store) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	res := func(r store.Resource) string {
		state := ""
		if r.Deleted {
			state = " deleted"
		}
		return fmt.Sprintf("%s/%s%s v%d %s patient=%s %s", r.Type, r.ID, state, r.Version,
			r.LastUpdated.UTC().Format(time.RFC3339Nano), r.Patient, r.Body)
	}
	for _, k := range bulkKeys {
		hist, total, err := s.History(ctx, k.Type, k.ID, 0, 0)
		fmt.Fprintf(&b, "history %s/%s total=%d err=%v\n", k.Type, k.ID, total, err)
		for _, r := range hist {
			fmt.Fprintf(&b, "  %s\n", res(r))
		}
		r, err := s.Read(ctx, k.Type, k.ID)
		fmt.Fprintf(&b, "read %s err=%v\n", res(r), err)
	}
	many, err := s.GetMany(ctx, bulkKeys)
	fmt.Fprintf(&b, "getmany err=%v\n", err)
	for _, r := range many {
		fmt.Fprintf(&b, "  %s\n", keyOf(r))
	}
	const (
		tok  = store.KindToken
		str  = store.KindString
		date = store.KindDate
		ref  = store.KindReference
		num  = store.KindNumber
		qty  = store.KindQuantity
	)
	queries := []struct {
		name string
		q    store.Query
	}{
		{"all Observation", store.Query{Type: "Observation", Total: true}},
		{"code=http://loinc.org|1234", store.Query{Type: "Observation", Clauses: []store.Clause{clause("code", tok, tokV(loinc, "1234"))}}},
		{"code=1234", store.Query{Type: "Observation", Clauses: []store.Clause{clause("code", tok, anyV("1234"))}}},
		{"code:not=1234", store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "code", Kind: tok, Values: []store.Value{anyV("1234")}, Not: true}}}},
		{"status:missing", store.Query{Type: "Observation", Clauses: []store.Clause{missing("status", tok, true)}}},
		{"name=mu", store.Query{Type: "Patient", Clauses: []store.Clause{clause("name", str, strV("mu"))}}},
		{"name:exact", store.Query{Type: "Practitioner", Clauses: []store.Clause{clause("name", str, exactV("Núñez"))}}},
		{"date ge", store.Query{Type: "Observation", Clauses: []store.Clause{clause("date", date, dayV(store.Ge, "2024-01-05"))}}},
		{"patient=p1", store.Query{Type: "Observation", Clauses: []store.Clause{clause("patient", ref, strV("Patient/p1"))}}},
		{"subject=p2", store.Query{Type: "Observation", Clauses: []store.Clause{clause("subject", ref, strV("Patient/p2"))}}},
		{"score ge 2", store.Query{Type: "Observation", Clauses: []store.Clause{clause("score", num, numV(store.Ge, 2))}}},
		{"quantity mg", store.Query{Type: "Observation", Clauses: []store.Clause{clause("value-quantity", qty, store.Value{Prefix: store.Ge, Num: 5, System: ucum, Code: "mg"})}}},
		{"_lastUpdated ge", store.Query{Type: "Observation", Clauses: []store.Clause{clause(store.ParamLastUpdated, 0, instantV(store.Ge, tObs2))}}},
		{"compartment p1", store.Query{Type: "Observation", Patients: []string{"p1"}}},
		{"compartment p2 code", store.Query{Type: "Observation", Patients: []string{"p2"}, Clauses: []store.Clause{clause("code", tok, anyV("1234"))}}},
		{"sort -score", store.Query{Type: "Observation", Sort: []store.Sort{{Param: "score", Kind: num, Desc: true}}}},
		{"sort date", store.Query{Type: "Observation", Sort: []store.Sort{{Param: "date", Kind: date}}}},
		{"page", store.Query{Type: "Observation", Count: 2, Offset: 1, Total: true}},
		{"count only", store.Query{Type: "Observation", CountOnly: true, Total: true, Clauses: []store.Clause{clause("status", tok, anyV("final"))}}},
		{"access", store.Query{Type: "Observation", Access: &store.Access{Terms: []store.AccessTerm{{Patients: []string{"p2", "p3"}}}}}},
	}
	for _, q := range queries {
		r, err := s.Search(ctx, q.q)
		fmt.Fprintf(&b, "search %s total=%d more=%v err=%v:", q.name, r.Total, r.More, err)
		for _, x := range r.Resources {
			fmt.Fprintf(&b, " %s", keyOf(x))
		}
		b.WriteByte('\n')
	}
	for _, p := range []string{"p1", "p2", "p3"} {
		rs, total, err := s.Everything(ctx, store.EverythingQuery{Patient: p})
		fmt.Fprintf(&b, "everything %s total=%d err=%v:", p, total, err)
		for _, x := range rs {
			fmt.Fprintf(&b, " %s/v%d", keyOf(x), x.Version)
		}
		b.WriteByte('\n')
	}
	refs, err := s.Refs(ctx, bulkKeys, nil)
	fmt.Fprintf(&b, "refs err=%v:", err)
	for _, r := range refs {
		fmt.Fprintf(&b, " %s/%s-%s->%s/%s", r.From.Type, r.From.ID, r.Param, r.Target.Type, r.Target.ID)
	}
	b.WriteByte('\n')
	var rks []store.RecordKey
	for _, k := range []string{"p1", "p2", "p3"} {
		rks = append(rks, store.RecordKey{Kind: "patient", ClinicID: k})
	}
	for _, k := range []string{"o1", "o2", "o3", "o6", "o7"} {
		rks = append(rks, store.RecordKey{Kind: "session", ClinicID: k})
	}
	rks = append(rks, store.RecordKey{Kind: "course", ClinicID: "e1"})
	src, err := s.SourceRecords(ctx, rks)
	fmt.Fprintf(&b, "source records %d err=%v\n", len(src), err)
	for _, k := range rks {
		if body, ok := src[k]; ok {
			fmt.Fprintf(&b, "  %s/%s %s\n", k.Kind, k.ClinicID, body)
		}
	}
	return b.String()
}

// diffLines lists the lines of want and got that differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n  want %s\n  got  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
