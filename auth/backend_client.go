package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/store"
)

// BackendKey is the client side of SMART Backend Services
// (backend-services#obtain-access-token): a backend client's id and signing
// key. `ketabridge token`, the demo, the conformance export and the
// benchmark obtain their tokens with it, through the same token endpoint as
// any other client.
type BackendKey struct {
	ClientID string
	Key      crypto.Signer
	// KID is the key id registered in the client's JWK Set; empty is the
	// RFC 7638 thumbprint of the public key.
	KID string
}

// NewBackendKey generates an RSA key for a backend client.
func NewBackendKey(clientID string) (*BackendKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, MinRSABits)
	if err != nil {
		return nil, err
	}
	return &BackendKey{ClientID: clientID, Key: k}, nil
}

// ParseBackendKey reads a backend client's private key from PEM: PKCS#8 or
// PKCS#1 RSA, or EC P-384 (the curves of the accepted algorithms,
// docs/design/security.md CLI-2).
func ParseBackendKey(clientID string, pemBytes []byte) (*BackendKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var key crypto.Signer
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey:
			key = k
		case *ecdsa.PrivateKey:
			key = k
		default:
			return nil, errors.New("unsupported key type")
		}
	} else if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		key = k
	} else {
		return nil, errors.New("not a PKCS#8, PKCS#1 or EC private key")
	}
	if ec, ok := key.(*ecdsa.PrivateKey); ok && ec.Curve != elliptic.P384() {
		return nil, errors.New("EC keys must be P-384 (ES384)")
	}
	return &BackendKey{ClientID: clientID, Key: key}, nil
}

// alg is the client-assertion algorithm for the key (docs/design/security.md
// CLI-2).
func (b *BackendKey) alg() (jwt.SigningMethod, string) {
	if _, ok := b.Key.(*ecdsa.PrivateKey); ok {
		return jwt.SigningMethodES384, "ES384"
	}
	return jwt.SigningMethodRS384, "RS384"
}

// jwk returns the public JWK with its kid.
func (b *BackendKey) jwk() (jose.JSONWebKey, error) {
	_, alg := b.alg()
	j := jose.JSONWebKey{Key: b.Key.Public(), Algorithm: alg, Use: "sig", KeyID: b.KID}
	if j.KeyID == "" {
		tp, err := j.Thumbprint(crypto.SHA256)
		if err != nil {
			return j, err
		}
		j.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	}
	return j, nil
}

// JWKS returns the public JWK Set to register for the client.
func (b *BackendKey) JWKS() ([]byte, error) {
	j, err := b.jwk()
	if err != nil {
		return nil, err
	}
	return json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{j}})
}

// PrivatePEM returns the PKCS#8 PEM of the private key.
func (b *BackendKey) PrivatePEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(b.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Client returns the backend client registration for the key, with the
// given name and scopes, created at now.
func (b *BackendKey) Client(name, scope string, now time.Time) (store.Client, error) {
	jwks, err := b.JWKS()
	if err != nil {
		return store.Client{}, err
	}
	c, _, err := NewClient(ClientRegistration{ID: b.ClientID, Name: name, Kind: store.ClientBackend,
		Scopes: strings.Fields(scope), JWKS: jwks}, now)
	return c, err
}

// Assertion builds a client assertion JWT (RFC 7523 §3): iss = sub = client
// id, aud = the token endpoint as the server advertises it, a fresh jti, exp
// within 5 minutes.
func (b *BackendKey) Assertion(aud string) (string, error) {
	j, err := b.jwk()
	if err != nil {
		return "", err
	}
	method, _ := b.alg()
	t := jwt.NewWithClaims(method, jwt.RegisteredClaims{
		Issuer:    b.ClientID,
		Subject:   b.ClientID,
		Audience:  jwt.ClaimStrings{aud},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(4 * time.Minute)),
		ID:        uuid.NewString(),
	})
	t.Header["kid"] = j.KeyID
	return t.SignedString(b.Key)
}

// AccessToken runs client_credentials (RFC 6749 §4.4) with a private_key_jwt
// assertion for scope: it POSTs to tokenURL an assertion whose audience is
// aud (the token endpoint the server advertises, {base-url}/auth/token;
// tokenURL may differ, e.g. behind a proxy) and returns the access token.
func (b *BackendKey) AccessToken(ctx context.Context, c *http.Client, tokenURL, aud, scope string) (string, error) {
	as, err := b.Assertion(aud)
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {scope},
		"client_assertion_type": {JWTBearerAssertionType},
		"client_assertion":      {as},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", fmt.Errorf("token endpoint answered %d with no JSON", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		return "", fmt.Errorf("token endpoint answered %d: %s: %s", resp.StatusCode, out.Error, out.Description)
	}
	return out.AccessToken, nil
}
