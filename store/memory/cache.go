package memory

import (
	"context"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// Cache tuning. Entries live in cacheShards maps, each under its own lock, so
// hits on different keys rarely contend. Eviction samples evictSample entries
// of a shard (Go's map iteration starts at a random position) and drops an
// expired one, else the one closest to expiry: approximately random, cheap,
// and never a scan of the whole cache.
const (
	cacheShards = 32
	evictSample = 5
	// entryOverhead is what an entry costs beyond its key, stamp values and
	// value (map slot, entry struct, slice and string headers), so that many
	// tiny entries are bounded too.
	entryOverhead = 96
)

// Cache is the in-memory store.Cache of the embedded (single process) mode:
// the same version-stamp semantics as the Redis one, bounded in bytes. Expiry
// follows the wall clock. Safe for concurrent use; create it with NewCache.
//
// Each key holds one entry, stored with the stamp values it was filled at; a
// Lookup finds it only when those equal the current values. Stamps live
// until the Cache is dropped: callers use a bounded set of stamp names.
type Cache struct {
	max   int64
	bytes atomic.Int64 // accounted size of all entries; never above max
	next  atomic.Uint32
	seed  maphash.Seed

	smu    sync.RWMutex
	stamps map[string]uint64

	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]cacheEntry
	_  [40]byte // keeps neighbouring shards' locks off one cache line
}

type cacheEntry struct {
	at   string
	val  []byte
	exp  time.Time
	size int64
}

var _ store.Cache = (*Cache)(nil)

// NewCache returns an empty Cache holding at most maxBytes of entries
// (keys, stamp values, values and a fixed per-entry overhead; an entry
// larger than that is not stored).
func NewCache(maxBytes int64) *Cache {
	c := &Cache{max: maxBytes, seed: maphash.MakeSeed(), stamps: make(map[string]uint64)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *Cache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

// at encodes the current values of stamps ("3.0.17"; a missing stamp is 0).
func (c *Cache) at(stamps []string) string {
	if len(stamps) == 0 {
		return ""
	}
	var arr [128]byte
	b := arr[:0]
	c.smu.RLock()
	for i, s := range stamps {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, c.stamps[s], 10)
	}
	c.smu.RUnlock()
	return string(b)
}

// Lookup returns the entry filled for key at the stamps' current values. On
// a hit val is the stored slice itself, not a copy: callers must not modify
// it (store/cached decodes it into fresh values).
func (c *Cache) Lookup(_ context.Context, key string, stamps []string) (at string, val []byte, hit bool, err error) {
	at = c.at(stamps)
	sh := c.shard(key)
	sh.mu.RLock()
	en, ok := sh.m[key]
	sh.mu.RUnlock()
	if !ok || en.at != at || !time.Now().Before(en.exp) {
		return at, nil, false, nil
	}
	return at, en.val, true, nil
}

// Fill stores a copy of val for key at the stamp values at, replacing the
// key's entry, for ttl (a non-positive ttl stores nothing). When the cache
// is full it first evicts other entries; if it cannot make room it stores
// nothing: a cache may always miss.
func (c *Cache) Fill(_ context.Context, key, at string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	size := int64(len(key)+len(at)+len(val)) + entryOverhead
	if size > c.max || !c.reserve(size) {
		return nil
	}
	en := cacheEntry{at: at, val: append(make([]byte, 0, len(val)), val...), exp: time.Now().Add(ttl), size: size}
	sh := c.shard(key)
	sh.mu.Lock()
	old, ok := sh.m[key]
	sh.m[key] = en
	sh.mu.Unlock()
	if ok {
		c.bytes.Add(-old.size)
	}
	return nil
}

// reserve accounts size bytes for a new entry, evicting entries until they
// fit under max. It reports false when nothing is left to evict (every other
// byte is reserved by concurrent Fills). The reservation comes first, so the
// accounted total never exceeds max.
func (c *Cache) reserve(size int64) bool {
	for evictions := 0; ; {
		cur := c.bytes.Load()
		if cur+size <= c.max {
			if c.bytes.CompareAndSwap(cur, cur+size) {
				return true
			}
			continue
		}
		if evictions > 4*cacheShards || !c.evictOne() {
			return false
		}
		evictions++
	}
}

// evictOne drops one entry from the next non-empty shard (round robin) and
// reports whether it found one.
func (c *Cache) evictOne() bool {
	start := c.next.Add(1)
	now := time.Now()
	for i := range uint32(cacheShards) {
		sh := &c.shards[(start+i)%cacheShards]
		sh.mu.Lock()
		var (
			victim string
			exp    time.Time
			n      int
		)
		for k, en := range sh.m {
			if n == 0 || en.exp.Before(exp) {
				victim, exp = k, en.exp
			}
			n++
			if n == evictSample || !now.Before(en.exp) {
				break
			}
		}
		if n > 0 {
			size := sh.m[victim].size
			delete(sh.m, victim)
			sh.mu.Unlock()
			c.bytes.Add(-size)
			return true
		}
		sh.mu.Unlock()
	}
	return false
}

// Bump increments each stamp. Entries filled at the old values stay until
// replaced, evicted or expired, but are never found again.
func (c *Cache) Bump(_ context.Context, stamps []string) error {
	c.smu.Lock()
	for _, s := range stamps {
		c.stamps[s]++
	}
	c.smu.Unlock()
	return nil
}

// Size returns the accounted bytes of the entries held.
func (c *Cache) Size() int64 { return c.bytes.Load() }
