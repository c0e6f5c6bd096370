package sqlcore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// What an Apply decides is the same on both backends (store.Store.Apply
// states it): which records are unchanged, which resources get a new
// version, which get a deletion version, how a failing record is rolled
// back alone. How the rows are written is each backend's own: SQLite writes
// a resource at a time on its writer connection and buffers index rows for
// multi-row INSERTs, PostgreSQL writes a record in a fixed handful of round
// trips from arrays.

// Statements on source_records and resources both schemas share (? style:
// Dialect.SQL).
const (
	SourceSQL       = `SELECT srid, hash, resources FROM source_records WHERE kind = ? AND clinic_id = ?`
	InsertSourceSQL = `INSERT INTO source_records (kind, clinic_id, hash, body, resources, updated) VALUES (?, ?, ?, ?, ?, ?) RETURNING srid`
	UpdateSourceSQL = `UPDATE source_records SET hash = ?, body = ?, resources = ?, updated = ? WHERE srid = ?`
	SetSourceSQL    = `UPDATE resources SET src = ? WHERE rid = ?`
)

// WrittenTypes are the resource types records write, each once, sorted.
func WrittenTypes(records []store.RecordWrite) []string {
	seen := map[string]bool{}
	var out []string
	for i := range records {
		for j := range records[i].Resources {
			if t := records[i].Resources[j].Type; !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	slices.Sort(out)
	return out
}

// NotBefore returns now, or latest (Unix ms) when now is earlier: the
// lastUpdated of an Apply never goes back behind a version of its types
// already committed, whatever the clock of the replica writing says
// (store.Store.Apply). The backends take latest inside the write lock.
func NotBefore(now time.Time, latest int64) time.Time {
	if latest > now.UnixMilli() {
		return time.UnixMilli(latest).UTC()
	}
	return now
}

// Retry asks Apply to rerun its batch with a savepoint per record: a write
// failed, and without a savepoint it cannot be rolled back alone.
type Retry struct{ Err error }

func (e *Retry) Error() string { return e.Err.Error() }

// Fatal aborts the whole Apply: the transaction's state is unknown.
type Fatal struct{ Err error }

func (e *Fatal) Error() string { return e.Err.Error() }

func (e *Fatal) Unwrap() error { return e.Err }

// WithRetry runs attempt without savepoints and, when a write failed
// (*Retry), once more with a savepoint per record (unless ctx has ended).
func WithRetry(ctx context.Context, attempt func(safe bool) error) error {
	err := attempt(false)
	var retry *Retry
	if errors.As(err, &retry) {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		err = attempt(true)
	}
	return err
}

// Records runs record on each of records in order, inside one transaction
// attempt. A record failing on its own (bad data, or a write rolled back to
// its savepoint) gets Outcome store.Failed and a RecordError in failed, and
// the others go on. A *Retry or *Fatal error, or the end of ctx, stops the
// attempt: err is then that error and nothing must be committed.
func Records(ctx context.Context, records []store.RecordWrite, record func(*store.RecordWrite) (store.WriteResult, error)) (results []store.WriteResult, failed []*store.RecordError, err error) {
	results = make([]store.WriteResult, len(records))
	for i := range records {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		res, err := record(&records[i])
		if err != nil {
			var fatal *Fatal
			var retry *Retry
			if errors.As(err, &retry) || errors.As(err, &fatal) {
				return nil, nil, err
			}
			if cerr := ctx.Err(); cerr != nil {
				return nil, nil, cerr
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
	return results, failed, nil
}

// Written counts the resource versions results wrote.
func Written(results []store.WriteResult) int {
	n := 0
	for _, r := range results {
		for _, rr := range r.Resources {
			if rr.Outcome != store.Unchanged {
				n++
			}
		}
	}
	return n
}

// Source is a record's stored source row.
type Source struct {
	Found bool
	ID    int64  // srid
	Hash  string // the record's hash when it was stored
	Keys  string // the "Type/id" keys of the resources it produced, one a line
}

// Current is a resource's current row.
type Current struct {
	RID, Version int64
	Deleted      bool
	Hash         []byte // SHA-256 of the unstamped body; nil when deleted
	Src          int64  // the srid of the record that last wrote it; 0: none
	Patient      string
}

// Prepared is a resource checked and stamped as version 1 in memory.
type Prepared struct {
	Sum     [sha256.Size]byte // of the unstamped body
	Stamped []byte
}

// RecordWriter is a backend's writes of one record inside an Apply
// transaction.
type RecordWriter interface {
	// Source reads rec's stored source row.
	Source(rec *store.RecordWrite) (Source, error)
	// Current reads the current rows of the keys that exist.
	Current(keys []store.Key) (map[store.Key]Current, error)
	// Intern runs once rec is prepared, before its writes and outside its
	// savepoint (SQLite interns parameter and compartment ids there).
	Intern(rec *store.RecordWrite) error
	// Write writes rec, produced before as src (when src.Found).
	Write(rec *store.RecordWrite, src Source, preps []Prepared) (store.WriteResult, error)
	// Savepoint runs write inside a savepoint, rolled back when write
	// fails; write's error is returned as is, a failing savepoint
	// statement as a *Fatal.
	Savepoint(write func() (store.WriteResult, error)) (store.WriteResult, error)
}

// Record writes rec through w, with lastUpdated now: a record whose hash
// is stored is unchanged and writes nothing; one that fails its checks or
// its stamping writes nothing either. When safe, its writes run in a
// savepoint so that a failing one rolls back alone; otherwise a failing
// write is a *Retry.
func Record(w RecordWriter, rec *store.RecordWrite, now time.Time, safe bool) (store.WriteResult, error) {
	if err := rec.Validate(); err != nil {
		return store.WriteResult{}, err
	}
	if err := expect(w, rec); err != nil {
		return store.WriteResult{}, err
	}
	src, err := w.Source(rec)
	if err != nil {
		return store.WriteResult{}, &Fatal{err}
	}
	if src.Found && src.Hash == rec.Hash {
		return unchanged(w, rec)
	}
	preps, err := Prepare(rec, now)
	if err != nil {
		return store.WriteResult{}, err
	}
	if err := w.Intern(rec); err != nil {
		return store.WriteResult{}, &Fatal{err}
	}
	if !safe {
		res, err := w.Write(rec, src, preps)
		if err != nil {
			return store.WriteResult{}, &Retry{err}
		}
		return res, nil
	}
	return w.Savepoint(func() (store.WriteResult, error) { return w.Write(rec, src, preps) })
}

// expect checks rec.Expect against the current rows, inside the
// transaction (both backends hold their write lock by now, so no other
// write can come between the check and the record's writes): the first
// that fails is a *store.PreconditionError, a record failure.
func expect(w RecordWriter, rec *store.RecordWrite) error {
	if len(rec.Expect) == 0 {
		return nil
	}
	keys := make([]store.Key, len(rec.Expect))
	for i, e := range rec.Expect {
		keys[i] = e.Key
	}
	current, err := w.Current(keys)
	if err != nil {
		return &Fatal{err}
	}
	return CheckExpect(rec, current)
}

// unchanged reports a record whose hash matched: nothing is written.
func unchanged(w RecordWriter, rec *store.RecordWrite) (store.WriteResult, error) {
	keys := make([]store.Key, len(rec.Resources))
	for i := range rec.Resources {
		keys[i] = store.Key{Type: rec.Resources[i].Type, ID: rec.Resources[i].ID}
	}
	current, err := w.Current(keys)
	if err != nil {
		return store.WriteResult{}, &Fatal{err}
	}
	return UnchangedResult(rec, current), nil
}

// prepare checks rw's body and stamps it as version 1: every way a body can
// fail shows here, before the record writes anything.
func prepare(rw *store.ResourceWrite, p *Prepared, now time.Time) error {
	// The body's id must be the key's id (StampMeta relies on the leading id).
	if len(rw.Body) < len(rw.ID)+8 || !bytes.HasPrefix(rw.Body, []byte(`{"id":"`)) ||
		string(rw.Body[7:7+len(rw.ID)]) != rw.ID || rw.Body[7+len(rw.ID)] != '"' {
		return fmt.Errorf("%s/%s: body does not start with the resource's id", rw.Type, rw.ID)
	}
	stamped, err := store.StampMeta(rw.Body, 1, now)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", rw.Type, rw.ID, err)
	}
	p.Stamped = stamped
	p.Sum = sha256.Sum256(rw.Body)
	return nil
}

// SourceRow is what a backend writes to source_records for rec: its
// outcome (Created, or Updated when src was found), the keys of the
// resources it produces, and its body (never NULL).
func SourceRow(rec *store.RecordWrite, src Source) (store.WriteResult, string, []byte) {
	res := store.WriteResult{Outcome: store.Created, Resources: make([]store.ResourceResult, 0, len(rec.Resources))}
	if src.Found {
		res.Outcome = store.Updated
	}
	var keys strings.Builder
	for i := range rec.Resources {
		if i > 0 {
			keys.WriteByte('\n')
		}
		keys.WriteString(rec.Resources[i].Type)
		keys.WriteByte('/')
		keys.WriteString(rec.Resources[i].ID)
	}
	body := rec.Source
	if body == nil {
		body = []byte{}
	}
	return res, keys.String(), body
}

// Dropped are the resources rec's source produced before (src) and rec no
// longer produces, in the order they were produced.
func Dropped(rec *store.RecordWrite, src Source) []store.Key {
	if !src.Found || src.Keys == "" {
		return nil
	}
	produced := make(map[store.Key]struct{}, len(rec.Resources))
	for i := range rec.Resources {
		produced[store.Key{Type: rec.Resources[i].Type, ID: rec.Resources[i].ID}] = struct{}{}
	}
	var out []store.Key
	for key := range strings.SplitSeq(src.Keys, "\n") {
		typ, id, ok := strings.Cut(key, "/")
		if !ok {
			continue
		}
		if _, ok := produced[store.Key{Type: typ, ID: id}]; !ok {
			out = append(out, store.Key{Type: typ, ID: id})
		}
	}
	return out
}

// Version is a new version of an existing resource that Update or Delete
// decided to write: its resources row replaced, its index rows deleted, a
// history row added and, unless it is a deletion, the new index rows.
type Version struct {
	RID, Version int64
	Src          int64 // the record writing it
	Deleted      bool
	Patient      string
	Hash         []byte // of the unstamped body; nil for a deletion
	Body         []byte // stamped; nil for a deletion
	// Resource is what is written (nil for a deletion), Index its position
	// in its record.
	Resource *store.ResourceWrite
	Index    int
}

// VersionWriter writes what Update and Delete decide.
type VersionWriter interface {
	// SetSource records that record srid now produces resource rid.
	SetSource(rid, srid int64) error
	WriteVersion(v *Version) error
}

// Update writes rw (the record's i-th resource, prepared as p) over its
// current row cur for record srid: a CreateOnly resource that exists is
// left alone; an unchanged body only moves the resource to the record; a
// changed one, or a deleted resource, gets the
// next version stamped with now (Updated; Created when it was deleted).
func Update(w VersionWriter, rw *store.ResourceWrite, i int, p *Prepared, cur Current, srid int64, now time.Time) (store.ResourceResult, error) {
	rr := store.ResourceResult{Type: rw.Type, ID: rw.ID}
	if !cur.Deleted && rw.CreateOnly {
		// Left as whoever wrote it last made it (store.ResourceWrite).
		rr.Version, rr.Outcome = cur.Version, store.Unchanged
		return rr, nil
	}
	if !cur.Deleted && bytes.Equal(cur.Hash, p.Sum[:]) {
		if cur.Src != srid {
			if err := w.SetSource(cur.RID, srid); err != nil {
				return rr, err
			}
		}
		rr.Version, rr.Outcome = cur.Version, store.Unchanged
		return rr, nil
	}
	version := cur.Version + 1
	body, err := store.StampMeta(rw.Body, version, now)
	if err != nil {
		return rr, fmt.Errorf("%s/%s: %w", rw.Type, rw.ID, err)
	}
	v := Version{RID: cur.RID, Version: version, Src: srid, Patient: rw.Patient, Hash: p.Sum[:], Body: body, Resource: rw, Index: i}
	if err := w.WriteVersion(&v); err != nil {
		return rr, err
	}
	rr.Version, rr.Outcome = version, store.Updated
	if cur.Deleted {
		rr.Outcome = store.Created
	}
	return rr, nil
}

// Delete writes a deletion version of k, which record srid no longer
// produces, when it exists (found, at cur), is not deleted and was last
// written by srid: a resource another record took over is left alone. done
// reports whether it wrote one.
func Delete(w VersionWriter, k store.Key, cur Current, found bool, srid int64) (rr store.ResourceResult, done bool, err error) {
	if !found || cur.Deleted || cur.Src != srid {
		return store.ResourceResult{}, false, nil
	}
	v := Version{RID: cur.RID, Version: cur.Version + 1, Src: srid, Deleted: true, Patient: cur.Patient}
	if err := w.WriteVersion(&v); err != nil {
		return store.ResourceResult{}, false, err
	}
	return store.ResourceResult{Type: k.Type, ID: k.ID, Version: v.Version, Outcome: store.Deleted}, true, nil
}
