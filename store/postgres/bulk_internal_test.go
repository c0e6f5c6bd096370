package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math"
	"testing"

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
	url := storetest.ServiceURL(t, "KETABRIDGE_TEST_DATABASE_URL")
	ctx := context.Background()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	u, drop, err := NewSchema(ctx, url, "kb_test_"+hex.EncodeToString(rnd[:]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop(context.Background()) })
	s, err := Open(ctx, u, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	x := storetest.Res("Observation", "x", "p1", "", storetest.Token("code", "http://loinc.org", "1"), storetest.Token("code", "http://loinc.org", "1"),
		storetest.Num("n", 0), storetest.Num("n", math.Copysign(0, -1)), storetest.Num("n", math.NaN()), storetest.Num("n", math.NaN()),
		store.IndexRow{Param: "name", Kind: store.KindString, Value: "Ada"}, store.IndexRow{Param: "name", Kind: store.KindString, Value: "ada"})
	y := storetest.Res("Observation", "y", "p1", "")
	batches := [][]store.RecordWrite{
		{storetest.Rec("session", "a", "h1", x, y), storetest.Rec("session", "a", "h2", x, y)},
		{storetest.Rec("session", "a", "h3", y), storetest.Rec("session", "b", "h1", x)},
	}
	for i, batch := range batches {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			now := storetest.T0
			a := &applier{s: s, tx: tx, q: tx, ctx: ctx, now: now, ms: now.UnixMilli(), timed: true}
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
