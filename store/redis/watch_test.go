package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// openReplica opens an Ephemeral under prefix whose connections carry the
// client name name (so that a test can cut them), closed when t ends.
func openReplica(t *testing.T, url, prefix, name string) *Ephemeral {
	t.Helper()
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	e, err := Open(context.Background(), url+sep+"client_name="+name, prefix)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// cutSubscription kills the subscribed connection of the client named
// name on the server, as a network fault or a Redis restart would.
func cutSubscription(t *testing.T, e *Ephemeral, name string) {
	t.Helper()
	ctx := context.Background()
	list, err := e.c.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		if fields["name"] != name || fields["sub"] == "0" || fields["sub"] == "" {
			continue
		}
		if err := e.c.Do(ctx, "CLIENT", "KILL", "ID", fields["id"]).Err(); err != nil {
			t.Fatal(err)
		}
		killed++
	}
	if killed != 1 {
		t.Fatalf("killed %d subscribed connections of %s, want 1", killed, name)
	}
}

// waitKnown reads stamps through c until its watch vouches for them
// (Known), which takes a lease and a pong: a wait for readiness, bounded
// generously for a loaded machine.
func waitKnown(t *testing.T, c *Cache, stamps []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := c.Known(stamps); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the watch never vouched for the stamps")
		}
		if _, err := c.Stamps(context.Background(), stamps); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchAcrossReplicas (docs/design/security.md CACHE-3): a Bump that
// returned at one replica is in the other's Known at once, with no round
// trip; when the other's subscription is cut, Known either still answers
// with the new values (it had applied them before the Bump returned) or
// declines, never answers the old ones; and it vouches again once
// resubscribed. A closed replica gives its lease up.
func TestWatchAcrossReplicas(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	prefix := "ketabridge-test:" + randomHex(t) + ":"
	nameB := "kb-watch-" + randomHex(t)
	a := openReplica(t, url, prefix, "kb-watch-"+randomHex(t))
	b := openReplica(t, url, prefix, nameB)
	t.Cleanup(func() { _ = a.DeleteAll(context.Background()) })
	ca, cb := a.Cache(), b.Cache()
	stamps := []string{"e", "r:7"}
	waitKnown(t, cb, stamps)

	want := 0
	check := func(phase string) (known bool) {
		t.Helper()
		at, ok := cb.Known(stamps)
		if ok && at != fmt.Sprintf("0.%d", want) {
			t.Fatalf("%s: Known = %q after a Bump to %d returned at the other replica", phase, at, want)
		}
		if !ok {
			// The round trip a near hit falls back to (and relearns from).
			got, err := cb.Stamps(ctx, stamps)
			if err != nil || got != fmt.Sprintf("0.%d", want) {
				t.Fatalf("%s: Stamps = %q, %v; want 0.%d", phase, got, err, want)
			}
		}
		return ok
	}
	bump := func() {
		t.Helper()
		if err := ca.Bump(ctx, stamps[1:]); err != nil {
			t.Fatal(err)
		}
		want++
	}

	const rounds = 100
	known := 0
	for range rounds {
		bump()
		if check("subscribed") {
			known++
		}
	}
	// The lease can lapse on a loaded machine (then Known declines), but
	// most of the time the mirror answers.
	if known < rounds/2 {
		t.Errorf("Known answered %d of %d reads after a Bump, want most", known, rounds)
	}

	for range 5 {
		cutSubscription(t, b, nameB)
		for range 10 {
			bump()
			check("cut")
		}
	}
	waitKnown(t, cb, stamps)
	bump()
	check("resubscribed")

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := a.c.ZScore(ctx, prefix+"cache:leases", b.w.id).Result(); err == nil {
		t.Errorf("a closed replica's lease is still held (score %v)", n)
	}
}

// TestWatchWriterUnsubscribed: a writer whose own subscription is down
// hears no acknowledgements, yet its Bump still returns once the leased
// replica has applied it (read from the acknowledgements' hash), not only
// when that lease, renewed all along, expires.
func TestWatchWriterUnsubscribed(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	prefix := "ketabridge-test:" + randomHex(t) + ":"
	a := openReplica(t, url, prefix, "kb-watch-"+randomHex(t))
	b := openReplica(t, url, prefix, "kb-watch-"+randomHex(t))
	t.Cleanup(func() { _ = a.DeleteAll(context.Background()) })
	ca, cb := a.Cache(), b.Cache()
	stamps := []string{"e", "r:7"}
	waitKnown(t, cb, stamps)
	a.w.start()
	if err := a.w.ps.Close(); err != nil { // A's subscription, for good
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := ca.Bump(bctx, stamps[1:])
		cancel()
		if err != nil {
			t.Fatalf("Bump %d from an unsubscribed writer: %v", i, err)
		}
		if at, ok := cb.Known(stamps); ok && at != fmt.Sprintf("0.%d", i) {
			t.Fatalf("Known = %q after Bump %d returned", at, i)
		}
	}
}

// TestWatchPreload (docs/design/security.md CACHE-4): a replica that
// preloads stamps knows them without any stamp read of its own, at their
// current values, even while another replica bumps them during the load
// (each Bump waits for the loading replica's acknowledgement only once it
// holds a lease, so the load must merge the messages it overlaps).
func TestWatchPreload(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	prefix := "ketabridge-test:" + randomHex(t) + ":"
	a := openReplica(t, url, prefix, "kb-watch-"+randomHex(t))
	b := openReplica(t, url, prefix, "kb-watch-"+randomHex(t))
	t.Cleanup(func() { _ = a.DeleteAll(context.Background()) })
	ca, cb := a.Cache(), b.Cache()
	const n = 30000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("r:%d", i)
	}
	stop := make(chan struct{})
	bumped := make(chan error, 1)
	go func() {
		var err error
		defer func() { bumped <- err }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Spread over the chunks, read ones and unread ones alike.
			if err = ca.Bump(ctx, []string{names[(i*7919)%n], names[n-1-(i*104729)%n]}); err != nil {
				return
			}
		}
	}()
	cb.Preload(names)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := cb.Known(names[:1]); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the preloaded mirror never vouched")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A few more Bumps after the load, then the comparison.
	time.Sleep(50 * time.Millisecond)
	close(stop)
	if err := <-bumped; err != nil {
		t.Fatal(err)
	}
	// Known first: a stamp read would teach the mirror the current values.
	got, ok := cb.Known(names)
	if !ok {
		t.Skip("the lease lapsed before the comparison (a loaded machine): nothing to compare")
	}
	want, err := cb.Stamps(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		g, w := strings.Split(got, "."), strings.Split(want, ".")
		for i := range g {
			if g[i] != w[i] {
				t.Fatalf("preloaded %s = %s, Redis holds %s", names[i], g[i], w[i])
			}
		}
	}
	if strings.Trim(want, "0.") == "" {
		t.Fatal("no stamp was bumped: the test compared nothing")
	}
}
