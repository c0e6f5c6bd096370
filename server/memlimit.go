package server

import (
	"math"
	"runtime/debug"
)

// memoryLimitHeadroomMB is what the default memory limit allows the Go
// runtime beyond the read cache: the working set of the requests in flight
// (a page of up to 500 resources and a 64 KiB chunk each,
// docs/design/security.md PERF-ST-1), the auth and rate-limit state, and
// the collector's headroom. Measured (docs/benchmarks.md, "Streamed Bundles
// and a default memory limit"): with the cache + 64 MiB the $everything
// scenario's peak RSS fell by about 40 MB but each request cost about a
// fifth more CPU (the collector and the scavenger at work near a live heap
// of about 50 MB); the cache + 128 MiB stays above the steady state's heap
// at 200 patients (about 105 MB at its peak) and caps the heap a burst
// could grow to, where GOGC alone lets it reach twice the largest live heap.
const memoryLimitHeadroomMB = 128

// ApplyMemoryLimit sets the Go runtime's soft memory limit to
// cfg.MemoryLimitMB (docs/design/security.md PERF-ST-4) and returns the
// limit in force afterwards in bytes (math.MaxInt64: none). 0 leaves the
// runtime's limit (GOMEMLIMIT, or none) as it is.
//
// The limit counts the Go heap, stacks and runtime metadata, not SQLite's
// page caches or the mapped binary. Near it the collector runs more often
// (at most about half the CPU, so a live heap above it slows the gateway
// but never fails it), and freed memory goes back to the OS promptly, so
// RSS stays flat after a burst instead of keeping the heap of GOGC=100 at
// twice the largest live heap seen.
//
// It also sets the collector's GOGC to cfg.GCPercent (docs/design/security.md
// PERF-ST-7; 0 leaves the runtime's). The default is the runtime's 100: at
// 50 the heap grows to 1.5 times what is live between collections instead
// of twice, and on the bench each scenario's peak RSS fell by 10-80 MB, but
// the cache-hit reads cost about 15-30 % more CPU per request
// (docs/benchmarks.md, "Memory and tail latency: PERF-ST-5..7"), and issue
// 18 asks for flat memory with no throughput lost. An operator short of
// memory sets 50.
func ApplyMemoryLimit(cfg Config) int64 {
	if cfg.GCPercent > 0 {
		debug.SetGCPercent(cfg.GCPercent)
	}
	if cfg.MemoryLimitMB <= 0 {
		return debug.SetMemoryLimit(-1)
	}
	mb := min(int64(cfg.MemoryLimitMB), math.MaxInt64>>20)
	debug.SetMemoryLimit(mb << 20)
	return mb << 20
}
