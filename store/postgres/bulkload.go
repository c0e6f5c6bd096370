package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketabridge/ketabridge/store"
)

// A bulk load (store.BulkWriter; docs/design/security.md PERF-PG-3).
//
// An ingest's cost on PostgreSQL is B-tree maintenance: about 33 index
// inserts per resource, most of them at random places in large trees (the
// search tables' primary keys, keyed by parameter and value; the
// compartment and type indexes of resources). Into an empty store a bulk
// load drops those indexes and builds them again when it ends, by sorting
// (PostgreSQL's CREATE INDEX: each page written once, in parallel workers
// when the server allows them), with maintenance_work_mem raised for that
// session only.
//
// Kept during the load: what Apply itself reads or relies on (the primary
// key and the unique (type, id) of resources, resources_updated for the
// commit time, the rid indexes of the search tables for the index rows a
// changed resource replaces, history's and source_records' keys). Their
// inserts are appends at the right edge of each tree (rids grow), or few.
// Apply keeps its whole contract: the same rows, each call committed when
// it returns, nothing relaxed (synchronous_commit stays as configured).
// Reads answer correctly during the load, searches more slowly (without
// their indexes PostgreSQL scans).
//
// The dropped indexes' definitions are saved in bulk_indexes (created on
// first use) in the transaction that drops them, and each rebuilt index's
// row is deleted in the transaction that builds it, so a load cut short at
// any point is finished later, never half-visible: by its end, by the end
// of another replica's load, or by the next Open.
//
// Replicas (PERF-PG-2 still holds: their Applies overlap as without a
// load). Each load holds a shared session advisory lock (bulkLock) from
// BeginBulk to its end; a second replica's BeginBulk finds the load staged
// and joins it. Whoever ends last (its exclusive try-lock succeeds)
// rebuilds; Open rebuilds only when no load holds the lock (a process that
// died released it with its session).
//
// "Empty" is a new store: at most bulkStageMax resources (the gateway's own
// definitions, a first small import). Into a store holding more, nothing is
// dropped: its readers need the indexes, and sorting them again could cost
// more than the load saves.

// bulkStageMax is the most resources a store may hold for a bulk load to
// drop its indexes (a variable for tests).
var bulkStageMax = 10_000

// bulkTables are the tables whose indexes a bulk load may drop.
var bulkTables = []string{"resources", "idx_token", "idx_string", "idx_date", "idx_ref", "idx_number", "idx_quantity"}

// bulkKeep are the indexes of bulkTables a load keeps: Apply reads
// through them.
var bulkKeep = []string{"resources_pkey", "resources_type_id_key", "resources_updated",
	"idx_token_rid", "idx_string_rid", "idx_date_rid", "idx_ref_rid", "idx_number_rid", "idx_quantity_rid"}

// bulkMaintenanceMem is the session's maintenance_work_mem while the
// indexes are built: the sort of a million resources' token keys fits.
const bulkMaintenanceMem = "256MB"

// errBulkActive is BeginBulk's error while this store runs a load.
var errBulkActive = errors.New("store: postgres: a bulk load is already running")

const (
	bulkIndexesSQL = `CREATE TABLE IF NOT EXISTS bulk_indexes (
    name text COLLATE "C" PRIMARY KEY,
    tbl  text COLLATE "C" NOT NULL,
    def  text NOT NULL,
    cols text NOT NULL DEFAULT ''
)`
	// dropListSQL lists the indexes of the tables ($1) a load drops (not
	// in $2), with the statement that builds each again: a primary key is
	// added back as the constraint it was; cols is its column list (for
	// removing duplicate rows should the key refuse them).
	dropListSQL = `SELECT c.relname, t.relname,
    CASE WHEN con.oid IS NULL THEN pg_get_indexdef(i.indexrelid)
         ELSE format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, con.conname, pg_get_constraintdef(con.oid)) END,
    CASE WHEN con.oid IS NULL THEN '' ELSE (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
        FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n) JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) END,
    con.oid IS NOT NULL
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype = 'p' AND con.conrelid = t.oid
WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY($1) AND NOT c.relname = ANY($2)
ORDER BY t.relname, c.relname`
)

// BeginBulk implements store.BulkWriter (PERF-PG-3): into an empty store it
// drops the indexes Apply does not read; end builds them again (or leaves
// that to the last replica still loading).
func (s *Store) BeginBulk(ctx context.Context) (end func(context.Context) error, err error) {
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	s.bulkMu.Lock()
	defer s.bulkMu.Unlock()
	if s.bulkConn != nil {
		return nil, errBulkActive
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: begin bulk load: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock_shared($1)`, s.bulkLock); err != nil {
		discard(conn)
		return nil, fmt.Errorf("store: postgres: begin bulk load: %w", err)
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return s.stage(ctx, tx) }); err != nil {
		discard(conn) // its session, and the shared lock, end with it
		return nil, fmt.Errorf("store: postgres: begin bulk load: %w", err)
	}
	s.bulkConn = conn
	ended := false
	return func(ctx context.Context) error {
		s.bulkMu.Lock()
		defer s.bulkMu.Unlock()
		if ended {
			return errors.New("store: postgres: the bulk load has ended")
		}
		ended = true
		conn := s.bulkConn
		s.bulkConn = nil
		if conn == nil {
			return errClosed
		}
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock_shared($1)`, s.bulkLock); err != nil {
			discard(conn)
			return fmt.Errorf("store: postgres: end bulk load: %w", err)
		}
		err := s.finishBulk(ctx, conn)
		if err != nil {
			discard(conn)
			return fmt.Errorf("store: postgres: end bulk load: %w", err)
		}
		conn.Release()
		return nil
	}, nil
}

var _ store.BulkWriter = (*Store)(nil)

// discard closes a pooled connection instead of returning it to the pool:
// its session state (a lock, a setting) dies with it.
func discard(conn *pgxpool.Conn) {
	_ = conn.Hijack().Close(context.Background())
}

// stage, in tx, saves and drops the indexes a load drops, unless the store
// holds more than bulkStageMax resources or a load is staged already (one
// another replica runs, or one cut short: this load joins it).
func (s *Store) stage(ctx context.Context, tx pgx.Tx) error {
	// Stagers one at a time (not bulkLock: other loads hold it shared).
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.bulkLock+1); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, bulkIndexesSQL); err != nil {
		return err
	}
	var staged, small bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulk_indexes),
	    (SELECT count(*) FROM (SELECT 1 FROM resources LIMIT $1) AS r) <= $2`, bulkStageMax+1, bulkStageMax).Scan(&staged, &small); err != nil {
		return err
	}
	if staged || !small {
		return nil
	}
	type saved struct {
		name, tbl, def, cols string
		con                  bool
	}
	rows, err := tx.Query(ctx, dropListSQL, bulkTables, bulkKeep)
	if err != nil {
		return err
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (saved, error) {
		var v saved
		err := r.Scan(&v.name, &v.tbl, &v.def, &v.cols, &v.con)
		return v, err
	})
	if err != nil {
		return err
	}
	for _, v := range all {
		if _, err := tx.Exec(ctx, `INSERT INTO bulk_indexes (name, tbl, def, cols) VALUES ($1, $2, $3, $4)`, v.name, v.tbl, v.def, v.cols); err != nil {
			return err
		}
		drop := `DROP INDEX ` + pgx.Identifier{v.name}.Sanitize()
		if v.con {
			drop = `ALTER TABLE ` + pgx.Identifier{v.tbl}.Sanitize() + ` DROP CONSTRAINT ` + pgx.Identifier{v.name}.Sanitize()
		}
		if _, err := tx.Exec(ctx, drop); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}
	return nil
}

// finishBulk builds the indexes a load dropped, on conn, when no load
// holds bulkLock (this one released it): each in its own transaction with
// the deletion of its bulk_indexes row, so a rebuild cut short resumes
// where it stopped. It does nothing when another load runs (its end
// builds them) or none was staged.
func (s *Store) finishBulk(ctx context.Context, conn *pgxpool.Conn) (err error) {
	var pending bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('bulk_indexes') IS NOT NULL`).Scan(&pending); err != nil || !pending {
		return err
	}
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulk_indexes)`).Scan(&pending); err != nil || !pending {
		return err
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, s.bulkLock).Scan(&got); err != nil || !got {
		return err // another load runs: its end builds them
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, s.bulkLock); uerr != nil && err == nil {
			err = uerr
		}
	}()
	if _, err := conn.Exec(ctx, `SET maintenance_work_mem = '`+bulkMaintenanceMem+`'`); err != nil {
		return err
	}
	defer func() {
		if _, rerr := conn.Exec(context.WithoutCancel(ctx), `RESET maintenance_work_mem`); rerr != nil && err == nil {
			err = rerr
		}
	}()
	type saved struct{ name, tbl, def, cols string }
	rows, err := conn.Query(ctx, `SELECT name, tbl, def, cols FROM bulk_indexes ORDER BY cols = '' DESC, name`) // keys last: a failing one leaves the rest built
	if err != nil {
		return err
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (saved, error) {
		var v saved
		err := r.Scan(&v.name, &v.tbl, &v.def, &v.cols)
		return v, err
	})
	if err != nil {
		return err
	}
	for _, v := range all {
		build := func() error {
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, v.def); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM bulk_indexes WHERE name = $1`, v.name)
				return err
			})
		}
		err := build()
		var pgErr *pgconn.PgError
		if err != nil && v.cols != "" && errors.As(err, &pgErr) && pgErr.Code == "23505" {
			// A primary key refusing duplicate rows: the per-record path
			// writes each row once (SELECT DISTINCT), so this is a load
			// older code made; keep each row once, as the key would have.
			if err = dedupe(ctx, conn, v.tbl, v.cols); err == nil {
				err = build()
			}
		}
		if err != nil {
			return fmt.Errorf("build %s: %w", v.name, err)
		}
	}
	return nil
}

// dedupe deletes the rows of tbl repeating an earlier row's cols.
func dedupe(ctx context.Context, conn *pgxpool.Conn, tbl, cols string) error {
	t := pgx.Identifier{tbl}.Sanitize()
	_, err := conn.Exec(ctx, `DELETE FROM `+t+` WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() OVER (PARTITION BY `+
		cols+` ORDER BY ctid) AS n FROM `+t+`) AS d WHERE d.n > 1)`)
	return err
}

// finishOnOpen builds the indexes of a load cut short (its process died)
// when no load runs (Open).
func (s *Store) finishOnOpen(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	if err := s.finishBulk(ctx, conn); err != nil {
		discard(conn)
		return fmt.Errorf("store: postgres: finish a bulk load: %w", err)
	}
	conn.Release()
	return nil
}

// bulkPending is how many of a load's indexes are still to be built.
func (s *Store) bulkPending(ctx context.Context) (int, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('bulk_indexes') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM bulk_indexes`).Scan(&n)
	return n, err
}
