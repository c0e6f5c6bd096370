package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// The audit trail lives in a database file of its own beside the store's,
// {name}-audit.db for {name}.db (docs/design/security.md AUD-ARCH-5). In WAL
// mode a connection drops its whole page cache at its next read after any
// commit to its file: the audit writer's group commits, several a second
// under read load, made every reader of the store's file re-read (and, in
// the pure-Go SQLite, free and allocate again) the pages it had cached. In
// a file of their own they touch no reader of resources, and the audit
// writer and the resource writer no longer wait for each other. The rows
// are those of migrations 0013 and 0014 (store/internal/sqlcore audit.go);
// a store whose file still holds them moves them here when it opens.

// auditSchema creates the audit file's tables (migration 0013's, with
// 0014's resource column).
const auditSchema = `
CREATE TABLE IF NOT EXISTS audit_terms (
    id   INTEGER PRIMARY KEY,
    term TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS audit (
    recorded INTEGER NOT NULL,
    idk      BLOB    NOT NULL,
    shape    INTEGER NOT NULL,
    patient  INTEGER NOT NULL,
    resource BLOB    NOT NULL,
    request  BLOB    NOT NULL,
    PRIMARY KEY (recorded, idk)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS audit_text_ids ON audit (idk) WHERE idk < x'01';
CREATE TABLE IF NOT EXISTS audit_exports (
    day         INTEGER PRIMARY KEY,
    events      INTEGER NOT NULL,
    exported_at INTEGER NOT NULL,
    dropped_at  INTEGER
);`

// AuditPath is the audit trail's file of the store at path.
func AuditPath(path string) string { return strings.TrimSuffix(path, ".db") + "-audit.db" }

// auditFile is the audit trail's connections: one writer, held for the
// store's life, and a small reader pool. It is the shared audit queries'
// sqlcore.DB.
type auditFile struct {
	s    *Store
	wdb  *sql.DB
	w    *sql.Conn
	wsem chan struct{} // held by the goroutine using w; guards kept
	kept keptStmts
	rdb  *sql.DB
}

var _ sqlcore.DB = (*auditFile)(nil)

// openAuditFile opens (creating) the audit file at path for s.
func openAuditFile(ctx context.Context, s *Store, path string) (*auditFile, error) {
	a := &auditFile{s: s, wsem: make(chan struct{}, 1)}
	var err error
	if a.wdb, err = sql.Open("sqlite", dsn(path, append(append([]string{}, commonPragmas...),
		"journal_mode(WAL)", "synchronous(NORMAL)", "cache_size(-2048)"))); err != nil {
		return nil, err
	}
	a.wdb.SetMaxOpenConns(1)
	a.wdb.SetMaxIdleConns(1)
	a.wdb.SetConnMaxLifetime(0)
	a.wdb.SetConnMaxIdleTime(0)
	if a.w, err = a.wdb.Conn(ctx); err != nil {
		_ = a.close()
		return nil, err
	}
	if err := execTx(ctx, a.w, func() error {
		_, err := a.w.ExecContext(ctx, auditSchema)
		return err
	}); err != nil {
		_ = a.close()
		return nil, err
	}
	// Readers list, count and export the trail: a small page cache each.
	if a.rdb, err = sql.Open("sqlite", dsn(path, append(append([]string{}, commonPragmas...), "cache_size(-1024)", "query_only(1)"))); err != nil {
		_ = a.close()
		return nil, err
	}
	a.rdb.SetMaxOpenConns(4)
	a.rdb.SetMaxIdleConns(2)
	return a, nil
}

func (a *auditFile) Reader() (sqlcore.Querier, error) {
	if a.s.closed.Load() {
		return nil, errClosed
	}
	return sqlQuerier{a.rdb}, nil
}

func (a *auditFile) Write(ctx context.Context, fn func(sqlcore.Querier) error) error {
	if a.s.closed.Load() {
		return errClosed
	}
	select {
	case a.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-a.wsem }()
	if a.s.closed.Load() {
		return errClosed
	}
	return execTx(ctx, a.w, func() error { return fn(writerQuerier{sqlQuerier{a.w}, a.w, &a.kept}) })
}

// close closes the audit file's connections (after the store's Close has
// made every call fail, and waited for a running write).
func (a *auditFile) close() error {
	var errs []error
	if a.w != nil {
		a.wsem <- struct{}{}
		errs = append(errs, a.w.Raw(func(any) error { return a.kept.close() }), a.w.Close())
		<-a.wsem
	}
	for _, db := range []*sql.DB{a.wdb, a.rdb} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// moveLegacyAudit moves the audit trail the store's own file holds (its
// migrations 0013 and 0014 made it there) into the audit file: copied in
// one transaction of the audit file, then dropped from the store's in
// one of its own. A copy that committed before a crash kept its drop from
// running is found whole (the same counts) and only the drop runs again;
// anything else (both files holding a different trail) fails the open
// rather than mixing two dictionaries' codes.
func (s *Store) moveLegacyAudit(ctx context.Context, mainPath string) error {
	var legacy int
	if err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit'`).Scan(&legacy); err != nil {
		return err
	}
	if legacy == 0 {
		return nil
	}
	a := s.audit
	counts := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}, schema string) (rows, terms, exports int64, err error) {
		err = q.QueryRowContext(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s.audit), (SELECT count(*) FROM %[1]s.audit_terms), (SELECT count(*) FROM %[1]s.audit_exports)`, schema)).
			Scan(&rows, &terms, &exports)
		return rows, terms, exports, err
	}
	if _, err := a.w.ExecContext(ctx, `ATTACH DATABASE ? AS legacy`, mainPath); err != nil {
		return err
	}
	defer func() { _, _ = a.w.ExecContext(context.Background(), `DETACH DATABASE legacy`) }()
	r0, t0, e0, err := counts(a.w, "main")
	if err != nil {
		return err
	}
	r1, t1, e1, err := counts(a.w, "legacy")
	if err != nil {
		return err
	}
	switch {
	case r0+t0+e0 == 0:
		if err := execTx(ctx, a.w, func() error {
			for _, q := range []string{
				`INSERT INTO main.audit_terms (id, term) SELECT id, term FROM legacy.audit_terms`,
				`INSERT INTO main.audit (recorded, idk, shape, patient, resource, request) SELECT recorded, idk, shape, patient, resource, request FROM legacy.audit`,
				`INSERT INTO main.audit_exports (day, events, exported_at, dropped_at) SELECT day, events, exported_at, dropped_at FROM legacy.audit_exports`,
			} {
				if _, err := a.w.ExecContext(ctx, q); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	case r0 != r1 || t0 != t1 || e0 != e1:
		return fmt.Errorf("both %s and %s hold an audit trail (%d and %d events); move one aside", mainPath, AuditPath(mainPath), r1, r0)
	}
	return execTx(ctx, s.w, func() error {
		for _, t := range []string{"audit", "audit_terms", "audit_exports"} {
			if _, err := s.w.ExecContext(ctx, `DROP TABLE `+t); err != nil {
				return err
			}
		}
		return nil
	})
}
