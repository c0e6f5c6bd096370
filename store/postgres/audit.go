package postgres

import (
	"context"

	"github.com/ketabridge/ketabridge/store"
)

// The audit trail (store.AuditStore, store.AuditArchive) lives in
// migrations/0011_audit_compact.sql's audit table, partitioned by range of
// the recorded time into one partition per UTC day (audit_YYYYMMDD, created
// when a batch first needs it), so old days are dropped as whole tables.
// The shared implementation is sqlcore.Auth's (store/internal/sqlcore
// audit.go); a batch is one transaction of multi-row INSERTs.

var (
	_ store.AuditStore   = (*Store)(nil)
	_ store.AuditArchive = (*Store)(nil)
)

// AuditUsage implements store.AuditArchive: the events and the bytes of the
// audit partitions, audit_terms and audit_exports with their indexes.
func (s *Store) AuditUsage(ctx context.Context) (events, bytes int64, err error) {
	pool, err := s.db()
	if err != nil {
		return 0, 0, err
	}
	err = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit),
  (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('audit'))::bigint
  + pg_total_relation_size('audit_terms') + pg_total_relation_size('audit_exports')`).Scan(&events, &bytes)
	if err != nil {
		return 0, 0, s.authStore.Wrap("audit usage", err)
	}
	return events, bytes, nil
}
