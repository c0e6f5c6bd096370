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

func (f *refreshFlow) handle(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
	t := f.t
	rt := req.get("refresh_token")
	if rt == "" {
		return nil, ErrInvalidRequest.WithDescription("refresh_token is required")
	}
	invalid := ErrInvalidGrant.WithDescription("the refresh token is invalid, expired or revoked")
	h := Hash(rt)
	g, err := f.grants.FindGrantByRefresh(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		// A token rotated away from: someone holds a copy. Revoke the grant.
		// Anything else (random strings, access tokens: NEG-18, NEG-22) is
		// unknown.
		old, err := f.grants.FindGrantByAnyRefresh(ctx, h)
		if err == nil {
			if err := t.revokeGrant(ctx, old.ID); err != nil {
				return nil, fmt.Errorf("revoke grant on refresh reuse: %w", err)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("find grant: %w", err)
		}
		return nil, invalid
	}
	if err != nil {
		return nil, fmt.Errorf("find grant: %w", err)
	}
	if !t.grantActive(g) {
		return nil, invalid
	}
	if revs, err := t.s.tokens.Revocations(ctx); err != nil {
		return nil, err
	} else if revoked, err := revs.Revoked(ctx, g.ID); err != nil {
		return nil, err
	} else if revoked {
		return nil, invalid
	}

	// Client binding (RFC 6749 §6, docs/design/security.md REF-3, NEG-21): a
	// confidential client authenticates as at the code exchange; a public
	// client need not identify itself, but a client_id it sends must be its
	// own.
	owner, err := f.clients.GetClient(ctx, g.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalid
	}
	if err != nil {
		return nil, fmt.Errorf("load client: %w", err)
	}
	switch {
	case req.client != nil && req.client.ID != g.ClientID:
		return nil, ErrInvalidGrant.WithDescription("the refresh token was issued to another client")
	case owner.Kind != store.ClientPublic && !req.client.confidential():
		return nil, ErrInvalidClient.WithDescription("client authentication required")
	case owner.Kind == store.ClientBackend:
		// Backend grants never have refresh tokens (docs/design/security.md
		// CLI-5).
		return nil, invalid
	}

	// scope: absent means the original grant; otherwise each scope must have
	// been granted, never more (RFC 6749 §6, docs/design/security.md REF-4,
	// NEG-20).
	scope := g.Scope
	if s := strings.TrimSpace(req.get("scope")); s != "" {
		have := map[string]bool{}
		for _, x := range strings.Fields(g.Scope) {
			have[x] = true
		}
		var want []string
		seen := map[string]bool{}
		granted, _ := ParseGrant(g.Scope)
		for _, x := range strings.Fields(s) {
			if !have[x] && !coveredByGrant(granted, x) {
				return nil, ErrInvalidScope.WithDescription("the requested scope exceeds the original grant")
			}
			if !seen[x] {
				seen[x] = true
				want = append(want, x)
			}
		}
		scope = strings.Join(want, " ")
	}

	next, err := newOpaqueToken()
	if err != nil {
		return nil, err
	}
	if err := f.grants.RotateRefresh(ctx, g.ID, h, Hash(next)); errors.Is(err, store.ErrStale) {
		// Lost a race with another use of the same token: a reuse.
		if err := t.revokeGrant(ctx, g.ID); err != nil {
			return nil, fmt.Errorf("revoke grant on refresh reuse: %w", err)
		}
		return nil, invalid
	} else if err != nil {
		return nil, fmt.Errorf("rotate refresh token: %w", err)
	}

	var fhirUser string
	var patientUser bool
	if g.UserID != "" {
		u, err := f.users.GetUser(ctx, g.UserID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && u.Disabled) {
			return nil, invalid
		}
		if err != nil {
			return nil, fmt.Errorf("load user: %w", err)
		}
		fhirUser, patientUser = t.fhirUserURL(u.FHIRUser), u.Role == store.RolePatient
	}
	access, exp, err := t.s.tokens.Access(AccessRequest{
		GrantID: g.ID, ClientID: g.ClientID, Subject: g.UserID, Scope: scope,
		Patient: g.Patient, Encounter: g.Encounter, FHIRUser: fhirUser,
		PatientUser: patientUser, TTL: AccessTTL,
	})
	if err != nil {
		return nil, err
	}
	// The launch context repeats so the app keeps its patient
	// (docs/design/security.md REF-2).
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
