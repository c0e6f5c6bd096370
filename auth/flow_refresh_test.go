package auth

import (
	"net/url"
	"testing"
	"time"
)

// TestRefreshGrant covers docs/design/security.md REF-1 to REF-5 and NEG-18 to
// NEG-22.
func TestRefreshGrant(t *testing.T) {
	const scope = "launch/patient patient/*.rs openid fhirUser offline_access"
	start := func(t *testing.T, env *tdEnv, ac AuthCode) tdResp {
		t.Helper()
		code, verifier := env.code(ac)
		var r tdResp
		if ac.ClientID == "conf" {
			r = env.post("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {tdRedirect}, "code_verifier": {verifier}}, "Authorization", basicCredentials("conf", tdSecret))
		} else {
			r = env.exchange(code, verifier)
		}
		if r.status != 200 || r.str("refresh_token") == "" {
			t.Fatalf("code exchange: %d %s", r.status, r.raw)
		}
		return r
	}
	refresh := func(env *tdEnv, rt string, extra url.Values, hdr ...string) tdResp {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		for k, v := range extra {
			f[k] = v
		}
		return env.post("/auth/token", f, hdr...)
	}

	t.Run("rotation and context (REF-2, REF-5)", func(t *testing.T) {
		env := newTDEnv(t)
		first := start(t, env, AuthCode{})
		env.clock.Add(10 * time.Minute)
		r := refresh(env, first.str("refresh_token"), nil)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
			t.Errorf("caching headers (TOK-4)")
		}
		if r.str("scope") != scope || r.str("patient") != "p1" || r.str("token_type") != "Bearer" || r.body["expires_in"] == nil {
			t.Errorf("refresh response: %s", r.raw)
		}
		if r.str("refresh_token") == "" || r.str("refresh_token") == first.str("refresh_token") {
			t.Errorf("refresh token not rotated")
		}
		if _, err := env.s.Tokens().Verify(t.Context(), r.str("access_token")); err != nil {
			t.Errorf("new access token: %v", err)
		}
		// The rotated-away token is reused: the whole grant dies (REF-5).
		wantError(t, refresh(env, first.str("refresh_token"), nil), 400, "invalid_grant")
		wantError(t, refresh(env, r.str("refresh_token"), nil), 400, "invalid_grant")
		if _, err := env.s.Tokens().Verify(t.Context(), r.str("access_token")); err == nil {
			t.Error("access token survives refresh-token reuse")
		}
	})

	t.Run("narrower scope (REF-1)", func(t *testing.T) {
		env := newTDEnv(t)
		first := start(t, env, AuthCode{})
		r := refresh(env, first.str("refresh_token"), url.Values{"scope": {"patient/*.rs offline_access"}})
		if r.status != 200 || r.str("scope") != "patient/*.rs offline_access" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		// The grant keeps its scopes: a later refresh without scope gets them all.
		r = refresh(env, r.str("refresh_token"), nil)
		if r.status != 200 || r.str("scope") != scope {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	t.Run("semantically narrower scope (RFC 6749 §6)", func(t *testing.T) {
		env := newTDEnv(t)
		first := start(t, env, AuthCode{})
		// patient/Patient.r and a granular Observation scope both lie within
		// the granted patient/*.rs.
		want := "patient/Patient.r patient/Observation.rs?category=vital-signs offline_access"
		r := refresh(env, first.str("refresh_token"), url.Values{"scope": {want}})
		if r.status != 200 || r.str("scope") != want {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	t.Run("public client may send its own client_id (REF-3)", func(t *testing.T) {
		env := newTDEnv(t)
		first := start(t, env, AuthCode{})
		if r := refresh(env, first.str("refresh_token"), url.Values{"client_id": {"pub"}}); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	t.Run("confidential client authenticates (REF-3)", func(t *testing.T) {
		env := newTDEnv(t)
		first := start(t, env, AuthCode{ClientID: "conf"})
		if r := refresh(env, first.str("refresh_token"), nil, "Authorization", basicCredentials("conf", tdSecret)); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	for _, c := range []struct {
		name   string
		ac     AuthCode
		token  func(env *tdEnv, first tdResp) string
		extra  url.Values
		hdr    []string
		status int
		code   string
	}{
		{name: "NEG-18 random token", token: func(*tdEnv, tdResp) string { return "c29tZS1yYW5kb20tdG9rZW4tdmFsdWUtMTIzNDU2Nzg5MA" }, status: 400, code: "invalid_grant"},
		{name: "missing token", token: func(*tdEnv, tdResp) string { return "" }, status: 400, code: "invalid_request"},
		{name: "NEG-19 revoked token", token: func(env *tdEnv, first tdResp) string {
			r := env.post("/auth/revoke", url.Values{"token": {first.str("refresh_token")}, "client_id": {"pub"}})
			if r.status != 200 {
				t.Fatalf("revoke: %d", r.status)
			}
			return first.str("refresh_token")
		}, status: 400, code: "invalid_grant"},
		{name: "expired grant", token: func(env *tdEnv, first tdResp) string {
			env.clock.Add(RefreshTTL + time.Minute)
			return first.str("refresh_token")
		}, status: 400, code: "invalid_grant"},
		{name: "NEG-20 wider scope", extra: url.Values{"scope": {"patient/*.rs patient/*.cruds"}}, status: 400, code: "invalid_scope"},
		{name: "NEG-20 user scope", extra: url.Values{"scope": {"user/*.rs"}}, status: 400, code: "invalid_scope"},
		{name: "NEG-20 more permissions on one type", extra: url.Values{"scope": {"patient/Observation.rsd"}}, status: 400, code: "invalid_scope"},
		{name: "NEG-20 launch scope not granted", extra: url.Values{"scope": {"launch"}}, status: 400, code: "invalid_scope"},
		{name: "NEG-21 client B uses A's token", extra: url.Values{"client_id": {"pub2"}}, status: 400, code: "invalid_grant"},
		{name: "NEG-21 confidential client omits its secret", ac: AuthCode{ClientID: "conf"}, status: 401, code: "invalid_client"},
		{name: "NEG-21 confidential token with another client's secret", ac: AuthCode{ClientID: "conf"},
			extra: url.Values{"client_id": {"pub"}}, status: 400, code: "invalid_grant"},
		{name: "NEG-22 access token as refresh token", token: func(_ *tdEnv, first tdResp) string { return first.str("access_token") }, status: 400, code: "invalid_grant"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newTDEnv(t)
			first := start(t, env, c.ac)
			rt := first.str("refresh_token")
			if c.token != nil {
				rt = c.token(env, first)
			}
			f := url.Values{"grant_type": {"refresh_token"}}
			if rt != "" {
				f.Set("refresh_token", rt)
			}
			for k, v := range c.extra {
				f[k] = v
			}
			wantError(t, env.post("/auth/token", f, c.hdr...), c.status, c.code)
		})
	}

	t.Run("failed scope request does not spend the token", func(t *testing.T) {
		env := newTDEnv(t)
		first := start(t, env, AuthCode{})
		wantError(t, refresh(env, first.str("refresh_token"), url.Values{"scope": {"system/*.rs"}}), 400, "invalid_scope")
		if r := refresh(env, first.str("refresh_token"), nil); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}
