package redis

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Stamps reads the current values of stamps from Redis and encodes them as
// Lookup's at does (the values joined by ".", a missing stamp as "0"). It
// implements store.NearCache for a near cache's hits.
//
// Concurrent calls share round trips: each call joins a batch that a
// worker sends as one MGET of every stamp the batch names, and a worker
// takes a call into a batch only after the call was made, so every value
// read was current after the call began: a Bump that returned before it,
// on any replica, is seen (docs/design/security.md CACHE-1). Under load a
// hot read costs a fraction of one round trip instead of one.
func (c *Cache) Stamps(ctx context.Context, stamps []string) (string, error) {
	r := &stampReq{stamps: stamps, done: make(chan struct{})}
	select {
	case c.stampQ <- r:
	case <-ctx.Done():
		return "", wrapCache("stamps", ctx.Err())
	}
	c.ensureStampWorker()
	select {
	case <-r.done:
		if r.err != nil {
			return "", wrapCache("stamps", r.err)
		}
		return r.at, nil
	case <-ctx.Done():
		return "", wrapCache("stamps", ctx.Err())
	}
}

// stampReq is one Stamps call waiting for its batch.
type stampReq struct {
	stamps []string
	at     string
	err    error
	done   chan struct{}
}

const (
	// stampWorkers is how many batches may be in flight at once.
	stampWorkers = 4
	// stampBatch bounds the calls of one batch.
	stampBatch = 256
	// stampTimeout bounds a batch's MGET: a call gives up on its own
	// context sooner (store/cached's Timeout) and reads uncached.
	stampTimeout = time.Second
)

var errUnexpectedStamp = errors.New("a stamp holds a value of an unexpected type")

// stampIdle is how long a worker waits for a call before it exits: no
// goroutine outlives the load.
const stampIdle = 5 * time.Second

// ensureStampWorker starts a worker unless stampWorkers run. A worker that
// exits checks the queue after leaving the count, and a call checks the
// count after queueing, so no queued call is left without a worker.
func (c *Cache) ensureStampWorker() {
	for {
		n := c.workers.Load()
		if n >= stampWorkers {
			return
		}
		if c.workers.CompareAndSwap(n, n+1) {
			go c.stampWorker()
			return
		}
	}
}

// stampWorker sends batches: it waits for one call, takes every call
// already queued (up to stampBatch), and answers them all from one MGET.
func (c *Cache) stampWorker() {
	batch := make([]*stampReq, 0, stampBatch)
	idle := time.NewTimer(stampIdle)
	defer idle.Stop()
	for {
		select {
		case first := <-c.stampQ:
			batch = append(batch[:0], first)
		drain:
			for len(batch) < stampBatch {
				select {
				case r := <-c.stampQ:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			c.readStamps(batch)
			clear(batch)
			idle.Reset(stampIdle)
		case <-idle.C:
			c.workers.Add(-1)
			if len(c.stampQ) == 0 {
				return
			}
			// A call queued as this worker left: stay, unless another
			// worker took its place.
			if n := c.workers.Load(); n >= stampWorkers || !c.workers.CompareAndSwap(n, n+1) {
				return
			}
			idle.Reset(stampIdle)
		}
	}
}

// readStamps answers batch from one MGET of the stamps it names.
func (c *Cache) readStamps(batch []*stampReq) {
	index := map[string]int{}
	var keys []string
	for _, r := range batch {
		for _, s := range r.stamps {
			if _, ok := index[s]; !ok {
				index[s] = len(keys)
				keys = append(keys, c.stamps+s)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), stampTimeout)
	vals, err := c.c.MGet(ctx, keys...).Result()
	cancel()
	for _, r := range batch {
		if err != nil {
			r.err = err
			close(r.done)
			continue
		}
		var b strings.Builder
		for i, s := range r.stamps {
			if i > 0 {
				b.WriteByte('.')
			}
			switch v := vals[index[s]].(type) {
			case string:
				b.WriteString(v)
			case nil:
				b.WriteByte('0')
			default:
				r.err = errUnexpectedStamp
			}
		}
		r.at = b.String()
		close(r.done)
	}
}
