package redis

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestDeleteAll deletes every key under the prefix and none outside it.
func TestDeleteAll(t *testing.T) {
	url := redisURL(t)
	ctx := context.Background()
	mine, other := openTest(t, url), openTest(t, url)
	for i := range 2500 { // more than one SCAN/DEL batch
		if err := mine.Put(ctx, fmt.Sprintf("k%d", i), []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Put(ctx, "keep", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := mine.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := mine.c.Keys(ctx, mine.prefix+"*").Result(); err != nil || len(n) != 0 {
		t.Errorf("%d keys left under the prefix (%v)", len(n), err)
	}
	if v, err := other.Get(ctx, "keep"); err != nil || string(v) != "v" {
		t.Errorf("a key under another prefix is gone: %q %v", v, err)
	}
}
