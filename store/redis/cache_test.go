package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func TestCacheContract(t *testing.T) {
	url := redisURL(t)
	storetest.RunCache(t, func(t *testing.T) store.Cache { return openTest(t, url).Cache() })
}

func TestCacheLayout(t *testing.T) {
	// The stamps are counters without expiry (so a volatile-* eviction
	// policy never drops them) and entries expire: checked on the server.
	url := redisURL(t)
	ctx := context.Background()
	e := openTest(t, url)
	c := e.Cache()
	if err := c.Bump(ctx, []string{"r:1"}); err != nil {
		t.Fatal(err)
	}
	at, _, _, err := c.Lookup(ctx, "k", []string{"e", "r:1"})
	if err != nil {
		t.Fatal(err)
	}
	if at != "0.1" {
		t.Errorf("at = %q, want %q", at, "0.1")
	}
	if err := c.Fill(ctx, "k", at, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl, err := e.c.PTTL(ctx, e.prefix+"cache:s:r:1").Result(); err != nil || ttl != -1 {
		t.Errorf("stamp PTTL = %v, %v; want -1 (no expiry)", ttl, err)
	}
	if n, err := e.c.Exists(ctx, e.prefix+"cache:s:e").Result(); err != nil || n != 0 {
		t.Errorf("Lookup created a missing stamp: EXISTS = %d, %v", n, err)
	}
	var entries []string
	iter := e.c.Scan(ctx, 0, e.prefix+"cache:v:*", 100).Iterator()
	for iter.Next(ctx) {
		entries = append(entries, iter.Val())
	}
	if err := iter.Err(); err != nil || len(entries) != 1 || !strings.HasPrefix(entries[0], e.prefix+"cache:v:k:") {
		t.Fatalf("entries = %v, %v; want one under cache:v:k:", entries, err)
	}
	if ttl, err := e.c.PTTL(ctx, entries[0]).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("entry PTTL = %v, %v; want (0, 1m]", ttl, err)
	}
}

func TestCacheServerGone(t *testing.T) {
	// Every operation against an unreachable Redis fails fast with
	// store.ErrUnavailable, so store/cached can serve uncached.
	ctx := context.Background()
	dead := newEphemeral(&goredis.Options{Addr: "127.0.0.1:1"}, "x:")
	t.Cleanup(func() { dead.Close() })
	c := dead.Cache()
	ops := []struct {
		name string
		run  func() error
	}{
		{"Lookup", func() error { _, _, _, err := c.Lookup(ctx, "k", []string{"e"}); return err }},
		{"Fill", func() error { return c.Fill(ctx, "k", "0", []byte("v"), time.Minute) }},
		{"Bump", func() error { return c.Bump(ctx, []string{"e"}) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			start := time.Now()
			err := op.run()
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("err = %v, want store.ErrUnavailable", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v, want < 2s", d)
			}
		})
	}
}

func TestCacheLookupHonoursDeadline(t *testing.T) {
	// A caller's short deadline bounds a Lookup to a hung server (one that
	// accepts connections and never answers): store/cached relies on it to
	// cap what a stuck Redis costs a read.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	hung := newEphemeral(&goredis.Options{Addr: ln.Addr().String()}, "x:")
	t.Cleanup(func() { hung.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err = hung.Cache().Lookup(ctx, "k", []string{"e"})
	d := time.Since(start)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("err = %v, want store.ErrUnavailable", err)
	}
	if d < 40*time.Millisecond || d > 2*time.Second {
		t.Errorf("Lookup took %v with a 50 ms deadline, want it bounded by the deadline (a hang would never return)", d)
	}
}

// TestCacheStamps: Stamps encodes the values as Lookup's at does, and,
// with concurrent calls sharing batches, never returns a value older than
// a Bump that returned before the call began.
func TestCacheStamps(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	c := openTest(t, url).Cache()
	stamps := []string{"e", "t:Observation"}
	if err := c.Bump(ctx, stamps[1:]); err != nil {
		t.Fatal(err)
	}
	at, _, _, err := c.Lookup(ctx, "k", stamps)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Stamps(ctx, stamps)
	if err != nil || got != at || got != "0.1" {
		t.Fatalf("Stamps = %q, %v; want Lookup's at %q (0.1)", got, err, at)
	}

	const readers, bumps = 8, 200
	var announced atomic.Int64 // the stamp's value after the latest Bump that returned
	announced.Store(1)
	stop := make(chan struct{})
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := announced.Load()
				got, err := c.Stamps(ctx, stamps)
				if err != nil {
					errs <- err
					return
				}
				v, err := strconv.ParseInt(strings.TrimPrefix(got, "0."), 10, 64)
				if err != nil || v < floor {
					errs <- fmt.Errorf("Stamps = %q after a Bump to %d had returned", got, floor)
					return
				}
			}
		}()
	}
	for i := range bumps {
		if err := c.Bump(ctx, stamps[1:]); err != nil {
			t.Fatal(err)
		}
		announced.Store(int64(i) + 2)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
