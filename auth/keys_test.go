package auth

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ketabridge/ketabridge/store"
)

// tkClock is a settable clock for the key and token tests.
type tkClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tkClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *tkClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tkStore is an in-memory KeyStore and RevocationStore.
type tkStore struct {
	mu      sync.Mutex
	keys    map[string]store.SigningKey
	revoked map[string]time.Time
	puts    int
	fail    error
}

var (
	_ KeyStore        = (*tkStore)(nil)
	_ RevocationStore = (*tkStore)(nil)
)

func newTKStore() *tkStore {
	return &tkStore{keys: map[string]store.SigningKey{}, revoked: map[string]time.Time{}}
}

func (s *tkStore) PutKey(_ context.Context, k store.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[k.KID] = k
	s.puts++
	return nil
}

func (s *tkStore) ListKeys(context.Context) ([]store.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []store.SigningKey
	for _, k := range s.keys {
		out = append(out, k)
	}
	return out, nil
}

func (s *tkStore) RevokeGrant(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.revoked[id]; !ok {
		s.revoked[id] = at
	}
	return nil
}

func (s *tkStore) RevokedSince(_ context.Context, t time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []string
	for id, at := range s.revoked {
		if !at.Before(t) {
			out = append(out, id)
		}
	}
	return out, nil
}

var tkT0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func jwksKIDs(t *testing.T, b []byte) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for i, k := range set.Keys {
		if !k.IsPublic() || k.Algorithm != AlgRS256 || k.Use != "sig" {
			t.Errorf("key %d: public=%v alg=%q use=%q", i, k.IsPublic(), k.Algorithm, k.Use)
		}
		for _, f := range []string{"kty", "kid", "n", "e"} {
			if raw.Keys[i][f] == nil {
				t.Errorf("key %d lacks %s", i, f)
			}
		}
		if raw.Keys[i]["d"] != nil || raw.Keys[i]["p"] != nil {
			t.Fatalf("JWKS leaks private key material")
		}
		kids = append(kids, k.KeyID)
	}
	slices.Sort(kids)
	return kids
}

func TestKeySet(t *testing.T) {
	ctx := context.Background()
	st := newTKStore()
	clock := &tkClock{t: tkT0}
	ks, err := LoadKeySet(ctx, st, clock)
	if err != nil {
		t.Fatal(err)
	}
	first := ks.current().kid

	t.Run("generated once and stored as PKCS#8 with an RFC 7638 kid", func(t *testing.T) {
		if len(st.keys) != 1 {
			t.Fatalf("stored %d keys", len(st.keys))
		}
		sk := st.keys[first]
		if sk.Alg != AlgRS256 || !sk.Created.Equal(tkT0) || !sk.Retired.IsZero() {
			t.Errorf("stored key %+v", sk)
		}
		priv, err := parsePrivatePEM(sk.PrivatePEM)
		if err != nil || priv.N.BitLen() != 2048 {
			t.Fatalf("stored PEM: %v", err)
		}
		kid, _ := Thumbprint(&priv.PublicKey)
		if kid != first || len(kid) != 43 {
			t.Errorf("kid %q, thumbprint %q", first, kid)
		}
	})
	t.Run("reload keeps the same key", func(t *testing.T) {
		again, err := LoadKeySet(ctx, st, clock)
		if err != nil {
			t.Fatal(err)
		}
		if again.current().kid != first || len(st.keys) != 1 {
			t.Errorf("reload generated a new key")
		}
		if got := jwksKIDs(t, again.JWKS()); !slices.Equal(got, []string{first}) {
			t.Errorf("JWKS kids %v", got)
		}
	})
	t.Run("rotate keeps the retired key until AccessTTL", func(t *testing.T) {
		clock.Add(10 * time.Minute)
		retiredAt := clock.Now()
		if err := ks.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		second := ks.current().kid
		if second == first {
			t.Fatal("rotation kept the signing key")
		}
		if !st.keys[first].Retired.Equal(retiredAt) || !st.keys[second].Retired.IsZero() {
			t.Errorf("store: old retired %v, new retired %v", st.keys[first].Retired, st.keys[second].Retired)
		}
		want := []string{first, second}
		slices.Sort(want)
		if got := jwksKIDs(t, ks.JWKS()); !slices.Equal(got, want) {
			t.Errorf("JWKS after rotation %v, want %v", got, want)
		}
		// Another process loading the store sees the same: new key signs.
		other, err := LoadKeySet(ctx, st, clock)
		if err != nil || other.current().kid != second {
			t.Fatalf("reload after rotation: %v", err)
		}
		clock.Add(AccessTTL - time.Second)
		if got := jwksKIDs(t, ks.JWKS()); len(got) != 2 {
			t.Errorf("retired key dropped early: %v", got)
		}
		if _, ok := ks.publicKey(ctx, first); !ok {
			t.Errorf("retired key stopped verifying early")
		}
		clock.Add(time.Second)
		if got := jwksKIDs(t, ks.JWKS()); !slices.Equal(got, []string{second}) {
			t.Errorf("JWKS after AccessTTL %v", got)
		}
		if _, ok := ks.publicKey(ctx, first); ok {
			t.Errorf("retired key verifies after AccessTTL")
		}
	})
	t.Run("all keys retired generates a new one", func(t *testing.T) {
		st2 := newTKStore()
		for _, k := range st.keys {
			k.Retired = tkT0
			st2.keys[k.KID] = k
		}
		ks2, err := LoadKeySet(ctx, st2, clock)
		if err != nil {
			t.Fatal(err)
		}
		if len(st2.keys) != 3 || !st2.keys[ks2.current().kid].Retired.IsZero() {
			t.Errorf("keys %d", len(st2.keys))
		}
	})
	t.Run("bad stored key fails the load", func(t *testing.T) {
		st3 := newTKStore()
		st3.keys["x"] = store.SigningKey{KID: "x", Alg: AlgRS256, PrivatePEM: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}
		if _, err := LoadKeySet(ctx, st3, clock); err == nil {
			t.Error("loaded a corrupt key")
		}
		st4 := newTKStore()
		st4.fail = errors.New("db down")
		if _, err := LoadKeySet(ctx, st4, clock); err == nil {
			t.Error("store failure ignored")
		}
	})
	t.Run("kid that is not the thumbprint fails the load", func(t *testing.T) {
		st5 := newTKStore()
		k := st.keys[first]
		k.KID = "chosen-by-attacker"
		st5.keys[k.KID] = k
		if _, err := LoadKeySet(ctx, st5, clock); err == nil {
			t.Error("accepted a kid that is not the thumbprint")
		}
	})
}
