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
	undo := []string{pairsUndo, refRIDsUndo, searchParamsUndo, tokenSystemsUndo, `DROP TABLE IF EXISTS jobs`, `DROP INDEX IF EXISTS resources_type_rid`,
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

// pairsUndo reverts migration 0018: a combined patient and subject row is
// two rows again.
const pairsUndo = `DO $$ BEGIN
    IF to_regclass('search_params') IS NOT NULL AND EXISTS (SELECT 1 FROM search_params WHERE name = 'patient|subject') THEN
        INSERT INTO search_params (name) VALUES ('patient'), ('subject') ON CONFLICT (name) DO NOTHING;
        INSERT INTO idx_ref (pid, trid, target, rid)
            SELECT p.pid, x.trid, x.target, x.rid FROM idx_ref x
            JOIN search_params c ON c.pid = x.pid AND c.name = 'patient|subject'
            CROSS JOIN search_params p WHERE p.name IN ('patient', 'subject');
        DELETE FROM idx_ref x USING search_params c WHERE c.pid = x.pid AND c.name = 'patient|subject';
        DELETE FROM search_params WHERE name = 'patient|subject';
    END IF;
END $$`

// refRIDsUndo reverts migration 0017: every reference row holds its
// target's text again.
const refRIDsUndo = `DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'idx_ref'::regclass AND attname = 'trid' AND NOT attisdropped) THEN
        ALTER TABLE idx_ref DROP CONSTRAINT idx_ref_pkey;
        UPDATE idx_ref x SET target = t.type || '/' || t.id FROM resources t WHERE x.trid <> 0 AND t.rid = x.trid;
        ALTER TABLE idx_ref DROP COLUMN trid;
        ALTER TABLE idx_ref ADD PRIMARY KEY (pid, target, rid);
    END IF;
END $$`

// refTargetText is the text of the reference row x's target, in the layout
// of migration 0017 or before it.
func refTargetText(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var rids bool
	if err := c.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_attribute
WHERE attrelid = 'idx_ref'::regclass AND attname = 'trid' AND NOT attisdropped)`).Scan(&rids); err != nil {
		t.Fatal(err)
	}
	if rids {
		return `CASE WHEN x.trid <> 0 THEN (SELECT t.type || '/' || t.id FROM resources t WHERE t.rid = x.trid) ELSE x.target END`
	}
	return `x.target`
}

// searchParamsUndo reverts migration 0016: index rows hold their
// parameter's name again, with the indexes of 0015.
const searchParamsUndo = `DO $$
DECLARE t text;
BEGIN
    IF to_regclass('search_params') IS NOT NULL THEN
        FOREACH t IN ARRAY ARRAY['idx_token', 'idx_string', 'idx_date', 'idx_ref', 'idx_number', 'idx_quantity'] LOOP
            EXECUTE format('ALTER TABLE %I ADD COLUMN param text COLLATE "C"', t);
            EXECUTE format('UPDATE %I x SET param = p.name FROM search_params p WHERE p.pid = x.pid', t);
            EXECUTE format('ALTER TABLE %I ALTER COLUMN param SET NOT NULL', t);
            EXECUTE format('ALTER TABLE %I DROP COLUMN pid', t);
            EXECUTE format('CREATE INDEX %I ON %I (rid, param)', t || '_rid', t);
        END LOOP;
        DROP TABLE search_params;
        ALTER TABLE idx_token ADD PRIMARY KEY (param, code, sid, rid);
        CREATE INDEX idx_token_patient ON idx_token (patient, param, code, sid, rid)
            WHERE patient IS NOT NULL AND param <> '_security';
        ALTER TABLE idx_string ADD PRIMARY KEY (param, value, rid);
        ALTER TABLE idx_date ADD PRIMARY KEY (param, lo, hi, rid);
        ALTER TABLE idx_ref ADD PRIMARY KEY (param, target, rid);
        ALTER TABLE idx_number ADD PRIMARY KEY (param, num, rid);
        ALTER TABLE idx_quantity ADD PRIMARY KEY (param, num, system, code, rid);
    END IF;
END $$`

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
	dump := func(param, system string) string {
		t.Helper()
		rows, err := c.Query(ctx, `SELECT `+param+` || ' ' || x.code || ' ' || `+system+` || ' ' || r.id || ' ' || coalesce(x.patient, '-')
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
	before := dump("x.param", "x.system")
	if !strings.Contains(before, "_security R urn:conf o1 p1") || !strings.Contains(before, "code 8867-4 urn:local o2 p2") {
		t.Fatalf("rows before the migration: %s", before)
	}

	s = openSchema(t, url)
	defer s.Close()
	// Migration 0016 (PERF-PG-5) runs too: the parameters by pid.
	if after := dump("(SELECT name FROM search_params WHERE pid = x.pid)", "(SELECT system FROM token_systems WHERE sid = x.sid)"); after != before {
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

// indexDump is every index row of url's schema as text, sorted: the
// table, the parameter (param is the expression giving its name; system a
// token row's system), the values and the resource's type/id.
func indexDump(t *testing.T, c *pgx.Conn, param, system string) string {
	t.Helper()
	var parts []string
	for tbl, cols := range map[string]string{
		"idx_token":    `x.code || ' ' || ` + system + ` || ' ' || coalesce(x.patient, '-')`,
		"idx_string":   `x.value`,
		"idx_date":     `x.lo || ' ' || x.hi`,
		"idx_ref":      refTargetText(t, c),
		"idx_number":   `x.num::text`,
		"idx_quantity": `x.num || ' ' || x.system || ' ' || x.code`,
	} {
		rows, err := c.Query(context.Background(), `SELECT '`+tbl+` ' || `+param+` || ' ' || `+cols+` || ' ' || r.type || '/' || r.id
FROM `+tbl+` x JOIN resources r ON r.rid = x.rid`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range got {
			// A combined patient and subject row (migration 0018,
			// PERF-PG-8) is the two rows it stands for.
			if rest, ok := strings.CutPrefix(row, "idx_ref patient|subject "); ok {
				parts = append(parts, "idx_ref patient "+rest, "idx_ref subject "+rest)
				continue
			}
			parts = append(parts, row)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}

// TestMigrationInternsSearchParams: index rows stored before migration
// 0016 (each naming its parameter by its text) hold, once converted, what
// the new code writes for the same records (every table, parameter, value,
// resource and compartment), each name interned once and _security as pid
// 1 (idx_token_patient's predicate); searches of every kind, within a
// compartment too, :missing, a name never stored and _include's Refs
// answer as before; a write after the migration reuses the interned names
// and interns a new one (docs/design/security.md PERF-PG-5).
func TestMigrationInternsSearchParams(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s := openSchema(t, url)
	dayLo, dayHi := storetest.Day("2024-03-01")
	rec := storetest.Rec("session", "t1", "h1",
		storetest.Res("Observation", "o1", "p1", `,"status":"final"`, storetest.Ref("patient", "Patient/p1"),
			storetest.Ref("subject", "Patient/p1"), storetest.Ref("performer", "Practitioner/pr1"),
			storetest.Token("code", "http://loinc.org", "8867-4"), storetest.Token("_security", "urn:conf", "R"),
			storetest.Date("date", dayLo, dayHi), storetest.Qty("value-quantity", 72, "http://unitsofmeasure.org", "/min")),
		storetest.Res("Observation", "o2", "p2", `,"status":"final"`, storetest.Ref("patient", "Patient/p2"),
			storetest.Ref("subject", "Patient/p2"), storetest.Token("code", "http://loinc.org", "8867-4"),
			storetest.Token("_security", "urn:conf", "N")),
		storetest.Res("RiskAssessment", "ra1", "p1", ``, storetest.Ref("subject", "Patient/p1"), storetest.Num("probability", 0.25)),
		storetest.Res("Practitioner", "pr1", "", ``, storetest.Token("identifier", "urn:npi", "1"), storetest.Str("name", "Ada Lovelace")))
	if _, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	c := connect(t, url)
	byPID, bySID := "(SELECT name FROM search_params WHERE pid = x.pid)", "(SELECT system FROM token_systems WHERE sid = x.sid)"
	want := indexDump(t, c, byPID, bySID)
	if n := strings.Count(want, "\n") + 1; n != 15 {
		t.Fatalf("%d index rows written, want 15:\n%s", n, want)
	}
	// The rows as 0015 held them: each naming its parameter by its text.
	execAll(t, url, `ALTER TABLE audit_events DROP COLUMN organization`, `DELETE FROM schema_version WHERE version >= 6`)
	if before := indexDump(t, c, "x.param", "x.system"); before != want {
		t.Fatalf("rows before the migration:\n%s\nwant\n%s", before, want)
	}

	s = openSchema(t, url)
	defer s.Close()
	if after := indexDump(t, c, byPID, bySID); after != want {
		t.Errorf("rows after the migration:\n%s\nwant\n%s", after, want)
	}
	var names, used, security int
	var paramCols int
	var patientPred string
	if err := c.QueryRow(ctx, `SELECT (SELECT count(*) FROM search_params),
    (SELECT count(*) FROM (SELECT pid FROM idx_token UNION SELECT pid FROM idx_string UNION SELECT pid FROM idx_date
        UNION SELECT pid FROM idx_ref UNION SELECT pid FROM idx_number UNION SELECT pid FROM idx_quantity
        UNION SELECT pid FROM search_params WHERE name IN ('patient', 'subject')
            AND EXISTS (SELECT 1 FROM idx_ref x JOIN search_params c ON c.pid = x.pid AND c.name = 'patient|subject')) u),
    (SELECT pid FROM search_params WHERE name = '_security'),
    (SELECT count(*) FROM pg_attribute WHERE attname = 'param' AND NOT attisdropped AND attrelid IN
        ('idx_token'::regclass, 'idx_string'::regclass, 'idx_date'::regclass, 'idx_ref'::regclass, 'idx_number'::regclass, 'idx_quantity'::regclass)),
    pg_get_expr(i.indpred, i.indrelid) FROM pg_index i WHERE i.indexrelid = 'idx_token_patient'::regclass`).Scan(&names, &used, &security, &paramCols, &patientPred); err != nil {
		t.Fatal(err)
	}
	if names != used || security != 1 || paramCols != 0 || !strings.Contains(patientPred, "pid <> 1") {
		t.Errorf("%d names interned, %d in use, _security pid %d, %d param columns left, idx_token_patient WHERE %s",
			names, used, security, paramCols, patientPred)
	}
	tok := func(system, code string) store.Value { return store.Value{System: system, Code: code} }
	yes := true
	for _, tc := range []struct {
		name    string
		typ     string
		clauses []store.Clause
		want    string
	}{
		{"token", "Observation", []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{tok("http://loinc.org", "8867-4")}}}, "o1,o2"},
		{"reference", "Observation", []store.Clause{{Param: "subject", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p2"}}}}, "o2"},
		{"token within a compartment", "Observation", []store.Clause{
			{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}},
			{Param: "code", Kind: store.KindToken, Values: []store.Value{tok("http://loinc.org", "8867-4")}}}, "o1"},
		{"label within a compartment", "Observation", []store.Clause{
			{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p2"}}},
			{Param: "_security", Kind: store.KindToken, Values: []store.Value{tok("urn:conf", "N")}}}, "o2"},
		{"date", "Observation", []store.Clause{{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Eq, Lo: dayLo.UnixMilli(), Hi: dayHi.UnixMilli()}}}}, "o1"},
		{"quantity", "Observation", []store.Clause{{Param: "value-quantity", Kind: store.KindQuantity, Values: []store.Value{{Prefix: store.Gt, Num: 70, System: "http://unitsofmeasure.org", Code: "/min"}}}}, "o1"},
		{"number", "RiskAssessment", []store.Clause{{Param: "probability", Kind: store.KindNumber, Values: []store.Value{{Prefix: store.Lt, Num: 0.5}}}}, "ra1"},
		{"string", "Practitioner", []store.Clause{{Param: "name", Kind: store.KindString, Values: []store.Value{{Str: "ada"}}}}, "pr1"},
		{"missing", "Observation", []store.Clause{{Param: "performer", Kind: store.KindReference, Missing: &yes}}, "o2"},
		{"a name never stored", "Observation", []store.Clause{{Param: "focus", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}}}, ""},
		{"a name never stored, missing", "Observation", []store.Clause{{Param: "focus", Kind: store.KindReference, Missing: &yes}}, "o1,o2"},
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
	if g := refsText(t, s, nil, store.Key{Type: "Observation", ID: "o1"}); g != "o1 patient Patient/p1, o1 performer Practitioner/pr1, o1 subject Patient/p1" {
		t.Errorf("refs of o1: %s", g)
	}
	// A write after the migration reuses the interned names, and interns
	// one never stored.
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "t2", "h1",
		storetest.Res("Observation", "o3", "p1", `,"status":"final"`, storetest.Ref("patient", "Patient/p1"),
			storetest.Ref("focus", "Patient/p1"), storetest.Token("code", "http://loinc.org", "1-1")))}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM search_params`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != names+1 {
		t.Errorf("%d names after a write of one new name, want %d", n, names+1)
	}
	got2, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "focus", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}}}})
	if err != nil || len(got2.Resources) != 1 || got2.Resources[0].ID != "o3" {
		t.Errorf("focus search after the write: %v, %v", got2.Resources, err)
	}
	// Refs are ordered by the parameter's name, not its pid (focus was
	// interned last).
	if g := refsText(t, s, []string{"patient", "focus"}, store.Key{Type: "Observation", ID: "o3"}); g != "o3 focus Patient/p1, o3 patient Patient/p1" {
		t.Errorf("refs of o3: %s", g)
	}
}
