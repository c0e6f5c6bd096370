// Package storetest is the backend-neutral contract suite every store.Store
// implementation passes (store/sqlite now, store/postgres later):
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, clock store.Clock) store.Store {
//			s, err := mybackend.Open(ctx, freshDatabase(t), clock)
//			if err != nil { t.Fatal(err) }
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Each subtest calls newStore for its own empty store, built on a *FakeClock
// the subtest controls, so expected versions and lastUpdated values are exact.
package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// NewStoreFunc returns a fresh, empty store that stamps times from clock. It
// registers its own cleanup (t.Cleanup) and fails t when it cannot open one.
// The suite may Close the store itself before the cleanup runs.
type NewStoreFunc func(t *testing.T, clock store.Clock) store.Store

// Run runs the contract suite against fresh stores made by newStore (each
// subtest gets its own store and its own FakeClock).
func Run(t *testing.T, newStore NewStoreFunc) {
	t.Run("Write", func(t *testing.T) { testWrite(t, newStore) })
	t.Run("Read", func(t *testing.T) { testRead(t, newStore) })
	t.Run("Search", func(t *testing.T) { testSearch(t, newStore) })
	t.Run("InsertionOrder", func(t *testing.T) { testInsertionOrder(t, newStore) })
	t.Run("CompartmentMove", func(t *testing.T) { testCompartmentMove(t, newStore) })
	t.Run("Refs", func(t *testing.T) { testRefs(t, newStore) })
	t.Run("Everything", func(t *testing.T) { testEverything(t, newStore) })
	t.Run("Not", func(t *testing.T) { testNot(t, newStore) })
	t.Run("Access", func(t *testing.T) { testAccess(t, newStore) })
	t.Run("Expect", func(t *testing.T) { testExpect(t, newStore) })
	t.Run("LastUpdatedOrder", func(t *testing.T) { testLastUpdatedOrder(t, newStore) })
	t.Run("CreateOnly", func(t *testing.T) { testCreateOnly(t, newStore) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, newStore) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, newStore) })
	t.Run("Readiness", func(t *testing.T) { testReadiness(t, newStore) })
	t.Run("Bulk", func(t *testing.T) { testBulk(t, newStore) })
}

// FakeClock is a store.Clock that tests set and advance. Safe for concurrent
// use.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// T0 is the time every suite clock starts at.
var T0 = time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)

// NewFakeClock returns a clock reading t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now implements store.Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set makes the clock read t.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
