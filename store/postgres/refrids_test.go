package postgres_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// refRows is every reference row of url's schema as "<resource id>
// <param> <trid>|<target>", sorted: trid is "rid" when the row holds a rid
// (checked to name the resource target names), "-" when it holds text.
func refRows(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	rows, err := c.Query(context.Background(), `SELECT r.id || ' ' || p.name || ' ' ||
    CASE WHEN x.trid <> 0 THEN 'rid:' || t.type || '/' || t.id ELSE '-' END || '|' || x.target
FROM idx_ref x JOIN resources r ON r.rid = x.rid JOIN search_params p ON p.pid = x.pid
LEFT JOIN resources t ON t.rid = x.trid ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(got, "; ")
}

// searchIDs is the ids q matches, in the store's order.
func searchIDs(t *testing.T, s store.Store, q store.Query) string {
	t.Helper()
	res, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range res.Resources {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ",")
}

// refsText is s.Refs of keys (params nil: all) as "fromID param Type/id",
// comma-separated, in the store's order.
func refsText(t *testing.T, s store.Store, params []string, keys ...store.Key) string {
	t.Helper()
	refs, err := s.Refs(context.Background(), keys, params)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refs {
		got = append(got, r.From.ID+" "+r.Param+" "+r.Target.Type+"/"+r.Target.ID)
	}
	return strings.Join(got, ", ")
}

func refClause(param string, not bool, targets ...string) store.Clause {
	c := store.Clause{Param: param, Kind: store.KindReference, Not: not}
	for _, v := range targets {
		c.Values = append(c.Values, store.Value{Str: v})
	}
	return c
}

// TestRefTargetsKeyedByRID: a reference row whose target "Type/id" is
// stored when the row is written holds its rid, any other target its text
// (docs/design/security.md PERF-PG-6), on both write paths (the set-based
// batch, and the per-record rerun with a savepoint each); a search for a
// target matches the rows of both forms (written before and after the
// target was stored), :not excludes both, a sort by the reference orders
// by the text, and _include's Refs read a rid back as "Type/id".
func TestRefTargetsKeyedByRID(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s := openSchema(t, url)
	defer s.Close()
	c := connect(t, url)
	// o1 names pr1 before it is stored, and pa (stored in its own record,
	// earlier in the batch); o3 names an absolute URL.
	if _, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "pa", "h1", storetest.Res("Patient", "pa", "pa", ``)),
		storetest.Rec("session", "t1", "h1",
			storetest.Res("Observation", "o1", "pa", ``, storetest.Ref("subject", "Patient/pa"), storetest.Ref("performer", "Practitioner/pr1"))),
		storetest.Rec("session", "t3", "h1",
			storetest.Res("Observation", "o3", "pa", ``, storetest.Ref("subject", "Patient/pa"), storetest.Ref("performer", "https://x.example/Practitioner/pr1"))),
	}); err != nil {
		t.Fatal(err)
	}
	// o2 names pr1, stored in the same record; pz (Patient/pz) is never stored.
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "t2", "h1",
		storetest.Res("Observation", "o2", "pz", ``, storetest.Ref("subject", "Patient/pz"), storetest.Ref("performer", "Practitioner/pr1")),
		storetest.Res("Practitioner", "pr1", "", ``))}); err != nil {
		t.Fatal(err)
	}
	// o4 is written on the per-record path (bulk.go: a record drops o4,
	// which another record of its run produces), by the record after the
	// one creating its target pr2; its target pr1 is stored.
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "t4", "h1", storetest.Res("Observation", "o4", "pa", ``))}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "t4", "h2", storetest.Res("Practitioner", "pr2", "", ``)),
		storetest.Rec("session", "t4b", "h1", storetest.Res("Observation", "o4", "pa", ``,
			storetest.Ref("performer", "Practitioner/pr2"), storetest.Ref("performer", "Practitioner/pr1"))),
	}); err != nil {
		t.Fatal(err)
	}
	want := "o1 performer -|Practitioner/pr1; o1 subject rid:Patient/pa|; " +
		"o2 performer rid:Practitioner/pr1|; o2 subject -|Patient/pz; " +
		"o3 performer -|https://x.example/Practitioner/pr1; o3 subject rid:Patient/pa|; " +
		"o4 performer rid:Practitioner/pr1|; o4 performer rid:Practitioner/pr2|"
	if got := refRows(t, c); got != want {
		t.Errorf("reference rows:\n%s\nwant\n%s", got, want)
	}
	obs := func(cl ...store.Clause) store.Query { return store.Query{Type: "Observation", Clauses: cl} }
	for _, tc := range []struct {
		name string
		q    store.Query
		want string
	}{
		{"rows of both forms", obs(refClause("performer", false, "Practitioner/pr1")), "o1,o2,o4"},
		{"a rid row", obs(refClause("subject", false, "Patient/pa")), "o1,o3"},
		{"a target never stored", obs(refClause("subject", false, "Patient/pz")), "o2"},
		{"an absolute URL", obs(refClause("performer", false, "https://x.example/Practitioner/pr1")), "o3"},
		{"no such target", obs(refClause("performer", false, "Practitioner/none")), ""},
		{"two values", obs(refClause("performer", false, "Practitioner/pr2", "https://x.example/Practitioner/pr1")), "o3,o4"},
		{"not, both forms", obs(refClause("performer", true, "Practitioner/pr1")), "o3"},
		{"sort ascending", store.Query{Type: "Observation", Sort: []store.Sort{{Param: "performer", Kind: store.KindReference}}}, "o1,o2,o4,o3"},
		{"sort descending", store.Query{Type: "Observation", Sort: []store.Sort{{Param: "subject", Kind: store.KindReference, Desc: true}}}, "o2,o1,o3,o4"},
	} {
		if got := searchIDs(t, s, tc.q); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	if g, w := refsText(t, s, nil, store.Key{Type: "Observation", ID: "o4"}, store.Key{Type: "Observation", ID: "o1"}, store.Key{Type: "Observation", ID: "o3"}), "o4 performer Practitioner/pr1, o4 performer Practitioner/pr2, "+
		"o1 performer Practitioner/pr1, o1 subject Patient/pa, o3 subject Patient/pa"; g != w {
		t.Errorf("refs: %s\nwant %s", g, w)
	}
}

// TestRefTargetOfAFailedRecord: a record of a batch that fails on its own
// (a body not naming its resource) leaves no reference row naming a rid
// it would have had: another record's row naming its resource keeps the
// text, and matches once that resource is stored (PERF-PG-6).
func TestRefTargetOfAFailedRecord(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s := openSchema(t, url)
	defer s.Close()
	c := connect(t, url)
	bad := storetest.Res("Patient", "pbad", "pbad", ``)
	bad.Body = []byte(`{"id":"other","resourceType":"Patient"}`)
	res, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "pz", "h1", storetest.Res("Patient", "pz", "pz", ``), bad),
		storetest.Rec("session", "ob", "h1", storetest.Res("Observation", "ob", "pz", ``, storetest.Ref("subject", "Patient/pz"))),
	})
	if err == nil || len(res) != 2 || res[0].Outcome != store.Failed || res[1].Outcome != store.Created {
		t.Fatalf("apply: %v, %+v; want the first record failed, the second created", err, res)
	}
	if got, want := refRows(t, c), "ob subject -|Patient/pz"; got != want {
		t.Errorf("reference rows: %s, want %s", got, want)
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "pz", "h1", storetest.Res("Patient", "pz", "pz", ``))}); err != nil {
		t.Fatal(err)
	}
	if got := searchIDs(t, s, store.Query{Type: "Observation", Clauses: []store.Clause{refClause("subject", false, "Patient/pz")}}); got != "ob" {
		t.Errorf("subject=Patient/pz: %q, want ob", got)
	}
}

// TestMigrationKeysRefTargetsByRID: reference rows stored before migration
// 0017 (every target as text) hold, once converted, the rid of each target
// "Type/id" stored by then (also one stored after its row was written),
// the text of any other; searches, :not, sorts and Refs answer as before,
// and a write after the migration resolves its targets (docs/design/
// security.md PERF-PG-6).
func TestMigrationKeysRefTargetsByRID(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s := openSchema(t, url)
	if _, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "t1", "h1",
			storetest.Res("Patient", "pa", "pa", ``),
			storetest.Res("Observation", "o1", "pa", ``, storetest.Ref("subject", "Patient/pa"), storetest.Ref("performer", "Practitioner/pr1")),
			storetest.Res("Observation", "o2", "pz", ``, storetest.Ref("subject", "Patient/pz"), storetest.Ref("performer", "https://x.example/Practitioner/pr1"),
				storetest.Ref("derived-from", "Observation/o1/_history/1"))),
		storetest.Rec("session", "pr1", "h1", storetest.Res("Practitioner", "pr1", "", ``)),
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	c := connect(t, url)
	byPID, bySID := "(SELECT name FROM search_params WHERE pid = x.pid)", "(SELECT system FROM token_systems WHERE sid = x.sid)"
	want := indexDump(t, c, byPID, bySID)
	wantRows := "o1 performer rid:Practitioner/pr1|; o1 subject rid:Patient/pa|; " +
		"o2 derived-from -|Observation/o1/_history/1; o2 performer -|https://x.example/Practitioner/pr1; o2 subject -|Patient/pz"
	// The rows as 0016 held them: each target's text.
	execAll(t, url, `ALTER TABLE audit_events DROP COLUMN organization`, `DELETE FROM schema_version WHERE version >= 6`)
	if before := indexDump(t, c, "x.param", "x.system"); before != want {
		t.Fatalf("rows before the migration:\n%s\nwant\n%s", before, want)
	}
	s = openSchema(t, url)
	defer s.Close()
	if after := indexDump(t, c, byPID, bySID); after != want {
		t.Errorf("rows after the migration:\n%s\nwant\n%s", after, want)
	}
	// pr1 was stored after o1's row was written as text: converted too.
	if got := refRows(t, c); got != wantRows {
		t.Errorf("reference rows after the migration:\n%s\nwant\n%s", got, wantRows)
	}
	var key string
	if err := c.QueryRow(ctx, `SELECT pg_get_indexdef('idx_ref_pkey'::regclass)`).Scan(&key); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(key, "(pid, trid, target, rid)") {
		t.Errorf("idx_ref's key: %s", key)
	}
	obs := func(cl ...store.Clause) store.Query { return store.Query{Type: "Observation", Clauses: cl} }
	for _, tc := range []struct {
		name string
		q    store.Query
		want string
	}{
		{"stored target", obs(refClause("subject", false, "Patient/pa")), "o1"},
		{"target stored after its row", obs(refClause("performer", false, "Practitioner/pr1")), "o1"},
		{"a target never stored", obs(refClause("subject", false, "Patient/pz")), "o2"},
		{"an absolute URL", obs(refClause("performer", false, "https://x.example/Practitioner/pr1")), "o2"},
		{"a versioned reference", obs(refClause("derived-from", false, "Observation/o1/_history/1")), "o2"},
		{"not", obs(refClause("subject", true, "Patient/pa")), "o2"},
		{"sort", store.Query{Type: "Observation", Sort: []store.Sort{{Param: "performer", Kind: store.KindReference, Desc: true}}}, "o2,o1"},
	} {
		if got := searchIDs(t, s, tc.q); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	if g := refsText(t, s, nil, store.Key{Type: "Observation", ID: "o1"}); g != "o1 performer Practitioner/pr1, o1 subject Patient/pa" {
		t.Errorf("refs of o1: %s", g)
	}
	// A write after the migration keeps a stored target as its rid.
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "t3", "h1",
		storetest.Res("Observation", "o3", "pa", ``, storetest.Ref("subject", "Patient/pa")))}); err != nil {
		t.Fatal(err)
	}
	if got := refRows(t, c); !strings.Contains(got, "o3 subject rid:Patient/pa|") {
		t.Errorf("after a write: %s", got)
	}
	if got := searchIDs(t, s, obs(refClause("subject", false, "Patient/pa"))); !slices.Equal(strings.Split(got, ","), []string{"o1", "o3"}) {
		t.Errorf("subject=Patient/pa after a write: %q", got)
	}
}
