package postgres

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// indexDefs lists the indexes of the schema's resource tables, each as
// "name: definition", sorted.
func indexDefs(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT c.relname || ': ' || pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY($1) ORDER BY 1`,
		append(slices.Clone(bulkTables), "history", "source_records"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func has(defs []string, name string) bool {
	return slices.ContainsFunc(defs, func(d string) bool { return strings.HasPrefix(d, name+": ") })
}

func bulkRec(p string) store.RecordWrite {
	return storetest.Rec("patient", p, "h1",
		storetest.Res("Patient", p, p, `"active":true`, storetest.Token("identifier", "urn:mrn", p)),
		storetest.Res("Observation", "o-"+p, p, `"status":"final"`, storetest.Token("code", "http://loinc.org", "8867-4"),
			storetest.Ref("subject", "Patient/"+p)))
}

func mustApply(t *testing.T, s *Store, recs ...store.RecordWrite) {
	t.Helper()
	res, err := s.Apply(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Outcome == store.Failed {
			t.Fatalf("record %d failed", i)
		}
	}
}

// TestBulkLoadDropsAndRebuilds: into an empty store a bulk load drops the
// indexes Apply does not read (the search tables' keys, the compartment
// and type indexes of resources), keeps those it reads, and its end builds
// every dropped one again exactly as it was (PERF-PG-3); searches answer
// correctly during the load and after it.
func TestBulkLoadDropsAndRebuilds(t *testing.T) {
	s, _ := freshStore(t, storetest.NewFakeClock(storetest.T0))
	ctx := context.Background()
	before := indexDefs(t, s)
	for _, n := range []string{"idx_token_pkey", "idx_ref_pkey", "idx_token_patient", "resources_patient", "resources_type_rid"} {
		if !has(before, n) {
			t.Fatalf("a new store lacks %s: %v", n, before)
		}
	}
	end, err := s.BeginBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	during := indexDefs(t, s)
	for _, n := range []string{"idx_token_pkey", "idx_ref_pkey", "idx_token_patient", "resources_patient", "resources_type_rid", "resources_type_patient"} {
		if has(during, n) {
			t.Errorf("the load kept %s", n)
		}
	}
	for _, n := range bulkKeep {
		if !has(during, n) {
			t.Errorf("the load dropped %s, which Apply reads", n)
		}
	}
	if n, err := s.bulkPending(ctx); err != nil || n != len(before)-len(during) {
		t.Fatalf("pending %d, %v; want %d", n, err, len(before)-len(during))
	}
	mustApply(t, s, bulkRec("p1"), bulkRec("p2"))
	search := func() int {
		r, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "code", Kind: store.KindToken,
			Values: []store.Value{{System: "http://loinc.org", Code: "8867-4"}}}}, Total: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.Total
	}
	if n := search(); n != 2 {
		t.Fatalf("search during the load found %d, want 2", n)
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	if after := indexDefs(t, s); !slices.Equal(after, before) {
		t.Fatalf("indexes after the load differ:\nbefore %v\nafter  %v", before, after)
	}
	if n, err := s.bulkPending(ctx); err != nil || n != 0 {
		t.Fatalf("pending after end: %d, %v", n, err)
	}
	if n := search(); n != 2 {
		t.Fatalf("search after the load found %d, want 2", n)
	}
}

// TestBulkLoadIntoFullStoreDropsNothing: a store holding more than
// bulkStageMax resources keeps its indexes (its readers need them).
func TestBulkLoadIntoFullStoreDropsNothing(t *testing.T) {
	old := bulkStageMax
	bulkStageMax = 1
	t.Cleanup(func() { bulkStageMax = old })
	s, _ := freshStore(t, storetest.NewFakeClock(storetest.T0))
	mustApply(t, s, bulkRec("p1"))
	before := indexDefs(t, s)
	end, err := s.BeginBulk(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if during := indexDefs(t, s); !slices.Equal(during, before) {
		t.Fatalf("a load into a store of 2 resources (limit 1) changed its indexes:\n%v\n%v", before, during)
	}
	if err := end(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestBulkLoadReplicas: a second replica's load joins the first's; the
// indexes are built when the last of them ends, not before (PERF-PG-2
// replicas load different patients at once).
func TestBulkLoadReplicas(t *testing.T) {
	a, u := freshStore(t, storetest.NewFakeClock(storetest.T0))
	ctx := context.Background()
	before := indexDefs(t, a)
	b, err := Open(ctx, u, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	endA, err := a.BeginBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	endB, err := b.BeginBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, a, bulkRec("p1"))
	mustApply(t, b, bulkRec("p2"))
	if err := endA(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := a.bulkPending(ctx); err != nil || n == 0 {
		t.Fatalf("the first load's end built the indexes while the second still loads (pending %d, %v)", n, err)
	}
	// A replica opening meanwhile leaves them to the running load.
	c, err := Open(ctx, u, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if n, err := a.bulkPending(ctx); err != nil || n == 0 {
		t.Fatalf("Open built the indexes under a running load (pending %d, %v)", n, err)
	}
	mustApply(t, b, bulkRec("p3"))
	if err := endB(ctx); err != nil {
		t.Fatal(err)
	}
	if after := indexDefs(t, a); !slices.Equal(after, before) {
		t.Fatalf("indexes after both loads differ:\nbefore %v\nafter  %v", before, after)
	}
}

// TestBulkLoadCutShort: a load whose process stops without ending it
// (Close releases its session) is finished by the next Open.
func TestBulkLoadCutShort(t *testing.T) {
	a, u := freshStore(t, storetest.NewFakeClock(storetest.T0))
	ctx := context.Background()
	before := indexDefs(t, a)
	if _, err := a.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	mustApply(t, a, bulkRec("p1"))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, u, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if after := indexDefs(t, b); !slices.Equal(after, before) {
		t.Fatalf("indexes after reopening differ:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := b.Read(ctx, "Observation", "o-p1"); err != nil {
		t.Fatalf("the committed record is gone: %v", err)
	}
}

// TestBulkLoadIntoExistingContract: the storetest bulk contract with only
// a store holding nothing counted as empty, so that its load into a store
// holding resources drops nothing (the default run drops in both).
func TestBulkLoadIntoExistingContract(t *testing.T) {
	old := bulkStageMax
	bulkStageMax = 0
	t.Cleanup(func() { bulkStageMax = old })
	storetest.RunBulk(t, func(t *testing.T, clock store.Clock) store.Store { s, _ := freshStore(t, clock); return s })
}
