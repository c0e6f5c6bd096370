package redis

import (
	"context"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// reads coalesces the point reads of concurrent requests into shared MGETs:
// the read cache's stamp reads (Cache.Stamps) and the revocation check of
// every authenticated request (Ephemeral.GetBatched) join the same batches,
// so under load a request's Redis reads cost a fraction of a round trip
// each instead of one round trip each.
//
// A call is queued before a worker can take it, and a worker sends its MGET
// only after taking its calls off the queue, so every value a call gets was
// read after the call began: a write to Redis that returned before the call
// (a Bump, a published revocation), on any replica, is seen
// (docs/design/security.md CACHE-1, INT-3). Each batch is one MGET, which
// Redis runs atomically.
type reads struct {
	c       *goredis.Client
	q       chan *readReq
	workers atomic.Int32
}

// readReq is one call waiting for its batch.
type readReq struct {
	keys []string // full Redis keys
	vals []any    // MGET's values for keys, in order
	err  error
	done chan struct{}
}

const (
	// readWorkers is how many batches may be in flight at once.
	readWorkers = 4
	// readBatch bounds the calls of one batch.
	readBatch = 256
	// readTimeout bounds a batch's MGET: a call gives up on its own context
	// sooner (store/cached's Timeout, the revocation check's bound).
	readTimeout = time.Second
	// readIdle is how long a worker waits for a call before it exits: no
	// goroutine outlives the load.
	readIdle = 5 * time.Second
)

func newReads(c *goredis.Client) *reads {
	return &reads{c: c, q: make(chan *readReq, 4*readBatch)}
}

// mget returns the values of keys (nil for a missing key, else a string),
// read after the call began, from a batch shared with concurrent calls.
func (b *reads) mget(ctx context.Context, keys []string) ([]any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &readReq{keys: keys, done: make(chan struct{})}
	select {
	case b.q <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b.ensureWorker()
	select {
	case <-r.done:
		return r.vals, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ensureWorker starts a worker unless readWorkers run. A worker that exits
// checks the queue after leaving the count, and a call checks the count
// after queueing, so no queued call is left without a worker.
func (b *reads) ensureWorker() {
	for {
		n := b.workers.Load()
		if n >= readWorkers {
			return
		}
		if b.workers.CompareAndSwap(n, n+1) {
			go b.worker()
			return
		}
	}
}

// worker sends batches: it waits for one call, takes every call already
// queued (up to readBatch), and answers them all from one MGET.
func (b *reads) worker() {
	batch := make([]*readReq, 0, readBatch)
	index := map[string]int{}
	var keys []string
	idle := time.NewTimer(readIdle)
	defer idle.Stop()
	for {
		select {
		case first := <-b.q:
			batch = append(batch[:0], first)
		drain:
			for len(batch) < readBatch {
				select {
				case r := <-b.q:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			clear(index)
			keys = b.send(batch, index, keys[:0])
			clear(batch)
			clear(keys)
			idle.Reset(readIdle)
		case <-idle.C:
			b.workers.Add(-1)
			if len(b.q) == 0 {
				return
			}
			// A call queued as this worker left: stay, unless another
			// worker took its place.
			if n := b.workers.Load(); n >= readWorkers || !b.workers.CompareAndSwap(n, n+1) {
				return
			}
			idle.Reset(readIdle)
		}
	}
}

// send answers batch from one MGET of the distinct keys it names (index and
// keys are the worker's scratch space, returned for reuse).
func (b *reads) send(batch []*readReq, index map[string]int, keys []string) []string {
	for _, r := range batch {
		for _, k := range r.keys {
			if _, ok := index[k]; !ok {
				index[k] = len(keys)
				keys = append(keys, k)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	vals, err := b.c.MGet(ctx, keys...).Result()
	cancel()
	for _, r := range batch {
		if err == nil {
			r.vals = make([]any, len(r.keys))
			for i, k := range r.keys {
				r.vals[i] = vals[index[k]]
			}
		}
		r.err = err
		close(r.done)
	}
	return keys
}
