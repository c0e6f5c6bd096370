package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestWriterCacheShrinksWhenIdle: the writer's page cache is small at rest,
// large while records are applied, and small again once ingest pauses; so
// is its WAL checkpoint threshold (PERF-IN-2).
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
	rec := storetest.Rec("patient", "p1", "h1", storetest.Res("Patient", "p1", "p1", `"active":true`))
	if _, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	// Right after the Apply (the timer fires a second after it).
	if n := cacheSize(); n != -65536 {
		t.Errorf("cache_size after Apply = %d, want -65536", n)
	}
	if n := pragma("wal_autocheckpoint"); n != 32768 {
		t.Errorf("wal_autocheckpoint after Apply = %d, want 32768", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cacheSize() != -4096 {
		if time.Now().After(deadline) {
			t.Fatalf("cache_size stayed %d after ingest paused", cacheSize())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := pragma("wal_autocheckpoint"); n != 1000 {
		t.Errorf("wal_autocheckpoint after ingest paused = %d, want 1000", n)
	}
	// The next Apply grows it again and still writes.
	rec = storetest.Rec("patient", "p1", "h2", storetest.Res("Patient", "p1", "p1", `"active":false`))
	if res, err := s.Apply(ctx, []store.RecordWrite{rec}); err != nil || res[0].Outcome != store.Updated {
		t.Fatalf("second Apply = %+v, %v", res, err)
	}
}
