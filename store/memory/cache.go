package memory

import (
	"context"
	"encoding/binary"
	"hash/maphash"
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
	// recHeader is the bytes a record takes in its ring before its key,
	// stamp values and value: the key's hash and the three lengths.
	recHeader = 8 + 3*4
	// entryOverhead is what an entry costs outside its ring's record: its
	// slot in the index map (a 64-bit hash and a 24-byte position, at
	// most 7/8 full and up to twice that after a growth) and its position
	// in the fill-order queue (docs/design/security.md PERF-ST-16), so
	// that many tiny entries are bounded too and the bound is the bytes
	// the cache holds.
	entryOverhead = 64
	// indexShare is the part of a ring's bound (1/indexShare) kept for
	// the index: a ring's buffer is the rest, so buffer and index
	// together stay within the bound for entries of ~700 bytes or more
	// (reads by id compress to 0.5-2 KB; smaller ones are bounded by the
	// accounting, which counts entryOverhead each).
	indexShare = 16
	// minGrow is the smallest size a ring's heap buffer starts at.
	minGrow = 64 << 10
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
// Entries are records (key, stamp values, value) written in order into
// rings of bytes, one ring per part of the cache that keys hash to, and
// overwritten oldest first (docs/design/security.md PERF-ST-9); with one
// ttl for every entry, as store/cached fills, oldest first is also
// soonest-to-expire first. Each ring's index maps a 64-bit hash of the key
// to the record's position and expiry; a hit compares the key and stamp
// values stored in the record, so two keys of one hash are a miss, never
// the other's value. Nothing in a ring or its index holds a pointer: the
// garbage collector marks the whole cache without scanning it, and the
// heap it counts is the bound, not the bound plus a header, a size class's
// rounding and an index entry of strings per value (docs/design/security.md
// PERF-ST-16). NewCache keeps the rings on the heap, each grown as it
// fills up to its share of the bound; NewOffHeapCache maps them from the
// operating system (ring_unix.go), outside the heap the collector counts
// towards its goal.
//
// Stamps are counters in a fixed array that stamp names hash to
// (PERF-ST-8): a Bump increments the slot of each stamp, so it also drops
// the entries under another stamp of the same slot (a needless miss, never a
// stale hit), and the stamps take the same memory however many names are
// bumped.
type Cache struct {
	max    int64
	seed   maphash.Seed
	stamps []atomic.Uint64 // stampSlots counters
	rings  []cacheRing
}

// cacheRing is one ring of records and its index, under one lock.
type cacheRing struct {
	mu    sync.RWMutex
	m     map[uint64]cacheEntry // by the key's hash
	queue []uint64              // the positions of the records in the order they were written
	qhead int                   // queue[:qhead] is consumed
	stale int                   // queue items of replaced entries
	buf   []byte                // the ring: on the heap, grown up to size as it fills, or mapped (ring_unix.go)
	size  uint64                // the ring's length once grown: positions are taken modulo size
	grow  bool                  // buf is on the heap and grows up to size
	head  uint64                // where the next record is written, counted from the ring's start over all laps
	bytes int64                 // accounted size of the entries in m
	max   int64                 // the ring's share of Cache.max
	_     [56]byte              // 192 bytes: neighbouring rings' locks on cache lines of their own
}

// cacheEntry indexes one record: buf[pos%size:][:n]. It holds no pointer,
// so the index map is never scanned by the collector (PERF-ST-16).
type cacheEntry struct {
	pos uint64
	exp int64  // wall clock, Unix nanoseconds
	n   uint32 // the record's length: header, key, stamp values and value
}

// live reports whether en has not expired at now (Unix nanoseconds).
func (en *cacheEntry) live(now int64) bool { return now < en.exp }

var _ store.Cache = (*Cache)(nil)

// NewCache returns an empty Cache holding at most maxBytes of entries
// (records of key, stamp values and value, and a fixed per-entry overhead
// for the index; an entry larger than that, or than its ring, is not
// stored). Its rings are on the heap, each allocated as it fills, so an
// empty cache costs the collector nothing and a full one its bound.
func NewCache(maxBytes int64) *Cache { return newCache(maxBytes, false) }

// NewOffHeapCache is NewCache with its rings mapped from the operating
// system, outside the Go heap (docs/design/security.md PERF-ST-9): the
// collector no longer counts the cache's bytes towards its goal, so RSS
// falls by up to the cache's size, but it also loses them as room to grow:
// with the same garbage per request it collects more often (more CPU per
// request). The rings' memory is mapped at once but only takes RSS as it is
// written, and is returned to the operating system when the Cache is
// garbage collected.
func NewOffHeapCache(maxBytes int64) *Cache { return newCache(maxBytes, true) }

func newCache(maxBytes int64, offHeap bool) *Cache {
	n := int64(1)
	if maxBytes >= 2*ringBytes {
		n = min(maxBytes/ringBytes, maxRings)
	}
	c := &Cache{max: maxBytes, seed: maphash.MakeSeed(), stamps: make([]atomic.Uint64, stampSlots), rings: make([]cacheRing, n)}
	for i := range c.rings {
		r := &c.rings[i]
		r.max = maxBytes / n
		if i == 0 {
			r.max += maxBytes % n
		}
		r.m = make(map[uint64]cacheEntry)
		r.size = uint64(max(r.max-r.max/indexShare, 0))
		if offHeap {
			r.buf = mapRing(int(r.size))
		} else {
			// Grown as it fills (Fill): a ring allocated whole would
			// count towards the collector's goal at its full size from
			// the start.
			r.grow = true
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

// ring returns key's ring and hash.
func (c *Cache) ring(key string) (*cacheRing, uint64) {
	h := maphash.String(c.seed, key)
	if len(c.rings) == 1 {
		return &c.rings[0], h
	}
	return &c.rings[(h>>32)%uint64(len(c.rings))], h
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

// find returns the value of key's record filled at the stamp values at,
// and its entry; r's lock is held.
func (r *cacheRing) find(h uint64, key, at string) (val []byte, en cacheEntry, ok bool) {
	en, ok = r.m[h]
	if !ok || !en.live(time.Now().UnixNano()) || !r.intact(en) {
		return nil, en, false
	}
	off := en.pos % r.size
	rec := r.buf[off : off+uint64(en.n) : off+uint64(en.n)]
	kn, an := binary.LittleEndian.Uint32(rec[8:]), binary.LittleEndian.Uint32(rec[12:])
	if uint64(kn)+uint64(an)+recHeader > uint64(len(rec)) ||
		string(rec[recHeader:recHeader+kn]) != key || string(rec[recHeader+kn:recHeader+kn+an]) != at {
		return nil, en, false // another key of the same hash, or other stamp values
	}
	return rec[recHeader+kn+an:], en, true
}

// ViewAt is View of the entry filled at the stamp values at (from At).
func (c *Cache) ViewAt(key, at string, use func(val []byte) error) (hit bool, err error) {
	r, h := c.ring(key)
	r.mu.RLock()
	defer r.mu.RUnlock()
	val, _, ok := r.find(h, key, at)
	if !ok {
		return false, nil
	}
	return true, use(val)
}

// ExpandAt is ViewAt for a use that turns the stored value into bytes of
// its own (store/cached decompresses it): it returns what expand returns,
// and when the entry expires. The value is copied out under the ring's
// read lock into a pooled buffer and expanded after it is released, so a
// Fill of the ring never waits for a decompression (nor, behind it, every
// other reader of the ring); expand must not keep val.
func (c *Cache) ExpandAt(key, at string, expand func(val []byte) ([]byte, error)) (out []byte, exp time.Time, hit bool, err error) {
	r, h := c.ring(key)
	r.mu.RLock()
	val, en, ok := r.find(h, key, at)
	if !ok {
		r.mu.RUnlock()
		return nil, time.Time{}, false, nil
	}
	bp := expandBufs.Get().(*[]byte)
	defer expandBufs.Put(bp)
	buf := append((*bp)[:0], val...)
	r.mu.RUnlock()
	*bp = buf[:0]
	out, err = expand(buf)
	return out, time.Unix(0, en.exp), true, err
}

// expandBufs are ExpandAt's buffers: at most a ring's size each.
var expandBufs = sync.Pool{New: func() any { return new([]byte) }}

// intact reports whether en's bytes are still in the ring: no record has
// been written over them since (Fill drops overwritten entries; this is a
// second check).
func (r *cacheRing) intact(en cacheEntry) bool {
	return r.head <= en.pos+r.size && en.pos%r.size+uint64(en.n) <= uint64(len(r.buf))
}

// Fill stores a copy of val for key at the stamp values at, replacing the
// key's entry, for ttl (a non-positive ttl stores nothing). To make room it
// drops the ring's oldest entries; an entry larger than the ring's share of
// the bound is not stored: a cache may always miss.
func (c *Cache) Fill(_ context.Context, key, at string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	n := uint64(recHeader + len(key) + len(at) + len(val))
	size := int64(n) + entryOverhead
	r, h := c.ring(key)
	if size > r.max || n > r.size || n > math.MaxUint32 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[h]; ok { // the key's entry, or another key's of the same hash: replaced
		r.drop(h)
		r.stale++
	}
	pos := r.head
	if pos%r.size+n > r.size {
		pos += r.size - pos%r.size // does not fit before the end: start the next lap
	}
	head := pos + n
	// Drop the oldest entries until the new one fits the bound and none
	// lies where its record goes.
	for r.qhead < len(r.queue) {
		q := r.queue[r.qhead]
		if r.bytes+size <= r.max && q+r.size >= head {
			break
		}
		r.queue[r.qhead] = 0
		r.qhead++
		off := q % r.size
		qh := binary.LittleEndian.Uint64(r.buf[off:])
		if en, ok := r.m[qh]; ok && en.pos == q {
			r.drop(qh)
		} else if r.stale > 0 {
			r.stale--
		}
	}
	r.compact()
	if r.bytes+size > r.max {
		return nil // the queue is empty: only a record of a replaced entry was left (never: size <= max)
	}
	off := pos % r.size
	if r.grow && off+n > uint64(len(r.buf)) {
		// The ring's heap buffer grows as it fills, by doubling, up to
		// its size; the records already written keep their offsets.
		nb := make([]byte, min(r.size, max(2*uint64(len(r.buf)), off+n, minGrow)))
		copy(nb, r.buf)
		r.buf = nb
	}
	rec := r.buf[off : off+n]
	binary.LittleEndian.PutUint64(rec, h)
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(key)))
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(at)))
	binary.LittleEndian.PutUint32(rec[16:], uint32(len(val)))
	body := rec[recHeader:]
	copy(body, key)
	copy(body[len(key):], at)
	copy(body[len(key)+len(at):], val)
	r.head = head
	r.m[h] = cacheEntry{pos: pos, n: uint32(n), exp: time.Now().Add(ttl).UnixNano()}
	r.queue = append(r.queue, pos)
	r.bytes += size
	return nil
}

// drop removes the entry of hash h from the index; r's lock is held.
func (r *cacheRing) drop(h uint64) {
	en := r.m[h]
	delete(r.m, h)
	r.bytes -= int64(en.n) + entryOverhead
}

// compact drops the queue's consumed slots, and its items of replaced
// entries when they are half of it (a key filled over and over without the
// ring wrapping), so the queue stays within twice the entries held.
func (r *cacheRing) compact() {
	if r.stale > 64 && 2*r.stale >= len(r.queue)-r.qhead {
		q := r.queue[:0]
		for _, pos := range r.queue[r.qhead:] {
			h := binary.LittleEndian.Uint64(r.buf[pos%r.size:])
			if en, ok := r.m[h]; ok && en.pos == pos {
				q = append(q, pos)
			}
		}
		r.queue, r.qhead, r.stale = q, 0, 0
		return
	}
	if r.qhead > 64 && r.qhead*2 >= len(r.queue) {
		n := copy(r.queue, r.queue[r.qhead:])
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
