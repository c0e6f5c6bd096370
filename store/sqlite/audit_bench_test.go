package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// BenchmarkAuditAppend: the bytes on disk per audited read (dbstat over the
// audit tables and indexes of the audit file; docs/benchmarks.md).
func BenchmarkAuditAppend(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "ketabridge.db")
	s, err := sqlite.Open(ctx, path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	db, err := sql.Open("sqlite", sqlite.AuditPath(path))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	storetest.BenchAuditAppend(b, s, func() (all, terms int64) {
		if err := db.QueryRowContext(ctx, `SELECT coalesce(sum(pgsize), 0),
  coalesce(sum(CASE WHEN name LIKE '%audit_terms%' THEN pgsize END), 0) FROM dbstat
WHERE name LIKE 'audit%' OR name LIKE 'sqlite_autoindex_audit%'`).Scan(&all, &terms); err != nil {
			b.Fatal(err)
		}
		return all, terms
	})
}
