package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// undoAuditCompact turns the audit trail back into migration 0012's
// (0003's audit_events with 0008's organization).
var undoAuditCompact = []string{
	`DROP TABLE IF EXISTS audit`, `DROP TABLE IF EXISTS audit_terms`, `DROP TABLE IF EXISTS audit_exports`,
	`CREATE TABLE IF NOT EXISTS audit_events (id TEXT PRIMARY KEY, recorded INTEGER NOT NULL, patient TEXT NOT NULL,
    client_id TEXT NOT NULL, interaction TEXT NOT NULL, type TEXT NOT NULL, resource_id TEXT NOT NULL,
    version TEXT NOT NULL, status INTEGER NOT NULL, fhir_user TEXT NOT NULL, subject TEXT NOT NULL,
    purpose TEXT NOT NULL, request_id TEXT NOT NULL, organization TEXT NOT NULL DEFAULT '')`,
	`CREATE INDEX IF NOT EXISTS audit_events_recorded ON audit_events (recorded, id)`,
}

// undoTokenSystems turns idx_token back into migration 0014's: the system's
// text in each row, no token_systems.
var undoTokenSystems = []string{
	`CREATE TABLE idx_token_text (pid INTEGER NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL,
    rid INTEGER NOT NULL REFERENCES resources (rid), cid INTEGER, PRIMARY KEY (pid, code, system, rid)) WITHOUT ROWID`,
	`INSERT INTO idx_token_text SELECT x.pid, x.code, s.system, x.rid, x.cid FROM idx_token x JOIN token_systems s ON s.sid = x.sid`,
	`DROP TABLE idx_token`,
	`ALTER TABLE idx_token_text RENAME TO idx_token`,
	`CREATE INDEX idx_token_rid ON idx_token (rid, pid)`,
	`CREATE INDEX idx_token_comp ON idx_token (cid, pid, code, system, rid) WHERE cid IS NOT NULL`,
	`DROP TABLE token_systems`,
}

// undoRefRIDs turns idx_ref back into migration 0015's: every target as
// text (a rid target as the "Type/id" of its resource).
var undoRefRIDs = []string{
	`CREATE TABLE idx_ref_text (pid INTEGER NOT NULL, target TEXT NOT NULL, rid INTEGER NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (pid, target, rid)) WITHOUT ROWID`,
	`INSERT INTO idx_ref_text SELECT x.pid, CASE WHEN typeof(x.target) = 'integer' THEN (SELECT t.type || '/' || t.id FROM resources t WHERE t.rid = x.target) ELSE x.target END, x.rid FROM idx_ref x`,
	`DROP TABLE idx_ref`,
	`ALTER TABLE idx_ref_text RENAME TO idx_ref`,
	`CREATE INDEX idx_ref_rid ON idx_ref (rid, pid)`,
}

// openMigrated closes s, runs stmts on its file (turning it back into an
// older schema), and opens it again: the migrations run.
func openMigrated(t *testing.T, s *Store, path string, stmts ...string) *Store {
	t.Helper()
	ctx := context.Background()
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	// Every test reverts to a schema before the jobs table, the export
	// walk's index, the compact audit trail, the interned token systems and
	// the reference targets' rids (the newest migrations), which it
	// recreates.
	undo := append([]string{`DROP TABLE IF EXISTS jobs`, `DROP INDEX IF EXISTS resources_type_rid`}, undoAuditCompact...)
	undo = append(undo, undoTokenSystems...)
	undo = append(undo, undoRefRIDs...)
	for _, stmt := range append(undo, stmts...) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()
	s, err = Open(ctx, path, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestMigrationBackfillsTokenCompartments: a database written before
// migration 0005 gets its token rows' compartments filled in, so searches
// that idx_token_comp now drives find what was stored before.
func TestMigrationBackfillsTokenCompartments(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kb.db")
	s := openAt(t, path)
	rec := storetest.Rec("session", "s1", "h1",
		storetest.Res("Observation", "o1", "p1", `,"status":"final"`, storetest.Ref("patient", "Patient/p1"), storetest.Token("code", "http://loinc.org", "8867-4")),
		storetest.Res("Practitioner", "pr1", "", ``, storetest.Token("identifier", "urn:npi", "1")))
	if _, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	// Back to a schema-4 database.
	s = openMigrated(t, s, path,
		`ALTER TABLE audit_events DROP COLUMN organization`, // 0008
		`ALTER TABLE clients DROP COLUMN organization`,      // 0006
		`ALTER TABLE clients DROP COLUMN role`,
		`DROP INDEX idx_token_comp`,
		`ALTER TABLE idx_token DROP COLUMN cid`,
		`DROP TABLE compartments`,
		`DELETE FROM schema_version WHERE version >= 5`)
	var patients []sql.NullString
	rows, err := s.rdb.QueryContext(ctx, `SELECT c.patient FROM idx_token x LEFT JOIN compartments c ON c.cid = x.cid ORDER BY x.rid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p sql.NullString
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		patients = append(patients, p)
	}
	rows.Close()
	if want := []sql.NullString{{String: "p1", Valid: true}, {}}; !slices.Equal(patients, want) {
		t.Errorf("token compartments after migration = %v, want %v", patients, want)
	}
	got, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{
		{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}},
		{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "http://loinc.org", Code: "8867-4"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Resources) != 1 || got.Resources[0].ID != "o1" {
		t.Errorf("search after migration = %+v, want o1", got.Resources)
	}
}

// TestMigrationInternsTokenSystems: token rows stored before migration
// 0015 (the system's text in each row) keep their code, system, resource
// and compartment, each system interned once, and searches by system, by
// code and system and by code alone answer as before, within a
// compartment too; a system never stored matches nothing, and writes after
// the migration reuse the interned systems.
func TestMigrationInternsTokenSystems(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kb.db")
	s := openAt(t, path)
	rec := storetest.Rec("session", "s1", "h1",
		storetest.Res("Observation", "o1", "p1", `,"status":"final"`, storetest.Ref("patient", "Patient/p1"),
			storetest.Token("code", "http://loinc.org", "8867-4"), storetest.Token("category", "", "vital"),
			storetest.Token("_security", "urn:conf", "R")),
		storetest.Res("Observation", "o2", "p2", `,"status":"final"`, storetest.Ref("patient", "Patient/p2"),
			storetest.Token("code", "http://loinc.org", "8867-4"), storetest.Token("code", "urn:local", "8867-4")),
		storetest.Res("Practitioner", "pr1", "", ``, storetest.Token("identifier", "urn:npi", "1")))
	if _, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	dump := func(s *Store) string {
		t.Helper()
		rows, err := s.rdb.QueryContext(ctx, `SELECT p.type || '.' || p.name, x.code, ts.system, r.id, coalesce(c.patient, '-')
FROM idx_token x JOIN params p ON p.pid = x.pid JOIN token_systems ts ON ts.sid = x.sid
JOIN resources r ON r.rid = x.rid LEFT JOIN compartments c ON c.cid = x.cid ORDER BY 1, 2, 3, 4`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var a, b, c, d, e string
			if err := rows.Scan(&a, &b, &c, &d, &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.Join([]string{a, b, c, d, e}, " "))
		}
		return strings.Join(out, "; ")
	}
	before := dump(s)
	if !strings.Contains(before, "Observation._security R urn:conf o1 -") {
		t.Fatalf("a new label's row carries a compartment: %s", before)
	}
	// Back to a schema-14 database: the systems' text in each row, and
	// the labels' rows in their compartments.
	s = openMigrated(t, s, path, `DELETE FROM schema_version WHERE version >= 15`,
		`UPDATE idx_token SET cid = (SELECT cid FROM compartments WHERE patient = 'p1') WHERE pid = (SELECT pid FROM params WHERE name = '_security')`)
	var text int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('idx_token') WHERE name = 'system'`).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if text != 0 {
		t.Fatal("idx_token still holds the systems' text after migration 0015")
	}
	if after := dump(s); after != before || before == "" {
		t.Errorf("token rows after migration:\n%s\nwant\n%s", after, before)
	}
	var systems, distinct int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT system) FROM token_systems`).Scan(&systems, &distinct); err != nil {
		t.Fatal(err)
	}
	if systems != 5 || distinct != 5 { // http://loinc.org, '', urn:conf, urn:local, urn:npi
		t.Errorf("%d token systems (%d distinct), want 5", systems, distinct)
	}
	search := func(clauses ...store.Clause) []string {
		t.Helper()
		got, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: clauses})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range got.Resources {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		return ids
	}
	code := func(v ...store.Value) store.Clause {
		return store.Clause{Param: "code", Kind: store.KindToken, Values: v}
	}
	p1 := store.Clause{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}}
	for _, tc := range []struct {
		name    string
		clauses []store.Clause
		want    []string
	}{
		{"code and system", []store.Clause{code(store.Value{System: "http://loinc.org", Code: "8867-4"})}, []string{"o1", "o2"}},
		{"code and another system", []store.Clause{code(store.Value{System: "urn:local", Code: "8867-4"})}, []string{"o2"}},
		{"system only", []store.Clause{code(store.Value{System: "urn:local"})}, []string{"o2"}},
		{"code in any system", []store.Clause{code(store.Value{Code: "8867-4", AnySystem: true})}, []string{"o1", "o2"}},
		{"no system", []store.Clause{{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "vital"}}}}, []string{"o1"}},
		{"a system never stored", []store.Clause{code(store.Value{System: "urn:none", Code: "8867-4"})}, nil},
		{"not a system", []store.Clause{{Param: "code", Kind: store.KindToken, Not: true, Values: []store.Value{{System: "urn:local", Code: "8867-4"}}}}, []string{"o1"}},
		{"code within the patient", []store.Clause{p1, code(store.Value{System: "http://loinc.org", Code: "8867-4"})}, []string{"o1"}},
		{"label within the patient", []store.Clause{p1, {Param: "_security", Kind: store.KindToken, Values: []store.Value{{System: "urn:conf", Code: "R"}}}}, []string{"o1"}},
	} {
		if got := search(tc.clauses...); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// A write after the migration reuses the interned system.
	rec2 := storetest.Rec("session", "s2", "h2",
		storetest.Res("Observation", "o3", "p1", `,"status":"final"`, storetest.Token("code", "urn:local", "1-1")))
	if _, err := s.Apply(ctx, []store.RecordWrite{rec2}); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM token_systems`).Scan(&systems); err != nil {
		t.Fatal(err)
	}
	if systems != 5 {
		t.Errorf("%d token systems after a write in a stored system, want 5", systems)
	}
	if got := search(code(store.Value{System: "urn:local"})); !slices.Equal(got, []string{"o2", "o3"}) {
		t.Errorf("system only after a write: %v, want [o2 o3]", got)
	}
}

// TestMigrationFinishesABulkLoadFirst: a schema-14 store left mid bulk
// load (its search tables dropped, their rows staged) is migrated after
// the load is finished, so migration 0015 finds idx_token and the store
// answers as before.
func TestMigrationFinishesABulkLoadFirst(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kb.db")
	s := openAt(t, path)
	rec := storetest.Rec("session", "s1", "h1",
		storetest.Res("Observation", "o1", "p1", `,"status":"final"`, storetest.Ref("patient", "Patient/p1"),
			storetest.Token("code", "http://loinc.org", "8867-4")))
	if _, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range append(append(undoRefRIDs, undoTokenSystems...), `DELETE FROM schema_version WHERE version >= 15`) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stage(ctx, c); err != nil { // as BeginBulk, then the process died
		t.Fatal(err)
	}
	c.Close()
	db.Close()
	s = openAt(t, path)
	got, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{
		{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}},
		{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "http://loinc.org", Code: "8867-4"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Resources) != 1 || got.Resources[0].ID != "o1" {
		t.Errorf("search after the load and the migration = %+v, want o1", got.Resources)
	}
}

// TestMigrationBindsExistingClientsToNothing: a client registered before
// migration 0006 reads as an unbound EHR client (no organization, role "").
func TestMigrationBindsExistingClientsToNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kb.db")
	s := openAt(t, path)
	// Back to a schema-5 database holding a client.
	s = openMigrated(t, s, path,
		`ALTER TABLE audit_events DROP COLUMN organization`,
		`ALTER TABLE clients DROP COLUMN organization`,
		`ALTER TABLE clients DROP COLUMN role`,
		`DELETE FROM schema_version WHERE version >= 6`,
		`INSERT INTO clients (id, name, kind, secret_hash, redirect_uris, launch_url, scopes, origins, jwks_url)
		 VALUES ('ehr-1', 'EHR', 'backend', '', '[]', '', '["system/*.rs"]', '[]', 'https://ehr.example/jwks')`)
	storetest.CheckUnboundClient(t, s)
}

// TestMigrationIndexesSecurityLabels: resources stored before migration
// 0007 (bodies with meta.security, no _security rows) get their labels'
// rows, so _security:not=R excludes them.
func TestMigrationIndexesSecurityLabels(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kb.db")
	s := openAt(t, path)
	storetest.WriteUnindexedLabels(t, s)
	s = openMigrated(t, s, path, `ALTER TABLE audit_events DROP COLUMN organization`, `DELETE FROM schema_version WHERE version >= 7`)
	storetest.CheckLabelsIndexed(t, s)
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM idx_token x JOIN params p ON p.pid = x.pid WHERE p.name = '_security'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 5 { // o-r (2), o-psy, c-r, pr-r; not the deleted o-gone
		t.Errorf("%d _security rows, want 5", n)
	}
}

// TestMigrationMovesAuditEvents: the audit events stored before migration
// 0013 read back unchanged from the compact trail.
func TestMigrationMovesAuditEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kb.db")
	s := openAt(t, path)
	var stmts []string
	for _, r := range storetest.LegacyAuditRecords() {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO audit_events VALUES (%s, %d, %s, %s, %s, %s, %s, %s, %d, %s, %s, %s, %s, %s)`,
			sqlQuote(r.ID), r.Recorded.UnixMilli(), sqlQuote(r.Patient), sqlQuote(r.ClientID), sqlQuote(r.Interaction),
			sqlQuote(r.Type), sqlQuote(r.ResourceID), sqlQuote(r.Version), r.Status, sqlQuote(r.FHIRUser),
			sqlQuote(r.Subject), sqlQuote(r.Purpose), sqlQuote(r.RequestID), sqlQuote(r.Organization)))
	}
	s = openMigrated(t, s, path, append(stmts, `DELETE FROM schema_version WHERE version >= 13`)...)
	storetest.CheckLegacyAudit(t, s)
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestAuditTrailInItsOwnFile: the audit trail is kept in the audit file,
// not the store's (docs/design/security.md AUD-ARCH-5); a move that copied
// the trail but crashed before dropping the store's copy finishes on the
// next open; two different trails fail the open instead of being mixed.
func TestAuditTrailInItsOwnFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kb.db")
	s := openAt(t, path)
	recs := []store.AuditRecord{
		{ID: "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", Recorded: storetest.T0, Patient: "p1", ClientID: "ehr-1",
			Interaction: "read", Type: "Observation", ResourceID: "o1", Status: 200, RequestID: "r1"},
		{ID: "text-id", Recorded: storetest.T0.Add(time.Second), Interaction: "search", Status: 401},
	}
	if err := s.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want := auditIDsOf(t, s)
	s.Close()
	raw := func(p string) *sql.DB {
		db, err := sql.Open("sqlite", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	tables := func(db *sql.DB) int {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'audit'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	main, aud := raw(path), raw(AuditPath(path))
	if tables(main) != 0 || tables(aud) != 1 {
		t.Fatalf("audit tables: %d in the store's file, %d in the audit file; want 0 and 1", tables(main), tables(aud))
	}
	// A copy that committed before its drop: the store's file holds the
	// same trail again.
	copyBack := func() {
		t.Helper()
		for _, q := range []string{auditSchema, `ATTACH DATABASE '` + AuditPath(path) + `' AS a`,
			`INSERT INTO audit_terms SELECT * FROM a.audit_terms`, `INSERT INTO audit SELECT * FROM a.audit`,
			`INSERT INTO audit_exports SELECT * FROM a.audit_exports`, `DETACH DATABASE a`} {
			if _, err := main.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	copyBack()
	s = openAt(t, path)
	if got := auditIDsOf(t, s); got != want {
		t.Errorf("trail after the move finished: %s, want %s", got, want)
	}
	s.Close()
	if tables(main) != 0 {
		t.Error("the store's file still holds the audit tables")
	}
	// A different trail in the store's file: refused, nothing mixed.
	copyBack()
	if _, err := main.ExecContext(ctx, `INSERT INTO audit VALUES (1, x'0078', 1, 0, x'', x'')`); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ctx, path, store.SystemClock{}); err == nil || !strings.Contains(err.Error(), "hold an audit trail") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open with two different trails: %v, want a refusal", err)
	}
}

// openAt opens the store at path (closed when t ends, if not before).
func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func auditIDsOf(t *testing.T, s *Store) string {
	t.Helper()
	rs, err := s.ListAudit(context.Background(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID+"/"+r.ResourceID)
	}
	return strings.Join(ids, ",")
}
