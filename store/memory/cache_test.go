package memory

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func TestCacheContract(t *testing.T) {
	storetest.RunCache(t, func(t *testing.T) store.Cache { return NewCache(8 << 20) })
}

// entries counts the entries held and sums their accounted sizes.
func (c *Cache) entries() (n int, size int64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		for _, en := range sh.m {
			n++
			size += en.size
		}
		sh.mu.RUnlock()
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
			if per := int64(len("k0-0000") + len(val) + entryOverhead); size < max-int64(tc.workers+1)*per {
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
	if n != 1 || size != c.Size() || size != int64(len("k")+len("99")+199+entryOverhead) {
		t.Errorf("after 100 replacements: %d entries, %d bytes, accounted %d", n, size, c.Size())
	}
}

// TestCacheHitDoesNotAllocateValue checks the hit path returns the stored
// slice: no copy of the value per hit.
func TestCacheHitDoesNotAllocateValue(t *testing.T) {
	ctx := context.Background()
	c := NewCache(1 << 20)
	stamps := []string{"e", "r:1"}
	at, _, _, _ := c.Lookup(ctx, "k", stamps)
	if err := c.Fill(ctx, "k", at, make([]byte, 4096), time.Minute); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, hit, _ := c.Lookup(ctx, "k", stamps); !hit {
			t.Fatal("miss")
		}
	})
	// One allocation: the at string returned.
	if allocs > 1 {
		t.Errorf("a hit allocates %v times, want at most 1", allocs)
	}
}
