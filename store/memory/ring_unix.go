//go:build unix

package memory

import (
	"runtime"
	"syscall"
)

// mapRing returns n bytes of anonymous memory mapped from the operating
// system: outside the Go heap, so the garbage collector neither scans it
// nor counts it towards its goal (docs/design/security.md PERF-ST-9). Its
// pages take RSS only once written. When the mapping fails (an address
// space limit), the ring is on the heap instead: still correct.
func mapRing(n int) []byte {
	if n <= 0 {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n)
	}
	return b
}

// releaseRings unmaps c's rings once c is unreachable: nothing else holds
// them (View's callers may not keep the bytes).
func releaseRings(c *Cache) {
	bufs := make([][]byte, len(c.rings))
	for i := range c.rings {
		bufs[i] = c.rings[i].buf
	}
	runtime.AddCleanup(c, func(bufs [][]byte) {
		for _, b := range bufs {
			if len(b) > 0 {
				_ = syscall.Munmap(b) // a heap fallback is not a mapping: EINVAL, harmless
			}
		}
	}, bufs)
}
