package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ketabridge/ketabridge/store"
)

// Client authentication methods (RFC 7591 §2 names, SMART App Launch 2.2).
const (
	authNone       = "none"                // public client: client_id in the body
	authSecretBase = "client_secret_basic" // confidential symmetric
	authPrivateJWT = "private_key_jwt"     // confidential asymmetric / backend
)

// JWTBearerAssertionType is the only client_assertion_type accepted
// (RFC 7523 §2.2, SMART Backend Services).
const JWTBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionAlgs are the client-assertion algorithms accepted
// (docs/design/security.md CLI-2: RS384 and ES384; never none or HS*).
var assertionAlgs = []string{"RS384", "ES384"}

const (
	jwksFetchTimeout = 5 * time.Second
	jwksMaxAge       = time.Hour
	jwksMaxBytes     = 1 << 20
)

// authedClient is a client that identified itself at a token-side endpoint,
// and how.
type authedClient struct {
	store.Client
	Method string // authNone, authSecretBase or authPrivateJWT
}

// confidential reports whether the client proved possession of a credential.
func (a *authedClient) confidential() bool { return a != nil && a.Method != authNone }

// authenticateClient authenticates the client of a token-side request
// (RFC 6749 §2.3, §3.2.1). It returns nil, nil when the request carries no
// client identification at all (allowed for public-client refresh,
// docs/design/security.md REF-3; the grant handler decides). A client using
// more than one method is invalid_request (RFC 6749 §2.3).
func (t *tokenService) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (*authedClient, error) {
	user, pass, basic := r.BasicAuth()
	assertionType, assertion := form.Get("client_assertion_type"), form.Get("client_assertion")
	bodyID := form.Get("client_id")
	methods := 0
	for _, used := range []bool{basic, assertionType != "" || assertion != "", form.Get("client_secret") != ""} {
		if used {
			methods++
		}
	}
	if methods > 1 {
		return nil, ErrInvalidRequest.WithDescription("use exactly one client authentication method")
	}
	switch {
	case basic:
		return t.authBasic(ctx, user, pass, bodyID)
	case assertionType != "" || assertion != "":
		return t.authAssertion(ctx, assertionType, assertion, bodyID)
	case form.Get("client_secret") != "":
		// client_secret_post is not offered (token_endpoint_auth_methods_supported),
		// and backend clients never use secrets (docs/design/security.md
		// NEG-33).
		return nil, ErrInvalidClient.WithDescription("client_secret_post is not supported; use HTTP Basic")
	case bodyID != "":
		c, err := t.lookupClient(ctx, bodyID)
		if err != nil {
			return nil, err
		}
		if c.Kind != store.ClientPublic {
			return nil, ErrInvalidClient.WithDescription("client authentication required")
		}
		return &authedClient{Client: c, Method: authNone}, nil
	}
	return nil, nil
}

// lookupClient loads a registered client; unknown is invalid_client.
func (t *tokenService) lookupClient(ctx context.Context, id string) (store.Client, error) {
	c, err := t.clients.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, ErrInvalidClient.WithDescription("unknown client")
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("load client: %w", err)
	}
	return c, nil
}

// authBasic is client_secret_basic (RFC 6749 §2.3.1): the id and secret are
// form-urlencoded before base64. Every failure is 401 invalid_client with a
// Basic challenge (RFC 6749 §5.2, docs/design/security.md NEG-11).
func (t *tokenService) authBasic(ctx context.Context, user, pass, bodyID string) (*authedClient, error) {
	fail := func(d string) error { return withChallenge(ErrInvalidClient.WithDescription(d), basicChallenge) }
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	if err1 != nil || err2 != nil || id == "" {
		return nil, fail("malformed Basic credentials")
	}
	if bodyID != "" && bodyID != id {
		return nil, fail("client_id does not match the authenticated client")
	}
	c, err := t.clients.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail("client authentication failed")
	}
	if err != nil {
		return nil, fmt.Errorf("load client: %w", err)
	}
	// Only symmetric clients hold secrets; an asymmetric or backend client
	// presenting one is refused (docs/design/security.md NEG-33;
	// SMART Backend Services authenticate with asymmetric keys only).
	if c.Kind != store.ClientSymmetric || c.SecretHash == "" || !CheckPassword(c.SecretHash, secret) {
		return nil, fail("client authentication failed")
	}
	return &authedClient{Client: c, Method: authSecretBase}, nil
}

// assertionClaims are the claims of a client assertion (RFC 7523 §3).
type assertionClaims struct {
	jwt.RegisteredClaims
}

// authAssertion is private_key_jwt (RFC 7523 §2.2, §3; SMART App Launch 2.2
// client-confidential-asymmetric#signature-verification;
// docs/design/security.md CLI-1 to CLI-4). Failures are 401 invalid_client,
// except a wrong client_assertion_type, which is 400 invalid_request
// (docs/design/security.md NEG-24).
func (t *tokenService) authAssertion(ctx context.Context, typ, raw, bodyID string) (*authedClient, error) {
	if typ != JWTBearerAssertionType {
		return nil, ErrInvalidRequest.WithDescription("client_assertion_type must be " + JWTBearerAssertionType)
	}
	if raw == "" {
		return nil, ErrInvalidRequest.WithDescription("client_assertion is required")
	}
	c, err := t.assertionClient(ctx, raw, bodyID)
	if err != nil {
		return nil, err
	}
	claims, err := t.verifyAssertion(ctx, c, raw)
	if err != nil {
		return nil, err
	}
	// jti: required and single use within the assertion lifetime (RFC 7523
	// §3 item 7; docs/design/security.md NEG-30, NEG-31). The replay entry
	// outlives exp by Skew.
	if claims.ID == "" {
		return nil, assertionFailed("jti is required")
	}
	ttl := claims.ExpiresAt.Sub(t.s.opts.Clock.Now()) + Skew
	fresh, err := t.s.opts.Ephemeral.Claim(ctx, JTIKey(c.ID, claims.ID), ttl)
	if err != nil {
		return nil, fmt.Errorf("jti replay set: %w", err)
	}
	if !fresh {
		return nil, assertionFailed("jti already used")
	}
	return &authedClient{Client: c, Method: authPrivateJWT}, nil
}

// assertionFailed is the invalid_client answer to a client assertion.
func assertionFailed(d string) error {
	return ErrInvalidClient.WithDescription("client assertion: " + d)
}

// assertionClient finds the client an assertion names. iss and sub name the
// client (RFC 7523 §3 items 1-2): they are read before the signature, to find
// the client's keys, and everything is verified afterwards.
func (t *tokenService) assertionClient(ctx context.Context, raw, bodyID string) (store.Client, error) {
	var unverified assertionClaims
	if err := checkCompactJWS(raw); err != nil {
		return store.Client{}, assertionFailed("malformed JWT")
	}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &unverified); err != nil {
		return store.Client{}, assertionFailed("malformed JWT")
	}
	iss := unverified.Issuer
	if iss == "" || iss != unverified.Subject {
		return store.Client{}, assertionFailed("iss and sub must both be the client_id")
	}
	if bodyID != "" && bodyID != iss {
		return store.Client{}, assertionFailed("client_id does not match the assertion issuer")
	}
	c, err := t.clients.GetClient(ctx, iss)
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, assertionFailed("unknown issuer")
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("load client: %w", err)
	}
	if c.Kind != store.ClientAsymmetric && c.Kind != store.ClientBackend {
		return store.Client{}, assertionFailed("client is not registered for private_key_jwt")
	}
	return c, nil
}

// verifyAssertion verifies the assertion of client c: signature by one of its
// keys with an allowed algorithm, iss and sub c, aud the token endpoint, exp
// present, not past and at most five minutes ahead (docs/design/security.md
// CLI-2, NEG-26 to NEG-29).
func (t *tokenService) verifyAssertion(ctx context.Context, c store.Client, raw string) (assertionClaims, error) {
	var claims assertionClaims
	var keyErr error
	tok, err := jwt.ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
		k, err := t.assertionKey(ctx, c, tok)
		keyErr = err
		return k, err
	},
		jwt.WithValidMethods(assertionAlgs),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(t.s.opts.TokenEndpoint()),
		jwt.WithIssuer(c.ID),
		jwt.WithSubject(c.ID),
		jwt.WithTimeFunc(t.s.opts.Clock.Now),
		jwt.WithLeeway(Skew),
	)
	switch {
	case keyErr != nil:
		var oe *OAuthError
		if errors.As(keyErr, &oe) {
			return claims, keyErr
		}
		return claims, assertionFailed("key resolution failed")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return claims, assertionFailed("aud must be the token endpoint URL")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing), errors.Is(err, jwt.ErrTokenExpired):
		return claims, assertionFailed("exp is missing or past")
	case err != nil || !tok.Valid:
		return claims, assertionFailed("invalid signature or claims")
	}
	if claims.ExpiresAt.After(t.s.opts.Clock.Now().Add(AssertionMaxLifetime + Skew)) {
		return claims, assertionFailed("exp is too far in the future")
	}
	return claims, nil
}

// assertionKey resolves the one key that may verify a client assertion
// (SMART App Launch 2.2 client-confidential-asymmetric#signature-verification,
// docs/design/security.md CLI-3): a jku header must equal the registered JWKS
// URL (never fetched otherwise); the key is chosen by kid with a kty matching
// alg.
func (t *tokenService) assertionKey(ctx context.Context, c store.Client, tok *jwt.Token) (any, error) {
	fail := func(d string) error { return ErrInvalidClient.WithDescription("client assertion: " + d) }
	alg, _ := tok.Header["alg"].(string)
	kid, _ := tok.Header["kid"].(string)
	if kid == "" {
		return nil, fail("kid header is required")
	}
	var jku string
	if v, ok := tok.Header["jku"]; ok {
		s, _ := v.(string)
		if s == "" || c.JWKSURL == "" || s != c.JWKSURL {
			return nil, fail("jku is not the registered JWKS URL")
		}
		jku = s
	}
	var sets [][]jose.JSONWebKey
	if jku == "" && len(c.JWKS) > 0 {
		keys, err := parseJWKS(c.JWKS)
		if err != nil {
			return nil, fail("registered JWKS is unusable")
		}
		sets = append(sets, keys)
	}
	if c.JWKSURL != "" {
		keys, err := t.jwks.get(ctx, c.JWKSURL, false)
		if err != nil {
			return nil, fail("JWKS URL could not be fetched")
		}
		sets = append(sets, keys)
	}
	for i, keys := range sets {
		k, n := pickKey(keys, kid, alg)
		if n == 0 && i == len(sets)-1 && c.JWKSURL != "" {
			// The client may have rotated: refetch its JWKS once.
			if keys, err := t.jwks.get(ctx, c.JWKSURL, true); err == nil {
				k, n = pickKey(keys, kid, alg)
			}
		}
		switch {
		case n == 1:
			return k, nil
		case n > 1:
			return nil, fail("kid matches more than one key")
		}
	}
	return nil, fail("no registered key matches kid and alg")
}

// pickKey returns the public key with kid whose type suits alg, and how many
// keys matched.
func pickKey(keys []jose.JSONWebKey, kid, alg string) (any, int) {
	var found any
	n := 0
	for _, k := range keys {
		if k.KeyID != kid || k.Use == "enc" {
			continue
		}
		var ok bool
		switch alg {
		case "RS384":
			var pk *rsa.PublicKey
			pk, ok = k.Key.(*rsa.PublicKey)
			ok = ok && pk.N.BitLen() >= 2048
		case "ES384":
			var pk *ecdsa.PublicKey
			pk, ok = k.Key.(*ecdsa.PublicKey)
			ok = ok && pk.Curve == elliptic.P384()
		}
		if ok && (k.Algorithm == "" || k.Algorithm == alg) {
			found = k.Key
			n++
		}
	}
	return found, n
}

// parseJWKS parses a JWK Set keeping only the public halves of the keys it
// understands; a key of an unknown type does not spoil the others.
func parseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, err
	}
	var out []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !k.Valid() {
			continue
		}
		out = append(out, k.Public())
	}
	return out, nil
}

// jwksCache fetches registered client JWKS URLs (docs/design/security.md
// CLI-3): GET with Accept: application/json and a 5 s timeout, cached as long
// as Cache-Control max-age allows but at most an hour; no-store/no-cache or no
// max-age means no caching. An unknown kid forces a refetch at most every
// jwksRefetchEvery.
type jwksCache struct {
	http  *http.Client
	clock store.Clock
	mu    sync.Mutex
	m     map[string]jwksEntry
}

type jwksEntry struct {
	keys    []jose.JSONWebKey
	expires time.Time
	fetched time.Time
}

// jwksRefetchEvery bounds the forced refetches an unknown kid may cause, so
// assertions with made-up kids cannot make the gateway hammer a client's
// JWKS host.
const jwksRefetchEvery = 30 * time.Second

func newJWKSCache(c *http.Client, clock store.Clock) *jwksCache {
	return &jwksCache{http: c, clock: clock, m: map[string]jwksEntry{}}
}

// get returns the keys at u, from the cache unless refresh is set.
func (j *jwksCache) get(ctx context.Context, u string, refresh bool) ([]jose.JSONWebKey, error) {
	now := j.clock.Now()
	j.mu.Lock()
	e, ok := j.m[u]
	j.mu.Unlock()
	if ok && ((!refresh && now.Before(e.expires)) || (refresh && now.Sub(e.fetched) < jwksRefetchEvery)) {
		return e.keys, nil
	}
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes))
	if err != nil {
		return nil, err
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, err
	}
	// Without max-age the keys are not reused (expires == now), but the fetch
	// time still throttles forced refetches.
	j.mu.Lock()
	j.m[u] = jwksEntry{keys: keys, expires: now.Add(min(cacheMaxAge(resp.Header.Get("Cache-Control")), jwksMaxAge)), fetched: now}
	j.mu.Unlock()
	return keys, nil
}

// cacheMaxAge is the max-age a Cache-Control header allows (0 when it
// forbids caching or says nothing).
func cacheMaxAge(h string) time.Duration {
	var age time.Duration
	for _, d := range strings.Split(h, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return 0
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.Atoi(strings.Trim(d[len("max-age="):], `"`))
			if err != nil || n < 0 {
				return 0
			}
			age = time.Duration(n) * time.Second
		}
	}
	return age
}

// basicCredentials builds an Authorization: Basic value (RFC 6749 §2.3.1).
func basicCredentials(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}
