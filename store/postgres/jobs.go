package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
)

// Jobs (store.JobStore) live in the table of migrations/0007_jobs.sql, shared
// by every replica.

var _ store.JobStore = (*Store)(nil)

// PutJob implements store.JobStore.
func (s *Store) PutJob(ctx context.Context, j store.Job) error {
	pool, err := s.db()
	if err != nil {
		return err
	}
	_, err = pool.Exec(ctx, `INSERT INTO jobs (id, kind, owner, status, created, updated, progress, total, result, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, owner = excluded.owner, status = excluded.status,
		created = excluded.created, updated = excluded.updated, progress = excluded.progress, total = excluded.total,
		result = excluded.result, error = excluded.error`,
		j.ID, j.Kind, j.Owner, j.Status, j.Created.UTC(), j.Updated.UTC(), j.Progress, j.Total, j.Result, j.Error)
	if err != nil {
		return fmt.Errorf("store: postgres: put job: %w", err)
	}
	return nil
}

// GetJob implements store.JobStore.
func (s *Store) GetJob(ctx context.Context, id string) (store.Job, error) {
	pool, err := s.db()
	if err != nil {
		return store.Job{}, err
	}
	j := store.Job{ID: id}
	err = pool.QueryRow(ctx, `SELECT kind, owner, status, created, updated, progress, total, result, error FROM jobs WHERE id = $1`, id).
		Scan(&j.Kind, &j.Owner, &j.Status, &j.Created, &j.Updated, &j.Progress, &j.Total, &j.Result, &j.Error)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Job{}, store.ErrNotFound
	}
	if err != nil {
		return store.Job{}, fmt.Errorf("store: postgres: get job: %w", err)
	}
	j.Created, j.Updated = j.Created.UTC(), j.Updated.UTC()
	return j, nil
}

// DeleteJob implements store.JobStore.
func (s *Store) DeleteJob(ctx context.Context, id string) error {
	pool, err := s.db()
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `DELETE FROM jobs WHERE id = $1`, id); err != nil {
		return fmt.Errorf("store: postgres: delete job: %w", err)
	}
	return nil
}

// DeleteJobsBefore implements store.JobStore.
func (s *Store) DeleteJobsBefore(ctx context.Context, t time.Time) (int, error) {
	pool, err := s.db()
	if err != nil {
		return 0, err
	}
	tag, err := pool.Exec(ctx, `DELETE FROM jobs WHERE updated < $1`, t.UTC())
	if err != nil {
		return 0, fmt.Errorf("store: postgres: delete jobs: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
