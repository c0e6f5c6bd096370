package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// What the shared SQL core (store/internal/sqlcore) needs of pgx.

// pgQuerier adapts a *pgxpool.Pool or a pgx.Tx to sqlcore.Querier
// (pgx.Rows is already a sqlcore.Rows).
type pgQuerier struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

func (q pgQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (q pgQuerier) Query(ctx context.Context, query string, args ...any) (sqlcore.Rows, error) {
	return q.q.Query(ctx, query, args...)
}

func (q pgQuerier) QueryRow(ctx context.Context, query string, args ...any) sqlcore.Row {
	return q.q.QueryRow(ctx, query, args...)
}

// coreDB gives the shared auth and audit queries the pool.
type coreDB struct{ s *Store }

func (c coreDB) Reader() (sqlcore.Querier, error) {
	pool, err := c.s.db()
	if err != nil {
		return nil, err
	}
	return pgQuerier{pool}, nil
}

func (c coreDB) Write(ctx context.Context, fn func(sqlcore.Querier) error) error {
	pool, err := c.s.db()
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(pgQuerier{tx}) })
}

// authStore is the shared implementation of store.AuthStore (and
// ListAudit), embedded in Store under an unexported name.
type authStore = sqlcore.Auth

type jobStore = sqlcore.Jobs

// Export implements store.Exporter with the shared snapshot query
// (sqlcore.Export).
func (s *Store) Export(ctx context.Context, q store.ExportQuery, fn func(pos int64, r *store.Resource) error) error {
	pool, err := s.db()
	if err != nil {
		return err
	}
	return sqlcore.Export(ctx, sqlcore.Postgres, pgQuerier{pool}, &q, s.paramKey(ctx, pool), &driverBody{}, fn)
}

// ExportCount implements store.Exporter with the shared count
// (sqlcore.ExportCount).
func (s *Store) ExportCount(ctx context.Context, q store.ExportQuery) (int, int64, error) {
	pool, err := s.db()
	if err != nil {
		return 0, 0, err
	}
	return sqlcore.ExportCount(ctx, sqlcore.Postgres, pgQuerier{pool}, &q, s.paramKey(ctx, pool))
}

// driverBody lends a body's bytes from pgx's read buffer without a copy.
type driverBody struct{ b pgtype.DriverBytes }

func (d *driverBody) Dest() any     { return &d.b }
func (d *driverBody) Bytes() []byte { return d.b }
