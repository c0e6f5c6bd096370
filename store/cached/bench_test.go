package cached_test

import (
	"context"
	"testing"

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
