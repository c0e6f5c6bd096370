package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// What the shared SQL core (store/internal/sqlcore) needs of database/sql.

// sqlQuerier adapts a *sql.DB, *sql.Conn or *sql.Tx to sqlcore.Querier.
type sqlQuerier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (q sqlQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q sqlQuerier) Query(ctx context.Context, query string, args ...any) (sqlcore.Rows, error) {
	rows, err := q.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (q sqlQuerier) QueryRow(ctx context.Context, query string, args ...any) sqlcore.Row {
	return q.q.QueryRowContext(ctx, query, args...)
}

// sqlRows drops the error of Close (Err reports a failed iteration).
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// coreDB gives the shared auth and audit queries the reader pool and the
// writer connection.
type coreDB struct{ s *Store }

func (c coreDB) Reader() (sqlcore.Querier, error) {
	if c.s.closed.Load() {
		return nil, errClosed
	}
	return sqlQuerier{c.s.rdb}, nil
}

func (c coreDB) Write(ctx context.Context, fn func(sqlcore.Querier) error) error {
	return c.s.writeTx(ctx, func(w *sql.Conn) error {
		var kept *keptStmts
		if c.s.ws != nil {
			kept = &c.s.ws.byText
		}
		return fn(writerQuerier{sqlQuerier{w}, w, kept})
	})
}

// writerQuerier is a writer connection as the shared queries use it; its
// ExecStmt runs a statement prepared on first use and kept in kept (the
// audit trail's full-size INSERT: parsing its 600 placeholders was a tenth
// of an append, docs/design/security.md AUD-ARCH-2). The caller holds the
// connection's writer lock, which guards kept.
type writerQuerier struct {
	sqlQuerier
	w    *sql.Conn
	kept *keptStmts
}

var _ sqlcore.StmtExecer = writerQuerier{}

func (q writerQuerier) ExecStmt(ctx context.Context, query string, args ...any) (int64, error) {
	if q.kept == nil {
		return q.Exec(ctx, query, args...)
	}
	var n int64
	err := q.w.Raw(func(dc any) error {
		st, err := q.kept.get(ctx, dconn{dc.(driver.Conn)}, query)
		if err != nil {
			return err
		}
		n, err = st.exec(ctx, args...)
		return err
	})
	return n, err
}

// authStore is the shared implementation of store.AuthStore (and
// ListAudit), embedded in Store under an unexported name.
type authStore = sqlcore.Auth

type jobStore = sqlcore.Jobs

// Export implements store.Exporter with the shared snapshot query, on the
// export pool (exportPragmas): a page is one statement and needs no
// transaction of its own (sqlcore.Export).
func (s *Store) Export(ctx context.Context, q store.ExportQuery, fn func(pos int64, r *store.Resource) error) error {
	if s.closed.Load() {
		return errClosed
	}
	return sqlcore.Export(ctx, sqlcore.SQLite, exportQuerier{s}, &q, s.paramKey(ctx, s.rdb, q.Type), &rawBody{}, fn)
}

// exportQuerier runs the export's statements on the export pool, each
// prepared once per connection and kept (xcache): a file's pages are one
// statement with other arguments, and preparing it again for each page
// was about a twentieth of a download's CPU. Export holds no connection
// while it asks, so preparing on the pool cannot wait on itself.
type exportQuerier struct{ s *Store }

// maxExportStmts bounds the prepared export statements (their shapes vary
// with the caller's view and the query; beyond, statements run unprepared).
const maxExportStmts = 64

func (q exportQuerier) stmt(ctx context.Context, text string) (*sql.Stmt, error) {
	s := q.s
	s.xmu.Lock()
	defer s.xmu.Unlock()
	if s.closed.Load() {
		return nil, errClosed
	}
	if st, ok := s.xcache[text]; ok || len(s.xcache) >= maxExportStmts {
		return st, nil
	}
	st, err := s.xdb.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	s.xcache[text] = st
	return st, nil
}

func (q exportQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return sqlQuerier{q.s.xdb}.Exec(ctx, query, args...)
}

func (q exportQuerier) Query(ctx context.Context, query string, args ...any) (sqlcore.Rows, error) {
	st, err := q.stmt(ctx, query)
	if err != nil || st == nil {
		if errors.Is(err, errClosed) {
			return nil, err
		}
		return sqlQuerier{q.s.xdb}.Query(ctx, query, args...)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (q exportQuerier) QueryRow(ctx context.Context, query string, args ...any) sqlcore.Row {
	st, err := q.stmt(ctx, query)
	if err != nil || st == nil {
		return sqlQuerier{q.s.xdb}.QueryRow(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// ExportCount implements store.Exporter with the shared count
// (sqlcore.ExportCount), on the export pool.
func (s *Store) ExportCount(ctx context.Context, q store.ExportQuery) (int, int64, error) {
	if s.closed.Load() {
		return 0, 0, errClosed
	}
	return sqlcore.ExportCount(ctx, sqlcore.SQLite, exportQuerier{s}, &q, s.paramKey(ctx, s.rdb, q.Type))
}

// rawBody lends a body's bytes from database/sql without a copy.
type rawBody struct{ b sql.RawBytes }

func (r *rawBody) Dest() any     { return &r.b }
func (r *rawBody) Bytes() []byte { return r.b }
