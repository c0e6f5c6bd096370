package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// The bulk path of Apply (docs/design/architecture.md, "The data flows":
// Ingest). A batch is cut into runs of records that share no record key and
// no resource key, and each run is written set-based in a fixed number of
// round trips whatever its size: one SELECT of the run's source rows, one of
// the current rows of every resource it names, one allocation each of the
// new rids and srids (nextval, in batch order: insertion order is kept),
// then COPY (the binary format, encoded here: copybin.go, PERF-PG-7) of the
// new source_records, resources, history and index rows, and one UPDATE or
// DELETE from arrays (unnest) per table for the rows that exist. New rows
// go straight into their tables: the rows they replace are locked (Apply),
// and a row another batch creates at the same time fails on its unique
// key, so there is nothing to merge and no staging table is needed;
// existing rows are merged from the arrays, which serve as the staging set
// without a temporary table's catalog writes. The index rows are written first, the rows that
// carry the time (source records, resources, history) last, under the
// apply lock and with the time taken under it (restamp).
//
// The decisions are sqlcore's, record by record in batch order, exactly as
// on the per-record path (sqlcore.Record); only the writing is batched.
// Records of one run are independent (disjoint keys), so deciding each
// against the state before the run gives what deciding them one after the
// other would; a later run sees the earlier runs' rows (same transaction).
// storetest.RunBatchApply holds this to the per-record answers.
//
// A record failing its checks (validation, preconditions, a body that
// cannot be stamped) fails alone and writes nothing, as before. A write
// failing in the database (a COPY refusing a row: an I/O or SQL error, not
// a property the checks see) aborts the attempt with a *sqlcore.Retry: the
// batch is rerun on the per-record path with a savepoint per record
// (Apply), which rolls the failing record back alone. A run the bulk path
// cannot decide without the per-record order (a record dropping a resource
// another record of the run names) is written on the per-record path, in
// the same transaction.

// bulkApply is one Apply attempt on the bulk path: its records' outcomes.
type bulkApply struct {
	a       *applier
	results []store.WriteResult
	failed  []*store.RecordError
}

// applyBulk writes records on the bulk path inside a's transaction.
func (a *applier) applyBulk(records []store.RecordWrite) ([]store.WriteResult, []*store.RecordError, error) {
	b := &bulkApply{a: a, results: make([]store.WriteResult, len(records))}
	for start := 0; start < len(records); {
		if err := a.ctx.Err(); err != nil {
			return nil, nil, err
		}
		end := runEnd(records, start)
		if err := b.run(records, start, end); err != nil {
			return nil, nil, err
		}
		start = end
	}
	return b.results, b.failed, nil
}

// runEnd is the end of the run of records starting at start: the records
// after it whose record key and resource keys (produced or expected) no
// earlier record of the run names.
func runEnd(records []store.RecordWrite, start int) int {
	recs := map[store.RecordKey]struct{}{}
	keys := map[store.Key]struct{}{}
	for i := start; i < len(records); i++ {
		rec := &records[i]
		rk := store.RecordKey{Kind: rec.Kind, ClinicID: rec.ClinicID}
		if _, dup := recs[rk]; dup && i > start {
			return i
		}
		if i > start {
			for j := range rec.Resources {
				if _, dup := keys[store.Key{Type: rec.Resources[j].Type, ID: rec.Resources[j].ID}]; dup {
					return i
				}
			}
			for _, e := range rec.Expect {
				if _, dup := keys[e.Key]; dup {
					return i
				}
			}
		}
		recs[rk] = struct{}{}
		for j := range rec.Resources {
			keys[store.Key{Type: rec.Resources[j].Type, ID: rec.Resources[j].ID}] = struct{}{}
		}
		for _, e := range rec.Expect {
			keys[e.Key] = struct{}{}
		}
	}
	return len(records)
}

// fail records that the i-th record failed on its own.
func (b *bulkApply) fail(records []store.RecordWrite, i int, err error) {
	b.results[i] = store.WriteResult{Outcome: store.Failed}
	b.failed = append(b.failed, &store.RecordError{
		Index: i,
		Key:   store.RecordKey{Kind: records[i].Kind, ClinicID: records[i].ClinicID},
		Err:   err,
	})
}

// perRecord writes records[start:end] on the per-record path (no savepoint:
// a failing write is a *sqlcore.Retry, as on the first attempt).
func (b *bulkApply) perRecord(records []store.RecordWrite, start, end int) error {
	for i := start; i < end; i++ {
		res, err := sqlcore.Record(b.a, &records[i], b.a.now, false)
		if err != nil {
			var fatal *sqlcore.Fatal
			var retry *sqlcore.Retry
			if errors.As(err, &retry) || errors.As(err, &fatal) {
				return err
			}
			if cerr := b.a.ctx.Err(); cerr != nil {
				return cerr
			}
			b.fail(records, i, err)
			continue
		}
		b.results[i] = res
	}
	return nil
}

// run writes records[start:end], a run of independent records.
func (b *bulkApply) run(records []store.RecordWrite, start, end int) error {
	a := b.a
	// 1. Checks that need no row: a failing record is left out.
	ok := make([]bool, end-start)
	var kinds, cids []string
	var at []int // the record of each source looked up
	for i := start; i < end; i++ {
		if err := records[i].Validate(); err != nil {
			b.fail(records, i, err)
			continue
		}
		ok[i-start] = true
		kinds, cids, at = append(kinds, records[i].Kind), append(cids, records[i].ClinicID), append(at, i)
	}
	// 2. The source rows, in one query.
	srcs := make([]sqlcore.Source, end-start)
	if len(at) > 0 {
		rows, err := a.tx.Query(a.ctx, getSourcesSQL, kinds, cids)
		if err != nil {
			return &sqlcore.Fatal{Err: err}
		}
		for rows.Next() {
			var n int
			src := sqlcore.Source{Found: true}
			if err := rows.Scan(&n, &src.ID, &src.Hash, &src.Keys); err != nil {
				rows.Close()
				return &sqlcore.Fatal{Err: err}
			}
			srcs[at[n-1]-start] = src
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return &sqlcore.Fatal{Err: err}
		}
	}
	// 3. Every key the run reads: produced, expected, dropped. A dropped
	// key another record of the run names, or a key twice in one record,
	// needs the per-record order.
	named := map[store.Key]int{} // key -> the record naming it
	var keyTypes, keyIDs []string
	dropped := make([][]store.Key, end-start)
	name := func(k store.Key, i int) bool {
		if j, seen := named[k]; seen {
			return j == i
		}
		named[k] = i
		keyTypes, keyIDs = append(keyTypes, k.Type), append(keyIDs, k.ID)
		return true
	}
	for i := start; i < end; i++ {
		if !ok[i-start] {
			continue
		}
		rec := &records[i]
		for _, e := range rec.Expect {
			name(e.Key, i)
		}
		// Validate refused a resource listed twice in one record.
		for j := range rec.Resources {
			name(store.Key{Type: rec.Resources[j].Type, ID: rec.Resources[j].ID}, i)
		}
	}
	for i := start; i < end; i++ {
		if !ok[i-start] {
			continue
		}
		src := srcs[i-start]
		if !src.Found || src.Hash == records[i].Hash {
			continue
		}
		dropped[i-start] = sqlcore.Dropped(&records[i], src)
		for _, k := range dropped[i-start] {
			if !name(k, i) {
				// The per-record path writes as it goes: with the
				// time, so under the apply lock.
				if err := a.commitTime(); err != nil {
					return &sqlcore.Fatal{Err: err}
				}
				return b.perRecord(records, start, end)
			}
		}
	}
	// 4. Their current rows, in one query.
	current, err := a.currentMany(keyTypes, keyIDs)
	if err != nil {
		return &sqlcore.Fatal{Err: err}
	}
	// 5. Preconditions, unchanged records, and the ids of what is new.
	var newRIDs, newSources int
	writes := make([]bool, end-start)
	for i := start; i < end; i++ {
		if !ok[i-start] {
			continue
		}
		rec := &records[i]
		if err := sqlcore.CheckExpect(rec, current); err != nil {
			b.fail(records, i, err)
			continue
		}
		src := srcs[i-start]
		if src.Found && src.Hash == rec.Hash {
			b.results[i] = sqlcore.UnchangedResult(rec, current)
			continue
		}
		writes[i-start] = true
		if !src.Found {
			newSources++
		}
		for j := range rec.Resources {
			if _, found := current[store.Key{Type: rec.Resources[j].Type, ID: rec.Resources[j].ID}]; !found {
				newRIDs++
			}
		}
	}
	rids, err := a.nextvals("resources_rid_seq", newRIDs)
	if err != nil {
		return &sqlcore.Fatal{Err: err}
	}
	srids, err := a.nextvals("source_records_srid_seq", newSources)
	if err != nil {
		return &sqlcore.Fatal{Err: err}
	}
	// 6. Each record's decisions, in batch order, into the run's rows.
	w := &bulkRows{ms: a.ms, sids: a.sids, pids: a.pids}
	for i := start; i < end; i++ {
		if !writes[i-start] {
			continue
		}
		rec := &records[i]
		src := srcs[i-start]
		srid := src.ID
		if !src.Found {
			srid, srids = srids[0], srids[1:]
		}
		res, used, err := w.record(rec, src, srid, dropped[i-start], current, rids, a)
		if err != nil {
			b.fail(records, i, err)
			continue
		}
		rids = rids[used:]
		b.results[i] = res
	}
	// 7. The run's writes: those that carry no time, then, under the apply
	// lock, those that do (Apply). A run with nothing to write (every
	// record unchanged or failed) does not take the lock.
	if w.empty() {
		return nil
	}
	if err := w.sendIndex(a); err != nil {
		return &sqlcore.Retry{Err: err}
	}
	if err := a.commitTime(); err != nil {
		return &sqlcore.Fatal{Err: err}
	}
	if err := w.restamp(a.now); err != nil {
		return &sqlcore.Retry{Err: err}
	}
	if err := w.sendRows(a); err != nil {
		return &sqlcore.Retry{Err: err}
	}
	return nil
}

// nextvals allocates n values of the sequence seq, in increasing order.
func (a *applier) nextvals(seq string, n int) ([]int64, error) {
	if n == 0 {
		return nil, nil
	}
	out := make([]int64, 0, n)
	rows, err := a.tx.Query(a.ctx, `SELECT nextval($1::regclass) FROM generate_series(1, $2) ORDER BY 1`, seq, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) != n {
		return nil, fmt.Errorf("nextval %s: %d values, want %d", seq, len(out), n)
	}
	return out, nil
}

// currentMany reads the current rows of the keys that exist.
func (a *applier) currentMany(types, ids []string) (map[store.Key]sqlcore.Current, error) {
	if len(types) == 0 {
		return map[store.Key]sqlcore.Current{}, nil
	}
	return currentRows(a.ctx, a.tx, types, ids)
}

// currentRows reads the current rows of the keys (types[i], ids[i]) that
// exist through q, in one query: the per-record path's Current and the
// set-based path's currentMany share it.
func currentRows(ctx context.Context, q pgx.Tx, types, ids []string) (map[store.Key]sqlcore.Current, error) {
	out := make(map[store.Key]sqlcore.Current, len(types))
	rows, err := q.Query(ctx, getResManySQL, types, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k store.Key
		var c sqlcore.Current
		if err := rows.Scan(&k.Type, &k.ID, &c.RID, &c.Version, &c.Deleted, &c.Hash, &c.Src, &c.Patient); err != nil {
			return nil, err
		}
		out[k] = c
	}
	return out, rows.Err()
}

// getSourcesSQL reads the source rows of the records named by kind and
// clinic id, with the (1-based) position of each in the arrays.
const getSourcesSQL = `SELECT k.n, s.srid, s.hash, s.resources
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(kind, clinic_id, n)
JOIN source_records s ON s.kind = k.kind AND s.clinic_id = k.clinic_id`

// bulkRows are the rows a run writes: COPY rows for what is new, arrays
// for the updates of what exists.
type bulkRows struct {
	ms int64
	// sids and pids are the batch's ids (applier.sids, applier.pids).
	sids, pids map[string]int32
	// New source_records rows, and updates of existing ones.
	newSrc [][]any
	updSrc struct {
		srid       []int64
		hash, keys []string
		body       [][]byte
	}
	// New resources rows (in rid order).
	newRes [][]any
	// Resources moved to another record (SetSource), and new versions of
	// existing resources (WriteVersion).
	setSrc struct{ rid, srid []int64 }
	updRes struct {
		rid, version, src []int64
		deleted           []bool
		patient           []*string
		hash              [][]byte
	}
	hist [][]any
	// stamp is, for each history row with a body, the resource and version
	// it stamps (restamp); nil for a deletion.
	stamp []stamped
	// idx are the index tables' COPY rows (the references' table is
	// encoded from refs once they are resolved); seen and seenMap the
	// current resource's index keys (addIndex).
	idx     [sqlcore.NumKinds]copyBuf
	refs    []refRow
	seen    []idxKey
	seenMap map[idxKey]struct{}
	// pairs are the current resource's patient and subject targets
	// (PERF-PG-8).
	pairs refPairs
	// pending are the current record's rows, kept apart until it is
	// decided whole (a record failing midway writes nothing).
	pending bulkPending
}

// bulkPending is what one record adds, committed to bulkRows once decided.
type bulkPending struct {
	setSrc  [][2]int64
	version []*sqlcore.Version
	created []created
}

// stamped is what a history row's body was stamped from.
type stamped struct {
	rw      *store.ResourceWrite
	version int64
}

type created struct {
	rw  *store.ResourceWrite
	rid int64
	p   *sqlcore.Prepared
}

// SetSource implements sqlcore.VersionWriter.
func (w *bulkRows) SetSource(rid, srid int64) error {
	w.pending.setSrc = append(w.pending.setSrc, [2]int64{rid, srid})
	return nil
}

// WriteVersion implements sqlcore.VersionWriter.
func (w *bulkRows) WriteVersion(v *sqlcore.Version) error {
	cp := *v
	w.pending.version = append(w.pending.version, &cp)
	return nil
}

// record decides rec (its source src, srid the record's srid, dropped the
// resources it no longer produces) against current: new resources take
// the next of rids (used says how many). Nothing of rec is kept when it
// fails.
func (w *bulkRows) record(rec *store.RecordWrite, src sqlcore.Source, srid int64, dropped []store.Key,
	current map[store.Key]sqlcore.Current, rids []int64, a *applier) (store.WriteResult, int, error) {
	w.pending = bulkPending{}
	preps, err := sqlcore.Prepare(rec, a.now)
	if err != nil {
		return store.WriteResult{}, 0, err
	}
	res, keys, body := sqlcore.SourceRow(rec, src)
	used := 0
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		cur, found := current[store.Key{Type: rw.Type, ID: rw.ID}]
		if !found {
			w.pending.created = append(w.pending.created, created{rw: rw, rid: rids[used], p: &preps[i]})
			used++
			res.Resources = append(res.Resources, store.ResourceResult{Type: rw.Type, ID: rw.ID, Version: 1, Outcome: store.Created})
			continue
		}
		rr, err := sqlcore.Update(w, rw, i, &preps[i], cur, srid, a.now)
		if err != nil {
			return store.WriteResult{}, 0, err
		}
		res.Resources = append(res.Resources, rr)
	}
	for _, k := range dropped {
		cur, found := current[k]
		rr, done, err := sqlcore.Delete(w, k, cur, found, srid)
		if err != nil {
			return store.WriteResult{}, 0, err
		}
		if done {
			res.Resources = append(res.Resources, rr)
		}
	}
	// Decided: keep its rows.
	if src.Found {
		w.updSrc.srid = append(w.updSrc.srid, srid)
		w.updSrc.hash = append(w.updSrc.hash, rec.Hash)
		w.updSrc.keys = append(w.updSrc.keys, keys)
		w.updSrc.body = append(w.updSrc.body, body)
	} else {
		w.newSrc = append(w.newSrc, []any{srid, rec.Kind, rec.ClinicID, rec.Hash, body, keys, w.ms})
	}
	for _, c := range w.pending.created {
		var patient any
		if c.rw.Patient != "" {
			patient = c.rw.Patient
		}
		w.newRes = append(w.newRes, []any{c.rid, c.rw.Type, c.rw.ID, int64(1), w.ms, false, patient, c.p.Sum[:], srid})
		w.hist = append(w.hist, []any{c.rid, int64(1), w.ms, false, patient, c.p.Stamped})
		w.stamp = append(w.stamp, stamped{c.rw, 1})
		w.addIndex(c.rw, c.rid)
	}
	for _, p := range w.pending.setSrc {
		w.setSrc.rid, w.setSrc.srid = append(w.setSrc.rid, p[0]), append(w.setSrc.srid, p[1])
	}
	for _, v := range w.pending.version {
		var patient *string
		var hpatient any
		if v.Patient != "" {
			p := v.Patient
			patient, hpatient = &p, p
		}
		w.updRes.rid, w.updRes.version, w.updRes.src = append(w.updRes.rid, v.RID), append(w.updRes.version, v.Version), append(w.updRes.src, v.Src)
		w.updRes.deleted, w.updRes.patient, w.updRes.hash = append(w.updRes.deleted, v.Deleted), append(w.updRes.patient, patient), append(w.updRes.hash, v.Hash)
		var body any
		if v.Body != nil {
			body = v.Body
		}
		w.hist = append(w.hist, []any{v.RID, v.Version, w.ms, v.Deleted, hpatient, body})
		w.stamp = append(w.stamp, stamped{v.Resource, v.Version})
		if v.Resource != nil {
			w.addIndex(v.Resource, v.RID)
		}
	}
	w.pending = bulkPending{}
	return res, used, nil
}

// idxKey identifies an index row within its resource: the table's primary
// key less the rid. COPY has no ON CONFLICT, so a resource's duplicate rows
// are kept once here, as the per-record path's ON CONFLICT DO NOTHING does.
type idxKey struct {
	kind        store.IndexKind
	param, a, b string
	n           uint64
	lo, hi      int64
}

// floatKey is f as PostgreSQL's double precision equality sees it: -0
// equals 0, and every NaN equals every other.
func floatKey(f float64) uint64 {
	switch {
	case f == 0:
		return 0
	case math.IsNaN(f):
		return math.Float64bits(math.NaN())
	}
	return math.Float64bits(f)
}

// refRow is a reference index row, kept apart until its target is resolved
// (resolveRefs, PERF-PG-6).
type refRow struct {
	pid    int32
	trid   int64
	target string
	rid    int64
}

// dedupLinear is the number of a resource's index rows up to which its
// duplicates are found by comparing each row with the rows before it; a
// resource with more uses a map (kept across resources).
const dedupLinear = 32

// dup reports whether the key k is among the resource's keys seen so far,
// and adds it if not.
func (w *bulkRows) dup(k idxKey, many bool) bool {
	if many {
		if _, dup := w.seenMap[k]; dup {
			return true
		}
		w.seenMap[k] = struct{}{}
		return false
	}
	for i := range w.seen {
		if w.seen[i] == k {
			return true
		}
	}
	w.seen = append(w.seen, k)
	return false
}

// addIndex adds the index rows of rw, stored as rid: encoded at once into
// their table's COPY rows (PERF-PG-7), the references kept for resolveRefs.
func (w *bulkRows) addIndex(rw *store.ResourceWrite, rid int64) {
	many := len(rw.Index) > dedupLinear
	if many {
		if w.seenMap == nil {
			w.seenMap = make(map[idxKey]struct{}, len(rw.Index))
		}
		clear(w.seenMap)
	}
	w.seen = w.seen[:0]
	check := len(rw.Index) > 1
	w.pairs.scan(rw.Index)
	for j := range rw.Index {
		row := &rw.Index[j]
		// A patient and a subject row with one target are stored as one
		// (PERF-PG-8).
		param := w.pairs.param(row)
		if param == "" {
			continue
		}
		k := idxKey{kind: row.Kind, param: param}
		var value string
		switch row.Kind {
		case store.KindToken:
			k.a, k.b = row.Code, row.System
		case store.KindString:
			value = store.NormalizeString(row.Value)
			k.a = value
		case store.KindDate:
			k.lo, k.hi = row.Lo, row.Hi
		case store.KindReference:
			k.a = row.Value
		case store.KindNumber:
			k.n = floatKey(row.Num)
		case store.KindQuantity:
			k.n, k.a, k.b = floatKey(row.Num), row.System, row.Code
		default:
			continue
		}
		if check && w.dup(k, many) {
			continue
		}
		pid := w.pids[param]
		c := &w.idx[row.Kind]
		switch row.Kind {
		case store.KindToken:
			c.row(5)
			c.int4(pid)
			c.text(row.Code)
			c.int4(w.sids[row.System])
			c.int8(rid)
			if rw.Patient != "" {
				c.text(rw.Patient)
			} else {
				c.null()
			}
		case store.KindString:
			c.row(3)
			c.int4(pid)
			c.text(value)
			c.int8(rid)
		case store.KindDate:
			c.row(4)
			c.int4(pid)
			c.int8(row.Lo)
			c.int8(row.Hi)
			c.int8(rid)
		case store.KindReference:
			// The target's rid is set by resolveRefs (PERF-PG-6).
			w.refs = append(w.refs, refRow{pid: pid, target: row.Value, rid: rid})
		case store.KindNumber:
			c.row(3)
			c.int4(pid)
			c.float8(row.Num)
			c.int8(rid)
		case store.KindQuantity:
			c.row(5)
			c.int4(pid)
			c.float8(row.Num)
			c.text(row.System)
			c.text(row.Code)
			c.int8(rid)
		}
	}
}

// idxColumns are the columns of each index table's COPY rows, in the order
// addIndex and sendIndex encode them.
var idxColumns = [sqlcore.NumKinds][]string{
	store.KindToken:     {"pid", "code", "sid", "rid", "patient"},
	store.KindString:    {"pid", "value", "rid"},
	store.KindDate:      {"pid", "lo", "hi", "rid"},
	store.KindReference: {"pid", "trid", "target", "rid"},
	store.KindNumber:    {"pid", "num", "rid"},
	store.KindQuantity:  {"pid", "num", "system", "code", "rid"},
}

// copyIndex are the index tables' COPY statements.
var copyIndex = func() (t [sqlcore.NumKinds]*copyTable) {
	types := [sqlcore.NumKinds][]colType{
		store.KindToken:     {colInt4, colText, colInt4, colInt8, colText},
		store.KindString:    {colInt4, colText, colInt8},
		store.KindDate:      {colInt4, colInt8, colInt8, colInt8},
		store.KindReference: {colInt4, colInt8, colText, colInt8},
		store.KindNumber:    {colInt4, colFloat8, colInt8},
		store.KindQuantity:  {colInt4, colFloat8, colText, colText, colInt8},
	}
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		t[k] = newCopyTable(sqlcore.IndexTables[k], idxColumns[k], types[k])
	}
	return t
}()

const (
	updSourcesSQL = `UPDATE source_records s SET hash = u.h, body = u.b, resources = u.k, updated = $5
FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[]) AS u(srid, h, b, k) WHERE s.srid = u.srid`
	setSourcesSQL  = `UPDATE resources r SET src = u.srid FROM unnest($1::bigint[], $2::bigint[]) AS u(rid, srid) WHERE r.rid = u.rid`
	updVersionsSQL = `UPDATE resources r SET version = u.v, last_updated = $7, deleted = u.d, patient = u.p, hash = u.h, src = u.s
FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::text[], $5::bytea[], $6::bigint[]) AS u(rid, v, d, p, h, s) WHERE r.rid = u.rid`
)

// empty reports whether the run writes nothing.
func (w *bulkRows) empty() bool {
	return len(w.newSrc) == 0 && len(w.updSrc.srid) == 0 && len(w.newRes) == 0 && len(w.setSrc.rid) == 0 &&
		len(w.updRes.rid) == 0 && len(w.hist) == 0
}

// restamp moves the run's rows to the time now when they were decided at
// another (a provisional time, Apply): the rows' lastUpdated, and the
// bodies stamped again from the resources written.
func (w *bulkRows) restamp(now time.Time) error {
	ms := now.UnixMilli()
	if ms == w.ms {
		return nil
	}
	// The bodies were stamped at w.ms (sqlcore.Prepare, sqlcore.Update:
	// store.StampMeta puts lastUpdated at the start of meta, just after
	// the id, in a fixed-width layout): the new time is written over the
	// old in place, and a body where it is not found is stamped again.
	was := append([]byte(`"lastUpdated":"`), time.UnixMilli(w.ms).UTC().Format(store.LastUpdatedFormat)...)
	is := now.UTC().AppendFormat(nil, store.LastUpdatedFormat)
	w.ms = ms
	for _, row := range w.newSrc {
		row[6] = ms
	}
	for _, row := range w.newRes {
		row[4] = ms
	}
	for i, row := range w.hist {
		row[2] = ms
		st := w.stamp[i]
		if st.rw == nil {
			continue
		}
		if body, ok := row[5].([]byte); ok && len(is) == len(was)-len(`"lastUpdated":"`) {
			if at := bytes.Index(body, was); at >= 0 {
				copy(body[at+len(`"lastUpdated":"`):], is)
				continue
			}
		}
		body, err := store.StampMeta(st.rw.Body, st.version, now)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", st.rw.Type, st.rw.ID, err)
		}
		row[5] = body
	}
	return nil
}

// copyRows copies rows into t's columns on a's transaction (PERF-PG-7).
// A row whose values are not of the columns' types fails the COPY (the
// server is told, and keeps none of the rows).
func copyRows(a *applier, t *copyTable, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	r := &rowsReader{t: t, rows: rows}
	tag, err := a.tx.Conn().PgConn().CopyFrom(a.ctx, r, t.sql)
	if err != nil {
		return fmt.Errorf("copy %s: %w", t.name, err)
	}
	if n := tag.RowsAffected(); n != int64(len(rows)) {
		return fmt.Errorf("copy %s: %d rows, want %d", t.name, n, len(rows))
	}
	return nil
}

// sendIndex writes the run's index rows: the deletion of those of the
// resources getting a new version, then the new ones. They carry no time
// and no reader sees them before commit, so they are written before the
// apply lock (Apply); the resources they belong to are locked or new.
func (w *bulkRows) sendIndex(a *applier) error {
	if len(w.updRes.rid) > 0 {
		var batch pgx.Batch
		for k := store.KindToken; k <= store.KindQuantity; k++ {
			batch.Queue(`DELETE FROM `+sqlcore.IndexTables[k]+` WHERE rid = ANY($1::bigint[])`, w.updRes.rid)
		}
		if err := a.tx.SendBatch(a.ctx, &batch).Close(); err != nil {
			return err
		}
	}
	if err := w.resolveRefs(a); err != nil {
		return err
	}
	refs := &w.idx[store.KindReference]
	for _, r := range w.refs {
		refs.row(4)
		refs.int4(r.pid)
		refs.int8(r.trid)
		refs.text(r.target)
		refs.int8(r.rid)
	}
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		if err := w.idx[k].send(a, copyIndex[k]); err != nil {
			return err
		}
	}
	return nil
}

// resolveRefs sets the trid of each of the run's reference rows whose
// target "Type/id" (sqlcore.RefKey) is a stored resource, and empties its
// target (docs/design/security.md PERF-PG-6): a resource the run creates
// (its rid is in newRes, which holds only the records decided whole, so no
// row names a rid that is not written with it), else one the transaction
// sees (one query for the run's other targets). A target found in neither
// keeps its text, which a search for it matches as well.
func (w *bulkRows) resolveRefs(a *applier) error {
	rows := w.refs
	if len(rows) == 0 {
		return nil
	}
	known := make(map[store.Key]int64, len(w.newRes))
	for _, r := range w.newRes {
		known[store.Key{Type: r[1].(string), ID: r[2].(string)}] = r[0].(int64)
	}
	var types, ids []string
	asked := map[store.Key]struct{}{}
	for _, r := range rows {
		typ, id, ok := sqlcore.RefKey(r.target)
		if !ok {
			continue
		}
		k := store.Key{Type: typ, ID: id}
		if _, found := known[k]; found {
			continue
		}
		if _, dup := asked[k]; dup {
			continue
		}
		asked[k] = struct{}{}
		types, ids = append(types, typ), append(ids, id)
	}
	if len(types) > 0 {
		res, err := a.tx.Query(a.ctx, `SELECT r.type, r.id, r.rid FROM unnest($1::text[], $2::text[]) AS k(t, i)
JOIN resources r ON r.type = k.t AND r.id = k.i`, types, ids)
		if err != nil {
			return fmt.Errorf("reference targets: %w", err)
		}
		for res.Next() {
			var k store.Key
			var rid int64
			if err := res.Scan(&k.Type, &k.ID, &rid); err != nil {
				res.Close()
				return fmt.Errorf("reference targets: %w", err)
			}
			known[k] = rid
		}
		res.Close()
		if err := res.Err(); err != nil {
			return fmt.Errorf("reference targets: %w", err)
		}
	}
	for i := range rows {
		if typ, id, ok := sqlcore.RefKey(rows[i].target); ok {
			if rid, found := known[store.Key{Type: typ, ID: id}]; found {
				rows[i].trid, rows[i].target = rid, ""
			}
		}
	}
	return nil
}

// sendRows writes the run's rows that carry the time, under the apply
// lock: the new source records and resources, the updates of existing
// rows, and history.
func (w *bulkRows) sendRows(a *applier) error {
	if err := copyRows(a, copySources, w.newSrc); err != nil {
		return err
	}
	if err := copyRows(a, copyResources, w.newRes); err != nil {
		return err
	}
	var batch pgx.Batch
	if len(w.updSrc.srid) > 0 {
		batch.Queue(updSourcesSQL, w.updSrc.srid, w.updSrc.hash, w.updSrc.body, w.updSrc.keys, w.ms)
	}
	if len(w.setSrc.rid) > 0 {
		batch.Queue(setSourcesSQL, w.setSrc.rid, w.setSrc.srid)
	}
	if len(w.updRes.rid) > 0 {
		batch.Queue(updVersionsSQL, w.updRes.rid, w.updRes.version, w.updRes.deleted, w.updRes.patient, w.updRes.hash, w.updRes.src, w.ms)
	}
	if batch.Len() > 0 {
		if err := a.tx.SendBatch(a.ctx, &batch).Close(); err != nil {
			return err
		}
	}
	return copyRows(a, copyHistory, w.hist)
}
