package sqlcore

import (
	"bytes"
	"cmp"
	"compress/flate"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// PostgreSQL keeps the audit trail in packs (migrations/0014_audit_packs.sql,
// docs/design/security.md AUD-ARCH-6): one row of audit_packs holds the
// events of one append that fall in one second, the rows of the compact form
// above (recorded, idk, shape, patient, resource, request) encoded column by
// column and compressed (packRows). A heap row on PostgreSQL costs its
// 24-byte header, a 4-byte line pointer, alignment and an index entry before
// any data, about 64 bytes: paid once per pack of hundreds or thousands of
// events instead of once per event. audit_packs is partitioned by day like
// the rows before it (auditp_YYYYMMDD); the rows migration 0011 and 0012
// wrote stay in audit and are read beside the packs until their days are
// dropped.
//
// A second is the unit ListAudit reads in: the packs of whole seconds in
// order (those of one second overlap only each other). AppendAudit, to skip
// the ids already stored, decodes the packs whose range of milliseconds (lo
// and hi) overlaps its batch's (for the writer's batches, contiguous in
// time, the previous batch's last pack or none), under an advisory lock
// that serialises the appends of all replicas. Ids not of the writer's compact form (any
// time) are also listed uncompressed in the pack's text_ids, found through
// a partial index on the packs that have any.

// daySec is one day in seconds.
const daySec = 24 * 60 * 60

// packFormat is the first byte of a pack's body: the format of what
// follows (1: the deflated columns of packRows).
const packFormat = 1

// packMaxEvents bounds the events a pack read back may claim (a check on
// the stored bytes, far above any batch).
const packMaxEvents = 1 << 20

// auditPackPartition names the PostgreSQL partition of audit_packs of a day.
func auditPackPartition(day int64) string {
	return "auditp_" + time.UnixMilli(day*dayMS).UTC().Format("20060102")
}

// auditRow is one event in the compact form (audit.go): the columns of the
// audit table, which a pack holds column by column.
type auditRow struct {
	ms             int64
	idk            []byte
	shape, patient int64
	res, req       []byte
}

// textKey reports whether the row's key is an id stored as text (0x00 and
// the id), unique over the whole trail rather than within its millisecond.
func (r *auditRow) textKey() bool { return len(r.idk) > 0 && r.idk[0] == 0 }

// key identifies the row's event among all stored ones.
func (r *auditRow) key() string {
	if r.textKey() {
		return string(r.idk)
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(r.ms))
	return "\x01" + string(b[:]) + string(r.idk)
}

// cmpRows orders rows as ListAudit returns them: by time, then key (as
// PostgreSQL orders bytea, so the rows of audit merge in).
func cmpRows(a, b auditRow) int {
	if c := cmp.Compare(a.ms, b.ms); c != 0 {
		return c
	}
	return bytes.Compare(a.idk, b.idk)
}

// auditSec is the Unix second of ms (rounded down).
func auditSec(ms int64) int64 {
	s := ms / 1000
	if ms < 0 && ms%1000 != 0 {
		s--
	}
	return s
}

// packDeflater is the deflater packs are written with, kept for the
// process's life (about 1 MB: its hash tables and window). It was a
// sync.Pool, which every garbage collection empties: under read load the
// collector runs several times a second, about as often as the audit
// writer commits, so most packs built a new deflater, about a sixth of the
// PostgreSQL audit writer's CPU in the audited read-hot profile (its
// allocation, zeroing and the collections it brought on;
// docs/design/security.md AUD-ARCH-7). Packs are written by one audit
// writer per process, so the lock is not contended.
var packDeflater struct {
	mu sync.Mutex
	w  *flate.Writer
}

// packRows encodes rows (sorted by cmpRows, all in second sec) as a pack's
// body: packFormat, then deflated: the count, the millisecond deltas (from
// the second's start, then from the previous row), the shape and patient
// codes (unsigned varints), and the key, resource and request columns
// (each a varint length and the bytes). Column by column, the deltas, the
// repeated codes and the lengths compress to little; the random bytes of
// the keys and of inline resource ids stay what they are.
func packRows(sec int64, rows []auditRow) []byte {
	raw := make([]byte, 0, len(rows)*48)
	raw = binary.AppendUvarint(raw, uint64(len(rows)))
	prev := sec * 1000
	for i := range rows {
		raw = binary.AppendUvarint(raw, uint64(rows[i].ms-prev))
		prev = rows[i].ms
	}
	for i := range rows {
		raw = binary.AppendUvarint(raw, uint64(rows[i].shape))
	}
	for i := range rows {
		raw = binary.AppendUvarint(raw, uint64(rows[i].patient))
	}
	for _, col := range [...]func(*auditRow) []byte{
		func(r *auditRow) []byte { return r.idk },
		func(r *auditRow) []byte { return r.res },
		func(r *auditRow) []byte { return r.req },
	} {
		for i := range rows {
			b := col(&rows[i])
			raw = binary.AppendUvarint(raw, uint64(len(b)))
			raw = append(raw, b...)
		}
	}
	var out bytes.Buffer
	out.Grow(len(raw)/2 + 64)
	out.WriteByte(packFormat)
	packDeflater.mu.Lock()
	defer packDeflater.mu.Unlock()
	if packDeflater.w == nil {
		packDeflater.w, _ = flate.NewWriter(&out, flate.BestSpeed) // a valid level never fails
	} else {
		packDeflater.w.Reset(&out)
	}
	// Writes to a bytes.Buffer do not fail.
	_, _ = packDeflater.w.Write(raw)
	_ = packDeflater.w.Close()
	packDeflater.w.Reset(nil) // hold no pack's buffer
	return out.Bytes()
}

// unpackRows decodes a pack of second sec (packRows).
func unpackRows(sec int64, body []byte) ([]auditRow, error) {
	if len(body) == 0 || body[0] != packFormat {
		return nil, fmt.Errorf("malformed audit pack (format)")
	}
	zr := flate.NewReader(bytes.NewReader(body[1:]))
	raw, err := io.ReadAll(io.LimitReader(zr, 1<<30))
	_ = zr.Close()
	if err != nil {
		return nil, fmt.Errorf("malformed audit pack: %w", err)
	}
	bad := fmt.Errorf("malformed audit pack (%d bytes)", len(body))
	p := raw
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	n, ok := uv()
	if !ok || n > packMaxEvents {
		return nil, bad
	}
	rows := make([]auditRow, n)
	ms := sec * 1000
	for i := range rows {
		d, ok := uv()
		if !ok || d >= 1000 {
			return nil, bad
		}
		ms += int64(d)
		rows[i].ms = ms
	}
	if n > 0 && rows[n-1].ms >= (sec+1)*1000 {
		return nil, bad
	}
	for _, col := range [...]func(*auditRow) *int64{
		func(r *auditRow) *int64 { return &r.shape },
		func(r *auditRow) *int64 { return &r.patient },
	} {
		for i := range rows {
			v, ok := uv()
			if !ok || v > 1<<62 {
				return nil, bad
			}
			*col(&rows[i]) = int64(v)
		}
	}
	for _, col := range [...]func(*auditRow) *[]byte{
		func(r *auditRow) *[]byte { return &r.idk },
		func(r *auditRow) *[]byte { return &r.res },
		func(r *auditRow) *[]byte { return &r.req },
	} {
		for i := range rows {
			l, ok := uv()
			if !ok || l > uint64(len(p)) {
				return nil, bad
			}
			*col(&rows[i]) = p[:l:l]
			p = p[l:]
		}
	}
	if len(p) != 0 {
		return nil, bad
	}
	return rows, nil
}

// writePacks stores rows (AppendAudit's, in the transaction holding the
// writer's advisory lock) as packs: rows whose event is already stored, or
// repeated earlier in rows, are skipped; the rest go in one pack per second.
func (a *Auth) writePacks(ctx context.Context, q Querier, rows []auditRow) error {
	seen := make(map[string]bool, len(rows))
	keep := make([]auditRow, 0, len(rows))
	for _, r := range rows {
		if k := r.key(); !seen[k] {
			seen[k] = true
			keep = append(keep, r)
		}
	}
	stored, err := a.storedKeys(ctx, q, keep)
	if err != nil {
		return err
	}
	if len(stored) > 0 {
		keep = slices.DeleteFunc(keep, func(r auditRow) bool { return stored[r.key()] })
	}
	if len(keep) == 0 {
		return nil
	}
	slices.SortFunc(keep, cmpRows)
	type pack struct {
		sec   int64
		n     int
		lo    int64
		hi    int64
		body  []byte
		texts [][]byte
	}
	var packs []pack
	for rest := keep; len(rest) > 0; {
		sec := auditSec(rest[0].ms)
		end := 1
		for end < len(rest) && auditSec(rest[end].ms) == sec {
			end++
		}
		p := pack{sec: sec, n: end, lo: rest[0].ms - sec*1000, hi: rest[end-1].ms - sec*1000, body: packRows(sec, rest[:end])}
		for i := range rest[:end] {
			if rest[i].textKey() {
				p.texts = append(p.texts, rest[i].idk)
			}
		}
		packs = append(packs, p)
		rest = rest[end:]
	}
	const perInsert = 200
	for rest := packs; len(rest) > 0; {
		chunk := rest[:min(len(rest), perInsert)]
		rest = rest[len(chunk):]
		var b bytes.Buffer
		b.WriteString(`INSERT INTO audit_packs (sec, n, lo, hi, body, text_ids) VALUES `)
		args := make([]any, 0, 6*len(chunk))
		for i, p := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			k := 6 * i
			fmt.Fprintf(&b, "($%d::bigint,$%d::integer,$%d::smallint,$%d::smallint,$%d::bytea,$%d::bytea[])", k+1, k+2, k+3, k+4, k+5, k+6)
			args = append(args, p.sec, p.n, p.lo, p.hi, p.body, p.texts) // nil texts: NULL
		}
		if _, err := q.Exec(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// storedKeys returns the keys (auditRow.key) of rows already stored: in
// the packs whose time range overlaps the compact keys' (for the writer's
// batches, contiguous in time, the previous batch's last pack or none), in
// any pack's text_ids, and in the rows of audit when it still holds any.
func (a *Auth) storedKeys(ctx context.Context, q Querier, rows []auditRow) (map[string]bool, error) {
	var legacyMS []int64
	var texts, legacyK [][]byte
	lo, hi := int64(1<<62), int64(-1<<62)
	for i := range rows {
		r := &rows[i]
		if r.textKey() {
			texts = append(texts, r.idk)
			continue
		}
		lo, hi = min(lo, r.ms), max(hi, r.ms)
		legacyMS, legacyK = append(legacyMS, r.ms), append(legacyK, r.idk)
	}
	stored := map[string]bool{}
	if len(legacyMS) > 0 {
		type packRow struct {
			sec  int64
			body []byte
		}
		rs, err := q.Query(ctx, `SELECT sec, body FROM audit_packs
WHERE sec BETWEEN $1 AND $2 AND sec * 1000 + hi >= $3 AND sec * 1000 + lo <= $4`, auditSec(lo), auditSec(hi), lo, hi)
		ps, err := collect(rs, err, func(r Row) (packRow, error) {
			var p packRow
			return p, r.Scan(&p.sec, &p.body)
		})
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			got, err := unpackRows(p.sec, p.body)
			if err != nil {
				return nil, err
			}
			for i := range got {
				stored[got[i].key()] = true
			}
		}
	}
	keys := func(rs Rows, err error) error {
		ks, err := collect(rs, err, func(r Row) (string, error) {
			var ms int64
			var k []byte
			if err := r.Scan(&ms, &k); err != nil {
				return "", err
			}
			x := auditRow{ms: ms, idk: k}
			return x.key(), nil
		})
		for _, k := range ks {
			stored[k] = true
		}
		return err
	}
	if len(texts) > 0 {
		if err := keys(q.Query(ctx, `SELECT 0::bigint, k FROM audit_packs, unnest(text_ids) AS k
WHERE text_ids IS NOT NULL AND k = ANY($1::bytea[])`, texts)); err != nil {
			return nil, err
		}
	}
	legacy, err := a.legacyRows(ctx, q)
	if err != nil || !legacy {
		return stored, err
	}
	if len(legacyMS) > 0 {
		if err := keys(q.Query(ctx, `SELECT o.recorded, o.idk FROM audit o
JOIN unnest($1::bigint[], $2::bytea[]) AS v(recorded, idk) ON o.recorded = v.recorded AND o.idk = v.idk`, legacyMS, legacyK)); err != nil {
			return nil, err
		}
	}
	// Migration 0011 stored every id of 0003's rows as text, the writer's
	// UUIDv7s too: a compact key is also looked for in that form.
	alias := map[string]string{}
	for i := range legacyMS {
		id, err := auditID(legacyK[i], legacyMS[i])
		if err != nil {
			return nil, err
		}
		k := append([]byte{0}, id...)
		texts = append(texts, k)
		alias[string(k)] = (&auditRow{ms: legacyMS[i], idk: legacyK[i]}).key()
	}
	if len(texts) > 0 {
		if err := keys(q.Query(ctx, `SELECT recorded, idk FROM audit WHERE idk < '\x01'::bytea AND idk = ANY($1::bytea[])`, texts)); err != nil {
			return nil, err
		}
	}
	for text, k := range alias {
		if stored[text] {
			stored[k] = true
		}
	}
	return stored, nil
}

// legacyRows reports whether audit (the rows before packs) held any row
// when this process first looked, since DropAudit last ran: no version that
// writes packs adds rows there.
func (a *Auth) legacyRows(ctx context.Context, q Querier) (bool, error) {
	switch a.legacy.Load() {
	case 1:
		return true, nil
	case 2:
		return false, nil
	}
	var has bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit)`).Scan(&has); err != nil {
		return false, err
	}
	if has {
		a.legacy.Store(1)
	} else {
		a.legacy.Store(2)
	}
	return has, nil
}

// listPacks returns the events of the packs recorded at or after sinceMS,
// in ListAudit's order, at least limit of them when there are (all when
// limit <= 0): whole seconds, a few dozen packs per query.
func (a *Auth) listPacks(ctx context.Context, q Querier, sinceMS int64, limit int) ([]auditRow, error) {
	type packRow struct {
		sec  int64
		body []byte
	}
	scan := func(r Row) (packRow, error) {
		var p packRow
		return p, r.Scan(&p.sec, &p.body)
	}
	const perQuery = 64
	var out []auditRow
	for cur := auditSec(sinceMS); ; {
		rs, err := q.Query(ctx, `SELECT sec, body FROM audit_packs WHERE sec >= $1 ORDER BY sec LIMIT $2`, cur, perQuery)
		ps, err := collect(rs, err, scan)
		if err != nil {
			return nil, err
		}
		full := len(ps) == perQuery
		if full {
			last := ps[len(ps)-1].sec
			if ps[0].sec == last {
				// One second fills the query: read all of it.
				rs, err := q.Query(ctx, `SELECT sec, body FROM audit_packs WHERE sec = $1`, last)
				if ps, err = collect(rs, err, scan); err != nil {
					return nil, err
				}
				cur = last + 1
			} else {
				// The last second may go on past the limit: read it next.
				for ps[len(ps)-1].sec == last {
					ps = ps[:len(ps)-1]
				}
				cur = last
			}
		}
		start := len(out)
		for _, p := range ps {
			rows, err := unpackRows(p.sec, p.body)
			if err != nil {
				return nil, err
			}
			for _, r := range rows {
				if r.ms >= sinceMS {
					out = append(out, r)
				}
			}
		}
		slices.SortFunc(out[start:], cmpRows)
		if !full || limit > 0 && len(out) >= limit {
			break
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
