package fhir

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// rateEnv serves the fixture with rl behind real SMART tokens, and mints
// tokens for any client.
type rateEnv struct {
	*testEnv
	tokens *auth.Tokens
}

func newRateEnv(t *testing.T, rl *RateLimit) *rateEnv {
	t.Helper()
	tk := smartTokens(t, store.SystemClock{})
	return &rateEnv{testEnv: newEnvWith(t, Options{Verifier: tk, RateLimit: rl}), tokens: tk}
}

// token mints a system/*.rs access token of client.
func (e *rateEnv) token(t *testing.T, client string) []string {
	t.Helper()
	tok, _, err := e.tokens.Access(auth.AccessRequest{GrantID: "g-" + client, ClientID: client, Scope: "system/*.rs"})
	if err != nil {
		t.Fatal(err)
	}
	return bearer(tok)
}

// clockBucket is a token-bucket store.Limiter on a fake clock (the seam at
// the shared limiter): the tests move time instead of sleeping.
type clockBucket struct {
	clock *storetest.FakeClock
	mu    sync.Mutex
	b     map[string]*bucketState
}

type bucketState struct {
	tokens float64
	at     time.Time
}

func newClockBucket() *clockBucket {
	return &clockBucket{clock: storetest.NewFakeClock(t0), b: map[string]*bucketState{}}
}

func (l *clockBucket) Take(_ context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	st := l.b[key]
	if st == nil {
		st = &bucketState{tokens: float64(burst), at: now}
		l.b[key] = st
	}
	st.tokens = min(float64(burst), st.tokens+now.Sub(st.at).Seconds()*rate)
	st.at = now
	if st.tokens >= 1 {
		st.tokens--
		return true, 0, nil
	}
	return false, time.Duration((1 - st.tokens) / rate * float64(time.Second)), nil
}

// wantThrottled checks a 429 answer: Retry-After in whole seconds (>= 1),
// a valid OperationOutcome whose text names neither client nor patient. It
// returns Retry-After.
func wantThrottled(t *testing.T, w *httptest.ResponseRecorder, client string) time.Duration {
	t.Helper()
	issue := outcome(t, w, http.StatusTooManyRequests, "throttled")
	if get(issue, "details", "text") == nil {
		t.Errorf("issue has no details: %v", issue)
	}
	for _, s := range []string{client, "p1", clientKey(client)} {
		if strings.Contains(w.Body.String(), s) {
			t.Errorf("body names %q: %s", s, w.Body)
		}
	}
	ra := w.Header().Get("Retry-After")
	n, err := strconv.Atoi(ra)
	if err != nil || n < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds >= 1", ra)
	}
	return time.Duration(n) * time.Second
}

func TestRateLimitPerClient(t *testing.T) {
	bucket := newClockBucket()
	env := newRateEnv(t, &RateLimit{Limiter: bucket, Rate: 1, Burst: 3})
	a, b := env.token(t, "app-a"), env.token(t, "app-b")
	for i := range 3 {
		if w := env.do("GET", "/fhir/Patient/p1", "", a...); w.Code != http.StatusOK {
			t.Fatalf("request #%d of app-a: status %d, want 200: %s", i+1, w.Code, w.Body)
		}
	}
	// A throttled request is refused before the store is touched (the store
	// now panics: a read would be a 500).
	env.fs.panics = true
	retry := wantThrottled(t, env.do("GET", "/fhir/Patient/p1", "", a...), "app-a")
	if retry != time.Second {
		t.Errorf("Retry-After = %v, want 1s (one token a second)", retry)
	}
	env.fs.panics = false

	// Every API path with a valid token is limited, including paths no
	// route serves; the CapabilityStatement is not.
	wantThrottled(t, env.do("GET", "/fhir/Observation?patient=p1", "", a...), "app-a")
	wantThrottled(t, env.do("GET", "/fhir/NoSuchType", "", a...), "app-a")
	if w := env.do("GET", "/fhir/metadata", "", a...); w.Code != http.StatusOK {
		t.Errorf("metadata of a throttled client: status %d, want 200", w.Code)
	}
	// Requests without a valid token are answered 401, not charged.
	for range 5 {
		if w := env.do("GET", "/fhir/Patient/p1", ""); w.Code != http.StatusUnauthorized {
			t.Fatalf("request without a token: status %d, want 401", w.Code)
		}
	}

	if w := env.do("GET", "/fhir/Patient/p1", "", b...); w.Code != http.StatusOK {
		t.Errorf("another client: status %d, want 200: %s", w.Code, w.Body)
	}

	bucket.clock.Advance(retry)
	if w := env.do("GET", "/fhir/Patient/p1", "", a...); w.Code != http.StatusOK {
		t.Errorf("after waiting Retry-After: status %d, want 200: %s", w.Code, w.Body)
	}
	wantThrottled(t, env.do("GET", "/fhir/Patient/p1", "", a...), "app-a")
}

func TestRateLimitOncePerRequest(t *testing.T) {
	// $everything and _include decide once per type: the client is still
	// charged once per request.
	for _, target := range []string{"/fhir/Patient/p1/$everything", "/fhir/Observation?patient=p1&_include=Observation:subject"} {
		t.Run(target, func(t *testing.T) {
			// A type denied within a request is left out of the answer, not
			// an error: what shows a second charge is the bucket.
			env := newRateEnv(t, &RateLimit{Limiter: newClockBucket(), Rate: 0.01, Burst: 2})
			a := env.token(t, "app-a")
			if w := env.do("GET", target, "", a...); w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
			}
			if w := env.do("GET", "/fhir/Patient/p1", "", a...); w.Code != http.StatusOK {
				t.Fatalf("second request: status %d, want 200 (one token left): %s", w.Code, w.Body)
			}
			wantThrottled(t, env.do("GET", "/fhir/Patient/p1", "", a...), "app-a")
		})
	}
}

// failingLimiter is a shared limiter that cannot be reached.
type failingLimiter struct{}

func (failingLimiter) Take(context.Context, string, float64, int) (bool, time.Duration, error) {
	return false, 0, fmt.Errorf("limiter: %w", store.ErrUnavailable)
}

func TestRateLimitFallback(t *testing.T) {
	tests := []struct {
		name     string
		fallback store.Limiter
		// statuses of five requests; errs is how often OnError is called.
		statuses []int
		errs     int64
	}{
		{"local bucket limits", newClockBucket(), []int{200, 200, 200, 429, 429}, 5},
		{"no fallback serves", nil, []int{200, 200, 200, 200, 200}, 5},
		{"failing fallback serves", failingLimiter{}, []int{200, 200, 200, 200, 200}, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var errs atomic.Int64
			env := newRateEnv(t, &RateLimit{Limiter: failingLimiter{}, Fallback: tc.fallback, Rate: 0.01, Burst: 3, OnError: func() { errs.Add(1) }})
			a := env.token(t, "app-a")
			for i, want := range tc.statuses {
				w := env.do("GET", "/fhir/Patient/p1", "", a...)
				if want == http.StatusTooManyRequests {
					wantThrottled(t, w, "app-a")
				} else if w.Code != want {
					t.Fatalf("request #%d: status %d, want %d: %s", i+1, w.Code, want, w.Body)
				}
			}
			if n := errs.Load(); n != tc.errs {
				t.Errorf("OnError called %d times, want %d", n, tc.errs)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "1"},
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Millisecond, "2"},
		{90 * time.Second, "90"},
	}
	for _, tc := range tests {
		t.Run(tc.d.String(), func(t *testing.T) {
			if got := retryAfter(tc.d); got != tc.want {
				t.Errorf("retryAfter(%v) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}

func TestClientKey(t *testing.T) {
	a, b := clientKey("app-a"), clientKey("app-b")
	if a == b || a != clientKey("app-a") {
		t.Errorf("clientKey not a function of the client: %q, %q", a, b)
	}
	if strings.Contains(a, "app-a") {
		t.Errorf("clientKey(%q) = %q names the client", "app-a", a)
	}
}

func TestRateLimitValidate(t *testing.T) {
	lim := newClockBucket()
	tests := []struct {
		name string
		rl   *RateLimit
		ok   bool
	}{
		{"valid", &RateLimit{Limiter: lim, Rate: 0.5, Burst: 1}, true},
		{"no limiter", &RateLimit{Rate: 1, Burst: 1}, false},
		{"zero rate", &RateLimit{Limiter: lim, Burst: 1}, false},
		{"negative rate", &RateLimit{Limiter: lim, Rate: -1, Burst: 1}, false},
		{"zero burst", &RateLimit{Limiter: lim, Rate: 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.rl.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// sharedBucket is a store.BatchLimiter with one bucket that never refills,
// counting its round trips.
type sharedBucket struct {
	mu            sync.Mutex
	tokens        int
	takes, takeNs int
}

func (b *sharedBucket) Take(ctx context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	b.mu.Lock()
	b.takes++
	b.mu.Unlock()
	return b.take(1)
}

func (b *sharedBucket) TakeN(ctx context.Context, key string, n int, rate float64, burst int) (bool, time.Duration, error) {
	b.mu.Lock()
	b.takeNs++
	b.mu.Unlock()
	return b.take(n)
}

func (b *sharedBucket) take(n int) (bool, time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < n {
		return false, time.Second, nil
	}
	b.tokens -= n
	return true, 0, nil
}

func TestRateLimitLeases(t *testing.T) {
	// Ten tokens in the shared bucket, leases of four: the client gets
	// exactly ten requests (4 + 4 leased, then 2 one by one), in four round
	// trips for the first eight, and the eleventh is refused.
	bucket := &sharedBucket{tokens: 10}
	env := newRateEnv(t, &RateLimit{Limiter: bucket, Rate: 0.001, Burst: 10, Lease: 4})
	a := env.token(t, "app-a")
	for i := range 10 {
		if w := env.do("GET", "/fhir/Patient/p1", "", a...); w.Code != http.StatusOK {
			t.Fatalf("request #%d: status %d, want 200: %s", i+1, w.Code, w.Body)
		}
	}
	wantThrottled(t, env.do("GET", "/fhir/Patient/p1", "", a...), "app-a")
	bucket.mu.Lock()
	takeNs, takes := bucket.takeNs, bucket.takes
	bucket.mu.Unlock()
	if takeNs+takes >= 10 {
		t.Errorf("%d round trips (%d leases, %d single) for 11 requests: leases saved nothing", takeNs+takes, takeNs, takes)
	}

	// A lease lasts LeaseTTL: after it the shared bucket is asked again
	// rather than the stale tokens spent.
	bucket = &sharedBucket{tokens: 100}
	clock := storetest.NewFakeClock(t0)
	env = newRateEnv(t, &RateLimit{Limiter: bucket, Rate: 100, Burst: 100, Lease: 4, Clock: clock})
	a = env.token(t, "app-a")
	env.do("GET", "/fhir/Patient/p1", "", a...)
	clock.Advance(LeaseTTL - time.Nanosecond)
	env.do("GET", "/fhir/Patient/p1", "", a...) // spends a leased token
	clock.Advance(time.Nanosecond)
	env.do("GET", "/fhir/Patient/p1", "", a...)
	bucket.mu.Lock()
	defer bucket.mu.Unlock()
	if bucket.takeNs != 2 || bucket.tokens != 92 {
		t.Errorf("after an expired lease: %d leases taken, %d tokens left; want 2 and 92 (a lease lives exactly LeaseTTL)",
			bucket.takeNs, bucket.tokens)
	}
}

// TestRateLimitKeyMemo: the memo of bucket keys (docs/design/security.md
// PERF-ST-19) gives each client its clientKey, past its bound as well.
func TestRateLimitKeyMemo(t *testing.T) {
	r := &RateLimit{}
	for round := range 2 {
		for i := range maxKeys + 10 {
			id := fmt.Sprintf("client-%d", i)
			if got := r.keyOf(id); got != clientKey(id) {
				t.Fatalf("round %d: keyOf(%q) = %q, want %q", round, id, got, clientKey(id))
			}
		}
	}
	if len(r.keys) > maxKeys {
		t.Errorf("memo holds %d keys, bound %d", len(r.keys), maxKeys)
	}
}
