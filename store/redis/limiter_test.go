package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func TestLimiterContract(t *testing.T) {
	url := redisURL(t)
	storetest.RunLimiter(t, func(t *testing.T) store.Limiter { return openTest(t, url).Limiter() })
}

func TestLimiterKeys(t *testing.T) {
	// The bucket lives under the Ephemeral's prefix (so prefix-scoped ACLs
	// and cleanup cover it) and expires once it has refilled.
	url := redisURL(t)
	ctx := context.Background()
	e := openTest(t, url)
	const rate, burst = 0.5, 3 // full again 2 s after one Take
	if ok, _, err := e.Limiter().Take(ctx, "client:abc", rate, burst); err != nil || !ok {
		t.Fatalf("Take = %v, %v; want allowed", ok, err)
	}
	ttl, err := e.c.TTL(ctx, e.prefix+"rate:client:abc").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 2*time.Second {
		t.Errorf("TTL of the bucket key = %v, want in (0, 2s]", ttl)
	}
	n, err := e.c.Exists(ctx, "rate:"+e.prefix+"client:abc").Result()
	if err != nil || n != 0 {
		t.Errorf("EXISTS of the unprefixed key = %d, %v; want 0", n, err)
	}
}

func TestLimit(t *testing.T) {
	tests := []struct {
		name     string
		rate     float64
		interval time.Duration // Period / Rate: the time between tokens
	}{
		{"one per second", 1, time.Second},
		{"fractional", 0.5, 2 * time.Second},
		{"not a divisor of a second", 3, 333333333 * time.Nanosecond},
		{"fast", 2500, 400 * time.Microsecond},
		{"beyond a token per nanosecond", 5e9, time.Nanosecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := limit(tc.rate, 7)
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Period / time.Duration(l.Rate); got != tc.interval || l.Burst != 7 {
				t.Errorf("limit(%v, 7) = %+v: interval %v, want %v and burst 7", tc.rate, l, got, tc.interval)
			}
		})
	}
}

func TestLimiterServerGone(t *testing.T) {
	// An unreachable Redis is an error marked store.ErrUnavailable, quickly:
	// never an allowed or refused answer.
	dead := newEphemeral(&goredis.Options{Addr: "127.0.0.1:1"}, "x:")
	t.Cleanup(func() { dead.Close() })
	start := time.Now()
	ok, _, err := dead.Limiter().Take(context.Background(), "k", 1, 1)
	if !errors.Is(err, store.ErrUnavailable) || ok {
		t.Errorf("Take = %v, %v; want an ErrUnavailable error", ok, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v, want < 2s", d)
	}
}

func TestLimiterTakeN(t *testing.T) {
	// TakeN takes all n tokens or none, from the same bucket as Take.
	url := redisURL(t)
	ctx := context.Background()
	l := openTest(t, url).Limiter()
	const rate, burst = 0.1, 10 // no refill within the test
	if ok, _, err := l.TakeN(ctx, "k", 6, rate, burst); err != nil || !ok {
		t.Fatalf("TakeN(6) of 10 = %v, %v; want allowed", ok, err)
	}
	ok, retry, err := l.TakeN(ctx, "k", 5, rate, burst)
	if err != nil || ok || retry <= 0 {
		t.Fatalf("TakeN(5) with 4 left = %v, %v, %v; want refused with a retry", ok, retry, err)
	}
	for i := range 4 { // the refused TakeN took nothing
		if ok, _, err := l.Take(ctx, "k", rate, burst); err != nil || !ok {
			t.Fatalf("Take #%d after the refused TakeN = %v, %v", i, ok, err)
		}
	}
	if ok, _, _ := l.Take(ctx, "k", rate, burst); ok {
		t.Fatal("an 11th token from a bucket of 10")
	}
	if _, _, err := l.TakeN(ctx, "k", 11, rate, burst); err == nil {
		t.Fatal("TakeN beyond the burst accepted")
	}
}
