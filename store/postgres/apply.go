package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

var (
	getSourceSQL = sqlcore.Postgres.SQL(sqlcore.SourceSQL)
	insSourceSQL = sqlcore.Postgres.SQL(sqlcore.InsertSourceSQL)
	updSourceSQL = sqlcore.Postgres.SQL(sqlcore.UpdateSourceSQL)
	setSrcSQL    = sqlcore.Postgres.SQL(sqlcore.SetSourceSQL)
)

// latestSQL is the latest lastUpdated among the given types (0 when none),
// one index probe per type (resources_updated).
const latestSQL = `SELECT coalesce(max(m), 0) FROM unnest($1::text[]) AS t(typ),
LATERAL (SELECT last_updated AS m FROM resources WHERE type = t.typ ORDER BY last_updated DESC LIMIT 1) AS x`

const updResSQL = `UPDATE resources SET version = $1, last_updated = $2, deleted = $3, patient = $4, hash = $5, src = $6 WHERE rid = $7`

// Apply implements store.Store.Apply, whose doc states the semantics;
// sqlcore decides what each record writes. Each record is first checked and
// its bodies stamped in memory; a record failing there writes nothing. The
// batch is written set-based (bulk.go: COPY and array statements per run of
// independent records). Should a write then fail (an I/O or SQL error, not
// a property of the record's data), the transaction is rolled back and the
// batch rerun record by record with a SAVEPOINT each (sqlcore.Record), so
// the failing record is rolled back alone and the others land.
//
// Locks (docs/design/security.md PERF-PG-2). Replicas writing different
// patients' records write in parallel; what they serialize on is short:
//
//  1. Row locks, taken first, in one statement each and in key order (so
//     two batches never wait on each other in a cycle): the source rows
//     of the batch's records (by srid), then the current rows of every
//     resource a changed or new record produces, expects or may drop (its
//     stored source's resources; by rid). A batch writing the same
//     records or resources as another waits here for it to commit; one
//     creating a row another creates at the same time fails on the unique
//     key when it writes it, and is rerun (the rerun finds the row).
//  2. The writes no other reader sees before commit and that carry no
//     time: the old index rows deleted, the new ones copied (most of an
//     ingest's cost: the B-tree inserts of 4 to 5 index rows per
//     resource).
//  3. The schema's apply lock (applyLock), then the time: never behind
//     the latest lastUpdated already committed for the types written (and
//     so also across replicas whose clocks differ), then the rows that
//     carry it (source records, resources, history, with the bodies
//     stamped with it), then commit. The lock is held until commit, so
//     lastUpdated follows commit order within a type: the store.Store.Apply
//     guarantee _lastUpdated polls and _since exports rely on.
//
// Only a batch of one run (bulk.go runEnd) without preconditions takes the
// lock this late; the others (the per-record rerun, a batch writing a
// record twice, preconditions) take it after the row locks, before any
// write, as before.
func (s *Store) Apply(ctx context.Context, records []store.RecordWrite) ([]store.WriteResult, error) {
	if len(records) == 0 {
		return nil, nil
	}
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer s.busy.Begin()()
	types := sqlcore.WrittenTypes(records)
	late := lateLock(records)
	var (
		results []store.WriteResult
		failed  []*store.RecordError
	)
	sids, pids, err := s.internNames(ctx, pool, records)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("store: postgres: apply: %w", err)
	}
	err = sqlcore.WithRetry(ctx, func(safe bool) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			a := &applier{tx: tx, q: tx, ctx: ctx, s: s, types: types, late: !safe && late, sids: sids, pids: pids}
			if err := a.lockRows(records); err != nil {
				return err
			}
			if a.late {
				// The time stamped before the lock is provisional: the
				// rows that carry it are written after commitTime,
				// restamped (bulk.go).
				a.now = s.clock.Now().UTC().Truncate(time.Millisecond)
				a.ms = a.now.UnixMilli()
				var err error
				results, failed, err = a.applyBulk(records)
				return err
			}
			if err := a.commitTime(); err != nil {
				return err
			}
			var err error
			if !safe {
				// The set-based path (bulk.go); a failing write reruns
				// the batch below, a savepoint per record.
				results, failed, err = a.applyBulk(records)
				return err
			}
			results, failed, err = sqlcore.Records(ctx, records, func(rec *store.RecordWrite) (store.WriteResult, error) {
				return sqlcore.Record(a, rec, a.now, safe)
			})
			return err
		})
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("store: postgres: apply: %w", err)
	}
	s.noteWrites(results)
	if len(failed) > 0 {
		return results, &store.BatchError{Records: failed}
	}
	return results, nil
}

// lateLock reports whether a batch may take the apply lock only for its
// writes that carry the time (Apply): one run of independent records, none
// with a precondition.
func lateLock(records []store.RecordWrite) bool {
	for i := range records {
		if len(records[i].Expect) > 0 {
			return false
		}
	}
	return runEnd(records, 0) == len(records)
}

// commitHook, when set (by a test), runs once a late-locking batch has
// written its index rows, before it takes the apply lock.
var commitHook func()

// commitTime takes the schema's apply lock, held until the transaction
// ends, and the time of the batch's writes under it: the clock's, never
// behind the latest lastUpdated committed for the batch's types. Once per
// transaction.
func (a *applier) commitTime() error {
	if a.timed {
		return nil
	}
	if a.late && commitHook != nil {
		commitHook()
	}
	if _, err := a.tx.Exec(a.ctx, `SELECT pg_advisory_xact_lock($1)`, a.s.applyLock); err != nil {
		return err
	}
	var latest int64
	if err := a.tx.QueryRow(a.ctx, latestSQL, a.types).Scan(&latest); err != nil {
		return err
	}
	a.now = sqlcore.NotBefore(a.s.clock.Now().UTC().Truncate(time.Millisecond), latest)
	a.ms, a.timed = a.now.UnixMilli(), true
	return nil
}

const (
	// lockSourcesSQL locks the source rows of the records named, in srid
	// order, and reads which resources each produced.
	lockSourcesSQL = `SELECT k.n, s.hash, s.resources
FROM source_records s JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(kind, clinic_id, n)
ON s.kind = k.kind AND s.clinic_id = k.clinic_id ORDER BY s.srid FOR NO KEY UPDATE OF s`
	// lockResourcesSQL locks the current rows of the resources named, in
	// rid order.
	lockResourcesSQL = `SELECT r.rid FROM resources r JOIN unnest($1::text[], $2::text[]) AS k(t, i)
ON r.type = k.t AND r.id = k.i ORDER BY r.rid FOR NO KEY UPDATE OF r`
)

// lockRows locks the rows the batch may write (Apply, step 1): the source
// rows of its records, then the current rows of the resources its new and
// changed records produce, expect or produced before. A record stored with
// the same hash writes nothing, so only its source row is locked.
func (a *applier) lockRows(records []store.RecordWrite) error {
	kinds, cids := make([]string, len(records)), make([]string, len(records))
	for i := range records {
		kinds[i], cids[i] = records[i].Kind, records[i].ClinicID
	}
	rows, err := a.tx.Query(a.ctx, lockSourcesSQL, kinds, cids)
	if err != nil {
		return err
	}
	type stored struct{ hash, keys string }
	srcs := make(map[int]stored)
	for rows.Next() {
		var n int
		var st stored
		if err := rows.Scan(&n, &st.hash, &st.keys); err != nil {
			rows.Close()
			return err
		}
		srcs[n-1] = st
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	seen := map[store.Key]struct{}{}
	var types, ids []string
	add := func(k store.Key) {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			types, ids = append(types, k.Type), append(ids, k.ID)
		}
	}
	for i := range records {
		rec := &records[i]
		st, found := srcs[i]
		if found && st.hash == rec.Hash {
			continue
		}
		for j := range rec.Resources {
			add(store.Key{Type: rec.Resources[j].Type, ID: rec.Resources[j].ID})
		}
		for _, e := range rec.Expect {
			add(e.Key)
		}
		if found {
			for _, k := range sqlcore.Dropped(&store.RecordWrite{}, sqlcore.Source{Found: true, Keys: st.keys}) {
				add(k)
			}
		}
	}
	if len(types) > 0 {
		if _, err := a.tx.Exec(a.ctx, lockResourcesSQL, types, ids); err != nil {
			return err
		}
	}
	return nil
}

// applier writes the records of one Apply transaction
// (sqlcore.RecordWriter).
type applier struct {
	s  *Store
	tx pgx.Tx
	// q is where the current record's statements go: tx, or the record's
	// savepoint.
	q   pgx.Tx
	ctx context.Context
	// now is the time of the batch's writes (ms in Unix milliseconds):
	// provisional until commitTime when late.
	now time.Time
	ms  int64
	rb  recordBatch // the current record's
	// types are the types the batch writes (commitTime's latest).
	types []string
	// late: the batch takes the apply lock only for its writes that carry
	// the time; timed: it holds it and now is final.
	late, timed bool
	// sids and pids are the token systems' and the search parameters'
	// ids, every one the batch writes among them (internNames, before the
	// transaction).
	sids, pids map[string]int32
}

// Source implements sqlcore.RecordWriter.
func (a *applier) Source(rec *store.RecordWrite) (sqlcore.Source, error) {
	src := sqlcore.Source{Found: true}
	err := a.q.QueryRow(a.ctx, getSourceSQL, rec.Kind, rec.ClinicID).Scan(&src.ID, &src.Hash, &src.Keys)
	if errors.Is(err, pgx.ErrNoRows) {
		return sqlcore.Source{}, nil
	}
	return src, err
}

// Current implements sqlcore.RecordWriter: the current rows of the keys
// that exist, in one query.
func (a *applier) Current(keys []store.Key) (map[store.Key]sqlcore.Current, error) {
	out := make(map[store.Key]sqlcore.Current, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	types, ids := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		types[i], ids[i] = k.Type, k.ID
	}
	return currentRows(a.ctx, a.q, types, ids)
}

// Intern implements sqlcore.RecordWriter: index rows name their parameter
// and compartment, so there is nothing to intern.
func (a *applier) Intern(*store.RecordWrite) error { return nil }

// Savepoint implements sqlcore.RecordWriter.
func (a *applier) Savepoint(write func() (store.WriteResult, error)) (store.WriteResult, error) {
	sp, err := a.tx.Begin(a.ctx) // SAVEPOINT
	if err != nil {
		return store.WriteResult{}, &sqlcore.Fatal{Err: err}
	}
	a.q = sp
	defer func() { a.q = a.tx }()
	res, err := write()
	if err != nil {
		if rerr := sp.Rollback(a.ctx); rerr != nil {
			return store.WriteResult{}, &sqlcore.Fatal{Err: rerr}
		}
		return store.WriteResult{}, err
	}
	if err := sp.Commit(a.ctx); err != nil { // RELEASE
		return store.WriteResult{}, &sqlcore.Fatal{Err: err}
	}
	return res, nil
}

// Write implements sqlcore.RecordWriter. It writes rec in a fixed handful
// of round trips whatever its size: the source record; one INSERT creating
// every resource that does not exist yet (in record order, so insertion
// order is kept); one SELECT of the current rows of the others and of the
// resources the record no longer produces; then one pipelined batch of the
// updates, the index deletions, and one multi-row INSERT per table (history
// and each index table) from arrays. A record of 65 resources with 1,500
// index rows is about ten statements, not 1,600.
func (a *applier) Write(rec *store.RecordWrite, src sqlcore.Source, preps []sqlcore.Prepared) (store.WriteResult, error) {
	res, keys, body := sqlcore.SourceRow(rec, src)
	srid := src.ID
	if src.Found {
		if _, err := a.q.Exec(a.ctx, updSourceSQL, rec.Hash, body, keys, a.ms, srid); err != nil {
			return res, err
		}
	} else if err := a.q.QueryRow(a.ctx, insSourceSQL, rec.Kind, rec.ClinicID, rec.Hash, body, keys, a.ms).Scan(&srid); err != nil {
		return res, err
	}
	created, err := a.create(rec, preps, srid)
	if err != nil {
		return res, err
	}
	dropped := sqlcore.Dropped(rec, src)
	current, err := a.currentOf(rec, created, dropped)
	if err != nil {
		return res, err
	}
	// Decide each resource; the batch queues updates and index deletions
	// first, the multi-row inserts last.
	a.rb = recordBatch{ms: a.ms, idx: indexRows{sids: a.sids, pids: a.pids}}
	rb := &a.rb
	for i := range rec.Resources {
		rr, err := rb.resource(&rec.Resources[i], i, &preps[i], created[i], current, srid, a.now)
		if err != nil {
			return res, err
		}
		res.Resources = append(res.Resources, rr)
	}
	for _, k := range dropped {
		cur, found := current[k]
		rr, done, err := sqlcore.Delete(rb, k, cur, found, srid)
		if err != nil {
			return res, err
		}
		if done {
			res.Resources = append(res.Resources, rr)
		}
	}
	return res, rb.send(a.ctx, a.q)
}

// create inserts the resources of rec that do not exist yet, in one
// statement and in record order. created[i] is the rid of the i-th resource
// when this created it, else 0 (rids start at 1).
func (a *applier) create(rec *store.RecordWrite, preps []sqlcore.Prepared, srid int64) (created []int64, err error) {
	n := len(rec.Resources)
	types, ids, patients, hashes := make([]string, n), make([]string, n), make([]*string, n), make([][]byte, n)
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		types[i], ids[i], hashes[i] = rw.Type, rw.ID, preps[i].Sum[:]
		if rw.Patient != "" {
			patients[i] = &rw.Patient
		}
	}
	rows, err := a.q.Query(a.ctx, insResManySQL, types, ids, a.ms, patients, hashes, srid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	created = make([]int64, n)
	var k store.Key
	var rid int64
	at := 0 // the rows come in record order: look from the last match on
	for rows.Next() {
		if err := rows.Scan(&k.Type, &k.ID, &rid); err != nil {
			return nil, err
		}
		for j := range n {
			if i := (at + j) % n; types[i] == k.Type && ids[i] == k.ID {
				created[i], at = rid, i+1
				break
			}
		}
	}
	return created, rows.Err()
}

// currentOf reads, in one query, the current rows of rec's resources that
// existed before (those create did not create) and of the dropped ones.
func (a *applier) currentOf(rec *store.RecordWrite, created []int64, dropped []store.Key) (map[store.Key]sqlcore.Current, error) {
	var keys []store.Key
	for i := range rec.Resources {
		if created[i] == 0 {
			keys = append(keys, store.Key{Type: rec.Resources[i].Type, ID: rec.Resources[i].ID})
		}
	}
	return a.Current(append(keys, dropped...))
}

// recordBatch collects the writes of one record for one pipelined batch
// (sqlcore.VersionWriter): statements in the order they are queued, then
// one multi-row INSERT into history and into each index table.
type recordBatch struct {
	b    pgx.Batch
	hist histRows
	idx  indexRows
	ms   int64
}

// resource writes the record's i-th resource rw: one create made (rid is
// its rid) gets its first version's rows; an existing one (in current) is
// sqlcore.Update's to decide.
func (rb *recordBatch) resource(rw *store.ResourceWrite, i int, p *sqlcore.Prepared, rid int64,
	current map[store.Key]sqlcore.Current, srid int64, now time.Time) (store.ResourceResult, error) {
	if rid != 0 {
		rb.hist.add(rid, 1, rb.ms, false, rw.Patient, p.Stamped)
		rb.idx.add(rw, rid)
		return store.ResourceResult{Type: rw.Type, ID: rw.ID, Version: 1, Outcome: store.Created}, nil
	}
	cur, found := current[store.Key{Type: rw.Type, ID: rw.ID}]
	if !found {
		return store.ResourceResult{}, fmt.Errorf("%s/%s: conflicting insert but no row", rw.Type, rw.ID)
	}
	return sqlcore.Update(rb, rw, i, p, cur, srid, now)
}

// SetSource implements sqlcore.VersionWriter.
func (rb *recordBatch) SetSource(rid, srid int64) error {
	rb.b.Queue(setSrcSQL, srid, rid)
	return nil
}

// WriteVersion implements sqlcore.VersionWriter.
func (rb *recordBatch) WriteVersion(v *sqlcore.Version) error {
	rb.b.Queue(updResSQL, v.Version, rb.ms, v.Deleted, sqlcore.NullString(v.Patient), v.Hash, v.Src, v.RID)
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		rb.b.Queue(`DELETE FROM `+sqlcore.IndexTables[k]+` WHERE rid = $1`, v.RID)
	}
	rb.hist.add(v.RID, v.Version, rb.ms, v.Deleted, v.Patient, v.Body)
	if v.Resource != nil {
		rb.idx.add(v.Resource, v.RID)
	}
	return nil
}

// send sends the batch on q.
func (rb *recordBatch) send(ctx context.Context, q pgx.Tx) error {
	rb.hist.queue(&rb.b)
	rb.idx.queue(&rb.b)
	if rb.b.Len() == 0 {
		return nil
	}
	return q.SendBatch(ctx, &rb.b).Close()
}

const (
	// insResManySQL creates the resources of a record that do not exist, in
	// the order given (the insertion order searches page in), and returns
	// the created ones.
	insResManySQL = `INSERT INTO resources (type, id, version, last_updated, deleted, patient, hash, src)
SELECT u.t, u.i, 1, $3, false, u.p, u.h, $6
FROM unnest($1::text[], $2::text[], $4::text[], $5::bytea[]) WITH ORDINALITY AS u(t, i, p, h, n)
ORDER BY u.n
ON CONFLICT (type, id) DO NOTHING RETURNING type, id, rid`
	getResManySQL = `SELECT r.type, r.id, r.rid, r.version, r.deleted, r.hash, coalesce(r.src, 0), coalesce(r.patient, '')
FROM unnest($1::text[], $2::text[]) AS k(t, i) JOIN resources r ON r.type = k.t AND r.id = k.i`
	insHistManySQL = `INSERT INTO history (rid, version, last_updated, deleted, patient, body)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::boolean[], $5::text[], $6::bytea[])`
)

// histRows are history rows collected for one multi-row INSERT.
type histRows struct {
	rid, version, ms []int64
	deleted          []bool
	patient          []*string
	body             [][]byte
}

func (h *histRows) add(rid, version, ms int64, deleted bool, patient string, body []byte) {
	var p *string
	if patient != "" {
		p = &patient
	}
	h.rid, h.version, h.ms = append(h.rid, rid), append(h.version, version), append(h.ms, ms)
	h.deleted, h.patient, h.body = append(h.deleted, deleted), append(h.patient, p), append(h.body, body)
}

func (h *histRows) queue(b *pgx.Batch) {
	if len(h.rid) > 0 {
		b.Queue(insHistManySQL, h.rid, h.version, h.ms, h.deleted, h.patient, h.body)
	}
}

// indexRows are index rows collected per table for one multi-row INSERT
// each (duplicates of a row are kept once: SELECT DISTINCT, so also while a
// bulk load has dropped the primary keys, docs/design/security.md
// PERF-PG-3; ON CONFLICT DO NOTHING against the rows already stored).
type indexRows struct {
	// sids and pids are the batch's ids (applier.sids, applier.pids).
	sids, pids                      map[string]int32
	tokP, tokSys, strP, dateP, refP []int32
	numP, qtyP                      []int32
	tokCode                         []string
	tokRID                          []int64
	tokPatient                      []*string // the resource's compartment, nil for none
	strV                            []string
	strRID                          []int64
	dateLo, dateHi                  []int64
	dateRID                         []int64
	refT                            []string
	refType, refID                  []*string // sqlcore.RefKey of refT, nil for another form
	refRID                          []int64
	numN                            []float64
	numRID                          []int64
	qtySys, qtyCode                 []string
	qtyN                            []float64
	qtyRID                          []int64
	pairs                           refPairs // the resource's patient and subject targets (PERF-PG-8)
}

func (x *indexRows) add(rw *store.ResourceWrite, rid int64) {
	// Every token system of the batch is in sids (internSystems).
	var patient *string
	if rw.Patient != "" {
		patient = &rw.Patient
	}
	x.pairs.scan(rw.Index)
	for j := range rw.Index {
		row := &rw.Index[j]
		// A patient and a subject row with one target are stored as one
		// (PERF-PG-8).
		param := x.pairs.param(row)
		if param == "" {
			continue
		}
		pid := x.pids[param]
		switch row.Kind {
		case store.KindToken:
			x.tokP, x.tokCode, x.tokSys, x.tokRID = append(x.tokP, pid), append(x.tokCode, row.Code), append(x.tokSys, x.sids[row.System]), append(x.tokRID, rid)
			x.tokPatient = append(x.tokPatient, patient)
		case store.KindString:
			x.strP, x.strV, x.strRID = append(x.strP, pid), append(x.strV, store.NormalizeString(row.Value)), append(x.strRID, rid)
		case store.KindDate:
			x.dateP, x.dateLo, x.dateHi, x.dateRID = append(x.dateP, pid), append(x.dateLo, row.Lo), append(x.dateHi, row.Hi), append(x.dateRID, rid)
		case store.KindReference:
			var typ, id *string
			if t, i, ok := sqlcore.RefKey(row.Value); ok {
				typ, id = &t, &i
			}
			x.refP, x.refT, x.refRID = append(x.refP, pid), append(x.refT, row.Value), append(x.refRID, rid)
			x.refType, x.refID = append(x.refType, typ), append(x.refID, id)
		case store.KindNumber:
			x.numP, x.numN, x.numRID = append(x.numP, pid), append(x.numN, row.Num), append(x.numRID, rid)
		case store.KindQuantity:
			x.qtyP, x.qtyN, x.qtySys, x.qtyCode, x.qtyRID = append(x.qtyP, pid), append(x.qtyN, row.Num), append(x.qtySys, row.System), append(x.qtyCode, row.Code), append(x.qtyRID, rid)
		}
	}
}

func (x *indexRows) queue(b *pgx.Batch) {
	if len(x.tokRID) > 0 {
		b.Queue(`INSERT INTO idx_token (pid, code, sid, rid, patient) SELECT DISTINCT * FROM unnest($1::integer[], $2::text[], $3::integer[], $4::bigint[], $5::text[]) ON CONFLICT DO NOTHING`,
			x.tokP, x.tokCode, x.tokSys, x.tokRID, x.tokPatient)
	}
	if len(x.strRID) > 0 {
		b.Queue(`INSERT INTO idx_string (pid, value, rid) SELECT DISTINCT * FROM unnest($1::integer[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING`,
			x.strP, x.strV, x.strRID)
	}
	if len(x.dateRID) > 0 {
		b.Queue(`INSERT INTO idx_date (pid, lo, hi, rid) SELECT DISTINCT * FROM unnest($1::integer[], $2::bigint[], $3::bigint[], $4::bigint[]) ON CONFLICT DO NOTHING`,
			x.dateP, x.dateLo, x.dateHi, x.dateRID)
	}
	if len(x.refRID) > 0 {
		// A target "Type/id" the transaction sees stored is kept as its
		// rid, found in the statement (docs/design/security.md PERF-PG-6):
		// a record rolled back to its savepoint took its resources and
		// these rows with it.
		b.Queue(`INSERT INTO idx_ref (pid, trid, target, rid)
SELECT DISTINCT u.p, coalesce(t.rid, 0), CASE WHEN t.rid IS NULL THEN u.t ELSE '' END, u.rid
FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(p, t, ty, i, rid)
LEFT JOIN resources t ON t.type = u.ty AND t.id = u.i
ON CONFLICT DO NOTHING`,
			x.refP, x.refT, x.refType, x.refID, x.refRID)
	}
	if len(x.numRID) > 0 {
		b.Queue(`INSERT INTO idx_number (pid, num, rid) SELECT DISTINCT * FROM unnest($1::integer[], $2::float8[], $3::bigint[]) ON CONFLICT DO NOTHING`,
			x.numP, x.numN, x.numRID)
	}
	if len(x.qtyRID) > 0 {
		b.Queue(`INSERT INTO idx_quantity (pid, num, system, code, rid) SELECT DISTINCT * FROM unnest($1::integer[], $2::float8[], $3::text[], $4::text[], $5::bigint[]) ON CONFLICT DO NOTHING`,
			x.qtyP, x.qtyN, x.qtySys, x.qtyCode, x.qtyRID)
	}
}

// SourceRecords returns the stored source records for the keys that exist.
func (s *Store) SourceRecords(ctx context.Context, keys []store.RecordKey) (map[store.RecordKey][]byte, error) {
	out := make(map[store.RecordKey][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	kinds := make([]string, len(keys))
	ids := make([]string, len(keys))
	for i, k := range keys {
		kinds[i], ids[i] = k.Kind, k.ClinicID
	}
	rows, err := pool.Query(ctx, `SELECT s.kind, s.clinic_id, s.body
FROM unnest($1::text[], $2::text[]) AS k(kind, clinic_id)
JOIN source_records s ON s.kind = k.kind AND s.clinic_id = k.clinic_id`, kinds, ids)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: source records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k store.RecordKey
		var body []byte
		if err := rows.Scan(&k.Kind, &k.ClinicID, &body); err != nil {
			return nil, fmt.Errorf("store: postgres: source records: %w", err)
		}
		out[k] = body
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: postgres: source records: %w", err)
	}
	return out, nil
}

// Planner statistics. A bulk load (a clinic's history imported at once)
// leaves PostgreSQL's statistics describing a far smaller database until
// autovacuum gets to it; meanwhile the planner picks plans such as scanning
// every Observation for a code to find one patient's few (measured: 2 s
// instead of 2 ms per search at 170k resources). So the store refreshes them
// itself, in the background, after enough writes.
const (
	// analyzeMinRows and analyzeFraction: ANALYZE once this many resource
	// versions were written since the last one, and at least this fraction
	// of what had been written before it. At 1 the statistics are refreshed
	// each time the store doubles (at most 2x behind the data: plans are
	// chosen on the shape of the data, which a doubling does not change),
	// six times in a 1M-resource load instead of 21 at 0.2; each costs
	// about 0.15 s of a backend's CPU whatever the size (a sample of 30,000
	// rows per table), and at 0.2 they were 18% of PostgreSQL's CPU in a
	// 85k-resource ingest (docs/design/security.md PERF-PG-1).
	analyzeFraction = 1.0
	analyzeTimeout  = 10 * time.Minute
)

// analyzeMinRows is a variable so tests can lower it.
var analyzeMinRows int64 = 20_000

// noteWrites counts the resource versions a committed Apply wrote and starts
// a background ANALYZE when they are due.
func (s *Store) noteWrites(results []store.WriteResult) {
	n := int64(sqlcore.Written(results))
	if n == 0 {
		return
	}
	since := s.sinceAnalyze.Add(n)
	if since < analyzeMinRows || float64(since) < analyzeFraction*float64(s.analyzedAt.Load()) {
		return
	}
	if !s.analyzing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.analyzing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), analyzeTimeout)
		defer cancel()
		_ = s.Analyze(ctx) // best effort: autovacuum remains the backstop
	}()
}

// Analyze refreshes the planner statistics of the store's tables now, and
// vacuums resources, so that its visibility map lets a Bulk Data export
// walk the covering index without reading the table (migration 0013): a
// table written in bulk has no all-visible page until a vacuum, and
// autovacuum's insert threshold comes late on a large one. resources is
// the small table (no bodies), a fraction of the store
// (docs/design/security.md BULK-13).
func (s *Store) Analyze(ctx context.Context) error {
	pool, err := s.db()
	if err != nil {
		return err
	}
	since := s.sinceAnalyze.Swap(0)
	// VACUUM runs outside a transaction: a statement of its own.
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) resources`); err != nil {
		s.sinceAnalyze.Add(since) // still due
		return fmt.Errorf("store: postgres: vacuum: %w", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE history, idx_token, idx_string, idx_date, idx_ref, idx_number, idx_quantity`); err != nil {
		s.sinceAnalyze.Add(since) // still due
		return fmt.Errorf("store: postgres: analyze: %w", err)
	}
	s.analyzedAt.Add(since)
	return nil
}
