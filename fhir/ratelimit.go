package fhir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

// ErrThrottled is the answer to a client over its request rate: 429
// throttled, with Retry-After (RFC 6585 §4, RFC 9110 §10.2.3). Its details
// name no client and no patient.
var ErrThrottled = NewError(http.StatusTooManyRequests).WithDetails("request rate limit exceeded")

// RateLimit limits the requests of each OAuth client (the client_id of the
// verified access token) with a token bucket: Burst requests at once,
// refilled at Rate per second (docs/design/security.md PRIV-10). Its
// Middleware charges each request once, right after auth.Authenticate and
// before anything else, on the FHIR API (the CapabilityStatement, which needs
// no token, is not charged) and on the ingest API. Requests without a valid
// token are not charged: they fail with 401 before it.
//
// When Limiter fails (Redis down), the request is charged to Fallback, a
// local bucket per replica, so the API neither fails (500/503) nor goes
// unlimited; with no Fallback, or when it fails too, the request is served.
// Each failed Take calls OnError.
type RateLimit struct {
	// Limiter holds the buckets: shared by replicas (store/redis) or local
	// (store/memory).
	Limiter store.Limiter
	// Rate is the refill rate in requests per second; Burst the bucket size.
	Rate  float64
	Burst int
	// Fallback is the local limiter used when Limiter fails; nil serves such
	// requests unlimited.
	Fallback store.Limiter
	// OnError, when set, is called for each failed Take (e.g. to count the
	// failures in a metric).
	OnError func()
	// Lease, when above 1 and Limiter is a store.BatchLimiter (Redis), is
	// how many tokens a replica takes from the shared bucket per round trip
	// and then spends locally: one round trip per Lease requests of a busy
	// client instead of one per request. The shared bucket is still charged
	// for every token, so the rate across replicas holds; a leased token not
	// spent within LeaseTTL expires unused, so a replica can hold back at
	// most Lease tokens for that long (a client gets less, never more). When
	// fewer than Lease tokens are left, one is taken as usual.
	Lease int
	// Clock times the leases; nil uses the wall clock.
	Clock store.Clock

	leaseMu sync.Mutex
	leases  map[string]*lease

	// keys memoizes clientKey by client id (PERF-ST-19): a client's
	// requests need its bucket key each, and the hash is the same every
	// time. Bounded by maxKeys, then started afresh.
	keysMu sync.RWMutex
	keys   map[string]string
}

// maxKeys bounds RateLimit's memo of bucket keys.
const maxKeys = 4096

// LeaseTTL is how long leased tokens may be spent (see RateLimit.Lease).
const LeaseTTL = 50 * time.Millisecond

// MaxLease is the most tokens a gateway leases at once: at 1,024, a client
// served 30,000 requests/s by one replica costs it about 30 round trips/s
// (docs/design/security.md PRIV-21).
const MaxLease = 1024

// lease is a client's tokens taken from the shared bucket, not yet spent.
type lease struct {
	left    int
	expires time.Time
	// asking, while a request asks Limiter for the next lease, is closed
	// when it has the answer.
	asking chan struct{}
}

// Validate reports a RateLimit that cannot limit: no Limiter, a Rate that
// is not finite and positive, or a Burst below 1.
func (r *RateLimit) Validate() error {
	switch {
	case r.Limiter == nil:
		return errors.New("fhir: RateLimit.Limiter is required")
	case !(r.Rate > 0) || math.IsInf(r.Rate, 1):
		return fmt.Errorf("fhir: RateLimit.Rate %g must be finite and positive", r.Rate)
	case r.Burst < 1:
		return fmt.Errorf("fhir: RateLimit.Burst %d must be at least 1", r.Burst)
	}
	return nil
}

// Middleware charges the request's client one token (the caller
// auth.Authenticate put in the request's context) and answers 429 throttled,
// with Retry-After, when its bucket is empty. A nil RateLimit, or a request
// without a verified caller, charges nothing.
func (r *RateLimit) Middleware(next echo.HandlerFunc) echo.HandlerFunc {
	if r == nil {
		return next
	}
	return func(c echo.Context) error {
		info, ok := auth.FromContext(c.Request().Context())
		if !ok {
			return next(c)
		}
		if allowed, retry := r.take(c.Request().Context(), r.keyOf(info.ClientID)); !allowed {
			c.Response().Header().Set(echo.HeaderRetryAfter, retryAfter(retry))
			return ErrThrottled
		}
		return next(c)
	}
}

func (r *RateLimit) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

// take spends a leased token, or asks Limiter (for a new lease when Lease
// is set), then Fallback when Limiter fails; it fails open. Of concurrent
// requests of a client that find its lease spent, one asks for the next
// lease and the others wait for that answer (a busy client's requests
// would otherwise each send a round trip at once, and the shared bucket
// would lend several leases where one would do).
func (r *RateLimit) take(ctx context.Context, key string) (bool, time.Duration) {
	if bl, ok := r.Limiter.(store.BatchLimiter); ok && r.Lease > 1 {
		for range 2 {
			wait, refill := r.spendLease(key, r.now())
			switch {
			case wait == nil && !refill:
				return true, 0 // a leased token
			case wait != nil:
				// Another request is asking for the next lease.
				select {
				case <-wait:
				case <-ctx.Done():
					return true, 0 // the request is gone: nothing to serve or refuse
				}
				continue
			}
			// This request asks for the next lease.
			n := min(r.Lease, r.Burst)
			ok, _, err := bl.TakeN(ctx, key, n, r.Rate, r.Burst)
			if err == nil && ok {
				r.grantLease(key, n-1, r.now().Add(LeaseTTL))
				return true, 0
			}
			r.grantLease(key, 0, time.Time{}) // wake the waiters: none leased
			break
		}
		// Not enough left for a lease, or the limiter failed: one token,
		// as without leases (the failure reaches OnError there).
	}
	for _, l := range []store.Limiter{r.Limiter, r.Fallback} {
		if l == nil {
			continue
		}
		ok, retry, err := l.Take(ctx, key, r.Rate, r.Burst)
		if err == nil {
			return ok, retry
		}
		if r.OnError != nil {
			r.OnError()
		}
	}
	return true, 0
}

// spendLease takes one of key's leased tokens when it has an unexpired one
// (wait nil, refill false). Otherwise, when another request is asking for
// the next lease, it returns a channel closed once that one is granted (or
// refused); else it marks this request as the one asking (refill true),
// which must then call grantLease.
func (r *RateLimit) spendLease(key string, now time.Time) (wait <-chan struct{}, refill bool) {
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	l := r.leases[key]
	if l != nil && l.left > 0 && now.Before(l.expires) {
		l.left--
		return nil, false
	}
	if l != nil && l.asking != nil {
		return l.asking, false
	}
	if r.leases == nil {
		r.leases = map[string]*lease{}
	}
	if l == nil {
		if len(r.leases) > 64 {
			// Expired leases of other clients are dropped on the way, so
			// the map holds only clients active in the last lease period.
			for k, o := range r.leases {
				if !now.Before(o.expires) && o.asking == nil {
					delete(r.leases, k)
				}
			}
		}
		l = &lease{}
		r.leases[key] = l
	}
	l.asking = make(chan struct{})
	return nil, true
}

// grantLease records n leased tokens of key, valid until expires (none
// when n is 0), and wakes the requests waiting for them.
func (r *RateLimit) grantLease(key string, n int, expires time.Time) {
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	l := r.leases[key]
	if l == nil {
		return
	}
	l.left, l.expires = n, expires
	if l.asking != nil {
		close(l.asking)
		l.asking = nil
	}
}

// keyOf is clientKey(clientID), from the memo when it holds it.
func (r *RateLimit) keyOf(clientID string) string {
	r.keysMu.RLock()
	k, ok := r.keys[clientID]
	r.keysMu.RUnlock()
	if ok {
		return k
	}
	k = clientKey(clientID)
	r.keysMu.Lock()
	if r.keys == nil || len(r.keys) >= maxKeys {
		r.keys = make(map[string]string)
	}
	r.keys[strings.Clone(clientID)] = k
	r.keysMu.Unlock()
	return k
}

// clientKey is the bucket key of a client: a hash, so key names stay
// opaque whatever a client id looks like.
func clientKey(clientID string) string {
	h := sha256.Sum256([]byte(clientID))
	return "client:" + hex.EncodeToString(h[:16])
}

// retryAfter is d in whole seconds, rounded up and at least 1 (Retry-After
// takes delay-seconds, RFC 9110 §10.2.3; 0 would invite an immediate retry
// that is refused again).
func retryAfter(d time.Duration) string {
	return strconv.FormatFloat(max(math.Ceil(d.Seconds()), 1), 'f', 0, 64)
}
