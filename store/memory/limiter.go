package memory

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ketabridge/ketabridge/store"
)

// Limiter is the in-memory store.Limiter of the embedded mode (and the local
// fallback when the shared one is unreachable): one token bucket
// (golang.org/x/time/rate) per key. Safe for concurrent use; the zero value
// is not usable, call NewLimiter.
//
// Memory stays bounded by the keys in use: a bucket that has refilled to
// burst answers exactly like a new one, so a sweep (on the policy of
// Ephemeral's: every sweepInterval, or when the map has doubled) drops full
// buckets without changing any answer. What remains are the keys that took
// a token within the time their bucket needs to refill.
type Limiter struct {
	clock store.Clock

	mu        sync.Mutex
	m         map[string]*bucket
	lastSweep time.Time
	sweepLen  int // entries left by the last sweep
}

// bucket is one key's limiter and the limits it was made for.
type bucket struct {
	lim   *rate.Limiter
	rate  float64
	burst int
}

var _ store.Limiter = (*Limiter)(nil)

// NewLimiter returns a Limiter on the system clock with no buckets.
func NewLimiter() *Limiter { return newLimiter(store.SystemClock{}) }

func newLimiter(clock store.Clock) *Limiter {
	return &Limiter{clock: clock, m: make(map[string]*bucket), lastSweep: clock.Now()}
}

// Take implements store.Limiter. A key's bucket is made full on first use
// and made anew (full) when rate or burst differ from the last Take's. A
// refused Take takes nothing. rate must be finite and positive and burst at
// least 1.
func (l *Limiter) Take(_ context.Context, key string, r float64, burst int) (bool, time.Duration, error) {
	if !(r > 0) || math.IsInf(r, 1) || burst < 1 {
		return false, 0, fmt.Errorf("memory limiter: rate %g must be finite and positive and burst %d at least 1", r, burst)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b := l.m[key]
	if b == nil || b.rate != r || b.burst != burst {
		// Sweep before storing: the new bucket is full and would go.
		l.sweep(now)
		b = &bucket{lim: rate.NewLimiter(rate.Limit(r), burst), rate: r, burst: burst}
		l.m[key] = b
	}
	if b.lim.AllowN(now, 1) {
		return true, 0, nil
	}
	// The bucket holds less than one token (AllowN refused and took
	// nothing): the next is due when the missing fraction has refilled.
	missing := 1 - b.lim.TokensAt(now)
	wait := time.Duration(math.Ceil(missing / r * float64(time.Second)))
	return false, max(wait, time.Nanosecond), nil
}

// sweep drops the full buckets when a sweep is due. Callers hold mu.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepInterval && (len(l.m) < minSweepLen || len(l.m) < 2*l.sweepLen) {
		return
	}
	for k, b := range l.m {
		if b.lim.TokensAt(now) >= float64(b.burst) {
			delete(l.m, k)
		}
	}
	l.lastSweep, l.sweepLen = now, len(l.m)
}

// len returns the number of buckets held (tests).
func (l *Limiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
