package auth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestDiscoveryDocuments checks the SMART and OIDC discovery documents and
// the JWKS (docs/design/security.md DISC-1 to DISC-9, NEG-50, NET-1).
func TestDiscoveryDocuments(t *testing.T) {
	env := newTDEnv(t)
	get := func(path, accept string) tdResp {
		req, _ := http.NewRequest(http.MethodGet, env.srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		req.Header.Set("Origin", "https://anywhere.example")
		return env.do(req)
	}
	urlFields := map[string][]string{
		"/fhir/.well-known/smart-configuration":  {"issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint", "revocation_endpoint"},
		"/auth/.well-known/openid-configuration": {"issuer", "jwks_uri", "authorization_endpoint", "token_endpoint"},
	}
	for _, tc := range []struct {
		name, path, accept string
	}{
		{"smart json", "/fhir/.well-known/smart-configuration", "application/json"},
		{"smart xml accept still json (NEG-50)", "/fhir/.well-known/smart-configuration", "application/xml"},
		{"smart no accept", "/fhir/.well-known/smart-configuration", ""},
		{"oidc", "/auth/.well-known/openid-configuration", "text/html"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(tc.path, tc.accept)
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Fatalf("got %d %q", r.status, r.header.Get("Content-Type"))
			}
			if r.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("CORS: %q", r.header.Get("Access-Control-Allow-Origin"))
			}
			for _, f := range urlFields[tc.path] {
				u, err := url.Parse(r.str(f))
				if err != nil || !u.IsAbs() || u.Host == "" {
					t.Errorf("%s = %q is not an absolute URL", f, r.str(f))
				}
			}
			if r.str("issuer") != env.srv.URL+"/auth" || r.str("token_endpoint") != env.srv.URL+"/auth/token" {
				t.Errorf("issuer/token_endpoint: %s", r.raw)
			}
		})
	}

	t.Run("smart required fields", func(t *testing.T) {
		var doc struct {
			Capabilities   []string `json:"capabilities"`
			Grants         []string `json:"grant_types_supported"`
			PKCE           []string `json:"code_challenge_methods_supported"`
			AuthMethods    []string `json:"token_endpoint_auth_methods_supported"`
			SigningAlgs    []string `json:"token_endpoint_auth_signing_alg_values_supported"`
			ResponseTypes  []string `json:"response_types_supported"`
			Scopes         []string `json:"scopes_supported"`
			ManagementEndp *string  `json:"management_endpoint"`
		}
		r := get("/fhir/.well-known/smart-configuration", "")
		if err := json.Unmarshal([]byte(r.raw), &doc); err != nil {
			t.Fatal(err)
		}
		want := []string{"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
			"client-confidential-asymmetric", "sso-openid-connect", "context-ehr-patient", "context-standalone-patient",
			"context-banner", "context-style", "permission-offline", "permission-patient", "permission-user",
			"permission-v1", "permission-v2", "authorize-post"}
		if !slices.Equal(doc.Capabilities, want) {
			t.Errorf("capabilities = %v", doc.Capabilities)
		}
		for _, g := range []string{"authorization_code", "client_credentials", "refresh_token"} {
			if !slices.Contains(doc.Grants, g) {
				t.Errorf("grant_types_supported lacks %s", g)
			}
		}
		if !slices.Equal(doc.PKCE, []string{"S256"}) {
			t.Errorf("code_challenge_methods_supported = %v (S256 only, DISC-2)", doc.PKCE)
		}
		if !slices.Contains(doc.AuthMethods, "private_key_jwt") || !slices.Contains(doc.AuthMethods, "client_secret_basic") {
			t.Errorf("auth methods = %v", doc.AuthMethods)
		}
		if !slices.Equal(doc.SigningAlgs, []string{"RS384", "ES384"}) {
			t.Errorf("signing algs = %v", doc.SigningAlgs)
		}
		if !slices.Equal(doc.ResponseTypes, []string{"code"}) {
			t.Errorf("response types = %v", doc.ResponseTypes)
		}
		if !slices.Contains(doc.Scopes, "system/*.rs") || !slices.Contains(doc.Scopes, "launch/patient") {
			t.Errorf("scopes = %v", doc.Scopes)
		}
		if doc.ManagementEndp != nil {
			t.Errorf("management_endpoint advertised without one")
		}
	})

	t.Run("oidc required fields (DISC-8)", func(t *testing.T) {
		r := get("/auth/.well-known/openid-configuration", "")
		for _, f := range []string{"response_types_supported", "subject_types_supported", "id_token_signing_alg_values_supported"} {
			if _, ok := r.body[f].([]any); !ok {
				t.Errorf("%s missing", f)
			}
		}
		if !slices.Contains(r.body["id_token_signing_alg_values_supported"].([]any), any("RS256")) {
			t.Errorf("RS256 not advertised")
		}
	})

	t.Run("jwks (DISC-9)", func(t *testing.T) {
		r := get("/auth/jwks", "")
		keys, _ := r.body["keys"].([]any)
		if r.status != 200 || len(keys) == 0 {
			t.Fatalf("jwks: %d %s", r.status, r.raw)
		}
		k := keys[0].(map[string]any)
		for _, f := range []string{"kty", "kid", "n", "e"} {
			if k[f] == nil {
				t.Errorf("key lacks %s", f)
			}
		}
		if k["d"] != nil {
			t.Fatal("private key material in JWKS")
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("CORS")
		}
	})

	t.Run("preflight", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, env.srv.URL+"/fhir/.well-known/smart-configuration", nil)
		req.Header.Set("Origin", "https://x.example")
		req.Header.Set("Access-Control-Request-Method", "GET")
		r := env.do(req)
		if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("preflight: %d %v", r.status, r.header)
		}
	})
}
