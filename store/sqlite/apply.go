package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// writeStmts are the writer connection's prepared statements.
type writeStmts struct {
	getSource, insSource, updSource *dstmt
	getRes, insRes, updRes, setSrc  *dstmt
	getPID, insPID                  *dstmt
	getCID, insCID                  *dstmt
	maxRID, maxHID                  *dstmt
	delIdx                          [numKinds]*dstmt
	multi                           map[multiKey]*dstmt // multi-row inserts, prepared on first use
	all                             []*dstmt
}

// numKinds bounds store.IndexKind values (1..KindQuantity).
const numKinds = int(store.KindQuantity) + 1

// indexTables names the index table of each kind.
var indexTables = [numKinds]string{
	store.KindToken:     "idx_token",
	store.KindString:    "idx_string",
	store.KindDate:      "idx_date",
	store.KindReference: "idx_ref",
	store.KindNumber:    "idx_number",
	store.KindQuantity:  "idx_quantity",
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
	ws.getSource = prep(`SELECT srid, hash, resources FROM source_records WHERE kind = ? AND clinic_id = ?`)
	ws.insSource = prep(`INSERT INTO source_records (kind, clinic_id, hash, body, resources, updated) VALUES (?, ?, ?, ?, ?, ?) RETURNING srid`)
	ws.updSource = prep(`UPDATE source_records SET hash = ?, body = ?, resources = ?, updated = ? WHERE srid = ?`)
	ws.getRes = prep(`SELECT rid, version, deleted, hash, src, patient FROM resources WHERE type = ? AND id = ?`)
	// Creates are tried first: the unique (type, id) index answers "exists?"
	// as part of the insert, saving a lookup per new resource.
	ws.insRes = prep(`INSERT INTO resources (rid, type, id, version, hid, last_updated, deleted, patient, hash, src)
VALUES (?, ?, ?, 1, ?, ?, 0, ?, ?, ?) ON CONFLICT (type, id) DO NOTHING`)
	ws.updRes = prep(`UPDATE resources SET version = ?, hid = ?, last_updated = ?, deleted = ?, patient = ?, hash = ?, src = ? WHERE rid = ?`)
	ws.setSrc = prep(`UPDATE resources SET src = ? WHERE rid = ?`)
	ws.getPID = prep(`SELECT pid FROM params WHERE type = ? AND name = ?`)
	ws.insPID = prep(`INSERT INTO params (type, name) VALUES (?, ?) RETURNING pid`)
	ws.getCID = prep(`SELECT cid FROM compartments WHERE patient = ?`)
	ws.insCID = prep(`INSERT INTO compartments (patient) VALUES (?) RETURNING cid`)
	ws.maxRID = prep(`SELECT coalesce(max(rid), 0) FROM resources`)
	ws.maxHID = prep(`SELECT coalesce(max(hid), 0) FROM history`)
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		ws.delIdx[k] = prep(`DELETE FROM ` + indexTables[k] + ` WHERE rid = ?`)
	}
	if firstErr != nil {
		_ = ws.close()
		return nil, firstErr
	}
	return ws, nil
}

func (ws *writeStmts) close() error {
	var errs []error
	for _, st := range ws.all {
		errs = append(errs, st.close())
	}
	ws.all = nil
	return errors.Join(errs...)
}

// Apply writes each record atomically within one transaction, so a failing
// record writes nothing of itself while the others land. A record whose Hash
// equals the stored one for its (Kind, ClinicID) is Unchanged and writes
// nothing. Otherwise each resource whose body (compared by a SHA-256 of the
// unstamped body) differs from its current version gets a new version
// stamped with store.StampMeta (Created when new or previously deleted,
// Updated otherwise), its index rows replaced; resources the record produced
// before but no longer produces (and that no other record took over since)
// get a deletion version (Deleted). Every version written by one call
// carries the same lastUpdated, clock.Now() truncated to milliseconds.
//
// Each record is first checked and its bodies stamped in memory; a record
// failing there writes nothing. Its writes then run; should one fail (an
// I/O or SQL error, not a property of the record's data), the transaction is
// rolled back and the batch rerun with a SAVEPOINT per record, so the failing
// record is rolled back alone and the others land.
//
// When some records fail, the others are committed, the failed ones have
// Outcome store.Failed, and the error is a *store.BatchError. Any other error
// means nothing was written.
func (s *Store) Apply(ctx context.Context, records []store.RecordWrite) ([]store.WriteResult, error) {
	if len(records) == 0 {
		return nil, nil
	}
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.wsem }()
	if s.closed.Load() {
		return nil, errClosed
	}
	s.growForIngest(ctx)
	var (
		results []store.WriteResult
		failed  []*store.RecordError
	)
	err := s.w.Raw(func(dc any) error {
		c := dconn{dc.(driver.Conn)}
		var err error
		results, failed, err = s.apply(ctx, c, records, false)
		var retry *retrySafe
		if errors.As(err, &retry) {
			results, failed, err = s.apply(ctx, c, records, true)
		}
		return err
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

// wroteResources reports whether any result wrote a resource version.
func wroteResources(results []store.WriteResult) bool {
	for _, r := range results {
		for _, rr := range r.Resources {
			if rr.Outcome != store.Unchanged {
				return true
			}
		}
	}
	return false
}

// failAfterWrite, when set (by tests), fails the write of a created
// resource after its rows are written, standing in for an I/O error.
var failAfterWrite func(typ, id string) error

// retrySafe asks Apply to rerun the batch with a savepoint per record.
type retrySafe struct{ err error }

func (e *retrySafe) Error() string { return e.err.Error() }

// apply runs one transaction over records; safe puts each record's writes in
// a SAVEPOINT.
func (s *Store) apply(ctx context.Context, c dconn, records []store.RecordWrite, safe bool) ([]store.WriteResult, []*store.RecordError, error) {
	// Statements run without the caller's context: a cancellable context costs
	// the driver a goroutine per statement. Cancellation is checked between
	// records instead.
	bg := context.WithoutCancel(ctx)
	now := s.clock.Now().UTC().Truncate(time.Millisecond)
	a := &applier{c: c, ws: s.ws, ctx: bg, now: now, ms: now.UnixMilli(), cache: s, newPIDs: map[paramKey]int64{}, cids: map[string]int64{}, safe: safe}
	if err := c.exec(bg, "BEGIN IMMEDIATE"); err != nil {
		return nil, nil, fmt.Errorf("store: sqlite: begin: %w", err)
	}
	rollback := func(err error) ([]store.WriteResult, []*store.RecordError, error) {
		_ = c.exec(bg, "ROLLBACK")
		return nil, nil, err
	}
	if _, err := a.ws.maxRID.queryRow(bg, nil, &a.lastRID); err != nil {
		return rollback(fmt.Errorf("store: sqlite: apply: %w", err))
	}
	if _, err := a.ws.maxHID.queryRow(bg, nil, &a.lastHID); err != nil {
		return rollback(fmt.Errorf("store: sqlite: apply: %w", err))
	}
	results := make([]store.WriteResult, len(records))
	var failed []*store.RecordError
	for i := range records {
		if err := ctx.Err(); err != nil {
			return rollback(err)
		}
		res, err := a.record(&records[i])
		if err != nil {
			var fatal *fatalError
			var retry *retrySafe
			switch {
			case errors.As(err, &retry):
				return rollback(err)
			case errors.As(err, &fatal):
				return rollback(fmt.Errorf("store: sqlite: apply: %w", fatal.err))
			}
			failed = append(failed, &store.RecordError{
				Index: i,
				Key:   store.RecordKey{Kind: records[i].Kind, ClinicID: records[i].ClinicID},
				Err:   err,
			})
			results[i] = store.WriteResult{Outcome: store.Failed}
			continue
		}
		results[i] = res
	}
	if err := a.flush(); err != nil {
		if !safe {
			return rollback(&retrySafe{err})
		}
		return rollback(fmt.Errorf("store: sqlite: apply: %w", err))
	}
	if wroteResources(results) {
		if err := c.exec(bg, "UPDATE changes SET seq = seq + 1 WHERE id = 1"); err != nil {
			return rollback(fmt.Errorf("store: sqlite: apply: count the change: %w", err))
		}
	}
	if err := c.exec(bg, "COMMIT"); err != nil {
		return rollback(fmt.Errorf("store: sqlite: commit: %w", err))
	}
	if len(a.newPIDs) > 0 {
		s.pmu.Lock()
		for k, v := range a.newPIDs {
			s.pids[k] = v
		}
		s.pmu.Unlock()
	}
	return results, failed, nil
}

// fatalError aborts the whole Apply (the transaction state is unknown).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

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
	cids    map[string]int64   // compartments interned in this transaction
	buf     rowBuf             // index and history rows awaiting a flush
}

// curRes is a resource's current row as the writer sees it.
type curRes struct {
	rid, version int64
	deleted      bool
	hash         []byte
	src          int64 // 0: none
	patient      string
}

func (a *applier) current(typ, id string) (curRes, bool, error) {
	var c curRes
	found, err := a.ws.getRes.queryRow(a.ctx, []any{typ, id}, &c.rid, &c.version, &c.deleted, &c.hash, &c.src, &c.patient)
	return c, found, err
}

// prepared is a resource checked and stamped as version 1 in memory.
type prepared struct {
	sum     [sha256.Size]byte
	stamped []byte
	pids    []int64
	cid     any // the compartment's cid (int64), nil when none
}

func (a *applier) record(rec *store.RecordWrite) (store.WriteResult, error) {
	if err := rec.Validate(); err != nil {
		return store.WriteResult{}, err
	}
	var (
		srid    int64
		oldHash string
		oldKeys string
	)
	existing, err := a.ws.getSource.queryRow(a.ctx, []any{rec.Kind, rec.ClinicID}, &srid, &oldHash, &oldKeys)
	if err != nil {
		return store.WriteResult{}, &fatalError{err}
	}
	if existing && oldHash == rec.Hash {
		return a.unchanged(rec)
	}
	preps := make([]prepared, len(rec.Resources))
	for i := range rec.Resources {
		if err := a.prepare(&rec.Resources[i], &preps[i]); err != nil {
			return store.WriteResult{}, err
		}
	}
	// Params and compartments are interned outside the record's savepoint
	// so that a rolled back record cannot leave the caches pointing at
	// nothing.
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		preps[i].pids = make([]int64, len(rw.Index))
		for j := range rw.Index {
			pid, err := a.pid(rw.Type, rw.Index[j].Param)
			if err != nil {
				return store.WriteResult{}, &fatalError{err}
			}
			preps[i].pids[j] = pid
		}
		if rw.Patient != "" {
			cid, err := a.cid(rw.Patient)
			if err != nil {
				return store.WriteResult{}, &fatalError{err}
			}
			preps[i].cid = cid
		}
	}
	if !a.safe {
		res, err := a.writeRecord(rec, existing, srid, oldKeys, preps)
		if err != nil {
			return store.WriteResult{}, &retrySafe{err}
		}
		return res, nil
	}
	if err := a.c.exec(a.ctx, "SAVEPOINT rec"); err != nil {
		return store.WriteResult{}, &fatalError{err}
	}
	res, err := a.writeRecord(rec, existing, srid, oldKeys, preps)
	if err == nil {
		err = a.flush() // the record's rows land inside its savepoint
	}
	if err != nil {
		a.buf.reset()
		if rerr := a.c.exec(a.ctx, "ROLLBACK TO rec"); rerr != nil {
			return store.WriteResult{}, &fatalError{rerr}
		}
		if rerr := a.c.exec(a.ctx, "RELEASE rec"); rerr != nil {
			return store.WriteResult{}, &fatalError{rerr}
		}
		return store.WriteResult{}, err
	}
	if err := a.c.exec(a.ctx, "RELEASE rec"); err != nil {
		return store.WriteResult{}, &fatalError{err}
	}
	return res, nil
}

// prepare checks rw's body and stamps it as version 1: every way a body can
// fail shows here, before the record writes anything.
func (a *applier) prepare(rw *store.ResourceWrite, p *prepared) error {
	// The body's id must be the key's id (StampMeta relies on the leading id).
	if len(rw.Body) < len(rw.ID)+8 || !bytes.HasPrefix(rw.Body, []byte(`{"id":"`)) ||
		string(rw.Body[7:7+len(rw.ID)]) != rw.ID || rw.Body[7+len(rw.ID)] != '"' {
		return fmt.Errorf("%s/%s: body does not start with the resource's id", rw.Type, rw.ID)
	}
	stamped, err := store.StampMeta(rw.Body, 1, a.now)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", rw.Type, rw.ID, err)
	}
	p.stamped = stamped
	p.sum = sha256.Sum256(rw.Body)
	return nil
}

// unchanged reports a record whose hash matched: nothing is written.
func (a *applier) unchanged(rec *store.RecordWrite) (store.WriteResult, error) {
	res := store.WriteResult{Outcome: store.Unchanged, Resources: make([]store.ResourceResult, 0, len(rec.Resources))}
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		c, _, err := a.current(rw.Type, rw.ID)
		if err != nil {
			return store.WriteResult{}, &fatalError{err}
		}
		res.Resources = append(res.Resources, store.ResourceResult{Type: rw.Type, ID: rw.ID, Version: c.version, Outcome: store.Unchanged})
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

func (a *applier) writeRecord(rec *store.RecordWrite, existing bool, srid int64, oldKeys string, preps []prepared) (store.WriteResult, error) {
	res := store.WriteResult{Outcome: store.Created, Resources: make([]store.ResourceResult, 0, len(rec.Resources))}
	var keys strings.Builder
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		if i > 0 {
			keys.WriteByte('\n')
		}
		keys.WriteString(rw.Type)
		keys.WriteByte('/')
		keys.WriteString(rw.ID)
	}
	if existing {
		res.Outcome = store.Updated
		if _, err := a.ws.updSource.exec(a.ctx, rec.Hash, nonNil(rec.Source), keys.String(), a.ms, srid); err != nil {
			return res, err
		}
	} else {
		if _, err := a.ws.insSource.queryRow(a.ctx, []any{rec.Kind, rec.ClinicID, rec.Hash, nonNil(rec.Source), keys.String(), a.ms}, &srid); err != nil {
			return res, err
		}
	}
	for i := range rec.Resources {
		rr, err := a.writeResource(&rec.Resources[i], srid, &preps[i])
		if err != nil {
			return res, err
		}
		res.Resources = append(res.Resources, rr)
	}
	if existing && oldKeys != "" {
		produced := make(map[string]struct{}, len(rec.Resources))
		for i := range rec.Resources {
			produced[rec.Resources[i].Type+"/"+rec.Resources[i].ID] = struct{}{}
		}
		for key := range strings.SplitSeq(oldKeys, "\n") {
			if _, ok := produced[key]; ok {
				continue
			}
			typ, id, ok := strings.Cut(key, "/")
			if !ok {
				continue
			}
			rr, done, err := a.deleteResource(typ, id, srid)
			if err != nil {
				return res, err
			}
			if done {
				res.Resources = append(res.Resources, rr)
			}
		}
	}
	return res, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (a *applier) writeResource(rw *store.ResourceWrite, srid int64, p *prepared) (store.ResourceResult, error) {
	rr := store.ResourceResult{Type: rw.Type, ID: rw.ID}
	patient := nullString(rw.Patient)
	rid, hid := a.lastRID+1, a.lastHID+1
	n, err := a.ws.insRes.exec(a.ctx, rid, rw.Type, rw.ID, hid, a.ms, patient, p.sum[:], srid)
	if err != nil {
		return rr, err
	}
	if n == 1 { // created
		a.lastRID, a.lastHID = rid, hid
		if err := a.bufferHistory(histRow{hid: hid, rid: rid, version: 1, patient: patient, body: p.stamped}); err != nil {
			return rr, err
		}
		if err := a.bufferIndex(rw, rid, p); err != nil {
			return rr, fmt.Errorf("%s/%s: %w", rw.Type, rw.ID, err)
		}
		if failAfterWrite != nil {
			if err := failAfterWrite(rw.Type, rw.ID); err != nil {
				return rr, err
			}
		}
		rr.Version, rr.Outcome = 1, store.Created
		return rr, nil
	}
	cur, found, err := a.current(rw.Type, rw.ID)
	if err != nil {
		return rr, err
	}
	if !found {
		return rr, fmt.Errorf("%s/%s: conflicting insert but no row", rw.Type, rw.ID)
	}
	if !cur.deleted && bytes.Equal(cur.hash, p.sum[:]) {
		if cur.src != srid {
			if _, err := a.ws.setSrc.exec(a.ctx, srid, cur.rid); err != nil {
				return rr, err
			}
		}
		rr.Version, rr.Outcome = cur.version, store.Unchanged
		return rr, nil
	}
	version := cur.version + 1
	body, err := store.StampMeta(rw.Body, version, a.now)
	if err != nil {
		return rr, fmt.Errorf("%s/%s: %w", rw.Type, rw.ID, err)
	}
	a.lastHID = hid
	if _, err := a.ws.updRes.exec(a.ctx, version, hid, a.ms, false, patient, p.sum[:], srid, cur.rid); err != nil {
		return rr, err
	}
	if err := a.deleteIndex(cur.rid); err != nil {
		return rr, err
	}
	if err := a.bufferHistory(histRow{hid: hid, rid: cur.rid, version: version, patient: patient, body: body}); err != nil {
		return rr, err
	}
	if err := a.bufferIndex(rw, cur.rid, p); err != nil {
		return rr, fmt.Errorf("%s/%s: %w", rw.Type, rw.ID, err)
	}
	rr.Version, rr.Outcome = version, store.Updated
	if cur.deleted {
		rr.Outcome = store.Created
	}
	return rr, nil
}

// deleteIndex deletes rid's index rows, flushing the buffer first (it may
// hold some of them).
func (a *applier) deleteIndex(rid int64) error {
	if err := a.flush(); err != nil {
		return err
	}
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		if _, err := a.ws.delIdx[k].exec(a.ctx, rid); err != nil {
			return err
		}
	}
	return nil
}

// deleteResource writes a deletion version of typ/id when it exists, is not
// deleted, and was last written by record srid (a resource another record
// now produces is left alone).
func (a *applier) deleteResource(typ, id string, srid int64) (store.ResourceResult, bool, error) {
	cur, found, err := a.current(typ, id)
	if err != nil || !found || cur.deleted || cur.src != srid {
		return store.ResourceResult{}, false, err
	}
	version := cur.version + 1
	hid := a.lastHID + 1
	a.lastHID = hid
	patient := nullString(cur.patient)
	if _, err := a.ws.updRes.exec(a.ctx, version, hid, a.ms, true, patient, nil, srid, cur.rid); err != nil {
		return store.ResourceResult{}, false, err
	}
	if err := a.bufferHistory(histRow{hid: hid, rid: cur.rid, version: version, deleted: true, patient: patient}); err != nil {
		return store.ResourceResult{}, false, err
	}
	if err := a.deleteIndex(cur.rid); err != nil {
		return store.ResourceResult{}, false, err
	}
	return store.ResourceResult{Type: typ, ID: id, Version: version, Outcome: store.Deleted}, true, nil
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
