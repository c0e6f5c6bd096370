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
// for q, one line per plan node; with analyze, EXPLAIN ANALYZE's (the
// query run, its heap fetches counted).
func (s *Store) ExplainExport(ctx context.Context, q store.ExportQuery, analyze bool) (string, error) {
	pool, err := s.db()
	if err != nil {
		return "", err
	}
	e := &explainer{q: pgQuerier{pool}, explain: "EXPLAIN "}
	if analyze {
		e.explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "
	}
	err = sqlcore.Export(ctx, sqlcore.Postgres, e, &q, paramName, &driverBody{}, func(int64, *store.Resource) error { return nil })
	return e.plan.String(), errors.Join(err, e.err)
}

// explainer runs EXPLAIN of the queries given it and answers them with no
// row.
type explainer struct {
	q       pgQuerier
	explain string
	plan    strings.Builder
	err     error
}

func (e *explainer) Exec(context.Context, string, ...any) (int64, error) {
	return 0, errors.New("explainer: exec")
}

func (e *explainer) QueryRow(context.Context, string, ...any) sqlcore.Row { return nil }

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
