package postgres

import (
	"context"

	"github.com/ketabridge/ketabridge/store"
)

// The audit trail (store.AuditStore, store.AuditArchive) lives in
// migrations/0014_audit_packs.sql's audit_packs table (one row per second of
// a batch, its events packed: docs/design/security.md AUD-ARCH-6),
// partitioned by range of the second into one partition per UTC day
// (auditp_YYYYMMDD, created when a batch first needs it), so old days are
// dropped as whole tables; the rows written before it stay readable in
// 0011's audit table (audit_YYYYMMDD) until their days are dropped. The
// shared implementation is sqlcore.Auth's (store/internal/sqlcore audit.go,
// auditpack.go); a batch is one transaction.

var (
	_ store.AuditStore   = (*Store)(nil)
	_ store.AuditArchive = (*Store)(nil)
)

// AuditUsage implements store.AuditArchive: the events and the bytes of the
// audit_packs and audit partitions (their TOAST included), audit_terms and
// audit_exports with their indexes.
func (s *Store) AuditUsage(ctx context.Context) (events, bytes int64, err error) {
	pool, err := s.db()
	if err != nil {
		return 0, 0, err
	}
	err = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit) + (SELECT coalesce(sum(n), 0) FROM audit_packs)::bigint,
  (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('audit'))::bigint
  + (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('audit_packs'))::bigint
  + pg_total_relation_size('audit_terms') + pg_total_relation_size('audit_exports')`).Scan(&events, &bytes)
	if err != nil {
		return 0, 0, s.authStore.Wrap("audit usage", err)
	}
	return events, bytes, nil
}
