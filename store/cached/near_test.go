package cached

import (
	"strconv"
	"testing"
)

// TestNearBounded: the near cache never holds more than its bound, keeps
// the entry just put, replaces a key's entry, and refuses an entry larger
// than a shard.
func TestNearBounded(t *testing.T) {
	const max = 64 << 10
	n := newNear(max)
	for i := range 2000 {
		key := "k" + strconv.Itoa(i)
		n.put(key, "1.2", i, 1000)
		if got := n.size(); got > max {
			t.Fatalf("after %d puts: %d bytes held, bound %d", i+1, got, max)
		}
		if e, ok := n.get(key); !ok || e.v != i || e.at != "1.2" {
			t.Fatalf("the entry just put is not found: %+v, %v", e, ok)
		}
	}
	n.put("k1999", "1.3", "new", 1000)
	if e, _ := n.get("k1999"); e.v != "new" || e.at != "1.3" {
		t.Errorf("a put did not replace the key's entry: %+v", e)
	}
	n.put("huge", "1", 0, max)
	if _, ok := n.get("huge"); ok {
		t.Error("an entry larger than a shard was kept")
	}
	n.drop("k1999")
	if _, ok := n.get("k1999"); ok {
		t.Error("a dropped entry is still found")
	}
	if n.size() <= 0 {
		t.Error("no bytes accounted for the entries held")
	}
}

// TestDoorkeeper: a key is unseen the first time and seen the next, and
// remembering many other keys forgets it at most (never the other way).
func TestDoorkeeper(t *testing.T) {
	d := newDoorkeeper()
	if d.seen("a") {
		t.Fatal("a key never passed reads as seen")
	}
	if !d.seen("a") {
		t.Fatal("a key passed once reads as unseen")
	}
	fresh := 0
	for i := range 1000 {
		if !d.seen("k" + strconv.Itoa(i)) {
			fresh++
		}
	}
	if fresh < 990 { // a few may share a slot with an earlier key
		t.Errorf("%d of 1000 new keys read as unseen, want nearly all", fresh)
	}
}
