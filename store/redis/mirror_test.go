package redis

import (
	"math"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestStampMirror checks the mirror against a plain map over names that go
// to the flat slice, to the map, and names that look alike but are other
// Redis keys ("r:01" is not "r:1"): never an alias, never a value lost,
// and clear forgets everything (CACHE-5).
func TestStampMirror(t *testing.T) {
	names := []string{"e", "m", "t:Observation", "q:Observation:12", "r:0", "r:1", "r:01", "r:001", "r:10",
		"r:65535", "r:65536", "r:1048575", "r:1048576", "r:99999999", "r:-1", "r:", "r:1a", "r: 1", "R:1", "rr:1"}
	for b := 0; b < 3000; b += 7 {
		names = append(names, "r:"+strconv.Itoa(b))
	}
	m := newStampMirror()
	want := map[string]uint64{}
	for round := range 3 {
		for i, n := range names {
			if i%(round+2) == 0 {
				continue // some names never set in this round
			}
			v := uint64(i*7 + round)
			if n == "r:10" && round == 2 {
				v = math.MaxUint64
			}
			m.set(n, v)
			want[n] = v
		}
		if m.len() != len(want) {
			t.Fatalf("round %d: len = %d, want %d", round, m.len(), len(want))
		}
		for _, n := range names {
			got, ok := m.get(n)
			w, wok := want[n]
			if ok != wok || got != w {
				t.Fatalf("round %d: get(%q) = %d, %v; want %d, %v", round, n, got, ok, w, wok)
			}
		}
		m.clear()
		clear(want)
		if m.len() != 0 {
			t.Fatalf("after clear: len = %d", m.len())
		}
		for _, n := range names {
			if v, ok := m.get(n); ok {
				t.Fatalf("after clear: get(%q) = %d, true", n, v)
			}
		}
	}
}

func TestFlatBucket(t *testing.T) {
	for name, want := range map[string]int{"r:0": 0, "r:7": 7, "r:65535": 65535, "r:1048575": 1048575} {
		if n, ok := flatBucket(name); !ok || n != want {
			t.Errorf("flatBucket(%q) = %d, %v; want %d, true", name, n, ok, want)
		}
		if bucketName(want) != name {
			t.Errorf("bucketName(%d) = %q, want %q", want, bucketName(want), name)
		}
	}
	for _, name := range []string{"", "r", "r:", "r:00", "r:01", "r:1048576", "r:-1", "r:+1", "r:1 ", "x:1", "t:1"} {
		if n, ok := flatBucket(name); ok {
			t.Errorf("flatBucket(%q) = %d, true; want false", name, n)
		}
	}
	p := newPreloadSet([]string{"e", "r:3", "x", "r:01", "r:0"})
	var got []string
	for i := range p.len() {
		got = append(got, p.name(i))
	}
	if want := []string{"e", "x", "r:01", "r:3", "r:0"}; !slices.Equal(got, want) {
		t.Errorf("preload names = %q, want %q", got, want)
	}
}

// TestKnownAt checks knownAt against known: true exactly when known returns
// the same at and ok, for matching, near-miss and malformed encodings, and
// never while the mirror cannot vouch (CACHE-5).
func TestKnownAt(t *testing.T) {
	w := newWatch(nil, "test:")
	w.wanted, w.subscribed, w.until = true, true, time.Now().Add(time.Hour)
	w.mirror.set("e", 3)
	w.mirror.set("r:17", 120)
	w.mirror.set("r:0", 0)
	w.mirror.set("t:Observation", 18446744073709551615)
	cases := [][]string{{"e", "r:17"}, {"e", "r:0"}, {"e", "t:Observation"}, {"e", "r:18"}, {"r:17"}, {}}
	ats := []string{"", "3.120", "3.12", "3.1200", "3.120.", ".3.120", "3.120.0", "03.120", "3,120", "120", "3.0", "3.00",
		"3.18446744073709551615", "3.18446744073709551616", "3", "0"}
	check := func(vouching bool) {
		for _, stamps := range cases {
			want, wok := w.known(stamps)
			for _, at := range append(ats, want) {
				if got := w.knownAt(stamps, at); got != (wok && at == want) {
					t.Errorf("vouching %v: knownAt(%q, %q) = %v; known = %q, %v", vouching, stamps, at, got, want, wok)
				}
			}
			if wok != vouching && len(stamps) > 0 && stamps[1%len(stamps)] != "r:18" {
				t.Errorf("vouching %v: known(%q) ok = %v", vouching, stamps, wok)
			}
		}
	}
	check(true)
	w.until = time.Now().Add(-time.Second) // the lease lapsed
	check(false)
	w.until, w.subscribed = time.Now().Add(time.Hour), false
	check(false)
}
