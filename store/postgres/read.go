package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
)

// readSQL selects the current version of one resource: the unique (type, id)
// index, then the history row by its primary key.
const readSQL = `SELECT r.version, r.last_updated, r.deleted, coalesce(r.patient, ''), h.body
FROM resources r JOIN history h ON h.rid = r.rid AND h.version = r.version
WHERE r.type = $1 AND r.id = $2`

// Read returns the current version (http.html#read). A deleted resource
// returns its deletion version and store.ErrGone; an unknown one
// store.ErrNotFound.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	pool, err := s.db()
	if err != nil {
		return store.Resource{}, err
	}
	r := store.Resource{Type: typ, ID: id}
	var ms int64
	err = pool.QueryRow(ctx, readSQL, typ, id).Scan(&r.Version, &ms, &r.Deleted, &r.Patient, &r.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Resource{}, store.ErrNotFound
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("store: postgres: read: %w", err)
	}
	r.LastUpdated = msTime(ms)
	if r.Deleted {
		return r, store.ErrGone
	}
	return r, nil
}

// VRead returns one version (http.html#vread). An unknown resource or version
// is store.ErrNotFound; a deletion version is returned with store.ErrGone.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	pool, err := s.db()
	if err != nil {
		return store.Resource{}, err
	}
	r := store.Resource{Type: typ, ID: id, Version: version}
	var ms int64
	err = pool.QueryRow(ctx, `SELECT h.last_updated, h.deleted, coalesce(h.patient, ''), h.body
FROM resources r JOIN history h ON h.rid = r.rid
WHERE r.type = $1 AND r.id = $2 AND h.version = $3`, typ, id, version).Scan(&ms, &r.Deleted, &r.Patient, &r.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Resource{}, store.ErrNotFound
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("store: postgres: vread: %w", err)
	}
	r.LastUpdated = msTime(ms)
	if r.Deleted {
		return r, store.ErrGone
	}
	return r, nil
}

// History returns a page of a resource's versions, newest first, deletion
// versions included (http.html#history), and the number of all versions.
// count <= 0 means no limit. An unknown resource is store.ErrNotFound.
func (s *Store) History(ctx context.Context, typ, id string, count, offset int) ([]store.Resource, int, error) {
	var out []store.Resource
	var total int
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		var rid int64
		err := tx.QueryRow(ctx, `SELECT rid, version FROM resources WHERE type = $1 AND id = $2`, typ, id).Scan(&rid, &total)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		// Versions are 1..current without gaps, so the current version is the count.
		rows, err := tx.Query(ctx, `SELECT version, last_updated, deleted, coalesce(patient, ''), body
FROM history WHERE rid = $1 ORDER BY version DESC LIMIT $2 OFFSET $3`, rid, limitArg(count), max(offset, 0))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r := store.Resource{Type: typ, ID: id}
			var ms int64
			if err := rows.Scan(&r.Version, &ms, &r.Deleted, &r.Patient, &r.Body); err != nil {
				return err
			}
			r.LastUpdated = msTime(ms)
			out = append(out, r)
		}
		return rows.Err()
	})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, errClosed) {
		return nil, 0, err
	}
	if err != nil {
		return nil, 0, fmt.Errorf("store: postgres: history: %w", err)
	}
	return out, total, nil
}

// GetMany returns the current, non-deleted versions of the keys that exist,
// in the order of keys, each key at most once.
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
		r.LastUpdated = msTime(ms)
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
