package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestChangeVersion: a commit by another process (here another Store on the
// same file) changes ChangeVersion, as do the store's own writes; unchanged
// records and audit events do not.
func TestChangeVersion(t *testing.T) {
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
	version := func() int64 {
		t.Helper()
		v, err := a.ChangeVersion(ctx)
		if err != nil {
			t.Fatalf("ChangeVersion: %v", err)
		}
		return v
	}
	v0 := version()
	rec := storetest.Rec("patient", "p1", "h1", storetest.Res("Patient", "p1", "p1", `"active":true`))
	if _, err := a.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	v1 := version()
	if v1 == v0 {
		t.Fatal("a write left the change version unchanged")
	}
	if _, err := a.Apply(ctx, []store.RecordWrite{rec}); err != nil { // unchanged
		t.Fatal(err)
	}
	if err := a.AppendAudit(ctx, []store.AuditRecord{{ID: "0b6a4a62-5b9e-4f0e-9d3e-2a1c9b7c1e01", Recorded: time.Now(), Interaction: "read", Status: 200}}); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != v1 {
		t.Fatalf("an unchanged record or an audit event moved the change version %d -> %d", v1, v)
	}
	rec2 := storetest.Rec("patient", "p2", "h1", storetest.Res("Patient", "p2", "p2", `"active":true`))
	if _, err := b.Apply(ctx, []store.RecordWrite{rec2}); err != nil {
		t.Fatal(err)
	}
	if v := version(); v == v1 {
		t.Fatal("another connection's commit left the change version unchanged")
	}
}
