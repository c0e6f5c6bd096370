package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// RevocationRefresh is how often the in-memory revocation set is refreshed
// from the store, so a revocation made by another process (replica, CLI)
// takes effect within this interval (docs/design/security.md INT-3).
const RevocationRefresh = 5 * time.Second

// revocationOverlap re-reads a margin before the last refresh, covering
// revocations stamped by a process whose clock lags behind ours.
const revocationOverlap = time.Minute

// Revocations answers whether a grant was revoked: the resource server's
// check on every request (docs/design/security.md INT-3, NEG-39).
type Revocations interface {
	// Revoked reports whether the grant is revoked.
	Revoked(ctx context.Context, grantID string) (bool, error)
	// Revoke revokes the grant durably (RevocationStore.RevokeGrant) and at
	// once in this process.
	Revoke(ctx context.Context, grantID string, at time.Time) error
}

// revocationSet is the in-memory Revocations over a RevocationStore: an O(1)
// set lookup, loaded at start and refreshed from RevokedSince in the
// background at most every RevocationRefresh (never on the request path
// after the first load).
type revocationSet struct {
	st    RevocationStore
	clock store.Clock

	mu      sync.RWMutex
	revoked map[string]struct{}
	// loaded is when the last successful refresh started.
	loaded time.Time

	refreshing atomic.Bool
}

// NewRevocations loads the revoked grants from st and returns the set,
// which refreshes itself from st every RevocationRefresh.
func NewRevocations(ctx context.Context, st RevocationStore, clock store.Clock) (Revocations, error) {
	if clock == nil {
		clock = store.SystemClock{}
	}
	r := &revocationSet{st: st, clock: clock, revoked: map[string]struct{}{}}
	if err := r.refresh(ctx, time.Time{}); err != nil {
		return nil, err
	}
	return r, nil
}

// refresh adds the grants revoked at or after since.
func (r *revocationSet) refresh(ctx context.Context, since time.Time) error {
	start := r.clock.Now()
	ids, err := r.st.RevokedSince(ctx, since)
	if err != nil {
		return fmt.Errorf("auth: load revocations: %w", err)
	}
	r.mu.Lock()
	for _, id := range ids {
		r.revoked[id] = struct{}{}
	}
	r.loaded = start
	r.mu.Unlock()
	return nil
}

// Revoked implements Revocations. When the set is older than
// RevocationRefresh it starts one background refresh and answers from the
// current set meanwhile.
func (r *revocationSet) Revoked(_ context.Context, grantID string) (bool, error) {
	r.mu.RLock()
	_, ok := r.revoked[grantID]
	loaded := r.loaded
	r.mu.RUnlock()
	if r.clock.Now().Sub(loaded) >= RevocationRefresh && r.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer r.refreshing.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// A failed refresh keeps the old set and is retried on the next
			// call; the revocations it knows stay effective.
			_ = r.refresh(ctx, loaded.Add(-revocationOverlap))
		}()
	}
	return ok, nil
}

// Revoke implements Revocations: durable first, then effective here at once.
func (r *revocationSet) Revoke(ctx context.Context, grantID string, at time.Time) error {
	if err := r.st.RevokeGrant(ctx, grantID, at); err != nil {
		return fmt.Errorf("auth: revoke grant: %w", err)
	}
	r.mu.Lock()
	r.revoked[grantID] = struct{}{}
	r.mu.Unlock()
	return nil
}

// sharedRevocationTTL is how long a revocation stays in the shared
// Ephemeral: far longer than RevocationRefresh, after which every replica's
// own set (loaded from the durable store) knows it anyway.
const sharedRevocationTTL = time.Hour

// sharedCheckTimeout bounds the shared revocation lookup on the request
// path (Redis answers in well under a millisecond when it is up).
const sharedCheckTimeout = 100 * time.Millisecond

// revocationKey is the Ephemeral key of a revoked grant (grant ids are
// random and opaque).
func revocationKey(grantID string) string { return "rev:" + grantID }

// sharedRevocations is the replicated Revocations: a revocation made at any
// replica is refused at every other one at once, not after the next refresh.
// A grant is revoked when this process's set says so (the durable store, at
// most RevocationRefresh behind) or the shared Ephemeral (Redis) holds its
// key, which Revoke writes before it returns. When Redis cannot answer the
// check falls back to the durable store itself (exact, slower); when that
// fails too the error is returned and the request fails closed (503).
//
// With a store.Mirrored eph (Redis), the check asks this replica's mirror of
// the revoked grants, which Revoke's Mark updates on every replica holding
// a lease before it returns (INT-4); when the mirror cannot vouch, the key
// is read as follows. That read is never remembered: a local cache of the
// answer (for any time) would let a replica accept a token another replica
// has already acknowledged as revoked. What the check shares is the round
// trip: when eph is a store.BatchGetter (Redis), concurrent checks, and the
// read cache's stamp reads, join one MGET that is sent after each of them
// began, so a revocation acknowledged before a request arrived is still seen
// by it, on every replica (docs/design/security.md INT-3, RS-2, NEG-39).
type sharedRevocations struct {
	local *revocationSet
	eph   store.Ephemeral
	// get is eph's GetBatched when it has one, else its Get.
	get func(ctx context.Context, key string) ([]byte, error)
	// mirror is eph when it is a store.Mirrored (Redis): each replica
	// mirrors the revoked grants, so the check makes no round trip while
	// the mirror can vouch (docs/design/security.md INT-4).
	mirror store.Mirrored
	st     SharedRevocationStore
}

// NewSharedRevocations is NewRevocations for replicas sharing eph (Redis).
func NewSharedRevocations(ctx context.Context, st SharedRevocationStore, eph store.Ephemeral, clock store.Clock) (Revocations, error) {
	local, err := NewRevocations(ctx, st, clock)
	if err != nil {
		return nil, err
	}
	return newSharedRevocations(local.(*revocationSet), eph, st), nil
}

func newSharedRevocations(local *revocationSet, eph store.Ephemeral, st SharedRevocationStore) *sharedRevocations {
	r := &sharedRevocations{local: local, eph: eph, get: eph.Get, st: st}
	if b, ok := eph.(store.BatchGetter); ok {
		r.get = b.GetBatched
	}
	r.mirror, _ = eph.(store.Mirrored)
	return r
}

// Revoked implements Revocations.
func (r *sharedRevocations) Revoked(ctx context.Context, grantID string) (bool, error) {
	if ok, _ := r.local.Revoked(ctx, grantID); ok {
		return true, nil
	}
	if r.mirror != nil {
		// Every revocation acknowledged anywhere (Mark returned) is in a
		// mirror that vouches; one that cannot (not loaded, subscription
		// down, lease lapsed) sends the check to Redis, then the durable
		// store, as without it (INT-4).
		if revoked, ok := r.mirror.Marked(revocationKey(grantID)); ok {
			return revoked, nil
		}
	}
	// A hung Redis costs at most sharedCheckTimeout before the durable
	// store answers instead.
	rctx, cancel := context.WithTimeout(ctx, sharedCheckTimeout)
	_, err := r.get(rctx, revocationKey(grantID))
	cancel()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	// Redis is down: ask the durable store, which every Revoke writes first.
	g, gerr := r.st.GetGrant(ctx, grantID)
	switch {
	case gerr == nil:
		return !g.Revoked.IsZero(), nil
	case errors.Is(gerr, store.ErrNotFound):
		return false, nil // client_credentials tokens have no stored grant
	}
	return false, fmt.Errorf("auth: revocation check: %w", errors.Join(err, gerr))
}

// Revoke implements Revocations: durable first, then effective here, then
// published to every replica. When the publication fails the revocation is
// still durable (and reaches every replica within RevocationRefresh); the
// error says so, so the caller can answer 503 and the client retry.
func (r *sharedRevocations) Revoke(ctx context.Context, grantID string, at time.Time) error {
	if err := r.local.Revoke(ctx, grantID, at); err != nil {
		return err
	}
	var err error
	if r.mirror != nil {
		// Returns once every replica whose mirror may answer has it (INT-4).
		err = r.mirror.Mark(ctx, revocationKey(grantID), sharedRevocationTTL)
	} else {
		err = r.eph.Put(ctx, revocationKey(grantID), []byte{1}, sharedRevocationTTL)
	}
	if err != nil {
		return fmt.Errorf("auth: publish revocation: %w", err)
	}
	return nil
}
