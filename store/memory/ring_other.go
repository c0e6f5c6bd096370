//go:build !unix

package memory

// mapRing returns the ring on the heap where anonymous mappings are not
// available (not unix): correct, without PERF-ST-9's saving.
func mapRing(n int) []byte {
	if n <= 0 {
		return nil
	}
	return make([]byte, n)
}

func releaseRings(*Cache) {}
