package auth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// The authorization endpoint (RFC 6749 §4.1.1, SMART App Launch 2.2
// app-launch#step-4, docs/design/security.md AZ-1 to AZ-12, NEG-1 to NEG-9).
//
// GET or POST /auth/authorize validates the request in this order:
//  1. client_id is known (and not a backend client) and redirect_uri is
//     exactly one of its registered URIs; otherwise a 400 error page and
//     never a redirect (RFC 6749 §4.1.2.1; NEG-1, NEG-2).
//  2. Every later failure is redirected to the redirect_uri with error,
//     error_description and the state (when there is one): response_type
//     must be code (unsupported_response_type, NEG-5); state is required
//     (invalid_request, NEG-6); aud (or its synonym resource) must be the FHIR
//     base (invalid_request, NEG-3); code_challenge with method S256 is
//     required (invalid_request, NEG-4); every resource scope must parse
//     (invalid_scope, NEG-9: never widened) and the scopes are narrowed to the
//     client's registration; an EHR launch id must be live and bound to this
//     client (invalid_request, NEG-7).
//
// The validated request is kept server-side in Ephemeral under a random
// request id (rid) and the browser is sent to GET /auth/consent?rid=..., which
// shows the login page or, once signed in, the consent page. The forms carry
// only the rid: scopes, redirect_uri and launch context are never read back
// from hidden fields.
//
// Routes mounted here: /auth/authorize (GET, POST), /auth/consent (GET,
// POST), /auth/login (GET, POST), /auth/logout (POST), /auth/launch (GET,
// POST, the EHR launcher) and /auth/style.json.
//
// Every page handler returns its failures to pageErrors, the pages' one
// error renderer.
func (s *Server) mountAuthorize(r routes) {
	for _, p := range []struct {
		method, path string
		h            echo.HandlerFunc
	}{
		{http.MethodGet, "/authorize", s.handleAuthorize}, {http.MethodPost, "/authorize", s.handleAuthorize},
		{http.MethodGet, "/consent", s.handleConsentPage}, {http.MethodPost, "/consent", s.handleConsent},
		{http.MethodGet, "/login", s.handleLoginPage}, {http.MethodPost, "/login", s.handleLogin},
		{http.MethodPost, "/logout", s.handleLogout},
		{http.MethodGet, "/launch", s.handleLaunchPage}, {http.MethodPost, "/launch", s.handleLaunch},
	} {
		r.auth(p.method, p.path, p.h, s.pageErrors)
	}
	r.auth(http.MethodGet, "/style.json", handleStyle, s.cors.Open)
}

// pendingTTL is how long a user has to sign in and consent.
const pendingTTL = 10 * time.Minute

// pendingAuthz is a validated authorization request waiting for the user.
type pendingAuthz struct {
	ClientID      string `json:"client_id"`
	ClientName    string `json:"client_name"`
	RedirectURI   string `json:"redirect_uri"`
	State         string `json:"state"`
	CodeChallenge string `json:"code_challenge"`
	Nonce         string `json:"nonce,omitempty"`
	// Scopes are the requested scopes narrowed to the client's registration:
	// the most the user can grant.
	Scopes []string `json:"scopes"`
	// EHRLaunch marks a request that redeemed a launch id; LaunchUser,
	// Patient and Encounter are that launch's context.
	EHRLaunch  bool   `json:"ehr_launch,omitempty"`
	LaunchUser string `json:"launch_user,omitempty"`
	Patient    string `json:"patient,omitempty"`
	Encounter  string `json:"encounter,omitempty"`
	// Browser is the hash of the CSRF token of the browser that first opened
	// the request; no other browser can continue it.
	Browser string    `json:"browser,omitempty"`
	Created time.Time `json:"created"`
}

func pendingKey(rid string) string { return "authz:" + Hash(rid) }

func consentURL(rid string) string { return "/auth/consent?rid=" + url.QueryEscape(rid) }

// authorizeParams are the parameters that must not repeat (RFC 6749 §3.1).
var authorizeParams = []string{"response_type", "state", "aud", "resource", "scope",
	"code_challenge", "code_challenge_method", "launch", "nonce"}

// handleAuthorize is GET and POST /auth/authorize (docs/design/security.md
// AZ-1: POST takes an application/x-www-form-urlencoded body).
func (s *Server) handleAuthorize(c echo.Context) error {
	// Parsed whole or refused: net/url returns what it could parse beside
	// its error (and stops at 10,000 parameters), and a request judged on a
	// part of its parameters is not the request that was sent
	// (docs/design/security.md LIM-2).
	params, err := url.ParseQuery(c.Request().URL.RawQuery)
	if err != nil {
		return errorPage(http.StatusBadRequest, "Invalid authorization request",
			"The authorization request's query string could not be read.")
	}
	if c.Request().Method == http.MethodPost {
		if err := parsePageForm(c); err != nil {
			return errorPage(http.StatusBadRequest, "Invalid authorization request",
				"The authorization request must be an application/x-www-form-urlencoded form.")
		}
		params = c.Request().PostForm
	}
	// 1. Client and redirect_uri: failures are shown, never redirected.
	client, redirectURI, err := s.authorizeClient(c.Request().Context(), params)
	if err != nil {
		return err
	}
	// 2. Everything else is reported to the client (RFC 6749 §4.1.2.1).
	state := ""
	if len(params["state"]) == 1 {
		state = params.Get("state")
	}
	p, err := s.pendingRequest(c, params, client, redirectURI, state)
	var ae *authzError
	if errors.As(err, &ae) {
		return c.Redirect(http.StatusFound, authzErrorURL(redirectURI, ae.code, ae.desc, state))
	}
	if err != nil {
		return err
	}
	rid := authzRandom(32)
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := s.opts.Ephemeral.Put(c.Request().Context(), pendingKey(rid), raw, pendingTTL); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, consentURL(rid))
}

// authzError is a failure of an authorization request that is redirected to
// the client's redirect_uri (RFC 6749 §4.1.2.1): the error code and its
// description.
type authzError struct{ code, desc string }

func (e *authzError) Error() string { return "auth: authorize: " + e.code + ": " + e.desc }

// authorizeClient checks client_id and redirect_uri (docs/design/security.md
// AZ-3, NEG-1, NEG-2): the client must be known and not a backend client, and
// redirect_uri must be exactly one of its registered URIs. A failure is a
// pageError: it is shown to the user and never redirected.
func (s *Server) authorizeClient(ctx context.Context, params url.Values) (store.Client, string, error) {
	const invalid = "Invalid authorization request"
	if len(params["client_id"]) > 1 || len(params["redirect_uri"]) > 1 {
		return store.Client{}, "", errorPage(http.StatusBadRequest, invalid, "client_id or redirect_uri is repeated.")
	}
	clientID, redirectURI := params.Get("client_id"), params.Get("redirect_uri")
	if clientID == "" {
		return store.Client{}, "", errorPage(http.StatusBadRequest, invalid, "client_id is missing.")
	}
	client, err := s.opts.Clients.GetClient(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, "", errorPage(http.StatusBadRequest, "Unknown application",
			"The application (client_id) is not registered with this server.")
	}
	if err != nil {
		return store.Client{}, "", err
	}
	if client.Kind == store.ClientBackend {
		return store.Client{}, "", errorPage(http.StatusBadRequest, invalid,
			"This application is a backend service and cannot use the authorization endpoint.")
	}
	if redirectURI == "" || !slices.Contains(client.RedirectURIs, redirectURI) {
		return store.Client{}, "", errorPage(http.StatusBadRequest, "Invalid redirect URI",
			"The redirect_uri is not registered for this application (it must match exactly).")
	}
	return client, redirectURI, nil
}

// pendingRequest validates the rest of the request for client and builds the
// pending request the consent page continues. Failures to redirect are
// *authzError; other errors are internal.
func (s *Server) pendingRequest(c echo.Context, params url.Values, client store.Client, redirectURI, state string) (*pendingAuthz, error) {
	challenge, err := s.checkAuthorizeParams(params, state)
	if err != nil {
		return nil, err
	}
	scope := params.Get("scope")
	if _, errs := ParseGrant(scope); len(errs) > 0 {
		return nil, &authzError{"invalid_scope", errs[0].Error()}
	}
	scopes := narrowScopes(scope, client.Scopes)
	if len(scopes) == 0 {
		return nil, &authzError{"invalid_scope", "none of the requested scopes is allowed for this client"}
	}
	p := &pendingAuthz{
		ClientID:      client.ID,
		ClientName:    cmp.Or(client.Name, client.ID),
		RedirectURI:   redirectURI,
		State:         state,
		CodeChallenge: challenge,
		Nonce:         params.Get("nonce"),
		Scopes:        scopes,
		Created:       s.opts.Clock.Now().UTC(),
	}
	if launch := params.Get("launch"); launch != "" {
		lc, ok, err := s.redeemLaunch(c, launch, client.ID)
		if err != nil {
			return nil, err
		}
		if !ok {
			// docs/design/security.md NEG-7: the same answer for unknown,
			// expired and foreign launch ids, and nothing about the context.
			return nil, &authzError{"invalid_request", "launch is unknown, expired or not issued to this client"}
		}
		p.EHRLaunch, p.LaunchUser, p.Patient, p.Encounter = true, lc.UserID, lc.Patient, lc.Encounter
	}
	return p, nil
}

// checkAuthorizeParams checks the parameters of an authorization request for
// a known client and returns its PKCE challenge (docs/design/security.md
// AZ-2, AZ-4, AZ-5; NEG-3 to NEG-6): no parameter repeated, response_type
// code, a state, aud (or resource) equal to the FHIR base, and an S256
// code_challenge.
func (s *Server) checkAuthorizeParams(params url.Values, state string) (string, error) {
	for _, k := range authorizeParams {
		if len(params[k]) > 1 {
			return "", &authzError{"invalid_request", k + " is repeated"}
		}
	}
	switch rt := params.Get("response_type"); rt {
	case "code":
	case "":
		return "", &authzError{"invalid_request", "response_type is missing"}
	default:
		return "", &authzError{"unsupported_response_type", "only response_type=code is supported"}
	}
	if state == "" {
		return "", &authzError{"invalid_request", "state is required"}
	}
	aud := cmp.Or(params.Get("aud"), params.Get("resource")) // AZ-4: resource is a synonym
	switch {
	case aud == "":
		return "", &authzError{"invalid_request", "aud is required"}
	case aud != s.opts.FHIRBase():
		return "", &authzError{"invalid_request", "aud is not this server's FHIR base URL"}
	}
	challenge := params.Get("code_challenge")
	switch {
	case challenge == "":
		return "", &authzError{"invalid_request", "code_challenge is required (PKCE)"}
	case params.Get("code_challenge_method") != "S256":
		return "", &authzError{"invalid_request", "code_challenge_method must be S256"}
	case !validOpaque(challenge): // BASE64URL(SHA256(verifier)): 43 characters
		return "", &authzError{"invalid_request", "code_challenge is not a base64url SHA-256 digest"}
	}
	return challenge, nil
}

// redeemLaunch takes the launch id when it is live and bound to clientID.
// A launch id is single use: it is consumed here, its context copied into
// the pending request.
func (s *Server) redeemLaunch(c echo.Context, launch, clientID string) (LaunchContext, bool, error) {
	ctx := c.Request().Context()
	raw, err := s.opts.Ephemeral.Get(ctx, LaunchKey(launch))
	if errors.Is(err, store.ErrNotFound) {
		return LaunchContext{}, false, nil
	}
	if err != nil {
		return LaunchContext{}, false, err
	}
	var lc LaunchContext
	if json.Unmarshal(raw, &lc) != nil || lc.ClientID != clientID {
		return LaunchContext{}, false, nil
	}
	if _, err := s.opts.Ephemeral.Take(ctx, LaunchKey(launch)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return LaunchContext{}, false, nil // redeemed concurrently
		}
		return LaunchContext{}, false, err
	}
	return lc, true, nil
}

// loadPending returns the pending request rid, binding it to this browser on
// first use. On failure it returns nil with the status and message of the
// error page to show.
func (s *Server) loadPending(c echo.Context, rid string) (*pendingAuthz, int, string) {
	const gone = "This sign-in request has expired or was already completed. Start again from the application."
	if !validOpaque(rid) {
		return nil, http.StatusBadRequest, gone
	}
	ctx := c.Request().Context()
	raw, err := s.opts.Ephemeral.Get(ctx, pendingKey(rid))
	if err != nil {
		return nil, http.StatusBadRequest, gone
	}
	var p pendingAuthz
	if json.Unmarshal(raw, &p) != nil {
		return nil, http.StatusBadRequest, gone
	}
	browser := Hash(s.csrfToken(c))
	switch p.Browser {
	case browser:
		return &p, 0, ""
	case "":
		ttl := p.Created.Add(pendingTTL).Sub(s.opts.Clock.Now())
		if ttl <= 0 {
			return nil, http.StatusBadRequest, gone
		}
		p.Browser = browser
		raw, err := json.Marshal(p)
		if err == nil {
			err = s.opts.Ephemeral.Put(ctx, pendingKey(rid), raw, ttl)
		}
		if err != nil {
			if store.IsUnavailable(err) {
				return nil, http.StatusServiceUnavailable, "The sign-in service is temporarily unavailable. Try again in a moment."
			}
			return nil, http.StatusInternalServerError, "The request could not be processed."
		}
		return &p, 0, ""
	default:
		return nil, http.StatusBadRequest, "This sign-in request was started in another browser. Start again from the application."
	}
}

// authzErrorURL is the redirect_uri with an RFC 6749 §4.1.2.1 error response.
func authzErrorURL(redirectURI, code, desc, state string) string {
	v := url.Values{"error": {code}}
	if desc != "" {
		v.Set("error_description", desc)
	}
	if state != "" {
		v.Set("state", state)
	}
	return appendQuery(redirectURI, v)
}

// appendQuery adds v to the query of a registered URL, keeping the query it
// already has byte for byte.
func appendQuery(base string, v url.Values) string {
	u, err := url.Parse(base)
	if err != nil {
		return base // registered URLs parse; never reached
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery == "" {
		u.RawQuery = v.Encode()
	} else {
		u.RawQuery += "&" + v.Encode()
	}
	return u.String()
}

// nonResourceScopes are the scopes other than resource scopes a client may be
// granted, when its registration lists them (SMART App Launch 2.2 scopes).
var nonResourceScopes = map[string]bool{
	"openid": true, "fhirUser": true, "profile": true,
	"launch": true, "launch/patient": true, "launch/encounter": true,
	"offline_access": true, "online_access": true,
}

// narrowScopes narrows a (parsed-clean) requested scope string to what the
// client's registration allows, never widening anything:
//   - a resource scope covered by a registered one (same context, registered
//     type equal or *, registered permissions a superset, registered filters
//     all present) is kept as requested (v1 spelling included);
//   - otherwise it is replaced by its intersections with the registered
//     scopes (the more specific type, the common permissions, the filters of
//     both) written in v2 syntax, or dropped when there are none;
//   - openid, fhirUser, profile, launch, launch/patient, launch/encounter,
//     offline_access and online_access are kept when registered; any other
//     scope is dropped.
//
// The result keeps the request's order, without duplicates.
func narrowScopes(requested string, registered []string) []string {
	var allowed []Scope
	reg := map[string]bool{}
	for _, r := range registered {
		reg[r] = true
		if IsResourceScope(r) {
			if sc, err := ParseScope(r); err == nil {
				allowed = append(allowed, sc)
			}
		}
	}
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, f := range strings.Fields(requested) {
		if !IsResourceScope(f) {
			if nonResourceScopes[f] && reg[f] {
				add(f)
			}
			continue
		}
		r, err := ParseScope(f)
		if err != nil {
			continue // callers reject unparseable scopes before narrowing
		}
		if slices.ContainsFunc(allowed, func(g Scope) bool { return scopeCovers(g, r) }) {
			add(f)
			continue
		}
		var parts []Scope
		for _, g := range allowed {
			if x, ok := intersectScopes(r, g); ok {
				parts = append(parts, x)
			}
		}
		for i, x := range parts {
			redundant := false
			for j, y := range parts {
				if i != j && scopeCovers(y, x) && (!scopeCovers(x, y) || j < i) {
					redundant = true
					break
				}
			}
			if !redundant {
				add(x.String())
			}
		}
	}
	return out
}

// scopeCovers reports whether every access b allows is allowed by a.
func scopeCovers(a, b Scope) bool {
	if a.Context != b.Context || (a.ResourceType != "*" && a.ResourceType != b.ResourceType) || !a.Perms.Has(b.Perms) {
		return false
	}
	return filtersCover(a.Filters, b.Filters)
}

// intersectScopes is the scope allowing what both a and b allow, when that
// is expressible and not empty.
func intersectScopes(a, b Scope) (Scope, bool) {
	if a.Context != b.Context {
		return Scope{}, false
	}
	typ := a.ResourceType
	switch {
	case a.ResourceType == "*":
		typ = b.ResourceType
	case b.ResourceType == "*", a.ResourceType == b.ResourceType:
	default:
		return Scope{}, false
	}
	perms := a.Perms & b.Perms
	if perms == 0 {
		return Scope{}, false
	}
	x := Scope{Context: a.Context, ResourceType: typ, Perms: perms}
	for _, f := range append(slices.Clone(a.Filters), b.Filters...) {
		if !slices.Contains(x.Filters, f) {
			x.Filters = append(x.Filters, f)
		}
	}
	return x, true
}
