package redis

import "strconv"

// stampMirror holds a watch's mirror of stamp values (docs/design/security.md
// CACHE-3, CACHE-5). The read cache's resource buckets, "r:0" to "r:65535"
// with the default options, are most of it and are preloaded in every
// session (CACHE-4): those live in a flat slice indexed by the bucket
// number, the rest in a map. A map of 65,536 string keys, and the 65,536
// strings themselves, were about a third of the pointers a replica's
// collector marked on every cycle, and each near hit hashed its bucket's
// name to find the value; the slice holds no pointers and is indexed
// directly.
//
// Only canonical bucket names go to the slice ("r:" and a decimal number
// without leading zeros, below maxFlatBucket), so two names share a slot
// only if they are the same string: "r:01" is another Redis key than
// "r:1", and stays in the map.
type stampMirror struct {
	m map[string]uint64
	// flat[n] is the value of "r:n" when bit n of has is set.
	flat  []uint64
	has   []uint64
	nflat int // bits set in has
}

// maxFlatBucket bounds the bucket numbers kept in the slice (8 MiB of
// slots at most); larger ones go to the map.
const maxFlatBucket = 1 << 20

func newStampMirror() stampMirror { return stampMirror{m: map[string]uint64{}} }

// flatBucket returns n when name is "r:n" in canonical form with n below
// maxFlatBucket.
func flatBucket(name string) (int, bool) {
	if len(name) < 3 || len(name) > 9 || name[0] != 'r' || name[1] != ':' {
		return 0, false
	}
	digits := name[2:]
	if digits[0] == '0' && len(digits) > 1 {
		return 0, false // not canonical: another key than its number's
	}
	n := 0
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n >= maxFlatBucket {
		return 0, false
	}
	return n, true
}

// bucketName is the stamp name of the resource bucket n (flatBucket's
// inverse).
func bucketName(n int) string { return "r:" + strconv.Itoa(n) }

func (s *stampMirror) get(name string) (uint64, bool) {
	if n, ok := flatBucket(name); ok {
		if n < len(s.flat) && s.has[n>>6]&(1<<(n&63)) != 0 {
			return s.flat[n], true
		}
		return 0, false
	}
	v, ok := s.m[name]
	return v, ok
}

// set sets name's value (the caller keeps the highest).
func (s *stampMirror) set(name string, v uint64) {
	n, ok := flatBucket(name)
	if !ok {
		s.m[name] = v
		return
	}
	if n >= len(s.flat) {
		size := max(n+1, 2*len(s.flat), 1024)
		size = (size + 63) &^ 63
		flat := make([]uint64, size)
		copy(flat, s.flat)
		has := make([]uint64, size/64)
		copy(has, s.has)
		s.flat, s.has = flat, has
	}
	if s.has[n>>6]&(1<<(n&63)) == 0 {
		s.has[n>>6] |= 1 << (n & 63)
		s.nflat++
	}
	s.flat[n] = v
}

// len returns how many stamps the mirror holds.
func (s *stampMirror) len() int { return len(s.m) + s.nflat }

// clear forgets every value (the slice's memory is kept for the next
// session's load).
func (s *stampMirror) clear() {
	clear(s.m)
	clear(s.has)
	s.nflat = 0
}

// preloadSet is the list of stamps a watch loads in every session
// (Preload): the resource buckets as numbers, so that the list holds no
// strings for the collector to mark (CACHE-5), and the other names as
// given. Its order is the names' other than for the buckets, which come
// last.
type preloadSet struct {
	names   []string
	buckets []uint32
}

func newPreloadSet(names []string) preloadSet {
	var p preloadSet
	for _, n := range names {
		if b, ok := flatBucket(n); ok {
			p.buckets = append(p.buckets, uint32(b))
		} else {
			p.names = append(p.names, n)
		}
	}
	return p
}

func (p preloadSet) len() int { return len(p.names) + len(p.buckets) }

// name returns the i-th name, 0 <= i < len().
func (p preloadSet) name(i int) string {
	if i < len(p.names) {
		return p.names[i]
	}
	return bucketName(int(p.buckets[i-len(p.names)]))
}
