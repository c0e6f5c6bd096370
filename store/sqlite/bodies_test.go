package sqlite_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestLoadedBodiesOwnTheirMemory: the bodies a page loads are kept as the
// driver returned them, without database/sql's copy (store/sqlite
// loadBodies, docs/design/security.md PERF-ST-11), which is only sound
// while the driver hands over a slice of its own per row. If a driver
// upgrade reused one buffer, the bodies of one answer would share memory,
// or a later query on the same connection would write over an earlier
// answer's bodies: both are checked here.
func TestLoadedBodiesOwnTheirMemory(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, storetest.NewFakeClock(storetest.T0))
	const n = 40
	var res []store.ResourceWrite
	res = append(res, storetest.Res("Patient", "p1", "p1", ""))
	for i := range n {
		// Bodies of different sizes and contents, over SQLite's overflow
		// pages for some.
		note := strings.Repeat(string(rune('a'+i%26)), 100+i*150)
		res = append(res, storetest.Res("Observation", fmt.Sprintf("o%02d", i), "p1", `,"note":"`+note+`"`))
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", "h1", res...)}); err != nil {
		t.Fatal(err)
	}
	// The stored bodies (stamped with meta), read by id: that path
	// copies them.
	want := map[string][]byte{}
	for _, w := range res {
		r, err := s.Read(ctx, w.Type, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		want[w.Type+"/"+w.ID] = bytes.Clone(r.Body)
	}
	first, _, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1", Count: 500})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != n+1 {
		t.Fatalf("everything: %d resources, want %d", len(first), n+1)
	}
	// Other reads, on the readers' connections (one of them the first's).
	for range 20 {
		if _, _, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1", Count: 500}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Search(ctx, store.Query{Type: "Observation", Patients: []string{"p1"}, Count: 50}); err != nil {
			t.Fatal(err)
		}
	}
	type span struct{ lo, hi uintptr }
	var spans []span
	for _, r := range first {
		if w := want[r.Type+"/"+r.ID]; !bytes.Equal(r.Body, w) {
			t.Errorf("%s/%s: body changed after later reads (%d bytes, want %d)", r.Type, r.ID, len(r.Body), len(w))
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(r.Body)))
		spans = append(spans, span{lo, lo + uintptr(cap(r.Body))})
	}
	for i := range spans {
		for j := range i {
			if spans[i].lo < spans[j].hi && spans[j].lo < spans[i].hi {
				t.Fatalf("bodies %d and %d share memory", j, i)
			}
		}
	}
}

// BenchmarkEverythingPage is a 500-resource $everything page of bodies of
// about 1.2 KiB from SQLite (the bench's page): its time and the bytes it
// allocates (PERF-ST-11: each body once, not twice).
func BenchmarkEverythingPage(b *testing.B) {
	ctx := context.Background()
	s := openTemp(b, storetest.NewFakeClock(storetest.T0))
	res := []store.ResourceWrite{storetest.Res("Patient", "p1", "p1", "")}
	for i := range 499 {
		res = append(res, storetest.Res("Observation", fmt.Sprintf("o%03d", i), "p1", `,"note":"`+strings.Repeat("n", 1100+i%200)+`"`))
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("patient", "p1", "h1", res...)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rs, _, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1", Count: 500})
		if err != nil || len(rs) != 500 {
			b.Fatal(len(rs), err)
		}
	}
}
