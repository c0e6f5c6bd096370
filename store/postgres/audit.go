package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// The audit trail (store.AuditStore) lives in migrations/0003_audit.sql's
// audit_events table, one compact row per event (the AuditEvent JSON is
// rendered when read; ListAudit is sqlcore.Auth's). A batch is one
// transaction inserting every record through unnest'ed column arrays in one
// statement.

// auditInsertSQL inserts the records given as column arrays; DISTINCT ON
// keeps the first of duplicate ids within the batch.
const auditInsertSQL = `INSERT INTO audit_events (` + sqlcore.AuditColumns + `)
SELECT DISTINCT ON (id) ` + sqlcore.AuditColumns + ` FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
  $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[]) WITH ORDINALITY
  AS t(` + sqlcore.AuditColumns + `, ord)
ORDER BY id, ord
ON CONFLICT (id) DO NOTHING`

// AppendAudit writes the records in one statement (so all or none); records
// whose id is already stored are skipped (ON CONFLICT DO NOTHING), so a
// retried batch is idempotent.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	if err := sqlcore.Postgres.CheckAudit(records); err != nil {
		return err
	}
	n := len(records)
	var (
		ids, patients, clients, inters, types, rids, versions = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		users, subjects, purposes, reqs, orgs                 = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		recorded                                              = make([]int64, n)
		statuses                                              = make([]int32, n)
	)
	for i, r := range records {
		ids[i], recorded[i], patients[i], clients[i], inters[i], types[i] = r.ID, r.Recorded.UnixMilli(), r.Patient, r.ClientID, r.Interaction, r.Type
		rids[i], versions[i], statuses[i], users[i], subjects[i], purposes[i], reqs[i], orgs[i] = r.ResourceID, r.Version, int32(r.Status), r.FHIRUser, r.Subject, r.Purpose, r.RequestID, r.Organization
	}
	pool, err := s.db()
	if err != nil {
		return err
	}
	return s.authStore.Wrap("append audit", pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, auditInsertSQL, ids, recorded, patients, clients, inters, types, rids, versions, statuses, users, subjects, purposes, reqs, orgs)
		return err
	}))
}
