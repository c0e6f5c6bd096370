package sqlite

import (
	"database/sql/driver"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// Index and history rows are not inserted one statement per row: the writer
// buffers them and flushes them with multi-row INSERTs. A statement costs the
// pure-Go driver a mutex round, argument binding and cursor opening; a
// multi-row statement pays that once. (Sorting the rows into primary-key
// order before a flush was measured too: it cost more than it saved on
// databases up to 300k resources, so rows go in as buffered, in rid order.)
// The buffer is flushed before any statement that deletes rows it may hold
// (replacing a resource's index rows), at the end of each record when each
// record runs in its own savepoint, and before COMMIT; nothing reads the
// buffered tables during a write.

// maxIdxRowsPerInsert and maxHistRowsPerInsert bound the rows of one
// multi-row INSERT; a flush uses the
// largest power of two not above what is left, so at most log2 of it plus
// one statement shapes exist per table.
const (
	maxIdxRowsPerInsert  = 128
	maxHistRowsPerInsert = 32
)

// flushAt is the number of buffered rows that triggers a flush (a variable
// so tests can make flushes happen mid-record); 256Ki rows hold a whole
// chunk of the ingest pipeline (4,096 resources), so a chunk flushes once.
var flushAt = 1 << 18

// idxRow is a buffered index row.
type idxRow struct {
	pid, rid int64
	sid      int64  // token: the interned system (token_systems)
	trid     int64  // reference: the target's rid when it is stored (resolveRefs), else 0 and the text in a
	a, b     string // token: code; string: value; reference: target; quantity: system, code
	lo, hi   int64  // date
	num      float64
	cid      any // token: the resource's compartment (int64), or nil (none, or a _security row: securityParam)
}

// histRow is a buffered history row.
type histRow struct {
	hid, rid, version int64
	deleted           bool
	patient           any // string or nil
	body              []byte
}

// rowBuf holds the rows awaiting a flush, and the argument slice of the
// statements that flush them. One rowBuf serves the writer's Applies while
// records are ingested (Store.wbuf, docs/design/architecture.md
// PERF-SQLB-5): built per Apply, its slices grew from nothing to a chunk's
// 4,096 history and some 47,000 index rows every time, about 5 % of the
// writer's time in growing, copying and clearing them and in the collector.
type rowBuf struct {
	idx  [sqlcore.NumKinds][]idxRow
	hist []histRow
	n    int
	nv   []driver.NamedValue
	// created and looked are the applier's maps (applier.created,
	// applier.looked), kept with the rows for the same reason.
	created, looked map[store.Key]int64
}

// release drops what b references, keeping its slices' and maps' room.
func (b *rowBuf) release() {
	b.reset()
	clear(b.created)
	clear(b.looked)
	clear(b.nv)
}

// rowBuf returns the writer's row buffer, empty. The caller holds wsem.
func (s *Store) rowBuf() *rowBuf {
	if s.wbuf == nil {
		s.wbuf = &rowBuf{created: map[store.Key]int64{}, looked: map[store.Key]int64{}}
	}
	b := s.wbuf
	b.release()
	return b
}

func (b *rowBuf) reset() {
	for k := range b.idx {
		clear(b.idx[k]) // drop string references
		b.idx[k] = b.idx[k][:0]
	}
	clear(b.hist)
	b.hist = b.hist[:0]
	b.n = 0
}

// indexColumns lists each index table's columns in insert order.
var indexColumns = [sqlcore.NumKinds]string{
	store.KindToken:     "pid, code, sid, rid, cid",
	store.KindString:    "pid, value, rid",
	store.KindDate:      "pid, lo, hi, rid",
	store.KindReference: "pid, target, rid",
	store.KindNumber:    "pid, num, rid",
	store.KindQuantity:  "pid, num, system, code, rid",
}

// securityParam is the parameter of the security labels' token rows. They
// carry no compartment (cid NULL), so idx_token_comp, partial on cid, holds
// none of them (docs/design/architecture.md PERF-SQLB-2): nearly every
// resource has two (a confidentiality and a sensitivity label), and a
// search within a patient is never better driven by a label the patient's
// resources nearly all carry than by the patient's own rows, so pickDriver
// never drives _security through idx_token_comp.
const securityParam = "_security"

// multiKey names a multi-row statement: kind 0 is history; staged inserts
// into a bulk load's staging table (bulk.go).
type multiKey struct {
	kind   store.IndexKind
	rows   int
	staged bool
}

// multiInsert returns the prepared statement inserting rows rows into the
// table of kind (0: history), preparing it on first use.
func (a *applier) multiInsert(kind store.IndexKind, rows int) (*dstmt, error) {
	k := multiKey{kind, rows, a.staged}
	if st := a.ws.multi[k]; st != nil {
		return st, nil
	}
	var q strings.Builder
	var cols int
	if kind == 0 {
		q.WriteString("INSERT INTO history (hid, rid, version, last_updated, deleted, patient, body) VALUES ")
		cols = 7
	} else {
		q.WriteString("INSERT OR IGNORE INTO " + a.indexTable(kind) + " (" + indexColumns[kind] + ") VALUES ")
		cols = strings.Count(indexColumns[kind], ",") + 1
	}
	tuple := "(" + placeholders(cols) + ")"
	for i := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(tuple)
	}
	st, err := a.c.prepare(a.ctx, q.String())
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: prepare: %w", err)
	}
	if a.ws.multi == nil {
		a.ws.multi = map[multiKey]*dstmt{}
	}
	a.ws.multi[k] = st
	a.ws.all = append(a.ws.all, st)
	return st, nil
}

// bufferIndex buffers rw's index rows for resource rid.
func (a *applier) bufferIndex(rw *store.ResourceWrite, rid int64, ids *interned) error {
	for j := range rw.Index {
		row := &rw.Index[j]
		r := idxRow{pid: ids.pids[j], rid: rid}
		switch row.Kind {
		case store.KindToken:
			r.a, r.sid = row.Code, ids.sids[j]
			if row.Param != securityParam {
				r.cid = ids.cid
			}
		case store.KindString:
			r.a = store.NormalizeString(row.Value)
		case store.KindDate:
			r.lo, r.hi = row.Lo, row.Hi
		case store.KindReference:
			r.a = row.Value
		case store.KindNumber:
			r.num = row.Num
		case store.KindQuantity:
			r.num, r.a, r.b = row.Num, row.System, row.Code
		}
		a.buf.idx[row.Kind] = append(a.buf.idx[row.Kind], r)
	}
	a.buf.n += len(rw.Index)
	return a.maybeFlush()
}

// bufferHistory buffers a history row.
func (a *applier) bufferHistory(h histRow) error {
	a.buf.hist = append(a.buf.hist, h)
	a.buf.n++
	return a.maybeFlush()
}

func (a *applier) maybeFlush() error {
	if a.buf.n < flushAt {
		return nil
	}
	return a.flush()
}

// appendIdxArgs appends r's column values for kind, in indexColumns order.
func appendIdxArgs(nv []driver.NamedValue, kind store.IndexKind, r *idxRow) []driver.NamedValue {
	add := func(v driver.Value) { nv = append(nv, driver.NamedValue{Ordinal: len(nv) + 1, Value: v}) }
	add(r.pid)
	switch kind {
	case store.KindToken:
		add(r.a)
		add(r.sid)
	case store.KindString:
		add(r.a)
	case store.KindReference:
		if r.trid != 0 {
			add(r.trid)
		} else {
			add(r.a)
		}
	case store.KindDate:
		add(r.lo)
		add(r.hi)
	case store.KindNumber:
		add(r.num)
	case store.KindQuantity:
		add(r.num)
		add(r.a)
		add(r.b)
	}
	add(r.rid)
	if kind == store.KindToken {
		add(r.cid)
	}
	return nv
}

func (a *applier) appendHistArgs(nv []driver.NamedValue, h *histRow) []driver.NamedValue {
	var del int64
	if h.deleted {
		del = 1
	}
	var body driver.Value
	if h.body != nil {
		body = h.body
	}
	for _, v := range [...]driver.Value{h.hid, h.rid, h.version, a.ms, del, h.patient, body} {
		nv = append(nv, driver.NamedValue{Ordinal: len(nv) + 1, Value: v})
	}
	return nv
}

// flush writes every buffered row. On error the buffer is dropped: the
// caller rolls back what it covers.
func (a *applier) flush() error {
	if a.buf.n == 0 {
		return nil
	}
	defer a.buf.reset()
	// History first: index rows refer to resources only, but keeping the
	// order of the unbuffered writes costs nothing.
	if err := a.flushRows(0, len(a.buf.hist), maxHistRowsPerInsert, func(nv []driver.NamedValue, i int) []driver.NamedValue {
		return a.appendHistArgs(nv, &a.buf.hist[i])
	}); err != nil {
		return err
	}
	if err := a.resolveRefs(a.buf.idx[store.KindReference]); err != nil {
		return fmt.Errorf("index %s: %w", sqlcore.IndexTables[store.KindReference], err)
	}
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		rows := a.buf.idx[k]
		if len(rows) == 0 {
			continue
		}
		if err := a.flushRows(k, len(rows), maxIdxRowsPerInsert, func(nv []driver.NamedValue, i int) []driver.NamedValue {
			return appendIdxArgs(nv, k, &rows[i])
		}); err != nil {
			return fmt.Errorf("index %s: %w", sqlcore.IndexTables[k], err)
		}
	}
	return nil
}

// flushRows inserts n rows of kind (0: history) in statements of at most
// limit rows, args(nv, i) appending row i's values.
func (a *applier) flushRows(kind store.IndexKind, n, limit int, args func([]driver.NamedValue, int) []driver.NamedValue) error {
	for i := 0; i < n; {
		rows := limit
		for rows > n-i {
			rows /= 2
		}
		st, err := a.multiInsert(kind, rows)
		if err != nil {
			return err
		}
		nv := a.buf.nv[:0]
		for j := i; j < i+rows; j++ {
			nv = args(nv, j)
		}
		a.buf.nv = nv
		if _, err := st.ex.ExecContext(a.ctx, nv); err != nil {
			return err
		}
		i += rows
	}
	clear(a.buf.nv) // drop body references
	return nil
}

// resolveRefs sets the trid of each reference row whose target "Type/id"
// (sqlcore.RefKey) is a stored resource: the row is keyed by that rid
// instead of the text (docs/design/security.md PERF-SQLB-4). Rows are
// flushed when their record's resources are all written (the whole chunk
// at once, unless each record runs in its own savepoint), so a Provenance's
// target, written in the same chunk, is found, and its row lands at the
// end of the parameter's range (rids grow) instead of at a random UUID:
// idx_ref's primary key was a third of the pages an ingest wrote. A target
// not stored (yet) stays text; searches match both forms.
func (a *applier) resolveRefs(rows []idxRow) error {
	for i := range rows {
		r := &rows[i]
		typ, id, ok := sqlcore.RefKey(r.a)
		if !ok {
			continue
		}
		k := store.Key{Type: typ, ID: id}
		if rid, ok := a.created[k]; ok {
			r.trid = rid
			continue
		}
		rid, ok := a.looked[k]
		if !ok {
			found, err := a.ws.getRID.queryRow(a.ctx, []any{typ, id}, &rid)
			if err != nil {
				return err
			}
			if !found {
				rid = 0
			}
			// A miss is kept too: should a later record of this
			// transaction create the target, created has it first.
			a.looked[k] = rid
		}
		r.trid = rid
	}
	return nil
}
