package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"github.com/ketabridge/ketabridge/store"
	"hash/maphash"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	tkIssuer = "http://localhost:8080/auth"
	tkAud    = "http://localhost:8080/fhir"
)

type tkEnv struct {
	st    *tkStore
	clock *tkClock
	keys  *KeySet
	tok   *Tokens
}

func newTKEnv(t testing.TB) *tkEnv {
	t.Helper()
	st := newTKStore()
	clock := &tkClock{t: tkT0}
	ks, err := LoadKeySet(context.Background(), st, clock)
	if err != nil {
		t.Fatal(err)
	}
	revs, err := NewRevocations(context.Background(), st, clock)
	if err != nil {
		t.Fatal(err)
	}
	tok := NewTokens(ks, tkIssuer, tkAud, clock)
	tok.SetRevocations(revs)
	return &tkEnv{st: st, clock: clock, keys: ks, tok: tok}
}

var tkReq = AccessRequest{
	GrantID: "g1", ClientID: "app1", Subject: "alice", Scope: "launch/patient patient/Observation.rs?category=vital-signs openid fhirUser",
	Patient: "p1", Encounter: "e1", FHIRUser: "Patient/p1", PatientUser: true,
}

func payload(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	var h, p map[string]any
	for i, dst := range []*map[string]any{&h, &p} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return h, p
}

// sign signs claims with method and key, setting the given headers.
func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.Claims, hdr map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// validClaims are claims Verify accepts (when signed with the current key).
func validClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": tkIssuer, "aud": tkAud, "sub": "alice", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
		"jti": "j1", "client_id": "app1", "scope": "patient/Patient.rs", "gid": "g1", "patient": "p1", "token_use": "access",
	}
}

func TestAccessToken(t *testing.T) {
	env := newTKEnv(t)
	tok, exp, err := env.tok.Access(tkReq)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(tkT0.Add(AccessTTL)) {
		t.Errorf("exp %v", exp)
	}
	h, p := payload(t, tok)
	if h["alg"] != "RS256" || h["typ"] != "at+jwt" || h["kid"] != env.keys.current().kid {
		t.Errorf("header %v", h)
	}
	want := map[string]any{
		"iss": tkIssuer, "aud": tkAud, "sub": "alice", "client_id": "app1", "scope": tkReq.Scope, "gid": "g1",
		"patient": "p1", "encounter": "e1", "fhirUser": "Patient/p1", "token_use": "access",
		"exp": float64(exp.Unix()), "iat": float64(tkT0.Unix()),
	}
	for k, v := range want {
		got := p[k]
		if arr, ok := got.([]any); ok && len(arr) == 1 {
			got = arr[0]
		}
		if got != v {
			t.Errorf("claim %s = %v, want %v", k, p[k], v)
		}
	}
	if jti, _ := p["jti"].(string); len(jti) < 16 {
		t.Errorf("jti %q", p["jti"])
	}
	info, err := env.tok.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if info.GrantID != "g1" || info.ClientID != "app1" || info.Subject != "alice" || info.FHIRUser != "Patient/p1" ||
		info.Scope != tkReq.Scope || !info.Exp.Equal(exp) || !info.IssuedAt.Equal(tkT0) || info.JTI != p["jti"] {
		t.Errorf("info %+v", info)
	}
	pr := info.Principal
	if pr.ClientID != "app1" || pr.Patient != "p1" || !pr.PatientUser || len(pr.Grant.Resource) != 1 ||
		pr.Grant.Resource[0].String() != "patient/Observation.rs?category=vital-signs" || !pr.Grant.Has("openid") {
		t.Errorf("principal %+v", pr)
	}

	t.Run("TTL is capped at AccessTTL and honours shorter ones", func(t *testing.T) {
		for _, tc := range []struct {
			ttl, want time.Duration
		}{{0, AccessTTL}, {5 * time.Minute, 5 * time.Minute}, {3 * time.Hour, AccessTTL}} {
			r := tkReq
			r.TTL = tc.ttl
			if _, exp, err := env.tok.Access(r); err != nil || !exp.Equal(tkT0.Add(tc.want)) {
				t.Errorf("TTL %v: exp %v, %v", tc.ttl, exp, err)
			}
		}
	})
	t.Run("grant and client are required", func(t *testing.T) {
		for _, r := range []AccessRequest{{ClientID: "app1"}, {GrantID: "g1"}} {
			if _, _, err := env.tok.Access(r); err == nil {
				t.Errorf("minted %+v", r)
			}
		}
	})
}

func TestIDToken(t *testing.T) {
	env := newTKEnv(t)
	auth := tkT0.Add(-time.Minute)
	tok, err := env.tok.IDToken(IDTokenRequest{ClientID: "app1", Subject: "alice", FHIRUser: tkAud + "/Patient/p1", Nonce: "n1", AuthTime: auth})
	if err != nil {
		t.Fatal(err)
	}
	h, p := payload(t, tok)
	if h["alg"] != "RS256" || h["kid"] != env.keys.current().kid {
		t.Errorf("header %v", h)
	}
	aud := p["aud"]
	if arr, ok := aud.([]any); ok && len(arr) == 1 {
		aud = arr[0]
	}
	if p["iss"] != tkIssuer || aud != "app1" || p["sub"] != "alice" || p["fhirUser"] != tkAud+"/Patient/p1" ||
		p["nonce"] != "n1" || p["auth_time"] != float64(auth.Unix()) || p["iat"] != float64(tkT0.Unix()) ||
		p["exp"] != float64(tkT0.Add(IDTokenTTL).Unix()) || p["token_use"] != nil {
		t.Errorf("claims %v", p)
	}
	for _, r := range []IDTokenRequest{{Subject: "a"}, {ClientID: "c"}, {ClientID: "c", Subject: strings.Repeat("x", 256)}} {
		if _, err := env.tok.IDToken(r); err == nil {
			t.Errorf("minted %+v", r)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	env := newTKEnv(t)
	ctx := context.Background()
	kid, priv, _ := env.keys.signer()
	now := env.clock.Now()
	ourHdr := map[string]any{"kid": kid, "typ": "at+jwt"}
	pubPEM := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKid, _ := Thumbprint(&otherKey.PublicKey)
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := validClaims(now)
		mut(c)
		return c
	}
	idTok, _ := env.tok.IDToken(IDTokenRequest{ClientID: tkAud, Subject: "alice"}) // aud even equal to the FHIR base
	otherAud, _, _ := NewTokens(env.keys, tkIssuer, "http://other.example/fhir", env.clock).Access(tkReq)
	otherIss, _, _ := NewTokens(env.keys, "http://evil.example/auth", tkAud, env.clock).Access(tkReq)
	good := sign(t, jwt.SigningMethodRS256, priv, validClaims(now), ourHdr)
	parts := strings.Split(good, ".")
	// Replace one character of the signature with another valid base64url
	// character (not the last one, whose low bits may be padding): the
	// signature still decodes but no longer verifies. Flipping a bit could
	// leave the alphabet ('-' ^ 1 = ',') and test "malformed" instead.
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}

	tests := []struct {
		name, tok, reason string
	}{
		{"empty", "", "malformed"},
		{"garbage", "not-a-token", "malformed"},
		{"garbage three parts", "a.b.c", "malformed"},
		// An empty signature segment is not a compact JWS the gateway
		// accepts (docs/design/security.md CLI-8): refused before the
		// algorithm is looked at.
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims(now), ourHdr), "malformed"},
		{"HS256 keyed with the public key", sign(t, jwt.SigningMethodHS256, pubPEM, validClaims(now), ourHdr), "bad signature"},
		{"RS384", sign(t, jwt.SigningMethodRS384, priv, validClaims(now), ourHdr), "bad signature"},
		{"bad signature", parts[0] + "." + parts[1] + "." + string(sig), "bad signature"},
		{"other key with our kid", sign(t, jwt.SigningMethodRS256, otherKey, validClaims(now), ourHdr), "bad signature"},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, otherKey, validClaims(now), map[string]any{"kid": otherKid, "typ": "at+jwt"}), "unknown signing key"},
		{"no kid", sign(t, jwt.SigningMethodRS256, priv, validClaims(now), map[string]any{"typ": "at+jwt"}), "unknown signing key"},
		{"expired", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() }), ourHdr), "expired"},
		{"no exp", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { delete(c, "exp") }), ourHdr), "missing claims"},
		{"issued in the future", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }), ourHdr), "issued in the future"},
		{"wrong iss", otherIss, "wrong issuer"},
		{"wrong aud (another FHIR base)", otherAud, "wrong audience"},
		{"no aud", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { delete(c, "aud") }), ourHdr), "missing claims"},
		{"id_token as bearer", idTok, "unverifiable (algorithm or key)"},
		{"access typ without token_use", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { delete(c, "token_use") }), ourHdr), "not an access token"},
		{"token_use without typ", sign(t, jwt.SigningMethodRS256, priv, validClaims(now), map[string]any{"kid": kid}), "unverifiable (algorithm or key)"},
		{"no grant id", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { delete(c, "gid") }), ourHdr), "missing claims"},
		{"no jti", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { delete(c, "jti") }), ourHdr), "missing claims"},
		{"too long", strings.Repeat("a", maxTokenLen+1), "malformed"},
		// docs/design/security.md PRIV-11: a role this gateway never mints,
		// or an outside role without its organization, is no token of ours.
		{"unknown role", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { c["role"] = "auditor" }), ourHdr), "bad role"},
		{"payer without organization", sign(t, jwt.SigningMethodRS256, priv, with(func(c jwt.MapClaims) { c["role"] = "payer" }), ourHdr), "bad role"},
	}
	if _, err := env.tok.Verify(ctx, good); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := env.tok.Verify(ctx, tc.tok)
			if info != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %v, %v", info, err)
			}
			if want := "invalid_token: " + tc.reason; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
		})
	}
}

func TestVerifyCacheAndRevocation(t *testing.T) {
	ctx := context.Background()
	t.Run("verified once, cached until exp", func(t *testing.T) {
		env := newTKEnv(t)
		r := tkReq
		r.TTL = 10 * time.Minute
		tok, _, _ := env.tok.Access(r)
		a, err := env.tok.Verify(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		b, err := env.tok.Verify(ctx, tok)
		if err != nil || a != b {
			t.Fatalf("second Verify not served from the cache: %v", err)
		}
		env.clock.Add(10 * time.Minute)
		if _, err := env.tok.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("cached token accepted after exp: %v", err)
		}
	})
	t.Run("revoked after caching is rejected at once", func(t *testing.T) {
		env := newTKEnv(t)
		tok, _, _ := env.tok.Access(tkReq)
		if _, err := env.tok.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		rev, err := env.tok.Revocations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := rev.Revoke(ctx, "g1", env.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := env.tok.Verify(ctx, tok); err == nil || err.Error() != "invalid_token: revoked" {
			t.Errorf("revoked token: %v", err)
		}
		if _, ok := env.st.revoked["g1"]; !ok {
			t.Error("revocation not durable")
		}
		other := tkReq
		other.GrantID = "g2"
		tok2, _, _ := env.tok.Access(other)
		if _, err := env.tok.Verify(ctx, tok2); err != nil {
			t.Errorf("other grant rejected: %v", err)
		}
	})
	t.Run("revoked before start is loaded", func(t *testing.T) {
		env := newTKEnv(t)
		env.st.revoked["g1"] = tkT0.Add(-48 * time.Hour)
		revs, err := NewRevocations(ctx, env.st, env.clock) // as a process starting now
		if err != nil {
			t.Fatal(err)
		}
		env.tok.SetRevocations(revs)
		tok, _, _ := env.tok.Access(tkReq)
		if _, err := env.tok.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("token of a revoked grant accepted: %v", err)
		}
	})
	t.Run("revoked by another process is seen after the refresh interval", func(t *testing.T) {
		env := newTKEnv(t)
		tok, _, _ := env.tok.Access(tkReq)
		if _, err := env.tok.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		// Another replica revokes, its clock 30 s behind ours.
		env.st.RevokeGrant(ctx, "g1", env.clock.Now().Add(-30*time.Second))
		env.clock.Add(RevocationRefresh)
		deadline := time.Now().Add(2 * time.Second)
		for {
			_, err := env.tok.Verify(ctx, tok)
			if errors.Is(err, ErrInvalidToken) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("revocation by another process not seen: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("revocation store down at start fails closed", func(t *testing.T) {
		env := newTKEnv(t)
		env.st.fail = errors.New("db down")
		if _, err := NewRevocations(ctx, env.st, env.clock); err == nil {
			t.Error("NewRevocations succeeded with the store down")
		}
		// A Tokens without its revocation set verifies nothing.
		tk := NewTokens(env.keys, tkIssuer, tkAud, env.clock)
		tok, _, _ := tk.Access(tkReq)
		info, err := tk.Verify(ctx, tok)
		if info != nil || err == nil || errors.Is(err, ErrInvalidToken) {
			t.Errorf("Verify = %v, %v; want a non-token error", info, err)
		}
	})
	t.Run("key rotated by another process is found", func(t *testing.T) {
		env := newTKEnv(t)
		other, err := LoadKeySet(ctx, env.st, env.clock)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		tok, _, _ := NewTokens(other, tkIssuer, tkAud, env.clock).Access(tkReq)
		env.clock.Add(keyReloadInterval)
		if _, err := env.tok.Verify(ctx, tok); err != nil {
			t.Errorf("token signed by the rotated key: %v", err)
		}
	})
	t.Run("cache stays bounded", func(t *testing.T) {
		env := newTKEnv(t)
		info := &AccessInfo{Exp: tkT0.Add(time.Hour)}
		for i := 0; i < verifiedCacheSize+50; i++ {
			var k [32]byte
			k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
			env.tok.remember(k, info, tkT0)
		}
		if n := len(env.tok.cache); n > verifiedCacheSize {
			t.Errorf("cache holds %d", n)
		}
	})
}

func BenchmarkVerifyCached(b *testing.B) {
	env := newTKEnv(b)
	tok, _, _ := env.tok.Access(tkReq)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := env.tok.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCold(b *testing.B) {
	env := newTKEnv(b)
	tok, _, _ := env.tok.Access(tkReq)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(env.tok.cache)
		for i := range env.tok.recent {
			env.tok.recent[i].Store(nil)
		}
		if _, err := env.tok.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAccessTokenBinding: a bound client's token carries organization
// ("Organization/{id}") and role, and Verify gives them back in the
// Principal; an unbound client's token carries neither and reads as ehr
// (docs/design/security.md PRIV-11).
func TestAccessTokenBinding(t *testing.T) {
	env := newTKEnv(t)
	req := AccessRequest{GrantID: "g1", ClientID: "payer-1", Subject: "payer-1", Scope: "system/*.rs",
		Organization: "Organization/o1", Role: RolePayer}
	tok, _, err := env.tok.Access(req)
	if err != nil {
		t.Fatal(err)
	}
	_, p := payload(t, tok)
	if p["organization"] != "Organization/o1" || p["role"] != "payer" {
		t.Errorf("claims organization=%v role=%v", p["organization"], p["role"])
	}
	info, err := env.tok.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if pr := info.Principal; pr.Organization != "o1" || pr.Role != RolePayer || !pr.Outside() {
		t.Errorf("Principal = %+v", pr)
	}
	req.Organization, req.Role = "", ""
	tok, _, _ = env.tok.Access(req)
	if _, p = payload(t, tok); p["organization"] != nil || p["role"] != nil {
		t.Errorf("unbound token claims organization=%v role=%v", p["organization"], p["role"])
	}
	if info, err = env.tok.Verify(context.Background(), tok); err != nil || info.Principal.Role != RoleEHR || info.Principal.Outside() {
		t.Errorf("unbound Principal = %+v, %v", info, err)
	}
}

// TestClientBinding: what registration accepts as a client's organization
// and role (docs/design/security.md PRIV-11).
func TestClientBinding(t *testing.T) {
	bk, err := NewBackendKey("c1")
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := bk.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	backend := ClientRegistration{ID: "c1", Kind: store.ClientBackend, Scopes: []string{"system/*.rs"}, JWKS: jwks}
	tests := []struct {
		name    string
		mut     func(*ClientRegistration)
		wantErr string
	}{
		{"unbound is ehr", func(*ClientRegistration) {}, ""},
		{"payer bound", func(r *ClientRegistration) { r.Organization, r.Role = "o1", RolePayer }, ""},
		{"ehr bound to an organization", func(r *ClientRegistration) { r.Organization, r.Role = "o1", RoleEHR }, ""},
		{"payer without organization", func(r *ClientRegistration) { r.Role = RolePayer }, "organization is required for the payer role"},
		{"partner as a public client", func(r *ClientRegistration) {
			r.Kind, r.JWKS, r.Scopes, r.RedirectURIs = store.ClientPublic, nil, []string{"patient/*.rs"}, []string{"https://app.example/cb"}
			r.Organization, r.Role = "o1", RolePartner
		}, "role partner is for backend clients only"},
		{"unknown role", func(r *ClientRegistration) { r.Organization, r.Role = "o1", "auditor" }, "role must be ehr, payer or partner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := backend
			tc.mut(&r)
			c, _, err := NewClient(r, time.Now())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("NewClient: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("NewClient error %v, want %q", err, tc.wantErr)
			case tc.wantErr == "" && c.Role == "":
				t.Errorf("stored role empty, want %q", r.Role)
			}
		})
	}
}

// TestVerifyRecentMemo: the recent-token memo in front of the verified-token
// cache (docs/design/security.md PERF-ST-19) grants only what verifying the
// same bytes grants: a token whose last bytes (its slot) are a memoized
// token's but whose claims differ is verified afresh and refused; a
// memoized token is refused once its grant is revoked and once its exp is
// reached, and the memo never outlives the token.
func TestVerifyRecentMemo(t *testing.T) {
	ctx := context.Background()
	env := newTKEnv(t)
	r := tkReq
	r.TTL = 10 * time.Minute
	tok, exp, err := env.tok.Access(r)
	if err != nil {
		t.Fatal(err)
	}
	a, err := env.tok.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	slot := &env.tok.recent[maphash.String(env.tok.seed, tok[len(tok)-recentTail:])%recentSlots]
	m := slot.Load()
	if m == nil || m.raw != tok || m.info != a || !m.exp.Equal(exp) {
		t.Fatalf("the verified token is not in its memo slot until its exp: %+v", m)
	}
	if b, err := env.tok.Verify(ctx, tok); err != nil || b != a {
		t.Fatalf("second Verify not served from the memo: %v", err)
	}

	// The same signature (so the same slot) under wider claims.
	parts := strings.Split(tok, ".")
	_, claims := payload(t, tok)
	claims["scope"] = "system/*.rs"
	claims["client_id"] = "someone-else"
	pb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(pb) + "." + parts[2]
	if got := &env.tok.recent[maphash.String(env.tok.seed, forged[len(forged)-recentTail:])%recentSlots]; got != slot {
		t.Fatal("the forged token does not share the memo slot")
	}
	if info, err := env.tok.Verify(ctx, forged); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token with the memoized token's signature and other claims: %+v, %v", info, err)
	}
	if b, err := env.tok.Verify(ctx, tok); err != nil || b != a {
		t.Fatalf("the memoized token after the forgery: %v", err)
	}

	// Revoked while memoized: refused on the next request.
	rev, err := env.tok.Revocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := r
	other.GrantID = "g2"
	tok2, _, _ := env.tok.Access(other)
	if _, err := env.tok.Verify(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if err := rev.Revoke(ctx, "g2", env.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := env.tok.Verify(ctx, tok2); err == nil || err.Error() != "invalid_token: revoked" {
		t.Errorf("memoized token of a revoked grant: %v", err)
	}

	// At its exp the memoized token is refused, and not memoized again.
	env.clock.Add(10 * time.Minute)
	if _, err := env.tok.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("memoized token accepted at its exp: %v", err)
	}
}
