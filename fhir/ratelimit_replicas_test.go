package fhir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store/redis"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// inflightBucket is a sharedBucket that records how many TakeN calls were
// in flight at once, yielding inside each so that concurrent ones overlap.
type inflightBucket struct {
	sharedBucket
	in, maxIn atomic.Int32
}

func (b *inflightBucket) TakeN(ctx context.Context, key string, n int, rate float64, burst int) (bool, time.Duration, error) {
	cur := b.in.Add(1)
	for {
		m := b.maxIn.Load()
		if cur <= m || b.maxIn.CompareAndSwap(m, cur) {
			break
		}
	}
	for range 20 {
		runtime.Gosched()
	}
	defer b.in.Add(-1)
	return b.sharedBucket.TakeN(ctx, key, n, rate, burst)
}

// TestRateLimitLeaseOneAsker (docs/design/security.md PRIV-21): of a
// client's concurrent requests that find its lease spent, one asks the
// shared bucket for the next lease and the others wait for it; every
// token of the bucket is served, none twice.
func TestRateLimitLeaseOneAsker(t *testing.T) {
	bucket := &inflightBucket{sharedBucket: sharedBucket{tokens: 1000}}
	clock := storetest.NewFakeClock(t0) // leases do not expire: every token is spent
	rl := &RateLimit{Limiter: bucket, Rate: 1, Burst: 1000, Lease: 16, Clock: clock}
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if ok, _ := rl.take(context.Background(), "client:x"); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 1000 {
		t.Errorf("allowed %d of 1,280 requests against a bucket of 1,000, want exactly 1,000", got)
	}
	if m := bucket.maxIn.Load(); m != 1 {
		t.Errorf("%d lease requests in flight at once for one client, want 1", m)
	}
}

// TestRateLimitAcrossReplicas (docs/design/security.md PRIV-21): two
// replicas with their own leases over one shared Redis bucket serve a
// client, together, no more than the bucket holds plus Rate x LeaseTTL
// (here: the bucket, as the rate is negligible).
func TestRateLimitAcrossReplicas(t *testing.T) {
	url := storetest.ServiceURL(t, "KETABRIDGE_TEST_REDIS_URL")
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "ketabridge-test:" + hex.EncodeToString(b[:]) + ":"
	ctx := context.Background()
	open := func() *redis.Ephemeral {
		e, err := redis.Open(ctx, url, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		return e
	}
	ea, eb := open(), open()
	t.Cleanup(func() { _ = ea.DeleteAll(context.Background()) })
	const burst = 300
	rate := 0.001 // one token per 1,000 s: the bucket is the burst
	replicas := []*RateLimit{
		{Limiter: ea.Limiter(), Rate: rate, Burst: burst, Lease: 16},
		{Limiter: eb.Limiter(), Rate: rate, Burst: burst, Lease: 16},
	}
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for _, rl := range replicas {
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 40 {
					if ok, _ := rl.take(ctx, "client:shared"); ok {
						allowed.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	// 1,280 requests; leased tokens that expired unspent are lost to the
	// client (it gets less, never more).
	if got := allowed.Load(); got > burst || got == 0 {
		t.Errorf("two replicas allowed %d requests against a shared bucket of %d, want at most %d (and some)", got, burst, burst)
	}
}
