package memory

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func TestCacheContract(t *testing.T) {
	storetest.RunCache(t, func(t *testing.T) store.Cache { return NewCache(8 << 20) })
}

func TestOffHeapCacheContract(t *testing.T) {
	storetest.RunCache(t, func(t *testing.T) store.Cache { return NewOffHeapCache(8 << 20) })
}

// accounted is what an entry of key, at and a value of n bytes counts
// towards the bound.
func accounted(key, at string, n int) int64 {
	return int64(recHeader+len(key)+len(at)+n) + entryOverhead
}

// entries counts the entries held and sums their accounted sizes.
func (c *Cache) entries() (n int, size int64) {
	for i := range c.rings {
		r := &c.rings[i]
		r.mu.RLock()
		for _, en := range r.m {
			n++
			size += int64(en.n) + entryOverhead
		}
		r.mu.RUnlock()
	}
	return n, size
}

func TestCacheBound(t *testing.T) {
	ctx := context.Background()
	const max = 64 << 10
	val := make([]byte, 1000)
	tests := []struct {
		name    string
		workers int
	}{
		{"one writer", 1},
		{"concurrent writers", 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCache(max)
			var wg sync.WaitGroup
			for w := range tc.workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 2000 {
						if err := c.Fill(ctx, fmt.Sprintf("k%d-%d", w, i), "", val, time.Minute); err != nil {
							t.Error(err)
							return
						}
						if s := c.Size(); s > max {
							t.Errorf("size %d over the bound %d", s, max)
							return
						}
					}
				}()
			}
			wg.Wait()
			n, size := c.entries()
			if size != c.Size() || size > max {
				t.Errorf("entries sum to %d bytes, accounted %d, bound %d", size, c.Size(), max)
			}
			// Eviction must keep the cache useful: nearly full, not emptied.
			if per := accounted("k0-0000", "", len(val)); size < max-int64(tc.workers+1)*per {
				t.Errorf("%d entries, %d bytes: eviction freed more than needed", n, size)
			}
			// A sole writer's newest entry is present: eviction makes room
			// for the entry being stored, it never drops it.
			if tc.workers == 1 {
				if _, _, hit, _ := c.Lookup(ctx, "k0-1999", nil); !hit {
					t.Error("newest entry evicted")
				}
			}
		})
	}
}

func TestCacheTooLarge(t *testing.T) {
	ctx := context.Background()
	c := NewCache(1024)
	if err := c.Fill(ctx, "small", "", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.Fill(ctx, "big", "", make([]byte, 2048), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, hit, _ := c.Lookup(ctx, "big", nil); hit {
		t.Error("an entry larger than the bound was stored")
	}
	if _, _, hit, _ := c.Lookup(ctx, "small", nil); !hit {
		t.Error("an entry larger than the bound evicted the others")
	}
}

func TestCacheReplaceAccounts(t *testing.T) {
	ctx := context.Background()
	c := NewCache(1 << 20)
	for i := range 100 {
		if err := c.Fill(ctx, "k", fmt.Sprint(i), make([]byte, 100+i), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	n, size := c.entries()
	if n != 1 || size != c.Size() || size != accounted("k", "99", 199) {
		t.Errorf("after 100 replacements: %d entries, %d bytes, accounted %d", n, size, c.Size())
	}
}

// TestCacheViewDoesNotCopy checks the hit path of View hands over the
// stored bytes: no copy of the value per hit (store/cached decompresses
// from them).
func TestCacheViewDoesNotCopy(t *testing.T) {
	ctx := context.Background()
	c := NewCache(1 << 20)
	stamps := []string{"e", "r:1"}
	at, _, _, _ := c.Lookup(ctx, "k", stamps)
	val := bytes.Repeat([]byte("abcd"), 1024)
	if err := c.Fill(ctx, "k", at, val, time.Minute); err != nil {
		t.Fatal(err)
	}
	use := func(v []byte) error {
		if !bytes.Equal(v, val) {
			t.Fatalf("View gave %d bytes, not the value filled", len(v))
		}
		return nil
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, hit, _ := c.View("k", stamps, use); !hit {
			t.Fatal("miss")
		}
	})
	// One allocation: the at string returned.
	if allocs > 1 {
		t.Errorf("a hit allocates %v times, want at most 1", allocs)
	}
	// Lookup's value is a copy: changing it changes no later hit.
	_, got, _, _ := c.Lookup(ctx, "k", stamps)
	got[0] = 'X'
	if _, again, _, _ := c.Lookup(ctx, "k", stamps); !bytes.Equal(again, val) {
		t.Error("a change to one Lookup's value reached the cache")
	}
}

// TestCacheRingNeverServesOverwrittenBytes fills keys with values of many
// sizes, far more than the cache holds, so its rings wrap many times, and
// checks every hit against the last value filled for the key: an entry
// whose bytes were overwritten must be a miss, never another entry's bytes.
func TestCacheRingNeverServesOverwrittenBytes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		max     int64
		offHeap bool
	}{{8 << 10, false}, {9 << 20, false}, {8 << 10, true}, {9 << 20, true}} { // one ring; several
		max := tc.max
		t.Run(fmt.Sprint(max, tc.offHeap), func(t *testing.T) {
			c := newCache(max, tc.offHeap)
			rng := rand.New(rand.NewPCG(1, uint64(max)))
			last := map[string][]byte{}
			hits := 0
			for i := range 20000 {
				key := fmt.Sprintf("k%d", rng.IntN(300))
				if rng.IntN(2) == 0 {
					n := rng.IntN(int(max) / 40)
					if i%500 == 0 {
						n = int(max) / 5 // now and then a large one
					}
					val := bytes.Repeat([]byte{byte(i)}, n)
					if n > 0 {
						val[0], val[n-1] = byte(n), byte(i>>8)
					}
					if err := c.Fill(ctx, key, "", val, time.Minute); err != nil {
						t.Fatal(err)
					}
					last[key] = val
					continue
				}
				_, got, hit, err := c.Lookup(ctx, key, nil)
				if err != nil {
					t.Fatal(err)
				}
				if hit {
					hits++
					if !bytes.Equal(got, last[key]) {
						t.Fatalf("step %d: %s gave %d bytes, not the %d filled last", i, key, len(got), len(last[key]))
					}
				}
				if s := c.Size(); s > max {
					t.Fatalf("size %d over the bound %d", s, max)
				}
			}
			// The cache must be useful, not emptied by its wrapping.
			if hits < 1000 {
				t.Errorf("%d hits of about 10,000 lookups", hits)
			}
			n, size := c.entries()
			if size != c.Size() {
				t.Errorf("%d entries sum to %d bytes, accounted %d", n, size, c.Size())
			}
		})
	}
}

// TestCacheQueueBounded fills one key over and over with empty values,
// which never wrap the ring: the queue of fill order must not grow with
// the fills.
func TestCacheQueueBounded(t *testing.T) {
	ctx := context.Background()
	c := NewCache(1 << 20)
	for i := range 10000 {
		if err := c.Fill(ctx, "k", strconv.Itoa(i), nil, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if q := len(c.rings[0].queue); q > 200 {
		t.Errorf("queue of %d items for one entry", q)
	}
}

// TestCacheStampsBounded checks PERF-ST-8: bumping a million distinct
// stamp names takes no memory beyond the fixed slots, and each Bump still
// drops the entries under its stamp.
func TestCacheStampsBounded(t *testing.T) {
	ctx := context.Background()
	c := NewCache(1 << 20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	name := make([]byte, 0, 16)
	for i := range 1 << 20 {
		name = strconv.AppendInt(append(name[:0], "r:"...), int64(i), 10)
		if err := c.Bump(ctx, []string{string(name)}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("the heap grew %d bytes for a million stamps", grew)
	}
	stamps := []string{"e", "r:12345"}
	at, _, _, _ := c.Lookup(ctx, "k", stamps)
	if err := c.Fill(ctx, "k", at, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, hit, _ := c.Lookup(ctx, "k", stamps); !hit {
		t.Fatal("miss before the Bump")
	}
	if err := c.Bump(ctx, []string{"r:12345"}); err != nil {
		t.Fatal(err)
	}
	if _, _, hit, _ := c.Lookup(ctx, "k", stamps); hit {
		t.Error("hit after its stamp was bumped")
	}
}

// TestCacheEntrySize: the index's per-entry struct stays 24 bytes and
// neither it nor the index map's key holds a pointer, nor does the queue
// (docs/design/security.md PERF-ST-16): the collector then marks the index
// without scanning it, and the entryOverhead the bound counts per entry
// covers its map slot.
func TestCacheEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(cacheEntry{}); n > 24 {
		t.Errorf("cacheEntry is %d bytes, want at most 24", n)
	}
	var r cacheRing
	for _, typ := range []reflect.Type{reflect.TypeOf(r.m).Key(), reflect.TypeOf(r.m).Elem(), reflect.TypeOf(r.queue).Elem()} {
		if hasPointers(typ) {
			t.Errorf("%v holds pointers: the collector scans every entry of the index", typ)
		}
	}
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	}
	return true
}

// TestCacheHashCollisionMisses: the index is by a 64-bit hash of the key,
// so two keys may share an index slot; a lookup must then compare the key
// stored in the record and miss, never answer another key's value
// (PERF-ST-16). The collision is forced by pointing the second key's hash
// at the first key's record.
func TestCacheHashCollisionMisses(t *testing.T) {
	ctx := context.Background()
	for _, offHeap := range []bool{false, true} {
		c := newCache(1<<20, offHeap)
		if err := c.Fill(ctx, "a", "1", []byte("value of a"), time.Minute); err != nil {
			t.Fatal(err)
		}
		ra, ha := c.ring("a")
		rb, hb := c.ring("b")
		if ra != rb {
			t.Fatal("one ring expected")
		}
		ra.m[hb] = ra.m[ha]
		if hit, _ := c.ViewAt("b", "1", func([]byte) error { return nil }); hit {
			t.Errorf("off heap %v: key b answered with key a's record", offHeap)
		}
		if _, _, hit, _ := c.ExpandAt("b", "1", func(v []byte) ([]byte, error) { return v, nil }); hit {
			t.Errorf("off heap %v: ExpandAt of key b answered with key a's record", offHeap)
		}
		// The stamp values are in the record too.
		if hit, _ := c.ViewAt("a", "2", func([]byte) error { return nil }); hit {
			t.Errorf("off heap %v: a hit at other stamp values", offHeap)
		}
		if hit, _ := c.ViewAt("a", "1", func([]byte) error { return nil }); !hit {
			t.Errorf("off heap %v: key a missed", offHeap)
		}
	}
}

// TestCacheHeapRingGrowsAsItFills: a heap ring is allocated as it fills,
// not whole: a few small entries in a 32 MiB cache take a few of its
// rings' smallest buffers, not 32 MiB counted towards the collector's goal
// from the start (PERF-ST-16).
func TestCacheHeapRingGrowsAsItFills(t *testing.T) {
	ctx := context.Background()
	c := NewCache(32 << 20)
	for i := range 10 {
		if err := c.Fill(ctx, strconv.Itoa(i), "", make([]byte, 1000), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	var held int
	for i := range c.rings {
		held += len(c.rings[i].buf)
	}
	if held > 10*minGrow {
		t.Errorf("10 entries of 1 KB hold %d bytes of rings", held)
	}
	for i := range 10 {
		if _, _, hit, _ := c.Lookup(ctx, strconv.Itoa(i), nil); !hit {
			t.Errorf("entry %d missed", i)
		}
	}
}
