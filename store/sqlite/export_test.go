package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
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
