package auth

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestClientCredentialsGrant covers SMART Backend Services
// (docs/design/security.md CLI-1 to CLI-7, NEG-23 to NEG-34).
func TestClientCredentialsGrant(t *testing.T) {
	t.Run("RS384 inline JWKS", func(t *testing.T) {
		env := newTDEnv(t)
		r := env.backend(env.assertion(env.rs, "bk", nil), "system/*.rs")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if r.str("scope") != "system/*.rs" || r.str("token_type") != "Bearer" {
			t.Errorf("response: %s", r.raw)
		}
		if n, _ := r.body["expires_in"].(float64); n <= 0 || n > 300 {
			t.Errorf("expires_in = %v (<= 300, CLI-5)", r.body["expires_in"])
		}
		if _, ok := r.body["refresh_token"]; ok {
			t.Errorf("NEG-34: refresh_token issued to a backend client")
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("caching headers")
		}
		info, err := env.s.Tokens().Verify(t.Context(), r.str("access_token"))
		if err != nil || info.ClientID != "bk" || info.Scope != "system/*.rs" {
			t.Fatalf("verify: %+v %v", info, err)
		}
		if g := env.st.grant(t, info.GrantID); g.UserID != "" || g.RefreshHash != "" {
			t.Errorf("grant: %+v", g)
		}
	})

	t.Run("ES384 inline JWKS, v1 scope (CLI-6)", func(t *testing.T) {
		env := newTDEnv(t)
		r := env.backend(env.assertion(env.es, "bk", nil), "system/*.read")
		if r.status != 200 || r.str("scope") != "system/*.read" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	t.Run("ES384 JWKS URL with jku, cached", func(t *testing.T) {
		env := newTDEnv(t)
		for i := 0; i < 2; i++ {
			a := env.assertion(env.esURL, "bkurl", func(_ jwt.MapClaims, h map[string]any) { h["jku"] = env.jwksURL })
			if r := env.backend(a, "system/Patient.rs"); r.status != 200 || r.str("scope") != "system/Patient.rs" {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		}
		if n := env.jwksHits.Load(); n != 1 {
			t.Errorf("JWKS fetched %d times, want 1 (max-age=60)", n)
		}
		env.clock.Add(61 * time.Second)
		if r := env.backend(env.assertion(env.esURL, "bkurl", nil), "system/Patient.rs"); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if n := env.jwksHits.Load(); n != 2 {
			t.Errorf("JWKS fetched %d times after max-age, want 2", n)
		}
	})

	t.Run("unknown kids do not hammer the JWKS URL", func(t *testing.T) {
		env := newTDEnv(t)
		for i := 0; i < 3; i++ {
			a := env.assertion(env.esURL, "bkurl", func(_ jwt.MapClaims, h map[string]any) { h["kid"] = "rotated-away" })
			wantError(t, env.backend(a, "system/*.rs"), 401, "invalid_client")
		}
		if n := env.jwksHits.Load(); n != 1 {
			t.Errorf("JWKS fetched %d times within %v, want 1", n, jwksRefetchEvery)
		}
	})

	t.Run("NEG-32 scope narrowed to the policy", func(t *testing.T) {
		env := newTDEnv(t)
		r := env.backend(env.assertion(env.rs, "bk", nil), "system/*.cruds system/Observation.cruds patient/*.rs launch")
		if r.status != 200 || r.str("scope") != "system/*.rs system/Observation.cruds" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	t.Run("NEG-32 nothing within the policy", func(t *testing.T) {
		env := newTDEnv(t)
		wantError(t, env.backend(env.assertion(env.rs, "bk", nil), "user/*.rs patient/*.rs"), 400, "invalid_scope")
	})

	t.Run("scope required", func(t *testing.T) {
		env := newTDEnv(t)
		wantError(t, env.backend(env.assertion(env.rs, "bk", nil), ""), 400, "invalid_request")
	})

	t.Run("non-backend client", func(t *testing.T) {
		env := newTDEnv(t)
		wantError(t, env.backend(env.assertion(env.rs, "asym", nil), "system/*.rs"), 400, "unauthorized_client")
		wantError(t, env.post("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
			"client_id": {"pub"}}), 400, "unauthorized_client")
		wantError(t, env.post("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}},
			"Authorization", basicCredentials("conf", tdSecret)), 400, "unauthorized_client")
	})

	t.Run("NEG-33 backend client with a secret", func(t *testing.T) {
		env := newTDEnv(t)
		r := env.post("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}},
			"Authorization", basicCredentials("bkbad", tdSecret))
		wantError(t, r, 401, "invalid_client")
		wantError(t, env.post("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
			"client_id": {"bkbad"}, "client_secret": {tdSecret}}), 401, "invalid_client")
	})

	t.Run("NEG-24 wrong client_assertion_type", func(t *testing.T) {
		env := newTDEnv(t)
		r := env.post("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
			"client_assertion_type": {"not_an_assertion_type"}, "client_assertion": {env.assertion(env.rs, "bk", nil)}})
		wantError(t, r, 400, "invalid_request")
	})

	t.Run("NEG-31 replayed assertion", func(t *testing.T) {
		env := newTDEnv(t)
		a := env.assertion(env.rs, "bk", nil)
		if r := env.backend(a, "system/*.rs"); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		wantError(t, env.backend(a, "system/*.rs"), 401, "invalid_client")
		// Still refused after exp has passed minus skew: the replay entry
		// lives until exp + Skew, and past that exp itself fails.
		env.clock.Add(4*time.Minute + Skew - time.Second)
		wantError(t, env.backend(a, "system/*.rs"), 401, "invalid_client")
	})

	t.Run("jku not the registered URL: never fetched (CLI-3)", func(t *testing.T) {
		env := newTDEnv(t)
		a := env.assertion(env.esURL, "bkurl", func(_ jwt.MapClaims, h map[string]any) { h["jku"] = "https://evil.example/jwks" })
		wantError(t, env.backend(a, "system/*.rs"), 401, "invalid_client")
		if n := env.jwksHits.Load(); n != 0 {
			t.Errorf("JWKS fetched %d times", n)
		}
		// A jku on a client with only an inline JWKS fails too.
		a = env.assertion(env.rs, "bk", func(_ jwt.MapClaims, h map[string]any) { h["jku"] = env.jwksURL })
		wantError(t, env.backend(a, "system/*.rs"), 401, "invalid_client")
	})

	env := newTDEnv(t)
	now := env.clock.Now()
	for _, c := range []struct {
		name   string
		key    tdKey
		iss    string
		mutate func(c jwt.MapClaims, h map[string]any)
		raw    func(good string) string
	}{
		{name: "NEG-25 iss != sub", mutate: func(c jwt.MapClaims, _ map[string]any) { c["sub"] = "bkurl" }},
		{name: "NEG-25 unknown iss", iss: "not_a_valid_iss"},
		{name: "NEG-25 iss of a public client", iss: "pub"},
		{name: "NEG-26 alg none", raw: func(good string) string {
			p := strings.Split(good, ".")
			return tdB64(`{"alg":"none","typ":"JWT","kid":"rs1"}`) + "." + p[1] + "."
		}},
		{name: "NEG-26 empty signature", raw: func(good string) string {
			p := strings.Split(good, ".")
			return p[0] + "." + p[1] + "."
		}},
		{name: "NEG-26 HS256 with the public key as secret", raw: func(good string) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "bk", "sub": "bk",
				"aud": env.s.opts.TokenEndpoint(), "exp": now.Add(time.Minute).Unix(), "jti": "hs"})
			tok.Header["kid"] = "rs1"
			s, _ := tok.SignedString(tdJWKS(t, env.rs))
			return s
		}},
		{name: "NEG-26 RS256 is not allowed", raw: func(good string) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "bk", "sub": "bk",
				"aud": env.s.opts.TokenEndpoint(), "exp": now.Add(time.Minute).Unix(), "jti": "rs256"})
			tok.Header["kid"] = "rs1"
			s, _ := tok.SignedString(env.rs.priv)
			return s
		}},
		{name: "NEG-27 unregistered key with a registered kid", key: env.other},
		{name: "NEG-27 kid not in the JWKS", mutate: func(_ jwt.MapClaims, h map[string]any) { h["kid"] = "nope" }},
		{name: "NEG-27 kid missing", mutate: func(_ jwt.MapClaims, h map[string]any) { delete(h, "kid") }},
		{name: "NEG-27 kid matches but kty does not", key: env.es, mutate: func(_ jwt.MapClaims, h map[string]any) { h["kid"] = "rs1" }},
		{name: "NEG-28 aud is the FHIR base", mutate: func(c jwt.MapClaims, _ map[string]any) { c["aud"] = env.s.opts.FHIRBase() }},
		{name: "NEG-28 aud is another URL", mutate: func(c jwt.MapClaims, _ map[string]any) { c["aud"] = env.s.opts.TokenEndpoint() + "/" }},
		{name: "NEG-29 exp missing", mutate: func(c jwt.MapClaims, _ map[string]any) { delete(c, "exp") }},
		{name: "NEG-29 exp past", mutate: func(c jwt.MapClaims, _ map[string]any) { c["exp"] = now.Add(-2 * Skew).Unix() }},
		{name: "NEG-29 exp in 10 minutes", mutate: func(c jwt.MapClaims, _ map[string]any) { c["exp"] = now.Add(10 * time.Minute).Unix() }},
		{name: "NEG-30 jti missing", mutate: func(c jwt.MapClaims, _ map[string]any) { delete(c, "jti") }},
		{name: "client_id differs from iss", raw: nil, mutate: nil, iss: "bk!client_id"},
		{name: "garbage assertion", raw: func(string) string { return "not.a.jwt" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			key, iss := c.key, c.iss
			if key.kid == "" {
				key = env.rs
			}
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
				"client_assertion_type": {JWTBearerAssertionType}}
			if i := strings.IndexByte(iss, '!'); i >= 0 {
				form.Set(iss[i+1:], "bkurl")
				iss = iss[:i]
			}
			if iss == "" {
				iss = "bk"
			}
			a := env.assertion(key, iss, c.mutate)
			if c.raw != nil {
				a = c.raw(a)
			}
			form.Set("client_assertion", a)
			r := env.post("/auth/token", form)
			wantError(t, r, 401, "invalid_client")
			if r.header.Get("WWW-Authenticate") != "" {
				t.Errorf("Basic challenge without Basic: %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("a good assertion still works in this env", func(t *testing.T) {
		if r := env.backend(env.assertion(env.rs, "bk", nil), "system/*.rs"); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}

func tdB64(s string) string { return strings.TrimRight(jwtSegment([]byte(s)), "=") }
