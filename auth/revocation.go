package auth

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// RevocationRefresh is how often the in-memory revocation set is refreshed
// from the store, so a revocation made by another process (replica, CLI)
// takes effect within this interval (SMART.md R46).
const RevocationRefresh = 5 * time.Second

// revocationOverlap re-reads a margin before the last refresh, covering
// revocations stamped by a process whose clock lags behind ours.
const revocationOverlap = time.Minute

// Revocations answers whether a grant was revoked: the resource server's
// check on every request (SMART.md R46, N44).
type Revocations interface {
	// Revoked reports whether the grant is revoked.
	Revoked(ctx context.Context, grantID string) (bool, error)
	// Revoke revokes the grant durably (store.AuthStore.RevokeGrant) and at
	// once in this process.
	Revoke(ctx context.Context, grantID string, at time.Time) error
}

// revocationSet is the in-memory Revocations over store.AuthStore: an O(1)
// set lookup, loaded at start and refreshed from RevokedSince in the
// background at most every RevocationRefresh (never on the request path
// after the first load).
type revocationSet struct {
	st    store.AuthStore
	clock store.Clock

	mu      sync.RWMutex
	revoked map[string]struct{}
	// loaded is when the last successful refresh started.
	loaded time.Time

	refreshing atomic.Bool
}

// NewRevocations loads the revoked grants from st and returns the set,
// which refreshes itself from st every RevocationRefresh.
func NewRevocations(ctx context.Context, st store.AuthStore, clock store.Clock) (Revocations, error) {
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
