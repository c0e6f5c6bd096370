package main

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
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

// cmdToken is `ketabridge token`: a SMART Backend Services client
// (backend-services#obtain-access-token). It signs a client assertion with
// the client's private key and exchanges it at the token endpoint for an
// access token through client_credentials, then prints the token.
func cmdToken(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("token")
	clientID := cf.fs.String("client", "", "registered backend client id")
	keyFile := cf.fs.String("key", "", "PEM private key (PKCS#8 or PKCS#1 RSA, or EC P-384) of the client")
	kid := cf.fs.String("kid", "", "key id registered in the client's JWKS (default: the key's RFC 7638 thumbprint)")
	scope := cf.fs.String("scope", "system/*.rs", "scopes to request")
	tokenURL := cf.fs.String("token-url", "", "where to POST (default: {base-url}/auth/token); the assertion's aud is always {base-url}/auth/token, the URL the server advertises, so set --base-url to the server's")
	cfg, err := cf.parse(args, e.getenv)
	if err != nil {
		return err
	}
	if *clientID == "" || *keyFile == "" {
		return &usageError{msg: "token: --client and --key are required"}
	}
	pemBytes, err := os.ReadFile(*keyFile)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("token: cannot read --key: %v", err)}
	}
	key, err := parsePrivateKey(pemBytes)
	if err != nil {
		return &exitError{code: 1, msg: "token: --key: " + err.Error()}
	}
	if *tokenURL == "" {
		*tokenURL = cfg.BaseURL + "/auth/token"
	}
	bk := backendKey{clientID: *clientID, key: key, kid: *kid, aud: cfg.BaseURL + "/auth/token"}
	tok, err := bk.accessToken(ctx, &http.Client{Timeout: 30 * time.Second}, *tokenURL, *scope)
	if err != nil {
		return &exitError{code: 1, msg: "token: " + err.Error()}
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

// backendKey is a backend client's identity: its id and signing key.
type backendKey struct {
	clientID string
	key      crypto.Signer
	kid      string // empty: the RFC 7638 thumbprint of the public key
	aud      string // the token endpoint URL as the server advertises it
}

// newBackendKey generates an RSA key for a backend client.
func newBackendKey(clientID, aud string) (*backendKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &backendKey{clientID: clientID, key: k, aud: aud}, nil
}

// alg is the client-assertion algorithm for the key (docs/design/security.md
// CLI-2).
func (b *backendKey) alg() (jwt.SigningMethod, string) {
	if _, ok := b.key.(*ecdsa.PrivateKey); ok {
		return jwt.SigningMethodES384, "ES384"
	}
	return jwt.SigningMethodRS384, "RS384"
}

// jwk returns the public JWK and its kid.
func (b *backendKey) jwk() (jose.JSONWebKey, error) {
	_, alg := b.alg()
	j := jose.JSONWebKey{Key: b.key.Public(), Algorithm: alg, Use: "sig"}
	kid := b.kid
	if kid == "" {
		tp, err := j.Thumbprint(crypto.SHA256)
		if err != nil {
			return j, err
		}
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	j.KeyID = kid
	return j, nil
}

// jwks returns the public JWK Set to register for the client.
func (b *backendKey) jwks() ([]byte, error) {
	j, err := b.jwk()
	if err != nil {
		return nil, err
	}
	return json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{j}})
}

// privatePEM returns the PKCS#8 PEM of the private key.
func (b *backendKey) privatePEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(b.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// assertion builds a client assertion JWT (RFC 7523 §3): iss = sub = client
// id, aud = token endpoint, a fresh jti, exp within 5 minutes.
func (b *backendKey) assertion() (string, error) {
	j, err := b.jwk()
	if err != nil {
		return "", err
	}
	method, _ := b.alg()
	now := time.Now()
	t := jwt.NewWithClaims(method, jwt.RegisteredClaims{
		Issuer:    b.clientID,
		Subject:   b.clientID,
		Audience:  jwt.ClaimStrings{b.aud},
		ExpiresAt: jwt.NewNumericDate(now.Add(4 * time.Minute)),
		ID:        uuid.NewString(),
	})
	t.Header["kid"] = j.KeyID
	return t.SignedString(b.key)
}

// accessToken runs client_credentials at tokenURL and returns the access token.
func (b *backendKey) accessToken(ctx context.Context, c *http.Client, tokenURL, scope string) (string, error) {
	as, err := b.assertion()
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {scope},
		"client_assertion_type": {auth.JWTBearerAssertionType},
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

// registerBackend registers (or replaces) a backend client for key with the
// given scope policy.
func registerBackend(ctx context.Context, st store.AuthStore, b *backendKey, name, scope string) error {
	jwks, err := b.jwks()
	if err != nil {
		return err
	}
	return st.PutClient(ctx, store.Client{
		ID: b.clientID, Name: name, Kind: store.ClientBackend,
		Scopes: strings.Fields(scope), JWKS: jwks, Created: time.Now().UTC(),
	})
}

// parsePrivateKey reads an RSA or EC private key from PEM.
func parsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			if k.Curve != elliptic.P384() {
				return nil, fmt.Errorf("EC keys must be P-384 (ES384)")
			}
			return k, nil
		}
		return nil, fmt.Errorf("unsupported key type")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		if k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("EC keys must be P-384 (ES384)")
		}
		return k, nil
	}
	return nil, fmt.Errorf("not a PKCS#8, PKCS#1 or EC private key")
}

// toolToken registers the in-process tools' backend client with a fresh key
// (replacing any earlier one) and obtains an access token for scope through
// client_credentials at the server running at serverURL - the same flow any
// backend client uses; the tools get no shortcut.
func (a *app) toolToken(ctx context.Context, c *http.Client, serverURL, scope string) (string, error) {
	as, ok := a.store.(store.AuthStore)
	if !ok {
		return "", fmt.Errorf("the store does not keep auth state")
	}
	b, err := newBackendKey("ketabridge-tools", a.cfg.BaseURL+"/auth/token")
	if err != nil {
		return "", err
	}
	if err := registerBackend(ctx, as, b, "KetaBridge in-process tools", scope); err != nil {
		return "", fmt.Errorf("registering the tools client: %w", err)
	}
	return b.accessToken(ctx, c, serverURL+"/auth/token", scope)
}
