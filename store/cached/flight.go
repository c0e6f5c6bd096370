package cached

import (
	"context"
	"sync"

	"github.com/ketabridge/ketabridge/store"
)

// flights are the store loads of cache misses in progress on this
// replica, by cache key and the stamp values the miss read
// (docs/design/security.md CACHE-7). A write drops the answers of its
// patient's searches; on a replica serving them under load, every request
// for such an answer that came before the first miss had refilled the
// cache missed too and ran the same store search (bench search-writes on
// PostgreSQL + Redis: 2.2 store searches per write where one refills the
// answer). A miss that finds a load of the same key at the same stamp
// values in flight waits for it and shares its answer instead.
//
// That answer is exactly the one the load files in the cache under those
// values, which any later lookup at the same values would be served
// (CACHE-1): the load began after the values were read, and a write
// acknowledged before the waiting read began bumped one of them before
// it was acknowledged, so the waiter, which read the values after it
// began, would have read other values and joined no flight. A load that
// fails is not shared: each waiter loads on its own.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// flight is one load in progress; v and err are set before done closes.
type flight struct {
	done    chan struct{}
	v       any
	err     error
	waiters int // under flights.mu
}

// loadShared returns load's answer for the miss of key at the stamp
// values at: a load of the same key and values in flight is waited for
// and shared (a copy by share), else this call loads, shares its answer
// with those who came meanwhile, and reports own (the caller fills the
// cache; a waiter does not). Only when nothing is lent to the caller
// (store.Lease: a lent page lives only as long as its request, PERF-ST-21)
// is a load shared; otherwise the caller loads alone.
func loadShared[T any](ctx context.Context, s *Store, key, at string, share func(T) T,
	load func(context.Context) (T, error),
) (v T, err error, own bool) {
	if store.LeaseFrom(ctx) != nil {
		v, err = load(ctx)
		return v, err, true
	}
	fk := key + "@" + at
	s.fl.mu.Lock()
	if f, ok := s.fl.m[fk]; ok {
		f.waiters++
		s.fl.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err(), false
		}
		// A cache that turned dirty meanwhile (a Bump failed on this
		// replica) serves nothing it filed, nor shares a load.
		if fv, ok := f.v.(T); ok && f.err == nil && s.failed.Load() == s.cleared.Load() {
			return share(fv), nil, false
		}
		v, err = load(ctx)
		return v, err, false
	}
	if s.fl.m == nil {
		s.fl.m = map[string]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	s.fl.m[fk] = f
	s.fl.mu.Unlock()
	defer func() {
		s.fl.mu.Lock()
		delete(s.fl.m, fk)
		s.fl.mu.Unlock()
		close(f.done)
	}()
	v, err = load(ctx)
	f.v, f.err = v, err
	return v, err, true
}
