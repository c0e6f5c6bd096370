package sqlite

import (
	"context"

	"github.com/ketabridge/ketabridge/store"
)

// The audit trail (store.AuditStore, store.AuditArchive) lives in the audit
// file (auditfile.go) in migrations/0013_audit_compact.sql's audit table, one
// compact row per event in a WITHOUT ROWID table keyed by (recorded, id
// key), so the trail needs no second index and a day is one range of the key
// (dropped with one DELETE). The shared implementation is sqlcore.Auth's
// (store/internal/sqlcore audit.go); a batch is one BEGIN IMMEDIATE
// transaction on the audit file's one writer connection, which waits for
// no resource write.

var (
	_ store.AuditStore   = (*Store)(nil)
	_ store.AuditArchive = (*Store)(nil)
)

// auditObjects are the tables and indexes of the audit trail.
const auditObjects = `'audit', 'audit_terms', 'audit_text_ids', 'sqlite_autoindex_audit_terms_1', 'audit_exports', 'sqlite_autoindex_audit_1'`

// AuditUsage implements store.AuditArchive: the events and the bytes of the
// audit pages (dbstat).
func (s *Store) AuditUsage(ctx context.Context) (events, bytes int64, err error) {
	if s.closed.Load() {
		return 0, 0, errClosed
	}
	if err := s.audit.rdb.QueryRowContext(ctx, `SELECT count(*) FROM audit`).Scan(&events); err != nil {
		return 0, 0, s.authStore.Wrap("audit usage", err)
	}
	if err := s.audit.rdb.QueryRowContext(ctx, `SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN (`+auditObjects+`)`).Scan(&bytes); err != nil {
		return 0, 0, s.authStore.Wrap("audit usage", err)
	}
	return events, bytes, nil
}
