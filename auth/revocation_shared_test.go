package auth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

// downEphemeral is a shared Ephemeral that cannot be reached.
type downEphemeral struct{ store.Ephemeral }

func (downEphemeral) Get(context.Context, string) ([]byte, error) {
	return nil, fmt.Errorf("redis: get: %w", store.ErrUnavailable)
}

func (downEphemeral) Put(context.Context, string, []byte, time.Duration) error {
	return fmt.Errorf("redis: put: %w", store.ErrUnavailable)
}

// downGrants is an AuthStore whose grant lookups fail like a database that
// went away.
type downGrants struct{ *tdStore }

func (downGrants) GetGrant(context.Context, string) (store.Grant, error) {
	return store.Grant{}, fmt.Errorf("postgres: %w", store.ErrUnavailable)
}

func TestSharedRevocationsAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	clock := &tdClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := newTDStore()
	for _, id := range []string{"g1", "g2"} {
		if err := st.CreateGrant(ctx, store.Grant{ID: id, ClientID: "c", Scope: "patient/*.rs", Created: clock.Now(), Expires: clock.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	eph := memory.NewEphemeral(clock)
	a, err := NewSharedRevocations(ctx, st, eph, clock)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSharedRevocations(ctx, st, eph, clock)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Revoked(ctx, "g1"); err != nil || got {
		t.Fatalf("before: Revoked = %v, %v", got, err)
	}
	if err := a.Revoke(ctx, "g1", clock.Now()); err != nil {
		t.Fatal(err)
	}
	// B's own set was loaded before the revocation and is not due for a
	// refresh (the clock stands still): only the shared state can tell it.
	if got, err := b.Revoked(ctx, "g1"); err != nil || !got {
		t.Fatalf("at the other replica right after Revoke: Revoked = %v, %v; want true", got, err)
	}
	if got, _ := b.Revoked(ctx, "g2"); got {
		t.Fatal("an unrevoked grant reads revoked")
	}

	// Redis down: the durable store answers, exactly.
	c := newSharedRevocations(b.(*sharedRevocations).local, downEphemeral{}, st)
	if err := st.RevokeGrant(ctx, "g2", clock.Now()); err != nil { // e.g. by the CLI on another host
		t.Fatal(err)
	}
	if got, err := c.Revoked(ctx, "g2"); err != nil || !got {
		t.Fatalf("Redis down: Revoked(g2) = %v, %v; want true from the store", got, err)
	}
	// Redis and the database down: fail closed with an unavailable error.
	d := newSharedRevocations(c.local, downEphemeral{}, downGrants{st})
	if _, err := d.Revoked(ctx, "g3"); !store.IsUnavailable(err) {
		t.Fatalf("both down: err = %v, want an unavailable error", err)
	}
	// A revocation that cannot be published is durable and says so.
	if err := c.Revoke(ctx, "g1", clock.Now()); !store.IsUnavailable(err) {
		t.Fatalf("Revoke with Redis down: err = %v, want unavailable", err)
	}
}

// batchedEphemeral is a shared Ephemeral whose plain Get is down and whose
// GetBatched answers: it tells which one the revocation check reads.
type batchedEphemeral struct {
	store.Ephemeral
	batched int
}

func (*batchedEphemeral) Get(context.Context, string) ([]byte, error) {
	return nil, fmt.Errorf("plain get: %w", store.ErrUnavailable)
}

func (e *batchedEphemeral) GetBatched(ctx context.Context, key string) ([]byte, error) {
	e.batched++
	return e.Ephemeral.Get(ctx, key)
}

// TestSharedRevocationsBatched: with a store.BatchGetter (Redis), every
// check reads the shared state through it (one MGET shared by concurrent
// requests), still on every call: a revocation published by another replica
// is refused at once, and nothing is answered from a remembered result.
func TestSharedRevocationsBatched(t *testing.T) {
	ctx := context.Background()
	clock := &tdClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := newTDStore()
	if err := st.CreateGrant(ctx, store.Grant{ID: "g1", ClientID: "c", Scope: "patient/*.rs", Created: clock.Now(), Expires: clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewEphemeral(clock)
	a, err := NewSharedRevocations(ctx, st, mem, clock)
	if err != nil {
		t.Fatal(err)
	}
	eph := &batchedEphemeral{Ephemeral: mem}
	// The durable store cannot answer either: only the batched read can.
	b, err := NewSharedRevocations(ctx, st, eph, clock)
	if err != nil {
		t.Fatal(err)
	}
	b.(*sharedRevocations).st = downGrants{st}
	for i := range 3 {
		if got, err := b.Revoked(ctx, "g1"); err != nil || got {
			t.Fatalf("check %d before Revoke: Revoked = %v, %v", i, got, err)
		}
	}
	if err := a.Revoke(ctx, "g1", clock.Now()); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Revoked(ctx, "g1"); err != nil || !got {
		t.Fatalf("right after Revoke at the other replica: Revoked = %v, %v; want true", got, err)
	}
	if eph.batched != 4 {
		t.Fatalf("GetBatched calls = %d, want one per check (4)", eph.batched)
	}
}
