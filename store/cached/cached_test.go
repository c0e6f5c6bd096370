package cached_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/postgres"
	"github.com/ketabridge/ketabridge/store/redis"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func openSQLite(t testing.TB, clock store.Clock) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ketabridge.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestContract runs the store contract suite through the decorator. Every
// cached read is made twice and must give the same answer both times: the
// first fills the cache, the second is served from it, so the suite proves
// hits and misses both answer as the store does.
func TestContract(t *testing.T) {
	runContract(t, func(t *testing.T) store.Cache { return memory.NewCache(64 << 20) })
}

// TestContractRedis is TestContract over the Redis cache.
func TestContractRedis(t *testing.T) {
	url := redisURL(t)
	runContract(t, func(t *testing.T) store.Cache { return openRedisCache(t, url) })
}

// TestContractRedisNear is TestContract over the Redis cache with a near
// cache in front: second reads are near hits, and must answer as the store
// does too.
func TestContractRedisNear(t *testing.T) {
	url := redisURL(t)
	runContract(t, func(t *testing.T) store.Cache { return openRedisCache(t, url) }, 4<<20)
}

func runContract(t *testing.T, newCache func(t *testing.T) store.Cache, near ...int64) {
	ev := &events{}
	obs := ev.observer()
	storetest.Run(t, func(t *testing.T, clock store.Clock) store.Store {
		// A cache call slower than Options.Timeout counts as an error; the
		// suite checks there are none, so it allows for a busy machine
		// (make test runs the end-to-end tests beside it).
		opts := cached.Options{Observer: obs, Timeout: time.Second}
		if len(near) > 0 {
			opts.NearBytes = near[0]
		}
		return &twice{t: t, Store: cached.New(openSQLite(t, clock), newCache(t), opts)}
	})
	// Most second reads hit (not the errors, nor reads after a concurrent
	// write): the suite did run against the cache.
	for _, op := range []string{"read", "search", "everything", "getmany", "refs"} {
		if h := ev.get("hit", op); h < 3 {
			t.Errorf("%s: %d hits over the suite", op, h)
		}
		if e := ev.get("error", op); e != 0 {
			t.Errorf("%s: %d cache errors", op, e)
		}
	}
}

// twice makes each cached read twice and reports when the answers differ,
// unless an Apply ran meanwhile (the suite's concurrency test).
type twice struct {
	t *testing.T
	*cached.Store
	started, done atomic.Int64 // Apply calls
}

func (w *twice) Apply(ctx context.Context, records []store.RecordWrite) ([]store.WriteResult, error) {
	w.started.Add(1)
	defer w.done.Add(1)
	return w.Store.Apply(ctx, records)
}

// quiet returns a token that is unchanged while no Apply starts or ends, or
// -1 while one is in flight.
func (w *twice) quiet() int64 {
	d := w.done.Load()
	if w.started.Load() != d {
		return -1
	}
	return d
}

func (w *twice) check(op string, a, b any, tok int64) {
	w.t.Helper()
	if tok == -1 || w.quiet() != tok {
		return
	}
	if !reflect.DeepEqual(a, b) {
		w.t.Errorf("%s: cached answer differs:\nfirst  %+v\nsecond %+v", op, a, b)
	}
}

type result[T any] struct {
	V   T
	Err string
}

func res[T any](v T, err error) result[T] {
	r := result[T]{V: v}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

func (w *twice) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	tok := w.quiet()
	a := res(w.Store.Read(ctx, typ, id))
	r, err := w.Store.Read(ctx, typ, id)
	w.check("Read", a, res(r, err), tok)
	return r, err
}

func (w *twice) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	tok := w.quiet()
	a := res(w.Store.Search(ctx, q))
	r, err := w.Store.Search(ctx, q)
	w.check("Search", a, res(r, err), tok)
	return r, err
}

func (w *twice) GetMany(ctx context.Context, keys []store.Key) ([]store.Resource, error) {
	tok := w.quiet()
	a := res(w.Store.GetMany(ctx, keys))
	r, err := w.Store.GetMany(ctx, keys)
	w.check("GetMany", a, res(r, err), tok)
	return r, err
}

func (w *twice) Refs(ctx context.Context, from []store.Key, params []string) ([]store.Ref, error) {
	tok := w.quiet()
	a := res(w.Store.Refs(ctx, from, params))
	r, err := w.Store.Refs(ctx, from, params)
	w.check("Refs", a, res(r, err), tok)
	return r, err
}

func (w *twice) Everything(ctx context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	type page struct {
		Rs    []store.Resource
		Total int
	}
	tok := w.quiet()
	rs, total, err := w.Store.Everything(ctx, q)
	a := res(page{rs, total}, err)
	rs, total, err = w.Store.Everything(ctx, q)
	w.check("Everything", a, res(page{rs, total}, err), tok)
	return rs, total, err
}

// redisURL is the test server's URL (storetest.ServiceURL).
func redisURL(t *testing.T) string {
	return storetest.ServiceURL(t, "KETABRIDGE_TEST_REDIS_URL")
}

// openRedisCache returns a Redis cache under a fresh random prefix and
// deletes every key under it when t ends.
func openRedisCache(t testing.TB, url string) store.Cache {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "ketabridge-test:" + hex.EncodeToString(b[:]) + ":"
	ctx := context.Background()
	e, err := redis.Open(ctx, url, prefix)
	if err != nil {
		t.Fatalf("redis.Open: %v", err)
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	admin := goredis.NewClient(opt)
	t.Cleanup(func() {
		var keys []string
		iter := admin.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup scan: %v", err)
		}
		if len(keys) > 0 {
			if err := admin.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("cleanup del: %v", err)
			}
		}
		admin.Close()
		e.Close()
	})
	return e.Cache()
}

// counting counts the calls that reach the inner store.
type counting struct {
	store.Store
	reads, searches, everything, getMany, refs atomic.Int64
}

func (c *counting) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	c.reads.Add(1)
	return c.Store.Read(ctx, typ, id)
}

func (c *counting) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	c.searches.Add(1)
	return c.Store.Search(ctx, q)
}

func (c *counting) Everything(ctx context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	c.everything.Add(1)
	return c.Store.Everything(ctx, q)
}

func (c *counting) GetMany(ctx context.Context, keys []store.Key) ([]store.Resource, error) {
	c.getMany.Add(1)
	return c.Store.GetMany(ctx, keys)
}

func (c *counting) Refs(ctx context.Context, from []store.Key, params []string) ([]store.Ref, error) {
	c.refs.Add(1)
	return c.Store.Refs(ctx, from, params)
}

// events counts Observer calls by kind and op.
type events struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *events) observer() cached.Observer {
	e.n = map[string]int{}
	add := func(kind string) func(string) {
		return func(op string) {
			e.mu.Lock()
			e.n[kind+" "+op]++
			e.mu.Unlock()
		}
	}
	return cached.Observer{Hit: add("hit"), Miss: add("miss"), Error: add("error")}
}

func (e *events) get(kind, op string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[kind+" "+op]
}

// faulty is a store.Cache whose calls can be made to fail or hang, and
// which records the stamps bumped.
type faulty struct {
	store.Cache
	failLookup, failFill, failBump, hang, corrupt atomic.Bool
	// failBumps fails that many Bumps more (a Redis that answers late).
	failBumps atomic.Int32

	mu     sync.Mutex
	bumped [][]string
}

var errCacheDown = errors.New("cache down")

func (f *faulty) Lookup(ctx context.Context, key string, stamps []string) (string, []byte, bool, error) {
	if f.hang.Load() {
		<-ctx.Done()
		return "", nil, false, ctx.Err()
	}
	if f.failLookup.Load() {
		return "", nil, false, errCacheDown
	}
	return f.Cache.Lookup(ctx, key, stamps)
}

func (f *faulty) Fill(ctx context.Context, key, at string, val []byte, ttl time.Duration) error {
	if f.failFill.Load() {
		return errCacheDown
	}
	if f.corrupt.Load() {
		val = val[:len(val)-1]
	}
	return f.Cache.Fill(ctx, key, at, val, ttl)
}

func (f *faulty) Bump(ctx context.Context, stamps []string) error {
	f.mu.Lock()
	f.bumped = append(f.bumped, append([]string(nil), stamps...))
	f.mu.Unlock()
	if f.failBump.Load() || f.failBumps.Add(-1) >= 0 {
		return errCacheDown
	}
	return f.Cache.Bump(ctx, stamps)
}

func (f *faulty) bumps() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.bumped...)
}

// fixture is a small store: Patient p1, its Observations o1 and o2 (o1
// referencing p1), written through s.
type fixture struct {
	*cached.Store
	inner *counting
	cache *faulty
	ev    *events
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	inner := &counting{Store: openSQLite(t, storetest.NewFakeClock(storetest.T0))}
	cache := &faulty{Cache: memory.NewCache(16 << 20)}
	ev := &events{}
	f := fixture{Store: cached.New(inner, cache, cached.Options{Observer: ev.observer()}), inner: inner, cache: cache, ev: ev}
	f.apply(t, "h1", `,"v":1`, true)
	return f
}

// apply writes the patient record (hash h, Patient body rest) and, when
// withObs, its Observations.
func (f fixture) apply(t *testing.T, h, rest string, withObs bool) []store.WriteResult {
	t.Helper()
	res := []store.ResourceWrite{storetest.Res("Patient", "p1", "p1", rest, storetest.Str("name", "Ada"))}
	if withObs {
		res = append(res,
			storetest.Res("Observation", "o1", "p1", "", storetest.Ref("subject", "Patient/p1")),
			storetest.Res("Observation", "o2", "p1", ""))
	}
	out, err := f.Apply(context.Background(), []store.RecordWrite{storetest.Rec("patient", "p1", h, res...)})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return out
}

// reads is every cached read of the fixture, returning the versions it saw
// and how many calls of its kind reached the inner store.
type readOp struct {
	name  string
	read  func(context.Context, store.Store) (string, error)
	calls func(*counting) int64
}

func versions(rs []store.Resource) string {
	var b bytes.Buffer
	for _, r := range rs {
		b.WriteString(r.Type + "/" + r.ID + "@" + string(rune('0'+r.Version)) + " ")
	}
	return b.String()
}

var readOps = []readOp{
	{"read", func(ctx context.Context, s store.Store) (string, error) {
		r, err := s.Read(ctx, "Patient", "p1")
		return versions([]store.Resource{r}) + string(r.Body), err
	}, func(c *counting) int64 { return c.reads.Load() }},
	{"search", func(ctx context.Context, s store.Store) (string, error) {
		res, err := s.Search(ctx, store.Query{Type: "Patient", Total: true})
		return versions(res.Resources), err
	}, func(c *counting) int64 { return c.searches.Load() }},
	{"everything", func(ctx context.Context, s store.Store) (string, error) {
		rs, total, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1"})
		return versions(rs) + string(rune('0'+total)), err
	}, func(c *counting) int64 { return c.everything.Load() }},
	{"getmany", func(ctx context.Context, s store.Store) (string, error) {
		rs, err := s.GetMany(ctx, []store.Key{{Type: "Patient", ID: "p1"}, {Type: "Observation", ID: "o1"}})
		return versions(rs), err
	}, func(c *counting) int64 { return c.getMany.Load() }},
	{"refs", func(ctx context.Context, s store.Store) (string, error) {
		refs, err := s.Refs(ctx, []store.Key{{Type: "Observation", ID: "o1"}}, nil)
		var b bytes.Buffer
		for _, r := range refs {
			b.WriteString(r.From.String() + " " + r.Param + " " + r.Target.String() + ";")
		}
		return b.String(), err
	}, func(c *counting) int64 { return c.refs.Load() }},
}

func TestSecondReadHits(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for _, op := range readOps {
		t.Run(op.name, func(t *testing.T) {
			first, err := op.read(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			second, err := op.read(ctx, f)
			if err != nil || second != first {
				t.Errorf("second answer %q, %v; want %q", second, err, first)
			}
			if n := op.calls(f.inner); n != 1 {
				t.Errorf("%d calls reached the store, want 1", n)
			}
			if h, m := f.ev.get("hit", op.name), f.ev.get("miss", op.name); h != 1 || m != 1 {
				t.Errorf("observed %d hits, %d misses; want 1, 1", h, m)
			}
		})
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.apply(t, "h2", `,"v":1`, false) // deletes o1 and o2
	for _, tc := range []struct {
		typ, id string
		want    error
	}{
		{"Patient", "nope", store.ErrNotFound},
		{"Observation", "o1", store.ErrGone},
	} {
		before := f.inner.reads.Load()
		for range 2 {
			if _, err := f.Read(ctx, tc.typ, tc.id); !errors.Is(err, tc.want) {
				t.Errorf("Read %s/%s: %v, want %v", tc.typ, tc.id, err, tc.want)
			}
		}
		if n := f.inner.reads.Load() - before; n != 2 {
			t.Errorf("Read %s/%s twice: %d reads reached the store, want 2", tc.typ, tc.id, n)
		}
	}
}

func TestApplyInvalidates(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	before := map[string]string{}
	for _, op := range readOps {
		v, err := op.read(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		before[op.name] = v
	}
	// A new Patient body: p1 gets version 2.
	f.apply(t, "h2", `,"v":2`, true)
	want := map[string]string{
		"read":       "Patient/p1@2 " + string(f.mustInner(t).Body),
		"search":     "Patient/p1@2 ",
		"everything": "Patient/p1@2 Observation/o1@1 Observation/o2@1 3",
		"getmany":    "Patient/p1@2 Observation/o1@1 ",
		"refs":       before["refs"],
	}
	for _, op := range readOps {
		if got, err := op.read(ctx, f); err != nil || got != want[op.name] {
			t.Errorf("%s after update = %q, %v; want %q", op.name, got, err, want[op.name])
		}
	}
	// The record no longer produces o1 and o2: deletions, which appear only
	// in Apply's results, must invalidate too.
	f.apply(t, "h3", `,"v":2`, false)
	want = map[string]string{
		"everything": "Patient/p1@2 1",
		"getmany":    "Patient/p1@2 ",
		"refs":       "",
	}
	for _, op := range readOps {
		if w, ok := want[op.name]; ok {
			if got, err := op.read(ctx, f); err != nil || got != w {
				t.Errorf("%s after deletion = %q, %v; want %q", op.name, got, err, w)
			}
		}
	}
	if _, err := f.Read(ctx, "Observation", "o1"); !errors.Is(err, store.ErrGone) {
		t.Errorf("Read of deleted o1: %v, want ErrGone", err)
	}
}

func (f fixture) mustInner(t *testing.T) store.Resource {
	t.Helper()
	r, err := f.Inner().Read(context.Background(), "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUnchangedApplyBumps(t *testing.T) {
	// A retry of an Apply whose Bump failed writes nothing new, yet must
	// invalidate: Apply bumps the stamps of the record's resources
	// regardless.
	f := newFixture(t)
	n := len(f.cache.bumps())
	res := f.apply(t, "h1", `,"v":1`, true)
	if res[0].Outcome != store.Unchanged {
		t.Fatalf("outcome %s, want unchanged", res[0].Outcome)
	}
	bumps := f.cache.bumps()[n:]
	if len(bumps) != 1 {
		t.Fatalf("%d Bumps, want 1", len(bumps))
	}
	got := bumps[0]
	// Three resources' buckets (distinct with 65536 buckets), the two
	// types, and the one compartment's $everything and two types' searches
	// in it; nothing else (no epoch, no "m": nothing was updated).
	want := map[string]int{"r:": 3, "t:": 2, "p:": 1, "q:": 2}
	for _, st := range got {
		want[st[:2]]--
	}
	for prefix, n := range want {
		if n != 0 {
			t.Errorf("bumped %v: %d stamps %q too few", got, n, prefix)
		}
	}
	if len(got) != 8 {
		t.Errorf("bumped %v, want 8 stamps", got)
	}
}

func TestFailingCacheServesFromStore(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(*faulty)
	}{
		{"lookup fails", func(c *faulty) { c.failLookup.Store(true) }},
		{"fill fails", func(c *faulty) { c.failFill.Store(true) }},
		{"lookup hangs", func(c *faulty) { c.hang.Store(true) }},
		{"entry corrupt", func(c *faulty) { c.corrupt.Store(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(f.cache)
			for _, op := range readOps {
				want, err := op.read(ctx, f.Inner())
				if err != nil {
					t.Fatal(err)
				}
				for i := range 2 {
					start := time.Now()
					got, err := op.read(ctx, f)
					if err != nil || got != want {
						t.Errorf("%s #%d = %q, %v; want %q", op.name, i, got, err, want)
					}
					// The 50 ms default Timeout bounds a hung cache.
					if d := time.Since(start); d > 2*time.Second {
						t.Errorf("%s #%d took %v", op.name, i, d)
					}
				}
				if e := f.ev.get("error", op.name); e == 0 {
					t.Errorf("%s: no error observed", op.name)
				}
			}
			// A write still invalidates, and the answers follow it.
			f.cache.hang.Store(false)
			f.cache.failLookup.Store(false)
			f.apply(t, "h2", `,"v":2`, true)
			if got, err := readOps[0].read(ctx, f); err != nil || got[:13] != "Patient/p1@2 " {
				t.Errorf("read after update = %q, %v", got, err)
			}
		})
	}
}

func TestFailedBumpBypassesUntilEpochBump(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	read := func() store.Resource {
		t.Helper()
		r, err := f.Read(ctx, "Patient", "p1")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	read()
	if read(); f.inner.reads.Load() != 1 {
		t.Fatalf("setup: %d store reads, want 1 (a hit)", f.inner.reads.Load())
	}

	// The write lands but its invalidation fails: Apply says so, and its
	// results say what was written (docs/design/security.md IN-6).
	cached.ShortBumpBudget(t, 20*time.Millisecond)
	f.cache.failBump.Store(true)
	res, err := f.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", "h2",
		storetest.Res("Patient", "p1", "p1", `,"v":2`))})
	var stale *store.StaleCacheError
	if !errors.Is(err, store.ErrUnavailable) || !errors.As(err, &stale) {
		t.Fatalf("Apply with a failing Bump: %v, want a StaleCacheError marked ErrUnavailable", err)
	}
	if len(res) != 1 || res[0].Outcome != store.Updated {
		t.Fatalf("Apply with a failing Bump: results %+v, want the record updated", res)
	}
	if r, err := f.Inner().Read(ctx, "Patient", "p1"); err != nil || r.Version != 2 {
		t.Fatalf("the write itself: v%d, %v; want v2", r.Version, err)
	}

	// Dirty: every read goes to the store (the stale v1 entry is still in
	// the cache), and each first tries the epoch Bump.
	n, bumps := f.inner.reads.Load(), len(f.cache.bumps())
	for i := range 3 {
		if r := read(); r.Version != 2 {
			t.Errorf("dirty read #%d: v%d, want v2", i, r.Version)
		}
	}
	if got := f.inner.reads.Load() - n; got != 3 {
		t.Errorf("dirty: %d of 3 reads reached the store", got)
	}
	if got := f.cache.bumps()[bumps:]; len(got) != 3 || !reflect.DeepEqual(got[0], []string{"e"}) {
		t.Errorf("dirty reads bumped %v, want 3 epoch Bumps", got)
	}

	// Redis is back: the next read bumps the epoch, misses and fills; the
	// one after hits, and neither sees v1.
	f.cache.failBump.Store(false)
	n = f.inner.reads.Load()
	for i := range 2 {
		if r := read(); r.Version != 2 {
			t.Errorf("read #%d after recovery: v%d, want v2", i, r.Version)
		}
	}
	if got := f.inner.reads.Load() - n; got != 1 {
		t.Errorf("after recovery: %d of 2 reads reached the store, want 1", got)
	}
}

func TestFailedBumpKeepsInnerError(t *testing.T) {
	// Apply joins a failed Bump's error with the store's own: a caller
	// still finds the store.BatchError of a partly written batch.
	ctx := context.Background()
	f := newFixture(t)
	cached.ShortBumpBudget(t, 20*time.Millisecond)
	f.cache.failBump.Store(true)
	_, err := f.Apply(ctx, []store.RecordWrite{
		storetest.Rec("patient", "p2", "h1", storetest.Res("Patient", "p2", "p2", "")),
		storetest.Rec("patient", "p3", "h1", storetest.Res("Patient", "", "p3", "")), // invalid: no id
	})
	var be *store.BatchError
	var stale *store.StaleCacheError
	if !errors.As(err, &be) || !errors.Is(err, store.ErrUnavailable) || !errors.As(err, &stale) {
		t.Errorf("Apply = %v; want a BatchError joined with a StaleCacheError (ErrUnavailable)", err)
	}
}

// TestLateBumpRetried: a Bump that fails a few times (a Redis answering
// late on a loaded machine) is retried, and the committed write is answered
// as written, without error (docs/design/security.md IN-6). Before, the
// first failed Bump turned the write into a 503 that said nothing was
// stored.
func TestLateBumpRetried(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.Read(ctx, "Patient", "p1"); err != nil { // cache v1
		t.Fatal(err)
	}
	f.cache.failBumps.Store(2)
	n := len(f.cache.bumps())
	res, err := f.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", "h2",
		storetest.Res("Patient", "p1", "p1", `,"v":2`))})
	if err != nil || len(res) != 1 || res[0].Outcome != store.Updated {
		t.Fatalf("Apply with two late Bumps = %+v, %v; want updated, no error", res, err)
	}
	if got := len(f.cache.bumps()) - n; got != 3 {
		t.Errorf("%d Bumps, want 3 (two failed, one retry that worked)", got)
	}
	if r, err := f.Read(ctx, "Patient", "p1"); err != nil || r.Version != 2 {
		t.Errorf("read after the write: v%d, %v; want v2", r.Version, err)
	}
}

func TestClosedBypassesCache(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.Read(ctx, "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Read(ctx, "Patient", "p1"); err == nil {
		t.Error("Read after Close served from the cache")
	}
}

// TestTwoReplicas runs two decorators, as two replicas would, over one
// store and one Redis: a write through one is seen at once through the
// other, whose cache held the old answers.
func TestTwoReplicas(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	st := openSQLite(t, storetest.NewFakeClock(storetest.T0))
	cache := openRedisCache(t, url)
	a := cached.New(st, cache, cached.Options{})
	b := cached.New(st, cache, cached.Options{})
	write := func(h, rest string) {
		t.Helper()
		if _, err := a.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", h,
			storetest.Res("Patient", "p1", "p1", rest, storetest.Str("name", "Ada")))}); err != nil {
			t.Fatal(err)
		}
	}
	write("h1", `,"v":1`)
	for v := int64(1); v <= 3; v++ {
		if v > 1 {
			write("h"+string(rune('0'+v)), `,"v":`+string(rune('0'+v)))
		}
		for i := range 2 { // the second from B's cache
			r, err := b.Read(ctx, "Patient", "p1")
			if err != nil || r.Version != v {
				t.Fatalf("B Read #%d after write %d: v%d, %v", i, v, r.Version, err)
			}
			res, err := b.Search(ctx, store.Query{Type: "Patient"})
			if err != nil || len(res.Resources) != 1 || res.Resources[0].Version != v {
				t.Fatalf("B Search #%d after write %d: %+v, %v", i, v, res, err)
			}
		}
	}
}

func TestFailedInvalidateBypassesUntilEpochBump(t *testing.T) {
	// Invalidate (writes the decorator cannot see) that cannot reach the
	// cache leaves it dirty, like a failed Apply: reads bypass it, and the
	// first read once it answers bumps the epoch before using it.
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.Read(ctx, "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	f.cache.failBump.Store(true)
	if err := f.Invalidate(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Invalidate with a failing Bump: %v, want ErrUnavailable", err)
	}
	n := f.inner.reads.Load()
	if _, err := f.Read(ctx, "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	if f.inner.reads.Load()-n != 1 {
		t.Fatal("a read after a failed Invalidate was served from the cache")
	}
	f.cache.failBump.Store(false)
	bumps := len(f.cache.bumps())
	if _, err := f.Read(ctx, "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	if got := f.cache.bumps()[bumps:]; len(got) != 1 || !reflect.DeepEqual(got[0], []string{"e"}) {
		t.Fatalf("first read after recovery bumped %v, want the epoch", got)
	}
}

// TestAudiencesAreCachedApart: the access restriction and :not are part of
// the key (docs/design/security.md PRIV-3, PRIV-6). The same search and
// $everything for several audiences each miss once, then each hits with
// its own answer: an answer cached for one audience is never served to
// another.
func TestAudiencesAreCachedApart(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	subject := store.Clause{Param: "subject", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}}
	notSubject := subject
	notSubject.Not = true
	obsOnly := func(clauses ...store.Clause) store.AccessTerm {
		return store.AccessTerm{Patients: []string{"p1"}, Types: []string{"Observation"}, Clauses: clauses}
	}
	audiences := []struct {
		name             string
		access           *store.Access
		search, patient1 string
	}{
		{"unrestricted", nil, "Observation/o1@1 Observation/o2@1 ", "Patient/p1@1 Observation/o1@1 Observation/o2@1 "},
		{"subject", &store.Access{Terms: []store.AccessTerm{obsOnly(subject)}}, "Observation/o1@1 ", "Observation/o1@1 "},
		{"not subject", &store.Access{Terms: []store.AccessTerm{obsOnly(notSubject)}}, "Observation/o2@1 ", "Observation/o2@1 "},
		{"no terms", &store.Access{}, "", ""},
		{"another patient", &store.Access{Terms: []store.AccessTerm{{Patients: []string{"p2"}}}}, "", ""},
	}
	for round := range 3 {
		for _, a := range audiences {
			res, err := f.Search(ctx, store.Query{Type: "Observation", Access: a.access})
			if err != nil {
				t.Fatal(err)
			}
			if got := versions(res.Resources); got != a.search {
				t.Errorf("round %d, %s: search = %q, want %q", round, a.name, got, a.search)
			}
			rs, _, err := f.Everything(ctx, store.EverythingQuery{Patient: "p1", Access: a.access})
			if err != nil {
				t.Fatal(err)
			}
			if got := versions(rs); got != a.patient1 {
				t.Errorf("round %d, %s: everything = %q, want %q", round, a.name, got, a.patient1)
			}
		}
	}
	n := len(audiences)
	if s, e := f.inner.searches.Load(), f.inner.everything.Load(); s != int64(n) || e != int64(n) {
		t.Errorf("%d searches and %d $everything reached the store, want %d each (one per audience)", s, e, n)
	}
	if h := f.ev.get("hit", "search"); h != 2*n {
		t.Errorf("%d search hits, want %d", h, 2*n)
	}
	// The same clause without and with :not are two queries.
	for _, c := range []store.Clause{subject, notSubject, subject, notSubject} {
		res, err := f.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{c}})
		if err != nil {
			t.Fatal(err)
		}
		want := "Observation/o1@1 "
		if c.Not {
			want = "Observation/o2@1 "
		}
		if got := versions(res.Resources); got != want {
			t.Errorf("not %v: %q, want %q", c.Not, got, want)
		}
	}
}

// TestInvalidation runs the targeted invalidation suite on SQLite with the
// in-memory cache of the embedded mode.
func TestInvalidation(t *testing.T) {
	storetest.RunInvalidation(t, func(t *testing.T, clock store.Clock) storetest.CachedStores {
		inner := openSQLite(t, clock)
		return openInvalidation(t, inner, memory.NewCache(64<<20))
	})
}

// TestInvalidationPostgresRedis runs it on PostgreSQL with the Redis cache
// of the replicated deployment.
func TestInvalidationPostgresRedis(t *testing.T) {
	url := redisURL(t)
	storetest.RunInvalidation(t, func(t *testing.T, clock store.Clock) storetest.CachedStores {
		return openInvalidation(t, openPostgres(t, clock), openRedisCache(t, url))
	})
}

// TestInvalidationReplicasNear runs it on two replicas sharing PostgreSQL
// and Redis, each with its near cache: the writes go through one, the
// probes through the other, and a write acknowledged on one is never
// answered stale by the other's near cache.
func TestInvalidationReplicasNear(t *testing.T) {
	url := redisURL(t)
	storetest.RunInvalidation(t, func(t *testing.T, clock store.Clock) storetest.CachedStores {
		inner := openPostgres(t, clock)
		c := openRedisCache(t, url)
		s := openInvalidation(t, inner, c, 8<<20)
		var hitsB atomic.Int64
		b := cached.New(inner, c, cached.Options{NearBytes: 8 << 20, Timeout: time.Second, Observer: cached.Observer{
			Hit:   func(string) { hitsB.Add(1) },
			Error: func(op string) { t.Errorf("cache error at B (%s)", op) },
		}})
		hitsA := s.Hits
		s.Replica, s.Hits = b, func() int64 { return hitsA() + hitsB.Load() }
		return s
	})
}

func openInvalidation(t *testing.T, inner store.Store, c store.Cache, near ...int64) storetest.CachedStores {
	var hits atomic.Int64
	obs := cached.Observer{
		Hit:   func(string) { hits.Add(1) },
		Error: func(op string) { t.Errorf("cache error (%s)", op) },
	}
	opts := cached.Options{Observer: obs, Timeout: time.Second}
	if len(near) > 0 {
		opts.NearBytes = near[0]
	}
	cs := cached.New(inner, c, opts)
	return storetest.CachedStores{Cached: cs, Inner: inner, Hits: hits.Load}
}

// openPostgres opens a PostgreSQL store in a fresh schema of the test
// database, dropped when t ends.
func openPostgres(t *testing.T, clock store.Clock) *postgres.Store {
	t.Helper()
	ctx := context.Background()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	u, drop, err := postgres.NewSchema(ctx, storetest.ServiceURL(t, "KETABRIDGE_TEST_DATABASE_URL"), "kb_cache_"+hex.EncodeToString(b[:]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop(context.Background()) })
	s, err := postgres.Open(ctx, u, clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestTypeVersions: the version token of some types changes with a write of
// one of them, on another replica sharing the cache too, and not with a
// write of another type; while the cache is dirty there is no token.
func TestTypeVersions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		c    func(t *testing.T) store.Cache
		near int64
	}{
		{"memory", func(*testing.T) store.Cache { return memory.NewCache(1 << 20) }, 0},
		{"redis", func(t *testing.T) store.Cache { return openRedisCache(t, redisURL(t)) }, 0},
		{"redis with near caches", func(t *testing.T) store.Cache { return openRedisCache(t, redisURL(t)) }, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := openSQLite(t, storetest.NewFakeClock(storetest.T0))
			var shared store.Cache = tc.c(t)
			if tc.near == 0 {
				shared = &faulty{Cache: shared}
			}
			a := cached.New(inner, shared, cached.Options{Timeout: time.Second, NearBytes: tc.near})
			b := cached.New(inner, shared, cached.Options{Timeout: time.Second, NearBytes: tc.near}) // another replica
			types := []string{"Consent", "Coverage"}
			token := func(s *cached.Store) string {
				t.Helper()
				v, ok := s.TypeVersions(ctx, types)
				if !ok {
					t.Fatal("no version token from a clean cache")
				}
				return v
			}
			write := func(rw store.ResourceWrite) {
				t.Helper()
				if _, err := a.Apply(ctx, []store.RecordWrite{storetest.Rec(rw.Type, rw.ID, string(rw.Body), rw)}); err != nil {
					t.Fatal(err)
				}
			}
			v0 := token(b)
			write(storetest.Res("Observation", "o1", "p1", `,"v":1`))
			if v := token(b); v != v0 {
				t.Errorf("an Observation write changed the Consent/Coverage token: %s -> %s", v0, v)
			}
			write(storetest.Res("Consent", "c1", "p1", `,"status":"inactive"`))
			v1 := token(b)
			if v1 == v0 {
				t.Error("a Consent write left the token unchanged at the other replica")
			}
			write(storetest.Res("Coverage", "v1", "p1", `,"status":"active"`))
			if v := token(b); v == v1 {
				t.Error("a Coverage write left the token unchanged at the other replica")
			}
			f, ok := shared.(*faulty)
			if !ok {
				return // the near cache needs the Redis cache itself, not a wrapper
			}
			f.failBump.Store(true)
			if _, err := a.Apply(ctx, []store.RecordWrite{storetest.Rec("Consent", "c1", "h2",
				storetest.Res("Consent", "c1", "p1", `,"status":"active"`))}); err == nil {
				t.Fatal("Apply with a failing Bump succeeded")
			}
			if _, ok := a.TypeVersions(ctx, types); ok {
				t.Error("a token from a replica whose invalidation failed")
			}
		})
	}
}

// TestNearReadAdmission: on a replica with a near cache, a read by id is
// answered by the store alone on its first miss (no stamp read, nothing
// filled), filled on its second and a near hit after that; and a write
// acknowledged at another replica is never answered stale, whichever of
// those states the read is in.
func TestNearReadAdmission(t *testing.T) {
	inner := &counting{Store: openSQLite(t, storetest.NewFakeClock(storetest.T0))}
	// Without a watch that vouches (store.Watched hidden), as while a
	// replica's watch cannot: a fill costs a stamp read, so the doorkeeper
	// admits a key on its second miss. With one, see
	// TestNearReadFirstMissVouched.
	rc := openRedisCache(t, redisURL(t))
	shared := unwatched{Cache: rc, nc: rc.(store.NearCache)}
	var ev events
	a := cached.New(inner, shared, cached.Options{Timeout: time.Second, NearBytes: 1 << 20, Observer: ev.observer()})
	b := cached.New(inner, shared, cached.Options{Timeout: time.Second, NearBytes: 1 << 20}) // another replica
	write, read := patientP1(t, b, a)
	write(1)
	for i, want := range []struct{ reads, hits int64 }{{1, 0}, {2, 0}, {2, 1}, {2, 2}} {
		read(1)
		if got, hits := inner.reads.Load(), int64(ev.get("hit", "read")); got != want.reads || hits != want.hits {
			t.Fatalf("read #%d: %d store reads and %d hits, want %d and %d", i+1, got, hits, want.reads, want.hits)
		}
	}
	write(2) // at the other replica: the near entry's stamps are now old
	read(2)
	read(2)
	if hits := ev.get("hit", "read"); hits != 3 {
		t.Errorf("after the write: %d hits in all, want 3 (refilled by the first read, hit by the second)", hits)
	}
	// A key the table has seen but the near cache does not hold (filled,
	// then superseded) still reads the stamps: never stale.
	write(3)
	read(3)
}

// vouching is a replica's Redis cache whose watch always vouches
// (store.Watched), with the stamps' values read from Redis at each call, so
// current by construction: a watched replica's admission without the
// lease's timing.
type vouching struct {
	store.Cache
	nc    store.NearCache
	known atomic.Int64
}

func (v *vouching) Stamps(ctx context.Context, stamps []string) (string, error) {
	return v.nc.Stamps(ctx, stamps)
}

func (v *vouching) Known(stamps []string) (string, bool) {
	v.known.Add(1)
	at, err := v.nc.Stamps(context.Background(), stamps)
	return at, err == nil
}

// TestNearReadFirstMissVouched: while the watch vouches for a read's stamps
// (CACHE-4: a fill costs no round trip), a read by id is kept in the near
// cache on its first miss, so its first repeat is a hit (PERF-ST-20); a
// write at another replica still makes the next read go to the store, and
// the entry refilled then is hit by the read after it.
func TestNearReadFirstMissVouched(t *testing.T) {
	inner := &counting{Store: openSQLite(t, storetest.NewFakeClock(storetest.T0))}
	rc := openRedisCache(t, redisURL(t))
	shared := &vouching{Cache: rc, nc: rc.(store.NearCache)}
	hk := &afterRead{Store: inner}
	var ev events
	a := cached.New(hk, shared, cached.Options{Timeout: time.Second, NearBytes: 1 << 20, Observer: ev.observer()})
	b := cached.New(inner, shared, cached.Options{Timeout: time.Second, NearBytes: 1 << 20}) // another replica
	write, read := patientP1(t, b, a)
	write(1)
	for i, want := range []struct{ reads, hits int64 }{{1, 0}, {1, 1}, {1, 2}} {
		read(1)
		if got, hits := inner.reads.Load(), int64(ev.get("hit", "read")); got != want.reads || hits != want.hits {
			t.Fatalf("read #%d: %d store reads and %d hits, want %d and %d", i+1, got, hits, want.reads, want.hits)
		}
	}
	if shared.known.Load() == 0 {
		t.Fatal("the watch was never asked")
	}
	write(2) // at the other replica: the near entry's stamps are now old
	read(2)
	read(2)
	if got, hits := inner.reads.Load(), ev.get("hit", "read"); got != 2 || hits != 3 {
		t.Errorf("after the write: %d store reads and %d hits in all, want 2 and 3 (refilled by the first read, hit by the second)", got, hits)
	}
	// A write that lands after a miss's store read and before its fill:
	// the entry is filed under the values vouched for before the store
	// read, so the next read goes to the store and sees the write.
	write(3)
	hk.after = func() { hk.after = nil; write(4) }
	read(3)
	read(4)
}

// afterRead runs after, when set, once the inner store's Read has
// answered (a write racing a miss's fill).
type afterRead struct {
	store.Store
	after func()
}

func (s *afterRead) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	r, err := s.Store.Read(ctx, typ, id)
	if s.after != nil {
		s.after()
	}
	return r, err
}

// roundTrips is a replica's Redis cache counting the stamp reads it sends
// (the round trips a near hit makes when the watch cannot vouch).
type roundTrips struct {
	*redis.Cache
	stamps atomic.Int64
}

func (r *roundTrips) Stamps(ctx context.Context, stamps []string) (string, error) {
	r.stamps.Add(1)
	return r.Cache.Stamps(ctx, stamps)
}

// openReplicaCache opens a replica's own Redis connection (client name
// name) under prefix, closed when t ends.
func openReplicaCache(t *testing.T, url, prefix, name string) (*redis.Ephemeral, *goredis.Client) {
	t.Helper()
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	e, err := redis.Open(context.Background(), url+sep+"client_name="+name, prefix)
	if err != nil {
		t.Fatal(err)
	}
	admin := goredis.NewClient(opt)
	t.Cleanup(func() {
		_ = e.DeleteAll(context.Background())
		_ = e.Close()
		_ = admin.Close()
	})
	return e, admin
}

// cutSubscription kills the subscribed connection of the client named
// name, as a network fault would.
func cutSubscription(t *testing.T, admin *goredis.Client, name string) {
	t.Helper()
	ctx := context.Background()
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		if fields["name"] == name && fields["sub"] != "" && fields["sub"] != "0" {
			if err := admin.Do(ctx, "CLIENT", "KILL", "ID", fields["id"]).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("killed %d subscribed connections, want 1", killed)
	}
}

// TestWatchedReplicas (docs/design/security.md CACHE-3): two replicas, each
// with its own Redis connection and near cache, over one store. With the
// near cache warm at B, a write through A is seen by B's next read, search
// and $everything, and B's near hits make no Redis round trip while its
// watch vouches for the stamps; with B's subscription cut (and while it
// reconnects), B still never answers an old version: it checks the stamps
// (fail closed) or has applied the write before A's Apply returned.
func TestWatchedReplicas(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	var b8 [8]byte
	if _, err := rand.Read(b8[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "ketabridge-test:" + hex.EncodeToString(b8[:]) + ":"
	nameB := "kb-replica-b-" + hex.EncodeToString(b8[:])
	ea, _ := openReplicaCache(t, url, prefix, "kb-replica-a-"+hex.EncodeToString(b8[:]))
	eb, admin := openReplicaCache(t, url, prefix, nameB)
	st := openSQLite(t, storetest.NewFakeClock(storetest.T0))
	var hits atomic.Int64
	rb := &roundTrips{Cache: eb.Cache()}
	opts := cached.Options{Timeout: time.Second, NearBytes: 1 << 20}
	a := cached.New(st, ea.Cache(), opts)
	opts.Observer = cached.Observer{Hit: func(string) { hits.Add(1) }}
	b := cached.New(st, rb, opts)

	v := 0
	write := func() {
		t.Helper()
		v++
		rw := storetest.Res("Patient", "p1", "p1", fmt.Sprintf(`,"v":%d`, v))
		if _, err := a.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", fmt.Sprint("h", v), rw)}); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func(phase string) {
		t.Helper()
		r, err := b.Read(ctx, "Patient", "p1")
		if err != nil || r.Version != int64(v) {
			t.Fatalf("%s: B Read = v%d, %v; want v%d", phase, r.Version, err, v)
		}
		res, err := b.Search(ctx, store.Query{Type: "Patient"})
		if err != nil || len(res.Resources) != 1 || res.Resources[0].Version != int64(v) {
			t.Fatalf("%s: B Search = %+v, %v; want v%d", phase, res, err, v)
		}
		rs, _, err := b.Everything(ctx, store.EverythingQuery{Patient: "p1"})
		if err != nil || len(rs) != 1 || rs[0].Version != int64(v) {
			t.Fatalf("%s: B Everything = %+v, %v; want v%d", phase, rs, err, v)
		}
	}
	write()
	// Warm B until its watch vouches: a near hit without a stamp read.
	deadline := time.Now().Add(20 * time.Second)
	for {
		before, trips := hits.Load(), rb.stamps.Load()
		readAll("warming")
		if hits.Load()-before == 3 && rb.stamps.Load() == trips {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B's near hits never stopped reading the stamps from Redis")
		}
		time.Sleep(10 * time.Millisecond)
	}

	const rounds = 30
	trips, before := rb.stamps.Load(), hits.Load()
	for range rounds {
		write()
		readAll("watched") // refilled: the near entries were of the old stamps
		readAll("watched, warm")
	}
	// 3 near hits per round at least (the second reads); a lease lapsing
	// on a loaded machine makes some of them read the stamps, most not.
	if h := hits.Load() - before; h < 3*rounds {
		t.Errorf("%d near hits in %d rounds, want at least %d", h, rounds, 3*rounds)
	}
	if n := rb.stamps.Load() - trips; n > 3*rounds {
		t.Errorf("%d stamp round trips for %d near hits: the watch did not vouch", n, 6*rounds)
	}

	for range 3 {
		cutSubscription(t, admin, nameB)
		for range 5 {
			write()
			readAll("cut")
			readAll("cut, again")
		}
	}
}

// patientP1 returns the near-read tests' write of patient p1's version v
// through replica b, and their read of p1 through replica a, which must
// answer version want.
func patientP1(t *testing.T, b, a *cached.Store) (write func(v int), read func(want int64)) {
	ctx := context.Background()
	write = func(v int) {
		t.Helper()
		rw := storetest.Res("Patient", "p1", "p1", fmt.Sprintf(`,"v":%d`, v))
		if _, err := b.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", fmt.Sprint("h", v), rw)}); err != nil {
			t.Fatal(err)
		}
	}
	read = func(want int64) {
		t.Helper()
		r, err := a.Read(ctx, "Patient", "p1")
		if err != nil || r.Version != want {
			t.Fatalf("Read = v%d, %v; want v%d", r.Version, err, want)
		}
	}
	return write, read
}
