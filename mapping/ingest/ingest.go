// Package ingest is the boundary where clinic records enter KetaBridge: it
// decodes, validates and reference-checks a batch of clinic records, maps the
// good ones to FHIR R4, indexes them for search and hands them to the store.
//
// A bad record gets precise errors (field path and message, never values) and
// writes nothing; good records in the same batch still land. Every record is
// written atomically with everything mapped from it (Writer.Apply).
//
// The package knows the store only through Writer, the interface it declares;
// it imports no web framework and no database driver.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/store"
)

// Indexer extracts the search index rows of a mapped resource (fhir/search.Extract).
type Indexer func(resource any) ([]store.IndexRow, error)

// Record outcomes reported in Result.Outcome.
const (
	OutcomeCreated   = "created"
	OutcomeUpdated   = "updated"
	OutcomeUnchanged = "unchanged"
	OutcomeRejected  = "rejected"
)

// DefaultChunk is the most records written per store.Apply call.
const DefaultChunk = 500

// DefaultChunkResources is the most resources written per store.Apply call
// (a record is never split: a chunk holds at least one record). A chunk's
// writes are held in memory from its mapping until the store has written
// them, while the next chunk is mapped, so this bound, not the record
// count, bounds the ingest's memory: a clinic record maps to one resource or
// to a hundred (a session's observations). At about 4 KB per mapped
// resource (body, stamped copy, index rows), the two chunks in flight hold
// some 35 MB (docs/design/security.md PERF-IN-1).
const DefaultChunkResources = 4096

// Writer is the storage the ingest pipeline uses, declared here by its
// consumer and no larger than it needs: the write side of store.Store. Every
// backend and the read cache (which invalidates what changed) implement it.
type Writer interface {
	// Apply writes each record atomically and reports per-record outcomes.
	Apply(ctx context.Context, records []store.RecordWrite) ([]store.WriteResult, error)
	// SourceRecords returns the stored source records for the keys that
	// exist (references are checked against them).
	SourceRecords(ctx context.Context, keys []store.RecordKey) (map[store.RecordKey][]byte, error)
}

var _ Writer = store.Store(nil)

// Service ingests clinic records. It is safe for concurrent use; concurrent
// batches that touch the same records are serialised by the store.
type Service struct {
	st     Writer
	mapper *mapping.Mapper
	index  Indexer
	clock  store.Clock
	chunk  int
	// chunkResources bounds a chunk's resources (DefaultChunkResources).
	chunkResources int
}

// New returns a Service writing to st. clock supplies the recorded time handed
// to the mapper (one instant per batch).
func New(st Writer, m *mapping.Mapper, index Indexer, clock store.Clock) *Service {
	if clock == nil {
		clock = store.SystemClock{}
	}
	return &Service{st: st, mapper: m, index: index, clock: clock, chunk: DefaultChunk, chunkResources: DefaultChunkResources}
}

// SetChunk sets how many records go into one store write (default
// DefaultChunk); n < 1 restores the default. Call it before use.
func (s *Service) SetChunk(n int) {
	if n < 1 {
		n = DefaultChunk
	}
	s.chunk = n
}

// SetChunkResources sets the most resources one store write holds (default
// DefaultChunkResources; a record is never split); n < 1 restores the
// default. Call it before use.
func (s *Service) SetChunkResources(n int) {
	if n < 1 {
		n = DefaultChunkResources
	}
	s.chunkResources = n
}

// Result is the outcome of one record of a batch.
type Result struct {
	// Index is the record's position in the batch (0-based).
	Index int
	// Line is the record's 1-based line in an NDJSON batch (0 otherwise).
	Line int
	// Kind and ID are the record's kind and clinic id, when they could be read.
	Kind, ID string
	// Outcome is created, updated, unchanged or rejected.
	Outcome string
	// Errors say why a record was rejected: field paths and messages, no values.
	Errors []clinic.FieldError
	// Resources is the number of FHIR resources the record maps to (0 when
	// rejected).
	Resources int
}

// Summary counts a batch's outcomes.
type Summary struct {
	Created, Updated, Unchanged, Rejected int
	// Resources is the number of FHIR resources mapped from the records that
	// landed (created, updated or unchanged).
	Resources int
}

// Progress is told, after each store write, how many records of the batch
// have been handled (written or rejected) and how many resources written.
// It is called from the goroutine that writes, never concurrently.
type Progress func(records, resources int)

// Ingest decodes, validates, checks references, maps, indexes and writes a
// batch. See IngestProgress.
func (s *Service) Ingest(ctx context.Context, raw []json.RawMessage) ([]Result, Summary, error) {
	return s.IngestProgress(ctx, raw, nil)
}

// IngestProgress is Ingest with a progress callback (nil for none).
//
// References are checked against the batch (a record may reference one
// earlier or later in the batch) and against the store's source records,
// loaded in bulk. A record that references a rejected record of the same
// batch is rejected too. A rejected record writes nothing; the others land.
//
// The returned error is only for infrastructure failures (store unreachable,
// context cancelled). The records of chunks written before the failure are
// stored and their results are returned with Outcome set; the records not
// written have an empty Outcome. Re-sending the batch is safe: what landed
// comes back unchanged.
func (s *Service) IngestProgress(ctx context.Context, raw []json.RawMessage, progress Progress) ([]Result, Summary, error) {
	return s.IngestBatch(ctx, BatchOf(raw), progress)
}

// IngestBatch is IngestProgress on a batch as ReadNDJSON, ReadJSONArray (or
// BatchOf) made it: the records refused while reading are rejected with
// their errors, like a record that does not decode, and each result carries
// the record's line when the batch has lines.
func (s *Service) IngestBatch(ctx context.Context, batch *Batch, progress Progress) ([]Result, Summary, error) {
	raw := batch.Records
	b := &batchRun{s: s, raw: raw, refused: batch.Refused, results: make([]Result, len(raw)), items: make([]item, len(raw)),
		stored: batch.Stored}
	if batch.Lines != nil {
		for i := range b.results {
			b.results[i].Line = batch.Lines[i]
		}
	}

	// 1. Decode and validate every record; index the good ones by key.
	b.decode()
	if err := ctx.Err(); err != nil {
		return b.results, Summary{}, err
	}

	// 2. Load the referenced records that are not in the batch, in one call.
	if err := s.loadStored(ctx, b.items, b.res); err != nil {
		return b.results, Summary{}, err
	}

	// 3. Check references in dependency order (a kind only references kinds
	// before it, clinic.Kinds), so a rejection propagates to the records that
	// reference the rejected one, wherever they stand in the batch.
	b.order = dependencyOrder(b.items)
	b.checkRefs()

	// 4. Map, index and write chunk by chunk: the next chunk is prepared while
	// the store writes the previous one.
	werr, prepErr := b.write(ctx, progress)

	sum := summarize(b.results)
	if werr != nil {
		return b.results, sum, fmt.Errorf("ingest: write: %w", werr)
	}
	if prepErr != nil {
		return b.results, sum, fmt.Errorf("ingest: %w", prepErr)
	}
	return b.results, sum, nil
}

// batchRun is the working state of one IngestProgress call.
type batchRun struct {
	s       *Service
	raw     []json.RawMessage
	refused map[int][]clinic.FieldError
	// stored, when set, is told the results of each chunk once it is
	// committed (Batch.Stored).
	stored  func([]Result)
	results []Result
	items   []item
	res     *resolver
	order   []int // batch indexes in dependency order
	// written counts the resources of the records stored so far; only the
	// goroutine that stores touches it until the batch is done.
	written int
}

// chunk is one store write: the batch indexes of its records and their
// writes.
type chunk struct {
	idx       []int
	writes    []store.RecordWrite
	resources int // of writes
	upto      int // records of the batch handled once this chunk is written
}

// decode decodes and validates every record, indexes the good ones by key,
// and builds the resolver. Records rejected here shadow their key: a
// reference to them is an error that says so, even when an older version is
// stored.
func (b *batchRun) decode() {
	batch := make(map[clinic.Key]int, len(b.raw)) // key -> index of the last good record
	for i, data := range b.raw {
		b.results[i].Index = i
		if errs, ok := b.refused[i]; ok {
			b.s.reject(&b.results[i], errs)
			continue
		}
		rec, errs := decode(data)
		if rec != nil {
			b.results[i].Kind, b.results[i].ID = string(rec.RecordKind()), rec.RecordID()
		} else {
			b.results[i].Kind, b.results[i].ID = peekHeader(data)
		}
		if len(errs) == 0 {
			errs = clinic.Validate(rec)
		}
		if len(errs) > 0 {
			b.s.reject(&b.results[i], errs)
			continue
		}
		b.items[i] = item{rec: rec, ok: true}
		batch[clinic.Key{Kind: rec.RecordKind(), ID: rec.RecordID()}] = i
	}
	b.res = &resolver{items: b.items, batch: batch, stored: map[clinic.Key]clinic.Record{}, rejected: map[clinic.Key]bool{}}
	for i := range b.results {
		r := &b.results[i]
		if r.Outcome != OutcomeRejected || r.Kind == "" || r.ID == "" {
			continue
		}
		if k := (clinic.Key{Kind: clinic.Kind(r.Kind), ID: r.ID}); !hasKey(batch, k) {
			b.res.rejected[k] = true
		}
	}
}

// checkRefs rejects, in dependency order, the good records whose references
// do not resolve.
func (b *batchRun) checkRefs() {
	for _, i := range b.order {
		it := &b.items[i]
		if !it.ok {
			continue
		}
		b.res.rejectedHits = b.res.rejectedHits[:0]
		if errs := clinic.CheckRefs(it.rec, b.res); len(errs) > 0 {
			if len(b.res.rejectedHits) > 0 {
				errs = explainRejectedRefs(b.raw[i], errs, b.res.rejectedHits)
			}
			b.reject(i, errs)
		}
	}
}

// reject rejects the good record i and drops it from the resolver, so the
// records referencing it are rejected too.
func (b *batchRun) reject(i int, errs []clinic.FieldError) {
	b.items[i].ok = false
	b.s.reject(&b.results[i], errs)
	b.res.drop(i, b.items[i].rec)
}

// write maps and indexes the good records chunk by chunk, in dependency
// order, while a goroutine writes the previous chunk. It returns the write
// error and the preparation error (a context or mapping infrastructure
// failure); either stops the batch.
func (b *batchRun) write(ctx context.Context, progress Progress) (werr, prepErr error) {
	// Unbuffered: a mapped chunk waits in the preparing goroutine until the
	// store takes it, so two chunks are in memory (the one written, the next
	// one mapped), not three; mapping a chunk takes a fraction of writing it,
	// so the store never waits for it (PERF-IN-1).
	chunks := make(chan chunk)
	done := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { done <- b.store(wctx, cancel, chunks, progress) }()
	prepErr = b.prepare(wctx, chunks)
	close(chunks)
	werr = <-done
	if progress != nil && werr == nil && prepErr == nil {
		progress(len(b.order), b.written)
	}
	return werr, prepErr
}

// prepare maps the good records in dependency order and sends them to
// chunks, at most s.chunk records and, unless one record maps to more,
// s.chunkResources resources at a time.
func (b *batchRun) prepare(ctx context.Context, chunks chan<- chunk) error {
	recorded := b.s.clock.Now()
	cur := chunk{}
	for n, i := range b.order {
		if err := ctx.Err(); err != nil {
			return err
		}
		it := &b.items[i]
		if !it.ok {
			continue
		}
		w, errs, err := b.s.prepare(it.rec, recorded, b.res)
		if err != nil {
			return err
		}
		if len(errs) > 0 {
			// Mapping failed: reject, and reject the later records that
			// reference this one (they come later in dependency order).
			b.reject(i, errs)
			continue
		}
		if bad := b.res.rejectedRef(it.rec); len(bad) > 0 {
			b.reject(i, refErrors(b.raw[i], bad))
			continue
		}
		if len(cur.idx) > 0 && cur.resources+len(w.Resources) > b.s.chunkResources {
			cur.upto = n
			chunks <- cur
			cur = chunk{}
		}
		cur.idx = append(cur.idx, i)
		cur.writes = append(cur.writes, w)
		cur.resources += len(w.Resources)
		if len(cur.idx) >= b.s.chunk {
			cur.upto = n + 1
			chunks <- cur
			cur = chunk{}
		}
	}
	if len(cur.idx) > 0 {
		cur.upto = len(b.order)
		chunks <- cur
	}
	return nil
}

// store writes the chunks it receives until chunks is closed. After a
// failure it cancels the preparation and drains the rest; it returns the
// failure.
func (b *batchRun) store(ctx context.Context, cancel func(), chunks <-chan chunk, progress Progress) error {
	var err error
	for c := range chunks {
		if err != nil {
			continue // drain
		}
		recorded, cerr := b.storeChunk(ctx, c)
		if cerr != nil {
			err = cerr
			cancel()
			if !recorded {
				continue
			}
		}
		if b.stored != nil {
			out := make([]Result, len(c.idx))
			for k, i := range c.idx {
				out[k] = b.results[i]
			}
			b.stored(out)
		}
		if progress != nil {
			progress(c.upto, b.written)
		}
	}
	return err
}

// storeChunk writes one chunk and records its records' outcomes. A
// *store.BatchError names records the store refused while it wrote the
// others: those are rejected, the batch goes on. A *store.StaleCacheError
// is a chunk written whose read-cache invalidation failed: its outcomes are
// recorded (recorded is true, they are what was written) and the error is
// returned, so the batch stops there and its answer counts the chunk as
// stored (docs/design/security.md IN-6).
func (b *batchRun) storeChunk(ctx context.Context, c chunk) (recorded bool, err error) {
	wr, err := b.s.st.Apply(ctx, c.writes)
	failed := map[int]error{}
	var be *store.BatchError
	var stale *store.StaleCacheError
	written := err == nil || errors.As(err, &stale)
	if errors.As(err, &be) {
		for _, re := range be.Records {
			failed[re.Index] = re.Err
		}
		if stale == nil {
			err = nil
		}
		written = true
	}
	if written && len(wr) != len(c.writes) {
		return false, fmt.Errorf("store returned %d results for %d records", len(wr), len(c.writes))
	}
	if !written {
		return false, err
	}
	for k, i := range c.idx {
		if ferr, bad := failed[k]; bad || wr[k].Outcome == store.Failed {
			msg := "could not be stored"
			if ferr != nil {
				msg += ": " + ferr.Error()
			}
			b.s.reject(&b.results[i], []clinic.FieldError{{Message: msg}})
			continue
		}
		b.results[i].Outcome = string(wr[k].Outcome)
		b.results[i].Resources = len(c.writes[k].Resources)
		b.written += b.results[i].Resources
	}
	if stale != nil {
		return true, stale
	}
	return true, nil
}

// summarize counts a batch's outcomes.
func summarize(results []Result) Summary {
	var sum Summary
	for i := range results {
		switch results[i].Outcome {
		case OutcomeCreated:
			sum.Created++
		case OutcomeUpdated:
			sum.Updated++
		case OutcomeUnchanged:
			sum.Unchanged++
		case OutcomeRejected:
			sum.Rejected++
		}
		if results[i].Outcome != OutcomeRejected {
			sum.Resources += results[i].Resources
		}
	}
	return sum
}

// item is the working state of one record.
type item struct {
	rec clinic.Record
	ok  bool // decoded, valid and not rejected so far
}

func (s *Service) reject(r *Result, errs []clinic.FieldError) {
	r.Outcome = OutcomeRejected
	r.Errors = errs
	r.Resources = 0
}

// decode wraps clinic.Decode and guards against a record returned with no
// errors but nil.
func decode(data []byte) (clinic.Record, []clinic.FieldError) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, []clinic.FieldError{{Path: "", Message: "a record must be a JSON object"}}
	}
	rec, errs := clinic.Decode(data)
	if len(errs) == 0 && rec == nil {
		errs = []clinic.FieldError{{Path: "", Message: "record could not be decoded"}}
	}
	if len(errs) > 0 {
		return rec, errs
	}
	return rec, nil
}

// peekHeader reads kind and id from a record that did not decode, for the
// result; it tolerates anything.
func peekHeader(data []byte) (kind, id string) {
	var h struct {
		Kind json.RawMessage `json:"kind"`
		ID   json.RawMessage `json:"id"`
	}
	if json.Unmarshal(data, &h) != nil {
		return "", ""
	}
	var k, i string
	if json.Unmarshal(h.Kind, &k) == nil && len(k) <= 64 {
		kind = k
	}
	if json.Unmarshal(h.ID, &i) == nil && len(i) <= 128 {
		id = i
	}
	return kind, id
}

// dependencyOrder returns the batch indexes sorted by clinic.Kinds order,
// stable within a kind; records of unknown kinds (rejected) go last.
func dependencyOrder(items []item) []int {
	rank := make(map[clinic.Kind]int, len(clinic.Kinds))
	for i, k := range clinic.Kinds {
		rank[k] = i
	}
	order := make([]int, len(items))
	keys := make([]int, len(items))
	for i := range items {
		order[i] = i
		keys[i] = len(clinic.Kinds)
		if items[i].rec != nil {
			if r, ok := rank[items[i].rec.RecordKind()]; ok {
				keys[i] = r
			}
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return keys[a] - keys[b] })
	return order
}

// loadStored fetches, in one store call, the source records that good records
// of the batch reference and the batch does not hold.
func (s *Service) loadStored(ctx context.Context, items []item, res *resolver) error {
	seen := map[clinic.Key]bool{}
	var keys []store.RecordKey
	for i := range items {
		if !items[i].ok {
			continue
		}
		for _, k := range clinic.Refs(items[i].rec) {
			if _, in := res.batch[k]; in || seen[k] || res.rejected[k] {
				continue
			}
			seen[k] = true
			keys = append(keys, store.RecordKey{Kind: string(k.Kind), ClinicID: k.ID})
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := s.fetch(ctx, keys, res); err != nil {
		return err
	}
	// Second hop: CheckRefs checks a session's doses against the protocol of
	// its course (clinic.Refs). Load the protocols of stored courses too.
	keys = keys[:0]
	for i := range items {
		if !items[i].ok || items[i].rec.RecordKind() != clinic.KindSession {
			continue
		}
		for _, k := range clinic.Refs(items[i].rec) {
			if k.Kind != clinic.KindCourse {
				continue
			}
			course, ok := res.Resolve(k)
			if !ok {
				continue
			}
			for _, pk := range clinic.Refs(course) {
				if pk.Kind != clinic.KindProtocol || seen[pk] || res.rejected[pk] || hasKey(res.batch, pk) {
					continue
				}
				seen[pk] = true
				keys = append(keys, store.RecordKey{Kind: string(pk.Kind), ClinicID: pk.ID})
			}
		}
	}
	res.rejectedHits = res.rejectedHits[:0]
	if len(keys) == 0 {
		return nil
	}
	return s.fetch(ctx, keys, res)
}

// fetch loads stored source records into the resolver.
func (s *Service) fetch(ctx context.Context, keys []store.RecordKey, res *resolver) error {
	src, err := s.st.SourceRecords(ctx, keys)
	if err != nil {
		return fmt.Errorf("ingest: load referenced records: %w", err)
	}
	for rk, body := range src {
		rec, errs := clinic.Decode(body)
		if len(errs) > 0 || rec == nil {
			continue // a stored record that no longer decodes counts as absent
		}
		res.stored[clinic.Key{Kind: clinic.Kind(rk.Kind), ID: rk.ClinicID}] = rec
	}
	return nil
}

// resolver resolves references against the batch's good records first, then
// the stored ones. A key of a rejected batch record resolves to nothing and
// is remembered in rejectedHits, so the error can say why.
type resolver struct {
	items        []item
	batch        map[clinic.Key]int
	stored       map[clinic.Key]clinic.Record
	rejected     map[clinic.Key]bool // keys whose last batch record was rejected
	rejectedHits []clinic.Key
}

// Resolve implements clinic.Resolver.
func (r *resolver) Resolve(k clinic.Key) (clinic.Record, bool) {
	if i, ok := r.batch[k]; ok {
		return r.items[i].rec, true
	}
	if r.rejected[k] {
		r.rejectedHits = append(r.rejectedHits, k)
		return nil, false
	}
	if rec, ok := r.stored[k]; ok {
		return rec, true
	}
	return nil, false
}

// drop removes a rejected record from the batch index, if it was the record
// that key resolved to. A rejected record shadows the stored version of the
// same key: the batch meant to change it, and the change did not land.
func (r *resolver) drop(i int, rec clinic.Record) {
	k := clinic.Key{Kind: rec.RecordKind(), ID: rec.RecordID()}
	if j, ok := r.batch[k]; ok && j == i {
		delete(r.batch, k)
		if r.rejected == nil {
			r.rejected = map[clinic.Key]bool{}
		}
		r.rejected[k] = true
	}
}

// rejectedRef lists the references of rec to batch records rejected after
// its references were checked (mapping failures).
func (r *resolver) rejectedRef(rec clinic.Record) []clinic.Key {
	if len(r.rejected) == 0 {
		return nil
	}
	var bad []clinic.Key
	for _, k := range clinic.Refs(rec) {
		if _, ok := r.batch[k]; !ok && r.rejected[k] {
			bad = append(bad, k)
		}
	}
	return bad
}

// explainRejectedRefs rewrites the reference errors whose target is a record
// rejected in the same batch, so the client sees the cause rather than
// "not found". The path of each error is looked up in the raw record to find
// which id it names.
func explainRejectedRefs(raw json.RawMessage, errs []clinic.FieldError, hits []clinic.Key) []clinic.FieldError {
	var doc any
	if json.Unmarshal(raw, &doc) != nil {
		return errs
	}
	out := make([]clinic.FieldError, len(errs))
	copy(out, errs)
	explained := map[clinic.Key]bool{}
	for n, e := range out {
		v, ok := lookupPath(doc, e.Path).(string)
		if !ok {
			continue
		}
		for _, k := range hits {
			if k.ID == v {
				out[n].Message = rejectedMessage(k)
				explained[k] = true
				break
			}
		}
	}
	// A hit that no error names (the clinic package reported it differently):
	// say it on the record as a whole.
	for _, k := range hits {
		if !explained[k] {
			out = append(out, clinic.FieldError{Path: refPath(doc, k), Message: rejectedMessage(k)})
			explained[k] = true
		}
	}
	return out
}

// refErrors builds errors for references to records rejected while mapping.
func refErrors(raw json.RawMessage, bad []clinic.Key) []clinic.FieldError {
	var doc any
	_ = json.Unmarshal(raw, &doc)
	errs := make([]clinic.FieldError, 0, len(bad))
	for _, k := range bad {
		errs = append(errs, clinic.FieldError{Path: refPath(doc, k), Message: rejectedMessage(k)})
	}
	return errs
}

func hasKey(m map[clinic.Key]int, k clinic.Key) bool {
	_, ok := m[k]
	return ok
}

func rejectedMessage(k clinic.Key) string {
	return "references " + k.String() + ", which was rejected in this batch"
}

// refPath finds the first path in doc whose string value is k.ID under a
// member whose name ends in "Id" or "Ids"; "" when none is found.
func refPath(doc any, k clinic.Key) string {
	var walk func(v any, path string) (string, bool)
	walk = func(v any, path string) (string, bool) {
		switch t := v.(type) {
		case map[string]any:
			names := make([]string, 0, len(t))
			for name := range t {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				p := name
				if path != "" {
					p = path + "." + name
				}
				child := t[name]
				if s, ok := child.(string); ok && s == k.ID && name != "id" && strings.HasSuffix(name, "Id") {
					return p, true
				}
				if arr, ok := child.([]any); ok && strings.HasSuffix(name, "Ids") {
					for n, el := range arr {
						if s, ok := el.(string); ok && s == k.ID {
							return p + "[" + strconv.Itoa(n) + "]", true
						}
					}
				}
				if got, ok := walk(child, p); ok {
					return got, true
				}
			}
		case []any:
			for n, el := range t {
				if got, ok := walk(el, path+"["+strconv.Itoa(n)+"]"); ok {
					return got, true
				}
			}
		}
		return "", false
	}
	p, _ := walk(doc, "")
	return p
}

// lookupPath follows a field path such as "administrations[0].performerId" in
// a generic JSON document; nil when the path does not exist.
func lookupPath(doc any, path string) any {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = m[name]
		}
		for rest != "" {
			num, after, ok := strings.Cut(rest, "]")
			if !ok {
				return nil
			}
			n, err := strconv.Atoi(num)
			arr, isArr := cur.([]any)
			if err != nil || !isArr || n < 0 || n >= len(arr) {
				return nil
			}
			cur = arr[n]
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return cur
}

// prepare maps and indexes one record into a store write. errs reports a
// record the mapper or indexer refused (the record is rejected); err is
// reserved for failures that are not the record's fault.
//
// related resolves the records rec references (the batch's and the stored
// ones loaded for CheckRefs): the mapper takes a course's dosage from its
// protocol and a session's reason and product from its course and protocol.
func (s *Service) prepare(rec clinic.Record, recorded time.Time, related clinic.Resolver) (store.RecordWrite, []clinic.FieldError, error) {
	src, err := clinic.Canonical(rec)
	if err != nil {
		return store.RecordWrite{}, []clinic.FieldError{{Message: "record cannot be serialised: " + err.Error()}}, nil
	}
	outs, err := s.mapper.MapWith(rec, recorded, related)
	if err != nil {
		return store.RecordWrite{}, []clinic.FieldError{{Message: "record cannot be mapped to FHIR: " + err.Error()}}, nil
	}
	w := store.RecordWrite{
		Kind:      string(rec.RecordKind()),
		ClinicID:  rec.RecordID(),
		Hash:      recordHash(rec),
		Source:    src,
		Resources: make([]store.ResourceWrite, 0, len(outs)),
	}
	for _, o := range outs {
		rw, err := s.resourceWrite(o)
		if err != nil {
			return store.RecordWrite{}, []clinic.FieldError{{Message: err.Error()}}, nil
		}
		w.Resources = append(w.Resources, rw)
	}
	return w, nil, nil
}

// recordHash is the hash the store compares to tell an unchanged record: the
// canonical record's hash under the mapping rules' version, so that a record
// stored under older rules is remapped when it is sent again.
func recordHash(rec clinic.Record) string {
	return "mapping-" + mapping.Version + ":" + clinic.Hash(rec)
}

// resourceWrite indexes one mapped resource.
func (s *Service) resourceWrite(o mapping.Output) (store.ResourceWrite, error) {
	if o.Type == "" || o.ID == "" || len(o.Body) == 0 {
		return store.ResourceWrite{}, fmt.Errorf("mapping produced an incomplete %s resource", o.Type)
	}
	var rows []store.IndexRow
	if s.index != nil {
		var err error
		rows, err = s.index(o.Resource)
		if err != nil {
			return store.ResourceWrite{}, fmt.Errorf("%s/%s cannot be indexed for search: %v", o.Type, o.ID, err)
		}
	}
	return store.ResourceWrite{Type: o.Type, ID: o.ID, Patient: o.Patient, Body: o.Body, Index: rows, CreateOnly: o.CreateOnly}, nil
}
