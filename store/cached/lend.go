package cached

import (
	"fmt"
	"math/bits"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/ketabridge/ketabridge/store"
)

// Lent pages (docs/design/security.md PERF-ST-18). A hit on a compressed
// page (search, $everything) was expanded into new memory on every request
// only for its bodies to be copied into the response: 70 % of a search's
// garbage, a third of a $everything page's. When the caller's context
// carries a store.Lease the page is expanded into a pooled buffer instead,
// which goes back to the pool when the caller releases the Lease, after its
// response is written (the release point is the caller's: store.Lease).
//
// Nothing in this package keeps a lent answer: a lent page is never put in
// the hot table or the near cache (those share their values with later
// requests), and a lease is only used when there is no near cache.

// Lent buffers come in power-of-two classes from 4 KiB (minLentClass) to
// 1 MiB (maxLentClass): a search page of 20 resources is about 60 KB
// expanded, a $everything page of 500 about 650 KB. A larger page is
// expanded into new memory as before.
const (
	minLentClass = 12
	maxLentClass = 20
)

var lentBufs [maxLentClass - minLentClass + 1]sync.Pool // of *[]byte

// lentClass is the class of a buffer of n bytes.
func lentClass(n int) int {
	return max(bits.Len(uint(n-1)), minLentClass) - minLentClass
}

// getLent returns a pooled buffer of n bytes (n at most 1<<maxLentClass).
func getLent(n int) *[]byte {
	c := lentClass(n)
	if bp, ok := lentBufs[c].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<(c+minLentClass))
	return &b
}

func putLent(bp *[]byte) { lentBufs[lentClass(cap(*bp))].Put(bp) }

// unpackLent is unpack into a buffer lent under l: lent reports that out
// is that buffer (it goes back to the pool at l.Release). A value that is
// not compressed, too large, or expanded after l was released is expanded
// as unpackCopy does, into memory of its own (lent false).
func unpackLent(b []byte, l *store.Lease) (out []byte, lent bool, err error) {
	if len(b) < 2 || b[1]&flagCompressed == 0 {
		out, err = unpackCopy(b)
		return out, false, err
	}
	n, err := s2.DecodedLen(b[2:])
	if err != nil || n > maxDecoded {
		return nil, false, fmt.Errorf("%w: bad compressed length", errCorrupt)
	}
	if 2+n > 1<<maxLentClass {
		out, err = unpack(b)
		return out, false, err
	}
	bp := getLent(2 + n)
	// Held before it is written: once Hold has succeeded the buffer
	// returns to the pool at Release only, whatever happens here.
	lent = l.Hold(func() { putLent(bp) })
	out = *bp
	out[0], out[1] = b[0], b[1]&^flagCompressed
	if _, err := s2.Decode(out[2:], b[2:]); err != nil {
		return nil, false, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	// The capacity ends at the value, so nothing appends into the rest of
	// the buffer.
	return out[:len(out):len(out)], lent, nil
}

// Store.recent remembers the keys of the last large pages expanded, so that
// a page asked for again soon (32 concurrent requests for one patient's
// $everything) goes to the hot table and is shared (PERF-ST-10), while a
// page asked for once in a while (a uniform spread of patients, where the
// hot table only churned) is lent: a seenTable (near.go) of recentSlots
// slots, where a collision only decides between lending and sharing, both
// correct.
const recentSlots = 64

// hotCandidate reports whether the compressed value b of key expands to a
// page the hot table would keep (hotMin or more) that was expanded recently
// too: it is expanded into memory of its own and shared, not lent.
func (s *Store) hotCandidate(key string, b []byte) bool {
	n, err := s2.DecodedLen(b[2:])
	if err != nil || 2+n < hotMin || 2+n > hotBytes {
		return false
	}
	return s.recent.seen(key)
}
