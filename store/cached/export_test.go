package cached

import (
	"testing"
	"time"
)

// ShortBumpBudget makes Apply give up on a failing Bump after budget (tests
// of the failure, which would otherwise wait for the full budget).
func ShortBumpBudget(t *testing.T, budget time.Duration) {
	old, oldBackoff := bumpBudget, bumpBackoff
	bumpBudget, bumpBackoff = budget, time.Millisecond
	t.Cleanup(func() { bumpBudget, bumpBackoff = old, oldBackoff })
}

// HotBytes returns the decoded bytes the Store's hot entries hold
// (PERF-ST-10).
func HotBytes(s *Store) int64 {
	s.hot.mu.RLock()
	defer s.hot.mu.RUnlock()
	return s.hot.bytes
}

// FlightWaiters returns how many misses wait for another's load of the
// same answer (flight.go, CACHE-7).
func FlightWaiters(s *Store) int {
	s.fl.mu.Lock()
	defer s.fl.mu.Unlock()
	n := 0
	for _, f := range s.fl.m {
		n += f.waiters
	}
	return n
}
