package store

import (
	"context"
	"time"
)

// Limiter is a per-key token-bucket rate limiter: shared by replicas
// (Redis) or in-memory in the embedded mode. Keys are opaque (client ids,
// hashes), never PHI.
type Limiter interface {
	// Take takes one token from key's bucket, which holds at most burst
	// tokens and refills at rate tokens per second. When the bucket is empty
	// it reports false and how long until a token is available.
	Take(ctx context.Context, key string, rate float64, burst int) (ok bool, retryAfter time.Duration, err error)
}

// BatchLimiter is a Limiter that can also take several tokens at once: a
// replica leases a few tokens per round trip to a shared limiter and spends
// them locally (see fhir.RateLimit.Lease).
type BatchLimiter interface {
	Limiter
	// TakeN takes n tokens from key's bucket, or none: it reports false
	// (and how long until n are available) when fewer than n are there.
	TakeN(ctx context.Context, key string, n int, rate float64, burst int) (ok bool, retryAfter time.Duration, err error)
}
