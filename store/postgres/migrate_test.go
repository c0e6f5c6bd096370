package postgres_test

import (
	"context"
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
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// Every test reverts to a schema before the jobs table and the export
	// walk's index (the newest migrations), which it recreates.
	for _, stmt := range append([]string{`DROP TABLE IF EXISTS jobs`, `DROP INDEX IF EXISTS resources_type_rid`}, stmts...) {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// TestMigrationBindsExistingClientsToNothing: a client registered before
// migration 0005 reads as an unbound EHR client (no organization, role "").
func TestMigrationBindsExistingClientsToNothing(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s, err := postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	execAll(t, url,
		`ALTER TABLE audit_events DROP COLUMN organization`,
		`ALTER TABLE clients DROP COLUMN organization`,
		`ALTER TABLE clients DROP COLUMN role`,
		`DELETE FROM schema_version WHERE version >= 5`,
		`INSERT INTO clients (id, name, kind, secret_hash, redirect_uris, launch_url, scopes, origins, jwks_url)
		 VALUES ('ehr-1', 'EHR', 'backend', '', '{}', '', '{system/*.rs}', '{}', 'https://ehr.example/jwks')`)
	s, err = postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckUnboundClient(t, s)
}

// TestMigrationIndexesSecurityLabels: resources stored before migration
// 0006 (bodies with meta.security, no _security rows) get their labels'
// rows, so _security:not=R excludes them.
func TestMigrationIndexesSecurityLabels(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s, err := postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.WriteUnindexedLabels(t, s)
	s.Close()
	execAll(t, url, `ALTER TABLE audit_events DROP COLUMN organization`, `DELETE FROM schema_version WHERE version >= 6`)

	s, err = postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckLabelsIndexed(t, s)
}

// TestMigrationDropsIndexForeignKeys: after migration 0010, history and the
// index tables carry no foreign key to resources (the bulk path's COPY pays
// no per-row check); resources, the table they name, is unchanged.
func TestMigrationDropsIndexForeignKeys(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s, err := postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_constraint
		WHERE contype = 'f' AND connamespace = current_schema()::regnamespace AND confrelid = 'resources'::regclass`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d foreign keys to resources remain", n)
	}
}
