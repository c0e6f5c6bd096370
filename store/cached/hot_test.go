package cached_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestHotPages checks PERF-ST-10: a large page hit in the in-process cache
// is kept decoded and shared, a caller changing its answer changes no other
// answer, and a write to the compartment is seen by the very next read.
func TestHotPages(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openSQLite(t, storetest.NewFakeClock(storetest.T0))}
	ev := &events{}
	s := cached.New(inner, memory.NewCache(16<<20), cached.Options{Observer: ev.observer()})
	big := strings.Repeat("k", 300<<10) // a page of more than 256 KiB decoded
	write := func(v string) {
		t.Helper()
		res := []store.ResourceWrite{
			storetest.Res("Patient", "p1", "p1", `,"v":"`+v+`","note":"`+big+`"`),
			storetest.Res("Observation", "o1", "p1", ""),
		}
		if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", "h"+v, res...)}); err != nil {
			t.Fatal(err)
		}
	}
	page := func() []store.Resource {
		t.Helper()
		rs, total, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1"})
		if err != nil || total != 2 || len(rs) != 2 {
			t.Fatalf("Everything = %d resources, total %d, %v", len(rs), total, err)
		}
		return rs
	}
	write("1")
	first := page() // a miss: filled
	if cached.HotBytes(s) != 0 {
		t.Fatal("a miss filled the hot entries")
	}
	second := page() // a hit in the ring: kept decoded
	if cached.HotBytes(s) == 0 {
		t.Fatal("a hit of a large page was not kept decoded")
	}
	second[0] = store.Resource{Type: "Changed"} // the caller's own slice
	third := page()                             // a hot hit
	if versions(third) != versions(first) || string(third[0].Body) != string(first[0].Body) {
		t.Errorf("hot hit %q, want %q", versions(third), versions(first))
	}
	if n := inner.everything.Load(); n != 1 {
		t.Errorf("%d Everything calls reached the store, want 1", n)
	}
	if h := ev.get("hit", "everything"); h != 2 {
		t.Errorf("%d hits observed, want 2", h)
	}

	write("2") // the Patient's version 2
	after := page()
	if !strings.Contains(string(after[0].Body), `"v":"2"`) || versions(after) != "Patient/p1@2 Observation/o1@1 " {
		t.Errorf("after a write, the page is %q: an older hot entry was served", versions(after))
	}
	if n := inner.everything.Load(); n != 2 {
		t.Errorf("%d Everything calls reached the store, want 2", n)
	}
}

// TestHotPagesExpire checks a hot entry lives no longer than the cache
// entry it was decoded from (Options.TTL).
func TestHotPagesExpire(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openSQLite(t, storetest.NewFakeClock(storetest.T0))}
	const ttl = 2 * time.Second
	s := cached.New(inner, memory.NewCache(16<<20), cached.Options{TTL: ttl})
	res := storetest.Res("Patient", "p1", "p1", `,"note":"`+strings.Repeat("k", 300<<10)+`"`)
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", "h1", res)}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a miss, then a hit kept decoded
		if _, _, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1"}); err != nil {
			t.Fatal(err)
		}
	}
	if cached.HotBytes(s) == 0 {
		t.Fatal("a hit of a large page was not kept decoded")
	}
	before := inner.everything.Load()
	time.Sleep(ttl + 100*time.Millisecond)
	if _, _, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1"}); err != nil {
		t.Fatal(err)
	}
	if n := inner.everything.Load() - before; n != 1 {
		t.Errorf("after the TTL, %d Everything calls reached the store, want 1", n)
	}
}
