package store

import (
	"context"
	"errors"
	"time"
)

// AuditRecord is one stored audit event (the record of an access to patient
// data, which every such access writes: docs/design/security.md PRIV-8): the
// compact, structured form of one FHIR AuditEvent. The store keeps the fields,
// not the JSON; the FHIR AuditEvent is rendered from a record when it is read
// (fhir.AuditEventJSON), deterministically: the same record always renders to
// the same bytes. Patient and ClientID make per-patient and per-client reports
// lookups. Strings are ids and codes only, never query strings or resource
// values.
type AuditRecord struct {
	// ID is the AuditEvent's id (a UUID).
	ID string
	// Recorded is AuditEvent.recorded (stored at millisecond precision, the
	// precision the AuditEvent renders).
	Recorded time.Time
	// Patient is the id of the Patient whose data the event is about, empty
	// when it names none.
	Patient string
	// ClientID is the SMART client that made the request, empty when the
	// request carried no verified token.
	ClientID string
	// Interaction is the FHIR interaction asked for (an auth.Interaction:
	// "read", "vread", "search-type", ...). Required.
	Interaction string
	// Type is the resource type asked for, empty when none.
	Type string
	// ResourceID is the id of the instance asked for, empty for a search.
	ResourceID string
	// Version is the version id of a vread, else empty.
	Version string
	// Status is the HTTP status of the response.
	Status int
	// FHIRUser is the token's fhirUser ("Practitioner/x"), empty when none.
	FHIRUser string
	// Subject is the token's subject when it names a user rather than the
	// client, else empty.
	Subject string
	// Purpose is the purpose-of-use code (v3-ActReason), empty when none.
	Purpose string
	// Organization is the id of the FHIR Organization the client acts for
	// (its binding, docs/design/security.md PRIV-11), empty when none.
	Organization string
	// RequestID is the X-Request-Id of the request, empty when none.
	RequestID string
}

// AuditStore is the append-only audit trail. Backends implement it beside
// Store and pass storetest.RunAudit.
type AuditStore interface {
	// AppendAudit writes the records atomically (all or none). A record
	// whose ID is already stored is skipped (the stored one is kept), so
	// retrying a batch whose outcome is unknown never duplicates events. An
	// empty ID or Interaction is an error. Every field round-trips exactly
	// (Recorded at millisecond precision, in UTC).
	AppendAudit(ctx context.Context, records []AuditRecord) error
	// ListAudit returns up to limit records (all when limit <= 0) recorded at
	// or after since (all when since is zero; compared at millisecond
	// precision), ordered by Recorded, then ID.
	ListAudit(ctx context.Context, since time.Time, limit int) ([]AuditRecord, error)
}

// AuditDay is one UTC day of the audit trail (docs/design/security.md
// AUD-ARCH-1): how many events it holds and what the last export of it
// wrote.
type AuditDay struct {
	// Day is the day's first instant (midnight UTC).
	Day time.Time
	// Events is how many events the store holds for the day.
	Events int64
	// Exported is how many events the day's last recorded export wrote
	// (MarkAuditExported); meaningful only when ExportedAt is set.
	Exported int64
	// ExportedAt is when the day was last marked exported, zero when never.
	ExportedAt time.Time
}

// ErrAuditNotExported is returned (wrapped, naming the day) by DropAudit when
// a day it would drop was never exported, or holds more events than its last
// export wrote: unexported audit is never dropped.
var ErrAuditNotExported = errors.New("store: audit day not exported")

// AuditArchive is the day-partitioned side of the audit trail: old days are
// exported (ketabridge audit export --before) and then dropped whole
// (ketabridge audit drop --before). Both SQL backends implement it.
type AuditArchive interface {
	// AuditDays returns the days before before (a midnight UTC; the zero
	// time is every day) that hold events or were marked exported, oldest
	// first.
	AuditDays(ctx context.Context, before time.Time) ([]AuditDay, error)
	// MarkAuditExported records that an export wrote days[i].Events events
	// of days[i].Day (durably, before this call); ExportedAt is set from
	// the store's clock.
	MarkAuditExported(ctx context.Context, days []AuditDay) error
	// DropAudit deletes every event recorded before before (a midnight
	// UTC), all or nothing: when any such day was never marked exported or
	// now holds a different number of events than its export wrote, it
	// drops nothing and returns ErrAuditNotExported naming the day. It
	// returns the days dropped.
	DropAudit(ctx context.Context, before time.Time) ([]AuditDay, error)
	// AuditUsage returns how many events the trail holds and the bytes its
	// tables and indexes take on disk (for the benchmark's bytes per
	// audited read).
	AuditUsage(ctx context.Context) (events, bytes int64, err error)
}

// AuditDayStart returns the midnight UTC that starts t's day.
func AuditDayStart(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
