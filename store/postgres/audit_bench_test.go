package postgres_test

import (
	"context"
	"testing"

	"github.com/ketabridge/ketabridge/store/postgres"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// BenchmarkAuditAppend: the bytes on disk per audited read
// (pg_total_relation_size of every audit table, partition and index;
// docs/benchmarks.md).
func BenchmarkAuditAppend(b *testing.B) {
	ctx := context.Background()
	url := freshSchema(b)
	s, err := postgres.Open(ctx, url, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := connect(b, url)
	storetest.BenchAuditAppend(b, s, func() (all, terms int64) {
		if _, err := c.Exec(ctx, `CHECKPOINT`); err != nil {
			b.Fatal(err)
		}
		if err := c.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint,
  coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname = 'audit_terms'), 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname LIKE 'audit%'`).Scan(&all, &terms); err != nil {
			b.Fatal(err)
		}
		return all, terms
	})
}
