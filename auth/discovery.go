package auth

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// SMARTCapabilities are the capabilities the gateway advertises (SMART App
// Launch 2.2 conformance#capabilities; docs/design/security.md DISC-6).
var SMARTCapabilities = []string{
	"launch-ehr", "launch-standalone",
	"client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
	"sso-openid-connect",
	"context-ehr-patient", "context-standalone-patient", "context-banner", "context-style",
	"permission-offline", "permission-patient", "permission-user", "permission-v1", "permission-v2",
	"authorize-post",
}

// supportedScopes are the scopes listed in scopes_supported: the server
// supports every one (docs/design/security.md DISC-4). Resource scopes
// narrower than these (types, permissions, granular constraints) are supported
// as well.
var supportedScopes = []string{
	"openid", "fhirUser", "launch", "launch/patient", "launch/encounter",
	"offline_access", "online_access",
	"patient/*.rs", "patient/*.read", "user/*.rs", "user/*.read", "system/*.rs", "system/*.read",
}

// smartConfiguration is /fhir/.well-known/smart-configuration (SMART App
// Launch 2.2 conformance#metadata; docs/design/security.md DISC-1 to DISC-5).
type smartConfiguration struct {
	Issuer                                     string   `json:"issuer"`
	JWKSURI                                    string   `json:"jwks_uri"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	Capabilities                               []string `json:"capabilities"`
}

// openIDConfiguration is {issuer}/.well-known/openid-configuration (OpenID
// Connect Discovery 1.0 §3; docs/design/security.md DISC-8).
type openIDConfiguration struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
}

var (
	grantTypesSupported  = []string{"authorization_code", "client_credentials", "refresh_token"}
	authMethodsSupported = []string{authSecretBase, authPrivateJWT}
)

// smartConfiguration returns the SMART discovery document; every URL is
// absolute when Options.BaseURL is.
func (s *Server) smartConfiguration() smartConfiguration {
	iss := s.opts.Issuer()
	return smartConfiguration{
		Issuer:                            iss,
		JWKSURI:                           iss + "/jwks",
		AuthorizationEndpoint:             iss + "/authorize",
		TokenEndpoint:                     s.opts.TokenEndpoint(),
		IntrospectionEndpoint:             iss + "/introspect",
		RevocationEndpoint:                iss + "/revoke",
		GrantTypesSupported:               grantTypesSupported,
		TokenEndpointAuthMethodsSupported: authMethodsSupported,
		TokenEndpointAuthSigningAlgValuesSupported: assertionAlgs,
		ScopesSupported:               supportedScopes,
		ResponseTypesSupported:        []string{"code"},
		CodeChallengeMethodsSupported: []string{"S256"},
		Capabilities:                  SMARTCapabilities,
	}
}

func (s *Server) openIDConfiguration() openIDConfiguration {
	iss := s.opts.Issuer()
	return openIDConfiguration{
		Issuer:                            iss,
		AuthorizationEndpoint:             iss + "/authorize",
		TokenEndpoint:                     s.opts.TokenEndpoint(),
		JWKSURI:                           iss + "/jwks",
		IntrospectionEndpoint:             iss + "/introspect",
		RevocationEndpoint:                iss + "/revoke",
		ScopesSupported:                   supportedScopes,
		ResponseTypesSupported:            []string{"code"},
		GrantTypesSupported:               grantTypesSupported,
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		TokenEndpointAuthMethodsSupported: authMethodsSupported,
		ClaimsSupported:                   []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"},
		CodeChallengeMethodsSupported:     []string{"S256"},
	}
}

// mountDiscovery mounts the discovery documents and the JWKS: always
// application/json whatever Accept says (docs/design/security.md DISC-1,
// NEG-50), open CORS (NET-1).
func (s *Server) mountDiscovery(r routes) {
	doc := func(v func() any) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Response().Header().Set("Cache-Control", "public, max-age=300")
			return c.JSON(http.StatusOK, v())
		}
	}
	smart := doc(func() any { return s.smartConfiguration() })
	oidc := doc(func() any { return s.openIDConfiguration() })
	jwks := func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "public, max-age=300")
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.opts.Keys.JWKS())
	}
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		r.root(m, "/fhir/.well-known/smart-configuration", smart, s.cors.Open)
		r.auth(m, "/.well-known/openid-configuration", oidc, s.cors.Open)
		r.auth(m, "/jwks", jwks, s.cors.Open)
	}
}
