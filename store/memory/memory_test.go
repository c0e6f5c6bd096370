package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func TestEphemeralContract(t *testing.T) {
	storetest.RunEphemeral(t, func(t *testing.T, clock store.Clock) store.Ephemeral { return NewEphemeral(clock) })
}

func TestSweepBoundsGrowth(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// between is how far the clock moves between batches.
		between time.Duration
		perTTL  time.Duration
		maxLen  int
	}{
		// Short-lived keys, clock moving past the sweep interval: each batch's
		// predecessor is gone.
		{"periodic sweep", 2 * sweepInterval, time.Second, 2 * 500},
		// Clock hardly moving but keys expiring: the growth-triggered sweep
		// keeps the map within twice the live entries (plus the minimum).
		{"growth sweep", 2 * time.Second, time.Second, 2*minSweepLen + 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := storetest.NewFakeClock(storetest.T0)
			e := NewEphemeral(clock)
			for batch := range 40 {
				for i := range 500 {
					if _, err := e.Claim(ctx, fmt.Sprintf("jti-%d-%d", batch, i), tc.perTTL); err != nil {
						t.Fatal(err)
					}
				}
				if n := e.len(); n > tc.maxLen {
					t.Fatalf("batch %d: %d entries held, want at most %d", batch, n, tc.maxLen)
				}
				clock.Advance(tc.between)
			}
		})
	}
}

func TestLiveEntriesSurviveSweep(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewFakeClock(storetest.T0)
	e := NewEphemeral(clock)
	if err := e.Put(ctx, "keep", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range 3 * minSweepLen {
		if err := e.Put(ctx, fmt.Sprint(i), []byte("x"), time.Millisecond); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Millisecond)
	}
	clock.Advance(2 * sweepInterval)
	if err := e.Put(ctx, "trigger", nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := e.len(); n != 2 {
		t.Errorf("%d entries after sweep, want 2 (keep, trigger)", n)
	}
	if v, err := e.Get(ctx, "keep"); err != nil || string(v) != "v" {
		t.Errorf("Get(keep) = %q, %v", v, err)
	}
}
