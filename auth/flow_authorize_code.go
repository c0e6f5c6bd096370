package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ketabridge/ketabridge/store"
)

// authorizeCodeFlow is grant_type=authorization_code (RFC 6749 §4.1.3 with
// PKCE, RFC 7636 §4.5-4.6; SMART App Launch 2.2 app-launch#step-5;
// docs/design/security.md TOK-1 to TOK-8).
type authorizeCodeFlow struct {
	t      *tokenService
	users  Users
	grants grantCreator
}

func (f *authorizeCodeFlow) handle(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
	if req.client == nil {
		// RFC 6749 §4.1.3: a public client sends client_id; others authenticate.
		return nil, ErrInvalidClient.WithDescription("client_id or client authentication is required")
	}
	code := req.get("code")
	if code == "" {
		return nil, ErrInvalidRequest.WithDescription("code is required")
	}
	ac, err := f.redeem(ctx, code)
	if err != nil {
		return nil, err
	}
	if err := checkCodeBinding(req, ac); err != nil {
		return nil, err
	}
	user, err := f.users.GetUser(ctx, ac.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && user.Disabled) {
		return nil, ErrInvalidGrant.WithDescription("the user of this authorization is no longer active")
	}
	if err != nil {
		return nil, fmt.Errorf("load user: %w", err)
	}
	return f.issue(ctx, ac, user)
}

// redeem takes the code (single use: Take removes it whatever happens next,
// so a code that fails a later check cannot be retried, RFC 6749 §4.1.2) and
// marks it used, remembering its grant.
func (f *authorizeCodeFlow) redeem(ctx context.Context, code string) (AuthCode, error) {
	t := f.t
	raw, err := t.s.opts.Ephemeral.Take(ctx, CodeKey(code))
	if errors.Is(err, store.ErrNotFound) {
		// Unknown, expired, or already redeemed. A second redemption revokes
		// what the first one issued (RFC 6749 §4.1.2, docs/design/security.md
		// NEG-13).
		if gid, err := t.s.opts.Ephemeral.Get(ctx, UsedCodeKey(code)); err == nil {
			if err := t.revokeGrant(ctx, string(gid)); err != nil {
				return AuthCode{}, fmt.Errorf("revoke grant of a reused code: %w", err)
			}
		}
		return AuthCode{}, ErrInvalidGrant.WithDescription("the authorization code is invalid, expired or already used")
	}
	if err != nil {
		return AuthCode{}, fmt.Errorf("take code: %w", err)
	}
	var ac AuthCode
	if err := json.Unmarshal(raw, &ac); err != nil || ac.GrantID == "" {
		return AuthCode{}, fmt.Errorf("decode code: malformed record")
	}
	if err := t.s.opts.Ephemeral.Put(ctx, UsedCodeKey(code), []byte(ac.GrantID), CodeTTL); err != nil {
		return AuthCode{}, fmt.Errorf("mark code used: %w", err)
	}
	return ac, nil
}

// checkCodeBinding checks what the code is bound to: the client
// (docs/design/security.md TOK-2), the redirect_uri (RFC 6749 §4.1.3, NEG-14)
// and the PKCE challenge (RFC 7636 §4.6, NEG-12).
func checkCodeBinding(req *tokenRequest, ac AuthCode) error {
	if ac.ClientID != req.client.ID {
		return ErrInvalidGrant.WithDescription("the authorization code was issued to another client")
	}
	redirect := req.get("redirect_uri")
	if redirect == "" {
		return ErrInvalidRequest.WithDescription("redirect_uri is required")
	}
	if redirect != ac.RedirectURI {
		return ErrInvalidGrant.WithDescription("redirect_uri does not match the authorization request")
	}
	verifier := req.get("code_verifier")
	if verifier == "" {
		return ErrInvalidRequest.WithDescription("code_verifier is required")
	}
	if !pkceS256Matches(verifier, ac.CodeChallenge) {
		return ErrInvalidGrant.WithDescription("code_verifier does not match the code_challenge")
	}
	return nil
}

// issue stores the grant of a redeemed code and issues its tokens: an access
// token, a refresh token with offline_access or online_access
// (docs/design/security.md REF-1), and an id_token with openid and fhirUser
// (OIDC-1, OIDC-2).
func (f *authorizeCodeFlow) issue(ctx context.Context, ac AuthCode, user store.User) (*tokenResponse, error) {
	t := f.t
	granted, _ := ParseGrant(ac.Scope)
	now := t.s.opts.Clock.Now()
	// docs/design/security.md PRIV-18: a partner clinic's login acts for
	// its organization, in any app.
	org, role, err := t.s.partnerBinding(ctx, user)
	if errors.Is(err, errPartnerBinding) {
		return nil, ErrInvalidGrant.WithDescription("the login's partner organization is not a partner clinic in the clinic's records")
	} else if err != nil {
		return nil, err
	}
	g := store.Grant{
		ID: ac.GrantID, ClientID: ac.ClientID, UserID: ac.UserID, Scope: ac.Scope,
		Patient: ac.Patient, Encounter: ac.Encounter, Created: now, Expires: now.Add(AccessTTL),
	}
	var refresh string
	if granted.Has("offline_access") || granted.Has("online_access") {
		var err error
		if refresh, err = newOpaqueToken(); err != nil {
			return nil, err
		}
		g.RefreshHash = Hash(refresh)
		g.Expires = now.Add(RefreshTTL)
	}
	if err := f.grants.CreateGrant(ctx, g); errors.Is(err, store.ErrExists) {
		return nil, ErrInvalidGrant.WithDescription("the authorization code was already used")
	} else if err != nil {
		return nil, fmt.Errorf("create grant: %w", err)
	}

	fhirUser := t.fhirUserURL(user.FHIRUser)
	access, exp, err := t.s.tokens.Access(AccessRequest{
		GrantID: g.ID, ClientID: g.ClientID, Subject: g.UserID, Scope: g.Scope,
		Patient: g.Patient, Encounter: g.Encounter, FHIRUser: fhirUser,
		PatientUser: user.Role == store.RolePatient, TTL: AccessTTL,
		Organization: org, Role: role,
	})
	if err != nil {
		return nil, err
	}
	banner := ac.NeedBanner
	resp := &tokenResponse{
		AccessToken: access, TokenType: "Bearer", ExpiresIn: t.expiresIn(exp), Scope: g.Scope,
		RefreshToken: refresh, Patient: g.Patient, Encounter: g.Encounter,
		NeedPatientBanner: &banner, SmartStyleURL: t.styleURL(),
	}
	if granted.Has("openid") && granted.Has("fhirUser") && fhirUser != "" {
		if resp.IDToken, err = t.s.tokens.IDToken(IDTokenRequest{
			ClientID: g.ClientID, Subject: g.UserID, FHIRUser: fhirUser, Nonce: ac.Nonce, AuthTime: ac.AuthTime,
		}); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// pkceS256Matches checks BASE64URL(SHA256(ASCII(verifier))) == challenge
// (RFC 7636 §4.6). The verifier must be 43-128 unreserved characters
// (RFC 7636 §4.1); a verifier equal to the challenge fails like any other.
func pkceS256Matches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 || challenge == "" {
		return false
	}
	for i := 0; i < len(verifier); i++ {
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}
