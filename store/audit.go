package store

import (
	"context"
	"time"
)

// AuditRecord is one stored FHIR AuditEvent (the record of an access to
// patient data, ARCHITECTURE.md "Non-negotiables"). Patient and ClientID
// repeat what the body says so that per-patient and per-client reports need
// no JSON parsing; Body is the canonical AuditEvent JSON.
type AuditRecord struct {
	// ID is the AuditEvent's id (a UUID).
	ID string
	// Recorded is AuditEvent.recorded (stored at millisecond precision).
	Recorded time.Time
	// Patient is the id of the Patient whose data the event is about, empty
	// when it names none.
	Patient string
	// ClientID is the SMART client that made the request, empty when the
	// request carried no verified token.
	ClientID string
	// Body is the FHIR R4 AuditEvent JSON.
	Body []byte
}

// AuditStore is the append-only audit trail. Backends implement it beside
// Store and pass storetest.RunAudit.
type AuditStore interface {
	// AppendAudit writes the records atomically (all or none). A record
	// whose ID is already stored is skipped, so retrying a batch whose
	// outcome is unknown never duplicates events. An empty ID or Body is an
	// error.
	AppendAudit(ctx context.Context, records []AuditRecord) error
	// ListAudit returns up to limit records (all when limit <= 0) recorded at
	// or after since (all when since is zero; compared at millisecond
	// precision), ordered by Recorded, then ID.
	ListAudit(ctx context.Context, since time.Time, limit int) ([]AuditRecord, error)
}
