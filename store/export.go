package store

import (
	"context"
	"errors"
	"time"
)

// ExportQuery selects one page of a snapshot of one resource type for Bulk
// Data export (docs/design/architecture.md "Bulk export"): every resource
// in the version that was current at At. A resource first stored after At is
// not there; one updated after At comes in its version at At; one whose
// version at At is a deletion is left out, or, with Since set, returned as
// a deletion (Deleted, no Body) when that deletion is after Since.
//
// A snapshot is walked in the order of its positions: a position is the
// store's own number for a resource (int64 > 0, fixed when the resource is
// first stored, never reused), so the walk reads the stored rows in about
// the order they were written, and a page starts after the last position
// of the one before (After). Paging neither skips nor repeats whatever is
// written meanwhile: the snapshot is fixed by At alone, and a page can be
// read again at any time, on any replica, with the same result.
type ExportQuery struct {
	Type string
	// At is the snapshot time (required): versions whose lastUpdated is at
	// or before it.
	At time.Time
	// Since, when non-zero, keeps the versions at At updated after it
	// (_since: Bulk Data export "state changed after the supplied time").
	Since time.Time
	// Patients, when non-empty, keeps the resources whose version at At is
	// in one of these compartments (Patient- and Group-level export).
	Patients []string
	// IDs, when non-empty, keeps only these ids.
	IDs []string
	// Filters, when non-nil, keeps the resources one of its terms matches
	// (_typeFilter: each term one filter query, ORed).
	Filters *Access
	// Access restricts as Query.Access does (nil: no restriction; no terms:
	// nothing).
	Access *Access
	// After is the position the page starts after (0: the first page);
	// Last, when non-zero, the last position it may reach.
	After, Last int64
	// Count is the most resources of the page (required, > 0).
	Count int
	// NoBody leaves the bodies unread (Body nil): what counting the
	// snapshot needs, at a fraction of the reads.
	NoBody bool
	// Lean reads only the positions, Deleted and the bodies: the other
	// fields of the Resource are left zero (Type aside). What a file
	// whose lines are the stored bodies needs, for a fraction of the
	// driver's work per resource.
	Lean bool
	// Kind, when set, keeps only the live resources (ExportLive) or only
	// the deletions (ExportDeletions) of the snapshot.
	Kind ExportKind
}

// ExportKind selects the resources of a snapshot by whether their version
// at At is a deletion (ExportQuery.Kind).
type ExportKind int

// Export kinds: every resource of the query, the live ones, the deleted
// ones.
const (
	ExportAll ExportKind = iota
	ExportLive
	ExportDeletions
)

// Exporter reads snapshots for Bulk Data export. Clause-based parts of the
// query (Filters, and Access terms with clauses or patients) are judged on
// the resource's current index rows and compartment, the version at At on
// its own compartment: a resource that no longer matches them is left out
// (fail closed, docs/design/security.md BULK-8).
type Exporter interface {
	// Export calls fn with each resource of one page of q and its
	// position, in position order, as the rows stream from the store: r
	// and r.Body are only valid during the call (the body is the driver's
	// buffer, not a copy). An error of fn ends the page and is returned.
	Export(ctx context.Context, q ExportQuery, fn func(pos int64, r *Resource) error) error
	// ExportCount counts the resources one page of q would give (at most
	// q.Count, after q.After) and returns how many and the position of
	// the last (0 when none), without handing any to the caller: what
	// cutting a snapshot into files needs, at the cost of one statement.
	ExportCount(ctx context.Context, q ExportQuery) (n int, last int64, err error)
}

// JobState is where an asynchronous job is.
type JobState string

// Job states. Accepted and Running count against an owner's limit.
const (
	JobAccepted JobState = "accepted"
	JobRunning  JobState = "running"
	JobDone     JobState = "done"
	JobFailed   JobState = "failed"
)

// Active reports whether the job still counts against its owner's limit.
func (s JobState) Active() bool { return s == JobAccepted || s == JobRunning }

// Job is an asynchronous job kept in the store, so any replica answers its
// status and any replica may finish it (docs/design/architecture.md
// "Replicated"). Request, Progress and Result are the job kind's own JSON.
type Job struct {
	ID    string
	Kind  string
	Owner string // the client id that started it
	State JobState
	// Request is what the job was asked to do.
	Request []byte
	// Progress is a short progress text (e.g. "42%").
	Progress string
	// Result is what a done job produced; Error what a failed one reports.
	Result []byte
	Error  string
	// Created; Updated at each change; Expires: when the job and what it
	// produced are gone (zero while it is active).
	Created, Updated, Expires time.Time
	// Lease is until when the worker that claimed a running job holds it;
	// after it, another worker may claim the job again (a replica killed
	// mid-job loses nothing but time).
	Lease time.Time
	// Attempts counts the claims.
	Attempts int
}

// ErrTooManyJobs is returned by CreateJob when the owner already has the
// allowed number of active jobs of the kind.
var ErrTooManyJobs = errors.New("store: too many active jobs")

// JobStore keeps asynchronous jobs. A job that is not found, or has expired,
// is ErrNotFound.
type JobStore interface {
	// CreateJob stores j (ID, Kind, Owner, Request set; State accepted, or
	// running when its creator runs it itself under j.Lease),
	// unless its owner already has maxActive or more active jobs of its
	// kind (ErrTooManyJobs; maxActive <= 0: no limit). The check and the
	// insert are one atomic step on every replica.
	CreateJob(ctx context.Context, j Job, maxActive int) error
	// Job returns a job that has not expired at now.
	Job(ctx context.Context, id string, now time.Time) (Job, error)
	// ClaimJob takes one job of kind that is accepted, or running with a
	// lease that ended before now, sets it running with Lease = until and
	// Attempts+1, and returns it; ok is false when there is none.
	ClaimJob(ctx context.Context, kind string, now, until time.Time) (j Job, ok bool, err error)
	// UpdateJob writes j's State, Progress, Result, Error, Expires and
	// Lease, if the stored job is still running under the lease the
	// caller holds (held: the Lease its claim or last update returned);
	// ok is false when it is not (cancelled, or claimed by another worker).
	UpdateJob(ctx context.Context, j Job, held time.Time) (ok bool, err error)
	// DeleteJob removes a job, active or not (a cancelled job is gone: its
	// worker's next UpdateJob fails); ok is false when it is unknown.
	DeleteJob(ctx context.Context, id string) (ok bool, err error)
	// DeleteExpiredJobs removes the jobs that expired at or before now.
	DeleteExpiredJobs(ctx context.Context, now time.Time) (int, error)
}
