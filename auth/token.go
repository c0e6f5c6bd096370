package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// maxFormBytes bounds a token, introspection or revocation request body.
const maxFormBytes = 64 << 10

// tokenResponse is a successful access token response (RFC 6749 §5.1) with
// the SMART launch context (SMART App Launch 2.2 app-launch#response-5).
type tokenResponse struct {
	AccessToken       string `json:"access_token"`
	TokenType         string `json:"token_type"`
	ExpiresIn         int64  `json:"expires_in"`
	Scope             string `json:"scope"`
	RefreshToken      string `json:"refresh_token,omitempty"`
	IDToken           string `json:"id_token,omitempty"`
	Patient           string `json:"patient,omitempty"`
	Encounter         string `json:"encounter,omitempty"`
	NeedPatientBanner *bool  `json:"need_patient_banner,omitempty"`
	SmartStyleURL     string `json:"smart_style_url,omitempty"`
}

// tokenRequest is a parsed POST /auth/token: the form (each parameter at most
// once, RFC 6749 §3.2) and the client that authenticated, if any.
type tokenRequest struct {
	form   url.Values
	client *authedClient // nil when the request identified no client
}

// get returns a form parameter ("" when absent or empty: RFC 6749 §3.1
// treats parameters without a value as omitted).
func (r *tokenRequest) get(name string) string { return r.form.Get(name) }

// grantHandler handles one grant type at the token endpoint (RFC 6749 §4).
// Each lives in its own flow_*.go file.
type grantHandler interface {
	// handle validates the request and issues tokens, or returns an
	// *OAuthError (any other error is a 500).
	handle(ctx context.Context, req *tokenRequest) (*tokenResponse, error)
}

// tokenService is the token side of the authorization server: the grant
// handlers, client authentication with its JWKS cache, introspection and
// revocation. mountToken builds one per Server.
type tokenService struct {
	s    *Server
	jwks *jwksCache
	// flows are the grant handlers by grant_type.
	flows map[string]grantHandler
	// clients authenticate clients; grants serve introspection and
	// revocation.
	clients clientGetter
	grants  grantReader
}

// mountToken mounts /auth/token, /auth/introspect, /auth/revoke, /auth/jwks
// and the discovery documents. The JSON endpoints return their failures to
// oauthErrors, their one error renderer (its CORS check included).
func (s *Server) mountToken(r routes) {
	o := s.opts
	t := &tokenService{s: s, jwks: newJWKSCache(&http.Client{Timeout: jwksFetchTimeout}, o.Clock),
		clients: o.Clients, grants: o.Grants}
	t.flows = map[string]grantHandler{
		"authorization_code": &authorizeCodeFlow{t: t, users: o.Users, grants: o.Grants},
		"refresh_token":      &refreshFlow{t: t, clients: o.Clients, users: o.Users, grants: o.Grants},
		"client_credentials": &clientCredentialsFlow{t: t, grants: o.Grants},
	}
	s.mountDiscovery(r)

	for _, ep := range []struct {
		method, path string
		h            echo.HandlerFunc
	}{
		{http.MethodPost, "/token", t.token}, {http.MethodGet, "/token", t.tokenGet}, {http.MethodOptions, "/token", preflight},
		{http.MethodPost, "/introspect", t.introspect}, {http.MethodOptions, "/introspect", preflight},
		{http.MethodPost, "/revoke", t.revoke}, {http.MethodOptions, "/revoke", preflight},
	} {
		r.auth(ep.method, ep.path, ep.h, s.oauthErrors, s.cors.Clients)
	}
}

// tokenGet answers GET /auth/token: RFC 6749 §3.2 requires POST
// (docs/design/security.md NEG-17).
func (t *tokenService) tokenGet(echo.Context) error {
	return ErrInvalidRequest.WithDescription("the token endpoint requires POST")
}

// token is POST /auth/token (RFC 6749 §3.2): parse the form, dispatch on
// grant_type, authenticate the client, run the grant's handler.
func (t *tokenService) token(c echo.Context) error {
	resp, err := t.exchange(c)
	if err != nil {
		return err
	}
	noStore(c) // RFC 6749 §5.1, docs/design/security.md TOK-4
	return c.JSON(http.StatusOK, resp)
}

func (t *tokenService) exchange(c echo.Context) (*tokenResponse, error) {
	form, err := readForm(c)
	if err != nil {
		return nil, err
	}
	gt := form.Get("grant_type")
	if gt == "" {
		return nil, ErrInvalidRequest.WithDescription("grant_type is required")
	}
	h, ok := t.flows[gt]
	if !ok {
		return nil, ErrUnsupportedGrantType.WithDescription("supported grant types: authorization_code, refresh_token, client_credentials")
	}
	ctx := c.Request().Context()
	client, err := t.authenticateClient(ctx, c.Request(), form)
	if err != nil {
		return nil, err
	}
	return h.handle(ctx, &tokenRequest{form: form, client: client})
}

// readForm reads an application/x-www-form-urlencoded POST body (RFC 6749
// §3.2, RFC 7662 §2.1, RFC 7009 §2.1): anything else, a body over
// maxFormBytes or a parameter given twice (RFC 6749 §3.2) is invalid_request.
// Query parameters are ignored.
func readForm(c echo.Context) (url.Values, error) {
	r := c.Request()
	if r.Method != http.MethodPost {
		return nil, ErrInvalidRequest.WithDescription("POST required")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, ErrInvalidRequest.WithDescription("the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, ErrInvalidRequest.WithDescription("malformed form body")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return nil, ErrInvalidRequest.WithDescription("parameter " + safeParamName(k) + " given more than once")
		}
	}
	return r.PostForm, nil
}

// safeParamName keeps a parameter name fit for an error description.
func safeParamName(k string) string {
	if len(k) > 40 {
		k = k[:40]
	}
	return fmt.Sprintf("%q", k)
}

// newOpaqueToken returns 32 random bytes, base64url without padding: the
// refresh-token format (URL-safe, docs/design/security.md APP-1).
func newOpaqueToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// revokeGrant revokes a grant through the Revocations the Tokens share with
// the resource server, so it takes effect in this process at once: every
// access and refresh token issued from it stops working (RFC 7009 §2.1,
// RFC 6749 §4.1.2, docs/design/security.md INT-3). A grant that does not exist
// (yet) is not an error.
func (t *tokenService) revokeGrant(ctx context.Context, grantID string) error {
	r, err := t.s.tokens.Revocations(ctx)
	if err != nil {
		return err
	}
	if err := r.Revoke(ctx, grantID, t.s.opts.Clock.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// grantActive reports whether a stored grant still stands.
func (t *tokenService) grantActive(g store.Grant) bool {
	return g.Revoked.IsZero() && (g.Expires.IsZero() || t.s.opts.Clock.Now().Before(g.Expires))
}

// fhirUserURL is the absolute URL of a user's FHIR resource (the fhirUser
// claim, SMART App Launch 2.2 scopes#scopes-for-requesting-identity-data).
func (t *tokenService) fhirUserURL(ref string) string {
	if ref == "" {
		return ""
	}
	return t.s.opts.FHIRBase() + "/" + ref
}

// styleURL is smart_style_url (docs/design/security.md TOK-6).
func (t *tokenService) styleURL() string { return t.s.opts.Issuer() + "/style.json" }

// expiresIn is the expires_in of a token that expires at exp.
func (t *tokenService) expiresIn(exp time.Time) int64 {
	d := exp.Sub(t.s.opts.Clock.Now())
	if d < 0 {
		return 0
	}
	return int64(d.Round(time.Second) / time.Second)
}
