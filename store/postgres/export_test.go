package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// SetAnalyzeMinRows lowers the ANALYZE threshold for a test.
func SetAnalyzeMinRows(n int64) (restore func()) {
	old := analyzeMinRows
	analyzeMinRows = n
	return func() { analyzeMinRows = old }
}

// MigrationFiles are the embedded migrations.
var MigrationFiles = migrationFiles

// ExplainExport returns PostgreSQL's EXPLAIN of the page query Export runs
// for q, one line per plan node.
func (s *Store) ExplainExport(ctx context.Context, q store.ExportQuery) (string, error) {
	pool, err := s.db()
	if err != nil {
		return "", err
	}
	e := &explainer{q: pgQuerier{pool}, explain: "EXPLAIN "}
	err = sqlcore.Export(ctx, sqlcore.Postgres, e, &q, s.paramKey(ctx, pool), &driverBody{}, func(int64, *store.Resource) error { return nil })
	return e.plan.String(), errors.Join(err, e.err)
}

// QueryRowForTest runs a query on the store's pool and scans its row.
func (s *Store) QueryRowForTest(ctx context.Context, text string, dest ...any) error {
	pool, err := s.db()
	if err != nil {
		return err
	}
	return pool.QueryRow(ctx, text).Scan(dest...)
}

// ExplainExportCount returns EXPLAIN ANALYZE of the statement ExportCount
// runs for q.
func (s *Store) ExplainExportCount(ctx context.Context, q store.ExportQuery) (string, error) {
	pool, err := s.db()
	if err != nil {
		return "", err
	}
	e := &explainer{q: pgQuerier{pool}, explain: "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "}
	_, _, err = sqlcore.ExportCount(ctx, sqlcore.Postgres, e, &q, s.paramKey(ctx, pool))
	return e.plan.String(), errors.Join(err, e.err)
}

// explainer runs EXPLAIN of the queries given it and answers them with no
// row (QueryRow: a row that scans nothing).
type explainer struct {
	q       pgQuerier
	explain string
	plan    strings.Builder
	err     error
}

func (e *explainer) Exec(context.Context, string, ...any) (int64, error) {
	return 0, errors.New("explainer: exec")
}

func (e *explainer) QueryRow(ctx context.Context, text string, args ...any) sqlcore.Row {
	rows, err := e.Query(ctx, text, args...)
	if err != nil {
		e.err = err
	}
	_ = rows
	return noRow{}
}

type noRow struct{}

func (noRow) Scan(...any) error { return nil }

func (e *explainer) Query(ctx context.Context, text string, args ...any) (sqlcore.Rows, error) {
	rows, err := e.q.Query(ctx, e.explain+text, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		fmt.Fprintln(&e.plan, line)
	}
	e.err = rows.Err()
	return noRows{}, nil
}

type noRows struct{}

func (noRows) Next() bool        { return false }
func (noRows) Err() error        { return nil }
func (noRows) Close()            {}
func (noRows) Scan(...any) error { return errors.New("no row") }
