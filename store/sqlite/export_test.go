package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// SetBulkStageMax sets the most resources a store may hold for a bulk load
// to stage its index rows, and returns the function that restores it.
func SetBulkStageMax(n int) (restore func()) {
	old := bulkStageMax
	bulkStageMax = n
	return func() { bulkStageMax = old }
}

// ExplainSearch returns SQLite's EXPLAIN QUERY PLAN of the page query Search
// runs for q, one line per plan step, indented by depth.
func (s *Store) ExplainSearch(ctx context.Context, q store.Query) (string, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback() }()
	w, none, err := s.compileWhere(ctx, tx, &q)
	if err != nil || none {
		return "", err
	}
	text, args, err := s.pageSQL(ctx, tx, &q, w)
	if err != nil {
		return "", err
	}
	rows, err := tx.QueryContext(ctx, "EXPLAIN QUERY PLAN "+text, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	depth := map[int]int{}
	var b strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", err
		}
		depth[id] = depth[parent] + 1
		fmt.Fprintf(&b, "%s%s\n", strings.Repeat("  ", depth[id]-1), detail)
	}
	return b.String(), rows.Err()
}

// ExplainExport returns SQLite's EXPLAIN QUERY PLAN of the page query
// Export runs for q, one line per plan step.
func (s *Store) ExplainExport(ctx context.Context, q store.ExportQuery) (string, error) {
	e := &explainer{db: s.xdb}
	err := sqlcore.Export(ctx, sqlcore.SQLite, e, &q, s.paramKey(ctx, s.rdb, q.Type), &rawBody{}, func(int64, *store.Resource) error { return nil })
	return e.plan.String(), errors.Join(err, e.err)
}

// explainer runs EXPLAIN QUERY PLAN of the queries given it and answers
// them with no row.
type explainer struct {
	db   *sql.DB
	plan strings.Builder
	err  error
}

func (e *explainer) Exec(context.Context, string, ...any) (int64, error) {
	return 0, errors.New("explainer: exec")
}

func (e *explainer) QueryRow(context.Context, string, ...any) sqlcore.Row { return nil }

func (e *explainer) Query(ctx context.Context, text string, args ...any) (sqlcore.Rows, error) {
	rows, err := e.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+text, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return nil, err
		}
		fmt.Fprintln(&e.plan, detail)
	}
	e.err = rows.Err()
	return noRows{}, nil
}

type noRows struct{}

func (noRows) Next() bool        { return false }
func (noRows) Err() error        { return nil }
func (noRows) Close()            {}
func (noRows) Scan(...any) error { return errors.New("no row") }
