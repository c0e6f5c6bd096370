// Package memory is the in-memory store.Ephemeral of the embedded (single
// process) mode: a mutex-guarded map whose expired entries are dropped when
// touched and by a bounded periodic sweep, so it never grows beyond the live
// entries plus what expired since the last sweep.
package memory

import (
	"context"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// Sweep policy: a full pass over the map runs on a write when sweepInterval
// has passed on the clock since the last pass, or when the map has doubled
// (and holds at least minSweepLen entries) since then. Both bound the work
// to amortized O(1) per write.
const (
	sweepInterval = time.Minute
	minSweepLen   = 1024
)

// Ephemeral is the in-memory store.Ephemeral. Safe for concurrent use; the
// zero value is not usable, call NewEphemeral.
type Ephemeral struct {
	clock store.Clock

	mu        sync.Mutex
	m         map[string]entry
	lastSweep time.Time
	sweepLen  int // entries left by the last sweep
}

type entry struct {
	val []byte
	n   int64
	exp time.Time
}

var _ store.Ephemeral = (*Ephemeral)(nil)

// NewEphemeral returns an empty Ephemeral whose expiry reads clock (the
// system clock when nil).
func NewEphemeral(clock store.Clock) *Ephemeral {
	if clock == nil {
		clock = store.SystemClock{}
	}
	return &Ephemeral{clock: clock, m: make(map[string]entry), lastSweep: clock.Now()}
}

// live returns the unexpired entry under key, dropping an expired one.
// Callers hold mu.
func (e *Ephemeral) live(key string, now time.Time) (entry, bool) {
	en, ok := e.m[key]
	if !ok {
		return entry{}, false
	}
	if !now.Before(en.exp) {
		delete(e.m, key)
		return entry{}, false
	}
	return en, true
}

// set stores en under key and sweeps when due. Callers hold mu.
func (e *Ephemeral) set(key string, en entry, now time.Time) {
	e.m[key] = en
	if now.Sub(e.lastSweep) >= sweepInterval || (len(e.m) >= minSweepLen && len(e.m) >= 2*e.sweepLen) {
		for k, v := range e.m {
			if !now.Before(v.exp) {
				delete(e.m, k)
			}
		}
		e.lastSweep, e.sweepLen = now, len(e.m)
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte(nil), b...)
}

// Put stores val under key for ttl, replacing any value.
func (e *Ephemeral) Put(_ context.Context, key string, val []byte, ttl time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	e.set(key, entry{val: clone(val), exp: now.Add(ttl)}, now)
	return nil
}

// Get returns a copy of the value, or store.ErrNotFound when absent or
// expired.
func (e *Ephemeral) Get(_ context.Context, key string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.live(key, e.clock.Now())
	if !ok {
		return nil, store.ErrNotFound
	}
	return clone(en.val), nil
}

// Take returns and deletes the value (single use), or store.ErrNotFound.
func (e *Ephemeral) Take(_ context.Context, key string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.live(key, e.clock.Now())
	if !ok {
		return nil, store.ErrNotFound
	}
	delete(e.m, key)
	return en.val, nil
}

// Claim stores key for ttl if absent and reports whether this call stored it.
func (e *Ephemeral) Claim(_ context.Context, key string, ttl time.Duration) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	if _, ok := e.live(key, now); ok {
		return false, nil
	}
	e.set(key, entry{exp: now.Add(ttl)}, now)
	return true, nil
}

// Incr increments the counter under key, which expires ttl after its first
// increment, and returns the new value.
func (e *Ephemeral) Incr(_ context.Context, key string, ttl time.Duration) (int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	en, ok := e.live(key, now)
	if !ok {
		en = entry{exp: now.Add(ttl)}
	}
	en.n++
	e.set(key, en, now)
	return en.n, nil
}

// Delete removes key (no error when absent).
func (e *Ephemeral) Delete(_ context.Context, key string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
	return nil
}

// len returns the number of entries held, expired ones included (tests).
func (e *Ephemeral) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.m)
}
