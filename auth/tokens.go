package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/store"
)

// ErrInvalidToken is the error Verify returns (wrapped with a PHI-free
// reason) for any token the resource server must reject with 401
// invalid_token (RFC 6750 §3.1; docs/design/security.md RS-2, NEG-36 to
// NEG-39).
var ErrInvalidToken = errors.New("invalid_token")

// Token shapes.
const (
	// accessTokenType is the JOSE typ of access tokens (RFC 9068 §2.1).
	accessTokenType = "at+jwt"
	// tokenUseAccess is the token_use claim only access tokens carry: an
	// id_token (or anything else we sign) never passes Verify.
	tokenUseAccess = "access"
	// maxTokenLen bounds what Verify looks at.
	maxTokenLen = 16 << 10
	// verifiedCacheSize bounds the verified-token cache.
	verifiedCacheSize = 10000
	// recentSlots is the number of slots of the recent-token memo in front
	// of the verified-token cache (docs/design/security.md PERF-ST-19).
	recentSlots = 256
	// recentTail is how many of a token's last bytes pick its memo slot.
	recentTail = 32
	// IDTokenTTL is the lifetime of id_tokens.
	IDTokenTTL = time.Hour
)

// AccessRequest is what an access token is issued for.
type AccessRequest struct {
	GrantID, ClientID, Subject, Scope, Patient, Encounter, FHIRUser string
	// PatientUser marks a patient's own login (user/ scopes then reach only
	// the patient's own record, see Principal).
	PatientUser bool
	// Organization ("Organization/{id}") and Role are the client's binding
	// (docs/design/security.md PRIV-11): they decide which view of the
	// records the token gets. Empty Role is RoleEHR.
	Organization string
	Role         Role
	// TTL is the lifetime; zero or anything above AccessTTL means AccessTTL.
	TTL time.Duration
}

// IDTokenRequest is what an OpenID Connect id_token is issued for
// (docs/design/security.md OIDC-1). FHIRUser is the absolute URL of the user's
// resource.
type IDTokenRequest struct {
	ClientID, Subject, FHIRUser, Nonce string
	AuthTime                           time.Time
}

// AccessInfo is a verified access token. Verify returns a shared, cached
// value: callers must not modify it.
type AccessInfo struct {
	Principal                                        Principal
	GrantID, JTI, ClientID, Subject, Scope, FHIRUser string
	Exp, IssuedAt                                    time.Time
}

// accessClaims are the claims of the gateway's access tokens.
type accessClaims struct {
	jwt.RegisteredClaims
	TokenUse    string `json:"token_use"`
	ClientID    string `json:"client_id"`
	Scope       string `json:"scope"`
	GrantID     string `json:"gid"`
	Patient     string `json:"patient,omitempty"`
	Encounter   string `json:"encounter,omitempty"`
	FHIRUser    string `json:"fhirUser,omitempty"`
	PatientUser bool   `json:"patient_user,omitempty"`
	// Organization and Role are the client's binding (PRIV-11).
	Organization string `json:"organization,omitempty"`
	Role         string `json:"role,omitempty"`
}

// idClaims are the claims of an id_token (OIDC Core §2;
// docs/design/security.md OIDC-1).
type idClaims struct {
	jwt.RegisteredClaims
	AuthTime int64  `json:"auth_time,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
	FHIRUser string `json:"fhirUser,omitempty"`
}

type cached struct {
	info *AccessInfo
	exp  time.Time
}

// recent is a verified token held in a slot of the recent-token memo: its
// exact bytes, what verifying them gave, and until when (the token's exp).
// Immutable once stored.
type recent struct {
	raw  string
	info *AccessInfo
	exp  time.Time
}

type revHolder struct{ r Revocations }

// Tokens mints RS256 access and id tokens and verifies access tokens for the
// resource server. Safe for concurrent use.
type Tokens struct {
	keys     *KeySet
	issuer   string
	audience string
	clock    store.Clock
	parser   *jwt.Parser

	rev atomic.Pointer[revHolder]

	mu    sync.RWMutex
	cache map[[sha256.Size]byte]cached

	// recent is the recent-token memo (PERF-ST-19): slots a token's last
	// bytes hash to (seed, per process), each holding one verified token
	// whole. A token is found only when its bytes equal the slot's, so the
	// hash decides where to look, never what is granted; two tokens of one
	// slot take turns in it and the other is found in cache as before.
	seed   maphash.Seed
	recent [recentSlots]atomic.Pointer[recent]
}

// NewTokens returns a Tokens signing with keys, issuing as issuer for the
// FHIR base audience. Verify fails closed until SetRevocations gives it the
// revocation set.
func NewTokens(keys *KeySet, issuer, audience string, clock store.Clock) *Tokens {
	if clock == nil {
		clock = store.SystemClock{}
	}
	t := &Tokens{keys: keys, issuer: issuer, audience: audience, clock: clock,
		cache: map[[sha256.Size]byte]cached{}, seed: maphash.MakeSeed()}
	// docs/design/security.md RS-2: RS256 only (alg none and HS256 fail), iss,
	// aud == the FHIR base, exp required, iat not in the future.
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{AlgRS256}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(clock.Now),
	)
	return t
}

// SetRevocations sets the revocation set Verify consults (and the one
// Revoke-callers should share, so a revocation is effective at once).
func (t *Tokens) SetRevocations(r Revocations) {
	t.rev.Store(&revHolder{r: r})
}

// errNoRevocations fails Verify closed when no revocation set was given.
var errNoRevocations = errors.New("auth: no revocation set configured (Tokens.SetRevocations)")

// Revocations returns the revocation set Verify consults, or an error when
// none was set (every token then fails to verify: fail closed).
func (t *Tokens) Revocations(context.Context) (Revocations, error) {
	if h := t.rev.Load(); h != nil && h.r != nil {
		return h.r, nil
	}
	return nil, errNoRevocations
}

// Issuer is the iss of the tokens.
func (t *Tokens) Issuer() string { return t.issuer }

// Audience is the aud of access tokens (the FHIR base).
func (t *Tokens) Audience() string { return t.audience }

// Access mints an RS256 access token (a JWT per RFC 9068: typ at+jwt, kid,
// iss, aud = FHIR base, sub, client_id, scope, jti, iat, exp, gid, and the
// launch context) and returns it with its expiry.
func (t *Tokens) Access(req AccessRequest) (string, time.Time, error) {
	if req.GrantID == "" || req.ClientID == "" {
		return "", time.Time{}, errors.New("auth: access token needs a grant and a client")
	}
	kid, priv, err := t.keys.signer()
	if err != nil {
		return "", time.Time{}, err
	}
	ttl := req.TTL
	if ttl <= 0 || ttl > AccessTTL {
		ttl = AccessTTL
	}
	now := t.clock.Now().Truncate(time.Second)
	exp := now.Add(ttl)
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   req.Subject,
			Audience:  jwt.ClaimStrings{t.audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		TokenUse:    tokenUseAccess,
		ClientID:    req.ClientID,
		Scope:       req.Scope,
		GrantID:     req.GrantID,
		Patient:     req.Patient,
		Encounter:   req.Encounter,
		FHIRUser:    req.FHIRUser,
		PatientUser: req.PatientUser,
	}
	if req.Role != "" && req.Role != RoleEHR || req.Organization != "" {
		claims.Organization, claims.Role = req.Organization, string(req.Role)
		if claims.Role == "" {
			claims.Role = string(RoleEHR)
		}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	tok.Header["typ"] = accessTokenType
	s, err := tok.SignedString(priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign access token: %w", err)
	}
	return s, exp, nil
}

// IDToken mints an RS256 OpenID Connect id_token: kid header, iss, sub,
// aud = client_id, iat, exp, auth_time, nonce, fhirUser
// (docs/design/security.md OIDC-1).
func (t *Tokens) IDToken(req IDTokenRequest) (string, error) {
	if req.ClientID == "" || strings.TrimSpace(req.Subject) == "" || len(req.Subject) > 255 {
		return "", errors.New("auth: id_token needs a client and a subject of 1-255 characters")
	}
	kid, priv, err := t.keys.signer()
	if err != nil {
		return "", err
	}
	now := t.clock.Now().Truncate(time.Second)
	claims := idClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   req.Subject,
			Audience:  jwt.ClaimStrings{req.ClientID},
			ExpiresAt: jwt.NewNumericDate(now.Add(IDTokenTTL)),
			IssuedAt:  jwt.NewNumericDate(now),
		},
		Nonce:    req.Nonce,
		FHIRUser: req.FHIRUser,
	}
	if !req.AuthTime.IsZero() {
		claims.AuthTime = req.AuthTime.Unix()
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(priv)
	if err != nil {
		return "", fmt.Errorf("auth: sign id_token: %w", err)
	}
	return s, nil
}

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, reason) }

var errUnknownKey = errors.New("unknown signing key")

// Verify checks an access token (docs/design/security.md RS-2, NEG-36 to
// NEG-39): RS256 only, signed by one of the key set's keys (by kid), iss, aud
// == the FHIR base, exp required and not past, iat not in the future, typ
// at+jwt and token_use access (so an id_token fails), and its grant not
// revoked. A token is verified once and cached until its exp; revocation is
// checked on every call. Token problems return an error wrapping
// ErrInvalidToken with a PHI-free reason; other errors (the revocation set
// could not be loaded) must fail closed too.
func (t *Tokens) Verify(ctx context.Context, raw string) (*AccessInfo, error) {
	if raw == "" || len(raw) > maxTokenLen {
		return nil, invalid("malformed")
	}
	now := t.clock.Now()
	var info *AccessInfo
	// The recent-token memo first (PERF-ST-19): a client's token arrives
	// on request after request, and comparing its bytes with the slot's
	// costs a fraction of hashing them with SHA-256. Found only when every
	// byte is equal and the token's exp not reached, as in cache.
	slot := &t.recent[maphash.String(t.seed, raw[len(raw)-min(len(raw), recentTail):])%recentSlots]
	if r := slot.Load(); r != nil && r.raw == raw && now.Before(r.exp) {
		info = r.info
	} else {
		// Hash the string's bytes in place: a conversion would copy (and
		// allocate) the token on every request; Sum256 only reads them.
		key := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
		t.mu.RLock()
		c, ok := t.cache[key]
		t.mu.RUnlock()
		if ok && now.Before(c.exp) {
			info = c.info
		} else {
			var err error
			if info, err = t.verify(ctx, raw); err != nil {
				return nil, err
			}
			t.remember(key, info, now)
		}
		// A copy of the bytes: the memo keeps no part of the request.
		slot.Store(&recent{raw: strings.Clone(raw), info: info, exp: info.Exp})
	}
	rev, err := t.Revocations(ctx)
	if err != nil {
		return nil, err
	}
	revoked, err := rev.Revoked(ctx, info.GrantID)
	if err != nil {
		return nil, fmt.Errorf("auth: revocation check: %w", err)
	}
	if revoked {
		return nil, invalid("revoked")
	}
	return info, nil
}

// verify parses and checks raw without the cache or revocation.
func (t *Tokens) verify(ctx context.Context, raw string) (*AccessInfo, error) {
	if err := checkCompactJWS(raw); err != nil {
		return nil, invalid("malformed")
	}
	var claims accessClaims
	_, err := t.parser.ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
		if typ, _ := tok.Header["typ"].(string); !strings.EqualFold(typ, accessTokenType) {
			return nil, errors.New("not an access token")
		}
		kid, _ := tok.Header["kid"].(string)
		pub, ok := t.keys.publicKey(ctx, kid)
		if !ok {
			return nil, errUnknownKey
		}
		return pub, nil
	})
	if err != nil {
		return nil, invalid(jwtReason(err))
	}
	if claims.TokenUse != tokenUseAccess {
		return nil, invalid("not an access token")
	}
	if claims.GrantID == "" || claims.ClientID == "" || claims.ID == "" || claims.IssuedAt == nil {
		return nil, invalid("missing claims")
	}
	// Unparseable scopes are dropped, never widened (docs/design/security.md
	// AZ-12, NEG-9).
	grant, _ := ParseGrant(claims.Scope)
	// An unknown role fails closed (docs/design/security.md PRIV-1): the
	// token was not minted by this gateway's rules.
	role, ok := ParseRole(claims.Role)
	if !ok || (role != RoleEHR && claims.Organization == "") {
		return nil, invalid("bad role")
	}
	return &AccessInfo{
		Principal: Principal{
			ClientID:     claims.ClientID,
			Grant:        grant,
			Patient:      claims.Patient,
			PatientUser:  claims.PatientUser,
			Organization: strings.TrimPrefix(claims.Organization, "Organization/"),
			Role:         role,
		},
		GrantID:  claims.GrantID,
		JTI:      claims.ID,
		ClientID: claims.ClientID,
		Subject:  claims.Subject,
		Scope:    claims.Scope,
		FHIRUser: claims.FHIRUser,
		Exp:      claims.ExpiresAt.Time,
		IssuedAt: claims.IssuedAt.Time,
	}, nil
}

// jwtReason maps a parse error to a fixed, PHI-free reason.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, errUnknownKey):
		return "unknown signing key"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing claims"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable (algorithm or key)"
	}
	return "invalid"
}

// remember caches a verified token until its exp, evicting expired entries
// (or, if none, arbitrary ones) when the cache is full.
func (t *Tokens) remember(key [sha256.Size]byte, info *AccessInfo, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.cache) >= verifiedCacheSize {
		for k, c := range t.cache {
			if !now.Before(c.exp) {
				delete(t.cache, k)
			}
		}
		for k := range t.cache {
			if len(t.cache) < verifiedCacheSize {
				break
			}
			delete(t.cache, k)
		}
	}
	t.cache[key] = cached{info: info, exp: info.Exp}
}
