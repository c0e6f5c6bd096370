package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// The audit trail (store.AuditStore) lives in migrations/0003_audit.sql's
// audit_events table. A batch is one BEGIN IMMEDIATE transaction on the one
// writer connection (authWrite), so audit writes queue behind ingest like
// every other write instead of contending for the database lock.

var _ store.AuditStore = (*Store)(nil)

// AppendAudit writes the records in one transaction; records whose id is
// already stored are skipped (INSERT OR IGNORE), so a retried batch is
// idempotent.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	for i, r := range records {
		if r.ID == "" || len(r.Body) == 0 {
			return fmt.Errorf("store: sqlite: append audit: record %d: empty id or body", i)
		}
	}
	return s.authWrite(ctx, "append audit", func(w *sql.Conn) error {
		st, err := w.PrepareContext(ctx, `INSERT OR IGNORE INTO audit_events (id, recorded, patient, client_id, body) VALUES (?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range records {
			if _, err := st.ExecContext(ctx, r.ID, r.Recorded.UnixMilli(), r.Patient, r.ClientID, r.Body); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListAudit returns up to limit records (all when limit <= 0) recorded at or
// after since, ordered by recorded time, then id.
func (s *Store) ListAudit(ctx context.Context, since time.Time, limit int) ([]store.AuditRecord, error) {
	db, err := s.authReader()
	if err != nil {
		return nil, err
	}
	from := int64(-1 << 62)
	if !since.IsZero() {
		from = since.UnixMilli() // stored precision; never skips a record at since
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := db.QueryContext(ctx, `SELECT id, recorded, patient, client_id, body FROM audit_events
WHERE recorded >= ? ORDER BY recorded, id LIMIT ?`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var ms int64
		if err := rows.Scan(&r.ID, &ms, &r.Patient, &r.ClientID, &r.Body); err != nil {
			return nil, fmt.Errorf("store: sqlite: list audit: %w", err)
		}
		r.Recorded = msTime(ms)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sqlite: list audit: %w", err)
	}
	return out, nil
}
