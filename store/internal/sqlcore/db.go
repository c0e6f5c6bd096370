package sqlcore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// Querier runs statements: a pool, a connection or a transaction of either
// driver, adapted by its backend.
type Querier interface {
	// Exec runs a statement and returns the number of rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// QueryRow's Scan reports no row with an error that is
	// sql.ErrNoRows (database/sql's own; pgx's ErrNoRows wraps it).
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// StmtExecer is what a Querier may also offer: Exec of a statement that is
// prepared once and kept for the connection's life (SQLite's writer keeps
// the audit trail's full-size INSERT so, AUD-ARCH-2; pgx caches every
// statement by itself). query is one of a few fixed texts.
type StmtExecer interface {
	ExecStmt(ctx context.Context, query string, args ...any) (int64, error)
}

// Row is one result row.
type Row interface {
	Scan(dest ...any) error
}

// RowScanner iterates over a result set its caller closes (*sql.Rows and
// pgx.Rows are ones).
type RowScanner interface {
	Row
	Next() bool
	Err() error
}

// Rows is a result set (pgx.Rows has this shape; database/sql's Close
// returns an error the adapter drops).
type Rows interface {
	RowScanner
	Close()
}

// noRows reports a Row's Scan finding no row.
func noRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// DB is a backend's connections as the shared auth and audit queries use
// them.
type DB interface {
	// Reader returns what reads run on, or the error of a closed store.
	Reader() (Querier, error)
	// Write runs fn in one write transaction, rolled back when fn fails;
	// fn's error is returned unchanged.
	Write(ctx context.Context, fn func(Querier) error) error
}

var errNotList = errors.New("list column is not text")

// collect scans every row of rows with scan; err is the query's error.
func collect[T any](rows Rows, err error, scan func(Row) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// MSTime is a stored Unix-millisecond time.
func MSTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// nullMS stores a time as Unix milliseconds, the zero time as NULL.
func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// msOrZero reads what nullMS stored.
func msOrZero(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return MSTime(*v)
}

// NullString stores the empty string as NULL.
func NullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// sinceMS is the Unix-millisecond bound of "at or after t" (the zero time:
// everything).
func sinceMS(t time.Time) int64 {
	if t.IsZero() {
		return -1 << 62
	}
	return t.UnixMilli()
}

// passThrough reports the errors the store contract returns unwrapped.
func passThrough(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrStale)
}

// wrap prefixes err with the backend and the operation.
func (d *Dialect) wrap(op string, err error) error {
	return fmt.Errorf("store: %s: %s: %w", d.Name, op, err)
}
