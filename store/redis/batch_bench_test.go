package redis

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// commandCounter counts the commands sent to Redis (a pipeline's each).
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (c *commandCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// BenchmarkRevocationCheck is the revocation check of concurrent requests
// (32 at a time, as the bench's connections): a plain GET each (get) or
// GetBatched's shared MGETs (batched). It reports the Redis commands sent
// per check.
func BenchmarkRevocationCheck(b *testing.B) {
	url := storetest.ServiceURL(b, "KETABRIDGE_TEST_REDIS_URL")
	for _, mode := range []string{"get", "batched"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			e, err := Open(ctx, url, "ketabridge-bench:revcheck:")
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			cc := &commandCounter{}
			e.c.AddHook(cc)
			get := e.Get
			if mode == "batched" {
				get = e.GetBatched
			}
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					_, err := get(cctx, "rev:unrevoked-grant")
					cancel()
					if !errors.Is(err, store.ErrNotFound) {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(cc.n.Load())/float64(b.N), "cmds/op")
		})
	}
}
