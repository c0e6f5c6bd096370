package auth

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestSealedKeySet(t *testing.T) {
	ctx := context.Background()
	clock := &tdClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := newTDStore()
	kek := bytes.Repeat([]byte{7}, 32)
	sealer, err := NewKeySealer(kek)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := LoadSealedKeySet(ctx, st, clock, sealer)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Rotate(ctx); err != nil { // a retired key is re-stored too
		t.Fatal(err)
	}
	stored, _ := st.ListKeys(ctx)
	if len(stored) != 2 {
		t.Fatalf("%d stored keys, want 2", len(stored))
	}
	for _, k := range stored {
		if !isSealed(k.PrivatePEM) || bytes.Contains(k.PrivatePEM, []byte("PRIVATE KEY")) {
			t.Fatalf("key %s stored in clear: %.40s", k.KID, k.PrivatePEM)
		}
	}
	// Another replica with the same key-encryption key loads the same keys.
	again, err := LoadSealedKeySet(ctx, st, clock, sealer)
	if err != nil {
		t.Fatal(err)
	}
	if kid1, _, _ := ks.signer(); func() string { kid2, _, _ := again.signer(); return kid2 }() != kid1 {
		t.Fatal("the replica's current key differs")
	}
	// Without it, or with a wrong one, start-up fails clearly.
	if _, err := LoadKeySet(ctx, st, clock); err == nil || !strings.Contains(err.Error(), "key-encryption key") {
		t.Fatalf("no sealer: err = %v", err)
	}
	wrong, _ := NewKeySealer(bytes.Repeat([]byte{8}, 32))
	if _, err := LoadSealedKeySet(ctx, st, clock, wrong); err == nil || !strings.Contains(err.Error(), "wrong key-encryption key") {
		t.Fatalf("wrong sealer: err = %v", err)
	}
	// A sealed key moved under another kid does not open.
	k0 := stored[0]
	k0.KID = stored[1].KID
	if _, err := sealer.open(k0.KID, k0.PrivatePEM); err == nil {
		t.Fatal("a sealed key opened under another kid")
	}
	if _, err := NewKeySealer(kek[:16]); err == nil {
		t.Fatal("a 16-byte key-encryption key was accepted")
	}

	// Keys stored in clear before sealing was configured still load.
	clear := newTDStore()
	if _, err := LoadKeySet(ctx, clear, clock); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSealedKeySet(ctx, clear, clock, sealer); err != nil {
		t.Fatalf("clear keys with a sealer: %v", err)
	}
}
