package store

import (
	"sync"
	"time"
)

// WriterLagger is implemented by stores that can say how far their writer is
// behind: how long the write that has run longest so far has been running
// (0 when nothing is being written). Readiness reports it beside the
// database's state, never instead of it: a busy writer is a healthy one
// (docs/design/architecture.md, Operability).
type WriterLagger interface {
	WriterLag() time.Duration
}

// Busy tracks the writes in flight of one process, for WriterLag. The zero
// value is ready to use; it is safe for concurrent use.
type Busy struct {
	mu      sync.Mutex
	next    uint64
	running map[uint64]time.Time
}

// Begin records a write starting now; call the returned func when it ends.
func (b *Busy) Begin() (end func()) {
	b.mu.Lock()
	if b.running == nil {
		b.running = map[uint64]time.Time{}
	}
	b.next++
	id := b.next
	b.running[id] = time.Now()
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.running, id)
		b.mu.Unlock()
	}
}

// Lag is how long the oldest write in flight has been running; 0 for none.
func (b *Busy) Lag() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var lag time.Duration
	for _, start := range b.running {
		lag = max(lag, time.Since(start))
	}
	return lag
}
