package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// The audit trail (store.AuditStore) lives in migrations/0003_audit.sql's
// audit_events table, one compact row per event (the AuditEvent JSON is
// rendered when read). A batch is one BEGIN IMMEDIATE transaction on the one
// writer connection (authWrite), so audit writes queue behind ingest like
// every other write instead of contending for the database lock; within it
// rows go in multi-row INSERTs of up to auditRowsPerInsert rows.

var _ store.AuditStore = (*Store)(nil)

// auditRowsPerInsert is how many rows one INSERT statement carries
// (auditColumns bound parameters each; far below SQLite's variable limit).
const auditRowsPerInsert = 100

// auditColumns are audit_events' columns, in insert and select order.
const auditColumns = "id, recorded, patient, client_id, interaction, type, resource_id, version, status, fhir_user, subject, purpose, request_id"

// auditColumnCount is the number of columns in auditColumns.
const auditColumnCount = 13

// auditInsertSQL returns the INSERT OR IGNORE of n rows.
func auditInsertSQL(n int) string {
	row := "(?" + strings.Repeat(",?", auditColumnCount-1) + ")"
	var b strings.Builder
	b.Grow(64 + len(auditColumns) + n*(len(row)+1))
	b.WriteString("INSERT OR IGNORE INTO audit_events (" + auditColumns + ") VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// AppendAudit writes the records in one transaction; records whose id is
// already stored are skipped (INSERT OR IGNORE), so a retried batch is
// idempotent.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	for i, r := range records {
		if r.ID == "" || r.Interaction == "" {
			return fmt.Errorf("store: sqlite: append audit: record %d: empty id or interaction", i)
		}
	}
	return s.authWrite(ctx, "append audit", func(w *sql.Conn) error {
		var full *sql.Stmt // the auditRowsPerInsert-row statement, reused
		defer func() {
			if full != nil {
				full.Close()
			}
		}()
		args := make([]any, 0, auditColumnCount*min(len(records), auditRowsPerInsert))
		for rest := records; len(rest) > 0; {
			chunk := rest[:min(len(rest), auditRowsPerInsert)]
			rest = rest[len(chunk):]
			args = args[:0]
			for _, r := range chunk {
				args = append(args, r.ID, r.Recorded.UnixMilli(), r.Patient, r.ClientID, r.Interaction, r.Type,
					r.ResourceID, r.Version, r.Status, r.FHIRUser, r.Subject, r.Purpose, r.RequestID)
			}
			if len(chunk) < auditRowsPerInsert {
				if _, err := w.ExecContext(ctx, auditInsertSQL(len(chunk)), args...); err != nil {
					return err
				}
				continue
			}
			if full == nil {
				var err error
				if full, err = w.PrepareContext(ctx, auditInsertSQL(auditRowsPerInsert)); err != nil {
					return err
				}
			}
			if _, err := full.ExecContext(ctx, args...); err != nil {
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
	rows, err := db.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_events
WHERE recorded >= ? ORDER BY recorded, id LIMIT ?`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var ms int64
		if err := rows.Scan(&r.ID, &ms, &r.Patient, &r.ClientID, &r.Interaction, &r.Type, &r.ResourceID,
			&r.Version, &r.Status, &r.FHIRUser, &r.Subject, &r.Purpose, &r.RequestID); err != nil {
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
