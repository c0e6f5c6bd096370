package storetest

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// RunLimiter runs the store.Limiter contract suite against fresh limiters
// made by newLimiter (one per subtest). It runs on the wall clock, because a
// shared limiter (Redis) refills by its server's clock: the waits are short
// (well under a second each) and every bound has slack for a loaded machine.
//
// Beyond the interface's words the suite pins down: a refused Take takes
// nothing (hammering an empty bucket does not push the next token back);
// refill stops at burst; a rate that is not finite and positive, or a burst
// below 1, is an error.
func RunLimiter(t *testing.T, newLimiter func(t *testing.T) store.Limiter) {
	ctx := context.Background()

	t.Run("burst then refused", func(t *testing.T) {
		l := newLimiter(t)
		const rate, burst = 0.5, 5 // one token every 2 s: none refills during the test
		start := time.Now()
		for i := range burst {
			ok, _, err := l.Take(ctx, "k", rate, burst)
			if err != nil || !ok {
				t.Fatalf("Take #%d of the burst = %v, %v; want allowed", i+1, ok, err)
			}
		}
		ok, retry, err := l.Take(ctx, "k", rate, burst)
		elapsed := time.Since(start)
		if err != nil || ok {
			t.Fatalf("Take past the burst = %v, %v; want refused", ok, err)
		}
		// The next token is due 1/rate after the first Take, which was at
		// most elapsed ago.
		interval := seconds(1 / rate)
		if lo, hi := interval-elapsed-100*time.Millisecond, interval+50*time.Millisecond; retry < lo || retry > hi || retry <= 0 {
			t.Errorf("retryAfter = %v, want about %v (in [%v, %v])", retry, interval, lo, hi)
		}
	})

	t.Run("refill over time", func(t *testing.T) {
		l := newLimiter(t)
		const rate, burst = 5.0, 2 // one token every 200 ms
		drain(t, l, "k", rate, burst)
		_, retry, err := l.Take(ctx, "k", rate, burst)
		if err != nil || retry <= 0 {
			t.Fatalf("Take of the empty bucket: retryAfter = %v, %v; want > 0", retry, err)
		}
		// Refused Takes take nothing: they must not delay the next token.
		for range 5 {
			if ok, _, err := l.Take(ctx, "k", rate, burst); err != nil || ok {
				t.Fatalf("Take of the empty bucket = %v, %v; want refused", ok, err)
			}
		}
		time.Sleep(retry + 30*time.Millisecond)
		if ok, retry2, err := l.Take(ctx, "k", rate, burst); err != nil || !ok {
			t.Fatalf("Take after waiting retryAfter (%v) = %v, %v (retryAfter %v); want allowed", retry, ok, err, retry2)
		}
		if ok, _, err := l.Take(ctx, "k", rate, burst); err != nil || ok {
			t.Errorf("second Take after one token refilled = %v, %v; want refused", ok, err)
		}
		// Waiting twice the time to fill the bucket refills burst tokens,
		// not more.
		time.Sleep(2 * seconds(burst/rate))
		for i := range burst {
			if ok, _, err := l.Take(ctx, "k", rate, burst); err != nil || !ok {
				t.Fatalf("Take #%d after a full refill = %v, %v; want allowed", i+1, ok, err)
			}
		}
		if ok, _, err := l.Take(ctx, "k", rate, burst); err != nil || ok {
			t.Errorf("Take past a full refill = %v, %v; want refused (refill stops at burst)", ok, err)
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		l := newLimiter(t)
		const rate, burst = 0.1, 1
		drain(t, l, "a", rate, burst)
		if ok, _, err := l.Take(ctx, "b", rate, burst); err != nil || !ok {
			t.Fatalf("Take of b after a is empty = %v, %v; want allowed", ok, err)
		}
		if ok, _, err := l.Take(ctx, "b", rate, burst); err != nil || ok {
			t.Errorf("second Take of b = %v, %v; want refused", ok, err)
		}
		if ok, _, err := l.Take(ctx, "a", rate, burst); err != nil || ok {
			t.Errorf("Take of a after b = %v, %v; want refused", ok, err)
		}
	})

	t.Run("concurrent takes", func(t *testing.T) {
		l := newLimiter(t)
		const rate, burst = 20.0, 10
		const workers, each = 16, 8
		var allowed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for range each {
					ok, retry, err := l.Take(ctx, "shared", rate, burst)
					if err != nil {
						t.Errorf("Take: %v", err)
						return
					}
					if ok {
						allowed.Add(1)
					} else if retry <= 0 {
						t.Errorf("refused with retryAfter %v, want > 0", retry)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		maxAllowed := burst + int64(math.Floor(elapsed.Seconds()*rate)) + 1
		if n := allowed.Load(); n < burst || n > maxAllowed {
			t.Errorf("%d of %d concurrent Takes allowed in %v, want between %d and %d (burst + elapsed*rate + 1)",
				n, workers*each, elapsed, burst, maxAllowed)
		}
	})

	t.Run("invalid limits", func(t *testing.T) {
		l := newLimiter(t)
		tests := []struct {
			name  string
			rate  float64
			burst int
		}{
			{"zero rate", 0, 1},
			{"negative rate", -1, 1},
			{"NaN rate", math.NaN(), 1},
			{"infinite rate", math.Inf(1), 1},
			{"zero burst", 1, 0},
			{"negative burst", 1, -1},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if ok, _, err := l.Take(ctx, "k", tc.rate, tc.burst); err == nil {
					t.Errorf("Take(rate %v, burst %d) = %v, nil; want an error", tc.rate, tc.burst, ok)
				}
			})
		}
	})
}

// drain takes key's burst tokens, failing t unless each is allowed.
func drain(t *testing.T, l store.Limiter, key string, rate float64, burst int) {
	t.Helper()
	for i := range burst {
		if ok, _, err := l.Take(context.Background(), key, rate, burst); err != nil || !ok {
			t.Fatalf("Take #%d of a full bucket = %v, %v; want allowed", i+1, ok, err)
		}
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
