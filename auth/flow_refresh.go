package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// refreshFlow is grant_type=refresh_token (RFC 6749 §6; SMART App Launch 2.2
// app-launch#step-7; docs/design/security.md REF-1 to REF-5, NEG-18 to
// NEG-22). Refresh tokens rotate on every use; presenting one that was rotated
// away revokes the whole grant (OAuth 2.0 Security BCP §4.14.2).
type refreshFlow struct {
	t       *tokenService
	clients clientGetter
	users   Users
	grants  refreshGrants
}

// errRefreshInvalid is the answer to every refresh token that is unknown,
// expired, revoked or bound elsewhere: the same for each.
var errRefreshInvalid = ErrInvalidGrant.WithDescription("the refresh token is invalid, expired or revoked")

func (f *refreshFlow) handle(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
	rt := req.get("refresh_token")
	if rt == "" {
		return nil, ErrInvalidRequest.WithDescription("refresh_token is required")
	}
	h := Hash(rt)
	g, err := f.activeGrant(ctx, h)
	if err != nil {
		return nil, err
	}
	if err := f.checkClient(ctx, req, g); err != nil {
		return nil, err
	}
	scope, err := refreshScope(g, req.get("scope"))
	if err != nil {
		return nil, err
	}
	next, err := f.rotate(ctx, g, h)
	if err != nil {
		return nil, err
	}
	return f.issue(ctx, g, scope, next)
}

// activeGrant finds the grant whose current refresh token hashes to h and
// checks it is active and not revoked. A token the grant rotated away from
// means someone holds a copy: the grant is revoked (OAuth 2.0 Security BCP
// §4.14.2). Anything else (random strings, access tokens: NEG-18, NEG-22)
// is unknown.
func (f *refreshFlow) activeGrant(ctx context.Context, h string) (store.Grant, error) {
	t := f.t
	g, err := f.grants.FindGrantByRefresh(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		old, err := f.grants.FindGrantByAnyRefresh(ctx, h)
		if err == nil {
			if err := t.revokeGrant(ctx, old.ID); err != nil {
				return store.Grant{}, fmt.Errorf("revoke grant on refresh reuse: %w", err)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return store.Grant{}, fmt.Errorf("find grant: %w", err)
		}
		return store.Grant{}, errRefreshInvalid
	}
	if err != nil {
		return store.Grant{}, fmt.Errorf("find grant: %w", err)
	}
	if !t.grantActive(g) {
		return store.Grant{}, errRefreshInvalid
	}
	if revs, err := t.s.tokens.Revocations(ctx); err != nil {
		return store.Grant{}, err
	} else if revoked, err := revs.Revoked(ctx, g.ID); err != nil {
		return store.Grant{}, err
	} else if revoked {
		return store.Grant{}, errRefreshInvalid
	}
	return g, nil
}

// checkClient is the client binding (RFC 6749 §6, docs/design/security.md
// REF-3, NEG-21): a confidential client authenticates as at the code
// exchange; a public client need not identify itself, but a client_id it
// sends must be its own.
func (f *refreshFlow) checkClient(ctx context.Context, req *tokenRequest, g store.Grant) error {
	owner, err := f.clients.GetClient(ctx, g.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return errRefreshInvalid
	}
	if err != nil {
		return fmt.Errorf("load client: %w", err)
	}
	switch {
	case req.client != nil && req.client.ID != g.ClientID:
		return ErrInvalidGrant.WithDescription("the refresh token was issued to another client")
	case owner.Kind != store.ClientPublic && !req.client.confidential():
		return ErrInvalidClient.WithDescription("client authentication required")
	case owner.Kind == store.ClientBackend:
		// Backend grants never have refresh tokens (docs/design/security.md
		// CLI-5).
		return errRefreshInvalid
	}
	return nil
}

// refreshScope is the scope of the refreshed access token: absent means the
// original grant; otherwise each scope must have been granted, never more
// (RFC 6749 §6, docs/design/security.md REF-4, NEG-20).
func refreshScope(g store.Grant, requested string) (string, error) {
	requested = strings.TrimSpace(requested)
	if requested == "" {
		return g.Scope, nil
	}
	have := map[string]bool{}
	for _, x := range strings.Fields(g.Scope) {
		have[x] = true
	}
	var want []string
	seen := map[string]bool{}
	granted, _ := ParseGrant(g.Scope)
	for _, x := range strings.Fields(requested) {
		if !have[x] && !coveredByGrant(granted, x) {
			return "", ErrInvalidScope.WithDescription("the requested scope exceeds the original grant")
		}
		if !seen[x] {
			seen[x] = true
			want = append(want, x)
		}
	}
	return strings.Join(want, " "), nil
}

// rotate replaces the grant's refresh token (hash h) by a new one and
// returns it. Losing a race with another use of the same token is a reuse:
// the grant is revoked.
func (f *refreshFlow) rotate(ctx context.Context, g store.Grant, h string) (string, error) {
	next, err := newOpaqueToken()
	if err != nil {
		return "", err
	}
	if err := f.grants.RotateRefresh(ctx, g.ID, h, Hash(next)); errors.Is(err, store.ErrStale) {
		if err := f.t.revokeGrant(ctx, g.ID); err != nil {
			return "", fmt.Errorf("revoke grant on refresh reuse: %w", err)
		}
		return "", errRefreshInvalid
	} else if err != nil {
		return "", fmt.Errorf("rotate refresh token: %w", err)
	}
	return next, nil
}

// issue issues the refreshed access token with scope, and the next refresh
// token. The launch context repeats so the app keeps its patient
// (docs/design/security.md REF-2); a user since deleted or disabled gets
// nothing.
func (f *refreshFlow) issue(ctx context.Context, g store.Grant, scope, next string) (*tokenResponse, error) {
	t := f.t
	var fhirUser, org string
	var patientUser bool
	var role Role
	if g.UserID != "" {
		u, err := f.users.GetUser(ctx, g.UserID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && u.Disabled) {
			return nil, errRefreshInvalid
		}
		if err != nil {
			return nil, fmt.Errorf("load user: %w", err)
		}
		fhirUser, patientUser = t.fhirUserURL(u.FHIRUser), u.Role == store.RolePatient
		// PRIV-18: the binding as it is now (a removed binding ends with the
		// next refresh; an invalid one refuses it).
		org, role, err = t.s.partnerBinding(ctx, u)
		if errors.Is(err, errPartnerBinding) {
			return nil, errRefreshInvalid
		} else if err != nil {
			return nil, err
		}
	}
	access, exp, err := t.s.tokens.Access(AccessRequest{
		GrantID: g.ID, ClientID: g.ClientID, Subject: g.UserID, Scope: scope,
		Patient: g.Patient, Encounter: g.Encounter, FHIRUser: fhirUser,
		PatientUser: patientUser, TTL: AccessTTL, Organization: org, Role: role,
	})
	if err != nil {
		return nil, err
	}
	return &tokenResponse{
		AccessToken: access, TokenType: "Bearer", ExpiresIn: t.expiresIn(exp), Scope: scope,
		RefreshToken: next, Patient: g.Patient, Encounter: g.Encounter, SmartStyleURL: t.styleURL(),
	}, nil
}

// coveredByGrant reports whether the resource scope x asks for nothing the
// granted resource scopes do not already allow (patient/Patient.rs under
// patient/*.rs): a narrower scope on refresh (RFC 6749 §6). Unparseable and
// non-resource scopes are covered only by being granted verbatim.
func coveredByGrant(g Grant, x string) bool {
	if !IsResourceScope(x) {
		return false
	}
	want, err := ParseScope(x)
	if err != nil {
		return false
	}
	for _, have := range g.Resource {
		if scopeCovers(have, want) {
			return true
		}
	}
	return false
}
