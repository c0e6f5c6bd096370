package sqlcore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// The audit trail (store.AuditStore, store.AuditArchive) lives in the audit
// table of SQLite's migrations 0013 and 0014 and PostgreSQL's 0011 and 0012,
// the same compact row on both backends (docs/design/security.md AUD-ARCH-1,
// AUD-ARCH-3, AUD-ARCH-4); since its migration 0014 PostgreSQL packs these
// rows, a second of a batch per row of audit_packs (AUD-ARCH-6,
// auditpack.go), and reads the rows written before beside the packs:
//
//   - recorded (Unix ms) and idk make the primary key, so the table is
//     ordered as ListAudit reads it and needs no other index. idk is the
//     event id: for the ids the writer makes (UUIDv7 whose time is the
//     event's recorded millisecond: fhir/auditlog) only the 10 bytes after
//     the time (the time is recorded); any other id is 0x00 followed by its
//     text, unique through a small partial index on those rows only.
//   - the repeated strings are integer codes into audit_terms (0 for the
//     empty string), cached in memory both ways (a code never changes once
//     assigned): patient, and shape, whose term is the JSON array of
//     everything a read repeats: client, interaction, type, version,
//     status, fhirUser, subject, purpose and organization (a clinic has a
//     few thousand such shapes at most);
//   - resource (the resource id) is bytes: empty when none; 0x01 and the 16
//     bytes of a lowercase UUID (the mapper's ids) or 0x02 and the text of
//     any other id, for the first auditInlineReads reads of an id this
//     process counts; 0x03 and the big-endian audit_terms code of a
//     resource read more often. A dictionary term costs about 95 bytes
//     once (its text and its unique index) and saves about 14 on each later
//     read, so an id read a few times (most of a uniform scan) stays inline
//     and one read again and again is coded (AUD-ARCH-3);
//   - request is the request id: lowercase hex as its bytes after 0x01,
//     anything else as its text after 0x02, empty when none; when the
//     event's id was derived from the request id (the writer does so for
//     the gateway's own random request ids), 0x03 and the 4 bytes idk does
//     not already hold (auditDerived).
//
// A day is a contiguous range of the key: SQLite drops old days with one
// range DELETE, PostgreSQL keeps a partition per day (auditp_YYYYMMDD of
// audit_packs, created when a batch first needs it; audit_YYYYMMDD of the
// rows before packs) and drops partitions.

// auditCols are the audit table's columns, in insert and select order.
const auditCols = "recorded, idk, shape, patient, resource, request"

// auditColCount is the number of auditCols.
const auditColCount = 6

// auditTermCount is how many of a row's columns are audit_terms codes
// (shape, patient; resource may be a third: auditResource).
const auditTermCount = 2

// auditInlineReads is how many reads of a resource id (by this process)
// store it inline before it becomes a dictionary term: a term (about 95
// bytes once) saves about 14 bytes on each later read, so it pays for
// itself after about 7 more; promoting after 6 inline reads wastes at most
// about as much as it can save (a ski-rental bound), and an id read a few
// times never costs a term.
const auditInlineReads = 6

// auditSeenMax bounds the count of reads per resource id kept to decide
// that; past it the counts start over.
const auditSeenMax = 1 << 17

// Tags of the resource column (auditResource).
const (
	resUUID = 0x01
	resText = 0x02
	resCode = 0x03
)

// auditRowsPerInsert is how many rows one INSERT carries.
const auditRowsPerInsert = 100

// auditInsertSizes are the row counts of SQLite's audit INSERTs, largest
// first: a batch goes out in INSERTs of 100 rows, its rest in INSERTs of 10
// and of 1, so the writer connection keeps three prepared statements and
// parses none per batch. (A batch's rest used to be one INSERT of its own
// size, up to 594 placeholders parsed again for almost every batch: a
// quarter of the audit transaction's CPU in the audited read-hot profile;
// docs/design/security.md AUD-ARCH-7.)
var auditInsertSizes = [...]int{auditRowsPerInsert, 10, 1}

// auditChunk is how many of n rows the next INSERT carries.
func auditChunk(n int) int {
	for _, k := range auditInsertSizes {
		if n >= k {
			return k
		}
	}
	return n
}

// dayMS is one day in milliseconds.
const dayMS = 24 * 60 * 60 * 1000

// auditTermCacheMax bounds each direction of the term cache; past it the
// cache starts over (codes are re-read from audit_terms as needed).
const auditTermCacheMax = 1 << 20

// auditTerms caches audit_terms both ways.
type auditTerms struct {
	mu     sync.RWMutex
	codes  map[string]int64
	terms  map[int64]string
	shapes map[shapeKey]int64 // the codes of shapes, by their fields
	days   map[int64]bool     // PostgreSQL: the day partitions known to exist

	seedOnce sync.Once
	seed     maphash.Seed
	seen     map[uint64]uint8 // reads of resource ids not yet terms, by hash
}

// shapeKey is what a shape term spells (auditShape): a map key, so a known
// shape's code is found without building its term.
type shapeKey struct {
	client, interaction, typ, version string
	status                            int
	fhirUser, subject, purpose, org   string
}

func shapeKeyOf(r *store.AuditRecord) shapeKey {
	return shapeKey{r.ClientID, r.Interaction, r.Type, r.Version, r.Status, r.FHIRUser, r.Subject, r.Purpose, r.Organization}
}

func (t *auditTerms) shapeCode(k shapeKey) (int64, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c, ok := t.shapes[k]
	return c, ok
}

// sighting counts one more read of resource id id and reports how many
// this process has counted (a hash collision only codes an id early).
func (t *auditTerms) sighting(id string) int {
	t.seedOnce.Do(func() { t.seed = maphash.MakeSeed() })
	h := maphash.String(t.seed, id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil || len(t.seen) >= auditSeenMax {
		t.seen = make(map[uint64]uint8, 1024)
	}
	n := t.seen[h]
	if n < 255 {
		n++
		t.seen[h] = n
	}
	return int(n)
}

func (t *auditTerms) code(s string) (int64, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c, ok := t.codes[s]
	return c, ok
}

func (t *auditTerms) add(m map[string]int64) { t.addShapes(m, nil) }

// addShapes caches the terms of m and the codes of the shapes whose terms
// are in shapes.
func (t *auditTerms) addShapes(m map[string]int64, shapes map[string]shapeKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.codes == nil || len(t.codes)+len(m) > auditTermCacheMax {
		t.codes, t.terms = map[string]int64{}, map[int64]string{}
	}
	if t.shapes == nil || len(t.shapes)+len(shapes) > auditTermCacheMax {
		t.shapes = map[shapeKey]int64{}
	}
	for s, c := range m {
		t.codes[s], t.terms[c] = c, s
	}
	for s, k := range shapes {
		if c, ok := t.codes[s]; ok {
			t.shapes[k] = c
		}
	}
}

func (t *auditTerms) dayKnown(day int64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.days[day]
}

func (t *auditTerms) setDays(days []int64, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !known {
		t.days = nil
		return
	}
	if t.days == nil {
		t.days = map[int64]bool{}
	}
	for _, d := range days {
		t.days[d] = true
	}
}

// CheckAudit checks the records an AppendAudit stores: each needs an id and
// an interaction.
func (d *Dialect) CheckAudit(records []store.AuditRecord) error {
	for i, r := range records {
		if r.ID == "" || r.Interaction == "" {
			return d.wrap("append audit", fmt.Errorf("record %d: empty id or interaction", i))
		}
	}
	return nil
}

// auditShape is the term of r's shape column: the JSON array (of strings)
// of client, interaction, type, version, status, fhirUser, subject, purpose
// and organization. Migrations build it with the database's own JSON
// functions; a tuple spelt differently there only costs a second term.
func auditShape(r *store.AuditRecord) string {
	var b strings.Builder
	b.Grow(64)
	b.WriteByte('[')
	for i, f := range [...]string{r.ClientID, r.Interaction, r.Type, r.Version, strconv.Itoa(r.Status),
		r.FHIRUser, r.Subject, r.Purpose, r.Organization} {
		if i > 0 {
			b.WriteByte(',')
		}
		if plainTerm(f) {
			b.WriteByte('"')
			b.WriteString(f)
			b.WriteByte('"')
			continue
		}
		q, _ := json.Marshal(f) // a string always marshals
		b.Write(q)
	}
	b.WriteByte(']')
	return b.String()
}

// plainTerm reports whether s is JSON-quoted as itself between quotes (the
// ids, codes and statuses of a shape nearly always are).
func plainTerm(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '/' || c == ':') {
			return false
		}
	}
	return true
}

// parseShape fills r from a shape term.
func parseShape(term string, r *store.AuditRecord) error {
	var f []string
	if err := json.Unmarshal([]byte(term), &f); err != nil || len(f) != 9 {
		return fmt.Errorf("malformed audit shape")
	}
	status, err := strconv.Atoi(f[4])
	if err != nil {
		return fmt.Errorf("malformed audit shape status")
	}
	r.ClientID, r.Interaction, r.Type, r.Version, r.Status = f[0], f[1], f[2], f[3], status
	r.FHIRUser, r.Subject, r.Purpose, r.Organization = f[5], f[6], f[7], f[8]
	return nil
}

// AuditKey returns the stored key of event id recorded at ms: the 10 bytes
// after the time of a lowercase UUIDv7 whose time is ms, else 0x00 and the
// id's text.
func AuditKey(id string, ms int64) []byte {
	if u, ok := parseUUID(id); ok && u[6]>>4 == 7 && ms >= 0 && uuidMS(u) == ms {
		return slices.Clone(u[6:])
	}
	return append([]byte{0}, id...)
}

// auditID is AuditKey's inverse.
func auditID(k []byte, ms int64) (string, error) {
	if len(k) > 0 && k[0] == 0 {
		return string(k[1:]), nil
	}
	if len(k) != 10 || ms < 0 || ms >= 1<<48 {
		return "", fmt.Errorf("malformed audit key (%d bytes)", len(k))
	}
	var u [16]byte
	for i := range 6 {
		u[i] = byte(ms >> (8 * (5 - i)))
	}
	copy(u[6:], k)
	return formatUUID(u), nil
}

// formatUUID is a UUID's canonical lowercase text.
func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

// auditInline is the inline resource column of id (see the package
// comment): 0x01 and a lowercase UUID's 16 bytes, else 0x02 and the text.
func auditInline(id string) []byte {
	if id == "" {
		return []byte{}
	}
	if u, ok := parseUUID(id); ok {
		return append([]byte{resUUID}, u[:]...)
	}
	return append([]byte{resText}, id...)
}

// auditCoded is the resource column of a coded id: 0x03 and the code's
// big-endian bytes, as few as hold it.
func auditCoded(c int64) []byte {
	b := []byte{resCode}
	n := 1
	for c>>(8*n) > 0 && n < 8 {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(c>>(8*i)))
	}
	return b
}

// auditResource decodes a resource column: the id when inline, else its
// audit_terms code.
func auditResource(b []byte) (id string, code int64, err error) {
	switch {
	case len(b) == 0:
		return "", 0, nil
	case b[0] == resUUID && len(b) == 17:
		return formatUUID([16]byte(b[1:])), 0, nil
	case b[0] == resText && len(b) > 1:
		return string(b[1:]), 0, nil
	case b[0] == resCode && len(b) > 1 && len(b) <= 9:
		for _, x := range b[1:] {
			code = code<<8 | int64(x)
		}
		if code > 0 {
			return "", code, nil
		}
	}
	return "", 0, fmt.Errorf("malformed audit resource (%d bytes)", len(b))
}

// parseUUID parses a canonical lowercase UUID.
func parseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if s[i] == '-' {
			i--
			continue
		}
		hi, ok1 := lowerHex(s[i])
		lo, ok2 := lowerHex(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
	}
	return u, j == 16
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// uuidMS is the Unix-millisecond time of a UUIDv7.
func uuidMS(u [16]byte) int64 {
	var ms int64
	for _, b := range u[:6] {
		ms = ms<<8 | int64(b)
	}
	return ms
}

// auditRequest encodes a request id: 0x01 and the bytes of lowercase hex,
// else 0x02 and the text; empty stays empty. When the event's stored key
// idk (auditKey's 10 bytes) holds most of the request id's 12 bytes (the
// writer derives the ids of a request the gateway numbered from its
// number: fhir/auditlog), only the rest is stored (auditDerived).
func auditRequest(id string, idk []byte) []byte {
	if id == "" {
		return []byte{}
	}
	if len(id)%2 == 0 {
		ok := true
		for i := 0; i < len(id) && ok; i++ {
			_, ok = lowerHex(id[i])
		}
		if ok {
			b := make([]byte, 1+len(id)/2)
			b[0] = 1
			_, _ = hex.Decode(b[1:], []byte(id))
			if d, ok := auditDerived(b[1:], idk); ok {
				return d
			}
			return b
		}
	}
	return append([]byte{2}, id...)
}

// auditDerived is the request column of a request id r (12 bytes) whose
// event key idk (the 10 bytes of a UUIDv7 after its time) was derived from
// it (fhir/auditlog): idk is r[0:10] with the version and variant bits set
// and the last byte XORed with the event's index k among the request's
// patients. The column is 0x03, k, the 6 bits the version and variant
// replaced, and r[10:12]: 5 bytes instead of 13 (docs/design/security.md
// AUD-ARCH-4). It reports false for any other pair.
func auditDerived(r, idk []byte) ([]byte, bool) {
	if len(r) != 12 || len(idk) != 10 || idk[0]&0xf0 != 0x70 || idk[2]&0xc0 != 0x80 ||
		idk[0]&0x0f != r[0]&0x0f || idk[1] != r[1] || idk[2]&0x3f != r[2]&0x3f || string(idk[3:9]) != string(r[3:9]) {
		return nil, false
	}
	return []byte{3, idk[9] ^ r[9], r[0]>>4<<2 | r[2]>>6, r[10], r[11]}, true
}

// auditRequestID is auditRequest's inverse; idk is the row's stored key.
func auditRequestID(b, idk []byte) (string, error) {
	switch {
	case len(b) == 0:
		return "", nil
	case b[0] == 1:
		return hex.EncodeToString(b[1:]), nil
	case b[0] == 2:
		return string(b[1:]), nil
	case b[0] == 3 && len(b) == 5 && len(idk) == 10:
		var r [12]byte
		r[0] = b[2]>>2<<4 | idk[0]&0x0f
		r[1] = idk[1]
		r[2] = b[2]&3<<6 | idk[2]&0x3f
		copy(r[3:9], idk[3:9])
		r[9] = idk[9] ^ b[1]
		r[10], r[11] = b[3], b[4]
		return hex.EncodeToString(r[:]), nil
	}
	return "", fmt.Errorf("malformed audit request id")
}

// auditDay is the day number (days since 1970-01-01 UTC) of ms.
func auditDay(ms int64) int64 {
	d := ms / dayMS
	if ms < 0 && ms%dayMS != 0 {
		d--
	}
	return d
}

// auditPartition names the PostgreSQL partition of a day.
func auditPartition(day int64) string {
	return "audit_" + time.UnixMilli(day*dayMS).UTC().Format("20060102")
}

// AppendAudit writes records (store.AuditStore): the strings unknown to the
// term cache are looked up or added to audit_terms, then the rows go in
// multi-row INSERTs (SQLite: the full-size one prepared once on its writer
// connection, StmtExecer) or packs (PostgreSQL: writePacks, under the
// appends' advisory lock), all in one transaction of the backend's writer.
// On PostgreSQL the day partitions the batch needs are created first.
func (a *Auth) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	if err := a.d.CheckAudit(records); err != nil {
		return err
	}
	if a.d.arrays {
		if err := a.auditPartitions(ctx, records); err != nil {
			return a.Wrap("append audit", err)
		}
	}
	// Every term's code, read once from the cache: a term the cache does
	// not hold (or drops meanwhile) is looked up or added in the
	// transaction, so no row is ever written with a missing code.
	codes := map[string]int64{"": 0}
	var unknown []string
	need := func(s string) {
		if _, ok := codes[s]; ok {
			return
		}
		if c, ok := a.terms.code(s); ok {
			codes[s] = c
			return
		}
		codes[s] = -1
		unknown = append(unknown, s)
	}
	type row struct {
		shape    int64  // the shape's code, -1 when by its term
		shapeT   string // the shape's term when not cached by its fields
		resource string // the term of a coded resource id not yet cached
		inline   []byte // the resource column, when known without a term
	}
	rows := make([]row, len(records))
	var newShapes map[string]shapeKey
	for i := range records {
		r, w := &records[i], &rows[i]
		k := shapeKeyOf(r)
		if c, ok := a.terms.shapeCode(k); ok {
			w.shape = c
		} else {
			w.shape, w.shapeT = -1, auditShape(r)
			need(w.shapeT)
			if newShapes == nil {
				newShapes = map[string]shapeKey{}
			}
			newShapes[w.shapeT] = k
		}
		need(r.Patient)
		switch id := r.ResourceID; {
		case id == "":
			w.inline = []byte{}
		default:
			if c, ok := a.terms.code(id); ok {
				w.inline = auditCoded(c)
			} else if a.terms.sighting(id) > auditInlineReads {
				w.resource = id
				need(id)
			} else {
				w.inline = auditInline(id)
			}
		}
	}
	// Sorted, so two replicas adding the same terms take their locks in
	// one order.
	slices.Sort(unknown)
	var fresh map[string]int64
	err := a.auditDB().Write(ctx, func(q Querier) error {
		if a.d.arrays {
			// One PostgreSQL writer at a time per schema, so the check for
			// stored ids below sees every pack a concurrent append could
			// add (auditpack.go).
			if _, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('ketabridge:audit:' || current_schema(), 0))`); err != nil {
				return err
			}
		}
		fresh = make(map[string]int64, len(unknown))
		if err := a.putTerms(ctx, q, unknown, fresh); err != nil {
			return err
		}
		code := func(s string) int64 {
			if c, ok := fresh[s]; ok {
				return c
			}
			return codes[s]
		}
		out := make([]auditRow, len(records))
		for i := range records {
			r, w := &records[i], &rows[i]
			ms := r.Recorded.UnixMilli()
			shape, res := w.shape, w.inline
			if shape < 0 {
				shape = code(w.shapeT)
			}
			if res == nil {
				res = auditCoded(code(w.resource))
			}
			idk := AuditKey(r.ID, ms)
			out[i] = auditRow{ms: ms, idk: idk, shape: shape, patient: code(r.Patient), res: res, req: auditRequest(r.RequestID, idk)}
		}
		if a.d.arrays {
			return a.writePacks(ctx, q, out)
		}
		args := make([]any, 0, auditColCount*min(len(out), auditRowsPerInsert))
		se, kept := q.(StmtExecer)
		for rest := out; len(rest) > 0; {
			n := min(len(rest), auditRowsPerInsert) // one statement parsed per INSERT
			if kept {
				n = auditChunk(len(rest))
			}
			chunk := rest[:n]
			rest = rest[len(chunk):]
			args = args[:0]
			for _, w := range chunk {
				args = append(args, w.ms, w.idk, w.shape, w.patient, w.res, w.req)
			}
			var err error
			if kept {
				_, err = se.ExecStmt(ctx, a.auditInsert(len(chunk)), args...)
			} else {
				_, err = q.Exec(ctx, a.auditInsert(len(chunk)), args...)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// A partition may have been dropped under the cache (audit drop):
		// the retry looks again.
		a.terms.setDays(nil, false)
		return a.Wrap("append audit", err)
	}
	a.terms.addShapes(fresh, newShapes)
	return nil
}

// putTerms adds the terms to audit_terms (those already there are kept) and
// reads back their codes into codes, a few hundred terms per statement.
func (a *Auth) putTerms(ctx context.Context, q Querier, terms []string, codes map[string]int64) error {
	for rest := terms; len(rest) > 0; {
		chunk := rest[:min(len(rest), 500)]
		rest = rest[len(chunk):]
		args := make([]any, len(chunk))
		for i, s := range chunk {
			args[i] = s
		}
		marks := "?" + strings.Repeat(",?", len(chunk)-1)
		if _, err := q.Exec(ctx, a.d.SQL(`INSERT INTO audit_terms (term) VALUES (`+strings.ReplaceAll(marks, ",", "),(")+`) ON CONFLICT (term) DO NOTHING`), args...); err != nil {
			return err
		}
		rows, err := q.Query(ctx, a.d.SQL(`SELECT id, term FROM audit_terms WHERE term IN (`+marks+`)`), args...)
		type pair struct {
			c int64
			s string
		}
		ps, err := collect(rows, err, func(r Row) (pair, error) {
			var p pair
			return p, r.Scan(&p.c, &p.s)
		})
		if err != nil {
			return err
		}
		for _, p := range ps {
			codes[p.s] = p.c
		}
	}
	for _, s := range terms {
		if _, ok := codes[s]; !ok {
			return fmt.Errorf("audit term not stored")
		}
	}
	return nil
}

// auditInsert returns SQLite's INSERT of n rows. A stored key is skipped (a
// retried batch is idempotent). PostgreSQL writes packs (auditpack.go).
func (a *Auth) auditInsert(n int) string {
	a.insertOnce.Do(func() {
		for i, k := range auditInsertSizes {
			a.inserts[i] = a.buildAuditInsert(k)
		}
	})
	for i, k := range auditInsertSizes {
		if n == k {
			return a.inserts[i]
		}
	}
	return a.buildAuditInsert(n)
}

func (a *Auth) buildAuditInsert(n int) string {
	var b strings.Builder
	row := "(?" + strings.Repeat(",?", auditColCount-1) + ")"
	b.WriteString("INSERT OR IGNORE INTO audit (" + auditCols + ") VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// auditPartitions creates the PostgreSQL day partitions of audit_packs
// records need and the cache does not know, under an advisory lock so
// replicas do not race.
func (a *Auth) auditPartitions(ctx context.Context, records []store.AuditRecord) error {
	var need []int64
	for i := range records {
		d := auditDay(records[i].Recorded.UnixMilli())
		if !a.terms.dayKnown(d) && !slices.Contains(need, d) {
			need = append(need, d)
		}
	}
	if len(need) == 0 {
		return nil
	}
	err := a.auditDB().Write(ctx, func(q Querier) error {
		if _, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock(7412087301)`); err != nil {
			return err
		}
		for _, d := range need {
			if _, err := q.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF audit_packs FOR VALUES FROM (%d) TO (%d)`,
				auditPackPartition(d), d*daySec, (d+1)*daySec)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		a.terms.setDays(need, true)
	}
	return err
}

// ListAudit returns up to limit records (all when limit <= 0) recorded at or
// after since, ordered by recorded time, then key (the id order among the
// ids of one millisecond, except that ids stored as text sort before the
// writer's compact ones).
func (a *Auth) ListAudit(ctx context.Context, since time.Time, limit int) ([]store.AuditRecord, error) {
	q, err := a.auditDB().Reader()
	if err != nil {
		return nil, err
	}
	type raw struct {
		ms            int64
		idk, req, res []byte
		codes         [auditTermCount + 1]int64 // shape, patient, coded resource
		resID         string                    // an inline resource id
	}
	// sinceMS: the stored precision, so a record at since is never skipped.
	rows, err := q.Query(ctx, a.sql.listAudit, sinceMS(since), a.d.Limit(limit))
	stored, err := collect(rows, err, func(r Row) (auditRow, error) {
		var x auditRow
		return x, r.Scan(&x.ms, &x.idk, &x.shape, &x.patient, &x.res, &x.req)
	})
	if err != nil {
		return nil, a.d.wrap("list audit", err)
	}
	if a.d.arrays {
		// PostgreSQL: the packs, merged with the rows before them.
		packs, err := a.listPacks(ctx, q, sinceMS(since), limit)
		if err != nil {
			return nil, a.d.wrap("list audit", err)
		}
		if len(stored) == 0 {
			stored = packs
		} else if len(packs) > 0 {
			stored = slices.SortedStableFunc(slices.Values(append(stored, packs...)), cmpRows)
		}
		if limit > 0 && len(stored) > limit {
			stored = stored[:limit]
		}
	}
	if len(stored) == 0 {
		return nil, nil
	}
	raws := make([]raw, len(stored))
	for i, s := range stored {
		x := &raws[i]
		x.ms, x.idk, x.req, x.res = s.ms, s.idk, s.req, s.res
		x.codes[0], x.codes[1] = s.shape, s.patient
		if x.resID, x.codes[2], err = auditResource(s.res); err != nil {
			return nil, a.d.wrap("list audit", err)
		}
	}
	// Resolve the codes the cache does not hold.
	need := map[int64]bool{}
	a.terms.mu.RLock()
	for i := range raws {
		for _, c := range raws[i].codes {
			if _, ok := a.terms.terms[c]; c != 0 && !ok {
				need[c] = true
			}
		}
	}
	a.terms.mu.RUnlock()
	if len(need) > 0 {
		found, err := a.auditTermsByCode(ctx, q, need)
		if err != nil {
			return nil, a.d.wrap("list audit", err)
		}
		a.terms.add(found)
	}
	out := make([]store.AuditRecord, len(raws))
	shapes := map[int64]store.AuditRecord{} // parsed shapes, by code
	a.terms.mu.RLock()
	defer a.terms.mu.RUnlock()
	for i := range raws {
		x := &raws[i]
		var t [auditTermCount + 1]string
		for j, c := range x.codes {
			if c == 0 {
				continue
			}
			s, ok := a.terms.terms[c]
			if !ok {
				return nil, a.d.wrap("list audit", fmt.Errorf("audit term %d missing", c))
			}
			t[j] = s
		}
		if x.codes[2] == 0 {
			t[2] = x.resID
		}
		id, err := auditID(x.idk, x.ms)
		if err != nil {
			return nil, a.d.wrap("list audit", err)
		}
		req, err := auditRequestID(x.req, x.idk)
		if err != nil {
			return nil, a.d.wrap("list audit", err)
		}
		rec, ok := shapes[x.codes[0]]
		if !ok {
			if err := parseShape(t[0], &rec); err != nil {
				return nil, a.d.wrap("list audit", err)
			}
			shapes[x.codes[0]] = rec
		}
		rec.ID, rec.Recorded, rec.Patient, rec.ResourceID, rec.RequestID = id, MSTime(x.ms), t[1], t[2], req
		out[i] = rec
	}
	return out, nil
}

// auditTermsByCode reads the terms of codes from audit_terms.
func (a *Auth) auditTermsByCode(ctx context.Context, q Querier, codes map[int64]bool) (map[string]int64, error) {
	list := make([]int64, 0, len(codes))
	for c := range codes {
		list = append(list, c)
	}
	found := make(map[string]int64, len(list))
	scan := func(rows Rows, err error) error {
		type pair struct {
			c int64
			s string
		}
		ps, err := collect(rows, err, func(r Row) (pair, error) {
			var p pair
			return p, r.Scan(&p.c, &p.s)
		})
		for _, p := range ps {
			found[p.s] = p.c
		}
		return err
	}
	if a.d.arrays {
		rows, err := q.Query(ctx, `SELECT id, term FROM audit_terms WHERE id = ANY($1)`, list)
		return found, scan(rows, err)
	}
	for rest := list; len(rest) > 0; {
		chunk := rest[:min(len(rest), 500)]
		rest = rest[len(chunk):]
		args := make([]any, len(chunk))
		for i, c := range chunk {
			args[i] = c
		}
		rows, err := q.Query(ctx, `SELECT id, term FROM audit_terms WHERE id IN (?`+strings.Repeat(",?", len(chunk)-1)+`)`, args...)
		if err := scan(rows, err); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// auditMidnight checks that before is a midnight UTC (or zero) and returns
// it in Unix ms (the zero time is no bound).
func (a *Auth) auditMidnight(op string, before time.Time) (int64, error) {
	if before.IsZero() {
		return 1 << 62, nil
	}
	if !before.Equal(store.AuditDayStart(before)) {
		return 0, a.d.wrap(op, fmt.Errorf("%s is not a midnight UTC", before.Format(time.RFC3339)))
	}
	return before.UnixMilli(), nil
}

// auditDays counts the events of each day before beforeMS and joins the
// export marks.
func (a *Auth) auditDays(ctx context.Context, q Querier, beforeMS int64) ([]store.AuditDay, error) {
	type count struct{ day, events, exported, at int64 }
	rows, err := q.Query(ctx, a.sql.auditDays, dayMS, beforeMS)
	counts, err := collect(rows, err, func(r Row) (count, error) {
		var c count
		return c, r.Scan(&c.day, &c.events)
	})
	if err != nil {
		return nil, err
	}
	if a.d.arrays {
		rows, err := q.Query(ctx, `SELECT sec / $1 AS day, sum(n)::bigint FROM audit_packs WHERE sec < $2 GROUP BY 1 ORDER BY 1`,
			daySec, beforeMS/1000)
		packs, err := collect(rows, err, func(r Row) (count, error) {
			var c count
			return c, r.Scan(&c.day, &c.events)
		})
		if err != nil {
			return nil, err
		}
		counts = append(counts, packs...)
	}
	rows, err = q.Query(ctx, a.sql.auditExports, beforeMS/dayMS)
	marks, err := collect(rows, err, func(r Row) (count, error) {
		var c count
		return c, r.Scan(&c.day, &c.exported, &c.at)
	})
	if err != nil {
		return nil, err
	}
	byDay := map[int64]*store.AuditDay{}
	var days []int64
	get := func(d int64) *store.AuditDay {
		if x, ok := byDay[d]; ok {
			return x
		}
		x := &store.AuditDay{Day: MSTime(d * dayMS)}
		byDay[d] = x
		days = append(days, d)
		return x
	}
	for _, c := range counts {
		get(c.day).Events += c.events
	}
	for _, m := range marks {
		x := get(m.day)
		x.Exported, x.ExportedAt = m.exported, MSTime(m.at)
	}
	slices.Sort(days)
	out := make([]store.AuditDay, len(days))
	for i, d := range days {
		out[i] = *byDay[d]
	}
	return out, nil
}

// AuditDays implements store.AuditArchive.
func (a *Auth) AuditDays(ctx context.Context, before time.Time) ([]store.AuditDay, error) {
	ms, err := a.auditMidnight("audit days", before)
	if err != nil {
		return nil, err
	}
	q, err := a.auditDB().Reader()
	if err != nil {
		return nil, err
	}
	days, err := a.auditDays(ctx, q, ms)
	if err != nil {
		return nil, a.d.wrap("audit days", err)
	}
	return days, nil
}

// MarkAuditExported implements store.AuditArchive.
func (a *Auth) MarkAuditExported(ctx context.Context, days []store.AuditDay) error {
	now := a.clock.Now().UnixMilli()
	for _, d := range days {
		if !d.Day.Equal(store.AuditDayStart(d.Day)) || d.Events < 0 {
			return a.d.wrap("mark audit exported", fmt.Errorf("%s is not a midnight UTC", d.Day.Format(time.RFC3339)))
		}
	}
	return a.Wrap("mark audit exported", a.auditDB().Write(ctx, func(q Querier) error {
		for _, d := range days {
			if _, err := q.Exec(ctx, a.sql.markExported, auditDay(d.Day.UnixMilli()), d.Events, now); err != nil {
				return err
			}
		}
		return nil
	}))
}

// DropAudit implements store.AuditArchive: in one transaction it counts the
// days (on PostgreSQL after locking their partitions, so no event lands in
// them between the count and the drop), refuses when any day's count is not
// what its export wrote, and deletes the days (SQLite: one DELETE of the key
// range; PostgreSQL: DROP TABLE of the partitions).
func (a *Auth) DropAudit(ctx context.Context, before time.Time) ([]store.AuditDay, error) {
	ms, err := a.auditMidnight("drop audit", before)
	if err != nil {
		return nil, err
	}
	if before.IsZero() {
		return nil, a.d.wrap("drop audit", fmt.Errorf("a bound is required"))
	}
	var dropped []store.AuditDay
	err = a.auditDB().Write(ctx, func(q Querier) error {
		var parts []string
		if a.d.arrays {
			// The day partitions of the packs and of the rows before them.
			rows, err := q.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent IN ('audit'::regclass, 'audit_packs'::regclass) ORDER BY c.relname`)
			names, err := collect(rows, err, func(r Row) (string, error) {
				var s string
				return s, r.Scan(&s)
			})
			if err != nil {
				return err
			}
			for _, n := range names {
				day, ok := strings.CutPrefix(n, "auditp_")
				if !ok {
					day = strings.TrimPrefix(n, "audit_")
				}
				t, perr := time.Parse("20060102", day)
				if perr != nil || !t.Before(before) {
					continue
				}
				if _, err := q.Exec(ctx, `LOCK TABLE `+n+` IN ACCESS EXCLUSIVE MODE`); err != nil {
					return err
				}
				parts = append(parts, n)
			}
		}
		days, err := a.auditDays(ctx, q, ms)
		if err != nil {
			return err
		}
		for _, d := range days {
			if d.Events == 0 {
				continue
			}
			if d.ExportedAt.IsZero() {
				return fmt.Errorf("%w: %s holds %d events and was never exported", store.ErrAuditNotExported, d.Day.Format(time.DateOnly), d.Events)
			}
			if d.Events != d.Exported {
				return fmt.Errorf("%w: %s holds %d events, its export wrote %d", store.ErrAuditNotExported, d.Day.Format(time.DateOnly), d.Events, d.Exported)
			}
			dropped = append(dropped, d)
		}
		if a.d.arrays {
			for _, n := range parts {
				if _, err := q.Exec(ctx, `DROP TABLE `+n); err != nil {
					return err
				}
			}
		} else if _, err := q.Exec(ctx, `DELETE FROM audit WHERE recorded < ?`, ms); err != nil {
			return err
		}
		_, err = q.Exec(ctx, a.sql.markDropped, a.clock.Now().UnixMilli(), ms/dayMS)
		return err
	})
	if a.d.arrays {
		a.terms.setDays(nil, false)
		a.legacy.Store(0)
	}
	if err != nil {
		return nil, a.Wrap("drop audit", err)
	}
	return dropped, nil
}
