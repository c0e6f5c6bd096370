package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// A bulk load (store.BulkWriter; docs/design/architecture.md PERF-SQLB-1).
//
// Most of the writer's time goes to the search tables: each is a WITHOUT
// ROWID B-tree keyed (pid, value..., rid), so every index row is an insert
// at a random place in a large tree, plus its (rid, pid) index entry. Into
// an empty store, a bulk load writes index rows to staging tables instead
// (bulk_idx_*: plain rowid tables, appended to, with a rid index for the
// updates a load may make) and drops the search tables and the secondary
// indexes of resources and history. When it ends, each search table is
// created again and filled from its staging table in key order (appends to
// a growing tree), and the indexes are built by sorting: every page written
// once. Apply writes everything else as always, under the same
// transactions (synchronous=NORMAL, committed per call), so a crash loses
// no committed record; the dropped tables' and indexes' CREATE statements
// are saved in bulk_indexes in the transaction that drops them, and Open
// finishes a load it finds there.
//
// Kept during the load: the unique indexes (they answer "exists?" for each
// record and resource written) and resources_updated (each Apply reads the
// latest lastUpdated of its types through it). Searches, refs and
// $everything fail during the load ("no such table"), never answering from
// a partial index; reads and history answer (history more slowly).
//
// "Empty" is a new store: at most bulkStageMax resources (the gateway's own
// definitions, a first small import), whose index rows are copied to the
// staging tables. Into a store that holds more nothing is dropped: its
// readers need the indexes, and sorting them again could cost more than the
// load.

// bulkIndexTables are the tables whose secondary indexes a bulk load drops
// (the search tables go whole).
var bulkIndexTables = []string{"resources", "history"}

// bulkKeep are the indexes of bulkIndexTables a bulk load keeps.
var bulkKeep = []string{"resources_updated"}

// bulkStageMax is the most resources a store may hold for a bulk load to
// stage (a variable for tests).
var bulkStageMax = 10_000

// bulkEndCache is the writer's cache_size while a bulk load ends: 32 MiB
// (in KiB, negative), half the ingest's (PERF-SQLB-7).
const bulkEndCache = -32768

// stagingTable names the staging table of an index kind.
func stagingTable(kind store.IndexKind) string { return "bulk_" + sqlcore.IndexTables[kind] }

// errBulkActive is BeginBulk's error while a load runs.
var errBulkActive = errors.New("store: sqlite: a bulk load is already running")

// BeginBulk implements store.BulkWriter. Into an empty store (at most
// bulkStageMax resources) it stages the index rows and drops the search tables and
// the secondary indexes; into one that holds resources it only enlarges the
// writer's cache. end builds what was dropped.
func (s *Store) BeginBulk(ctx context.Context) (end func(context.Context) error, err error) {
	if err := s.lockWriter(ctx); err != nil {
		return nil, err
	}
	defer s.unlockWriter()
	if s.bulk {
		return nil, errBulkActive
	}
	staged := false
	err = execTx(ctx, s.w, func() error {
		var small bool
		if err := s.w.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM (SELECT 1 FROM resources LIMIT ?)) <= ? AND NOT EXISTS (SELECT 1 FROM bulk_indexes)`,
			bulkStageMax+1, bulkStageMax).Scan(&small); err != nil {
			return err
		}
		if !small {
			return nil
		}
		staged = true
		return stage(ctx, s.w)
	})
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: begin bulk load: %w", err)
	}
	s.bulk, s.staged = true, staged
	// The ingest's cache, WAL threshold and WAL size (PERF-IN-2, PERF-IN-3),
	// set as by a plain ingest's first Apply: setting only the cache and
	// marking the writer as ingesting, as a load did before, made that
	// Apply skip the rest, so the WAL was cut back to 128 MiB at every
	// reset of a load (docs/design/security.md PERF-SQLB-7).
	// releaseWhenIdle shrinks them once the load pauses.
	s.growForIngest(ctx, true)
	ended := false
	return func(ctx context.Context) error {
		if err := s.lockWriter(ctx); err != nil {
			return err
		}
		defer s.unlockWriter()
		if ended {
			return errors.New("store: sqlite: the bulk load has ended")
		}
		// The ingest's 64 MiB cache also sizes the sorts' runs: after a
		// pause in the load the writer holds its idle 4 MiB, and a sort
		// would write and merge sixteen times as many runs.
		s.growForIngest(ctx, true)
		if err := finishBulk(ctx, s.w); err != nil {
			return fmt.Errorf("store: sqlite: end bulk load: %w", err)
		}
		ended, s.bulk, s.staged = true, false, false
		s.releaseWhenIdle()
		return nil
	}, nil
}

var _ store.BulkWriter = (*Store)(nil)

// stage saves and drops the search tables and the secondary indexes of
// resources and history, and creates the staging tables, inside the
// caller's transaction on c.
func stage(ctx context.Context, c *sql.Conn) error {
	var args []any
	for _, t := range bulkIndexTables {
		args = append(args, t)
	}
	for _, n := range bulkKeep {
		args = append(args, n)
	}
	for _, t := range sqlcore.IndexTables[store.KindToken:] {
		args = append(args, t)
	}
	q := `SELECT name, type, sql FROM sqlite_schema WHERE sql IS NOT NULL AND (
	    (type = 'index' AND tbl_name IN (` + placeholders(len(bulkIndexTables)) + `) AND name NOT IN (` + placeholders(len(bulkKeep)) + `))
	    OR (type = 'table' AND name IN (` + placeholders(len(sqlcore.IndexTables)-1) + `)))`
	rows, err := c.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	type saved struct{ name, typ, sql string }
	var all []saved
	for rows.Next() {
		var v saved
		if err := rows.Scan(&v.name, &v.typ, &v.sql); err != nil {
			rows.Close()
			return err
		}
		all = append(all, v)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	// The search tables' own indexes go with them; save their definitions.
	for _, t := range sqlcore.IndexTables[store.KindToken:] {
		rows, err := c.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL AND tbl_name = ?`, t)
		if err != nil {
			return err
		}
		for rows.Next() {
			v := saved{typ: "index"}
			if err := rows.Scan(&v.name, &v.sql); err != nil {
				rows.Close()
				return err
			}
			all = append(all, v)
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	for _, v := range all {
		if _, err := c.ExecContext(ctx, `INSERT INTO bulk_indexes (name, type, sql) VALUES (?, ?, ?)`, v.name, v.typ, v.sql); err != nil {
			return err
		}
	}
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		t, st := sqlcore.IndexTables[k], stagingTable(k)
		for _, q := range []string{
			`CREATE TABLE ` + st + ` AS SELECT * FROM ` + t, // what a new store holds: its definitions' rows
			`DROP TABLE ` + t,
		} {
			if _, err := c.ExecContext(ctx, q); err != nil {
				return err
			}
		}
	}
	for _, v := range all {
		if v.typ != "index" || !strings.HasPrefix(v.name, "resources") && !strings.HasPrefix(v.name, "history") {
			continue
		}
		if _, err := c.ExecContext(ctx, `DROP INDEX IF EXISTS "`+v.name+`"`); err != nil {
			return err
		}
	}
	return nil
}

// indexKeys are the number of leading columns that make each search
// table's primary key: a staging table (a copy of its columns) is copied in
// that order, by column position, so that a load staged under an older
// schema (idx_token's system text before migration 0015) is finished the
// same way (migrate finishes it before migrating).
var indexKeys = [sqlcore.NumKinds]int{
	store.KindToken:     4, // pid, code, sid (system before 0015), rid
	store.KindString:    3, // pid, value, rid
	store.KindDate:      4, // pid, lo, hi, rid
	store.KindReference: 3, // pid, target, rid
	store.KindNumber:    3, // pid, num, rid
	store.KindQuantity:  5, // pid, num, system, code, rid
}

// keyOrder is "1, 2, ..., n".
func keyOrder(n int) string {
	cols := make([]string, n)
	for i := range cols {
		cols[i] = strconv.Itoa(i + 1)
	}
	return strings.Join(cols, ", ")
}

// finishBulk ends a bulk load, in one transaction: the search tables are
// created again and filled from their staging tables in key order, then
// the saved indexes are built. It does nothing when no load was staged, so
// Open calls it every time. Sorts run in temporary files, not in memory
// (temp_store is MEMORY otherwise): the keys of a million resources' index
// rows would not fit the memory budget.
func finishBulk(ctx context.Context, c *sql.Conn) error {
	rows, err := c.QueryContext(ctx, `SELECT name, type, sql FROM bulk_indexes ORDER BY type DESC, name`) // tables first
	if err != nil {
		return err
	}
	var tables, indexes []string
	for rows.Next() {
		var name, typ, stmt string
		if err := rows.Scan(&name, &typ, &stmt); err != nil {
			rows.Close()
			return err
		}
		if typ == "table" {
			tables = append(tables, name)
		} else {
			indexes = append(indexes, ifNotExists(stmt))
		}
		_ = stmt
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if len(tables) == 0 && len(indexes) == 0 {
		return nil
	}
	if _, err := c.ExecContext(ctx, "PRAGMA temp_store = FILE"); err != nil {
		return err
	}
	defer func() { _, _ = c.ExecContext(context.Background(), "PRAGMA temp_store = MEMORY") }()
	// The sorts on two cores, in the memory of one (PERF-SQLB-7): with a
	// worker thread SQLite sorts and writes each run while the statement
	// reads the next (the ingest's mapper, on the other core during the
	// load, is done), and each of the two holds a run of cache_size bytes,
	// so the cache is halved for the end: the sorts' memory stays the 64 MiB
	// a run took alone. Both settings are the connection's, put back after.
	var cache int64
	if err := c.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&cache); err != nil {
		return err
	}
	for _, q := range []string{"PRAGMA threads = 1", "PRAGMA cache_size = " + strconv.FormatInt(bulkEndCache, 10)} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	defer func() {
		_, _ = c.ExecContext(context.Background(), "PRAGMA threads = 0")
		_, _ = c.ExecContext(context.Background(), "PRAGMA cache_size = "+strconv.FormatInt(cache, 10))
	}()
	return execTx(ctx, c, func() error {
		for k := store.KindToken; k <= store.KindQuantity; k++ {
			var stmt string
			err := c.QueryRowContext(ctx, `SELECT sql FROM bulk_indexes WHERE name = ? AND type = 'table'`, sqlcore.IndexTables[k]).Scan(&stmt)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			t, st := sqlcore.IndexTables[k], stagingTable(k)
			for _, q := range []string{
				ifNotExistsTable(stmt),
				`INSERT OR IGNORE INTO ` + t + ` SELECT * FROM ` + st + ` ORDER BY ` + keyOrder(indexKeys[k]),
				`DROP TABLE ` + st,
			} {
				if _, err := c.ExecContext(ctx, q); err != nil {
					return fmt.Errorf("%s: %w", t, err)
				}
			}
		}
		for _, st := range indexes {
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

// ifNotExistsTable makes a saved CREATE TABLE statement idempotent.
func ifNotExistsTable(stmt string) string {
	if rest, ok := strings.CutPrefix(stmt, "CREATE TABLE "); ok && !strings.HasPrefix(rest, "IF NOT EXISTS ") {
		return "CREATE TABLE IF NOT EXISTS " + rest
	}
	return stmt
}
