package postgres_test

import (
	"context"
	"fmt"
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
	// Every test reverts to a schema before the jobs table, the export
	// walk's index and the compact audit trail and its packs (the newest
	// migrations), which it recreates.
	undo := []string{`DROP TABLE IF EXISTS jobs`, `DROP INDEX IF EXISTS resources_type_rid`,
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
