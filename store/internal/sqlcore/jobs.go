package sqlcore

import (
	"context"
	"errors"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// Jobs implements store.JobStore with the same SQL on both backends (the jobs
// table of their migrations). Every change is one conditional statement or
// one write transaction, so replicas racing for a job or for an owner's last
// free slot see exactly one winner.
type Jobs struct {
	d      *Dialect
	db     DB
	closed error
	sql    jobSQL
}

type jobSQL struct {
	get, active, insert, candidate, claim, update, del, expire string
}

const jobCols = `id, kind, owner, state, request, progress, result, error, created, updated, expires, lease, attempts`

// NewJobs returns the shared job queries over db.
func NewJobs(d *Dialect, db DB, closed error) *Jobs {
	q := d.SQL
	claimable := `kind = ? AND (state = 'accepted' OR (state = 'running' AND lease < ?))`
	return &Jobs{d: d, db: db, closed: closed, sql: jobSQL{
		get:       q(`SELECT ` + jobCols + ` FROM jobs WHERE id = ? AND (expires IS NULL OR expires > ?)`),
		active:    q(`SELECT count(*) FROM jobs WHERE owner = ? AND kind = ? AND state IN ('accepted', 'running')`),
		insert:    q(`INSERT INTO jobs (` + jobCols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`),
		candidate: q(`SELECT id FROM jobs WHERE ` + claimable + ` ORDER BY created, id LIMIT 1`),
		claim: q(`UPDATE jobs SET state = 'running', lease = ?, attempts = attempts + 1, updated = ?
WHERE id = ? AND ` + claimable),
		update: q(`UPDATE jobs SET state = ?, progress = ?, result = ?, error = ?, expires = ?, lease = ?, updated = ?
WHERE id = ? AND state = 'running' AND lease = ?`),
		del:    q(`DELETE FROM jobs WHERE id = ?`),
		expire: q(`DELETE FROM jobs WHERE expires IS NOT NULL AND expires <= ?`),
	}}
}

func scanJob(r Row) (store.Job, error) {
	var j store.Job
	var state string
	var created, updated int64
	var expires, lease *int64
	err := r.Scan(&j.ID, &j.Kind, &j.Owner, &state, &j.Request, &j.Progress, &j.Result, &j.Error,
		&created, &updated, &expires, &lease, &j.Attempts)
	j.State = store.JobState(state)
	j.Created, j.Updated = MSTime(created), MSTime(updated)
	j.Expires, j.Lease = msOrZero(expires), msOrZero(lease)
	return j, err
}

// CreateJob implements store.JobStore.
func (s *Jobs) CreateJob(ctx context.Context, j store.Job, maxActive int) error {
	if j.ID == "" || j.Kind == "" || j.Owner == "" {
		return errors.New("store: create job: id, kind and owner are required")
	}
	err := s.db.Write(ctx, func(q Querier) error {
		if s.d.numbered {
			// PostgreSQL: serialize the count-then-insert of one owner
			// across replicas (SQLite has one writer already).
			if _, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "jobs:"+j.Owner); err != nil {
				return err
			}
		}
		if maxActive > 0 {
			var n int
			if err := q.QueryRow(ctx, s.sql.active, j.Owner, j.Kind).Scan(&n); err != nil {
				return err
			}
			if n >= maxActive {
				return store.ErrTooManyJobs
			}
		}
		state := store.JobAccepted
		if j.State == store.JobRunning {
			state = store.JobRunning // held from the start by its creator's Lease
		}
		_, err := q.Exec(ctx, s.sql.insert, j.ID, j.Kind, j.Owner, string(state), bytesOrEmpty(j.Request),
			j.Progress, bytesOrEmpty(j.Result), j.Error, j.Created.UnixMilli(), j.Created.UnixMilli(),
			nullMS(j.Expires), nullMS(j.Lease), 0)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrTooManyJobs) && !errors.Is(err, s.closed) {
		return s.d.wrap("create job", err)
	}
	return err
}

// bytesOrEmpty keeps NOT NULL blob columns non-null.
func bytesOrEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Job implements store.JobStore.
func (s *Jobs) Job(ctx context.Context, id string, now time.Time) (store.Job, error) {
	q, err := s.db.Reader()
	if err != nil {
		return store.Job{}, err
	}
	j, err := scanJob(q.QueryRow(ctx, s.sql.get, id, now.UnixMilli()))
	if noRows(err) {
		return store.Job{}, store.ErrNotFound
	}
	if err != nil {
		return store.Job{}, s.d.wrap("job", err)
	}
	return j, nil
}

// ClaimJob implements store.JobStore.
func (s *Jobs) ClaimJob(ctx context.Context, kind string, now, until time.Time) (store.Job, bool, error) {
	var id string
	var won bool
	err := s.db.Write(ctx, func(q Querier) error {
		err := q.QueryRow(ctx, s.sql.candidate, kind, now.UnixMilli()).Scan(&id)
		if noRows(err) {
			return nil
		}
		if err != nil {
			return err
		}
		n, err := q.Exec(ctx, s.sql.claim, until.UnixMilli(), now.UnixMilli(), id, kind, now.UnixMilli())
		won = n == 1
		return err
	})
	if err != nil {
		if errors.Is(err, s.closed) {
			return store.Job{}, false, err
		}
		return store.Job{}, false, s.d.wrap("claim job", err)
	}
	if !won {
		return store.Job{}, false, nil
	}
	j, err := s.Job(ctx, id, now)
	if errors.Is(err, store.ErrNotFound) {
		return store.Job{}, false, nil // deleted meanwhile
	}
	return j, err == nil, err
}

// UpdateJob implements store.JobStore.
func (s *Jobs) UpdateJob(ctx context.Context, j store.Job, held time.Time) (bool, error) {
	var n int64
	err := s.db.Write(ctx, func(q Querier) (err error) {
		n, err = q.Exec(ctx, s.sql.update, string(j.State), j.Progress, bytesOrEmpty(j.Result), j.Error,
			nullMS(j.Expires), nullMS(j.Lease), j.Updated.UnixMilli(), j.ID, held.UnixMilli())
		return err
	})
	if err != nil {
		if errors.Is(err, s.closed) {
			return false, err
		}
		return false, s.d.wrap("update job", err)
	}
	return n == 1, nil
}

// DeleteJob implements store.JobStore.
func (s *Jobs) DeleteJob(ctx context.Context, id string) (bool, error) {
	var n int64
	err := s.db.Write(ctx, func(q Querier) (err error) {
		n, err = q.Exec(ctx, s.sql.del, id)
		return err
	})
	if err != nil {
		if errors.Is(err, s.closed) {
			return false, err
		}
		return false, s.d.wrap("delete job", err)
	}
	return n == 1, nil
}

// DeleteExpiredJobs implements store.JobStore.
func (s *Jobs) DeleteExpiredJobs(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.db.Write(ctx, func(q Querier) (err error) {
		n, err = q.Exec(ctx, s.sql.expire, now.UnixMilli())
		return err
	})
	if err != nil {
		if errors.Is(err, s.closed) {
			return 0, err
		}
		return 0, s.d.wrap("expire jobs", err)
	}
	return int(n), nil
}
