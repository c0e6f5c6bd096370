package sqlcore

import (
	"context"
	"fmt"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// The audit trail (store.AuditStore) lives in migrations/0003_audit.sql's
// audit_events table on both backends, one compact row per event (the
// AuditEvent JSON is rendered when read). Appending is each backend's own
// fast path (SQLite: multi-row INSERTs on its writer; PostgreSQL: column
// arrays in one statement); reading is shared.

// AuditColumns are audit_events' columns, in insert and select order.
const AuditColumns = "id, recorded, patient, client_id, interaction, type, resource_id, version, status, fhir_user, subject, purpose, request_id, organization"

// AuditColumnCount is the number of AuditColumns.
const AuditColumnCount = 14

// CheckAudit checks the records an AppendAudit stores: each needs an id and
// an interaction.
func (d *Dialect) CheckAudit(records []store.AuditRecord) error {
	for i, r := range records {
		if r.ID == "" || r.Interaction == "" {
			return d.wrap("append audit", fmt.Errorf("record %d: empty id or interaction", i))
		}
	}
	return nil
}

// ListAudit returns up to limit records (all when limit <= 0) recorded at or
// after since, ordered by recorded time, then id.
func (a *Auth) ListAudit(ctx context.Context, since time.Time, limit int) ([]store.AuditRecord, error) {
	// sinceMS: the stored precision, so a record at since is never skipped.
	return list(ctx, a, "list audit", scanAudit, a.sql.listAudit, sinceMS(since), a.d.Limit(limit))
}

func scanAudit(r Row) (store.AuditRecord, error) {
	var rec store.AuditRecord
	var ms int64
	if err := r.Scan(&rec.ID, &ms, &rec.Patient, &rec.ClientID, &rec.Interaction, &rec.Type, &rec.ResourceID,
		&rec.Version, &rec.Status, &rec.FHIRUser, &rec.Subject, &rec.Purpose, &rec.RequestID, &rec.Organization); err != nil {
		return store.AuditRecord{}, err
	}
	rec.Recorded = MSTime(ms)
	return rec, nil
}
