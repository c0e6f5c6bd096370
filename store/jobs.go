package store

import (
	"context"
	"time"
)

// Job states.
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// Job is the durable state of a request answered 202 Accepted and finished
// in the background (an ingest batch sent with Prefer: respond-async; the
// Bulk Data export's kick-off is the same pattern). It lives in the shared
// database, so any replica answers its status URL.
type Job struct {
	// ID is the job's unguessable id (the status URL's last segment).
	ID string
	// Kind says what the job does ("ingest").
	Kind string
	// Owner is the OAuth client that started it; only that client may read
	// it (docs/design/security.md IN-5).
	Owner string
	// Status is JobRunning, JobDone or JobFailed.
	Status string
	// Created and Updated are set by the caller.
	Created, Updated time.Time
	// Progress counts the items handled so far, of Total.
	Progress, Total int
	// Result is the job's answer once done: a JSON document (for an ingest,
	// every record's outcome). It holds no text the answer would not.
	Result []byte
	// Error is a failed job's safe text (no PHI: it is shown to the owner).
	Error string
}

// JobStore keeps jobs. Implemented by the SQLite and PostgreSQL stores and
// held to store/storetest's Jobs contract.
type JobStore interface {
	// PutJob creates the job, or replaces the job of the same ID.
	PutJob(ctx context.Context, j Job) error
	// GetJob returns the job; ErrNotFound when there is none.
	GetJob(ctx context.Context, id string) (Job, error)
	// DeleteJob removes the job (no error when there is none).
	DeleteJob(ctx context.Context, id string) error
	// DeleteJobsBefore removes the jobs last updated before t and returns
	// how many.
	DeleteJobsBefore(ctx context.Context, t time.Time) (int, error)
}
