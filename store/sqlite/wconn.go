package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// The writer runs its statements on the driver connection directly
// (sql.Conn.Raw): database/sql's per-call locking and argument conversion
// cost about a quarter of a small insert, and Apply runs a dozen statements
// per resource. The driver statements are prepared once and used only inside
// Raw on the one writer connection, which the Store holds for its lifetime.

// dconn is the writer's driver connection.
type dconn struct {
	conn driver.Conn
}

func (c dconn) exec(ctx context.Context, query string) error {
	ex, ok := c.conn.(driver.ExecerContext)
	if !ok {
		return errors.New("store: sqlite: driver cannot exec")
	}
	_, err := ex.ExecContext(ctx, query, nil)
	return err
}

func (c dconn) prepare(ctx context.Context, query string) (*dstmt, error) {
	pc, ok := c.conn.(driver.ConnPrepareContext)
	if !ok {
		return nil, errors.New("store: sqlite: driver cannot prepare")
	}
	st, err := pc.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	ex, ok1 := st.(driver.StmtExecContext)
	qu, ok2 := st.(driver.StmtQueryContext)
	if !ok1 || !ok2 {
		_ = st.Close()
		return nil, errors.New("store: sqlite: driver statement lacks context methods")
	}
	return &dstmt{st: st, ex: ex, qu: qu}, nil
}

// keptStmts are statements prepared on one driver connection on first use
// and kept, by their text (the texts are few), until close.
type keptStmts map[string]*dstmt

func (k *keptStmts) get(ctx context.Context, c dconn, query string) (*dstmt, error) {
	if st := (*k)[query]; st != nil {
		return st, nil
	}
	st, err := c.prepare(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: prepare: %w", err)
	}
	if *k == nil {
		*k = keptStmts{}
	}
	(*k)[query] = st
	return st, nil
}

func (k *keptStmts) close() error {
	var errs []error
	for q, st := range *k {
		errs = append(errs, st.close())
		delete(*k, q)
	}
	return errors.Join(errs...)
}

// dstmt is a prepared driver statement with reusable argument buffers.
type dstmt struct {
	st   driver.Stmt
	ex   driver.StmtExecContext
	qu   driver.StmtQueryContext
	args []driver.NamedValue
	row  []driver.Value
}

func (d *dstmt) bind(args []any) ([]driver.NamedValue, error) {
	d.args = d.args[:0]
	for i, a := range args {
		var v driver.Value
		switch a := a.(type) {
		case nil, int64, float64, string, []byte:
			v = a
		case int:
			v = int64(a)
		case bool:
			if a {
				v = int64(1)
			} else {
				v = int64(0)
			}
		default:
			return nil, fmt.Errorf("store: sqlite: cannot bind %T", a)
		}
		d.args = append(d.args, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	return d.args, nil
}

// exec runs the statement and returns the number of rows it changed.
func (d *dstmt) exec(ctx context.Context, args ...any) (int64, error) {
	nv, err := d.bind(args)
	if err != nil {
		return 0, err
	}
	res, err := d.ex.ExecContext(ctx, nv)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queryRow runs the statement and scans its first row into dest (pointers
// to int64, bool, string or []byte; NULL scans as the zero value). found is
// false when there is no row.
func (d *dstmt) queryRow(ctx context.Context, args []any, dest ...any) (found bool, err error) {
	nv, err := d.bind(args)
	if err != nil {
		return false, err
	}
	rows, err := d.qu.QueryContext(ctx, nv)
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
	}()
	ncol := len(rows.Columns())
	if ncol < len(dest) {
		return false, fmt.Errorf("store: sqlite: %d columns for %d destinations", ncol, len(dest))
	}
	if cap(d.row) < ncol {
		d.row = make([]driver.Value, ncol)
	}
	row := d.row[:ncol]
	if err := rows.Next(row); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	for i, p := range dest {
		if err := scanValue(row[i], p); err != nil {
			return false, fmt.Errorf("store: sqlite: column %d: %w", i, err)
		}
	}
	return true, nil
}

func scanValue(v driver.Value, p any) error {
	switch p := p.(type) {
	case *int64:
		switch v := v.(type) {
		case int64:
			*p = v
		case nil:
			*p = 0
		default:
			return fmt.Errorf("cannot scan %T into int64", v)
		}
	case *bool:
		switch v := v.(type) {
		case int64:
			*p = v != 0
		case nil:
			*p = false
		default:
			return fmt.Errorf("cannot scan %T into bool", v)
		}
	case *string:
		switch v := v.(type) {
		case string:
			*p = v
		case []byte:
			*p = string(v)
		case nil:
			*p = ""
		default:
			return fmt.Errorf("cannot scan %T into string", v)
		}
	case *[]byte:
		switch v := v.(type) {
		case []byte:
			*p = v
		case string:
			*p = []byte(v)
		case nil:
			*p = nil
		default:
			return fmt.Errorf("cannot scan %T into []byte", v)
		}
	default:
		return fmt.Errorf("unsupported destination %T", p)
	}
	return nil
}

func (d *dstmt) close() error { return d.st.Close() }
