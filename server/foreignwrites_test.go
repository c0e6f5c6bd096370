package server

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestForeignWritesOnly: the embedded gateway's watcher keeps the read
// cache across the gateway's own writes, which invalidate precisely, and
// drops it after another process's (docs/design/security.md CACHE-6). Before
// CACHE-6 any write tripped it, so a clinic writing ten records a second
// emptied the cache every quarter second.
func TestForeignWritesOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kb.db")
	a, err := sqlite.Open(ctx, path, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	other, err := sqlite.Open(ctx, path, store.SystemClock{}) // another process's
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var hits atomic.Int64
	cs := cached.New(a, memory.NewCache(8<<20), cached.Options{Observer: cached.Observer{Hit: func(string) { hits.Add(1) }}})
	w := newForeignWrites(ctx, a, cs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	patient := func(id, active string) store.RecordWrite {
		return storetest.Rec("patient", id, active, storetest.Res("Patient", id, id, `"active":`+active))
	}
	for _, id := range []string{"pa", "pb"} {
		if _, err := cs.Apply(ctx, []store.RecordWrite{patient(id, "true")}); err != nil {
			t.Fatal(err)
		}
	}
	// read returns pa's body and whether the cache answered.
	read := func() (string, bool) {
		t.Helper()
		h := hits.Load()
		r, err := cs.Read(ctx, "Patient", "pa")
		if err != nil {
			t.Fatal(err)
		}
		return string(r.Body), hits.Load() > h
	}
	for range 3 { // filled on a later miss (the doorkeeper)
		read()
	}
	if _, hit := read(); !hit {
		t.Fatal("pa's read is not cached")
	}
	if w.check(ctx) {
		t.Fatal("dropped the cache with no write at all")
	}
	// The gateway's own write of another patient: pa's answer stays.
	if _, err := cs.Apply(ctx, []store.RecordWrite{patient("pb", "false")}); err != nil {
		t.Fatal(err)
	}
	if w.check(ctx) {
		t.Fatal("the gateway's own write dropped the whole read cache")
	}
	if _, hit := read(); !hit {
		t.Fatal("pa's cached read was lost to a write of pb")
	}
	// Another process changes pa: the cache cannot see it, so the watcher
	// drops it, and the next read is the new version.
	if _, err := other.Apply(ctx, []store.RecordWrite{patient("pa", "false")}); err != nil {
		t.Fatal(err)
	}
	if !w.check(ctx) {
		t.Fatal("another process's write did not drop the read cache")
	}
	body, hit := read()
	if hit || !strings.Contains(body, `"active":false`) {
		t.Fatalf("after another process's write: hit %v, body %s", hit, body)
	}
	if w.check(ctx) {
		t.Fatal("dropped the cache again with no new write")
	}
}
