package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// refTargets lists idx_ref's rows as "param target(type)" sorted, the
// target as stored: an integer (a rid) or text.
func refTargets(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.rdb.QueryContext(context.Background(), `SELECT r.id || '.' || p.name, CAST(x.target AS TEXT), typeof(x.target)
FROM idx_ref x JOIN params p ON p.pid = x.pid JOIN resources r ON r.rid = x.rid ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a, b, c string
		if err := rows.Scan(&a, &b, &c); err != nil {
			t.Fatal(err)
		}
		if c == "integer" {
			// Name the rid's resource, so the listing does not depend on
			// the rids assigned.
			var typ, id string
			if err := s.rdb.QueryRow(`SELECT type, id FROM resources WHERE rid = ?`, b).Scan(&typ, &id); err != nil {
				t.Fatalf("%s: rid target %s names no resource: %v", a, b, err)
			}
			b = "#" + typ + "/" + id
		}
		out = append(out, a+" "+b)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// searchIDs runs q and returns the ids of its matches in order.
func searchIDs(t *testing.T, s *Store, q store.Query) []string {
	t.Helper()
	got, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range got.Resources {
		ids = append(ids, r.ID)
	}
	return ids
}

func refClause(param string, not bool, targets ...string) store.Clause {
	c := store.Clause{Param: param, Kind: store.KindReference, Not: not}
	for _, v := range targets {
		c.Values = append(c.Values, store.Value{Str: v})
	}
	return c
}

// TestRefTargetsKeyedByRID (PERF-SQLB-4): a reference row whose target
// "Type/id" is stored when the row is written holds the target's rid,
// whether the target was written in an earlier transaction or earlier or
// later in the same one; any other target (not stored yet, not "Type/id")
// stays text. Searches by value (driving and as checks, :not), _include's
// Refs and sorting by the parameter answer as they did when every target
// was text, over rows of both forms for the same target.
func TestRefTargetsKeyedByRID(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "refs.db"), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeRefRecords(t, s)
	want := refRowsWritten
	if got := refTargets(t, s); !slices.Equal(got, want) {
		t.Errorf("reference rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkRefAnswers(t, s)
}

// refRowsWritten are the reference rows writeRefRecords leaves, a target
// stored as a rid shown as #Type/id.
var refRowsWritten = []string{
	"e9.subject #Patient/p1",
	"o1.derived-from https://other.example/fhir/Observation/x",
	"o1.encounter Encounter/e9",
	"o1.has-member Observation/o1/_history/1",
	"o1.subject #Patient/p1",
	"o2.encounter #Encounter/e9",
	"o2.subject #Patient/p1",
	"o3.encounter Encounter/a0",
	"o3.subject #Patient/p1",
	"o4.encounter #Encounter/zz",
	"o4.subject #Patient/p1",
	"pv1.patient #Patient/p1",
	"pv1.target #Observation/o1",
	"zz.subject #Patient/p1",
}

// writeRefRecords writes the records of TestRefTargetsKeyedByRID, in two
// transactions.
func writeRefRecords(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	first := storetest.Rec("session", "a", "h1",
		// The Provenance comes before its target in the record.
		storetest.Res("Provenance", "pv1", "p1", ``, storetest.Ref("target", "Observation/o1"), storetest.Ref("patient", "Patient/p1")),
		storetest.Res("Patient", "p1", "p1", ``),
		storetest.Res("Observation", "o1", "p1", `,"status":"final"`, storetest.Ref("subject", "Patient/p1"),
			storetest.Ref("encounter", "Encounter/e9"), // not stored yet
			storetest.Ref("derived-from", "https://other.example/fhir/Observation/x"),
			storetest.Ref("has-member", "Observation/o1/_history/1")),
		storetest.Res("Observation", "o3", "p1", `,"status":"final"`, storetest.Ref("subject", "Patient/p1"),
			storetest.Ref("encounter", "Encounter/a0")), // never stored
	)
	second := storetest.Rec("session", "b", "h1",
		storetest.Res("Encounter", "e9", "p1", ``, storetest.Ref("subject", "Patient/p1")),
		storetest.Res("Encounter", "zz", "p1", ``, storetest.Ref("subject", "Patient/p1")),
		storetest.Res("Observation", "o2", "p1", `,"status":"final"`, storetest.Ref("subject", "Patient/p1"), storetest.Ref("encounter", "Encounter/e9")),
		storetest.Res("Observation", "o4", "p1", `,"status":"final"`, storetest.Ref("subject", "Patient/p1"), storetest.Ref("encounter", "Encounter/zz")),
	)
	for _, rec := range []store.RecordWrite{first, second} {
		if _, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRefAnswers checks the answers of TestRefTargetsKeyedByRID's store,
// whatever form its reference rows are in.
func checkRefAnswers(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	obs := func(cl ...store.Clause) store.Query { return store.Query{Type: "Observation", Clauses: cl} }
	for _, tc := range []struct {
		name string
		q    store.Query
		want []string
	}{
		{"a target stored after some rows", obs(refClause("encounter", false, "Encounter/e9")), []string{"o1", "o2"}},
		{"two targets", obs(refClause("encounter", false, "Encounter/e9", "Encounter/a0")), []string{"o1", "o3", "o2"}},
		{"a target never stored", obs(refClause("encounter", false, "Encounter/a0")), []string{"o3"}},
		{"a stored target", obs(refClause("encounter", false, "Encounter/zz")), []string{"o4"}},
		{"an unknown target", obs(refClause("encounter", false, "Encounter/nope")), nil},
		{"an absolute URL", obs(refClause("derived-from", false, "https://other.example/fhir/Observation/x")), []string{"o1"}},
		{"a versioned reference", obs(refClause("has-member", false, "Observation/o1/_history/1")), []string{"o1"}},
		{"the resource alone is not the versioned reference", obs(refClause("has-member", false, "Observation/o1")), nil},
		{"the patient", obs(refClause("subject", false, "Patient/p1")), []string{"o1", "o3", "o2", "o4"}},
		// The subject drives (the first of equal cost), the encounter is checked.
		{"as a check", obs(refClause("subject", false, "Patient/p1"), refClause("encounter", false, "Encounter/e9")), []string{"o1", "o2"}},
		{":not", obs(refClause("encounter", true, "Encounter/e9")), []string{"o3", "o4"}},
		{":not, a target never stored", obs(refClause("encounter", true, "Encounter/a0")), []string{"o1", "o2", "o4"}},
		{"the Provenance of a target", store.Query{Type: "Provenance", Clauses: []store.Clause{refClause("target", false, "Observation/o1")}}, []string{"pv1"}},
		{"sorted by the reference", store.Query{Type: "Observation", Sort: []store.Sort{{Param: "encounter", Kind: store.KindReference}}},
			[]string{"o3", "o1", "o2", "o4"}}, // Encounter/a0, e9 (text), e9 (rid), zz
		{"sorted by the reference, descending", store.Query{Type: "Observation", Sort: []store.Sort{{Param: "encounter", Kind: store.KindReference, Desc: true}}},
			[]string{"o4", "o1", "o2", "o3"}},
	} {
		if got := searchIDs(t, s, tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	refs, err := s.Refs(ctx, []store.Key{{Type: "Observation", ID: "o1"}, {Type: "Provenance", ID: "pv1"}, {Type: "Observation", ID: "o2"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refs {
		got = append(got, r.From.ID+"."+r.Param+" "+r.Target.Type+"/"+r.Target.ID)
	}
	want := []string{
		"o1.encounter Encounter/e9", "o1.subject Patient/p1",
		"pv1.patient Patient/p1", "pv1.target Observation/o1",
		"o2.encounter Encounter/e9", "o2.subject Patient/p1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Refs = %v, want %v", got, want)
	}
	// Only the parameters asked for (a rid target looked up only then).
	refs, err = s.Refs(ctx, []store.Key{{Type: "Provenance", ID: "pv1"}, {Type: "Observation", ID: "o4"}, {Type: "Observation", ID: "o3"}}, []string{"target", "encounter"})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, r := range refs {
		got = append(got, r.From.ID+"."+r.Param+" "+r.Target.Type+"/"+r.Target.ID)
	}
	if want := []string{"pv1.target Observation/o1", "o4.encounter Encounter/zz", "o3.encounter Encounter/a0"}; !slices.Equal(got, want) {
		t.Errorf("Refs of target and encounter = %v, want %v", got, want)
	}
}

// TestRefTargetsKeyedByRIDInABulkLoad: a bulk load (its staging tables,
// then the search tables filled from them in key order) keeps the rids and
// the text of its reference rows as plain writes do.
func TestRefTargetsKeyedByRIDInABulkLoad(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "refs.db"), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	end, err := s.BeginBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeRefRecords(t, s)
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	if got := refTargets(t, s); !slices.Equal(got, refRowsWritten) {
		t.Errorf("reference rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(refRowsWritten, "\n"))
	}
	checkRefAnswers(t, s)
}

// TestRefTargetOfARolledBackRecord: a record rolled back alone (its
// SAVEPOINT) takes its created resources with it, so a later record of the
// same transaction referring to one of them keeps the target as text, not
// the rid of a row that no longer exists (which the next transaction may
// give to another resource); the reference still matches once the target
// is written.
func TestRefTargetOfARolledBackRecord(t *testing.T) {
	ctx := context.Background()
	errDisk := errors.New("disk I/O error")
	failWriteOf(t, "bad", errDisk)
	s, err := Open(ctx, filepath.Join(t.TempDir(), "refs.db"), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "a", "h1", storetest.Res("Observation", "bad", "p1", `,"status":"final"`)),
		storetest.Rec("session", "b", "h1", storetest.Res("Provenance", "pv1", "p1", ``, storetest.Ref("target", "Observation/bad"))),
	})
	var be *store.BatchError
	if !errors.As(err, &be) || len(be.Records) != 1 || be.Records[0].Index != 0 {
		t.Fatalf("Apply err = %v, want a BatchError for record 0", err)
	}
	if got, want := refTargets(t, s), []string{"pv1.target Observation/bad"}; !slices.Equal(got, want) {
		t.Errorf("reference rows = %v, want %v", got, want)
	}
	failAfterWrite = nil
	// The next resources take the rids the rolled back record had.
	if _, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "c", "h1", storetest.Res("Observation", "other", "p1", `,"status":"final"`), storetest.Res("Observation", "more", "p1", `,"status":"final"`)),
	}); err != nil {
		t.Fatal(err)
	}
	prov := func(target string) []string {
		return searchIDs(t, s, store.Query{Type: "Provenance", Clauses: []store.Clause{refClause("target", false, target)}})
	}
	if got := prov("Observation/bad"); !slices.Equal(got, []string{"pv1"}) {
		t.Errorf("Provenance?target=Observation/bad = %v, want [pv1]", got)
	}
	for _, id := range []string{"other", "more"} {
		if got := prov("Observation/" + id); got != nil {
			t.Errorf("Provenance?target=Observation/%s = %v, want none", id, got)
		}
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "a", "h2", storetest.Res("Observation", "bad", "p1", `,"status":"final"`))}); err != nil {
		t.Fatal(err)
	}
	if got := prov("Observation/bad"); !slices.Equal(got, []string{"pv1"}) {
		t.Errorf("Provenance?target=Observation/bad once stored = %v, want [pv1]", got)
	}
}

// TestMigrationKeysRefTargetsByRID: reference rows stored before migration
// 0016 (every target as text) are keyed by their targets' rids where the
// target is stored (the writer's rule, sqlcore.RefKey), the rest stay
// text, and every answer is the same; a write after it stores a rid (the
// column has no affinity that would turn it into text).
func TestMigrationKeysRefTargetsByRID(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kb.db")
	s := openAt(t, path)
	writeRefRecords(t, s)
	s = openMigrated(t, s, path, `DELETE FROM schema_version WHERE version >= 15`)
	want := []string{
		"e9.subject #Patient/p1",
		"o1.derived-from https://other.example/fhir/Observation/x",
		"o1.encounter #Encounter/e9", // stored by now
		"o1.has-member Observation/o1/_history/1",
		"o1.subject #Patient/p1",
		"o2.encounter #Encounter/e9",
		"o2.subject #Patient/p1",
		"o3.encounter Encounter/a0",
		"o3.subject #Patient/p1",
		"o4.encounter #Encounter/zz",
		"o4.subject #Patient/p1",
		"pv1.patient #Patient/p1",
		"pv1.target #Observation/o1",
		"zz.subject #Patient/p1",
	}
	if got := refTargets(t, s); !slices.Equal(got, want) {
		t.Errorf("reference rows after migration:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkRefAnswers(t, s)
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "c", "h1",
		storetest.Res("Observation", "o5", "p1", `,"status":"final"`, storetest.Ref("encounter", "Encounter/zz")))}); err != nil {
		t.Fatal(err)
	}
	if got := refTargets(t, s); !slices.Contains(got, "o5.encounter #Encounter/zz") {
		t.Errorf("a reference written after the migration: %v, want o5.encounter #Encounter/zz", got)
	}
}
