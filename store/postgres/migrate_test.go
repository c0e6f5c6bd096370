package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// execAll runs statements on the schema of url.
func execAll(t *testing.T, url string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	c := connect(t, url)
	// Every test reverts to a schema before the interned token systems,
	// the jobs table, the export
	// walk's index and the compact audit trail and its packs (the newest
	// migrations), which it recreates.
	undo := []string{tokenSystemsUndo, `DROP TABLE IF EXISTS jobs`, `DROP INDEX IF EXISTS resources_type_rid`,
		`DROP TABLE IF EXISTS audit_packs`, `DROP TABLE IF EXISTS audit`, `DROP TABLE IF EXISTS audit_terms`, `DROP TABLE IF EXISTS audit_exports`,
		`CREATE TABLE IF NOT EXISTS audit_events (id text COLLATE "C" PRIMARY KEY, recorded bigint NOT NULL,
    patient text NOT NULL, client_id text NOT NULL, interaction text NOT NULL, type text NOT NULL,
    resource_id text NOT NULL, version text NOT NULL, status integer NOT NULL, fhir_user text NOT NULL,
    subject text NOT NULL, purpose text NOT NULL, request_id text NOT NULL, organization text NOT NULL DEFAULT '')`,
		`CREATE INDEX IF NOT EXISTS audit_events_recorded ON audit_events (recorded, id)`}
	for _, stmt := range append(undo, stmts...) {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// tokenSystemsUndo reverts migration 0015: token rows hold their system's
// text again, and idx_token_patient holds the labels' rows.
const tokenSystemsUndo = `DO $$ BEGIN
    IF to_regclass('token_systems') IS NOT NULL THEN
        ALTER TABLE idx_token DROP CONSTRAINT idx_token_pkey;
        DROP INDEX idx_token_patient;
        ALTER TABLE idx_token ADD COLUMN system text COLLATE "C";
        UPDATE idx_token x SET system = t.system FROM token_systems t WHERE t.sid = x.sid;
        ALTER TABLE idx_token ALTER COLUMN system SET NOT NULL;
        ALTER TABLE idx_token DROP COLUMN sid;
        DROP TABLE token_systems;
        ALTER TABLE idx_token ADD PRIMARY KEY (param, code, system, rid);
        CREATE INDEX idx_token_patient ON idx_token (patient, param, code, system, rid) WHERE patient IS NOT NULL;
    END IF;
END $$`

// TestMigrationInternsTokenSystems: token rows stored before migration
// 0015 (the system's text in each row) keep their code, system, resource
// and compartment, each system interned once; searches by system, by code
// and system, by code alone and by label answer as before, within a
// compartment too; a system never stored matches nothing, and a write after
// the migration reuses the interned systems (docs/design/security.md
// PERF-PG-4).
func TestMigrationInternsTokenSystems(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s := openSchema(t, url)
	rec := storetest.Rec("session", "t1", "h1",
		storetest.Res("Observation", "o1", "p1", `,"status":"final"`, storetest.Ref("patient", "Patient/p1"),
			storetest.Token("code", "http://loinc.org", "8867-4"), storetest.Token("category", "", "vital"),
			storetest.Token("_security", "urn:conf", "R")),
		storetest.Res("Observation", "o2", "p2", `,"status":"final"`, storetest.Ref("patient", "Patient/p2"),
			storetest.Token("code", "http://loinc.org", "8867-4"), storetest.Token("code", "urn:local", "8867-4")),
		storetest.Res("Practitioner", "pr1", "", ``, storetest.Token("identifier", "urn:npi", "1")))
	if _, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The rows as 0014 held them: each with its system's text.
	execAll(t, url, `ALTER TABLE audit_events DROP COLUMN organization`, `DELETE FROM schema_version WHERE version >= 6`)
	c := connect(t, url)
	dump := func(system string) string {
		t.Helper()
		rows, err := c.Query(ctx, `SELECT x.param || ' ' || x.code || ' ' || `+system+` || ' ' || r.id || ' ' || coalesce(x.patient, '-')
FROM idx_token x JOIN resources r ON r.rid = x.rid ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(got, "; ")
	}
	before := dump("x.system")
	if !strings.Contains(before, "_security R urn:conf o1 p1") || !strings.Contains(before, "code 8867-4 urn:local o2 p2") {
		t.Fatalf("rows before the migration: %s", before)
	}

	s = openSchema(t, url)
	defer s.Close()
	if after := dump("(SELECT system FROM token_systems WHERE sid = x.sid)"); after != before {
		t.Errorf("rows after the migration:\n%s\nwant\n%s", after, before)
	}
	var systems, distinct int
	var typeIndex bool
	if err := c.QueryRow(ctx, `SELECT (SELECT count(*) FROM token_systems), (SELECT count(DISTINCT sid) FROM idx_token), to_regclass('resources_type') IS NOT NULL`).Scan(&systems, &distinct, &typeIndex); err != nil {
		t.Fatal(err)
	}
	if typeIndex {
		t.Error("resources_type remains (resources_type_rid answers for it)")
	}
	var method string
	if err := c.QueryRow(ctx, `SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'history'::regclass AND attname = 'body'`).Scan(&method); err != nil {
		t.Fatal(err)
	}
	_, noLZ4 := c.Exec(ctx, `CREATE TEMP TABLE lz4_probe (b bytea COMPRESSION lz4)`)
	if want := map[bool]string{false: "l", true: ""}[noLZ4 != nil]; method != want {
		t.Errorf("history.body compression %q, want %q (server has lz4: %v)", method, want, noLZ4 == nil)
	}
	if systems != distinct {
		t.Errorf("%d systems interned, %d in use", systems, distinct)
	}
	tok := func(system, code string) store.Value { return store.Value{System: system, Code: code} }
	for _, tc := range []struct {
		name    string
		typ     string
		clauses []store.Clause
		want    string
	}{
		{"code and system", "Observation", []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{tok("http://loinc.org", "8867-4")}}}, "o1,o2"},
		{"system only", "Observation", []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{tok("urn:local", "")}}}, "o2"},
		{"code only", "Observation", []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{{Code: "8867-4", AnySystem: true}}}}, "o1,o2"},
		{"no system", "Observation", []store.Clause{{Param: "category", Kind: store.KindToken, Values: []store.Value{tok("", "vital")}}}, "o1"},
		{"a system never stored", "Observation", []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{tok("urn:never", "8867-4")}}}, ""},
		{"label within a compartment", "Observation", []store.Clause{
			{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}},
			{Param: "_security", Kind: store.KindToken, Values: []store.Value{tok("urn:conf", "R")}}}, "o1"},
		{"identifier", "Practitioner", []store.Clause{{Param: "identifier", Kind: store.KindToken, Values: []store.Value{tok("urn:npi", "1")}}}, "pr1"},
	} {
		got, err := s.Search(ctx, store.Query{Type: tc.typ, Clauses: tc.clauses})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var ids []string
		for _, r := range got.Resources {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		if g := strings.Join(ids, ","); g != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, g, tc.want)
		}
	}
	// A write after the migration reuses the interned systems.
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "t2", "h1",
		storetest.Res("Observation", "o3", "p1", `,"status":"final"`, storetest.Ref("patient", "Patient/p1"),
			storetest.Token("code", "http://loinc.org", "1-1")))}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM token_systems`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != systems {
		t.Errorf("%d systems after a write of a known one, want %d", n, systems)
	}
}

// TestMigrationBindsExistingClientsToNothing: a client registered before
// migration 0005 reads as an unbound EHR client (no organization, role "").
func TestMigrationBindsExistingClientsToNothing(t *testing.T) {
	url := migratedSchema(t)
	execAll(t, url,
		`ALTER TABLE audit_events DROP COLUMN organization`,
		`ALTER TABLE clients DROP COLUMN organization`,
		`ALTER TABLE clients DROP COLUMN role`,
		`DELETE FROM schema_version WHERE version >= 5`,
		`INSERT INTO clients (id, name, kind, secret_hash, redirect_uris, launch_url, scopes, origins, jwks_url)
		 VALUES ('ehr-1', 'EHR', 'backend', '', '{}', '', '{system/*.rs}', '{}', 'https://ehr.example/jwks')`)
	s := openSchema(t, url)
	defer s.Close()
	storetest.CheckUnboundClient(t, s)
}

// TestMigrationIndexesSecurityLabels: resources stored before migration
// 0006 (bodies with meta.security, no _security rows) get their labels'
// rows, so _security:not=R excludes them.
func TestMigrationIndexesSecurityLabels(t *testing.T) {
	url := freshSchema(t)
	s := openSchema(t, url)
	storetest.WriteUnindexedLabels(t, s)
	s.Close()
	execAll(t, url, `ALTER TABLE audit_events DROP COLUMN organization`, `DELETE FROM schema_version WHERE version >= 6`)

	s = openSchema(t, url)
	defer s.Close()
	storetest.CheckLabelsIndexed(t, s)
}

// TestMigrationDropsIndexForeignKeys: after migration 0010, history and the
// index tables carry no foreign key to resources (the bulk path's COPY pays
// no per-row check); resources, the table they name, is unchanged.
func TestMigrationDropsIndexForeignKeys(t *testing.T) {
	ctx := context.Background()
	url := migratedSchema(t)
	c := connect(t, url)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_constraint
		WHERE contype = 'f' AND connamespace = current_schema()::regnamespace AND confrelid = 'resources'::regclass`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d foreign keys to resources remain", n)
	}
}

// TestMigrationMovesAuditEvents: the audit events stored before migration
// 0011 read back unchanged from the compact, partitioned trail.
func TestMigrationMovesAuditEvents(t *testing.T) {
	s, _ := openLegacyAuditSchema(t)
	defer s.Close()
	storetest.CheckLegacyAudit(t, s)
}

// openSchema opens the store on url's schema, migrating it.
func openSchema(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// connect opens a connection to url's schema, closed when t ends.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// migratedSchema is a fresh schema at the newest migration, no store open.
func migratedSchema(t *testing.T) string {
	t.Helper()
	url := freshSchema(t)
	openSchema(t, url).Close()
	return url
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// openLegacyAuditSchema opens a fresh schema whose audit trail is the
// storetest legacy records in the pre-0011 audit_events table, migrated on
// open (the start of the audit migration tests), and the schema's URL.
func openLegacyAuditSchema(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	url := migratedSchema(t)
	var stmts []string
	for _, r := range storetest.LegacyAuditRecords() {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO audit_events VALUES (%s, %d, %s, %s, %s, %s, %s, %s, %d, %s, %s, %s, %s, %s)`,
			sqlQuote(r.ID), r.Recorded.UnixMilli(), sqlQuote(r.Patient), sqlQuote(r.ClientID), sqlQuote(r.Interaction),
			sqlQuote(r.Type), sqlQuote(r.ResourceID), sqlQuote(r.Version), r.Status, sqlQuote(r.FHIRUser),
			sqlQuote(r.Subject), sqlQuote(r.Purpose), sqlQuote(r.RequestID), sqlQuote(r.Organization)))
	}
	execAll(t, url, append(stmts, `DELETE FROM schema_version WHERE version >= 11`)...)
	return openSchema(t, url), url
}
