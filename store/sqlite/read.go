package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// SQL for the current version of one resource (a version row: see
// sqlcore.ReadVersion): the unique (type, id) index, then the history row by
// rowid.
const readSQL = `SELECT r.version, r.last_updated, r.deleted, coalesce(r.patient, ''), h.body
FROM resources r JOIN history h ON h.hid = r.hid
WHERE r.type = ? AND r.id = ?`

const vreadSQL = `SELECT h.version, h.last_updated, h.deleted, coalesce(h.patient, ''), h.body
FROM resources r JOIN history h ON h.rid = r.rid
WHERE r.type = ? AND r.id = ? AND h.version = ?`

// Read implements store.Store.Read, whose doc states the semantics.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	q, err := s.queryerFor(ctx, readSQL)
	if err != nil {
		return store.Resource{}, err
	}
	return sqlcore.SQLite.ReadVersion(q.QueryRowContext(ctx, readSQL, typ, id), "read", typ, id)
}

// VRead implements store.Store.VRead, whose doc states the semantics.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	q, err := s.queryerFor(ctx, vreadSQL)
	if err != nil {
		return store.Resource{}, err
	}
	return sqlcore.SQLite.ReadVersion(q.QueryRowContext(ctx, vreadSQL, typ, id, version), "vread", typ, id)
}

// History implements store.Store.History, whose doc states the semantics.
func (s *Store) History(ctx context.Context, typ, id string, count, offset int) ([]store.Resource, int, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = tx.Rollback() }()
	out, total, err := sqlcore.SQLite.History(ctx, sqlQuerier{tx}, typ, id, count, offset)
	if err != nil {
		return nil, 0, sqlcore.SQLite.WrapRead("history", err, errClosed)
	}
	return out, total, nil
}

// GetMany implements store.Store.GetMany, whose doc states the semantics.
func (s *Store) GetMany(ctx context.Context, keys []store.Key) ([]store.Resource, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	found := make(map[store.Key]store.Resource, len(keys))
	err = s.eachIDChunk(ctx, tx, keys, `SELECT r.id, r.version, r.last_updated, coalesce(r.patient, ''), h.body
FROM resources r JOIN history h ON h.hid = r.hid
WHERE r.type = ? AND r.id IN (%s) AND r.deleted = 0`, func(typ string, rows *sql.Rows) error {
		r := store.Resource{Type: typ}
		var ms int64
		if err := rows.Scan(&r.ID, &r.Version, &ms, &r.Patient, &r.Body); err != nil {
			return err
		}
		r.LastUpdated = sqlcore.MSTime(ms)
		found[store.Key{Type: typ, ID: r.ID}] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: get: %w", err)
	}
	out := make([]store.Resource, 0, len(found))
	for _, k := range keys {
		if r, ok := found[k]; ok {
			out = append(out, r)
			delete(found, k) // each key once
		}
	}
	return out, nil
}

// queryerFor runs text through the reader pool, prepared when the statement
// cache has room.
func (s *Store) queryerFor(ctx context.Context, text string) (queryer, error) {
	st, err := s.dbStmt(ctx, text)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return s.rdb, nil
	}
	return stmtQueryer{st}, nil
}

// stmtQueryer adapts a prepared statement to queryer (the query text is
// ignored: it is the statement's own).
type stmtQueryer struct{ st *sql.Stmt }

func (q stmtQueryer) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return q.st.QueryContext(ctx, args...)
}

func (q stmtQueryer) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return q.st.QueryRowContext(ctx, args...)
}
