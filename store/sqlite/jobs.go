package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// Jobs (store.JobStore) live in the table of migrations/0008_jobs.sql:
// written on the writer connection, read on the reader pool.

var _ store.JobStore = (*Store)(nil)

// PutJob implements store.JobStore.
func (s *Store) PutJob(ctx context.Context, j store.Job) error {
	err := s.writeTx(ctx, func(c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `INSERT INTO jobs (id, kind, owner, status, created, updated, progress, total, result, error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, owner = excluded.owner, status = excluded.status,
			created = excluded.created, updated = excluded.updated, progress = excluded.progress, total = excluded.total,
			result = excluded.result, error = excluded.error`,
			j.ID, j.Kind, j.Owner, j.Status, j.Created.UnixMilli(), j.Updated.UnixMilli(), j.Progress, j.Total, j.Result, j.Error)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: sqlite: put job: %w", err)
	}
	return nil
}

// GetJob implements store.JobStore.
func (s *Store) GetJob(ctx context.Context, id string) (store.Job, error) {
	if s.closed.Load() {
		return store.Job{}, errClosed
	}
	j := store.Job{ID: id}
	var created, updated int64
	err := s.rdb.QueryRowContext(ctx, `SELECT kind, owner, status, created, updated, progress, total, result, error FROM jobs WHERE id = ?`, id).
		Scan(&j.Kind, &j.Owner, &j.Status, &created, &updated, &j.Progress, &j.Total, &j.Result, &j.Error)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Job{}, store.ErrNotFound
	}
	if err != nil {
		return store.Job{}, fmt.Errorf("store: sqlite: get job: %w", err)
	}
	j.Created, j.Updated = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return j, nil
}

// DeleteJob implements store.JobStore.
func (s *Store) DeleteJob(ctx context.Context, id string) error {
	err := s.writeTx(ctx, func(c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `DELETE FROM jobs WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: sqlite: delete job: %w", err)
	}
	return nil
}

// DeleteJobsBefore implements store.JobStore.
func (s *Store) DeleteJobsBefore(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := s.writeTx(ctx, func(c *sql.Conn) error {
		res, err := c.ExecContext(ctx, `DELETE FROM jobs WHERE updated < ?`, t.UnixMilli())
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: sqlite: delete jobs: %w", err)
	}
	return int(n), nil
}
