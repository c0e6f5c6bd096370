package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// schemaIndexes reads the CREATE statements of the database's indexes.
func schemaIndexes(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return strings.Join(names, " ")
}

func bulkRecords() []store.RecordWrite {
	return []store.RecordWrite{
		storetest.Rec("patient", "p1", "h1", storetest.Res("Patient", "p1", "p1", "", storetest.Str("name", "Müller"))),
		storetest.Rec("session", "o1", "h1", storetest.Res("Observation", "o1", "p1", "",
			storetest.Ref("patient", "Patient/p1"), storetest.Token("code", "http://loinc.org", "1234"))),
	}
}

// TestBulkDropsAndRebuildsIndexes: into an empty store a bulk load drops
// the secondary indexes of the resource tables (keeping resources_updated
// and the unique ones) and ending it restores exactly the same set.
func TestBulkDropsAndRebuildsIndexes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ketabridge.db")
	s, err := sqlite.Open(ctx, path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := schemaIndexes(t, path)
	end, err := s.BeginBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	during := schemaIndexes(t, path)
	for _, gone := range []string{"idx_token_rid", "idx_token_comp", "resources_patient", "history_version"} {
		if strings.Contains(" "+during+" ", " "+gone+" ") {
			t.Errorf("%s still exists during a bulk load into an empty store", gone)
		}
	}
	if !strings.Contains(during, "resources_updated") {
		t.Error("resources_updated was dropped: every Apply reads through it")
	}
	if _, err := s.Apply(ctx, bulkRecords()); err != nil {
		t.Fatal(err)
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	if after := schemaIndexes(t, path); after != before {
		t.Fatalf("indexes after the load:\n%s\nwant:\n%s", after, before)
	}
	// Into a store that holds more than the staging limit, nothing is
	// dropped (the limit counts resources: it holds 2 now).
	defer sqlite.SetBulkStageMax(1)()
	end, err = s.BeginBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if during := schemaIndexes(t, path); during != before {
		t.Fatalf("a bulk load into a store holding resources changed its indexes:\n%s", during)
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBulkStagingRIDIndexOnFirstReplacement: a staging table gets its rid
// index from the load's first replacement of index rows, not at its start
// (docs/design/security.md PERF-SQLB-7): a load that only creates
// resources appends each staged row once. The replacement itself, and the
// answers after the load, are storetest's (TestContract/Bulk).
func TestBulkStagingRIDIndexOnFirstReplacement(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ketabridge.db")
	s, err := sqlite.Open(ctx, path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	end, err := s.BeginBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, bulkRecords()); err != nil {
		t.Fatal(err)
	}
	if during := schemaIndexes(t, path); strings.Contains(during, "bulk_idx_token_rid") {
		t.Fatalf("a load that only created resources has a staging rid index: %s", during)
	}
	// o1 again with another code: its staged rows are replaced.
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "o1", "h2", storetest.Res("Observation", "o1", "p1", `,"status":"amended"`,
		storetest.Ref("patient", "Patient/p1"), storetest.Token("code", "http://loinc.org", "5678")))}); err != nil {
		t.Fatal(err)
	}
	if during := schemaIndexes(t, path); !strings.Contains(during, "bulk_idx_token_rid") {
		t.Fatalf("no staging rid index after a replacement: %s", during)
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	if after := schemaIndexes(t, path); strings.Contains(after, "bulk_idx") {
		t.Fatalf("staging indexes left after the load: %s", after)
	}
}

// TestBulkInterruptedIsFinishedOnOpen: a process that dies mid-load (here:
// closes the store without ending the load) leaves the committed records
// stored and the indexes dropped; the next Open builds them, and searches
// answer again.
func TestBulkInterruptedIsFinishedOnOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ketabridge.db")
	s, err := sqlite.Open(ctx, path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	before := schemaIndexes(t, path)
	if _, err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, bulkRecords()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if mid := schemaIndexes(t, path); mid == before {
		t.Fatal("the indexes were rebuilt by Close: the test does not interrupt a load")
	}
	s, err = sqlite.Open(ctx, path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if after := schemaIndexes(t, path); after != before {
		t.Fatalf("indexes after reopening:\n%s\nwant:\n%s", after, before)
	}
	res, err := s.Search(ctx, store.Query{Type: "Observation", Patients: []string{"p1"},
		Clauses: []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{{Code: "1234", AnySystem: true}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Resources) != 1 || res.Resources[0].ID != "o1" {
		t.Fatalf("search after the interrupted load: %+v", res.Resources)
	}
	// A new load may start: the interrupted one is over.
	end, err := s.BeginBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestContractBulkUnstaged runs the contract's bulk test with staging off:
// every load keeps the indexes, as into a store holding more resources
// than the staging limit.
func TestContractBulkUnstaged(t *testing.T) {
	defer sqlite.SetBulkStageMax(-1)()
	storetest.RunBulk(t, func(t *testing.T, clock store.Clock) store.Store { return openTemp(t, clock) })
}
