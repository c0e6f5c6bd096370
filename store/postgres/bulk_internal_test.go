package postgres

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestBulkPathNeedsNoRetry: the batches the bulk path decides itself (a
// record twice, a resource moved within the batch, duplicate index rows)
// are written by it, not by a failed attempt rerun record by record
// (storetest.RunBatchApply checks the answers; this that they are the bulk
// path's).
func TestBulkPathNeedsNoRetry(t *testing.T) {
	ctx := context.Background()
	s, _ := freshStore(t, storetest.NewFakeClock(storetest.T0))
	x := storetest.Res("Observation", "x", "p1", "", storetest.Token("code", "http://loinc.org", "1"), storetest.Token("code", "http://loinc.org", "1"),
		storetest.Num("n", 0), storetest.Num("n", math.Copysign(0, -1)), storetest.Num("n", math.NaN()), storetest.Num("n", math.NaN()),
		store.IndexRow{Param: "name", Kind: store.KindString, Value: "Ada"}, store.IndexRow{Param: "name", Kind: store.KindString, Value: "ada"})
	y := storetest.Res("Observation", "y", "p1", "")
	batches := [][]store.RecordWrite{
		{storetest.Rec("session", "a", "h1", x, y), storetest.Rec("session", "a", "h2", x, y)},
		{storetest.Rec("session", "a", "h3", y), storetest.Rec("session", "b", "h1", x)},
	}
	for i, batch := range batches {
		sids, pids, err := s.internNames(ctx, s.pool, batch)
		if err != nil {
			t.Fatal(err)
		}
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			now := storetest.T0
			a := &applier{s: s, tx: tx, q: tx, ctx: ctx, now: now, ms: now.UnixMilli(), timed: true, sids: sids, pids: pids}
			_, failed, err := a.applyBulk(batch)
			if len(failed) > 0 {
				t.Errorf("batch %d: failed records %v", i, failed[0].Err)
			}
			return err
		})
		var retry *sqlcore.Retry
		if errors.As(err, &retry) {
			t.Errorf("batch %d: the bulk path failed a write (%v)", i, err)
		} else if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
}

// TestRestamp: a run's rows decided at one time and restamped at another
// are those decided at the other: lastUpdated in every row, the bodies as
// store.StampMeta stamps them (created and new versions; a deletion has no
// body).
func TestRestamp(t *testing.T) {
	t0, t1 := storetest.T0, storetest.T0.Add(1234*time.Millisecond)
	x := storetest.Res("Observation", "x", "p1", `"status":"final"`)
	y := storetest.Res("Observation", "y", "p1", `"meta":{"profile":["http://example.org/p"]},"status":"final"`)
	stamp := func(rw *store.ResourceWrite, v int64, at time.Time) []byte {
		b, err := store.StampMeta(rw.Body, v, at)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	w := &bulkRows{ms: t0.UnixMilli()}
	w.newSrc = [][]any{{int64(1), "session", "a", "h", []byte{}, "", w.ms}}
	w.newRes = [][]any{{int64(1), "Observation", "x", int64(1), w.ms, false, "p1", []byte{}, int64(1)}}
	w.hist = [][]any{
		{int64(1), int64(1), w.ms, false, "p1", stamp(&x, 1, t0)},
		{int64(2), int64(3), w.ms, false, "p1", stamp(&y, 3, t0)},
		{int64(3), int64(2), w.ms, true, "p1", nil},
	}
	w.stamp = []stamped{{&x, 1}, {&y, 3}, {}}
	if err := w.restamp(t1); err != nil {
		t.Fatal(err)
	}
	ms := t1.UnixMilli()
	if w.ms != ms || w.newSrc[0][6] != ms || w.newRes[0][4] != ms {
		t.Errorf("times %d %v %v, want %d", w.ms, w.newSrc[0][6], w.newRes[0][4], ms)
	}
	for i, want := range [][]byte{stamp(&x, 1, t1), stamp(&y, 3, t1), nil} {
		if w.hist[i][2] != ms {
			t.Errorf("history row %d at %v, want %d", i, w.hist[i][2], ms)
		}
		if got, _ := w.hist[i][5].([]byte); !bytes.Equal(got, want) {
			t.Errorf("history row %d body %s, want %s", i, got, want)
		}
	}
	// A body not stamped as StampMeta stamps is stamped again.
	w.hist[0][5] = []byte(`{"id":"x"}`)
	t2 := t1.Add(time.Second)
	if err := w.restamp(t2); err != nil {
		t.Fatal(err)
	}
	if got := w.hist[0][5].([]byte); !bytes.Equal(got, stamp(&x, 1, t2)) {
		t.Errorf("body stamped elsewhere: %s, want %s", got, stamp(&x, 1, t2))
	}
}
