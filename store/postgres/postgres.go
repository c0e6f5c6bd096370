// Package postgres is the PostgreSQL backend of the store contract
// (store.Store, store.AuthStore, store.AuditStore), for replicated
// deployments: every replica opens the same database through a pgx pool.
//
// Layout (migrations/0001_init.sql): resources holds one row per resource with
// its current version and a bigserial rid (the insertion order searches page
// in); history holds every version's stamped body (the current one included);
// idx_token, idx_string, idx_date, idx_ref, idx_number and idx_quantity hold
// the search index rows of current, non-deleted versions; source_records holds
// the clinic records and the keys of the resources each produced. Times are
// stored as Unix milliseconds, text that is compared or sorted in the "C"
// collation, so results match the SQLite backend exactly.
//
// Writes of resources (Apply) are serialized per schema by a transaction-level
// advisory lock, so replicas writing at once neither race on versions nor
// deadlock and lastUpdated follows commit order within a type; reads run
// concurrently under READ COMMITTED snapshots. A batch is written set-based:
// COPY of the new rows, array statements for the existing ones (bulk.go).
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// errClosed is returned by calls on a closed Store.
var errClosed = errors.New("store: postgres: closed")

// Store is the PostgreSQL store. All methods are safe for concurrent use.
type Store struct {
	*authStore // store.AuthStore and ListAudit, with the shared queries
	*jobStore  // store.JobStore, with the shared queries

	clock store.Clock
	pool  *pgxpool.Pool
	// probe is the readiness probe's own one-connection pool: a pool busy
	// with a long ingest cannot keep Ping waiting for a connection.
	probe *pgxpool.Pool
	// busy tracks the Applies in flight, for WriterLag.
	busy   store.Busy
	closed atomic.Bool
	// applyLock is the advisory lock key serializing Apply in this schema.
	applyLock int64
	// bulkLock is the advisory lock key of bulk loads (bulkload.go): held
	// shared by each running load; bulkLock+1 serializes their staging.
	// bulkConn is the session holding it for this store's load (nil when
	// none runs), under bulkMu.
	bulkLock int64
	bulkMu   sync.Mutex
	bulkConn *pgxpool.Conn
	// sinceAnalyze counts resource versions written since the last ANALYZE,
	// analyzedAt those written before it (this process's view); analyzing
	// is set while one runs. See noteWrites.
	sinceAnalyze, analyzedAt atomic.Int64
	analyzing                atomic.Bool
	// systems and params are the token systems and search parameter
	// names interned in token_systems and search_params (interned.go).
	systems, params *interned
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.AuthStore    = (*Store)(nil)
	_ store.AuditStore   = (*Store)(nil)
	_ store.WriterLagger = (*Store)(nil)
)

// Open connects to the database at url (a libpq URL or key=value string; extra
// parameters such as search_path become session settings of every pooled
// connection), applies the embedded versioned migrations and returns the
// store. clock stamps meta.lastUpdated (the system clock when nil).
func Open(ctx context.Context, url string, clock store.Clock) (*Store, error) {
	if clock == nil {
		clock = store.SystemClock{}
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may echo the URL (and a password): report no detail.
		return nil, errors.New("store: postgres: invalid database url")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: open: %w", err)
	}
	pcfg := cfg.Copy()
	pcfg.MaxConns, pcfg.MinConns = 1, 0
	probe, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: postgres: open: %w", err)
	}
	s := &Store{clock: clock, pool: pool, probe: probe, systems: newSystems(), params: newParams()}
	s.authStore = sqlcore.NewAuth(sqlcore.Postgres, coreDB{s}, clock, errClosed)
	s.jobStore = sqlcore.NewJobs(sqlcore.Postgres, coreDB{s}, errClosed)
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		probe.Close()
		return nil, err
	}
	if err := pool.QueryRow(ctx, `SELECT hashtextextended('ketabridge:apply:' || current_schema(), 0), hashtextextended('ketabridge:bulk:' || current_schema(), 0)`).Scan(&s.applyLock, &s.bulkLock); err != nil {
		pool.Close()
		probe.Close()
		return nil, fmt.Errorf("store: postgres: open: %w", err)
	}
	// A bulk load cut short, with no load running: build what it dropped
	// (docs/design/security.md PERF-PG-3).
	if err := s.finishOnOpen(ctx); err != nil {
		pool.Close()
		probe.Close()
		return nil, err
	}
	return s, nil
}

// migrate applies the embedded migrations newer than schema_version in one
// transaction holding an advisory lock (keyed by the current schema), so
// replicas starting together apply each migration exactly once. Files are
// named NNNN_description.sql.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := sqlcore.Migrations(migrationFiles)
	if err != nil {
		return fmt.Errorf("store: postgres: migrate: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('ketabridge:migrate:' || current_schema(), 0))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var cur int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&cur); err != nil {
			return err
		}
		for _, m := range ms {
			if m.Version <= cur {
				continue
			}
			// No arguments: the simple protocol runs every statement of the file.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, m.Version); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: postgres: migrate: %w", err)
	}
	return nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	// A cheap query on the probe's own connection (docs/design/architecture.md,
	// Operability): never queued behind the pool's writers.
	var one int
	if err := s.probe.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store: postgres: ping: %w", err)
	}
	return nil
}

// WriterLag implements store.WriterLagger: how long the oldest Apply of
// this process has been running (0 when none is).
func (s *Store) WriterLag() time.Duration { return s.busy.Lag() }

// Close closes the pool, waiting for connections in use to be released.
// Calls after Close fail.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.bulkMu.Lock()
	if s.bulkConn != nil {
		// A load not ended: its session ends here, releasing its lock;
		// the indexes are built by another load's end or the next Open.
		discard(s.bulkConn)
		s.bulkConn = nil
	}
	s.bulkMu.Unlock()
	s.pool.Close()
	s.probe.Close()
	return nil
}

// db returns the pool, or errClosed.
func (s *Store) db() (*pgxpool.Pool, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	return s.pool, nil
}

// readTx runs fn in a read-only REPEATABLE READ transaction: every statement
// in it sees one snapshot.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	pool, err := s.db()
	if err != nil {
		return err
	}
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}
