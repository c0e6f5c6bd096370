package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestCopyBinaryAsPgx: rows copied by the store's own binary COPY encoder
// (PERF-PG-7) are stored exactly as pgx's CopyFrom stores the same values:
// every column type the writer uses, NULLs (nil, a nil []byte), empty text
// and bytea, non-ASCII text, -0, NaN, infinities and the integers' extremes.
// A value of another Go type than its column's is refused, not sent.
func TestCopyBinaryAsPgx(t *testing.T) {
	ctx := context.Background()
	s, _ := freshStore(t, storetest.NewFakeClock(storetest.T0))
	if _, err := s.pool.Exec(ctx, `CREATE TABLE kb_copy (src text, n integer, i4 integer, i8 bigint, t text COLLATE "C", b bytea, bo boolean, f double precision)`); err != nil {
		t.Fatal(err)
	}
	tbl := newCopyTable("kb_copy", []string{"src", "n", "i4", "i8", "t", "b", "bo", "f"},
		[]colType{colText, colInt4, colInt4, colInt8, colText, colBytea, colBool, colFloat8})
	vals := [][]any{
		{int32(0), int64(0), "", []byte{}, false, 0.0},
		{int32(math.MaxInt32), int64(math.MaxInt64), "Ada Lovelace", []byte{0, 1, 0xff}, true, math.Copysign(0, -1)},
		{int32(math.MinInt32), int64(math.MinInt64), "Zoë 北京 \t\n'\"\\", []byte("x"), true, math.NaN()},
		{int32(-1), int64(-1), strings.Repeat("long ", 2000), []byte(nil), nil, math.Inf(1)},
		{nil, nil, nil, nil, false, math.Inf(-1)},
		{int32(7), int64(1) << 40, "Patient/1", nil, true, 1e-300},
	}
	rows := func(src string) [][]any {
		var out [][]any
		for i, v := range vals {
			out = append(out, append([]any{src, int32(i)}, v...))
		}
		return out
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a := &applier{s: s, tx: tx, q: tx, ctx: ctx}
		if err := copyRows(a, tbl, rows("ours")); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"kb_copy"}, tbl.cols, pgx.CopyFromRows(rows("pgx"))); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The wrong Go type for a column fails the COPY (its transaction too),
	// and the other side of the run's rows is not stored.
	for _, bad := range [][]any{
		{"ours", int64(1), nil, nil, nil, nil, nil, nil},
		{"ours", nil, nil, int32(1), nil, nil, nil, nil},
		{"ours", nil, nil, nil, []byte("t"), nil, nil, nil},
		{"ours", nil, nil, nil, nil, "b", nil, nil},
		{"ours", nil, nil, nil, nil, nil, nil, float32(1)},
		{"ours", nil},
	} {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			a := &applier{s: s, tx: tx, q: tx, ctx: ctx}
			return copyRows(a, tbl, [][]any{{"bad", int32(100), nil, nil, nil, nil, nil, nil}, bad})
		})
		if err == nil {
			t.Errorf("%v: copied", bad)
		}
	}
	var bad int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM kb_copy WHERE src = 'bad'`).Scan(&bad); err != nil || bad != 0 {
		t.Errorf("%d rows of failed COPYs stored (%v)", bad, err)
	}
	// Index rows encoded as they come (copyBuf), over many pieces.
	if _, err := s.pool.Exec(ctx, `CREATE TABLE kb_copy_idx (src text, pid integer, code text COLLATE "C", lo bigint, num double precision, patient text COLLATE "C")`); err != nil {
		t.Fatal(err)
	}
	idx := newCopyTable("kb_copy_idx", []string{"src", "pid", "code", "lo", "num", "patient"},
		[]colType{colText, colInt4, colText, colInt8, colFloat8, colText})
	const n = 20_000 // about 50 bytes a row: several pieces
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a := &applier{s: s, tx: tx, q: tx, ctx: ctx}
		var c copyBuf
		var theirs [][]any
		for i := range n {
			code, patient := fmt.Sprint("code-", i), any(nil)
			c.row(6)
			c.text("ours")
			c.int4(int32(i))
			c.text(code)
			c.int8(int64(i) << 33)
			c.float8(float64(i) / 7)
			if i%3 == 0 {
				patient = fmt.Sprint("p", i)
				c.text(patient.(string))
			} else {
				c.null()
			}
			theirs = append(theirs, []any{"pgx", int32(i), code, int64(i) << 33, float64(i) / 7, patient})
		}
		if len(c.done) < 2 {
			t.Errorf("%d pieces, want several", len(c.done)+1)
		}
		if err := c.send(a, idx); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"kb_copy_idx"}, idx.cols, pgx.CopyFromRows(theirs))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var same bool
	var matched int
	if err := s.pool.QueryRow(ctx, `SELECT count(*), bool_and(o.code = p.code AND o.lo = p.lo AND float8send(o.num) = float8send(p.num)
AND o.patient IS NOT DISTINCT FROM p.patient) FROM kb_copy_idx o JOIN kb_copy_idx p ON o.src = 'ours' AND p.src = 'pgx' AND o.pid = p.pid`).Scan(&matched, &same); err != nil {
		t.Fatal(err)
	}
	if matched != n || !same {
		t.Errorf("index rows: %d matched, want %d; all the same: %v", matched, n, same)
	}
	read := func(src string) []string {
		rs, err := s.pool.Query(ctx, `SELECT n, i4, i8, t, b, bo, float8send(f), f IS NULL FROM kb_copy WHERE src = $1 ORDER BY n`, src)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rs.Next() {
			v, err := rs.Values()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%#v", v))
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ours, theirs := read("ours"), read("pgx")
	if len(ours) != len(vals) || len(theirs) != len(vals) {
		t.Fatalf("%d and %d rows, want %d", len(ours), len(theirs), len(vals))
	}
	for i := range ours {
		if ours[i] != theirs[i] {
			t.Errorf("row %d: ours %s\npgx's %s", i, ours[i], theirs[i])
		}
	}
}

// TestBulkPathDedupsManyIndexRows: a resource with more index rows than
// the writer compares one by one (dedupLinear, where it keeps a map)
// repeats none of them, on the bulk path, without a retry (COPY has no ON
// CONFLICT: a duplicate would fail the run's COPY), keeping each distinct
// row once; and the map kept for it does not leak into the next resource.
func TestBulkPathDedupsManyIndexRows(t *testing.T) {
	ctx := context.Background()
	s, _ := freshStore(t, storetest.NewFakeClock(storetest.T0))
	var many []store.IndexRow
	for i := range dedupLinear + 8 {
		many = append(many, storetest.Token("code", "http://loinc.org", fmt.Sprint(i%(dedupLinear/2))),
			storetest.Num("n", float64(i%3)), storetest.Str("name", fmt.Sprint("n", i%5)))
	}
	x := storetest.Res("Observation", "x", "p1", "", many...)
	// The next resource's rows equal some of x's: kept, they are its own.
	y := storetest.Res("Observation", "y", "p1", "", storetest.Token("code", "http://loinc.org", "1"), storetest.Num("n", 1),
		storetest.Token("code", "http://loinc.org", "1"))
	batch := []store.RecordWrite{storetest.Rec("session", "a", "h1", x, y)}
	sids, pids, err := s.internNames(ctx, s.pool, batch)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := storetest.T0
		a := &applier{s: s, tx: tx, q: tx, ctx: ctx, now: now, ms: now.UnixMilli(), timed: true, sids: sids, pids: pids}
		_, failed, err := a.applyBulk(batch)
		if len(failed) > 0 {
			t.Errorf("failed records %v", failed[0].Err)
		}
		return err
	})
	var retry *sqlcore.Retry
	if errors.As(err, &retry) {
		t.Fatalf("the bulk path failed a write (%v)", err)
	} else if err != nil {
		t.Fatal(err)
	}
	count := func(q string) (n int) {
		if err := s.pool.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []struct {
		q    string
		want int
	}{
		{`SELECT count(*) FROM idx_token x JOIN resources r USING (rid) WHERE r.id = 'x'`, dedupLinear / 2},
		{`SELECT count(*) FROM idx_number x JOIN resources r USING (rid) WHERE r.id = 'x'`, 3},
		{`SELECT count(*) FROM idx_string x JOIN resources r USING (rid) WHERE r.id = 'x'`, 5},
		{`SELECT count(*) FROM idx_token x JOIN resources r USING (rid) WHERE r.id = 'y'`, 1},
		{`SELECT count(*) FROM idx_number x JOIN resources r USING (rid) WHERE r.id = 'y'`, 1},
	} {
		if got := count(c.q); got != c.want {
			t.Errorf("%s: %d, want %d", c.q, got, c.want)
		}
	}
}
