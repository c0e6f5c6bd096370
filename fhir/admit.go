package fhir

import (
	"container/list"
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/fhir/search"
)

// pageGate admits the answers that build a page of resources (a search, a
// $everything) by the page's size, so that the pages held in memory at once
// are bounded (docs/design/security.md PERF-ST-22). A page of up to 500
// resources is read whole from the store (store.Store answers a slice) and
// held until its Bundle is written; on 2 cores only two of them can be
// built at a time, yet 32 connections could each hold one. A request waits
// at the gate before its store call, holding nothing but its goroutine.
//
// The gate is a FIFO weighted semaphore: a request takes weight resources
// (its page size, at most the capacity) and gives them back when its
// Bundle is written. Waiters are served in arrival order, so no request,
// small or large, waits behind a later one; a waiter whose context ends
// leaves the queue with its error. The gate is taken once per request, in
// the handler, never inside a store call, so nested store calls (includes,
// $everything's type-by-type searches) never wait on it.
//
// A holder gives its weight back after hold at the latest, even if its
// Bundle is not yet written: a client that does not read its answer must not
// keep every other request waiting. The page stays in memory until it is
// written, as without the gate; only the bound lapses for it.
type pageGate struct {
	capacity int
	hold     time.Duration

	mu      sync.Mutex
	used    int
	waiters list.List // of *gateWaiter, in arrival order
}

// gateWaiter is one request waiting at the gate; ready is closed when it
// has been granted its weight.
type gateWaiter struct {
	n     int
	ready chan struct{}
}

// pageGateSlots is how many full pages (search.MaxCount resources) the gate
// admits per core: enough that the cores always have a page to build while
// others are written, and far fewer than the 32 connections of the
// benchmark (PERF-ST-22).
const pageGateSlots = 2

// pageGateHold is how long a request keeps its weight at most (see
// pageGate): long enough that a page built and written at full load keeps
// it to the end (a $everything page takes about 10 ms of a core), short
// enough that a stalled client delays the others by a fraction of a second.
const pageGateHold = 500 * time.Millisecond

// newPageGate returns the gate for this process's cores.
func newPageGate() *pageGate {
	return &pageGate{capacity: pageGateSlots * runtime.GOMAXPROCS(0) * search.MaxCount, hold: pageGateHold}
}

// acquire waits until the page of n resources may be built, and returns
// the function that gives its weight back (to call once the answer is
// written; later calls do nothing). It fails with ctx's error when ctx ends
// first. n <= 0 (no page: a count) passes at once.
func (g *pageGate) acquire(ctx context.Context, n int) (release func(), err error) {
	if g == nil || n <= 0 {
		return func() {}, nil
	}
	n = min(n, g.capacity)
	g.mu.Lock()
	if g.waiters.Len() == 0 && g.used+n <= g.capacity {
		g.used += n
		g.mu.Unlock()
		return g.releaser(n), nil
	}
	w := &gateWaiter{n: n, ready: make(chan struct{})}
	e := g.waiters.PushBack(w)
	g.mu.Unlock()

	select {
	case <-w.ready:
		return g.releaser(n), nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	select {
	case <-w.ready:
		// Granted while ctx ended: give the weight back.
		g.used -= n
	default:
		g.waiters.Remove(e)
	}
	// Either way the queue's head may now fit: a granted weight came
	// back, or a large waiter at the head left.
	g.grant()
	g.mu.Unlock()
	return nil, ctx.Err()
}

// releaser returns the release of n resources, run once: by the caller,
// or by the hold timer, whichever comes first.
func (g *pageGate) releaser(n int) func() {
	var once sync.Once
	give := func() {
		once.Do(func() {
			g.mu.Lock()
			g.used -= n
			g.grant()
			g.mu.Unlock()
		})
	}
	t := time.AfterFunc(g.hold, give)
	return func() {
		t.Stop()
		give()
	}
}

// grant admits waiters from the head of the queue while they fit; g.mu is
// held.
func (g *pageGate) grant() {
	for e := g.waiters.Front(); e != nil; e = g.waiters.Front() {
		w := e.Value.(*gateWaiter)
		if g.used+w.n > g.capacity {
			return
		}
		g.used += w.n
		g.waiters.Remove(e)
		close(w.ready)
	}
}
