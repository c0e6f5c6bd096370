package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
)

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

const (
	getSourceSQL = `SELECT srid, hash, resources FROM source_records WHERE kind = $1 AND clinic_id = $2`
	insSourceSQL = `INSERT INTO source_records (kind, clinic_id, hash, body, resources, updated) VALUES ($1, $2, $3, $4, $5, $6) RETURNING srid`
	updSourceSQL = `UPDATE source_records SET hash = $1, body = $2, resources = $3, updated = $4 WHERE srid = $5`
	updResSQL    = `UPDATE resources SET version = $1, last_updated = $2, deleted = $3, patient = $4, hash = $5, src = $6 WHERE rid = $7`
	setSrcSQL    = `UPDATE resources SET src = $1 WHERE rid = $2`
)

// Apply writes each record atomically within one transaction, so a failing
// record writes nothing of itself while the others land. A record whose Hash equals the stored one for its (Kind,
// ClinicID) is Unchanged and writes nothing. Otherwise each resource whose
// body (compared by a SHA-256 of the unstamped body) differs from its current
// version gets a new version stamped with store.StampMeta (Created when new
// or previously deleted, Updated otherwise), its index rows replaced;
// resources the record produced before but no longer produces (and that no
// other record took over since) get a deletion version (Deleted). Every
// version written by one call carries the same lastUpdated, clock.Now()
// truncated to milliseconds.
//
// Each record is first checked and its bodies stamped in memory; a record
// failing there writes nothing. Its writes then run; should one fail (an SQL
// error, not a property of the record's data), the transaction is rolled
// back and the batch rerun with a SAVEPOINT per record, so the failing record
// is rolled back alone and the others land.
//
// When some records fail, the others are committed, the failed ones have
// Outcome store.Failed, and the error is a *store.BatchError. Any other error
// means nothing was written.
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
	now := s.clock.Now().UTC().Truncate(time.Millisecond)
	var (
		results []store.WriteResult
		failed  []*store.RecordError
	)
	run := func(safe bool) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			results, failed = nil, nil
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.applyLock); err != nil {
				return err
			}
			a := &applier{tx: tx, ctx: ctx, now: now, ms: now.UnixMilli(), safe: safe}
			results = make([]store.WriteResult, len(records))
			for i := range records {
				if err := ctx.Err(); err != nil {
					return err
				}
				res, err := a.record(&records[i])
				if err != nil {
					var fatal *fatalError
					var retry *retrySafe
					switch {
					case errors.As(err, &retry):
						return err
					case errors.As(err, &fatal):
						return fatal.err
					}
					if cerr := ctx.Err(); cerr != nil {
						return cerr
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
			return nil
		})
	}
	err = run(false)
	var retry *retrySafe
	if errors.As(err, &retry) && ctx.Err() == nil {
		err = run(true)
	}
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

// retrySafe asks Apply to rerun the batch with a savepoint per record.
type retrySafe struct{ err error }

func (e *retrySafe) Error() string { return e.err.Error() }

// fatalError aborts the whole Apply (the transaction state is unknown).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

type applier struct {
	tx  pgx.Tx
	ctx context.Context
	now time.Time
	ms  int64
	// safe puts each record's writes in a savepoint; without it a failing
	// write aborts the transaction and Apply reruns the batch safely.
	safe bool
}

// curRes is a resource's current row.
type curRes struct {
	rid, version int64
	deleted      bool
	hash         []byte
	src          int64 // 0: none
	patient      string
}

// currentMany returns the current rows of the resources named by types[i],
// ids[i] that exist, in one query.
func (a *applier) currentMany(q pgx.Tx, types, ids []string) (map[store.Key]curRes, error) {
	out := make(map[store.Key]curRes, len(types))
	if len(types) == 0 {
		return out, nil
	}
	rows, err := q.Query(a.ctx, getResManySQL, types, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k store.Key
		var c curRes
		if err := rows.Scan(&k.Type, &k.ID, &c.rid, &c.version, &c.deleted, &c.hash, &c.src, &c.patient); err != nil {
			return nil, err
		}
		out[k] = c
	}
	return out, rows.Err()
}

// prepared is a resource checked and stamped as version 1 in memory.
type prepared struct {
	sum     [sha256.Size]byte
	stamped []byte
}

func (a *applier) record(rec *store.RecordWrite) (store.WriteResult, error) {
	if err := rec.Validate(); err != nil {
		return store.WriteResult{}, err
	}
	var (
		srid     int64
		oldHash  string
		oldKeys  string
		existing = true
	)
	err := a.tx.QueryRow(a.ctx, getSourceSQL, rec.Kind, rec.ClinicID).Scan(&srid, &oldHash, &oldKeys)
	if errors.Is(err, pgx.ErrNoRows) {
		existing = false
	} else if err != nil {
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
	if !a.safe {
		res, err := a.writeRecord(a.tx, rec, existing, srid, oldKeys, preps)
		if err != nil {
			return store.WriteResult{}, &retrySafe{err}
		}
		return res, nil
	}
	sp, err := a.tx.Begin(a.ctx) // SAVEPOINT
	if err != nil {
		return store.WriteResult{}, &fatalError{err}
	}
	res, err := a.writeRecord(sp, rec, existing, srid, oldKeys, preps)
	if err != nil {
		if rerr := sp.Rollback(a.ctx); rerr != nil {
			return store.WriteResult{}, &fatalError{rerr}
		}
		return store.WriteResult{}, err
	}
	if err := sp.Commit(a.ctx); err != nil { // RELEASE
		return store.WriteResult{}, &fatalError{err}
	}
	return res, nil
}

// prepare checks rw's body and stamps it as version 1: every way a body can
// fail shows here, before the record writes anything.
func (a *applier) prepare(rw *store.ResourceWrite, p *prepared) error {
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
	types, ids := make([]string, len(rec.Resources)), make([]string, len(rec.Resources))
	for i := range rec.Resources {
		types[i], ids[i] = rec.Resources[i].Type, rec.Resources[i].ID
	}
	current, err := a.currentMany(a.tx, types, ids)
	if err != nil {
		return store.WriteResult{}, &fatalError{err}
	}
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		c := current[store.Key{Type: rw.Type, ID: rw.ID}]
		res.Resources = append(res.Resources, store.ResourceResult{Type: rw.Type, ID: rw.ID, Version: c.version, Outcome: store.Unchanged})
	}
	return res, nil
}

// writeRecord writes rec inside savepoint sp in a fixed handful of round
// trips whatever its size: the source record; one INSERT creating every
// resource that does not exist yet (in record order, so insertion order is
// kept); one SELECT of the current rows of the others and of the resources
// the record no longer produces; then one pipelined batch of the updates,
// the index deletions, and one multi-row INSERT per table (history and each
// index table) from arrays. A record of 65 resources with 1,500 index rows
// is about ten statements, not 1,600.
func (a *applier) writeRecord(sp pgx.Tx, rec *store.RecordWrite, existing bool, srid int64, oldKeys string, preps []prepared) (store.WriteResult, error) {
	n := len(rec.Resources)
	produced := make(map[store.Key]int, n) // Validate: each resource once
	for i := range rec.Resources {
		produced[store.Key{Type: rec.Resources[i].Type, ID: rec.Resources[i].ID}] = i
	}
	res := store.WriteResult{Outcome: store.Created, Resources: make([]store.ResourceResult, 0, n)}
	var keys strings.Builder
	for i := range rec.Resources {
		if i > 0 {
			keys.WriteByte('\n')
		}
		keys.WriteString(rec.Resources[i].Type)
		keys.WriteByte('/')
		keys.WriteString(rec.Resources[i].ID)
	}
	if existing {
		res.Outcome = store.Updated
		if _, err := sp.Exec(a.ctx, updSourceSQL, rec.Hash, nonNil(rec.Source), keys.String(), a.ms, srid); err != nil {
			return res, err
		}
	} else if err := sp.QueryRow(a.ctx, insSourceSQL, rec.Kind, rec.ClinicID, rec.Hash, nonNil(rec.Source), keys.String(), a.ms).Scan(&srid); err != nil {
		return res, err
	}

	// 1. Create the new resources.
	types, ids, patients, hashes := make([]string, n), make([]string, n), make([]*string, n), make([][]byte, n)
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		types[i], ids[i], hashes[i] = rw.Type, rw.ID, preps[i].sum[:]
		if rw.Patient != "" {
			patients[i] = &rw.Patient
		}
	}
	created := make(map[store.Key]int64, n)
	rows, err := sp.Query(a.ctx, insResManySQL, types, ids, a.ms, patients, hashes, srid)
	if err != nil {
		return res, err
	}
	for rows.Next() {
		var k store.Key
		var rid int64
		if err := rows.Scan(&k.Type, &k.ID, &rid); err != nil {
			rows.Close()
			return res, err
		}
		created[k] = rid
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, err
	}

	// 2. The current rows of the others and of the dropped resources.
	var dropped []store.Key
	if existing && oldKeys != "" {
		for key := range strings.SplitSeq(oldKeys, "\n") {
			typ, id, ok := strings.Cut(key, "/")
			if !ok {
				continue
			}
			if _, ok := produced[store.Key{Type: typ, ID: id}]; !ok {
				dropped = append(dropped, store.Key{Type: typ, ID: id})
			}
		}
	}
	var lookT, lookI []string
	for i := range rec.Resources {
		k := store.Key{Type: rec.Resources[i].Type, ID: rec.Resources[i].ID}
		if _, ok := created[k]; !ok {
			lookT, lookI = append(lookT, k.Type), append(lookI, k.ID)
		}
	}
	for _, k := range dropped {
		lookT, lookI = append(lookT, k.Type), append(lookI, k.ID)
	}
	current, err := a.currentMany(sp, lookT, lookI)
	if err != nil {
		return res, err
	}

	// 3. Decide each resource; queue updates and index deletions first, the
	// multi-row inserts last.
	b := &pgx.Batch{}
	var hist histRows
	var idx indexRows
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		k := store.Key{Type: rw.Type, ID: rw.ID}
		rr := store.ResourceResult{Type: rw.Type, ID: rw.ID}
		patient := nullString(rw.Patient)
		if rid, ok := created[k]; ok {
			hist.add(rid, 1, a.ms, false, rw.Patient, preps[i].stamped)
			idx.add(rw, rid)
			rr.Version, rr.Outcome = 1, store.Created
			res.Resources = append(res.Resources, rr)
			continue
		}
		cur, found := current[k]
		if !found {
			return res, fmt.Errorf("%s/%s: conflicting insert but no row", rw.Type, rw.ID)
		}
		if !cur.deleted && bytes.Equal(cur.hash, preps[i].sum[:]) {
			if cur.src != srid {
				b.Queue(setSrcSQL, srid, cur.rid)
			}
			rr.Version, rr.Outcome = cur.version, store.Unchanged
			res.Resources = append(res.Resources, rr)
			continue
		}
		version := cur.version + 1
		body, err := store.StampMeta(rw.Body, version, a.now)
		if err != nil {
			return res, fmt.Errorf("%s/%s: %w", rw.Type, rw.ID, err)
		}
		b.Queue(updResSQL, version, a.ms, false, patient, preps[i].sum[:], srid, cur.rid)
		queueDeleteIndex(b, cur.rid)
		hist.add(cur.rid, version, a.ms, false, rw.Patient, body)
		idx.add(rw, cur.rid)
		rr.Version, rr.Outcome = version, store.Updated
		if cur.deleted {
			rr.Outcome = store.Created
		}
		res.Resources = append(res.Resources, rr)
	}
	for _, k := range dropped {
		// Only a resource this record last wrote is deleted; one another
		// record took over is left alone.
		cur, found := current[k]
		if !found || cur.deleted || cur.src != srid {
			continue
		}
		version := cur.version + 1
		b.Queue(updResSQL, version, a.ms, true, nullString(cur.patient), nil, srid, cur.rid)
		hist.add(cur.rid, version, a.ms, true, cur.patient, nil)
		queueDeleteIndex(b, cur.rid)
		res.Resources = append(res.Resources, store.ResourceResult{Type: k.Type, ID: k.ID, Version: version, Outcome: store.Deleted})
	}
	hist.queue(b)
	idx.queue(b)
	if b.Len() > 0 {
		if err := sp.SendBatch(a.ctx, b).Close(); err != nil {
			return res, err
		}
	}
	return res, nil
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
// each (duplicates of a row are kept once, as ON CONFLICT DO NOTHING).
type indexRows struct {
	tokP, tokCode, tokSys []string
	tokRID                []int64
	tokPatient            []*string // the resource's compartment, nil for none
	strP, strV            []string
	strRID                []int64
	dateP                 []string
	dateLo, dateHi        []int64
	dateRID               []int64
	refP, refT            []string
	refRID                []int64
	numP                  []string
	numN                  []float64
	numRID                []int64
	qtyP, qtySys, qtyCode []string
	qtyN                  []float64
	qtyRID                []int64
}

func (x *indexRows) add(rw *store.ResourceWrite, rid int64) {
	var patient *string
	if rw.Patient != "" {
		patient = &rw.Patient
	}
	for j := range rw.Index {
		row := &rw.Index[j]
		switch row.Kind {
		case store.KindToken:
			x.tokP, x.tokCode, x.tokSys, x.tokRID = append(x.tokP, row.Param), append(x.tokCode, row.Code), append(x.tokSys, row.System), append(x.tokRID, rid)
			x.tokPatient = append(x.tokPatient, patient)
		case store.KindString:
			x.strP, x.strV, x.strRID = append(x.strP, row.Param), append(x.strV, store.NormalizeString(row.Value)), append(x.strRID, rid)
		case store.KindDate:
			x.dateP, x.dateLo, x.dateHi, x.dateRID = append(x.dateP, row.Param), append(x.dateLo, row.Lo), append(x.dateHi, row.Hi), append(x.dateRID, rid)
		case store.KindReference:
			x.refP, x.refT, x.refRID = append(x.refP, row.Param), append(x.refT, row.Value), append(x.refRID, rid)
		case store.KindNumber:
			x.numP, x.numN, x.numRID = append(x.numP, row.Param), append(x.numN, row.Num), append(x.numRID, rid)
		case store.KindQuantity:
			x.qtyP, x.qtyN, x.qtySys, x.qtyCode, x.qtyRID = append(x.qtyP, row.Param), append(x.qtyN, row.Num), append(x.qtySys, row.System), append(x.qtyCode, row.Code), append(x.qtyRID, rid)
		}
	}
}

func (x *indexRows) queue(b *pgx.Batch) {
	if len(x.tokRID) > 0 {
		b.Queue(`INSERT INTO idx_token (param, code, system, rid, patient) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) ON CONFLICT DO NOTHING`,
			x.tokP, x.tokCode, x.tokSys, x.tokRID, x.tokPatient)
	}
	if len(x.strRID) > 0 {
		b.Queue(`INSERT INTO idx_string (param, value, rid) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING`,
			x.strP, x.strV, x.strRID)
	}
	if len(x.dateRID) > 0 {
		b.Queue(`INSERT INTO idx_date (param, lo, hi, rid) SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) ON CONFLICT DO NOTHING`,
			x.dateP, x.dateLo, x.dateHi, x.dateRID)
	}
	if len(x.refRID) > 0 {
		b.Queue(`INSERT INTO idx_ref (param, target, rid) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING`,
			x.refP, x.refT, x.refRID)
	}
	if len(x.numRID) > 0 {
		b.Queue(`INSERT INTO idx_number (param, num, rid) SELECT * FROM unnest($1::text[], $2::float8[], $3::bigint[]) ON CONFLICT DO NOTHING`,
			x.numP, x.numN, x.numRID)
	}
	if len(x.qtyRID) > 0 {
		b.Queue(`INSERT INTO idx_quantity (param, num, system, code, rid) SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::bigint[]) ON CONFLICT DO NOTHING`,
			x.qtyP, x.qtyN, x.qtySys, x.qtyCode, x.qtyRID)
	}
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

// queueDeleteIndex queues the deletion of rid's index rows.
func queueDeleteIndex(b *pgx.Batch, rid int64) {
	for k := store.KindToken; k <= store.KindQuantity; k++ {
		b.Queue(`DELETE FROM `+indexTables[k]+` WHERE rid = $1`, rid)
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
	// of what had been written before it.
	analyzeFraction = 0.2
	analyzeTimeout  = 10 * time.Minute
)

// analyzeMinRows is a variable so tests can lower it.
var analyzeMinRows int64 = 20_000

// noteWrites counts the resource versions a committed Apply wrote and starts
// a background ANALYZE when they are due.
func (s *Store) noteWrites(results []store.WriteResult) {
	n := int64(0)
	for _, r := range results {
		for _, rr := range r.Resources {
			if rr.Outcome != store.Unchanged {
				n++
			}
		}
	}
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

// Analyze refreshes the planner statistics of the store's tables now.
func (s *Store) Analyze(ctx context.Context) error {
	pool, err := s.db()
	if err != nil {
		return err
	}
	since := s.sinceAnalyze.Swap(0)
	if _, err := pool.Exec(ctx, `ANALYZE resources, history, idx_token, idx_string, idx_date, idx_ref, idx_number, idx_quantity`); err != nil {
		s.sinceAnalyze.Add(since) // still due
		return fmt.Errorf("store: postgres: analyze: %w", err)
	}
	s.analyzedAt.Add(since)
	return nil
}
