package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestForeignChangeVersion: a commit by another process (here another Store
// on the same file) changes ForeignChangeVersion; the store's own writes,
// unchanged records and audit events do not (docs/design/security.md
// CACHE-6), not even while its writes commit concurrently with the reads.
func TestForeignChangeVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kb.db")
	a, err := Open(ctx, path, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	version := func(s *Store) int64 {
		t.Helper()
		v, err := s.ForeignChangeVersion(ctx)
		if err != nil {
			t.Fatalf("ForeignChangeVersion: %v", err)
		}
		return v
	}
	patient := func(id string) store.RecordWrite {
		return storetest.Rec("patient", id, "h1", storetest.Res("Patient", id, id, `"active":true`))
	}
	v0, b0 := version(a), version(b)
	rec := patient("p1")
	if _, err := a.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	if v := version(a); v != v0 {
		t.Fatalf("the store's own write moved its foreign change version %d -> %d", v0, v)
	}
	if v := version(b); v == b0 {
		t.Fatal("a write by another store left the foreign change version unchanged")
	}
	if _, err := a.Apply(ctx, []store.RecordWrite{rec}); err != nil { // unchanged
		t.Fatal(err)
	}
	if err := a.AppendAudit(ctx, []store.AuditRecord{{ID: "0b6a4a62-5b9e-4f0e-9d3e-2a1c9b7c1e01", Recorded: time.Now(), Interaction: "read", Status: 200}}); err != nil {
		t.Fatal(err)
	}
	b1 := version(b)
	if v := version(a); v != v0 {
		t.Fatalf("an unchanged record or an audit event moved the foreign change version %d -> %d", v0, v)
	}

	// The store's own writes racing the reads: never seen as foreign.
	var wg sync.WaitGroup
	done := make(chan struct{})
	var werr error
	wg.Go(func() {
		defer close(done)
		for i := range 200 {
			if _, err := a.Apply(ctx, []store.RecordWrite{patient(fmt.Sprintf("q%d", i))}); err != nil {
				werr = err
				return
			}
		}
	})
	reads := 0
	for polling := true; polling; {
		select {
		case <-done:
			polling = false
		default:
		}
		if v := version(a); v != v0 {
			wg.Wait()
			t.Fatalf("read %d, while the store wrote: foreign change version %d -> %d", reads, v0, v)
		}
		reads++
	}
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	if v := version(b); v == b1 {
		t.Fatal("200 writes by another store left the foreign change version unchanged")
	}
	if _, err := b.Apply(ctx, []store.RecordWrite{patient("p2")}); err != nil {
		t.Fatal(err)
	}
	if v := version(a); v == v0 {
		t.Fatal("another store's commit left the foreign change version unchanged")
	}
	t.Logf("%d reads while 200 writes committed", reads)
}
