// Package sqlite is the embedded store.Store backend: one SQLite database file
// in WAL mode, written through a single writer connection while a pool of
// reader connections serves reads concurrently (WAL readers see the last
// committed state and never wait for the writer).
//
// Layout (migrations/0001_init.sql): resources holds one row per resource with
// its current version; history holds every version's stamped body (the
// current one included); idx_token, idx_string, idx_date, idx_ref, idx_number
// and idx_quantity hold search index rows of current, non-deleted versions;
// source_records holds the clinic records and the keys of the resources each
// produced. Times are stored as Unix milliseconds.
//
// One process owns a database file; other processes may read it.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Pragmas shared by every connection (https://www.sqlite.org/pragma.html).
//
// No mmap: at 170k resources and 32 connections the gateway served as much
// or more without it (SQLite re-initialises a mapped page on every visit,
// where a cached one stays parsed; a lone uncached search is about 15%
// slower), and the mapped file counted up to 256 MiB into the process's
// RSS. Pages outside the caches come from the OS page cache with pread.
var commonPragmas = []string{
	"busy_timeout(10000)",
	"temp_store(MEMORY)",
	"mmap_size(0)",
}

// writerPragmas: WAL with synchronous=NORMAL is durable across application
// crashes and loses at most the last transactions on power loss
// (https://www.sqlite.org/wal.html#performance_considerations).
//
// foreign_keys stays off on the writer: the schema's REFERENCES clauses
// document that history and index rows belong to a resources row, but
// enforcing them costs a parent lookup per child row, about a third of
// ingest time. The writer is the only code that inserts those rows, and it
// takes every rid from a resources row it has just inserted or read in the
// same transaction (and never deletes a resources row).
var writerPragmas = []string{
	"journal_mode(WAL)",
	"foreign_keys(0)",
	"synchronous(NORMAL)",
	"cache_size(-4096)",             // 4 MiB between ingests, 64 MiB during them (ingestCache)
	"journal_size_limit(134217728)", // idleJournalLimit
}

// readerPragmas: 1 MiB of page cache per reader (docs/design/security.md
// PERF-ST-6, PERF-ST-13). A larger one buys little and costs twice its
// size: in WAL mode a reader drops its whole cache at the start of a read
// whenever anything was committed to the database file since its last one
// (ingest and other writes; the audit trail commits to a file of its own,
// auditfile.go, so reads alone no longer empty it); and the pure-Go
// SQLite's allocator (modernc.org/memory) rounds each cached page (4 KiB
// plus SQLite's header) up to an 8 KiB slot, so each MiB of cache costs up
// to 2 MiB of RSS per reader, refilled by one malloc per page behind the
// allocator's one process-wide lock. 8 MiB per reader cost up to 57 MB for
// 4 readers in the 1M search scenario; 2 MiB up to 16 MB; 1 MiB (256
// pages: the B-trees' interior pages the scenarios revisit) up to 8 MB.
var readerPragmas = []string{
	"cache_size(-1024)",
	"query_only(1)",
}

// probePragmas are the readiness probe's: it reads one page of the
// schema.
var probePragmas = []string{
	"cache_size(16)",
	"query_only(1)",
}

// exportPragmas are the export pool's (Store.Export): a snapshot walk reads
// the history front to back, each page once, so a page cache only holds
// the B-trees' root and interior pages it re-visits. A large one costs
// more than it saves: in WAL mode a connection drops its whole cache at the
// start of a read when anything was committed since its last one (a job's
// progress; the audit trail commits to a file of its own, auditfile.go),
// which happened between most of an export's page queries; the pure-Go SQLite then freed thousands of 4 KiB pages one
// by one (each an madvise) and allocated them again, about a third of an
// export's CPU. 128 pages (512 KiB) hold the walk's hot pages.
var exportPragmas = []string{
	"cache_size(128)",
	"query_only(1)",
}

// errClosed is returned by calls on a closed Store.
var errClosed = errors.New("store: closed")

// Store is the SQLite store.Store. All methods are safe for concurrent use.
type Store struct {
	*authStore // store.AuthStore and ListAudit, with the shared queries
	*jobStore  // store.JobStore, with the shared queries

	clock store.Clock

	wdb  *sql.DB
	w    *sql.Conn     // the one writer connection
	wsem chan struct{} // held by the goroutine using w
	ws   *writeStmts

	rdb *sql.DB // reader pool (query_only)
	// xdb is the export pool (query_only, small page cache: exportPragmas):
	// Bulk Data export walks, kept off the readers' caches.
	xdb *sql.DB
	// pdb is the readiness probe's own connection (query_only): neither the
	// writer nor busy readers can keep Ping waiting.
	pdb *sql.DB
	// audit is the audit trail's own file (auditfile.go).
	audit *auditFile
	// busy tracks who holds the writer, for WriterLag.
	busy store.Busy
	// wend ends the busy record of the writer's holder (guarded by wsem).
	wend func()

	// cmu orders this store's commits that count a change (changes.seq)
	// with ForeignChangeVersion's reads; own counts them (guarded by cmu).
	cmu sync.Mutex
	own int64

	pmu  sync.RWMutex
	pids map[paramKey]int64 // committed (type, param) -> pid
	sids map[string]int64   // committed token system -> sid (the writer's)

	qmu    sync.Mutex
	qcache map[string]*sql.Stmt // prepared search SQL on rdb
	xmu    sync.Mutex
	xcache map[string]*sql.Stmt // prepared export SQL on xdb
	// qpending marks statements being prepared in the background.
	qpending map[string]bool
	// prepares counts the background prepares; Close waits for them, so no
	// reader connection opens (and recreates the -wal and -shm files) after
	// Close returns.
	prepares sync.WaitGroup

	closed atomic.Bool

	// idle shrinks the writer's page cache back once ingest has paused
	// (releaseWhenIdle; guarded by idleMu); ingesting is set while the cache
	// is large (guarded by wsem).
	idleMu    sync.Mutex
	idle      *time.Timer
	ingesting bool
	// largeCache is set while the writer's cache is the ingest's
	// (ingestCache: an Apply of at least ingestMinResources, or a bulk
	// load, since the writer was last at rest; PERF-ST-23).
	largeCache bool
	// walPages is the WAL checkpoint threshold while ingesting and
	// walCheck counts the Applies since ingest began (PERF-IN-3; guarded
	// by wsem).
	walPages int64
	walCheck int
	// wbuf holds the writer's buffered index and history rows, kept from
	// one Apply to the next while records are ingested and dropped when the
	// ingest pauses (docs/design/architecture.md PERF-SQLB-5; guarded by
	// wsem).
	wbuf *rowBuf

	// bulk is set while a bulk load runs, staged when it stages index rows
	// (BeginBulk; guarded by wsem).
	bulk, staged bool
}

// The writer's page cache: large while records are ingested (the index
// B-trees' pages are re-visited across a batch), small otherwise, when what
// it writes - audit appends, sessions - touches a handful of pages at the end
// of their tables. A large cache would fill with appended audit pages under
// read load and hold them.
const (
	ingestCache = "PRAGMA cache_size = -65536" // 64 MiB
	idleCache   = "PRAGMA cache_size = -4096"  // 4 MiB, as in writerPragmas
)

// The WAL's checkpoint threshold, likewise. A commit that leaves the WAL
// above it copies the WAL into the database and syncs both, on the writer's
// goroutine. An ingest chunk (4,096 resources, PERF-IN-1) writes about
// 12,000 pages at 1M resources, so the default of 1,000 pages checkpointed
// after every chunk: at 1M resources, checkpoints (their copies, reads and
// syncs) were 17% of the writer's time, and many of the pages they copied
// were copied again a chunk later (index interior pages, the ends of the
// tables). During ingest the WAL grows to about 128 MiB before a checkpoint
// (docs/design/security.md PERF-IN-2); between ingests it is SQLite's
// default.
const (
	ingestCheckpoint = "PRAGMA wal_autocheckpoint = 32768" // pages: 128 MiB
	idleCheckpoint   = "PRAGMA wal_autocheckpoint = 1000"  // SQLite's default
)

// The WAL's threshold during ingest grows with the store (docs/design/
// security.md PERF-IN-3): a quarter of the database's pages, at least
// 32,768 (128 MiB, PERF-IN-2) and at most 131,072 (512 MiB). A checkpoint
// copies each page the WAL holds once, however many chunks rewrote it; at 1M
// resources most of a chunk's 12,000 pages are leaves of the B-trees whose
// keys arrive in random order ((type, id), reference targets, dates,
// quantities), some 40,000 pages that a 128 MiB WAL (under three chunks)
// holds few repeats of, so nearly every frame was copied again. A WAL of a
// quarter of the store spans several times as many chunks of a large store,
// and each checkpoint copies a page once for all of them. Between ingests
// the WAL file is cut back to 128 MiB when it is next reset
// (idleJournalLimit): while ingesting it keeps its size rather than being
// cut and extended again after every checkpoint.
//
// The bounds are variables so tests can reach them with a small store.
var (
	walCheckEvery            = 16
	minIngestWALPages  int64 = 32768
	maxIngestWALPages  int64 = 131072
	ingestWALPagesStep int64 = 8192 // the threshold moves in steps, not at every chunk
)

const (
	ingestJournalLimit = "PRAGMA journal_size_limit = -1"
	idleJournalLimit   = "PRAGMA journal_size_limit = 134217728" // 128 MiB
)

// ingestWALPages is the WAL checkpoint threshold, in pages, while records
// are ingested into a database of dbPages pages (PERF-IN-3).
func ingestWALPages(dbPages int64) int64 {
	n := dbPages / 4 / ingestWALPagesStep * ingestWALPagesStep
	return min(max(n, minIngestWALPages), maxIngestWALPages)
}

// ingestMinResources is the size of an Apply, in resources, from which it
// grows the writer's page cache to the ingest's (ingestCache): an ingest's
// chunk holds up to 4,096 (mapping/ingest.DefaultChunkResources), while a
// clinic's single changed record, a referral's transaction or a Task update
// writes a few to a few dozen and touches a few hundred pages. Written every
// 100 ms (the bench's search-writes), such writes kept the writer ingesting
// and its 64 MiB cache filling with each written patient's index pages:
// 30-40 MB outside Go (docs/design/security.md PERF-ST-23). Every Apply
// still takes the ingest's WAL threshold (PERF-IN-2): at SQLite's default
// of 1,000 pages a write of a few records every 100 ms checkpointed every
// few writes. Once the cache is large it stays so until the writer rests.
const ingestMinResources = 1024

// ingestSized reports whether records are an ingest's chunk rather than a
// few changed records (ingestMinResources).
func ingestSized(records []store.RecordWrite) bool {
	n := 0
	for i := range records {
		n += len(records[i].Resources)
		if n >= ingestMinResources {
			return true
		}
	}
	return false
}

// writerIdleAfter is the pause in ingest after which the writer's cache
// shrinks (a variable for tests).
var writerIdleAfter = 2 * time.Second

// growForIngest sets the ingest's WAL threshold for an Apply, and the
// ingest's page cache when large (an ingest's chunk or a bulk load,
// PERF-ST-23). The caller holds wsem.
func (s *Store) growForIngest(ctx context.Context, large bool) {
	if large && !s.largeCache {
		_, _ = s.w.ExecContext(ctx, ingestCache)
		s.largeCache = true
	}
	if !s.ingesting {
		_, _ = s.w.ExecContext(ctx, ingestCheckpoint)
		_, _ = s.w.ExecContext(ctx, ingestJournalLimit)
		s.walPages = 32768 // ingestCheckpoint
		s.walCheck = 0
		s.ingesting = true
	}
	// The threshold follows the store's size (PERF-IN-3), asked every
	// walCheckEvery Applies: a statement of its own costs a one-record
	// Apply a few per cent, and the store grows by at most 16 chunks
	// between two looks.
	s.walCheck++
	if s.walCheck%walCheckEvery != 1 && walCheckEvery > 1 {
		return
	}
	var pages int64
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return
	}
	if n := ingestWALPages(pages); n != s.walPages {
		if _, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", n)); err == nil {
			s.walPages = n
		}
	}
}

// releaseWhenIdle (re)arms the timer that shrinks the writer's cache
// writerIdleAfter after the last Apply. The timer never waits for the
// writer: if someone holds it when the timer fires, the timer is armed
// again. An Apply re-arms it anyway, but the writer's other users (auth
// state, jobs, a caller inspecting it) do not, and a timer that gave up
// on one of them left the ingest's cache and buffers in place until the
// next ingest.
func (s *Store) releaseWhenIdle() {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	if s.idle != nil {
		s.idle.Reset(writerIdleAfter)
		return
	}
	s.idle = time.AfterFunc(writerIdleAfter, func() {
		select {
		case s.wsem <- struct{}{}:
		default:
			if !s.closed.Load() {
				s.releaseWhenIdle()
			}
			return
		}
		defer func() { <-s.wsem }()
		if s.closed.Load() || !s.ingesting {
			return
		}
		ctx := context.Background()
		if _, err := s.w.ExecContext(ctx, idleCache); err == nil {
			_, _ = s.w.ExecContext(ctx, "PRAGMA shrink_memory")
			_, _ = s.w.ExecContext(ctx, idleCheckpoint)
			_, _ = s.w.ExecContext(ctx, idleJournalLimit)
			// What the ingest left in the WAL goes to the database now,
			// not at the next write: readers look pages up in the WAL.
			_, _ = s.w.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
			s.wbuf = nil // a chunk's rows: some megabytes of slices
			s.ingesting, s.largeCache = false, false
		}
	})
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.WriterLagger = (*Store)(nil)
)

type paramKey struct{ typ, name string }

// Open opens (creating if needed) the database file at path, in WAL mode,
// applying the embedded versioned migrations (a schema_version table records
// the applied ones). clock stamps meta.lastUpdated.
func Open(ctx context.Context, path string, clock store.Clock) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		return nil, fmt.Errorf("store: sqlite: invalid database path (a plain file path without '?' or '#' is required)")
	}
	if clock == nil {
		clock = store.SystemClock{}
	}
	wdb, err := sql.Open("sqlite", dsn(path, append(append([]string{}, commonPragmas...), writerPragmas...)))
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: open: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	s := &Store{
		clock:    clock,
		wdb:      wdb,
		wsem:     make(chan struct{}, 1),
		pids:     make(map[paramKey]int64),
		sids:     make(map[string]int64),
		qcache:   make(map[string]*sql.Stmt),
		xcache:   make(map[string]*sql.Stmt),
		qpending: make(map[string]bool),
	}
	s.authStore = sqlcore.NewAuth(sqlcore.SQLite, coreDB{s}, clock, errClosed)
	s.jobStore = sqlcore.NewJobs(sqlcore.SQLite, coreDB{s}, errClosed)
	fail := func(err error) (*Store, error) {
		s.closeAll()
		return nil, err
	}
	s.w, err = wdb.Conn(ctx)
	if err != nil {
		return fail(fmt.Errorf("store: sqlite: open: %w", err))
	}
	if err := migrate(ctx, s.w); err != nil {
		return fail(err)
	}
	// A bulk load that never ended (its process died): build what it dropped
	// (bulk.go).
	if err := finishBulk(ctx, s.w); err != nil {
		return fail(fmt.Errorf("store: sqlite: finish an interrupted bulk load: %w", err))
	}
	if err := s.w.Raw(func(dc any) error {
		var err error
		s.ws, err = prepareWrite(ctx, dconn{dc.(driver.Conn)})
		return err
	}); err != nil {
		return fail(err)
	}
	if s.audit, err = openAuditFile(ctx, s, AuditPath(path)); err != nil {
		return fail(fmt.Errorf("store: sqlite: open the audit trail: %w", err))
	}
	s.authStore.SetAuditDB(s.audit)
	if err := s.moveLegacyAudit(ctx, path); err != nil {
		return fail(fmt.Errorf("store: sqlite: move the audit trail to its own file: %w", err))
	}
	s.rdb, err = sql.Open("sqlite", dsn(path, append(append([]string{}, commonPragmas...), readerPragmas...)))
	if err != nil {
		return fail(fmt.Errorf("store: sqlite: open readers: %w", err))
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	s.rdb.SetMaxOpenConns(n)
	s.rdb.SetMaxIdleConns(n)
	s.rdb.SetConnMaxIdleTime(0)
	if err := s.rdb.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("store: sqlite: open readers: %w", err))
	}
	s.xdb, err = sql.Open("sqlite", dsn(path, append(append([]string{}, commonPragmas...), exportPragmas...)))
	if err != nil {
		return fail(fmt.Errorf("store: sqlite: open the export pool: %w", err))
	}
	s.xdb.SetMaxOpenConns(n)
	s.xdb.SetMaxIdleConns(runtime.GOMAXPROCS(0))
	s.pdb, err = sql.Open("sqlite", dsn(path, append(append([]string{}, commonPragmas...), probePragmas...)))
	if err != nil {
		return fail(fmt.Errorf("store: sqlite: open the probe connection: %w", err))
	}
	s.pdb.SetMaxOpenConns(1)
	s.pdb.SetMaxIdleConns(1)
	s.pdb.SetConnMaxIdleTime(0)
	// Open it now: a probe must not pay for opening a connection.
	if err := s.pdb.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("store: sqlite: open the probe connection: %w", err))
	}
	return s, nil
}

func dsn(path string, pragmas []string) string {
	var b strings.Builder
	b.WriteString(path)
	for i, p := range pragmas {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString("_pragma=")
		b.WriteString(p)
	}
	return b.String()
}

// bulkLoadVersion is the migration that created bulk_indexes (0012).
const bulkLoadVersion = 12

// migrate applies the embedded migrations newer than schema_version, each in
// its own transaction. Files are named NNNN_description.sql.
func migrate(ctx context.Context, c *sql.Conn) error {
	if _, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	var cur int
	if err := c.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&cur); err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	ms, err := sqlcore.Migrations(migrationFiles)
	if err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	for _, m := range ms {
		if m.Version <= cur {
			continue
		}
		// A bulk load left unfinished (bulk_indexes, from 0012 on) has
		// dropped the search tables that later migrations rewrite (0015):
		// finish it under the schema it started with.
		if cur >= bulkLoadVersion {
			if err := finishBulk(ctx, c); err != nil {
				return fmt.Errorf("store: sqlite: migrate: finish an interrupted bulk load: %w", err)
			}
		}
		if err := execTx(ctx, c, func() error {
			if _, err := c.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err := c.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, m.Version)
			return err
		}); err != nil {
			return fmt.Errorf("store: sqlite: migrate %s: %w", m.Name, err)
		}
		cur = m.Version
	}
	return nil
}

// execTx runs fn inside BEGIN IMMEDIATE ... COMMIT on c.
func execTx(ctx context.Context, c *sql.Conn, fn func() error) error {
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		_, _ = c.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = c.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	return nil
}

// Ping checks the database answers: a cheap read of the schema page on the
// probe's own connection. In WAL mode a reader never waits for the writer,
// so a long ingest holding the writer cannot starve readiness; how long the
// writer has been held is WriterLag.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	var n int
	if err := s.pdb.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM sqlite_schema LIMIT 1)`).Scan(&n); err != nil {
		return fmt.Errorf("store: sqlite: ping: %w", err)
	}
	return nil
}

// WriterLag implements store.WriterLagger: how long the writer connection
// has been held by its current user (0 when it is free).
func (s *Store) WriterLag() time.Duration { return s.busy.Lag() }

// lockWriter takes the writer connection for the caller (wsem), waiting at
// most until ctx ends; unlockWriter gives it back.
func (s *Store) lockWriter(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.closed.Load() {
		<-s.wsem
		return errClosed
	}
	s.wend = s.busy.Begin()
	return nil
}

func (s *Store) unlockWriter() {
	s.wend()
	<-s.wsem
}

// Close waits for a running Apply, runs PRAGMA optimize and closes every
// connection. Calls after Close fail.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.idleMu.Lock()
	if s.idle != nil {
		s.idle.Stop()
	}
	s.idleMu.Unlock()
	s.qmu.Lock() // dbStmt adds to prepares under qmu and checks closed first
	s.qmu.Unlock()
	s.prepares.Wait()
	s.wsem <- struct{}{}
	defer func() { <-s.wsem }()
	if s.w != nil {
		_, _ = s.w.ExecContext(context.Background(), "PRAGMA optimize")
	}
	return s.closeAll()
}

func (s *Store) closeAll() error {
	var errs []error
	if s.audit != nil {
		errs = append(errs, s.audit.close())
	}
	if s.ws != nil && s.w != nil {
		errs = append(errs, s.w.Raw(func(any) error { return s.ws.close() }))
	}
	s.qmu.Lock()
	for k, st := range s.qcache {
		errs = append(errs, st.Close())
		delete(s.qcache, k)
	}
	s.xmu.Lock()
	for k, st := range s.xcache {
		errs = append(errs, st.Close())
		delete(s.xcache, k)
	}
	s.xmu.Unlock()
	s.qmu.Unlock()
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.xdb != nil {
		errs = append(errs, s.xdb.Close())
	}
	if s.pdb != nil {
		errs = append(errs, s.pdb.Close())
	}
	errs = append(errs, s.wdb.Close())
	return errors.Join(errs...)
}

// cachedPID returns the committed pid of (typ, name) when known.
func (s *Store) cachedPID(typ, name string) (int64, bool) {
	s.pmu.RLock()
	pid, ok := s.pids[paramKey{typ, name}]
	s.pmu.RUnlock()
	return pid, ok
}

// lookupPID resolves (typ, name) for a reader; ok is false when no resource
// of typ has ever been indexed under name.
func (s *Store) lookupPID(ctx context.Context, q queryer, typ, name string) (int64, bool, error) {
	if pid, ok := s.cachedPID(typ, name); ok {
		return pid, true, nil
	}
	var pid int64
	err := q.QueryRowContext(ctx, `SELECT pid FROM params WHERE type = ? AND name = ?`, typ, name).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	s.pmu.Lock()
	s.pids[paramKey{typ, name}] = pid
	s.pmu.Unlock()
	return pid, true, nil
}

// queryer is what *sql.Tx, *sql.Conn and *sql.DB share.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readTx starts a read transaction on a reader connection: every statement in
// it sees one snapshot. End it with tx.Rollback.
func (s *Store) readTx(ctx context.Context) (*sql.Tx, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: begin read: %w", err)
	}
	return tx, nil
}

// ForeignChangeVersion returns a number that changes with every committed
// write of resource versions to the database file by another Store (another
// process, such as `ketabridge import` next to a running gateway), and with
// nothing else: not this Store's own writes, the audit trail or unchanged
// records. It is the count of committed changes (the changes table, moved
// by every Apply that wrote a version) less those this Store committed. An
// in-process read cache polls it to drop what another process made stale;
// its own writes it invalidates precisely (docs/design/security.md CACHE-6). This Store's commits that
// count a change hold cmu from before COMMIT until they are counted, and the
// read here holds it too, so it never sees a commit of its own uncounted: a
// change it does not explain is another writer's.
func (s *Store) ForeignChangeVersion(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, errClosed
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	var v int64
	if err := s.rdb.QueryRowContext(ctx, "SELECT seq FROM changes WHERE id = 1").Scan(&v); err != nil {
		return 0, fmt.Errorf("store: sqlite: change version: %w", err)
	}
	return v - s.own, nil
}
