package store_test

import (
	"context"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// A Lease gives back what it holds exactly once, at Release, and refuses
// to hold anything after (docs/design/security.md PERF-ST-18).
func TestLeaseReleasesOnce(t *testing.T) {
	if store.LeaseFrom(context.Background()) != nil {
		t.Fatal("a context without a Lease has one")
	}
	ctx, l := store.WithLease(context.Background())
	if store.LeaseFrom(ctx) != l {
		t.Fatal("LeaseFrom does not return the context's Lease")
	}
	puts := 0
	for range 3 {
		if !l.Hold(func() { puts++ }) {
			t.Fatal("Hold refused before Release")
		}
	}
	if puts != 0 {
		t.Fatalf("%d buffers given back before Release", puts)
	}
	l.Release()
	if puts != 3 {
		t.Fatalf("Release gave back %d buffers, want 3", puts)
	}
	l.Release()
	if puts != 3 {
		t.Fatalf("a second Release gave back buffers again: %d", puts)
	}
	if l.Hold(func() { puts++ }) {
		t.Fatal("Hold accepted after Release: the buffer would never be given back, yet lent")
	}
	l.Release()
	if puts != 3 {
		t.Fatalf("a put held after Release ran: %d", puts)
	}
}
