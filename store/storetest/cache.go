package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// RunCache runs the store.Cache contract suite against fresh caches made by
// newCache (one per subtest; each must start empty, with no stamp bumped).
// Expiry is tested in wall-clock time with a short ttl, so backends whose
// expiry is the server's own (Redis) pass it unchanged.
func RunCache(t *testing.T, newCache func(t *testing.T) store.Cache) {
	ctx := context.Background()
	const ttl = time.Minute

	// fill looks key up (a miss is required) and fills val at the stamps'
	// current values.
	fill := func(t *testing.T, c store.Cache, key string, stamps []string, val []byte) {
		t.Helper()
		at, _, hit, err := c.Lookup(ctx, key, stamps)
		if err != nil {
			t.Fatalf("Lookup %s: %v", key, err)
		}
		if hit {
			t.Fatalf("Lookup %s before Fill: hit", key)
		}
		if err := c.Fill(ctx, key, at, val, ttl); err != nil {
			t.Fatalf("Fill %s: %v", key, err)
		}
	}
	// want checks that key is a hit holding val (or a miss when val is nil).
	want := func(t *testing.T, c store.Cache, key string, stamps []string, val []byte) {
		t.Helper()
		_, got, hit, err := c.Lookup(ctx, key, stamps)
		switch {
		case err != nil:
			t.Errorf("Lookup %s: %v", key, err)
		case val == nil && hit:
			t.Errorf("Lookup %s = hit %q, want a miss", key, got)
		case val != nil && !hit:
			t.Errorf("Lookup %s = miss, want a hit %q", key, val)
		case val != nil && !bytes.Equal(got, val):
			t.Errorf("Lookup %s = %q, want %q", key, got, val)
		}
	}
	bump := func(t *testing.T, c store.Cache, stamps ...string) {
		t.Helper()
		if err := c.Bump(ctx, stamps); err != nil {
			t.Fatalf("Bump %v: %v", stamps, err)
		}
	}

	t.Run("miss, fill, hit", func(t *testing.T) {
		c := newCache(t)
		stamps := []string{"e", "r:1"}
		at, val, hit, err := c.Lookup(ctx, "k", stamps)
		if err != nil || hit || val != nil {
			t.Fatalf("first Lookup = %q, %v, %v; want a miss", val, hit, err)
		}
		if err := c.Fill(ctx, "k", at, []byte("v1"), ttl); err != nil {
			t.Fatal(err)
		}
		at2, val, hit, err := c.Lookup(ctx, "k", stamps)
		if err != nil || !hit || string(val) != "v1" {
			t.Fatalf("Lookup after Fill = %q, %v, %v; want hit v1", val, hit, err)
		}
		if at2 != at {
			t.Errorf("at changed without a Bump: %q then %q", at, at2)
		}
		want(t, c, "other", stamps, nil)
		// A second Fill at the same values replaces the entry.
		if err := c.Fill(ctx, "k", at, []byte("v2"), ttl); err != nil {
			t.Fatal(err)
		}
		want(t, c, "k", stamps, []byte("v2"))
	})

	t.Run("exact bytes", func(t *testing.T) {
		c := newCache(t)
		big := make([]byte, 256<<10)
		for i := range big {
			big[i] = byte(i * 7)
		}
		for _, tc := range []struct {
			name string
			val  []byte
		}{
			{"binary", []byte{0, 1, 0xff, '\n', 0, 0x80}},
			{"utf-8", []byte(`{"name":"Zoë Ångström"}`)},
			{"256 KiB", big},
		} {
			t.Run(tc.name, func(t *testing.T) {
				fill(t, c, tc.name, []string{"s"}, tc.val)
				want(t, c, tc.name, []string{"s"}, tc.val)
			})
		}
	})

	t.Run("fill keeps no reference to its argument", func(t *testing.T) {
		// store/cached fills from scratch buffers it reuses as soon as
		// Fill returns (docs/design/security.md PERF-ST-11): a cache
		// that kept val would later serve whatever was written over it.
		c := newCache(t)
		val := bytes.Repeat([]byte("abcdefgh"), 8<<10)
		orig := bytes.Clone(val)
		fill(t, c, "k", []string{"s"}, val)
		for i := range val {
			val[i] = 'x'
		}
		_, got, hit, err := c.Lookup(ctx, "k", []string{"s"})
		if err != nil || !hit || !bytes.Equal(got, orig) {
			t.Errorf("Lookup after the caller overwrote Fill's argument: hit %v, err %v, value unchanged %v; want the value as filled",
				hit, err, bytes.Equal(got, orig))
		}
	})

	t.Run("empty value", func(t *testing.T) {
		c := newCache(t)
		for _, tc := range []struct {
			name string
			val  []byte
		}{{"nil", nil}, {"empty", []byte{}}} {
			t.Run(tc.name, func(t *testing.T) {
				fill(t, c, tc.name, []string{"s"}, tc.val)
				_, got, hit, err := c.Lookup(ctx, tc.name, []string{"s"})
				if err != nil || !hit || len(got) != 0 {
					t.Errorf("Lookup = %q, %v, %v; want an empty hit", got, hit, err)
				}
			})
		}
	})

	t.Run("bump invalidates exactly the entries under the stamp", func(t *testing.T) {
		c := newCache(t)
		ab, b, cc := []string{"e", "a", "b"}, []string{"e", "b"}, []string{"e", "c"}
		fill(t, c, "ab", ab, []byte("1"))
		fill(t, c, "b", b, []byte("2"))
		fill(t, c, "c", cc, []byte("3"))

		bump(t, c, "a")
		want(t, c, "ab", ab, nil)
		want(t, c, "b", b, []byte("2"))
		want(t, c, "c", cc, []byte("3"))

		bump(t, c, "b")
		want(t, c, "b", b, nil)
		want(t, c, "c", cc, []byte("3"))

		// Filled again at the new values, an entry is found again.
		fill(t, c, "ab", ab, []byte("1'"))
		want(t, c, "ab", ab, []byte("1'"))

		// One Bump of several stamps, and a Bump of a stamp every entry
		// shares.
		bump(t, c, "x", "c", "y")
		want(t, c, "c", cc, nil)
		want(t, c, "ab", ab, []byte("1'"))
		bump(t, c, "e")
		want(t, c, "ab", ab, nil)
		if err := c.Bump(ctx, nil); err != nil {
			t.Errorf("Bump of no stamps: %v", err)
		}
	})

	t.Run("stale fill is never found", func(t *testing.T) {
		c := newCache(t)
		stamps := []string{"e", "r:7"}
		old, _, _, err := c.Lookup(ctx, "k", stamps)
		if err != nil {
			t.Fatal(err)
		}
		bump(t, c, "r:7")
		// The data read after the old Lookup may predate the write the
		// Bump announced: filled at old, it must stay unreachable.
		if err := c.Fill(ctx, "k", old, []byte("stale"), ttl); err != nil {
			t.Fatal(err)
		}
		want(t, c, "k", stamps, nil)
		fill(t, c, "k", stamps, []byte("fresh"))
		want(t, c, "k", stamps, []byte("fresh"))
		// A late stale Fill after the fresh one does not bring it back.
		if err := c.Fill(ctx, "k", old, []byte("stale"), ttl); err != nil {
			t.Fatal(err)
		}
		_, got, hit, err := c.Lookup(ctx, "k", stamps)
		if err != nil || (hit && string(got) != "fresh") {
			t.Errorf("Lookup after a late stale Fill = %q, %v, %v; want fresh or a miss", got, hit, err)
		}
	})

	t.Run("missing stamps read as 0", func(t *testing.T) {
		c := newCache(t)
		stamps := []string{"never-1", "never-2"}
		at1, _, _, err := c.Lookup(ctx, "k", stamps)
		if err != nil {
			t.Fatal(err)
		}
		at2, _, _, err := c.Lookup(ctx, "k2", stamps)
		if err != nil || at2 != at1 {
			t.Fatalf("two Lookups of unbumped stamps: at %q and %q (%v), want equal", at1, at2, err)
		}
		fill(t, c, "k", stamps, []byte("v"))
		want(t, c, "k", stamps, []byte("v"))
		// The first Bump moves a missing stamp off 0.
		bump(t, c, "never-2")
		at3, _, hit, err := c.Lookup(ctx, "k", stamps)
		if err != nil || hit || at3 == at1 {
			t.Errorf("Lookup after the first Bump = at %q, hit %v, %v; want a new at and a miss", at3, hit, err)
		}
	})

	t.Run("many stamps", func(t *testing.T) {
		c := newCache(t)
		stamps := make([]string, 40)
		for i := range stamps {
			stamps[i] = "r:" + strconv.Itoa(i*1000)
		}
		other := []string{"e", "r:1"}
		fill(t, c, "many", stamps, []byte("v"))
		fill(t, c, "other", other, []byte("o"))
		want(t, c, "many", stamps, []byte("v"))
		bump(t, c, stamps[37])
		want(t, c, "many", stamps, nil)
		want(t, c, "other", other, []byte("o"))
		fill(t, c, "many", stamps, []byte("v2"))
		want(t, c, "many", stamps, []byte("v2"))
	})

	t.Run("no stamps", func(t *testing.T) {
		c := newCache(t)
		fill(t, c, "k", nil, []byte("v"))
		want(t, c, "k", nil, []byte("v"))
	})

	t.Run("ttl", func(t *testing.T) {
		c := newCache(t)
		// A 200 ms entry must be found right after the Fill and gone 100 ms
		// after it expired: slack for a loaded CI machine.
		const short, slack = 200 * time.Millisecond, 100 * time.Millisecond
		stamps := []string{"e"}
		at, _, _, err := c.Lookup(ctx, "k", stamps)
		if err != nil {
			t.Fatal(err)
		}
		filled := time.Now()
		if err := c.Fill(ctx, "k", at, []byte("v"), short); err != nil {
			t.Fatal(err)
		}
		_, _, hit, err := c.Lookup(ctx, "k", stamps)
		if d := time.Since(filled); d < short-slack && (err != nil || !hit) {
			t.Errorf("Lookup %v after Fill: hit %v, %v; want a hit", d, hit, err)
		}
		time.Sleep(time.Until(filled.Add(short + slack)))
		want(t, c, "k", stamps, nil)
		// A non-positive ttl stores nothing.
		for _, d := range []time.Duration{0, -time.Second} {
			if err := c.Fill(ctx, "z", at, []byte("v"), d); err != nil {
				t.Errorf("Fill with ttl %v: %v", d, err)
			}
			want(t, c, "z", stamps, nil)
		}
	})

	t.Run("concurrent", func(t *testing.T) { testCacheRace(t, newCache(t)) })
}

// testCacheRace runs writers and readers against one cache, modelling a
// store: each of a few "resources" has a version counter, and a "search"
// sees the sum of all writes. A writer bumps a version (the write commits),
// then Bumps its stamps, then records the version as announced. A reader
// notes the announced versions, then Looks up, and on a miss reads the
// counter and Fills what it read. A hit must never hold a value older than
// what was announced before the Lookup started: that would be a stale read
// served after the write's invalidation completed.
func testCacheRace(t *testing.T, c store.Cache) {
	ctx := context.Background()
	const (
		resources = 3
		writers   = 2
		writes    = 60
		readers   = 4
	)
	type counter struct {
		v         atomic.Int64 // the "stored" value
		announced atomic.Int64 // highest value whose Bump completed
	}
	var res [resources]counter
	var all counter // the "search": counts every write
	maxTo := func(a *atomic.Int64, v int64) {
		for {
			cur := a.Load()
			if cur >= v || a.CompareAndSwap(cur, v) {
				return
			}
		}
	}
	resStamps := func(i int) []string { return []string{"e", "r:" + strconv.Itoa(i)} }
	searchStamps := []string{"e", "g"}

	var (
		stop         atomic.Bool
		hits, misses atomic.Int64
		wg           sync.WaitGroup
		errs         = make(chan error, readers+writers)
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range writes {
				i := (w + n) % resources
				v := res[i].v.Add(1)
				a := all.v.Add(1)
				if err := c.Bump(ctx, []string{"g", "r:" + strconv.Itoa(i)}); err != nil {
					errs <- fmt.Errorf("Bump: %w", err)
					return
				}
				maxTo(&res[i].announced, v)
				maxTo(&all.announced, a)
				time.Sleep(200 * time.Microsecond)
			}
		}()
	}
	// read is one Lookup-or-fill of key under stamps, whose data is cnt.
	read := func(key string, stamps []string, cnt *counter) error {
		floor := cnt.announced.Load()
		at, val, hit, err := c.Lookup(ctx, key, stamps)
		if err != nil {
			return fmt.Errorf("Lookup: %w", err)
		}
		if hit {
			hits.Add(1)
			got, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil {
				return fmt.Errorf("hit %q: %w", val, err)
			}
			if got < floor {
				return fmt.Errorf("stale hit for %s: value %d, but %d was announced before the Lookup", key, got, floor)
			}
			return nil
		}
		misses.Add(1)
		v := cnt.v.Load()
		// The store read takes a while: a write may land before the Fill.
		time.Sleep(50 * time.Microsecond)
		return c.Fill(ctx, key, at, []byte(strconv.FormatInt(v, 10)), time.Minute)
	}
	var rwg sync.WaitGroup
	for r := range readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for n := 0; !stop.Load(); n++ {
				var err error
				if i := (r + n) % (resources + 1); i == resources {
					err = read("search", searchStamps, &all)
				} else {
					err = read("res"+strconv.Itoa(i), resStamps(i), &res[i])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The test proves nothing unless both paths ran.
	if hits.Load() == 0 || misses.Load() == 0 {
		t.Errorf("hits %d, misses %d: want both", hits.Load(), misses.Load())
	}
	t.Logf("%d hits, %d misses", hits.Load(), misses.Load())
}
