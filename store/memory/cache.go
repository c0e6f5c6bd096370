package memory

import (
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// Cache tuning.
const (
	// ringBytes is the most bytes one ring holds: a cache larger than two
	// rings is split into up to maxRings rings of about equal size, each
	// under its own lock (keys hash to a ring), so hits on different
	// rings never contend; a smaller cache is one ring. An entry larger
	// than its ring is not stored (a 500-resource $everything page is
	// about 100 KB compressed).
	ringBytes = 1 << 20
	maxRings  = 32
	// entryOverhead is what an entry costs beyond its key, stamp values and
	// value (map slot, entry struct, queue slot, string headers), so that
	// many tiny entries are bounded too.
	entryOverhead = 96
	// stampSlots is the number of stamp counters (a power of two): stamp
	// names hash to them (docs/design/security.md PERF-ST-8).
	stampSlots = 1 << 17
)

// Cache is the in-memory store.Cache of the embedded (single process) mode:
// the same version-stamp semantics as the Redis one, bounded in bytes. Expiry
// follows the wall clock. Safe for concurrent use; create it with NewCache.
//
// Each key holds one entry, stored with the stamp values it was filled at; a
// Lookup finds it only when those equal the current values.
//
// Entries are evicted oldest first, per ring (docs/design/security.md
// PERF-ST-9); with one ttl for every entry, as store/cached fills, oldest
// first is also soonest-to-expire first. NewCache keeps each value a heap
// allocation of its own; NewOffHeapCache writes them into rings of memory
// mapped from the operating system (ring_unix.go), overwritten oldest
// first, which the garbage collector neither scans nor counts towards its
// goal (a heap of twice the live bytes: 32 MiB of entries on the heap cost
// up to 64 MiB of RSS); only the index (key, stamp values, position,
// expiry) is then a map.
//
// Stamps are counters in a fixed array that stamp names hash to
// (PERF-ST-8): a Bump increments the slot of each stamp, so it also drops
// the entries under another stamp of the same slot (a needless miss, never a
// stale hit), and the stamps take the same memory however many names are
// bumped.
type Cache struct {
	max    int64
	stamps []atomic.Uint64 // stampSlots counters
	rings  []cacheRing
}

// cacheRing is one ring of entries and its index, under one lock.
type cacheRing struct {
	mu    sync.RWMutex
	m     map[string]cacheEntry
	queue []queued // the entries in the order their values were written
	qhead int      // queue[:qhead] is consumed
	stale int      // queue items of replaced entries
	buf   []byte   // the ring, off the Go heap (ring_unix.go); nil on the heap
	heap  bool     // values are heap copies in their entries, not in buf
	head  uint64   // where the next value is written, counted from the ring's start over all laps
	bytes int64    // accounted size of the entries in m
	max   int64    // the ring's share of Cache.max
	_     [40]byte // keeps neighbouring rings' locks off one cache line
}

// cacheEntry indexes one value: buf[pos%len(buf):][:n], or val on the
// heap (pos is then a fill number). It is 64 bytes, not the 88 of a
// time.Time expiry and int sizes: the index map holds one per entry (tens
// of thousands in a 32 MiB cache of reads by id), and its slots count
// towards the collector's goal like the values (docs/design/security.md
// PERF-ST-13).
type cacheEntry struct {
	at   string
	val  []byte
	pos  uint64
	exp  int64  // wall clock, Unix nanoseconds
	n    uint32 // len of the value (size bounds it)
	size uint32 // accounted bytes: at most a ring's share of the bound, refused above 4 GiB
}

// live reports whether en has not expired at now (Unix nanoseconds).
func (en *cacheEntry) live(now int64) bool { return now < en.exp }

type queued struct {
	key string
	pos uint64
}

var _ store.Cache = (*Cache)(nil)

// NewCache returns an empty Cache holding at most maxBytes of entries
// (keys, stamp values, values and a fixed per-entry overhead; an entry
// larger than that, or than its ring, is not stored). The rings' memory
// is mapped at once but only takes RSS as it is written, and is returned
// to the operating system when the Cache is garbage collected.
func NewCache(maxBytes int64) *Cache { return newCache(maxBytes, false) }

// NewOffHeapCache is NewCache with its rings mapped from the operating
// system, outside the Go heap (docs/design/security.md PERF-ST-9): the
// collector no longer counts the cache's bytes towards its goal, so RSS
// falls by up to the cache's size, but it also loses them as room to grow:
// with the same garbage per request it collects more often (more CPU per
// request). NewCache keeps each value a heap allocation of its own.
func NewOffHeapCache(maxBytes int64) *Cache { return newCache(maxBytes, true) }

func newCache(maxBytes int64, offHeap bool) *Cache {
	n := int64(1)
	if maxBytes >= 2*ringBytes {
		n = min(maxBytes/ringBytes, maxRings)
	}
	c := &Cache{max: maxBytes, stamps: make([]atomic.Uint64, stampSlots), rings: make([]cacheRing, n)}
	for i := range c.rings {
		r := &c.rings[i]
		r.max = maxBytes / n
		if i == 0 {
			r.max += maxBytes % n
		}
		r.m = make(map[string]cacheEntry)
		if offHeap {
			r.buf = mapRing(int(max(r.max, 0)))
		} else {
			// Each value a heap allocation of its own, as before the
			// rings: a ring allocated whole would count towards the
			// collector's goal at its full size from the start.
			r.heap = true
		}
	}
	if offHeap {
		releaseRings(c)
	}
	return c
}

// fnv1a hashes s (FNV-1a, 64 bits): fixed, so stamp slots are the same in
// every run.
func fnv1a(s string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * prime
	}
	return h
}

func (c *Cache) ring(key string) *cacheRing {
	if len(c.rings) == 1 {
		return &c.rings[0]
	}
	return &c.rings[fnv1a(key)%uint64(len(c.rings))]
}

func (c *Cache) stamp(name string) *atomic.Uint64 {
	return &c.stamps[fnv1a(name)&(stampSlots-1)]
}

// At encodes the current values of stamps ("3.0.17"; a stamp never bumped
// is 0), as Lookup returns them.
func (c *Cache) At(stamps []string) string {
	if len(stamps) == 0 {
		return ""
	}
	var arr [128]byte
	b := arr[:0]
	for i, s := range stamps {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, c.stamp(s).Load(), 10)
	}
	return string(b)
}

// Lookup returns the entry filled for key at the stamps' current values: a
// copy, the caller's to keep (store.Cache). View reads it without copying.
func (c *Cache) Lookup(_ context.Context, key string, stamps []string) (at string, val []byte, hit bool, err error) {
	at, hit, err = c.View(key, stamps, func(v []byte) error {
		val = append(make([]byte, 0, len(v)), v...)
		return nil
	})
	return at, val, hit, err
}

// View is Lookup without the copy: on a hit it calls use with the stored
// value and returns its error. use runs under the ring's read lock (a
// Fill of the same ring waits for it) and must not keep val, nor any slice
// of it, after it returns: the bytes are overwritten by later entries.
func (c *Cache) View(key string, stamps []string, use func(val []byte) error) (at string, hit bool, err error) {
	at = c.At(stamps)
	hit, err = c.ViewAt(key, at, use)
	return at, hit, err
}

// ViewAt is View of the entry filled at the stamp values at (from At).
func (c *Cache) ViewAt(key, at string, use func(val []byte) error) (hit bool, err error) {
	r := c.ring(key)
	r.mu.RLock()
	defer r.mu.RUnlock()
	en, ok := r.m[key]
	if !ok || en.at != at || !en.live(time.Now().UnixNano()) || !r.intact(en) {
		return false, nil
	}
	if r.heap || en.n == 0 {
		return true, use(en.val[:len(en.val):len(en.val)])
	}
	off := en.pos % uint64(len(r.buf))
	return true, use(r.buf[off : off+uint64(en.n) : off+uint64(en.n)])
}

// ExpandAt is ViewAt for a use that turns the stored value into bytes of
// its own (store/cached decompresses it): it returns what expand returns,
// and when the entry expires. The value is copied out under the ring's
// read lock into a pooled buffer and expanded after it is released, so a
// Fill of the ring never waits for a decompression (nor, behind it, every
// other reader of the ring); expand must not keep val.
func (c *Cache) ExpandAt(key, at string, expand func(val []byte) ([]byte, error)) (out []byte, exp time.Time, hit bool, err error) {
	r := c.ring(key)
	r.mu.RLock()
	en, ok := r.m[key]
	if !ok || en.at != at || !en.live(time.Now().UnixNano()) || !r.intact(en) {
		r.mu.RUnlock()
		return nil, time.Time{}, false, nil
	}
	if r.heap {
		r.mu.RUnlock() // a heap value never changes
		out, err = expand(en.val[:len(en.val):len(en.val)])
		return out, time.Unix(0, en.exp), true, err
	}
	bp := expandBufs.Get().(*[]byte)
	defer expandBufs.Put(bp)
	buf := (*bp)[:0]
	if en.n > 0 {
		off := en.pos % uint64(len(r.buf))
		buf = append(buf, r.buf[off:off+uint64(en.n)]...)
	}
	r.mu.RUnlock()
	*bp = buf[:0]
	out, err = expand(buf)
	return out, time.Unix(0, en.exp), true, err
}

// expandBufs are ExpandAt's buffers: at most a ring's size each.
var expandBufs = sync.Pool{New: func() any { return new([]byte) }}

// intact reports whether en's bytes are still in the ring: no value has
// been written over them since (Fill drops overwritten entries; this is a
// second check).
func (r *cacheRing) intact(en cacheEntry) bool {
	return r.heap || en.n == 0 || r.head <= en.pos+uint64(len(r.buf))
}

// Fill stores a copy of val for key at the stamp values at, replacing the
// key's entry, for ttl (a non-positive ttl stores nothing). To make room it
// drops the ring's oldest entries; an entry larger than the ring's share of
// the bound is not stored: a cache may always miss.
func (c *Cache) Fill(_ context.Context, key, at string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	size := int64(len(key)+len(at)+len(val)) + entryOverhead
	r := c.ring(key)
	if size > r.max || size > math.MaxUint32 || (!r.heap && len(val) > len(r.buf)) {
		return nil
	}
	var heapVal []byte
	if r.heap {
		heapVal = append(make([]byte, 0, len(val)), val...) // outside the lock
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.m[key]; ok {
		delete(r.m, key)
		r.bytes -= int64(old.size)
		r.stale++
	}
	pos := r.head
	n := uint64(len(val))
	if r.heap {
		r.head++ // a fill number: the queue's items stay distinct
	} else if n > 0 {
		ringLen := uint64(len(r.buf))
		if pos%ringLen+n > ringLen {
			pos += ringLen - pos%ringLen // does not fit before the end: start the next lap
		}
		r.head = pos + n
	}
	// Drop the oldest entries until the new one fits the bound and none
	// lies where its value goes.
	for r.qhead < len(r.queue) {
		q := r.queue[r.qhead]
		if r.bytes+size <= r.max && (r.heap || q.pos+uint64(len(r.buf)) >= r.head) {
			break
		}
		r.queue[r.qhead] = queued{}
		r.qhead++
		if en, ok := r.m[q.key]; ok && en.pos == q.pos {
			delete(r.m, q.key)
			r.bytes -= int64(en.size)
		} else if r.stale > 0 {
			r.stale--
		}
	}
	r.compact()
	if r.bytes+size > r.max {
		return nil // the queue is empty: only a value of a replaced entry was left (never: size <= max)
	}
	if n > 0 && !r.heap {
		off := pos % uint64(len(r.buf))
		copy(r.buf[off:off+n], val)
	}
	r.m[key] = cacheEntry{at: at, pos: pos, n: uint32(len(val)), val: heapVal, exp: time.Now().Add(ttl).UnixNano(), size: uint32(size)}
	r.queue = append(r.queue, queued{key: key, pos: pos})
	r.bytes += size
	return nil
}

// compact drops the queue's consumed slots, and its items of replaced
// entries when they are half of it (a key filled over and over without the
// ring wrapping), so the queue stays within twice the entries held.
func (r *cacheRing) compact() {
	if r.stale > 64 && 2*r.stale >= len(r.queue)-r.qhead {
		q := r.queue[:0]
		for _, it := range r.queue[r.qhead:] {
			if en, ok := r.m[it.key]; ok && en.pos == it.pos {
				q = append(q, it)
			}
		}
		clear(r.queue[len(q):])
		r.queue, r.qhead, r.stale = q, 0, 0
		return
	}
	if r.qhead > 64 && r.qhead*2 >= len(r.queue) {
		n := copy(r.queue, r.queue[r.qhead:])
		clear(r.queue[n:])
		r.queue, r.qhead = r.queue[:n], 0
	}
}

// Bump increments each stamp. Entries filled at the old values stay until
// replaced, overwritten or expired, but are never found again.
func (c *Cache) Bump(_ context.Context, stamps []string) error {
	for _, s := range stamps {
		c.stamp(s).Add(1)
	}
	return nil
}

// Size returns the accounted bytes of the entries held.
func (c *Cache) Size() int64 {
	var n int64
	for i := range c.rings {
		r := &c.rings[i]
		r.mu.RLock()
		n += r.bytes
		r.mu.RUnlock()
	}
	return n
}
