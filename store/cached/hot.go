package cached

import (
	"sync"
	"time"
)

// hot keeps, for the in-process cache (store/memory), the decoded answers
// of its largest recent hits (docs/design/security.md PERF-ST-10): a page of
// hotMin decoded bytes or more (a $everything page of 500 resources is
// about 650 KB) costs its decompression and a copy of its own on every
// hit, so 32 concurrent requests for one patient's page held 32 copies of
// it and spent most of their CPU expanding it. A hot entry is shared
// instead (the slices cloned, the bodies read-only by contract, as the
// near cache shares them) while the stamps' current values equal the
// values it was filled at, the same test as the cache's own entries
// (CACHE-1): a write bumps them before it returns, so no later read finds
// an entry older than it.
//
// A hot entry expires with the cache entry it was decoded from (the
// answer is never older than Options.TTL, as without it).
//
// Bounded by hotBytes of decoded values in at most hotSlots entries; a new
// entry replaces the oldest.
type hot struct {
	mu    sync.RWMutex
	slots [hotSlots]hotEntry
	next  int
	bytes int64
}

const (
	hotSlots = 8
	hotBytes = 4 << 20
	hotMin   = 256 << 10
)

type hotEntry struct {
	key, at string
	exp     time.Time
	v       any
	size    int64
}

// get returns key's entry filled at the stamp values at.
func (h *hot) get(key, at string) (any, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for i := range h.slots {
		if e := &h.slots[i]; e.v != nil && e.key == key {
			return e.v, e.at == at && time.Now().Before(e.exp)
		}
	}
	return nil, false
}

// put keeps v, decoded from size bytes, for key at the stamp values at
// until exp, replacing the key's entry or the oldest ones until it fits.
func (h *hot) put(key, at string, exp time.Time, v any, size int) {
	if size < hotMin || size > hotBytes {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	slot := -1
	for i := range h.slots {
		if e := &h.slots[i]; e.v != nil && e.key == key {
			h.bytes -= e.size
			*e = hotEntry{}
			slot = i
		}
	}
	if slot < 0 {
		slot = h.next
		h.next = (h.next + 1) % hotSlots
	}
	for i := 0; h.bytes+int64(size) > hotBytes || h.slots[slot].v != nil; i++ {
		e := &h.slots[(slot+i)%hotSlots]
		h.bytes -= e.size
		*e = hotEntry{}
	}
	h.slots[slot] = hotEntry{key: key, at: at, exp: exp, v: v, size: int64(size)}
	h.bytes += int64(size)
}
