package redis

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// waitMarked asks e's mirror until it vouches (a lease, a pong and the
// load of the marks): a wait for readiness, bounded generously for a loaded
// machine.
func waitMarked(t *testing.T, e *Ephemeral) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := e.Marked("rev:probe"); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the mirror of the marks never vouched")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMarkAcrossReplicas (docs/design/security.md INT-4): a key marked at
// one replica is in the other's mirror by the time Mark returns, with no
// round trip; a key marked before the other replica loaded its mirror is
// in the load; when the other's subscription is cut, Marked either reports
// the key marked or declines, never reports it unmarked; keys marked while
// it was cut are in the mirror once it vouches again; unmarked keys read
// unmarked; and the key's value is readable with Get, for replicas without
// the mirror.
func TestMarkAcrossReplicas(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	prefix := "ketabridge-test:" + randomHex(t) + ":"
	nameB := "kb-marks-" + randomHex(t)
	a := openReplica(t, url, prefix, "kb-marks-"+randomHex(t))
	b := openReplica(t, url, prefix, nameB)
	t.Cleanup(func() { _ = a.DeleteAll(context.Background()) })

	if err := a.Mark(ctx, "rev:early", time.Hour); err != nil {
		t.Fatal(err)
	}
	waitMarked(t, b)
	if m, ok := b.Marked("rev:early"); !ok || !m {
		t.Fatalf("a key marked before the mirror loaded: Marked = %v, %v; want true, true", m, ok)
	}
	if m, ok := b.Marked("rev:never"); !ok || m {
		t.Fatalf("an unmarked key: Marked = %v, %v; want false, true", m, ok)
	}
	if v, err := b.Get(ctx, "rev:early"); err != nil || string(v) != "1" {
		t.Fatalf("Get of a marked key = %q, %v", v, err)
	}

	var marked []string
	mark := func(phase string, i int) {
		t.Helper()
		key := fmt.Sprintf("rev:%s-%d", phase, i)
		if err := a.Mark(ctx, key, time.Hour); err != nil {
			t.Fatal(err)
		}
		marked = append(marked, key)
	}
	check := func(phase string) (vouched bool) {
		t.Helper()
		for _, k := range marked {
			m, ok := b.Marked(k)
			if ok && !m {
				t.Fatalf("%s: Marked(%s) = false, vouched, after Mark returned at the other replica", phase, k)
			}
			vouched = vouched || ok
		}
		return vouched
	}

	const rounds = 100
	vouched := 0
	for i := range rounds {
		mark("subscribed", i)
		if check("subscribed") {
			vouched++
		}
	}
	// The lease can lapse on a loaded machine (then Marked declines), but
	// most of the time the mirror answers.
	if vouched < rounds/2 {
		t.Errorf("the mirror vouched after %d of %d Marks, want most", vouched, rounds)
	}

	for c := range 5 {
		cutSubscription(t, b, nameB)
		for i := range 10 {
			mark(fmt.Sprintf("cut%d", c), i)
			check("cut")
		}
	}
	waitMarked(t, b)
	for _, k := range marked {
		if m, ok := b.Marked(k); ok && !m {
			t.Fatalf("resubscribed: Marked(%s) = false, vouched", k)
		}
	}
	if m, ok := b.Marked("rev:never"); ok && m {
		t.Fatal("resubscribed: an unmarked key reads marked")
	}
	if err := a.Mark(ctx, "bad key", time.Hour); err == nil {
		t.Error("Mark of a key with a space: no error")
	}
}

// TestMarkUnavailable: with Redis unreachable, Mark fails (the caller
// answers 503) and Marked never vouches, so the check falls back to its
// reads, which fail closed.
func TestMarkUnavailable(t *testing.T) {
	e, err := Connect("redis://127.0.0.1:1/0", "ketabridge-test:down:")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.Mark(ctx, "rev:x", time.Hour); err == nil {
		t.Fatal("Mark with Redis down: no error")
	}
	for range 20 {
		if m, ok := e.Marked("rev:x"); ok {
			t.Fatalf("Marked with Redis down = %v, vouched", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
