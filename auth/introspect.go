package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// Token introspection (RFC 7662; SMART App Launch 2.2 token-introspection;
// docs/design/security.md INT-1, INT-2, NEG-48, NEG-49).
//
// The endpoint is protected (RFC 7662 §2.1). Callers are either
//   - a SMART Bearer access token granting read on every type at system
//     level (system/*.rs, or system/*.read, or wider): such a caller may
//     introspect any client's token (SMART App Launch 2.2
//     token-introspection#authorization-to-perform-token-introspection); or
//   - a confidential client authenticating as at the token endpoint (HTTP
//     Basic or a private_key_jwt assertion): it may introspect its own
//     tokens; other clients' tokens answer {"active":false}.
//
// No or bad credentials are 401; a valid Bearer token without that scope is
// 403 insufficient_scope. An inactive, unknown, expired or revoked token (or
// one the caller may not see) answers exactly {"active":false}.

// errInvalidBearer and errInsufficientScope are RFC 6750 §3.1 errors of the
// introspection caller's Bearer token.
var (
	errInvalidBearer     = &OAuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "the bearer token is invalid"}
	errInsufficientScope = &OAuthError{Status: http.StatusForbidden, Code: "insufficient_scope", Description: "introspection needs system/*.rs"}
)

// introspectionCaller is who asks: any==true may see every client's tokens.
type introspectionCaller struct {
	clientID string
	any      bool
}

func (t *tokenService) introspect(c echo.Context) error {
	body, err := t.introspectBody(c)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, body)
}

func (t *tokenService) introspectBody(c echo.Context) (map[string]any, error) {
	form, err := readForm(c)
	if err != nil {
		return nil, err
	}
	ctx := c.Request().Context()
	caller, err := t.introspectionCaller(ctx, c.Request(), form)
	if err != nil {
		return nil, err
	}
	tok := form.Get("token")
	if tok == "" {
		return nil, ErrInvalidRequest.WithDescription("token is required")
	}
	inactive := map[string]any{"active": false}
	if info, err := t.s.tokens.Verify(ctx, tok); err == nil {
		if !caller.any && caller.clientID != info.ClientID {
			return inactive, nil
		}
		out := map[string]any{
			"active": true, "scope": info.Scope, "client_id": info.ClientID, "token_type": "Bearer",
			"exp": info.Exp.Unix(), "iat": info.IssuedAt.Unix(), "iss": t.s.opts.Issuer(),
			"aud": t.s.opts.FHIRBase(), "jti": info.JTI,
		}
		if info.Subject != "" {
			out["sub"] = info.Subject
		}
		if info.FHIRUser != "" {
			out["fhirUser"] = info.FHIRUser
		}
		if info.Principal.Patient != "" {
			out["patient"] = info.Principal.Patient
		}
		if info.Principal.Organization != "" || info.Principal.Role != RoleEHR {
			out["organization"] = orgRef(info.Principal.Organization)
			out["role"] = string(info.Principal.Role)
		}
		if g, err := t.grants.GetGrant(ctx, info.GrantID); err == nil && g.Encounter != "" {
			out["encounter"] = g.Encounter
		}
		return out, nil
	} else if !errors.Is(err, ErrInvalidToken) {
		return nil, err
	}
	// A refresh token is active while its grant is.
	g, err := t.grants.FindGrantByRefresh(ctx, Hash(tok))
	if errors.Is(err, store.ErrNotFound) {
		return inactive, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find grant: %w", err)
	}
	if !t.grantActive(g) || (!caller.any && caller.clientID != g.ClientID) {
		return inactive, nil
	}
	if revs, err := t.s.tokens.Revocations(ctx); err != nil {
		return nil, err
	} else if revoked, err := revs.Revoked(ctx, g.ID); err != nil {
		return nil, err
	} else if revoked {
		return inactive, nil
	}
	out := map[string]any{
		"active": true, "scope": g.Scope, "client_id": g.ClientID, "token_type": "refresh_token",
		"exp": g.Expires.Unix(), "iat": g.Created.Unix(), "iss": t.s.opts.Issuer(),
	}
	if g.UserID != "" {
		out["sub"] = g.UserID
	}
	if g.Patient != "" {
		out["patient"] = g.Patient
	}
	if g.Encounter != "" {
		out["encounter"] = g.Encounter
	}
	return out, nil
}

// introspectionCaller authenticates the caller of /auth/introspect.
func (t *tokenService) introspectionCaller(ctx context.Context, r *http.Request, form map[string][]string) (*introspectionCaller, error) {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		info, err := t.s.tokens.Verify(ctx, strings.TrimSpace(h[7:]))
		if errors.Is(err, ErrInvalidToken) {
			return nil, withChallenge(errInvalidBearer, `Bearer error="invalid_token"`)
		}
		if err != nil {
			return nil, err
		}
		if !readsEverything(info.Principal.Grant) {
			return nil, withChallenge(errInsufficientScope, `Bearer error="insufficient_scope", scope="system/*.rs"`)
		}
		return &introspectionCaller{clientID: info.ClientID, any: true}, nil
	}
	client, err := t.authenticateClient(ctx, r, form)
	if err != nil {
		return nil, err
	}
	if !client.confidential() {
		return nil, withChallenge(ErrInvalidClient.WithDescription("introspection requires client authentication or a bearer token"),
			`Basic realm="ketabridge", Bearer`)
	}
	return &introspectionCaller{clientID: client.ID}, nil
}

// readsEverything reports whether a grant reads and searches every type at
// system level without constraints (system/*.rs or wider).
func readsEverything(g Grant) bool {
	for _, s := range g.Resource {
		if s.Context == ContextSystem && s.ResourceType == "*" && len(s.Filters) == 0 && s.Perms.Has(PermRead|PermSearch) {
			return true
		}
	}
	return false
}
