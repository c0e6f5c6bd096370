package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// writeStmts are the writer connection's prepared statements.
type writeStmts struct {
	getSource, insSource, updSource *dstmt
	getRes, insRes, updRes, setSrc  *dstmt
	getRID                          *dstmt
	delRes                          *dstmt         // createAll's rows, when one of the record's resources existed
	insResN                         map[int]*dstmt // createAll's multi-row inserts, prepared on first use
	getPID, insPID                  *dstmt
	getCID, insCID                  *dstmt
	getSID, insSID                  *dstmt
	maxRID, maxHID                  *dstmt
	latest                          *dstmt
	delIdx                          [sqlcore.NumKinds]*dstmt
	delStaged                       [sqlcore.NumKinds]*dstmt // of a bulk load's staging tables, prepared on first use
	multi                           map[multiKey]*dstmt      // multi-row inserts, prepared on first use
	byText                          keptStmts                // the shared queries' kept statements (writerQuerier)
	all                             []*dstmt
}

func prepareWrite(ctx context.Context, c dconn) (*writeStmts, error) {
	ws := &writeStmts{}
	var firstErr error
	prep := func(q string) *dstmt {
		if firstErr != nil {
			return nil
		}
		st, err := c.prepare(ctx, q)
		if err != nil {
			firstErr = fmt.Errorf("store: sqlite: prepare: %w", err)
			return nil
		}
		ws.all = append(ws.all, st)
		return st
	}
	ws.getSource = prep(sqlcore.SourceSQL)
	ws.insSource = prep(sqlcore.InsertSourceSQL)
	ws.updSource = prep(sqlcore.UpdateSourceSQL)
	ws.getRes = prep(`SELECT rid, version, deleted, hash, src, patient FROM resources WHERE type = ? AND id = ?`)
	// Creates are tried first: the unique (type, id) index answers "exists?"
	// as part of the insert, saving a lookup per new resource.
	ws.insRes = prep(`INSERT INTO resources (rid, type, id, version, hid, last_updated, deleted, patient, hash, src)
VALUES (?, ?, ?, 1, ?, ?, 0, ?, ?, ?) ON CONFLICT (type, id) DO NOTHING`)
	ws.delRes = prep(`DELETE FROM resources WHERE rid BETWEEN ? AND ?`)
	ws.getRID = prep(`SELECT rid FROM resources WHERE type = ? AND id = ?`)
	ws.updRes = prep(`UPDATE resources SET version = ?, hid = ?, last_updated = ?, deleted = ?, patient = ?, hash = ?, src = ? WHERE rid = ?`)
	ws.setSrc = prep(sqlcore.SetSourceSQL)
	ws.getPID = prep(`SELECT pid FROM params WHERE type = ? AND name = ?`)
	ws.insPID = prep(`INSERT INTO params (type, name) VALUES (?, ?) RETURNING pid`)
	ws.getCID = prep(`SELECT cid FROM compartments WHERE patient = ?`)
	ws.insCID = prep(`INSERT INTO compartments (patient) VALUES (?) RETURNING cid`)
	ws.getSID = prep(`SELECT sid FROM token_systems WHERE system = ?`)
	ws.insSID = prep(`INSERT INTO token_systems (system) VALUES (?) RETURNING sid`)
	ws.maxRID = prep(`SELECT coalesce(max(rid), 0) FROM resources`)
	ws.maxHID = prep(`SELECT coalesce(max(hid), 0) FROM history`)
	ws.latest = prep(`SELECT coalesce(max(last_updated), 0) FROM resources WHERE type = ?`)
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		ws.delIdx[k] = prep(`DELETE FROM ` + sqlcore.IndexTables[k] + ` WHERE rid = ?`)
	}
	if firstErr != nil {
		_ = ws.close()
		return nil, firstErr
	}
	return ws, nil
}

func (ws *writeStmts) close() error {
	errs := []error{ws.byText.close()}
	for _, st := range ws.all {
		errs = append(errs, st.close())
	}
	ws.all = nil
	return errors.Join(errs...)
}

// Apply implements store.Store.Apply, whose doc states the semantics;
// sqlcore.Record decides what each record writes. Each record is first
// checked and its bodies stamped in memory; a record failing there writes
// nothing. Should one of its writes then fail (an I/O or SQL error, not a
// property of the record's data), the transaction is rolled back and the
// batch rerun with a SAVEPOINT per record, so the failing record is rolled
// back alone and the others land.
// The batch runs in one BEGIN IMMEDIATE transaction on the writer
// connection.
func (s *Store) Apply(ctx context.Context, records []store.RecordWrite) ([]store.WriteResult, error) {
	if len(records) == 0 {
		return nil, nil
	}
	if err := s.lockWriter(ctx); err != nil {
		return nil, err
	}
	defer s.unlockWriter()
	s.growForIngest(ctx, ingestSized(records))
	var (
		results []store.WriteResult
		failed  []*store.RecordError
	)
	err := s.w.Raw(func(dc any) error {
		c := dconn{dc.(driver.Conn)}
		return sqlcore.WithRetry(ctx, func(safe bool) error {
			var err error
			results, failed, err = s.apply(ctx, c, records, safe)
			return err
		})
	})
	s.releaseWhenIdle()
	if err != nil {
		return nil, err
	}
	if len(failed) > 0 {
		return results, &store.BatchError{Records: failed}
	}
	return results, nil
}

// failAfterWrite, when set (by tests), fails the write of a created
// resource after its rows are written, standing in for an I/O error.
var failAfterWrite func(typ, id string) error

// apply runs one transaction over records; safe puts each record's writes in
// a SAVEPOINT.
func (s *Store) apply(ctx context.Context, c dconn, records []store.RecordWrite, safe bool) ([]store.WriteResult, []*store.RecordError, error) {
	// Statements run without the caller's context: a cancellable context costs
	// the driver a goroutine per statement. Cancellation is checked between
	// records instead.
	bg := context.WithoutCancel(ctx)
	if err := c.exec(bg, "BEGIN IMMEDIATE"); err != nil {
		return nil, nil, fmt.Errorf("store: sqlite: begin: %w", err)
	}
	rollback := func(err error) ([]store.WriteResult, []*store.RecordError, error) {
		_ = c.exec(bg, "ROLLBACK")
		return nil, nil, err
	}
	// lastUpdated never goes back behind a committed version of the same
	// types (store.Store.Apply), whatever the clock says.
	var latest int64
	for _, typ := range sqlcore.WrittenTypes(records) {
		var l int64
		if _, err := s.ws.latest.queryRow(bg, []any{typ}, &l); err != nil {
			return rollback(fmt.Errorf("store: sqlite: apply: %w", err))
		}
		latest = max(latest, l)
	}
	now := sqlcore.NotBefore(s.clock.Now().UTC().Truncate(time.Millisecond), latest)
	a := &applier{c: c, ws: s.ws, ctx: bg, now: now, ms: now.UnixMilli(), cache: s, newPIDs: map[paramKey]int64{}, newSIDs: map[string]int64{}, cids: map[string]int64{}, safe: safe, staged: s.staged,
		buf: s.rowBuf()}
	a.created, a.looked = a.buf.created, a.buf.looked
	// Nothing the transaction wrote stays referenced between Applies: the
	// maps' keys are the chunk's ids, which may share memory with its
	// mapped records (flush leaves the row slices empty).
	defer a.buf.release()
	if _, err := a.ws.maxRID.queryRow(bg, nil, &a.lastRID); err != nil {
		return rollback(fmt.Errorf("store: sqlite: apply: %w", err))
	}
	if _, err := a.ws.maxHID.queryRow(bg, nil, &a.lastHID); err != nil {
		return rollback(fmt.Errorf("store: sqlite: apply: %w", err))
	}
	results, failed, err := sqlcore.Records(ctx, records, func(rec *store.RecordWrite) (store.WriteResult, error) {
		return sqlcore.Record(a, rec, a.now, a.safe)
	})
	if err != nil {
		var fatal *sqlcore.Fatal
		if errors.As(err, &fatal) {
			err = fmt.Errorf("store: sqlite: apply: %w", fatal.Err)
		}
		return rollback(err)
	}
	if err := a.flush(); err != nil {
		if !safe {
			return rollback(&sqlcore.Retry{Err: err})
		}
		return rollback(fmt.Errorf("store: sqlite: apply: %w", err))
	}
	counted := sqlcore.Written(results) > 0
	if counted {
		if err := c.exec(bg, "UPDATE changes SET seq = seq + 1 WHERE id = 1"); err != nil {
			return rollback(fmt.Errorf("store: sqlite: apply: count the change: %w", err))
		}
		// The change is this store's own: counted as it commits, under
		// the lock ForeignChangeVersion reads under (CACHE-6).
		s.cmu.Lock()
	}
	err = c.exec(bg, "COMMIT")
	if counted {
		if err == nil {
			s.own++
		}
		s.cmu.Unlock()
	}
	if err != nil {
		return rollback(fmt.Errorf("store: sqlite: commit: %w", err))
	}
	if len(a.newPIDs) > 0 {
		s.pmu.Lock()
		for k, v := range a.newPIDs {
			s.pids[k] = v
		}
		s.pmu.Unlock()
	}
	if len(a.newSIDs) > 0 {
		s.pmu.Lock()
		for k, v := range a.newSIDs {
			s.sids[k] = v
		}
		s.pmu.Unlock()
	}
	return results, failed, nil
}

// applier writes the records of one Apply transaction on the writer
// connection (sqlcore.RecordWriter, sqlcore.VersionWriter).
type applier struct {
	c       dconn
	ws      *writeStmts
	ctx     context.Context
	now     time.Time
	ms      int64
	safe    bool
	cache   *Store
	lastRID int64
	lastHID int64
	newPIDs map[paramKey]int64 // created in this transaction
	newSIDs map[string]int64   // token systems looked up or created in this transaction
	cids    map[string]int64   // compartments interned in this transaction
	ids     []interned         // of the current record's resources
	// created are the rids of the resources created in this transaction,
	// and looked the rids (0: none) that reference targets were looked up
	// to (resolveRefs); recCreated are the keys the current record added
	// to created, dropped again when its savepoint is rolled back (its
	// rids then name no row, and the next transaction reuses them).
	created    map[store.Key]int64
	looked     map[store.Key]int64
	recCreated []store.Key
	buf        *rowBuf // index and history rows awaiting a flush (the Store's wbuf)
	// staged: a bulk load into an empty store runs; index rows go to its
	// staging tables (bulk.go).
	staged bool
}

// indexTable is the table index rows of kind are written to.
func (a *applier) indexTable(kind store.IndexKind) string {
	if a.staged {
		return stagingTable(kind)
	}
	return sqlcore.IndexTables[kind]
}

// interned are the ids a resource's index rows refer to.
type interned struct {
	pids []int64 // of each index row's parameter
	sids []int64 // of each token row's system (token_systems), 0 for other kinds
	cid  any     // the compartment's cid (int64), nil when none
}

// current reads the current row of typ/id.
func (a *applier) current(typ, id string) (sqlcore.Current, bool, error) {
	var c sqlcore.Current
	found, err := a.ws.getRes.queryRow(a.ctx, []any{typ, id}, &c.RID, &c.Version, &c.Deleted, &c.Hash, &c.Src, &c.Patient)
	return c, found, err
}

// Source implements sqlcore.RecordWriter.
func (a *applier) Source(rec *store.RecordWrite) (sqlcore.Source, error) {
	var src sqlcore.Source
	var err error
	src.Found, err = a.ws.getSource.queryRow(a.ctx, []any{rec.Kind, rec.ClinicID}, &src.ID, &src.Hash, &src.Keys)
	return src, err
}

// Current implements sqlcore.RecordWriter, a row at a time.
func (a *applier) Current(keys []store.Key) (map[store.Key]sqlcore.Current, error) {
	out := make(map[store.Key]sqlcore.Current, len(keys))
	for _, k := range keys {
		c, found, err := a.current(k.Type, k.ID)
		if err != nil {
			return nil, err
		}
		if found {
			out[k] = c
		}
	}
	return out, nil
}

// Intern implements sqlcore.RecordWriter: params and compartments are
// interned outside the record's savepoint so that a rolled back record
// cannot leave the caches pointing at nothing.
func (a *applier) Intern(rec *store.RecordWrite) error {
	a.ids = a.ids[:0]
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		ids := interned{pids: make([]int64, len(rw.Index)), sids: make([]int64, len(rw.Index))}
		for j := range rw.Index {
			pid, err := a.pid(rw.Type, rw.Index[j].Param)
			if err != nil {
				return err
			}
			ids.pids[j] = pid
			if rw.Index[j].Kind == store.KindToken {
				if ids.sids[j], err = a.sid(rw.Index[j].System); err != nil {
					return err
				}
			}
		}
		if rw.Patient != "" {
			cid, err := a.cid(rw.Patient)
			if err != nil {
				return err
			}
			ids.cid = cid
		}
		a.ids = append(a.ids, ids)
	}
	return nil
}

// Savepoint implements sqlcore.RecordWriter; the record's buffered rows are
// flushed inside its savepoint.
func (a *applier) Savepoint(write func() (store.WriteResult, error)) (store.WriteResult, error) {
	if err := a.c.exec(a.ctx, "SAVEPOINT rec"); err != nil {
		return store.WriteResult{}, &sqlcore.Fatal{Err: err}
	}
	a.recCreated = a.recCreated[:0]
	res, err := write()
	if err == nil {
		err = a.flush()
	}
	if err != nil {
		a.buf.reset()
		for _, k := range a.recCreated {
			delete(a.created, k)
		}
		// A miss looked up in the record may have found one of its own
		// (now rolled back) rows.
		clear(a.looked)
		if rerr := a.c.exec(a.ctx, "ROLLBACK TO rec"); rerr != nil {
			return store.WriteResult{}, &sqlcore.Fatal{Err: rerr}
		}
		if rerr := a.c.exec(a.ctx, "RELEASE rec"); rerr != nil {
			return store.WriteResult{}, &sqlcore.Fatal{Err: rerr}
		}
		return store.WriteResult{}, err
	}
	if err := a.c.exec(a.ctx, "RELEASE rec"); err != nil {
		return store.WriteResult{}, &sqlcore.Fatal{Err: err}
	}
	return res, nil
}

func (a *applier) pid(typ, name string) (int64, error) {
	if pid, ok := a.cache.cachedPID(typ, name); ok {
		return pid, nil
	}
	k := paramKey{typ, name}
	if pid, ok := a.newPIDs[k]; ok {
		return pid, nil
	}
	var pid int64
	found, err := a.ws.getPID.queryRow(a.ctx, []any{typ, name}, &pid)
	if err == nil && !found {
		_, err = a.ws.insPID.queryRow(a.ctx, []any{typ, name}, &pid)
	}
	if err != nil {
		return 0, err
	}
	a.newPIDs[k] = pid
	return pid, nil
}

// sid interns a token system (docs/design/architecture.md PERF-SQLB-2): its
// sid, created on first use. Systems are few (tens), so the committed ones
// stay cached for the store's life.
func (a *applier) sid(system string) (int64, error) {
	a.cache.pmu.RLock()
	sid, ok := a.cache.sids[system]
	a.cache.pmu.RUnlock()
	if ok {
		return sid, nil
	}
	if sid, ok := a.newSIDs[system]; ok {
		return sid, nil
	}
	found, err := a.ws.getSID.queryRow(a.ctx, []any{system}, &sid)
	if err == nil && !found {
		_, err = a.ws.insSID.queryRow(a.ctx, []any{system}, &sid)
	}
	if err != nil {
		return 0, err
	}
	a.newSIDs[system] = sid
	return sid, nil
}

// cid interns patient's compartment: its cid, created on first use.
func (a *applier) cid(patient string) (int64, error) {
	if cid, ok := a.cids[patient]; ok {
		return cid, nil
	}
	var cid int64
	found, err := a.ws.getCID.queryRow(a.ctx, []any{patient}, &cid)
	if err == nil && !found {
		_, err = a.ws.insCID.queryRow(a.ctx, []any{patient}, &cid)
	}
	if err != nil {
		return 0, err
	}
	a.cids[patient] = cid
	return cid, nil
}

// Write implements sqlcore.RecordWriter: the source record, then each
// resource in turn, then the deletions.
func (a *applier) Write(rec *store.RecordWrite, src sqlcore.Source, preps []sqlcore.Prepared) (store.WriteResult, error) {
	res, keys, body := sqlcore.SourceRow(rec, src)
	srid := src.ID
	if src.Found {
		if _, err := a.ws.updSource.exec(a.ctx, rec.Hash, body, keys, a.ms, srid); err != nil {
			return res, err
		}
	} else if _, err := a.ws.insSource.queryRow(a.ctx, []any{rec.Kind, rec.ClinicID, rec.Hash, body, keys, a.ms}, &srid); err != nil {
		return res, err
	}
	all := false
	if !src.Found && len(rec.Resources) > 1 {
		var err error
		if all, err = a.createAll(rec, srid, preps); err != nil {
			return res, err
		}
	}
	for i := range rec.Resources {
		var rr store.ResourceResult
		var err error
		if all {
			rr, err = a.created1(&rec.Resources[i], i, a.lastRID+1, a.lastHID+1, &preps[i])
		} else {
			rr, err = a.writeResource(&rec.Resources[i], i, srid, &preps[i])
		}
		if err != nil {
			return res, err
		}
		res.Resources = append(res.Resources, rr)
	}
	for _, k := range sqlcore.Dropped(rec, src) {
		cur, found, err := a.current(k.Type, k.ID)
		if err != nil {
			return res, err
		}
		rr, done, err := sqlcore.Delete(a, k, cur, found, srid)
		if err != nil {
			return res, err
		}
		if done {
			res.Resources = append(res.Resources, rr)
		}
	}
	return res, nil
}

// writeResource writes the record's i-th resource rw: creates are tried
// first, the unique (type, id) index answering "exists?" as part of the
// insert; an existing resource is sqlcore.Update's to decide.
func (a *applier) writeResource(rw *store.ResourceWrite, i int, srid int64, p *sqlcore.Prepared) (store.ResourceResult, error) {
	rid, hid := a.lastRID+1, a.lastHID+1
	n, err := a.ws.insRes.exec(a.ctx, rid, rw.Type, rw.ID, hid, a.ms, sqlcore.NullString(rw.Patient), p.Sum[:], srid)
	if err != nil {
		return store.ResourceResult{}, err
	}
	if n == 0 {
		cur, found, err := a.current(rw.Type, rw.ID)
		if err != nil {
			return store.ResourceResult{}, err
		}
		if !found {
			return store.ResourceResult{}, fmt.Errorf("%s/%s: conflicting insert but no row", rw.Type, rw.ID)
		}
		return sqlcore.Update(a, rw, i, p, cur, srid, a.now)
	}
	return a.created1(rw, i, rid, hid, p)
}

// maxResRowsPerInsert bounds the rows of one multi-row INSERT into
// resources (createAll); a record's resources go in statements of the
// largest power of two not above what is left, as flushRows does.
const maxResRowsPerInsert = 32

// createAll creates all of rec's resources, a record not stored before, in
// multi-row INSERTs (docs/design/architecture.md PERF-SQLB-5), with the rids
// and hids writeResource would give them one at a time (the next ones, in
// the record's order): each single-row INSERT cost the driver a statement
// (binding, a VDBE program opening and closing five B-tree cursors: the
// table, (type, id), resources_patient, resources_updated,
// resources_type_rid) per resource. all is true when every row was
// inserted with those rids; the caller then writes the resources' other
// rows (created1) in order. When one of them exists already (the statement
// inserted fewer rows), or the rids differ (see below), the rows inserted
// are deleted again and all is false: the caller writes the record a
// resource at a time, as before, so rids, hids and outcomes are exactly
// those of that path.
//
// The statements name no rid and are INSERT OR IGNORE (PERF-SQLB-6): an
// explicit rid is checked to be an integer as the row goes in, and a
// multi-row INSERT that can fail on a row (that check, a NOT NULL column,
// a key other than the one it ignores) makes SQLite open a statement
// journal and copy every existing page the statement first changes into it
// before changing it, so that a failing row can undo the rows before it.
// Here those pages are a random leaf of (type, id) and of resources_patient
// per row: the copies were 15-18 % of createAll's time, for an undo that a
// statement which cannot fail never needs. SQLite gives each row the
// largest rid plus one, in order (OP_NewRowid), which is lastRID+1, +2, ...
// whenever lastRID is the largest rid; it is not after a record was rolled
// back to its savepoint (its rids are not reused in the transaction), and
// then the rids it gave are told apart by the last one (the rows of one
// record are consecutive: each is the largest plus one when it goes in),
// deleted, and the record written a resource at a time with the rids that
// path gives. A row skipped by OR IGNORE (its (type, id) exists; no other
// constraint can meet a row: the values bound are never NULL where the
// schema says NOT NULL) takes no rid. An I/O error mid-statement rolls the
// whole transaction back, as for the index rows' INSERT OR IGNORE
// statements; Apply then fails or retries as a whole.
func (a *applier) createAll(rec *store.RecordWrite, srid int64, preps []sqlcore.Prepared) (all bool, err error) {
	n := len(rec.Resources)
	var inserted, lo, hi int64 // rows inserted, and their first and last rid
	nv := a.buf.nv[:0]
	for i := 0; i < n; {
		rows := maxResRowsPerInsert
		for rows > n-i {
			rows /= 2
		}
		st, err := a.insertResources(rows)
		if err != nil {
			return false, err
		}
		nv = nv[:0]
		for j := i; j < i+rows; j++ {
			rw, p := &rec.Resources[j], &preps[j]
			for _, v := range [...]driver.Value{rw.Type, rw.ID, a.lastHID + 1 + int64(j), a.ms, sqlcore.NullString(rw.Patient), p.Sum[:], srid} {
				nv = append(nv, driver.NamedValue{Ordinal: len(nv) + 1, Value: v})
			}
		}
		res, err := st.ex.ExecContext(a.ctx, nv)
		if err != nil {
			clear(nv)
			a.buf.nv = nv[:0]
			return false, err
		}
		k, err := res.RowsAffected()
		if err != nil {
			return false, err
		}
		if k > 0 {
			last, err := res.LastInsertId()
			if err != nil {
				return false, err
			}
			if inserted == 0 {
				lo = last - k + 1
			}
			hi = last
		}
		inserted += k
		i += rows
	}
	clear(nv) // drop the sums' references
	a.buf.nv = nv[:0]
	if inserted == int64(n) && lo == a.lastRID+1 && hi == a.lastRID+int64(n) {
		return true, nil
	}
	if inserted > 0 {
		if _, err := a.ws.delRes.exec(a.ctx, lo, hi); err != nil {
			return false, err
		}
	}
	return false, nil
}

// insertResources returns the prepared statement inserting rows resources
// rows, as insRes does one but with the rid left to SQLite (createAll),
// preparing it on first use.
func (a *applier) insertResources(rows int) (*dstmt, error) {
	if st := a.ws.insResN[rows]; st != nil {
		return st, nil
	}
	var q strings.Builder
	q.WriteString("INSERT OR IGNORE INTO resources (type, id, version, hid, last_updated, deleted, patient, hash, src) VALUES ")
	for i := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, 1, ?, ?, 0, ?, ?, ?)")
	}
	st, err := a.c.prepare(a.ctx, q.String())
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: prepare: %w", err)
	}
	if a.ws.insResN == nil {
		a.ws.insResN = map[int]*dstmt{}
	}
	a.ws.insResN[rows] = st
	a.ws.all = append(a.ws.all, st)
	return st, nil
}

// created1 writes what follows the resources row of the record's i-th
// resource rw, created as rid with history row hid: its history and index
// rows (buffered).
func (a *applier) created1(rw *store.ResourceWrite, i int, rid, hid int64, p *sqlcore.Prepared) (store.ResourceResult, error) {
	a.lastRID, a.lastHID = rid, hid
	k := store.Key{Type: rw.Type, ID: rw.ID}
	a.created[k] = rid
	a.recCreated = append(a.recCreated, k)
	if err := a.bufferHistory(histRow{hid: hid, rid: rid, version: 1, patient: sqlcore.NullString(rw.Patient), body: p.Stamped}); err != nil {
		return store.ResourceResult{}, err
	}
	if err := a.bufferIndex(rw, rid, &a.ids[i]); err != nil {
		return store.ResourceResult{}, fmt.Errorf("%s/%s: %w", rw.Type, rw.ID, err)
	}
	if failAfterWrite != nil {
		if err := failAfterWrite(rw.Type, rw.ID); err != nil {
			return store.ResourceResult{}, err
		}
	}
	return store.ResourceResult{Type: rw.Type, ID: rw.ID, Version: 1, Outcome: store.Created}, nil
}

// SetSource implements sqlcore.VersionWriter.
func (a *applier) SetSource(rid, srid int64) error {
	_, err := a.ws.setSrc.exec(a.ctx, srid, rid)
	return err
}

// WriteVersion implements sqlcore.VersionWriter.
func (a *applier) WriteVersion(v *sqlcore.Version) error {
	hid := a.lastHID + 1
	a.lastHID = hid
	patient := sqlcore.NullString(v.Patient)
	var hash any // NULL for a deletion
	if v.Hash != nil {
		hash = v.Hash
	}
	if _, err := a.ws.updRes.exec(a.ctx, v.Version, hid, a.ms, v.Deleted, patient, hash, v.Src, v.RID); err != nil {
		return err
	}
	if err := a.deleteIndex(v.RID); err != nil {
		return err
	}
	if err := a.bufferHistory(histRow{hid: hid, rid: v.RID, version: v.Version, deleted: v.Deleted, patient: patient, body: v.Body}); err != nil {
		return err
	}
	if v.Resource == nil {
		return nil
	}
	if err := a.bufferIndex(v.Resource, v.RID, &a.ids[v.Index]); err != nil {
		return fmt.Errorf("%s/%s: %w", v.Resource.Type, v.Resource.ID, err)
	}
	return nil
}

// deleteIndex deletes rid's index rows, flushing the buffer first (it may
// hold some of them).
func (a *applier) deleteIndex(rid int64) error {
	if err := a.flush(); err != nil {
		return err
	}
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		st := a.ws.delIdx[k]
		if a.staged {
			// The staging table's rid index is built by the load's first
			// replacement of index rows, not kept from its start
			// (docs/design/security.md PERF-SQLB-7): into a new store
			// resources are mostly created, and each staged row cost a
			// second B-tree insert for a lookup that never came. A no-op
			// once the index exists.
			if err := a.c.exec(a.ctx, `CREATE INDEX IF NOT EXISTS `+stagingTable(k)+`_rid ON `+stagingTable(k)+` (rid)`); err != nil {
				return err
			}
			if st = a.ws.delStaged[k]; st == nil {
				var err error
				if st, err = a.c.prepare(a.ctx, `DELETE FROM `+stagingTable(k)+` WHERE rid = ?`); err != nil {
					return err
				}
				a.ws.delStaged[k] = st
				a.ws.all = append(a.ws.all, st)
			}
		}
		if _, err := st.exec(a.ctx, rid); err != nil {
			return err
		}
	}
	return nil
}

// SourceRecords returns the stored source records for the keys that exist.
func (s *Store) SourceRecords(ctx context.Context, keys []store.RecordKey) (map[store.RecordKey][]byte, error) {
	out := make(map[store.RecordKey][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	st, err := tx.PrepareContext(ctx, `SELECT body FROM source_records WHERE kind = ? AND clinic_id = ?`)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: source records: %w", err)
	}
	defer st.Close()
	for _, k := range keys {
		var body []byte
		err := st.QueryRowContext(ctx, k.Kind, k.ClinicID).Scan(&body)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: sqlite: source records: %w", err)
		}
		out[k] = body
	}
	return out, nil
}
