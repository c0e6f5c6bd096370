package redis

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ketabridge/ketabridge/store"
)

// Limiter is the Redis store.Limiter, shared by replicas: GCRA (the token
// bucket expressed as a "theoretical arrival time" per key) by
// github.com/go-redis/redis_rate, one Lua script round trip per Take. The
// script reads the Redis server's clock, so replicas with skewed clocks
// still share one bucket. Keys are <prefix>rate:<key> and expire once their
// bucket has refilled, so Redis holds only buckets in use. Errors are
// marked store.ErrUnavailable like the Ephemeral's; the caller decides what
// a limiter it cannot reach means (the FHIR API falls back to a local one).
type Limiter struct {
	rl *redis_rate.Limiter
}

var _ store.Limiter = (*Limiter)(nil)

// Limiter returns a Limiter over e's connection pool (and its timeouts) and
// key prefix. It is closed with e.
func (e *Ephemeral) Limiter() *Limiter {
	return &Limiter{rl: redis_rate.NewLimiter(prefixed{Client: e.c, prefix: e.prefix})}
}

// Take implements store.Limiter. A refused Take takes nothing. rate must be
// finite and positive and burst at least 1.
func (l *Limiter) Take(ctx context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	lim, err := limit(rate, burst)
	if err != nil {
		return false, 0, err
	}
	res, err := l.rl.Allow(ctx, key, lim)
	if err != nil {
		return false, 0, wrap("limiter take", err)
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, max(res.RetryAfter, time.Nanosecond), nil
}

var _ store.BatchLimiter = (*Limiter)(nil)

// TakeN implements store.BatchLimiter: n tokens in one script run, or none.
func (l *Limiter) TakeN(ctx context.Context, key string, n int, rate float64, burst int) (bool, time.Duration, error) {
	lim, err := limit(rate, burst)
	if err != nil {
		return false, 0, err
	}
	if n < 1 || n > burst {
		return false, 0, fmt.Errorf("redis limiter: n %d must be from 1 to the burst %d", n, burst)
	}
	res, err := l.rl.AllowN(ctx, key, lim, n)
	if err != nil {
		return false, 0, wrap("limiter take", err)
	}
	if res.Allowed >= n {
		return true, 0, nil
	}
	return false, max(res.RetryAfter, time.Nanosecond), nil
}

// limit expresses rate tokens per second as redis_rate's integer Rate per
// Period: the script's emission interval is Period/Rate seconds, so one
// token per 1/rate s, rounded to the nanosecond (at least 1 ns, which
// caps the rate at 10^9/s).
func limit(rate float64, burst int) (redis_rate.Limit, error) {
	if !(rate > 0) || math.IsInf(rate, 1) || burst < 1 {
		return redis_rate.Limit{}, fmt.Errorf("redis limiter: rate %g must be finite and positive and burst %d at least 1", rate, burst)
	}
	period := max(time.Duration(math.Round(float64(time.Second)/rate)), time.Nanosecond)
	return redis_rate.Limit{Rate: 1, Burst: burst, Period: period}, nil
}

// prefixed is the client redis_rate runs its script through, putting the
// Ephemeral's prefix before every key (redis_rate's own "rate:" prefix
// follows), so every key of this store begins with the prefix.
type prefixed struct {
	*goredis.Client
	prefix string
}

func (p prefixed) keys(ks []string) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = p.prefix + k
	}
	return out
}

func (p prefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *goredis.Cmd {
	return p.Client.Eval(ctx, script, p.keys(keys), args...)
}

func (p prefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *goredis.Cmd {
	return p.Client.EvalSha(ctx, sha1, p.keys(keys), args...)
}

func (p prefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *goredis.Cmd {
	return p.Client.EvalRO(ctx, script, p.keys(keys), args...)
}

func (p prefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *goredis.Cmd {
	return p.Client.EvalShaRO(ctx, sha1, p.keys(keys), args...)
}

func (p prefixed) Del(ctx context.Context, keys ...string) *goredis.IntCmd {
	return p.Client.Del(ctx, p.keys(keys)...)
}
