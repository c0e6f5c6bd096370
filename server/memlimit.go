package server

import (
	"math"
	"runtime/debug"
)

// memoryLimitHeadroomMB is what the auto memory limit allows the Go
// runtime beyond the read cache (docs/design/security.md PERF-ST-17): the
// live heap besides the cache (the audit queue, the auth state, the JSON
// plans, the requests in flight: 15-25 MB on the 1M bench, load generator
// included), the runtime's own (stacks, GC metadata: about 11 MB) and the
// collector's room to grow in. What a peak of `ketabridge-bench` at 1M
// resources is made of (--memprofile, 2026-12-06): about 30 MB of mapped
// binary and 30-32 MB of SQLite page caches outside Go, neither counted by
// the limit, so 150 MB of RSS leaves the runtime about 88 MiB: the cache's
// 32 + 56. At that limit the scenarios' peaks were 143-154 MB (170-216
// without), for more collector CPU in the scenarios that make the most
// garbage per request (docs/benchmarks.md, "PERF-ST-17"). It was 128 MiB
// (PERF-ST-4), measured when the cache alone held 1.1-1.4 times its bound
// and the live heap besides it was twice today's.
const memoryLimitHeadroomMB = 56

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
