package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// TestGetBatchedAcrossReplicas: GetBatched answers as Get does, and with
// concurrent calls sharing batches (with each other and with the read
// cache's Stamps), a reader on one replica never misses a key another
// replica's Put wrote before the read began: the revocation check of
// docs/design/security.md INT-3, which may share a round trip but never
// answer from a read that began before the request.
func TestGetBatchedAcrossReplicas(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	a := openTest(t, url)
	b, err := Open(ctx, url, a.prefix) // a second replica: its own client, the same keys
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	if _, err := b.GetBatched(ctx, "rev:none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBatched(absent) err = %v, want ErrNotFound", err)
	}
	if err := a.Put(ctx, "rev:g", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := b.GetBatched(ctx, "rev:g"); err != nil || string(got) != "x" {
		t.Fatalf("GetBatched = %q, %v; want x", got, err)
	}

	const readers, puts = 16, 300
	var announced atomic.Int64 // keys rev:0 .. rev:announced-1 were Put and returned
	stop := make(chan struct{})
	errs := make(chan error, 2*readers)
	var wg sync.WaitGroup
	cache := b.Cache()
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := announced.Load()
				if n == 0 {
					continue
				}
				if i%4 == 3 { // stamp reads join the same batches
					if _, err := cache.Stamps(ctx, []string{"e", "t:Observation"}); err != nil {
						errs <- err
						return
					}
					continue
				}
				// The next key, not yet written: read as absent until it
				// is (what every request's check reads of an unrevoked grant).
				if _, err := b.GetBatched(ctx, "rev:"+strconv.FormatInt(n, 10)); err != nil && !errors.Is(err, store.ErrNotFound) {
					errs <- err
					return
				}
				key := "rev:" + strconv.FormatInt(n-1, 10)
				got, err := b.GetBatched(ctx, key)
				if err != nil {
					errs <- fmt.Errorf("GetBatched(%s) after its Put returned: %v", key, err)
					return
				}
				if string(got) != key {
					errs <- fmt.Errorf("GetBatched(%s) = %q", key, got)
					return
				}
			}
		}()
	}
	for i := range puts {
		key := "rev:" + strconv.Itoa(i)
		if err := a.Put(ctx, key, []byte(key), time.Minute); err != nil {
			t.Fatal(err)
		}
		announced.Store(int64(i) + 1)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestGetBatchedUnavailable: a Redis that cannot answer is an unavailable
// error (the revocation check then asks the durable store), and a caller's
// deadline is honoured.
func TestGetBatchedUnavailable(t *testing.T) {
	ctx := context.Background()
	e, err := Open(ctx, redisURL(t), "ketabridge-test:closed:")
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if _, err := e.GetBatched(ctx, "rev:g"); !store.IsUnavailable(err) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("closed client: err = %v, want unavailable", err)
	}
	dctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.GetBatched(dctx, "rev:g"); !store.IsUnavailable(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: err = %v, want unavailable (canceled)", err)
	}
}
