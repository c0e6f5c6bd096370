package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func TestLimiterContract(t *testing.T) {
	storetest.RunLimiter(t, func(t *testing.T) store.Limiter { return NewLimiter() })
}

func TestLimiterSweepBoundsGrowth(t *testing.T) {
	ctx := context.Background()
	const rate, burst = 1.0, 2 // a used bucket is full again 2 s later
	tests := []struct {
		name string
		// between is how far the clock moves between batches.
		between time.Duration
		maxLen  int
	}{
		// The clock passes the sweep interval: each batch's predecessors
		// have refilled and are dropped.
		{"periodic sweep", 2 * sweepInterval, 2 * 500},
		// The clock hardly moves but buckets refill: the growth-triggered
		// sweep keeps the map within twice the busy buckets (plus the
		// minimum).
		{"growth sweep", 3 * time.Second, 2*minSweepLen + 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := storetest.NewFakeClock(storetest.T0)
			l := newLimiter(clock)
			for batch := range 40 {
				for i := range 500 {
					if _, _, err := l.Take(ctx, fmt.Sprintf("client-%d-%d", batch, i), rate, burst); err != nil {
						t.Fatal(err)
					}
				}
				if n := l.len(); n > tc.maxLen {
					t.Fatalf("batch %d: %d buckets held, want at most %d", batch, n, tc.maxLen)
				}
				clock.Advance(tc.between)
			}
		})
	}
}

func TestLimiterSweepKeepsBusyBuckets(t *testing.T) {
	// A bucket that has not refilled survives a sweep: dropping it would
	// hand its client a fresh burst.
	ctx := context.Background()
	clock := storetest.NewFakeClock(storetest.T0)
	l := newLimiter(clock)
	const rate, burst = 1.0 / 3600, 2 // one token an hour
	for range burst {
		if ok, _, err := l.Take(ctx, "busy", rate, burst); err != nil || !ok {
			t.Fatalf("Take = %v, %v; want allowed", ok, err)
		}
	}
	clock.Advance(2 * sweepInterval)
	for i := range 3 * minSweepLen { // both sweep triggers fire
		if _, _, err := l.Take(ctx, fmt.Sprint(i), 1000, 1); err != nil {
			t.Fatal(err)
		}
	}
	ok, retry, err := l.Take(ctx, "busy", rate, burst)
	if err != nil || ok {
		t.Fatalf("Take of the drained bucket after sweeps = %v, %v; want refused", ok, err)
	}
	// Two of the hour a token takes have passed.
	if want := time.Hour - 2*sweepInterval; retry < want-time.Second || retry > want {
		t.Errorf("retryAfter = %v, want about %v", retry, want)
	}
}

func TestLimiterNewLimitsMakeANewBucket(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewFakeClock(storetest.T0)
	l := newLimiter(clock)
	if ok, _, _ := l.Take(ctx, "k", 0.01, 1); !ok {
		t.Fatal("first Take refused")
	}
	if ok, _, _ := l.Take(ctx, "k", 0.01, 1); ok {
		t.Fatal("Take of the empty bucket allowed")
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
	}{
		{"burst changed", 0.01, 2},
		{"rate changed", 0.02, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.burst {
				if ok, _, err := l.Take(ctx, "k", tc.rate, tc.burst); err != nil || !ok {
					t.Fatalf("Take #%d under new limits = %v, %v; want allowed (a full new bucket)", i+1, ok, err)
				}
			}
			if ok, _, _ := l.Take(ctx, "k", tc.rate, tc.burst); ok {
				t.Errorf("Take past the new burst allowed")
			}
		})
	}
}
