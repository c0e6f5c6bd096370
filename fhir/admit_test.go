package fhir

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// waiting is the number of requests queued at g.
func (g *pageGate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiters.Len()
}

// inUse is the weight g has granted and not had back.
func (g *pageGate) inUse() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

// waitFor yields until cond holds or failed reports true, and reports
// whether cond held.
func waitFor(cond func() bool, failed func() bool) bool {
	for !cond() {
		if failed() {
			return false
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	return true
}

// acquireAsync runs g.acquire(ctx, n) in a goroutine; the channel yields its
// release (nil on error) and error.
type acquired struct {
	release func()
	err     error
}

func acquireAsync(g *pageGate, ctx context.Context, n int) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		r, err := g.acquire(ctx, n)
		ch <- acquired{r, err}
	}()
	return ch
}

func closed(ch <-chan acquired) func() bool {
	return func() bool { return len(ch) > 0 }
}

// TestPageGateBoundUnderConcurrency: however many requests of whatever
// sizes arrive at once, the weight held never exceeds the capacity
// (docs/design/security.md PERF-ST-22).
func TestPageGateBoundUnderConcurrency(t *testing.T) {
	const capacity = 1000
	g := &pageGate{capacity: capacity, hold: time.Hour}
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for w := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 100 {
				n := 1 + rng.IntN(500)
				release, err := g.acquire(context.Background(), n)
				if err != nil {
					t.Error(err)
					return
				}
				now := held.Add(int64(n))
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				runtime.Gosched()
				held.Add(-int64(n))
				release()
				release() // a second release gives nothing back twice
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > capacity {
		t.Errorf("%d resources admitted at once, capacity %d", p, capacity)
	}
	if g.inUse() != 0 || g.waiting() != 0 {
		t.Errorf("after every release: in use %d, waiting %d; want 0, 0", g.inUse(), g.waiting())
	}
}

// TestPageGateArrivalOrder: waiters are served in arrival order, so a
// large page is not overtaken for ever by small ones and a small one waits
// only for those that came before it; a request larger than the capacity
// is admitted alone, not refused.
func TestPageGateArrivalOrder(t *testing.T) {
	g := &pageGate{capacity: 500, hold: time.Hour}
	a, err := g.acquire(context.Background(), 400)
	if err != nil {
		t.Fatal(err)
	}
	big := acquireAsync(g, context.Background(), 1<<20) // clamped to the capacity
	if !waitFor(func() bool { return g.waiting() == 1 }, closed(big)) {
		t.Fatal("a page larger than what is free was admitted")
	}
	small := acquireAsync(g, context.Background(), 50) // would fit, but came later
	if !waitFor(func() bool { return g.waiting() == 2 }, closed(small)) {
		t.Fatal("a small page overtook a large one that came first")
	}
	a()
	b := <-big
	if b.err != nil {
		t.Fatal(b.err)
	}
	if g.waiting() != 1 || len(small) > 0 {
		t.Fatal("the small page was admitted beside a page of the whole capacity")
	}
	b.release()
	s := <-small
	if s.err != nil {
		t.Fatal(s.err)
	}
	s.release()
	if g.inUse() != 0 {
		t.Errorf("in use %d after every release", g.inUse())
	}
}

// TestPageGateCancelFreesWaiter: a waiter whose request ends leaves the
// queue with its context's error, holding nothing; and when it was the
// head of the queue, the waiters behind it that now fit are admitted
// (without that, they would wait for a release that may never come).
func TestPageGateCancelFreesWaiter(t *testing.T) {
	g := &pageGate{capacity: 500, hold: time.Hour}
	a, err := g.acquire(context.Background(), 400)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	head := acquireAsync(g, ctx, 500)
	if !waitFor(func() bool { return g.waiting() == 1 }, closed(head)) {
		t.Fatal("admitted past the capacity")
	}
	behind := acquireAsync(g, context.Background(), 100)
	if !waitFor(func() bool { return g.waiting() == 2 }, closed(behind)) {
		t.Fatal("overtook the head of the queue")
	}
	cancel()
	if h := <-head; !errors.Is(h.err, context.Canceled) || h.release != nil {
		t.Fatalf("cancelled waiter: err %v, release %v; want context.Canceled and nothing held", h.err, h.release != nil)
	}
	// 400 held + 100 fits: the waiter behind the cancelled head is admitted
	// now, while a is still held.
	b := <-behind
	if b.err != nil {
		t.Fatal(b.err)
	}
	if g.inUse() != 500 || g.waiting() != 0 {
		t.Errorf("in use %d, waiting %d; want 500, 0", g.inUse(), g.waiting())
	}
	a()
	b.release()
	if g.inUse() != 0 {
		t.Errorf("in use %d after every release", g.inUse())
	}
	// A context already ended when it would have to wait fails at once.
	full, _ := g.acquire(context.Background(), 500)
	if _, err := g.acquire(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("ended context at a full gate: %v", err)
	}
	full()
}

// TestPageGateHoldLapses: a holder that never gives its weight back (a
// client that does not read its Bundle) delays the others by the hold at
// most; its late release gives nothing back twice.
func TestPageGateHoldLapses(t *testing.T) {
	g := &pageGate{capacity: 500, hold: time.Millisecond}
	stalled, err := g.acquire(context.Background(), 500)
	if err != nil {
		t.Fatal(err)
	}
	next, err := g.acquire(context.Background(), 500) // admitted once the hold lapses
	if err != nil {
		t.Fatal(err)
	}
	stalled()
	if g.inUse() != 500 {
		t.Errorf("in use %d after the stalled holder's late release; want the next holder's 500", g.inUse())
	}
	next()
	if g.inUse() != 0 {
		t.Errorf("in use %d after every release", g.inUse())
	}
}

// countingStore counts the page-building store calls.
type countingStore struct {
	*fakeStore
	everything, search atomic.Int32
}

func (c *countingStore) Everything(ctx context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	c.everything.Add(1)
	return c.fakeStore.Everything(ctx, q)
}

func (c *countingStore) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	c.search.Add(1)
	return c.fakeStore.Search(ctx, q)
}

// gatedEnv serves the fixture through a counting store with a gate of
// capacity resources that never lapses.
func gatedEnv(t *testing.T, capacity int, callers testCallers) (*echo.Echo, *Server, *countingStore) {
	t.Helper()
	cs := &countingStore{fakeStore: fixture()}
	s, err := New(Options{Store: cs, Base: testBase, Clock: fixedClock{t0.Add(24 * time.Hour)},
		Logger: slog.New(slog.DiscardHandler), Verifier: callers})
	if err != nil {
		t.Fatal(err)
	}
	s.pages = &pageGate{capacity: capacity, hold: time.Hour}
	e := echo.New()
	s.Register(e)
	return e, s, cs
}

// TestPagesWaitAtTheGate: a search and a $everything wait at a full gate
// before their store call, leave it when their request ends without
// reaching the store, and are answered once the gate has room
// (docs/design/security.md PERF-ST-22).
func TestPagesWaitAtTheGate(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		calls        func(*countingStore) int32
	}{
		{"everything", "/fhir/Patient/p1/$everything?_count=5", func(c *countingStore) int32 { return c.everything.Load() }},
		{"search", "/fhir/Observation?patient=p1&_count=5", func(c *countingStore) int32 { return c.search.Load() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, s, cs := gatedEnv(t, 500, allowAll)
			held, err := s.pages.acquire(context.Background(), 500)
			if err != nil {
				t.Fatal(err)
			}
			serve := func(ctx context.Context) <-chan *httptest.ResponseRecorder {
				ch := make(chan *httptest.ResponseRecorder, 1)
				go func() {
					r := httptest.NewRequest("GET", tc.target, nil).WithContext(ctx)
					r.Header.Set("Authorization", "Bearer "+defaultToken)
					w := httptest.NewRecorder()
					e.ServeHTTP(w, r)
					ch <- w
				}()
				return ch
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := serve(ctx)
			if !waitFor(func() bool { return s.pages.waiting() == 1 }, func() bool { return len(done) > 0 }) {
				t.Fatal("answered while the gate was full")
			}
			cancel()
			if w := <-done; w.Code == http.StatusOK {
				t.Errorf("a request cancelled at the gate answered 200")
			}
			if n := tc.calls(cs); n != 0 {
				t.Errorf("%d page-building store calls from a request that never passed the gate", n)
			}
			if s.pages.waiting() != 0 {
				t.Errorf("%d left waiting after the request ended", s.pages.waiting())
			}

			done = serve(context.Background())
			if !waitFor(func() bool { return s.pages.waiting() == 1 }, func() bool { return len(done) > 0 }) {
				t.Fatal("answered while the gate was full")
			}
			held()
			if w := <-done; w.Code != http.StatusOK {
				t.Fatalf("after the gate had room: status %d", w.Code)
			}
			if n := tc.calls(cs); n == 0 {
				t.Error("no store call after the gate had room")
			}
			if s.pages.inUse() != 0 {
				t.Errorf("in use %d after the answer was written", s.pages.inUse())
			}
		})
	}
}

// TestGatedPagesAnswerAsBefore: with a gate of exactly one full page, a
// $everything of the default page under granular scopes (type by type
// searches inside the one admission) and a search with _include (the
// included resources read inside it) are answered, byte for byte as
// without a gate: the gate is taken once per request, never by the store
// calls nested in it.
func TestGatedPagesAnswerAsBefore(t *testing.T) {
	callers := testCallers{
		defaultToken: caller("system/*.cruds", ""),
		"granular":   caller("system/Patient.rs system/Observation.rs?code=http://loinc.org|8867-4 system/Encounter.rs", ""),
	}
	for _, tc := range []struct{ name, token, target string }{
		{"everything default page", defaultToken, "/fhir/Patient/p1/$everything"},
		{"everything by searches", "granular", "/fhir/Patient/p1/$everything"},
		{"search with include", defaultToken, "/fhir/Observation?patient=p1&_include=Observation:subject&_count=500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			get := func(e *echo.Echo) *httptest.ResponseRecorder {
				r := httptest.NewRequest("GET", tc.target, nil)
				r.Header.Set("Authorization", "Bearer "+tc.token)
				w := httptest.NewRecorder()
				e.ServeHTTP(w, r)
				return w
			}
			gated, s, _ := gatedEnv(t, 500, callers)
			open, s0, _ := gatedEnv(t, 500, callers)
			s0.pages = nil
			gw, ow := get(gated), get(open)
			if gw.Code != http.StatusOK || ow.Code != http.StatusOK {
				t.Fatalf("status gated %d, without a gate %d: %s", gw.Code, ow.Code, gw.Body)
			}
			// The Bundle ids are random: compare what follows them.
			gb, ob := stripBundleID(gw.Body.String()), stripBundleID(ow.Body.String())
			if gb != ob {
				t.Errorf("gated answer differs:\n%s\nwithout a gate:\n%s", gb, ob)
			}
			if s.pages.inUse() != 0 {
				t.Errorf("in use %d after the answer", s.pages.inUse())
			}
		})
	}
}

// stripBundleID cuts a Bundle's random id (and any outcome entry's urn:uuid
// does not occur in these answers).
func stripBundleID(b string) string {
	const key = `"id":"`
	i := len(`{"resourceType":"Bundle",`)
	if len(b) < i+len(key)+36 || b[i:i+len(key)] != key {
		return b
	}
	return b[:i] + b[i+len(key)+36:]
}
