package store

import (
	"context"
	"sync"
)

// Lease lets a store lend a caller memory for one answer and have it back
// when the caller is done (docs/design/security.md PERF-ST-18): the read
// cache (store/cached) expands a cached page into a pooled buffer instead
// of new memory when the context carries a Lease, and SQLite (store/sqlite)
// copies a page's bodies into pooled chunks instead of a new slice per row
// (PERF-ST-21); the buffers return to the pool when the Lease is released. The Resources' Bodies of such an
// answer alias the lent buffer.
//
// The caller that creates a Lease owns the answers read under it and
// promises that nothing keeps any part of them (a Body or a sub-slice of
// one) after it calls Release: a buffer reused while an answer still
// referenced it would put another request's data into that answer. So a
// Lease is created by the code that writes the answer out (the FHIR
// handlers copy every body into the response before they release), only
// for the store calls whose answers that code alone consumes, and released
// once, after the response is written (defer). A store lends only what
// nothing of its own retains (no near or hot cache entry).
//
// Safe for concurrent use. The zero value is not usable: use WithLease.
type Lease struct {
	mu       sync.Mutex
	released bool
	puts     []func()
}

type leaseKey struct{}

// WithLease returns ctx carrying a new Lease, and the Lease; the caller
// must Release it once it is done with every answer read under ctx.
func WithLease(ctx context.Context) (context.Context, *Lease) {
	l := &Lease{}
	return context.WithValue(ctx, leaseKey{}, l), l
}

// WithoutLease returns ctx without its Lease: for a store call whose answer
// the caller's own code keeps beyond the request (a near cache entry), so
// that no store below it lends (docs/design/security.md PERF-ST-21).
func WithoutLease(ctx context.Context) context.Context {
	if LeaseFrom(ctx) == nil {
		return ctx
	}
	return context.WithValue(ctx, leaseKey{}, (*Lease)(nil))
}

// LeaseFrom returns the Lease ctx carries, or nil.
func LeaseFrom(ctx context.Context) *Lease {
	l, _ := ctx.Value(leaseKey{}).(*Lease)
	return l
}

// Hold registers put, which gives a lent buffer back, to run at Release. It
// reports false when the Lease is already released: put is not kept, and
// the store must not lend (the buffer stays the caller's, for the
// collector).
func (l *Lease) Hold(put func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return false
	}
	l.puts = append(l.puts, put)
	return true
}

// Release gives back everything lent under the Lease, each buffer exactly
// once; later calls do nothing, and later Holds fail.
func (l *Lease) Release() {
	l.mu.Lock()
	puts := l.puts
	l.puts, l.released = nil, true
	l.mu.Unlock()
	for _, put := range puts {
		put()
	}
}
