package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// NewAuthStoreFunc returns a fresh, empty store.AuthStore on clock, with its
// cleanup registered on t.
type NewAuthStoreFunc func(t *testing.T, clock store.Clock) store.AuthStore

// NewEphemeralFunc returns a fresh, empty store.Ephemeral whose expiry reads
// clock, with its cleanup registered on t.
type NewEphemeralFunc func(t *testing.T, clock store.Clock) store.Ephemeral

// RunAuth runs the store.AuthStore contract suite. Beyond the interface's doc
// comments it pins: Get* of an unknown id and Delete* of an unknown id are
// store.ErrNotFound; lists hold every item (in any order); times round-trip
// at millisecond precision; RotateRefresh is store.ErrNotFound for an
// unknown grant and store.ErrStale for a revoked one; revoking twice keeps
// the first revocation time; RevokeGrant of an unknown grant is
// store.ErrNotFound.
func RunAuth(t *testing.T, newStore func(t *testing.T, clock store.Clock) store.AuthStore) {
	t.Run("Clients", func(t *testing.T) { testClients(t, newStore) })
	t.Run("Users", func(t *testing.T) { testUsers(t, newStore) })
	t.Run("Grants", func(t *testing.T) { testGrants(t, newStore) })
	t.Run("RefreshRotation", func(t *testing.T) { testRefreshRotation(t, newStore) })
	t.Run("Revocation", func(t *testing.T) { testRevocation(t, newStore) })
	t.Run("DeleteRevokesGrants", func(t *testing.T) { testDeleteRevokesGrants(t, newStore) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, newStore) })
}

func testClients(t *testing.T, newStore NewAuthStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	full := store.Client{
		ID: "app-1", Name: "Dose Tracker", Kind: store.ClientSymmetric,
		SecretHash:   "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
		RedirectURIs: []string{"https://app.example/cb", "http://127.0.0.1:9000/cb"},
		LaunchURL:    "https://app.example/launch",
		Scopes:       []string{"launch", "patient/*.rs", "offline_access"},
		Origins:      []string{"https://app.example"},
		Created:      T0.Add(1500 * time.Millisecond),
	}
	backend := store.Client{
		ID: "ehr-1", Kind: store.ClientBackend,
		Scopes:  []string{"system/*.rs"},
		JWKS:    []byte(`{"keys":[{"kty":"EC","kid":"k1","crv":"P-256","x":"x","y":"y"}]}`),
		JWKSURL: "https://ehr.example/jwks",
		Created: T0,
	}
	minimal := store.Client{ID: "bare", Kind: store.ClientPublic}
	payer := store.Client{
		ID: "payer-1", Name: "Blue Payer PA", Kind: store.ClientBackend,
		Scopes:       []string{"system/Observation.rs", "system/Patient.rs"},
		JWKSURL:      "https://payer.example/jwks",
		Organization: "6f1c3b0e-1d2a-5b7c-9e8f-0a1b2c3d4e5f", Role: "payer",
		Created: T0,
	}

	t.Run("unknown is not found", func(t *testing.T) {
		_, err := s.GetClient(ctx, "nobody")
		wantErr(t, "GetClient", err, store.ErrNotFound)
		wantErr(t, "DeleteClient", s.DeleteClient(ctx, "nobody"), store.ErrNotFound)
	})
	for _, c := range []store.Client{full, backend, minimal, payer} {
		t.Run("round trip "+c.ID, func(t *testing.T) {
			if err := s.PutClient(ctx, c); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetClient(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantClient(t, got, c)
		})
	}
	t.Run("put replaces", func(t *testing.T) {
		c := full
		c.Name, c.RedirectURIs, c.Origins = "Renamed", []string{"https://app.example/cb2"}, nil
		if err := s.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetClient(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantClient(t, got, c)
	})
	t.Run("put replaces the binding", func(t *testing.T) {
		c := payer
		c.Organization, c.Role = "0a0b0c0d-0000-5000-8000-000000000001", "partner"
		if err := s.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetClient(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantClient(t, got, c)
		// Unbinding: back to an EHR client of no organization.
		c.Organization, c.Role = "", ""
		if err := s.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		if got, err = s.GetClient(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		wantClient(t, got, c)
		if err := s.PutClient(ctx, payer); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("list", func(t *testing.T) {
		l, err := s.ListClients(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range l {
			ids = append(ids, c.ID)
			switch c.ID {
			case payer.ID:
				wantClient(t, c, payer)
			case minimal.ID:
				wantClient(t, c, minimal)
			}
		}
		sort.Strings(ids)
		wantStrings(t, "client ids", ids, []string{"app-1", "bare", "ehr-1", "payer-1"})
	})
	t.Run("delete", func(t *testing.T) {
		if err := s.DeleteClient(ctx, "bare"); err != nil {
			t.Fatal(err)
		}
		_, err := s.GetClient(ctx, "bare")
		wantErr(t, "GetClient after delete", err, store.ErrNotFound)
		wantErr(t, "second delete", s.DeleteClient(ctx, "bare"), store.ErrNotFound)
		l, err := s.ListClients(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) != 3 {
			t.Errorf("%d clients after delete, want 3", len(l))
		}
	})
}

func wantClient(t *testing.T, got, want store.Client) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Kind != want.Kind || got.SecretHash != want.SecretHash ||
		got.LaunchURL != want.LaunchURL || got.JWKSURL != want.JWKSURL || !bytes.Equal(got.JWKS, want.JWKS) ||
		got.Organization != want.Organization || got.Role != want.Role || !got.Created.Equal(want.Created) {
		t.Errorf("client = %+v\nwant     %+v", got, want)
	}
	wantStrings(t, want.ID+" redirect URIs", got.RedirectURIs, want.RedirectURIs)
	wantStrings(t, want.ID+" scopes", got.Scopes, want.Scopes)
	wantStrings(t, want.ID+" origins", got.Origins, want.Origins)
}

func testUsers(t *testing.T, newStore NewAuthStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	users := []store.User{
		{ID: "dr.who", Name: "Dr Who", Role: store.RoleClinician, PasswordHash: "$argon2id$x", FHIRUser: "Practitioner/pr1", Created: T0},
		{ID: "pat", Role: store.RolePatient, PasswordHash: "$argon2id$y", FHIRUser: "Patient/p1", Disabled: true, Created: T0.Add(time.Second)},
		{ID: "root", Role: store.RoleAdmin, PasswordHash: "$argon2id$z"},
	}
	t.Run("unknown is not found", func(t *testing.T) {
		_, err := s.GetUser(ctx, "nobody")
		wantErr(t, "GetUser", err, store.ErrNotFound)
		wantErr(t, "DeleteUser", s.DeleteUser(ctx, "nobody"), store.ErrNotFound)
	})
	for _, u := range users {
		t.Run("round trip "+u.ID, func(t *testing.T) {
			if err := s.PutUser(ctx, u); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetUser(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantUser(t, got, u)
		})
	}
	t.Run("put replaces", func(t *testing.T) {
		u := users[1]
		u.Disabled, u.PasswordHash, u.Name = false, "$argon2id$new", "Pat"
		if err := s.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetUser(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantUser(t, got, u)
	})
	t.Run("list and delete", func(t *testing.T) {
		if err := s.DeleteUser(ctx, "root"); err != nil {
			t.Fatal(err)
		}
		_, err := s.GetUser(ctx, "root")
		wantErr(t, "GetUser after delete", err, store.ErrNotFound)
		l, err := s.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, u := range l {
			ids = append(ids, u.ID)
		}
		sort.Strings(ids)
		wantStrings(t, "user ids", ids, []string{"dr.who", "pat"})
	})
}

func wantUser(t *testing.T, got, want store.User) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Role != want.Role || got.PasswordHash != want.PasswordHash ||
		got.FHIRUser != want.FHIRUser || got.Disabled != want.Disabled || !got.Created.Equal(want.Created) {
		t.Errorf("user = %+v\nwant   %+v", got, want)
	}
}

func wantGrant(t *testing.T, what string, got, want store.Grant) {
	t.Helper()
	if got.ID != want.ID || got.ClientID != want.ClientID || got.UserID != want.UserID || got.Scope != want.Scope ||
		got.Patient != want.Patient || got.Encounter != want.Encounter || got.RefreshHash != want.RefreshHash ||
		!got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) || !got.Revoked.Equal(want.Revoked) {
		t.Errorf("%s: grant = %+v\nwant %+v", what, got, want)
	}
}

func sampleGrant(id, refresh string) store.Grant {
	return store.Grant{
		ID: id, ClientID: "app-1", UserID: "dr.who", Scope: "launch patient/*.rs offline_access",
		Patient: "p1", Encounter: "e1", RefreshHash: refresh,
		Created: T0, Expires: T0.Add(90 * 24 * time.Hour),
	}
}

func testGrants(t *testing.T, newStore NewAuthStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	g := sampleGrant("g1", "h-1")
	backend := store.Grant{ID: "g2", ClientID: "ehr-1", Scope: "system/*.rs", Created: T0.Add(time.Second), Expires: T0.Add(5 * time.Minute)}

	t.Run("unknown is not found", func(t *testing.T) {
		_, err := s.GetGrant(ctx, "g1")
		wantErr(t, "GetGrant", err, store.ErrNotFound)
		_, err = s.FindGrantByRefresh(ctx, "h-1")
		wantErr(t, "FindGrantByRefresh", err, store.ErrNotFound)
		_, err = s.FindGrantByAnyRefresh(ctx, "h-1")
		wantErr(t, "FindGrantByAnyRefresh", err, store.ErrNotFound)
	})
	for _, tc := range []store.Grant{g, backend} {
		t.Run("create and get "+tc.ID, func(t *testing.T) {
			if err := s.CreateGrant(ctx, tc); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetGrant(ctx, tc.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantGrant(t, "GetGrant", got, tc)
		})
	}
	t.Run("duplicate id exists", func(t *testing.T) {
		dup := sampleGrant("g1", "h-other")
		dup.Scope = "other"
		wantErr(t, "CreateGrant", s.CreateGrant(ctx, dup), store.ErrExists)
		got, err := s.GetGrant(ctx, "g1")
		if err != nil {
			t.Fatal(err)
		}
		wantGrant(t, "after duplicate", got, g)
	})
	t.Run("find by refresh", func(t *testing.T) {
		got, err := s.FindGrantByRefresh(ctx, "h-1")
		if err != nil {
			t.Fatal(err)
		}
		wantGrant(t, "FindGrantByRefresh", got, g)
		got, err = s.FindGrantByAnyRefresh(ctx, "h-1")
		if err != nil {
			t.Fatal(err)
		}
		wantGrant(t, "FindGrantByAnyRefresh", got, g)
		// A grant without a refresh token is never found by an empty hash.
		_, err = s.FindGrantByRefresh(ctx, "")
		wantErr(t, "FindGrantByRefresh empty", err, store.ErrNotFound)
	})
}

func testRefreshRotation(t *testing.T, newStore NewAuthStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	g := sampleGrant("g1", "h-1")
	if err := s.CreateGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGrant(ctx, sampleGrant("other", "o-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGrant(ctx, sampleGrant("none", "")); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name     string
		grant    string
		old, new string
		want     error
		current  string // g1's refresh hash afterwards
	}{
		{"rotate current", "g1", "h-1", "h-2", nil, "h-2"},
		{"rotate again", "g1", "h-2", "h-3", nil, "h-3"},
		{"reuse of a rotated hash is stale", "g1", "h-1", "h-evil", store.ErrStale, "h-3"},
		{"another grant's hash is stale", "g1", "o-1", "h-evil", store.ErrStale, "h-3"},
		{"unknown hash is stale", "g1", "zzz", "h-evil", store.ErrStale, "h-3"},
		{"grant without refresh is stale", "none", "", "h-evil", store.ErrStale, "h-3"},
		{"unknown grant is not found", "nope", "h-3", "h-evil", store.ErrNotFound, "h-3"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.Advance(time.Second)
			err := s.RotateRefresh(ctx, st.grant, st.old, st.new)
			if st.want == nil && err != nil {
				t.Fatalf("RotateRefresh: %v", err)
			}
			if st.want != nil {
				wantErr(t, "RotateRefresh", err, st.want)
			}
			got, err := s.GetGrant(ctx, "g1")
			if err != nil {
				t.Fatal(err)
			}
			if got.RefreshHash != st.current {
				t.Errorf("refresh hash = %q, want %q", got.RefreshHash, st.current)
			}
		})
	}
	t.Run("lookups after rotation", func(t *testing.T) {
		tests := []struct {
			hash       string
			current    bool // found by FindGrantByRefresh
			any        bool // found by FindGrantByAnyRefresh
			wantGrant  string
			wantStored string
		}{
			{"h-3", true, true, "g1", "h-3"},
			{"h-2", false, true, "g1", "h-3"},
			{"h-1", false, true, "g1", "h-3"},
			{"o-1", true, true, "other", "o-1"},
			{"h-evil", false, false, "", ""},
		}
		for _, tc := range tests {
			t.Run(tc.hash, func(t *testing.T) {
				got, err := s.FindGrantByRefresh(ctx, tc.hash)
				switch {
				case tc.current && err != nil:
					t.Errorf("FindGrantByRefresh: %v", err)
				case tc.current && (got.ID != tc.wantGrant || got.RefreshHash != tc.wantStored):
					t.Errorf("FindGrantByRefresh = %s/%s, want %s/%s", got.ID, got.RefreshHash, tc.wantGrant, tc.wantStored)
				case !tc.current:
					wantErr(t, "FindGrantByRefresh", err, store.ErrNotFound)
				}
				got, err = s.FindGrantByAnyRefresh(ctx, tc.hash)
				switch {
				case tc.any && err != nil:
					t.Errorf("FindGrantByAnyRefresh: %v", err)
				case tc.any && (got.ID != tc.wantGrant || got.RefreshHash != tc.wantStored):
					t.Errorf("FindGrantByAnyRefresh = %s/%s, want %s/%s", got.ID, got.RefreshHash, tc.wantGrant, tc.wantStored)
				case !tc.any:
					wantErr(t, "FindGrantByAnyRefresh", err, store.ErrNotFound)
				}
			})
		}
	})
	t.Run("concurrent rotations: exactly one wins", func(t *testing.T) {
		const n = 20
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.RotateRefresh(ctx, "other", "o-1", fmt.Sprintf("o-2-%d", i))
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("rotations %d and %d both succeeded", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrStale):
				t.Errorf("rotation %d: err = %v, want ErrStale", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no rotation succeeded")
		}
		got, err := s.GetGrant(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("o-2-%d", winner); got.RefreshHash != want {
			t.Errorf("refresh hash = %q, want the winner's %q", got.RefreshHash, want)
		}
	})
}

// testDeleteRevokesGrants: removing a client or a user revokes their active
// grants, so no refresh token outlives its registration; other grants stay.
func testDeleteRevokesGrants(t *testing.T, newStore NewAuthStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	for _, c := range []store.Client{{ID: "app-1", Kind: store.ClientPublic}, {ID: "app-2", Kind: store.ClientPublic}} {
		if err := s.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []store.User{{ID: "dr.who", Role: store.RoleClinician}, {ID: "amy", Role: store.RolePatient}} {
		if err := s.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	grants := []store.Grant{
		{ID: "g-app1-who", ClientID: "app-1", UserID: "dr.who"},
		{ID: "g-app2-who", ClientID: "app-2", UserID: "dr.who"},
		{ID: "g-app2-amy", ClientID: "app-2", UserID: "amy"},
	}
	for _, g := range grants {
		g.Created, g.Expires = T0, T0.Add(time.Hour)
		if err := s.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	revoked := func(id string) bool {
		g, err := s.GetGrant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return !g.Revoked.IsZero()
	}
	clock.Set(T0.Add(time.Minute))
	if err := s.DeleteClient(ctx, "app-1"); err != nil {
		t.Fatal(err)
	}
	if !revoked("g-app1-who") || revoked("g-app2-who") || revoked("g-app2-amy") {
		t.Fatalf("after DeleteClient(app-1): %v %v %v", revoked("g-app1-who"), revoked("g-app2-who"), revoked("g-app2-amy"))
	}
	if err := s.DeleteUser(ctx, "amy"); err != nil {
		t.Fatal(err)
	}
	if !revoked("g-app2-amy") || revoked("g-app2-who") {
		t.Fatal("DeleteUser(amy) did not revoke exactly amy's grant")
	}
	ids, err := s.RevokedSince(ctx, T0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantStrings(t, "RevokedSince", ids, []string{"g-app1-who", "g-app2-amy"})
}

func testRevocation(t *testing.T, newStore NewAuthStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	for _, id := range []string{"g1", "g2", "g3"} {
		if err := s.CreateGrant(ctx, sampleGrant(id, "h-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	t1, t2 := T0.Add(time.Minute), T0.Add(2*time.Minute+250*time.Millisecond)

	t.Run("nothing revoked", func(t *testing.T) {
		ids, err := s.RevokedSince(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		wantStrings(t, "RevokedSince(zero)", ids, nil)
	})
	t.Run("revoke", func(t *testing.T) {
		if err := s.RevokeGrant(ctx, "g1", t1); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeGrant(ctx, "g3", t2); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetGrant(ctx, "g1")
		if err != nil {
			t.Fatal(err)
		}
		if !got.Revoked.Equal(t1) {
			t.Errorf("Revoked = %v, want %v", got.Revoked, t1)
		}
		got, err = s.GetGrant(ctx, "g2")
		if err != nil {
			t.Fatal(err)
		}
		if !got.Revoked.IsZero() {
			t.Errorf("g2 Revoked = %v, want zero", got.Revoked)
		}
	})
	t.Run("idempotent keeps the first time", func(t *testing.T) {
		if err := s.RevokeGrant(ctx, "g1", t2.Add(time.Hour)); err != nil {
			t.Fatalf("second revoke: %v", err)
		}
		got, err := s.GetGrant(ctx, "g1")
		if err != nil {
			t.Fatal(err)
		}
		if !got.Revoked.Equal(t1) {
			t.Errorf("Revoked = %v, want the first revocation %v", got.Revoked, t1)
		}
	})
	t.Run("unknown grant", func(t *testing.T) {
		wantErr(t, "RevokeGrant", s.RevokeGrant(ctx, "nope", t1), store.ErrNotFound)
	})
	t.Run("revoked grant cannot rotate", func(t *testing.T) {
		wantErr(t, "RotateRefresh", s.RotateRefresh(ctx, "g1", "h-g1", "h-new"), store.ErrStale)
		got, err := s.FindGrantByRefresh(ctx, "h-g1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != "g1" || !got.Revoked.Equal(t1) {
			t.Errorf("FindGrantByRefresh = %+v, want revoked g1 (callers check Revoked)", got)
		}
	})
	tests := []struct {
		name  string
		since time.Time
		want  []string
	}{
		{"since zero", time.Time{}, []string{"g1", "g3"}},
		{"since before", T0, []string{"g1", "g3"}},
		{"since exactly t1", t1, []string{"g1", "g3"}},
		{"since just after t1", t1.Add(time.Millisecond), []string{"g3"}},
		{"since exactly t2", t2, []string{"g3"}},
		{"since after t2", t2.Add(time.Millisecond), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := s.RevokedSince(ctx, tc.since)
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(ids)
			wantStrings(t, "RevokedSince", ids, tc.want)
		})
	}
}

func testKeys(t *testing.T, newStore NewAuthStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	k1 := store.SigningKey{KID: "k1", Alg: "RS256", PrivatePEM: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), Created: T0}
	k2 := store.SigningKey{KID: "k2", Alg: "RS256", PrivatePEM: []byte("-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"), Created: T0.Add(time.Hour)}

	list := func(t *testing.T) map[string]store.SigningKey {
		t.Helper()
		l, err := s.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]store.SigningKey{}
		for _, k := range l {
			m[k.KID] = k
		}
		if len(m) != len(l) {
			t.Errorf("ListKeys returned duplicate kids: %d keys, %d kids", len(l), len(m))
		}
		return m
	}
	wantKey := func(t *testing.T, got, want store.SigningKey) {
		t.Helper()
		if got.KID != want.KID || got.Alg != want.Alg || !bytes.Equal(got.PrivatePEM, want.PrivatePEM) ||
			!got.Created.Equal(want.Created) || !got.Retired.Equal(want.Retired) {
			t.Errorf("key = %+v, want %+v", got, want)
		}
	}

	t.Run("empty", func(t *testing.T) {
		if m := list(t); len(m) != 0 {
			t.Errorf("ListKeys = %v, want none", m)
		}
	})
	t.Run("put and list", func(t *testing.T) {
		for _, k := range []store.SigningKey{k1, k2} {
			if err := s.PutKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		m := list(t)
		if len(m) != 2 {
			t.Fatalf("ListKeys = %d keys, want 2", len(m))
		}
		wantKey(t, m["k1"], k1)
		wantKey(t, m["k2"], k2)
	})
	t.Run("put replaces (retire)", func(t *testing.T) {
		r := k1
		r.Retired = T0.Add(time.Hour)
		if err := s.PutKey(ctx, r); err != nil {
			t.Fatal(err)
		}
		m := list(t)
		if len(m) != 2 {
			t.Fatalf("ListKeys = %d keys, want 2", len(m))
		}
		wantKey(t, m["k1"], r)
		wantKey(t, m["k2"], k2)
	})
}

// RunEphemeral runs the store.Ephemeral contract suite. Expiry is judged by
// clock: a value put with ttl is there until ttl has passed on clock and gone
// after. Returned values are the caller's (changing them changes nothing
// stored), and so are the values passed to Put.
func RunEphemeral(t *testing.T, newEph func(t *testing.T, clock store.Clock) store.Ephemeral) {
	ctx := context.Background()
	const ttl = time.Minute

	t.Run("put get delete", func(t *testing.T) {
		e := newEph(t, NewFakeClock(T0))
		_, err := e.Get(ctx, "k")
		wantErr(t, "Get absent", err, store.ErrNotFound)
		val := []byte("v1")
		if err := e.Put(ctx, "k", val, ttl); err != nil {
			t.Fatal(err)
		}
		val[0] = 'X' // the stored value is a copy
		got, err := e.Get(ctx, "k")
		if err != nil || string(got) != "v1" {
			t.Fatalf("Get = %q, %v; want v1", got, err)
		}
		got[0] = 'Y'
		if got, _ := e.Get(ctx, "k"); string(got) != "v1" {
			t.Errorf("Get after changing the returned slice = %q, want v1", got)
		}
		if err := e.Put(ctx, "k", []byte("v2"), ttl); err != nil {
			t.Fatal(err)
		}
		if got, err := e.Get(ctx, "k"); err != nil || string(got) != "v2" {
			t.Errorf("Get after replace = %q, %v; want v2", got, err)
		}
		if err := e.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		_, err = e.Get(ctx, "k")
		wantErr(t, "Get after Delete", err, store.ErrNotFound)
		if err := e.Delete(ctx, "k"); err != nil {
			t.Errorf("Delete absent: %v", err)
		}
	})

	t.Run("ttl expiry", func(t *testing.T) {
		tests := []struct {
			name    string
			advance time.Duration
			present bool
		}{
			{"fresh", 0, true},
			{"just before ttl", ttl - time.Second, true},
			{"after ttl", ttl + time.Second, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				clock := NewFakeClock(T0)
				e := newEph(t, clock)
				if err := e.Put(ctx, "k", []byte("v"), ttl); err != nil {
					t.Fatal(err)
				}
				if err := e.Put(ctx, "long", []byte("v"), 10*ttl); err != nil {
					t.Fatal(err)
				}
				clock.Advance(tc.advance)
				_, err := e.Get(ctx, "k")
				if tc.present && err != nil {
					t.Errorf("Get: %v", err)
				}
				if !tc.present {
					wantErr(t, "Get", err, store.ErrNotFound)
				}
				_, err = e.Take(ctx, "k")
				if tc.present && err != nil {
					t.Errorf("Take: %v", err)
				}
				if !tc.present {
					wantErr(t, "Take", err, store.ErrNotFound)
				}
				if _, err := e.Get(ctx, "long"); err != nil {
					t.Errorf("Get of the longer-lived key: %v", err)
				}
			})
		}
	})

	t.Run("put replaces ttl", func(t *testing.T) {
		clock := NewFakeClock(T0)
		e := newEph(t, clock)
		if err := e.Put(ctx, "k", []byte("v"), ttl); err != nil {
			t.Fatal(err)
		}
		clock.Advance(ttl / 2)
		if err := e.Put(ctx, "k", []byte("v"), ttl); err != nil {
			t.Fatal(err)
		}
		clock.Advance(ttl/2 + time.Second)
		if _, err := e.Get(ctx, "k"); err != nil {
			t.Errorf("Get after re-Put extended the ttl: %v", err)
		}
	})

	t.Run("take is single use", func(t *testing.T) {
		e := newEph(t, NewFakeClock(T0))
		if err := e.Put(ctx, "code", []byte("grant"), ttl); err != nil {
			t.Fatal(err)
		}
		got, err := e.Take(ctx, "code")
		if err != nil || string(got) != "grant" {
			t.Fatalf("Take = %q, %v", got, err)
		}
		_, err = e.Take(ctx, "code")
		wantErr(t, "second Take", err, store.ErrNotFound)
		_, err = e.Get(ctx, "code")
		wantErr(t, "Get after Take", err, store.ErrNotFound)
	})

	t.Run("50 concurrent takes: exactly one wins", func(t *testing.T) {
		e := newEph(t, NewFakeClock(T0))
		for round := range 5 {
			key := fmt.Sprintf("code-%d", round)
			if err := e.Put(ctx, key, []byte("v"), ttl); err != nil {
				t.Fatal(err)
			}
			const n = 50
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			start := make(chan struct{})
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					v, err := e.Take(ctx, key)
					switch {
					case err == nil:
						if string(v) != "v" {
							t.Errorf("Take = %q", v)
						}
						mu.Lock()
						wins++
						mu.Unlock()
					case !errors.Is(err, store.ErrNotFound):
						t.Errorf("Take: %v", err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if wins != 1 {
				t.Errorf("round %d: %d Takes succeeded, want exactly 1", round, wins)
			}
		}
	})

	t.Run("claim replay set", func(t *testing.T) {
		clock := NewFakeClock(T0)
		e := newEph(t, clock)
		steps := []struct {
			name    string
			advance time.Duration
			key     string
			want    bool
		}{
			{"first claim stores", 0, "jti-1", true},
			{"replay is refused", time.Second, "jti-1", false},
			{"other key stores", 0, "jti-2", true},
			{"replay just before expiry", ttl - 2*time.Second, "jti-1", false},
			{"claim after expiry stores again", 2 * time.Second, "jti-1", true},
			{"and is then refused", 0, "jti-1", false},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				clock.Advance(st.advance)
				got, err := e.Claim(ctx, st.key, ttl)
				if err != nil {
					t.Fatal(err)
				}
				if got != st.want {
					t.Errorf("Claim(%s) = %v, want %v", st.key, got, st.want)
				}
			})
		}
	})

	t.Run("50 concurrent claims: exactly one stores", func(t *testing.T) {
		e := newEph(t, NewFakeClock(T0))
		const n = 50
		var wg sync.WaitGroup
		var mu sync.Mutex
		stored := 0
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := e.Claim(ctx, "jti", ttl)
				if err != nil {
					t.Errorf("Claim: %v", err)
				}
				if ok {
					mu.Lock()
					stored++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if stored != 1 {
			t.Errorf("%d Claims stored, want exactly 1", stored)
		}
	})

	t.Run("incr with ttl from the first increment", func(t *testing.T) {
		clock := NewFakeClock(T0)
		e := newEph(t, clock)
		steps := []struct {
			name    string
			advance time.Duration
			key     string
			want    int64
		}{
			{"first", 0, "fails:u1", 1},
			{"second", time.Second, "fails:u1", 2},
			{"other key", 0, "fails:u2", 1},
			{"third, late in the window", ttl - 2*time.Second, "fails:u1", 3},
			{"window over: restarts", 2 * time.Second, "fails:u1", 1},
			{"new window counts", time.Second, "fails:u1", 2},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				clock.Advance(st.advance)
				got, err := e.Incr(ctx, st.key, ttl)
				if err != nil {
					t.Fatal(err)
				}
				if got != st.want {
					t.Errorf("Incr(%s) = %d, want %d", st.key, got, st.want)
				}
			})
		}
	})

	t.Run("concurrent incr counts every call", func(t *testing.T) {
		e := newEph(t, NewFakeClock(T0))
		const n = 50
		var wg sync.WaitGroup
		vals := make([]int64, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := e.Incr(ctx, "c", ttl)
				if err != nil {
					t.Errorf("Incr: %v", err)
				}
				vals[i] = v
			}()
		}
		wg.Wait()
		sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
		want := make([]int64, n)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if !reflect.DeepEqual(vals, want) {
			t.Errorf("Incr results = %v, want 1..%d each once", vals, n)
		}
	})
}
