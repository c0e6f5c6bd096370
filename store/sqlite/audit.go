package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// The audit trail (store.AuditStore) lives in migrations/0003_audit.sql's
// audit_events table, one compact row per event (the AuditEvent JSON is
// rendered when read; ListAudit is sqlcore.Auth's). A batch is one BEGIN
// IMMEDIATE transaction on the one writer connection (writeTx), so audit
// writes queue behind ingest like every other write instead of contending
// for the database lock; within it rows go in multi-row INSERTs of up to
// auditRowsPerInsert rows.

var _ store.AuditStore = (*Store)(nil)

// auditRowsPerInsert is how many rows one INSERT statement carries
// (sqlcore.AuditColumnCount bound parameters each; far below SQLite's
// variable limit).
const auditRowsPerInsert = 100

// auditInsertSQL returns the INSERT OR IGNORE of n rows.
func auditInsertSQL(n int) string {
	row := "(?" + strings.Repeat(",?", sqlcore.AuditColumnCount-1) + ")"
	var b strings.Builder
	b.Grow(64 + len(sqlcore.AuditColumns) + n*(len(row)+1))
	b.WriteString("INSERT OR IGNORE INTO audit_events (" + sqlcore.AuditColumns + ") VALUES ")
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
	if err := sqlcore.SQLite.CheckAudit(records); err != nil {
		return err
	}
	return s.authStore.Wrap("append audit", s.writeTx(ctx, func(w *sql.Conn) error {
		var full *sql.Stmt // the auditRowsPerInsert-row statement, reused
		defer func() {
			if full != nil {
				full.Close()
			}
		}()
		args := make([]any, 0, sqlcore.AuditColumnCount*min(len(records), auditRowsPerInsert))
		for rest := records; len(rest) > 0; {
			chunk := rest[:min(len(rest), auditRowsPerInsert)]
			rest = rest[len(chunk):]
			args = args[:0]
			for _, r := range chunk {
				args = append(args, r.ID, r.Recorded.UnixMilli(), r.Patient, r.ClientID, r.Interaction, r.Type,
					r.ResourceID, r.Version, r.Status, r.FHIRUser, r.Subject, r.Purpose, r.RequestID, r.Organization)
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
	}))
}
