package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// redisURL is the test server's URL (storetest.ServiceURL).
func redisURL(t *testing.T) string {
	return storetest.ServiceURL(t, "KETABRIDGE_TEST_REDIS_URL")
}

// openTest opens an Ephemeral under a fresh random prefix and deletes every
// key under that prefix when t ends.
func openTest(t *testing.T, url string) *Ephemeral {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "ketabridge-test:" + hex.EncodeToString(b[:]) + ":"
	e, err := Open(context.Background(), url, prefix)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := e.DeleteAll(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// TestEphemeralContract runs storetest's Ephemeral suite on Redis. Redis
// expires keys by its own clock, which the suite's FakeClock cannot move, so
// each store is wrapped in a travelingEphemeral: when the suite advances its
// clock by d, every key under the store's prefix has d taken off its
// remaining time to live in Redis (an expired key is deleted, as Redis would
// have), and the suite's ttls and margins (a minute, a second) apply
// unscaled. Nothing sleeps, so a loaded machine cannot push a "just before
// the ttl" case past it (the wall-clock version, with 100 ms margins, once
// failed that way).
func TestEphemeralContract(t *testing.T) {
	url := redisURL(t)
	storetest.RunEphemeral(t, func(t *testing.T, clock store.Clock) store.Ephemeral {
		e := openTest(t, url)
		return &travelingEphemeral{Ephemeral: e, clock: clock, last: clock.Now()}
	})
}

// travelingEphemeral moves Redis's expiry for its keys along with the
// suite's clock before each call (TestEphemeralContract).
type travelingEphemeral struct {
	*Ephemeral
	clock store.Clock

	mu   sync.Mutex
	last time.Time // the suite's time at the previous call
}

// travelScript takes ARGV[1] milliseconds off the remaining ttl of each key
// in KEYS, deleting those it leaves with none; keys without a ttl are left.
var travelScript = goredis.NewScript(`
local d = tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  local left = redis.call('PTTL', k)
  if left > 0 then
    if left <= d then redis.call('DEL', k) else redis.call('PEXPIRE', k, left - d) end
  end
end
return 0`)

// travel applies the time the suite's clock moved since the previous call.
// Concurrent callers wait for one another (the suite never advances its
// clock during a concurrent burst, so only the first moves anything).
func (s *travelingEphemeral) travel(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	d := now.Sub(s.last)
	s.last = now
	if d <= 0 {
		return nil
	}
	var keys []string
	iter := s.c.Scan(ctx, 0, s.prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil || len(keys) == 0 {
		return err
	}
	return travelScript.Run(ctx, s.c, keys, d.Milliseconds()).Err()
}

func (s *travelingEphemeral) Put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := s.travel(ctx); err != nil {
		return err
	}
	return s.Ephemeral.Put(ctx, key, val, ttl)
}

func (s *travelingEphemeral) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.travel(ctx); err != nil {
		return nil, err
	}
	return s.Ephemeral.Get(ctx, key)
}

func (s *travelingEphemeral) Take(ctx context.Context, key string) ([]byte, error) {
	if err := s.travel(ctx); err != nil {
		return nil, err
	}
	return s.Ephemeral.Take(ctx, key)
}

func (s *travelingEphemeral) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := s.travel(ctx); err != nil {
		return false, err
	}
	return s.Ephemeral.Claim(ctx, key, ttl)
}

func (s *travelingEphemeral) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if err := s.travel(ctx); err != nil {
		return 0, err
	}
	return s.Ephemeral.Incr(ctx, key, ttl)
}

func (s *travelingEphemeral) Delete(ctx context.Context, key string) error {
	if err := s.travel(ctx); err != nil {
		return err
	}
	return s.Ephemeral.Delete(ctx, key)
}

func TestPrefixIsolates(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	a, b := openTest(t, url), openTest(t, url)
	if err := a.Put(ctx, "k", []byte("a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get from another prefix: err = %v, want ErrNotFound", err)
	}
	n, err := a.c.Exists(ctx, a.prefix+"k").Result()
	if err != nil || n != 1 {
		t.Errorf("EXISTS prefixed key = %d, %v; want 1", n, err)
	}
}

func TestNonPositiveTTL(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	e := openTest(t, url)
	tests := []struct {
		name string
		ttl  time.Duration
	}{
		{"zero", 0},
		{"negative", -time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.Put(ctx, "p", []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := e.Put(ctx, "p", []byte("v"), tc.ttl); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Get(ctx, "p"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get after Put with ttl %v: err = %v, want ErrNotFound", tc.ttl, err)
			}
			for i := range 2 {
				ok, err := e.Claim(ctx, "c", tc.ttl)
				if err != nil || !ok {
					t.Errorf("Claim #%d = %v, %v; want true (nothing lasts)", i+1, ok, err)
				}
				n, err := e.Incr(ctx, "i", tc.ttl)
				if err != nil || n != 1 {
					t.Errorf("Incr #%d = %d, %v; want 1 (nothing lasts)", i+1, n, err)
				}
			}
		})
	}
}

func TestUnreachableFailsFast(t *testing.T) {
	tests := []struct {
		name string
		url  string
	}{
		{"nothing listening", "redis://127.0.0.1:1/0"},
		// A blackholed address: the dial timeout bounds it.
		{"unroutable", "redis://10.255.255.1:6379/0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			e, err := Open(context.Background(), tc.url, "x:")
			if err == nil {
				e.Close()
				t.Fatal("Open succeeded")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Open took %v, want < 2s", d)
			}
		})
	}
}

func TestServerGoneFailsClosed(t *testing.T) {
	// Every operation of an Ephemeral whose server is unreachable returns an
	// error (never ErrNotFound, a false claim or a count) quickly: callers
	// fail closed.
	ctx := context.Background()
	dead := newEphemeral(&goredis.Options{Addr: "127.0.0.1:1"}, "x:")
	t.Cleanup(func() { dead.Close() })
	ops := []struct {
		name string
		run  func() error
	}{
		{"Put", func() error { return dead.Put(ctx, "k", []byte("v"), time.Minute) }},
		{"Get", func() error { _, err := dead.Get(ctx, "k"); return err }},
		{"Take", func() error { _, err := dead.Take(ctx, "k"); return err }},
		{"Claim", func() error { _, err := dead.Claim(ctx, "k", time.Minute); return err }},
		{"Incr", func() error { _, err := dead.Incr(ctx, "k", time.Minute); return err }},
		{"Delete", func() error { return dead.Delete(ctx, "k") }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			start := time.Now()
			err := op.run()
			if err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("err = %v, want a connection error", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v, want < 2s", d)
			}
		})
	}
}
