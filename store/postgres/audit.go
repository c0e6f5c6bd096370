package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
)

// The audit trail (store.AuditStore) lives in migrations/0003_audit.sql's
// audit_events table, one compact row per event (the AuditEvent JSON is
// rendered when read). A batch is one transaction inserting every record
// through unnest'ed column arrays in one statement.

// auditColumns are audit_events' columns, in insert and select order.
const auditColumns = "id, recorded, patient, client_id, interaction, type, resource_id, version, status, fhir_user, subject, purpose, request_id"

// AppendAudit writes the records in one statement (so all or none); records
// whose id is already stored are skipped (ON CONFLICT DO NOTHING), so a
// retried batch is idempotent.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	n := len(records)
	var (
		ids, patients, clients, inters, types, rids, versions = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		users, subjects, purposes, reqs                       = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		recorded                                              = make([]int64, n)
		statuses                                              = make([]int32, n)
	)
	for i, r := range records {
		if r.ID == "" || r.Interaction == "" {
			return fmt.Errorf("store: postgres: append audit: record %d: empty id or interaction", i)
		}
		ids[i], recorded[i], patients[i], clients[i], inters[i], types[i] = r.ID, r.Recorded.UnixMilli(), r.Patient, r.ClientID, r.Interaction, r.Type
		rids[i], versions[i], statuses[i], users[i], subjects[i], purposes[i], reqs[i] = r.ResourceID, r.Version, int32(r.Status), r.FHIRUser, r.Subject, r.Purpose, r.RequestID
	}
	return s.authWrite(ctx, "append audit", func(tx pgx.Tx) error {
		// DISTINCT ON keeps the first of duplicate ids within the batch.
		_, err := tx.Exec(ctx, `INSERT INTO audit_events (`+auditColumns+`)
SELECT DISTINCT ON (id) `+auditColumns+` FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
  $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY
  AS t(`+auditColumns+`, ord)
ORDER BY id, ord
ON CONFLICT (id) DO NOTHING`,
			ids, recorded, patients, clients, inters, types, rids, versions, statuses, users, subjects, purposes, reqs)
		return err
	})
}

// ListAudit returns up to limit records (all when limit <= 0) recorded at or
// after since, ordered by recorded time, then id.
func (s *Store) ListAudit(ctx context.Context, since time.Time, limit int) ([]store.AuditRecord, error) {
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	from := int64(-1 << 62)
	if !since.IsZero() {
		from = since.UnixMilli() // stored precision; never skips a record at since
	}
	rows, err := pool.Query(ctx, `SELECT `+auditColumns+` FROM audit_events
WHERE recorded >= $1 ORDER BY recorded, id LIMIT $2`, from, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("store: postgres: list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var ms int64
		var status int32
		if err := rows.Scan(&r.ID, &ms, &r.Patient, &r.ClientID, &r.Interaction, &r.Type, &r.ResourceID,
			&r.Version, &status, &r.FHIRUser, &r.Subject, &r.Purpose, &r.RequestID); err != nil {
			return nil, fmt.Errorf("store: postgres: list audit: %w", err)
		}
		r.Recorded, r.Status = msTime(ms), int(status)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: postgres: list audit: %w", err)
	}
	return out, nil
}
