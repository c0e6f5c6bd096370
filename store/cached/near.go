package cached

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// near is the in-process near cache of a replica (Options.NearBytes): the
// decoded answers this process read from the shared cache or the store,
// each with the stamp values it was filled at. It is never trusted alone:
// every lookup compares them with the stamps' current values, and a near
// entry is used only when they are equal. A write acknowledged on any
// replica has bumped its stamps before it returned, so no later lookup
// finds an entry older than it (docs/design/security.md CACHE-1). What the
// near cache saves is the entry crossing the network, its decompression
// and its decoding.
//
// The current values come without a round trip while the shared cache's
// watch vouches for them (store.Watched; store/redis publishes every Bump
// and returns only once every replica holding a lease has applied it,
// CACHE-3), else from a stamp read in the shared cache after the lookup
// began (store.NearCache.Stamps; concurrent ones share one MGET). A
// message alone would not do: it is delivered some time after the write is
// acknowledged, and a read on another replica in between would be served
// the old answer. The writer's wait for the acknowledgements closes that
// gap.
//
// Bounded in bytes (the entry's encoded size plus an overhead), evicting
// arbitrary entries of the shard that is full.
type near struct {
	seed   maphash.Seed
	shards [nearShards]nearShard
}

const (
	nearShards   = 16
	nearOverhead = 128
)

type nearShard struct {
	mu    sync.Mutex
	m     map[string]nearEntry
	bytes int64
	max   int64
	_     [32]byte
}

type nearEntry struct {
	at   string
	v    any
	size int64
}

func newNear(maxBytes int64) *near {
	n := &near{seed: maphash.MakeSeed()}
	for i := range n.shards {
		n.shards[i].m = map[string]nearEntry{}
		n.shards[i].max = maxBytes / nearShards
	}
	return n
}

func (n *near) shard(key string) *nearShard {
	return &n.shards[maphash.String(n.seed, key)%nearShards]
}

// get returns key's entry, if any.
func (n *near) get(key string) (nearEntry, bool) {
	sh := n.shard(key)
	sh.mu.Lock()
	e, ok := sh.m[key]
	sh.mu.Unlock()
	return e, ok
}

// put stores v for key at the stamp values at (replacing the key's entry),
// evicting others when the shard is full; an entry larger than a shard is
// not kept.
func (n *near) put(key, at string, v any, encoded int) {
	size := int64(len(key)+len(at)+encoded) + nearOverhead
	sh := n.shard(key)
	if size > sh.max {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[key]; ok {
		sh.bytes -= old.size
		delete(sh.m, key)
	}
	for k, e := range sh.m {
		if sh.bytes+size <= sh.max {
			break
		}
		sh.bytes -= e.size
		delete(sh.m, k)
	}
	sh.m[key] = nearEntry{at: at, v: v, size: size}
	sh.bytes += size
}

// drop removes key's entry.
func (n *near) drop(key string) {
	sh := n.shard(key)
	sh.mu.Lock()
	if old, ok := sh.m[key]; ok {
		sh.bytes -= old.size
		delete(sh.m, key)
	}
	sh.mu.Unlock()
}

// size returns the accounted bytes of the entries held.
func (n *near) size() int64 {
	var total int64
	for i := range n.shards {
		sh := &n.shards[i]
		sh.mu.Lock()
		total += sh.bytes
		sh.mu.Unlock()
	}
	return total
}

// doorkeeper admits a read by id to the near cache on its second miss
// within a window, not its first, while the watch cannot vouch for the
// read's stamps: then a near miss of a read by id pays a stamp read (a
// Redis round trip) before the store's read so that it can fill the near
// cache, and a key read only once (ids read uniformly from a large set)
// never repays it. A key's first miss is answered by the store alone,
// uncached, as with the cache off; its next miss reads the stamps and
// fills; its later reads are hits. While the watch vouches (CACHE-3,
// CACHE-4: the stamps of every read by id are preloaded), a fill costs no
// round trip and a first miss fills (PERF-ST-20): the doorkeeper is not
// asked.
//
// A direct-mapped table of key hashes: a collision can only make a key look
// seen (it takes the usual path: stamps, store, fill) or forget one (one
// more uncached read). Neither can serve anything stale: nothing is answered
// from the table, it only decides whether to fill. It holds hashes, no keys.
type doorkeeper = seenTable

// doorSlots is the table's size (512 KiB): about as many keys as the reads by
// id a busy replica serves in a few seconds.
const doorSlots = 1 << 16

func newDoorkeeper() *doorkeeper { return newSeenTable(doorSlots) }

// seenTable is a direct-mapped table of key hashes under a per-process seed,
// one hash per slot: the doorkeeper's, and the one that tells which large
// pages to share rather than lend (lend.go). A collision can make a key look
// seen or forget one, so it only ever chooses between two correct paths.
type seenTable struct {
	seed  maphash.Seed
	slots []atomic.Uint64
}

func newSeenTable(n int) *seenTable {
	return &seenTable{seed: maphash.MakeSeed(), slots: make([]atomic.Uint64, n)}
}

// seen reports whether key was passed to seen before (as far as the table
// remembers), and remembers it.
func (d *seenTable) seen(key string) bool {
	h := maphash.String(d.seed, key) | 1 // never 0, the empty slot
	slot := &d.slots[h%uint64(len(d.slots))]
	if slot.Load() == h {
		return true
	}
	slot.Store(h)
	return false
}
