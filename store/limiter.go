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
