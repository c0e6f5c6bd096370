package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestTokenEndpointRequestShape covers the request checks common to every
// grant (docs/design/security.md NEG-16, NEG-17, NEG-23).
func TestTokenEndpointRequestShape(t *testing.T) {
	env := newTDEnv(t)
	t.Run("GET (NEG-17)", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, env.srv.URL+"/auth/token?grant_type=authorization_code&code=x", nil)
		wantError(t, env.do(req), 400, "invalid_request")
	})
	t.Run("JSON body (NEG-17)", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/auth/token",
			strings.NewReader(`{"grant_type":"authorization_code","code":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		wantError(t, env.do(req), 400, "invalid_request")
	})
	t.Run("repeated parameter", func(t *testing.T) {
		wantError(t, env.post("/auth/token", url.Values{"grant_type": {"refresh_token", "refresh_token"}}), 400, "invalid_request")
	})
	t.Run("missing grant_type", func(t *testing.T) {
		wantError(t, env.post("/auth/token", url.Values{"client_id": {"pub"}}), 400, "invalid_request")
	})
	for _, gt := range []string{"password", "foo", "not_a_grant_type", "implicit"} {
		t.Run("grant_type="+gt+" (NEG-16, NEG-23)", func(t *testing.T) {
			wantError(t, env.post("/auth/token", url.Values{"grant_type": {gt}, "client_id": {"pub"}}), 400, "unsupported_grant_type")
		})
	}
	t.Run("unsupported grant with a valid assertion (NEG-23)", func(t *testing.T) {
		r := env.post("/auth/token", url.Values{"grant_type": {"not_a_grant_type"}, "scope": {"system/*.rs"},
			"client_assertion_type": {JWTBearerAssertionType}, "client_assertion": {env.assertion(env.rs, "bk", nil)}})
		wantError(t, r, 400, "unsupported_grant_type")
	})
}

// TestAuthorizationCodeGrant covers docs/design/security.md TOK-1 to TOK-8 and
// NEG-10 to NEG-15.
func TestAuthorizationCodeGrant(t *testing.T) {
	t.Run("public client happy path", func(t *testing.T) {
		env := newTDEnv(t)
		code, verifier := env.code(AuthCode{NeedBanner: true, Encounter: "e1"})
		r := env.exchange(code, verifier)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
			t.Errorf("caching headers (TOK-4): %v", r.header)
		}
		for k, want := range map[string]any{
			"token_type": "Bearer", "scope": "launch/patient patient/*.rs openid fhirUser offline_access",
			"patient": "p1", "encounter": "e1", "need_patient_banner": true, "smart_style_url": env.srv.URL + "/auth/style.json",
		} {
			if r.body[k] != want {
				t.Errorf("%s = %v, want %v", k, r.body[k], want)
			}
		}
		if n, _ := r.body["expires_in"].(float64); n <= 0 || n > 3600 {
			t.Errorf("expires_in = %v", r.body["expires_in"])
		}
		for _, k := range []string{"access_token", "refresh_token", "id_token"} {
			if r.str(k) == "" {
				t.Errorf("%s missing", k)
			}
		}
		info, err := env.s.Tokens().Verify(t.Context(), r.str("access_token"))
		if err != nil {
			t.Fatal(err)
		}
		if info.Principal.Patient != "p1" || !info.Principal.PatientUser || info.FHIRUser != env.srv.URL+"/fhir/"+tdPatientRef {
			t.Errorf("access token context: %+v", info)
		}
		g := env.st.grant(t, info.GrantID)
		if g.RefreshHash != Hash(r.str("refresh_token")) || g.UserID != "alice" {
			t.Errorf("grant: %+v", g)
		}
	})

	t.Run("symmetric client with Basic", func(t *testing.T) {
		env := newTDEnv(t)
		code, verifier := env.code(AuthCode{ClientID: "conf", UserID: "drbob", Scope: "user/*.rs"})
		r := env.post("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {tdRedirect}, "code_verifier": {verifier}}, "Authorization", basicCredentials("conf", tdSecret))
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if r.str("refresh_token") != "" || r.str("id_token") != "" {
			t.Errorf("refresh/id token without offline_access/openid (REF-1): %s", r.raw)
		}
	})

	t.Run("asymmetric client with a client assertion", func(t *testing.T) {
		env := newTDEnv(t)
		code, verifier := env.code(AuthCode{ClientID: "asym", UserID: "drbob", Scope: "openid fhirUser user/*.rs"})
		r := env.post("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {tdRedirect}, "code_verifier": {verifier},
			"client_assertion_type": {JWTBearerAssertionType}, "client_assertion": {env.assertion(env.rs, "asym", nil)}})
		if r.status != 200 || r.str("id_token") == "" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	t.Run("online_access gives a refresh token (REF-1)", func(t *testing.T) {
		env := newTDEnv(t)
		code, verifier := env.code(AuthCode{Scope: "launch patient/*.rs online_access", Patient: "p1", EHRLaunch: true})
		if r := env.exchange(code, verifier); r.status != 200 || r.str("refresh_token") == "" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	type tc struct {
		name   string
		form   func(code, verifier string) url.Values
		hdr    []string
		ac     AuthCode
		before func(env *tdEnv)
		status int
		code   string
		www    bool
	}
	base := func(code, verifier string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {tdRedirect},
			"code_verifier": {verifier}, "client_id": {"pub"}}
	}
	with := func(k, v string) func(code, verifier string) url.Values {
		return func(code, verifier string) url.Values {
			f := base(code, verifier)
			if v == "\x00" {
				f.Del(k)
			} else {
				f.Set(k, v)
			}
			return f
		}
	}
	confForm := func(code, verifier string) url.Values {
		f := base(code, verifier)
		f.Del("client_id")
		return f
	}
	for _, c := range []tc{
		{name: "NEG-10 bad code", form: with("code", "BAD_CODE"), status: 400, code: "invalid_grant"},
		{name: "missing code", form: with("code", "\x00"), status: 400, code: "invalid_request"},
		{name: "NEG-11 wrong secret", ac: AuthCode{ClientID: "conf"}, form: confForm,
			hdr: []string{"Authorization", basicCredentials("conf", "wrong")}, status: 401, code: "invalid_client", www: true},
		{name: "NEG-11 wrong client in Basic", ac: AuthCode{ClientID: "conf"}, form: confForm,
			hdr: []string{"Authorization", basicCredentials("nobody", tdSecret)}, status: 401, code: "invalid_client", www: true},
		{name: "NEG-11 public client id with Basic", ac: AuthCode{ClientID: "conf"}, form: confForm,
			hdr: []string{"Authorization", basicCredentials("pub", "x")}, status: 401, code: "invalid_client", www: true},
		{name: "confidential client without secret", ac: AuthCode{ClientID: "conf"}, form: with("client_id", "conf"), status: 401, code: "invalid_client"},
		{name: "unknown client_id", form: with("client_id", "ghost"), status: 401, code: "invalid_client"},
		{name: "no client at all", form: with("client_id", "\x00"), status: 401, code: "invalid_client"},
		{name: "code of another client", form: with("client_id", "pub2"), status: 400, code: "invalid_grant"},
		{name: "NEG-12 verifier missing", form: with("code_verifier", "\x00"), status: 400, code: "invalid_request"},
		{name: "NEG-12 verifier blank", form: with("code_verifier", ""), status: 400, code: "invalid_request"},
		{name: "NEG-12 verifier wrong", form: with("code_verifier", strings.Repeat("a", 50)), status: 400, code: "invalid_grant"},
		{name: "NEG-12 verifier equal to challenge", form: func(code, verifier string) url.Values {
			f := base(code, verifier)
			f.Set("code_verifier", pkceChallenge(verifier))
			return f
		}, status: 400, code: "invalid_grant"},
		{name: "NEG-14 redirect_uri differs", form: with("redirect_uri", tdRedirect+"/"), status: 400, code: "invalid_grant"},
		{name: "redirect_uri missing", form: with("redirect_uri", "\x00"), status: 400, code: "invalid_request"},
		{name: "NEG-15 code past TTL", form: base, before: func(env *tdEnv) { env.clock.Add(CodeTTL + time.Second) }, status: 400, code: "invalid_grant"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newTDEnv(t)
			code, verifier := env.code(c.ac)
			if c.before != nil {
				c.before(env)
			}
			r := env.post("/auth/token", c.form(code, verifier), c.hdr...)
			wantError(t, r, c.status, c.code)
			if got := r.header.Get("WWW-Authenticate"); c.www != strings.HasPrefix(got, "Basic") {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if strings.Contains(r.raw, code) || strings.Contains(r.raw, verifier) || strings.Contains(r.raw, tdSecret) {
				t.Errorf("error body echoes a secret: %s", r.raw)
			}
			// A failed attempt by the authenticated client consumed the code: the
			// right request fails now.
			if c.before == nil && c.status != 401 && c.name != "missing code" && c.name != "NEG-10 bad code" {
				if r := env.exchange(code, verifier); r.status != 400 || r.str("error") != "invalid_grant" {
					t.Errorf("code survived a failed redemption: %d %s", r.status, r.raw)
				}
			}
		})
	}

	t.Run("NEG-13 second redemption revokes the first", func(t *testing.T) {
		env := newTDEnv(t)
		code, verifier := env.code(AuthCode{})
		first := env.exchange(code, verifier)
		if first.status != 200 {
			t.Fatalf("%d %s", first.status, first.raw)
		}
		wantError(t, env.exchange(code, verifier), 400, "invalid_grant")
		if _, err := env.s.Tokens().Verify(t.Context(), first.str("access_token")); err == nil {
			t.Error("access token from the first redemption still verifies")
		}
		r := env.post("/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.str("refresh_token")}})
		wantError(t, r, 400, "invalid_grant")
	})
}

// pkceChallenge is BASE64URL(SHA256(verifier)).
func pkceChallenge(v string) string { return pkceS256(v) }
