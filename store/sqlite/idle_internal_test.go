package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestWriterCacheShrinksWhenIdle: the writer's page cache is small at rest
// and after a few changed records, large while an ingest's chunks are
// applied, and small again once ingest pauses; so is its WAL checkpoint
// threshold (PERF-IN-2, PERF-ST-23).
func TestWriterCacheShrinksWhenIdle(t *testing.T) {
	defer func(d time.Duration) { writerIdleAfter = d }(writerIdleAfter)
	writerIdleAfter = time.Second
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "kb.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pragma := func(name string) int {
		t.Helper()
		s.wsem <- struct{}{}
		defer func() { <-s.wsem }()
		var n int
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	cacheSize := func() int { t.Helper(); return pragma("cache_size") }
	if n := cacheSize(); n != -4096 {
		t.Fatalf("cache_size at rest = %d, want -4096", n)
	}
	if n := pragma("wal_autocheckpoint"); n != 1000 {
		t.Fatalf("wal_autocheckpoint at rest = %d, want 1000", n)
	}
	if n := pragma("journal_size_limit"); n != 134217728 {
		t.Fatalf("journal_size_limit at rest = %d, want 134217728", n)
	}
	// A few changed records (a clinic's single record, a referral) take
	// the ingest's WAL threshold but leave the cache as it is at rest
	// (docs/design/security.md PERF-ST-23).
	rec := storetest.Rec("patient", "p1", "h1", storetest.Res("Patient", "p1", "p1", `"active":true`))
	if _, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	if n := cacheSize(); n != -4096 {
		t.Errorf("cache_size after a one-resource Apply = %d, want -4096", n)
	}
	if n := pragma("wal_autocheckpoint"); n != 32768 {
		t.Errorf("wal_autocheckpoint after a one-resource Apply = %d, want 32768", n)
	}
	// An ingest's chunk grows it.
	var chunk []store.RecordWrite
	for i := range ingestMinResources {
		id := fmt.Sprintf("c%d", i)
		chunk = append(chunk, storetest.Rec("patient", id, "h1", storetest.Res("Patient", id, id, `"active":true`)))
	}
	if _, err := s.Apply(ctx, chunk); err != nil {
		t.Fatal(err)
	}
	// Right after the Apply (the timer fires a second after it).
	if n := cacheSize(); n != -65536 {
		t.Errorf("cache_size after Apply = %d, want -65536", n)
	}
	if n := pragma("wal_autocheckpoint"); n != 32768 {
		t.Errorf("wal_autocheckpoint after Apply = %d, want 32768", n)
	}
	if n := pragma("journal_size_limit"); n != -1 {
		t.Errorf("journal_size_limit after Apply = %d, want -1", n)
	}
	wbuf := func() *rowBuf {
		s.wsem <- struct{}{}
		defer func() { <-s.wsem }()
		return s.wbuf
	}
	// Hold the writer, as its other users do, while the timer fires: the
	// timer must not give up (it is armed again), or the cache would stay
	// large until the next ingest.
	s.wsem <- struct{}{}
	if s.wbuf == nil {
		t.Errorf("the writer's row buffer is not kept while ingesting (PERF-SQLB-5)")
	}
	time.Sleep(writerIdleAfter + writerIdleAfter/2)
	<-s.wsem
	deadline := time.Now().Add(10 * time.Second)
	for cacheSize() != -4096 {
		if time.Now().After(deadline) {
			t.Fatalf("cache_size stayed %d after ingest paused", cacheSize())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := pragma("wal_autocheckpoint"); n != 1000 {
		t.Errorf("wal_autocheckpoint after ingest paused = %d, want 1000", n)
	}
	if n := pragma("journal_size_limit"); n != 134217728 {
		t.Errorf("journal_size_limit after ingest paused = %d, want 134217728", n)
	}
	if wbuf() != nil {
		t.Errorf("the writer's row buffer is kept after ingest paused")
	}
	// The next small Apply still writes, at rest.
	rec = storetest.Rec("patient", "p1", "h2", storetest.Res("Patient", "p1", "p1", `"active":false`))
	if res, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil || res[0].Outcome != store.Updated {
		t.Fatalf("second Apply = %+v, %v", res, err)
	}
	if n := cacheSize(); n != -4096 {
		t.Errorf("cache_size after a small Apply at rest = %d, want -4096", n)
	}
}

// TestIngestWALPages pins PERF-IN-3: during ingest the WAL's checkpoint
// threshold is a quarter of the database, between 128 MiB and 512 MiB, in
// steps of 8,192 pages.
func TestIngestWALPages(t *testing.T) {
	for _, c := range []struct{ db, want int64 }{
		{0, 32768},
		{100_000, 32768},  // 390 MiB: the floor
		{150_000, 32768},  // 37,500 rounds down to 32,768
		{200_000, 49152},  // 50,000 rounds down to 49,152
		{256_000, 57344},  // 1 GB (300 patients, 256k resources): 64,000 -> 57,344
		{524_288, 131072}, // 2 GiB: the cap
		{845_000, 131072}, // 3.3 GB (1M resources)
		{1 << 40, 131072},
	} {
		if got := ingestWALPages(c.db); got != c.want {
			t.Errorf("ingestWALPages(%d) = %d, want %d", c.db, got, c.want)
		}
	}
}

// TestWALThresholdFollowsTheStore pins PERF-IN-3's wiring: each Apply sets
// the WAL threshold from the database's size (bounds lowered so a small
// store reaches them), and a pause restores SQLite's default.
func TestWALThresholdFollowsTheStore(t *testing.T) {
	defer func(lo, hi, step int64, d time.Duration, every int) {
		minIngestWALPages, maxIngestWALPages, ingestWALPagesStep, writerIdleAfter, walCheckEvery = lo, hi, step, d, every
	}(minIngestWALPages, maxIngestWALPages, ingestWALPagesStep, writerIdleAfter, walCheckEvery)
	minIngestWALPages, maxIngestWALPages, ingestWALPagesStep, walCheckEvery = 4, 1<<20, 2, 1
	writerIdleAfter = time.Hour
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "kb.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pragma := func(name string) int64 {
		t.Helper()
		s.wsem <- struct{}{}
		defer func() { <-s.wsem }()
		var n int64
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var last int64
	for i := range 3 {
		var recs []store.RecordWrite
		for j := range 200 {
			id := fmt.Sprintf("p%d-%d", i, j)
			recs = append(recs, storetest.Rec("patient", id, "h", storetest.Res("Patient", id, id, `"active":true`)))
		}
		if _, err := s.Apply(ctx, recs); err != nil {
			t.Fatal(err)
		}
		// The threshold was set before this Apply wrote: from the size
		// the store had then, which the next Apply sees grown.
		got := pragma("wal_autocheckpoint")
		if i > 0 && got <= last {
			t.Errorf("Apply %d: wal_autocheckpoint = %d, not above %d: it did not follow the store", i, got, last)
		}
		if got < 4 || got%2 != 0 {
			t.Errorf("Apply %d: wal_autocheckpoint = %d, want an even number of at least 4", i, got)
		}
		last = got
	}
	if want := ingestWALPages(pragma("page_count")); last > want {
		t.Errorf("wal_autocheckpoint = %d, above ingestWALPages(page_count) = %d", last, want)
	}
}

// TestReaderCacheSize: every reader connection holds 1 MiB of page cache
// (docs/design/security.md PERF-ST-13), neither SQLite's default (about
// 2 MB) nor PERF-ST-6's former 2 MiB.
func TestReaderCacheSize(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "kb.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Hold several readers at once, so the pool opens more than one
	// connection and each is asked.
	var conns []interface{ Close() error }
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 3 {
		c, err := s.rdb.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var n int
		if err := c.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != -1024 {
			t.Errorf("reader %d: cache_size = %d, want -1024", i, n)
		}
	}
}
