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

// mirrorSet is the replicas' shared view of marked keys that a fake
// store.Mirrored reads: what Mark has made every vouching mirror hold.
type mirrorSet struct{ keys map[string]bool }

// mirroredEphemeral is a store.Mirrored (and BatchGetter) over a memory
// Ephemeral: Mark puts the key and adds it to the shared set; Marked
// answers from the set while vouch is set, else declines. It counts the
// reads the check sends to "Redis".
type mirroredEphemeral struct {
	store.Ephemeral
	set    *mirrorSet
	vouch  bool
	down   bool // the reads fail as with Redis unreachable
	reads  int
	marked int
}

func (e *mirroredEphemeral) Get(ctx context.Context, key string) ([]byte, error) {
	return e.GetBatched(ctx, key)
}

func (e *mirroredEphemeral) GetBatched(ctx context.Context, key string) ([]byte, error) {
	e.reads++
	if e.down {
		return nil, fmt.Errorf("redis: get: %w", store.ErrUnavailable)
	}
	return e.Ephemeral.Get(ctx, key)
}

func (e *mirroredEphemeral) Mark(ctx context.Context, key string, ttl time.Duration) error {
	if e.down {
		return fmt.Errorf("redis: mark: %w", store.ErrUnavailable)
	}
	e.marked++
	if err := e.Ephemeral.Put(ctx, key, []byte{1}, ttl); err != nil {
		return err
	}
	e.set.keys[key] = true
	return nil
}

func (e *mirroredEphemeral) Marked(key string) (bool, bool) {
	if !e.vouch {
		return false, false
	}
	return e.set.keys[key], true
}

// TestSharedRevocationsMirrored (docs/design/security.md INT-4): with a
// store.Mirrored (Redis), Revoke marks the grant (which returns once every
// vouching mirror holds it) and the check answers from the mirror with no
// read of Redis, also for a revocation made at another replica; a mirror
// that cannot vouch sends the check to Redis and then the durable store, as
// before, and with both down it fails closed.
func TestSharedRevocationsMirrored(t *testing.T) {
	ctx := context.Background()
	clock := &tdClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := newTDStore()
	for _, id := range []string{"g1", "g2", "g3"} {
		if err := st.CreateGrant(ctx, store.Grant{ID: id, ClientID: "c", Scope: "patient/*.rs", Created: clock.Now(), Expires: clock.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	mem := memory.NewEphemeral(clock)
	set := &mirrorSet{keys: map[string]bool{}}
	ea := &mirroredEphemeral{Ephemeral: mem, set: set, vouch: true}
	eb := &mirroredEphemeral{Ephemeral: mem, set: set, vouch: true}
	a, err := NewSharedRevocations(ctx, st, ea, clock)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSharedRevocations(ctx, st, eb, clock)
	if err != nil {
		t.Fatal(err)
	}
	// B's durable store cannot answer: only the mirror or Redis can.
	b.(*sharedRevocations).st = downGrants{st}
	if got, err := b.Revoked(ctx, "g1"); err != nil || got {
		t.Fatalf("before: Revoked = %v, %v", got, err)
	}
	if err := a.Revoke(ctx, "g1", clock.Now()); err != nil {
		t.Fatal(err)
	}
	if ea.marked != 1 {
		t.Fatalf("Revoke marked %d keys, want 1 (through the mirror)", ea.marked)
	}
	if got, err := b.Revoked(ctx, "g1"); err != nil || !got {
		t.Fatalf("at the other replica right after Revoke: Revoked = %v, %v; want true", got, err)
	}
	if eb.reads != 0 {
		t.Fatalf("checks with a vouching mirror read Redis %d times, want 0", eb.reads)
	}

	// The mirror cannot vouch (not loaded, subscription down, lease
	// lapsed): Redis is read, on every check.
	eb.vouch = false
	if err := a.Revoke(ctx, "g2", clock.Now()); err != nil {
		t.Fatal(err)
	}
	delete(set.keys, "rev:g2") // as if B's mirror had missed it: it must not be asked
	if got, err := b.Revoked(ctx, "g2"); err != nil || !got {
		t.Fatalf("mirror not vouching: Revoked(g2) = %v, %v; want true from Redis", got, err)
	}
	if got, err := b.Revoked(ctx, "g3"); err != nil || got {
		t.Fatalf("mirror not vouching: Revoked(g3) = %v, %v; want false", got, err)
	}
	if eb.reads != 2 {
		t.Fatalf("checks without a vouching mirror read Redis %d times, want 2", eb.reads)
	}
	// Redis down too (no mirror, no reads) and the database down: fail
	// closed.
	eb.down = true
	if _, err := b.Revoked(ctx, "g3"); !store.IsUnavailable(err) {
		t.Fatalf("mirror, Redis and database down: err = %v, want an unavailable error", err)
	}
	// A revocation that cannot be published is durable and says so.
	ea.down = true
	if err := a.Revoke(ctx, "g3", clock.Now()); !store.IsUnavailable(err) {
		t.Fatalf("Revoke with Redis down: err = %v, want unavailable", err)
	}
}
