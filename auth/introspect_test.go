package auth

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestIntrospection covers RFC 7662 as docs/design/security.md INT-1, INT-2,
// NEG-48, NEG-49 ask.
func TestIntrospection(t *testing.T) {
	env := newTDEnv(t)
	code, verifier := env.code(AuthCode{Encounter: "e1"})
	user := env.exchange(code, verifier)
	if user.status != 200 {
		t.Fatalf("%d %s", user.status, user.raw)
	}
	bt := env.backend(env.assertion(env.rs, "bk", nil), "system/*.rs")
	narrow := env.backend(env.assertion(env.rs, "bk", nil), "system/Patient.rs")
	if bt.status != 200 || narrow.status != 200 {
		t.Fatal("backend tokens")
	}
	bearer := "Bearer " + bt.str("access_token")

	t.Run("NEG-49 no credentials", func(t *testing.T) {
		r := env.post("/auth/introspect", url.Values{"token": {user.str("access_token")}})
		wantError(t, r, 401, "invalid_client")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Error("no challenge")
		}
	})
	t.Run("NEG-49 public client_id is not authentication", func(t *testing.T) {
		wantError(t, env.post("/auth/introspect", url.Values{"token": {user.str("access_token")}, "client_id": {"pub"}}), 401, "invalid_client")
	})
	t.Run("bad bearer", func(t *testing.T) {
		wantError(t, env.post("/auth/introspect", url.Values{"token": {"x"}}, "Authorization", "Bearer garbage"), 401, "invalid_token")
	})
	t.Run("bearer without system/*.rs", func(t *testing.T) {
		wantError(t, env.post("/auth/introspect", url.Values{"token": {"x"}}, "Authorization", "Bearer "+narrow.str("access_token")), 403, "insufficient_scope")
		wantError(t, env.post("/auth/introspect", url.Values{"token": {"x"}}, "Authorization", "Bearer "+user.str("access_token")), 403, "insufficient_scope")
	})
	t.Run("missing token", func(t *testing.T) {
		wantError(t, env.post("/auth/introspect", url.Values{}, "Authorization", bearer), 400, "invalid_request")
	})

	t.Run("active access token (INT-1)", func(t *testing.T) {
		r := env.post("/auth/introspect", url.Values{"token": {user.str("access_token")}}, "Authorization", bearer)
		if r.status != 200 || r.body["active"] != true {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		for k, want := range map[string]any{"scope": user.str("scope"), "client_id": "pub", "sub": "alice",
			"patient": "p1", "encounter": "e1", "iss": env.srv.URL + "/auth", "fhirUser": env.srv.URL + "/fhir/" + tdPatientRef} {
			if r.body[k] != want {
				t.Errorf("%s = %v, want %v", k, r.body[k], want)
			}
		}
		if exp, _ := r.body["exp"].(float64); exp <= float64(env.clock.Now().Unix()) {
			t.Errorf("exp = %v", r.body["exp"])
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Error("no-store")
		}
	})
	t.Run("active refresh token", func(t *testing.T) {
		r := env.post("/auth/introspect", url.Values{"token": {user.str("refresh_token")}}, "Authorization", bearer)
		if r.body["active"] != true || r.body["client_id"] != "pub" || r.body["token_type"] != "refresh_token" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("confidential client sees its own tokens only", func(t *testing.T) {
		code, verifier := env.code(AuthCode{ClientID: "conf", UserID: "drbob", Scope: "user/*.rs"})
		own := env.post("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {tdRedirect}, "code_verifier": {verifier}}, "Authorization", basicCredentials("conf", tdSecret))
		r := env.post("/auth/introspect", url.Values{"token": {own.str("access_token")}}, "Authorization", basicCredentials("conf", tdSecret))
		if r.body["active"] != true || r.body["client_id"] != "conf" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		r = env.post("/auth/introspect", url.Values{"token": {user.str("access_token")}}, "Authorization", basicCredentials("conf", tdSecret))
		if r.status != 200 || r.raw != `{"active":false}`+"\n" {
			t.Fatalf("other client's token: %d %q", r.status, r.raw)
		}
	})

	inactive := func(t *testing.T, tok string) {
		t.Helper()
		r := env.post("/auth/introspect", url.Values{"token": {tok}}, "Authorization", bearer)
		if r.status != 200 || len(r.body) != 1 || r.body["active"] != false {
			t.Fatalf("NEG-48: %d %s", r.status, r.raw)
		}
	}
	t.Run("NEG-48 garbage", func(t *testing.T) { inactive(t, "garbage") })
	t.Run("NEG-48 id_token", func(t *testing.T) { inactive(t, user.str("id_token")) })
	t.Run("NEG-48 revoked", func(t *testing.T) {
		code, verifier := env.code(AuthCode{})
		r := env.exchange(code, verifier)
		if rr := env.post("/auth/revoke", url.Values{"token": {r.str("access_token")}, "client_id": {"pub"}}); rr.status != 200 {
			t.Fatalf("revoke: %d", rr.status)
		}
		inactive(t, r.str("access_token"))
		inactive(t, r.str("refresh_token"))
	})
	t.Run("NEG-48 expired", func(t *testing.T) {
		env.clock.Add(AccessTTL + time.Minute)
		bt := env.backend(env.assertion(env.rs, "bk", nil), "system/*.rs")
		bearer = "Bearer " + bt.str("access_token")
		inactive(t, user.str("access_token"))
	})
}

// TestRevocation covers RFC 7009 (docs/design/security.md INT-3).
func TestRevocation(t *testing.T) {
	for _, c := range []struct {
		name      string
		which     string // access_token or refresh_token
		client    url.Values
		hdr       []string
		revoked   bool
		status    int
		errorCode string
	}{
		{name: "access token by its client", which: "access_token", client: url.Values{"client_id": {"pub"}}, revoked: true, status: 200},
		{name: "refresh token by its client", which: "refresh_token", client: url.Values{"client_id": {"pub"}}, revoked: true, status: 200},
		{name: "another client's token is left alone", which: "access_token", client: url.Values{"client_id": {"pub2"}}, status: 200},
		{name: "unknown token is 200", which: "", client: url.Values{"client_id": {"pub"}}, status: 200},
		{name: "no client", which: "access_token", client: url.Values{}, status: 401, errorCode: "invalid_client"},
		{name: "bad secret", which: "access_token", client: url.Values{}, hdr: []string{"Authorization", basicCredentials("conf", "x")}, status: 401, errorCode: "invalid_client"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newTDEnv(t)
			code, verifier := env.code(AuthCode{})
			tok := env.exchange(code, verifier)
			form := url.Values{"token": {"unknown-token-value"}}
			if c.which != "" {
				form.Set("token", tok.str(c.which))
			}
			for k, v := range c.client {
				form[k] = v
			}
			r := env.post("/auth/revoke", form, c.hdr...)
			if c.errorCode != "" {
				wantError(t, r, c.status, c.errorCode)
			} else if r.status != c.status {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			_, err := env.s.Tokens().Verify(t.Context(), tok.str("access_token"))
			if got := err != nil; got != c.revoked {
				t.Errorf("access token revoked = %v, want %v", got, c.revoked)
			}
			rr := env.post("/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.str("refresh_token")}})
			if got := rr.status != 200; got != c.revoked {
				t.Errorf("refresh refused = %v, want %v (%s)", got, c.revoked, rr.raw)
			}
			if c.revoked {
				wantError(t, rr, 400, "invalid_grant")
			}
		})
	}
}

// TestTokenEndpointCORS covers docs/design/security.md NET-1 for the client
// endpoints.
func TestTokenEndpointCORS(t *testing.T) {
	env := newTDEnv(t)
	for _, c := range []struct {
		name, path, origin string
		allowed            bool
	}{
		{"token registered origin", "/auth/token", tdOrigin, true},
		{"introspect registered origin", "/auth/introspect", tdOrigin, true},
		{"revoke registered origin", "/auth/revoke", tdOrigin, true},
		{"token foreign origin", "/auth/token", "https://evil.example", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodOptions, env.srv.URL+c.path, nil)
			req.Header.Set("Origin", c.origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			r := env.do(req)
			if r.status != 204 {
				t.Fatalf("preflight status %d", r.status)
			}
			got := r.header.Get("Access-Control-Allow-Origin")
			if c.allowed != (got == c.origin) || (!c.allowed && got != "") {
				t.Errorf("Allow-Origin = %q", got)
			}
			if c.allowed && r.header.Get("Access-Control-Allow-Headers") != corsAllowHeaders {
				t.Errorf("Allow-Headers = %q", r.header.Get("Access-Control-Allow-Headers"))
			}
			// The actual request carries the header too.
			pr := env.post(c.path, url.Values{"grant_type": {"foo"}}, "Origin", c.origin)
			if got := pr.header.Get("Access-Control-Allow-Origin"); c.allowed != (got == c.origin) {
				t.Errorf("POST Allow-Origin = %q", got)
			}
		})
	}
}
