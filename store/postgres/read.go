package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// readSQL selects the current version of one resource (a version row: see
// sqlcore.ReadVersion): the unique (type, id) index, then the history row by
// its primary key.
const readSQL = `SELECT r.version, r.last_updated, r.deleted, coalesce(r.patient, ''), h.body
FROM resources r JOIN history h ON h.rid = r.rid AND h.version = r.version
WHERE r.type = $1 AND r.id = $2`

const vreadSQL = `SELECT h.version, h.last_updated, h.deleted, coalesce(h.patient, ''), h.body
FROM resources r JOIN history h ON h.rid = r.rid
WHERE r.type = $1 AND r.id = $2 AND h.version = $3`

// Read implements store.Store.Read, whose doc states the semantics.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	pool, err := s.db()
	if err != nil {
		return store.Resource{}, err
	}
	return sqlcore.Postgres.ReadVersion(pool.QueryRow(ctx, readSQL, typ, id), "read", typ, id)
}

// VRead implements store.Store.VRead, whose doc states the semantics.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	pool, err := s.db()
	if err != nil {
		return store.Resource{}, err
	}
	return sqlcore.Postgres.ReadVersion(pool.QueryRow(ctx, vreadSQL, typ, id, version), "vread", typ, id)
}

// History implements store.Store.History, whose doc states the semantics.
func (s *Store) History(ctx context.Context, typ, id string, count, offset int) ([]store.Resource, int, error) {
	var out []store.Resource
	var total int
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, total, err = sqlcore.Postgres.History(ctx, pgQuerier{tx}, typ, id, count, offset)
		return err
	})
	if err != nil {
		return nil, 0, sqlcore.Postgres.WrapRead("history", err, errClosed)
	}
	return out, total, nil
}

// GetMany implements store.Store.GetMany, whose doc states the semantics.
func (s *Store) GetMany(ctx context.Context, keys []store.Key) ([]store.Resource, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	types, ids := uniqueKeys(keys)
	rows, err := pool.Query(ctx, `SELECT r.type, r.id, r.version, r.last_updated, coalesce(r.patient, ''), h.body
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(type, id, ord)
JOIN resources r ON r.type = k.type AND r.id = k.id
JOIN history h ON h.rid = r.rid AND h.version = r.version
WHERE NOT r.deleted
ORDER BY k.ord`, types, ids)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: get: %w", err)
	}
	defer rows.Close()
	out := make([]store.Resource, 0, len(types))
	for rows.Next() {
		var r store.Resource
		var ms int64
		if err := rows.Scan(&r.Type, &r.ID, &r.Version, &ms, &r.Patient, &r.Body); err != nil {
			return nil, fmt.Errorf("store: postgres: get: %w", err)
		}
		r.LastUpdated = sqlcore.MSTime(ms)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: postgres: get: %w", err)
	}
	return out, nil
}

// uniqueKeys splits keys into parallel type and id slices, each key once, in
// first-seen order.
func uniqueKeys(keys []store.Key) (types, ids []string) {
	seen := make(map[store.Key]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		types = append(types, k.Type)
		ids = append(ids, k.ID)
	}
	return types, ids
}
