package memory

import (
	"context"
	"encoding/hex"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// BenchmarkCacheLiveHeap fills a 32 MiB cache (the default --cache-mb) with
// 700-byte answers (compressed reads by id are 0.5-2 KB) under 64-character
// hex keys, as store/cached fills it, and reports the Go heap
// it keeps live per MiB of the bound (docs/design/security.md PERF-ST-13):
// what the collector counts, and lets double, for the cache.
func BenchmarkCacheLiveHeap(b *testing.B) {
	ctx := context.Background()
	val := make([]byte, 700)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := NewCache(32 << 20)
		var k [32]byte
		for i := range 200_000 {
			k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
			if err := c.Fill(ctx, hex.EncodeToString(k[:]), "3.0", val, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// A collection with the full cache live (the mark's share of it:
		// an index of pointers is scanned entry by entry, PERF-ST-16).
		// What a collection has to scan and mark for the cache (PERF-ST-16):
		// an index of pointers is scanned entry by entry, each value an
		// object of its own. Counted by the runtime, not timed.
		gc := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/objects:objects"}}
		metrics.Read(gc)
		b.ReportMetric(float64(gc[0].Value.Uint64())/(1<<20), "scannedMiB/GC")
		b.ReportMetric(float64(gc[1].Value.Uint64()), "heapObjects")
		n, _ := c.entries()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20)/32, "heapMiB/cacheMiB")
		b.ReportMetric(float64(n), "entries")
		runtime.KeepAlive(c)
	}
}
