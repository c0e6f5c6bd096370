package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// A bulk load (store.BulkWriter; docs/design/architecture.md PERF-SQLB-1).
//
// Each resource costs the writer about 25 B-tree inserts, and most of them
// go to secondary indexes whose keys arrive in random order: every index
// row of a search table is written twice (its primary key and its
// (rid, pid) index), every resource and history row adds a compartment,
// export and version index entry. Into an empty store, a bulk load drops
// those indexes and builds them once at the end, where CREATE INDEX sorts
// the keys and writes each page once. Nothing else changes: Apply writes the
// same rows under the same transactions (synchronous=NORMAL, committed per
// call), so a crash loses no committed record; the indexes' CREATE
// statements are saved in bulk_indexes in the transaction that drops them,
// and Open builds them again when it finds any there.
//
// Kept during the load: the unique indexes (they answer "exists?" for each
// record and resource written) and resources_updated (each Apply reads the
// latest lastUpdated of its types through it). Reads that name a dropped
// index (INDEXED BY) fail until the load ends; the store was empty, so they
// could only have seen the load's own records.

// bulkTables are the tables whose secondary indexes a bulk load drops.
var bulkTables = []string{"resources", "history", "idx_token", "idx_string", "idx_date", "idx_ref", "idx_number", "idx_quantity"}

// bulkKeep are the indexes of bulkTables a bulk load keeps.
var bulkKeep = []string{"resources_updated"}

// bulkCache is the writer's page cache during a bulk load.
const bulkCache = "PRAGMA cache_size = -131072" // 128 MiB

// errBulkActive is BeginBulk's error while a load runs.
var errBulkActive = errors.New("store: sqlite: a bulk load is already running")

// BeginBulk implements store.BulkWriter. Into an empty store (no resource
// ever written) it drops the secondary indexes of the resource tables; into
// one that holds resources it keeps them (its readers need them) and only
// enlarges the writer's cache. end builds the dropped indexes.
func (s *Store) BeginBulk(ctx context.Context) (end func(context.Context) error, err error) {
	if err := s.lockWriter(ctx); err != nil {
		return nil, err
	}
	defer s.unlockWriter()
	if s.bulk {
		return nil, errBulkActive
	}
	err = execTx(ctx, s.w, func() error {
		var empty bool
		if err := s.w.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM resources)`).Scan(&empty); err != nil {
			return err
		}
		if !empty {
			return nil
		}
		q := `SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN (` +
			placeholders(len(bulkTables)) + `) AND name NOT IN (` + placeholders(len(bulkKeep)) + `) ORDER BY name`
		var args []any
		for _, t := range bulkTables {
			args = append(args, t)
		}
		for _, n := range bulkKeep {
			args = append(args, n)
		}
		rows, err := s.w.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		var names, stmts []string
		for rows.Next() {
			var name, stmt string
			if err := rows.Scan(&name, &stmt); err != nil {
				rows.Close()
				return err
			}
			names, stmts = append(names, name), append(stmts, stmt)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for i, name := range names {
			if _, err := s.w.ExecContext(ctx, `INSERT INTO bulk_indexes (name, sql) VALUES (?, ?)`, name, stmts[i]); err != nil {
				return err
			}
			if _, err := s.w.ExecContext(ctx, `DROP INDEX "`+name+`"`); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: begin bulk load: %w", err)
	}
	s.bulk = true
	_, _ = s.w.ExecContext(ctx, bulkCache)
	s.ingesting = true // releaseWhenIdle shrinks it once the load pauses
	ended := false
	return func(ctx context.Context) error {
		if err := s.lockWriter(ctx); err != nil {
			return err
		}
		defer s.unlockWriter()
		if ended {
			return errors.New("store: sqlite: the bulk load has ended")
		}
		if err := rebuildIndexes(ctx, s.w); err != nil {
			return fmt.Errorf("store: sqlite: end bulk load: %w", err)
		}
		ended, s.bulk = true, false
		s.releaseWhenIdle()
		return nil
	}, nil
}

var _ store.BulkWriter = (*Store)(nil)

// rebuildIndexes builds the indexes a bulk load dropped (bulk_indexes),
// idempotently, in one transaction. The sort runs in temporary files, not
// in memory (temp_store is MEMORY otherwise): the keys of a million
// resources' index rows would not fit the memory budget.
func rebuildIndexes(ctx context.Context, c *sql.Conn) error {
	rows, err := c.QueryContext(ctx, `SELECT name, sql FROM bulk_indexes ORDER BY name`)
	if err != nil {
		return err
	}
	var stmts []string
	for rows.Next() {
		var name, stmt string
		if err := rows.Scan(&name, &stmt); err != nil {
			rows.Close()
			return err
		}
		stmts = append(stmts, ifNotExists(stmt))
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if len(stmts) == 0 {
		return nil
	}
	if _, err := c.ExecContext(ctx, "PRAGMA temp_store = FILE"); err != nil {
		return err
	}
	defer func() { _, _ = c.ExecContext(context.Background(), "PRAGMA temp_store = MEMORY") }()
	return execTx(ctx, c, func() error {
		for _, st := range stmts {
			if _, err := c.ExecContext(ctx, st); err != nil {
				return err
			}
		}
		_, err := c.ExecContext(ctx, `DELETE FROM bulk_indexes`)
		return err
	})
}

// ifNotExists makes a saved CREATE [UNIQUE] INDEX statement idempotent.
func ifNotExists(stmt string) string {
	for _, p := range []string{"CREATE INDEX ", "CREATE UNIQUE INDEX "} {
		if rest, ok := strings.CutPrefix(stmt, p); ok && !strings.HasPrefix(rest, "IF NOT EXISTS ") {
			return p + "IF NOT EXISTS " + rest
		}
	}
	return stmt
}
