package auth

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/store"
)

// clientCredentialsFlow is grant_type=client_credentials for SMART Backend
// Services (RFC 6749 §4.4; SMART App Launch 2.2
// backend-services#obtain-access-token; docs/design/security.md CLI-5 to
// CLI-7): a backend client authenticated with private_key_jwt gets a
// short-lived access token for system/ scopes within its registered policy,
// and never a refresh token (NEG-34).
//
// Scopes beyond the policy are narrowed or dropped and the response's scope
// reports what was granted (RFC 6749 §3.3, docs/design/security.md NEG-32);
// when nothing remains the request is invalid_scope.
type clientCredentialsFlow struct {
	t      *tokenService
	grants grantCreator
}

func (f *clientCredentialsFlow) handle(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
	t := f.t
	if req.client == nil {
		return nil, ErrInvalidClient.WithDescription("client authentication is required")
	}
	if req.client.Kind != store.ClientBackend || req.client.Method != authPrivateJWT {
		return nil, ErrUnauthorizedClient.WithDescription("client_credentials is for backend services clients")
	}
	requested := strings.TrimSpace(req.get("scope"))
	if requested == "" {
		return nil, ErrInvalidRequest.WithDescription("scope is required")
	}
	granted := narrowSystemScopes(requested, req.client.Scopes)
	if granted == "" {
		return nil, ErrInvalidScope.WithDescription("no requested scope is allowed for this client")
	}
	now := t.s.opts.Clock.Now()
	g := store.Grant{
		ID: uuid.NewString(), ClientID: req.client.ID, Scope: granted,
		Created: now, Expires: now.Add(BackendAccessTTL),
	}
	if err := f.grants.CreateGrant(ctx, g); err != nil {
		return nil, fmt.Errorf("create grant: %w", err)
	}
	access, exp, err := t.s.tokens.Access(AccessRequest{
		GrantID: g.ID, ClientID: g.ClientID, Subject: g.ClientID, Scope: granted, TTL: BackendAccessTTL,
		Organization: orgRef(req.client.Organization), Role: Role(req.client.Role),
	})
	if err != nil {
		return nil, err
	}
	return &tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: t.expiresIn(exp), Scope: granted}, nil
}

// orgRef is the organization claim of a bound client: "Organization/{id}",
// or empty.
func orgRef(id string) string {
	if id == "" {
		return ""
	}
	return "Organization/" + id
}

// narrowSystemScopes grants each requested system/ scope as far as the
// client's policy allows (SMART App Launch 2.2 scopes#system-level-scopes):
// its permissions are cut to those of the policy scopes that cover its type
// and constraints; v1 and v2 forms are both accepted (docs/design/security.md
// CLI-6). A scope granted whole keeps the requested spelling; a narrowed one
// is written in v2. Non-system and unparseable scopes are dropped.
func narrowSystemScopes(requested string, policy []string) string {
	var pol []Scope
	for _, p := range policy {
		if sc, err := ParseScope(p); err == nil && sc.Context == ContextSystem {
			pol = append(pol, sc)
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range strings.Fields(requested) {
		if !IsResourceScope(r) {
			continue
		}
		sc, err := ParseScope(r)
		if err != nil || sc.Context != ContextSystem {
			continue
		}
		var allowed Perm
		for _, p := range pol {
			if (p.ResourceType == "*" || p.ResourceType == sc.ResourceType) && filtersCover(p.Filters, sc.Filters) {
				allowed |= p.Perms
			}
		}
		perms := sc.Perms & allowed
		if perms == 0 {
			continue
		}
		s := r
		if perms != sc.Perms {
			sc.Perms, sc.V1 = perms, false
			s = sc.String()
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

// filtersCover reports whether a scope with filters req is within a policy
// scope with filters pol: every policy constraint is also in the request.
func filtersCover(pol, req []Filter) bool {
	for _, p := range pol {
		found := false
		for _, r := range req {
			if r == p {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
