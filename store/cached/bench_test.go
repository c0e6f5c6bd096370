package cached_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// benchStore is a SQLite store holding one Patient (a body of about 1 KiB)
// behind the memory cache, or the bare SQLite store when !withCache.
func benchStore(b *testing.B, withCache bool) store.Store {
	b.Helper()
	var st store.Store = openSQLite(b, storetest.NewFakeClock(storetest.T0))
	if withCache {
		st = cached.New(st, memory.NewCache(64<<20), cached.Options{})
	}
	rest := `,"text":"` + string(make([]byte, 0, 1000)) + `"`
	for range 1000 {
		rest = rest[:len(rest)-1] + `x"`
	}
	if _, err := st.Apply(context.Background(), []store.RecordWrite{storetest.Rec("patient", "p1", "h1",
		storetest.Res("Patient", "p1", "p1", rest, storetest.Str("name", "Ada")))}); err != nil {
		b.Fatal(err)
	}
	return st
}

func benchRead(b *testing.B, st store.Store) {
	ctx := context.Background()
	if _, err := st.Read(ctx, "Patient", "p1"); err != nil { // fills
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Read(ctx, "Patient", "p1"); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSearch(b *testing.B, st store.Store) {
	ctx := context.Background()
	q := store.Query{Type: "Patient", Clauses: []store.Clause{{Param: "name", Kind: store.KindString, Values: []store.Value{{Str: "ada"}}}}, Count: 20}
	if _, err := st.Search(ctx, q); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Search(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadHit is a Read served by the memory cache.
func BenchmarkReadHit(b *testing.B) { benchRead(b, benchStore(b, true)) }

// BenchmarkReadSQLite is the same Read from SQLite, for comparison.
func BenchmarkReadSQLite(b *testing.B) { benchRead(b, benchStore(b, false)) }

// BenchmarkSearchHit is a Search served by the memory cache.
func BenchmarkSearchHit(b *testing.B) { benchSearch(b, benchStore(b, true)) }

// BenchmarkSearchSQLite is the same Search from SQLite.
func BenchmarkSearchSQLite(b *testing.B) { benchSearch(b, benchStore(b, false)) }

// unwatched hides the Redis cache's watch (store.Watched): every near hit
// reads the stamps from Redis, as before CACHE-3.
type unwatched struct {
	store.Cache
	nc store.NearCache
}

func (u unwatched) Stamps(ctx context.Context, stamps []string) (string, error) {
	return u.nc.Stamps(ctx, stamps)
}

// benchNearRead is a Read served by a replica's near cache over Redis, 32
// callers at once, with the watch vouching for the stamps or without it.
func benchNearRead(b *testing.B, watched bool) {
	url := storetest.ServiceURL(b, "KETABRIDGE_TEST_REDIS_URL")
	var c store.Cache = openRedisCache(b, url)
	if !watched {
		c = unwatched{Cache: c, nc: c.(store.NearCache)}
	}
	st := cached.New(openSQLite(b, storetest.NewFakeClock(storetest.T0)), c, cached.Options{NearBytes: 8 << 20})
	ctx := context.Background()
	if _, err := st.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", "h1",
		storetest.Res("Patient", "p1", "p1", `,"v":1`))}); err != nil {
		b.Fatal(err)
	}
	// Admitted on the second miss; then wait for the watch to vouch.
	for range 2 {
		if _, err := st.Read(ctx, "Patient", "p1"); err != nil {
			b.Fatal(err)
		}
	}
	if w, ok := c.(store.Watched); ok {
		for i := 0; ; i++ {
			if _, ok := w.Known([]string{"e"}); ok {
				break
			}
			if i > 2000 {
				b.Fatal("the watch never vouched")
			}
			_, _ = c.(store.NearCache).Stamps(ctx, []string{"e"})
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.ReportAllocs()
	b.SetParallelism(16) // 32 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := st.Read(ctx, "Patient", "p1"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkNearReadWatched is a near hit while the watch vouches (no round
// trip).
func BenchmarkNearReadWatched(b *testing.B) { benchNearRead(b, true) }

// BenchmarkNearReadStamps is the same near hit reading the stamps from
// Redis (shared MGETs), as when the watch cannot vouch.
func BenchmarkNearReadStamps(b *testing.B) { benchNearRead(b, false) }

// benchReadMiss reads distinct ids of 20,000 Patients (run it with
// -benchtime 20000x or less), 32 callers at once, through a replica's cache
// (near cache over Redis) or from the store alone: every read is a first
// miss, and what the cache adds to one shows as the difference.
func benchReadMiss(b *testing.B, withCache bool) {
	const n = 20_000
	inner := openSQLite(b, storetest.NewFakeClock(storetest.T0))
	ctx := context.Background()
	var recs []store.RecordWrite
	for i := range n {
		id := fmt.Sprint("p", i)
		recs = append(recs, storetest.Rec("patient", id, "h", storetest.Res("Patient", id, id, `,"v":1`)))
		if len(recs) == 1000 {
			if _, err := inner.Apply(ctx, recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	var st store.Store = inner
	if withCache {
		c := openRedisCache(b, storetest.ServiceURL(b, "KETABRIDGE_TEST_REDIS_URL"))
		st = cached.New(inner, c, cached.Options{NearBytes: 8 << 20})
		// The steady state of a replica: its watch vouches for the
		// preloaded stamps (CACHE-4), so no miss reads them from Redis.
		for i := 0; ; i++ {
			if _, ok := c.(store.Watched).Known([]string{"e", "r:0", "r:65535"}); ok {
				break
			}
			if i > 2000 {
				b.Fatal("the watch never vouched")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) * 7919 % n // a permutation of 0..n-1: no id twice in n reads
			if _, err := st.Read(ctx, "Patient", fmt.Sprint("p", i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReadMissCached is a read by id that (almost always) misses a
// replica's cache.
func BenchmarkReadMissCached(b *testing.B) { benchReadMiss(b, true) }

// BenchmarkReadMissStore is the same reads from the store alone.
func BenchmarkReadMissStore(b *testing.B) { benchReadMiss(b, false) }

// pageStore answers every Everything with the same page of 500
// Observations of about 1.2 KiB (a $everything page of the bench, 650 KB).
type pageStore struct {
	store.Store
	rs []store.Resource
}

func (p pageStore) Everything(context.Context, store.EverythingQuery) ([]store.Resource, int, error) {
	return p.rs, len(p.rs), nil
}

// BenchmarkEverythingMiss is a 500-resource $everything page that misses
// the in-process cache and is filled (each iteration asks for another
// patient): what a miss costs on top of the store's answer, in time and
// in bytes allocated (PERF-ST-11: the encoding and the compression are
// pooled, only the cache's copy of the compressed value is new).
func BenchmarkEverythingMiss(b *testing.B) {
	rs := make([]store.Resource, 500)
	for i := range rs {
		id := fmt.Sprintf("obs-%04d", i)
		body := fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":%d,"unit":"/min"},"note":[{"text":"%s"}]}`,
			id, 60+i%40, strings.Repeat("n", 1000+i%200))
		rs[i] = store.Resource{Type: "Observation", ID: id, Patient: "p", Version: 1, LastUpdated: storetest.T0, Body: []byte(body)}
	}
	st := cached.New(pageStore{rs: rs}, memory.NewCache(32<<20), cached.Options{})
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, _, err := st.Everything(ctx, store.EverythingQuery{Patient: fmt.Sprint("p", i), Count: 500}); err != nil {
			b.Fatal(err)
		}
	}
}
