package auth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ketabridge/ketabridge/store"
)

// AlgRS256 is the one algorithm the gateway signs access and id tokens with
// (docs/design/security.md OIDC-1, RS-2).
const AlgRS256 = "RS256"

// rsaBits is the signing key size.
const rsaBits = 2048

// keyReloadInterval throttles reloading the key list from the store when a
// token names a kid this process does not know (another replica rotated).
const keyReloadInterval = 5 * time.Second

// signingKey is one parsed key of the set.
type signingKey struct {
	kid     string
	priv    *rsa.PrivateKey
	created time.Time
	retired time.Time // zero while current
}

// verifies reports whether the key may still verify tokens at now: a retired
// key verifies until AccessTTL after its retirement, when every token it
// signed has expired.
func (k *signingKey) verifies(now time.Time) bool {
	return k.retired.IsZero() || now.Before(k.retired.Add(AccessTTL))
}

// KeySet holds the authorization server's RS256 signing keys, shared by every
// replica through a KeyStore. The newest non-retired key signs; retired
// keys keep verifying (and stay in the JWKS) until AccessTTL after their
// retirement. Safe for concurrent use.
type KeySet struct {
	st     KeyStore
	clock  store.Clock
	sealer *KeySealer // nil: keys stored in clear

	mu         sync.RWMutex
	keys       []*signingKey // sorted by created, newest first
	lastReload time.Time
}

// LoadKeySet loads the signing keys from the store, generating (and storing)
// an RSA-2048 key on first start, or when every stored key is retired.
func LoadKeySet(ctx context.Context, st KeyStore, clock store.Clock) (*KeySet, error) {
	return LoadSealedKeySet(ctx, st, clock, nil)
}

// LoadSealedKeySet is LoadKeySet with keys encrypted at rest by sealer: new
// and retired keys are stored sealed; stored keys are opened with it (keys
// stored in clear before a sealer was configured still load). A nil sealer
// stores keys in clear and refuses sealed ones with a clear error.
func LoadSealedKeySet(ctx context.Context, st KeyStore, clock store.Clock, sealer *KeySealer) (*KeySet, error) {
	if st == nil {
		return nil, errors.New("auth: LoadKeySet needs a store")
	}
	if clock == nil {
		clock = store.SystemClock{}
	}
	k := &KeySet{st: st, clock: clock, sealer: sealer}
	if err := k.reload(ctx); err != nil {
		return nil, err
	}
	if k.current() == nil {
		if _, err := k.generate(ctx); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// reload replaces the in-memory keys by the store's.
func (k *KeySet) reload(ctx context.Context) error {
	stored, err := k.st.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("auth: list signing keys: %w", err)
	}
	keys := make([]*signingKey, 0, len(stored))
	for _, sk := range stored {
		if sk.Alg != "" && sk.Alg != AlgRS256 {
			continue // not ours to use
		}
		pemBytes := sk.PrivatePEM
		if isSealed(pemBytes) {
			if k.sealer == nil {
				return fmt.Errorf("auth: signing key %s is encrypted: configure the key-encryption key (--key-encryption-key-file)", sk.KID)
			}
			if pemBytes, err = k.sealer.open(sk.KID, pemBytes); err != nil {
				return fmt.Errorf("auth: signing key %s: %w", sk.KID, err)
			}
		}
		priv, err := parsePrivatePEM(pemBytes)
		if err != nil {
			return fmt.Errorf("auth: signing key %s: %w", sk.KID, err)
		}
		kid, err := Thumbprint(&priv.PublicKey)
		if err != nil {
			return err
		}
		if sk.KID != "" && sk.KID != kid {
			return fmt.Errorf("auth: signing key %s: kid is not the key's RFC 7638 thumbprint", sk.KID)
		}
		keys = append(keys, &signingKey{kid: kid, priv: priv, created: sk.Created, retired: sk.Retired})
	}
	sortKeys(keys)
	k.mu.Lock()
	k.keys = keys
	k.lastReload = k.clock.Now()
	k.mu.Unlock()
	return nil
}

func sortKeys(keys []*signingKey) {
	slices.SortStableFunc(keys, func(a, b *signingKey) int { return b.created.Compare(a.created) })
}

// storedPEM is the form a PKCS#8 key is stored in: PEM, sealed when a
// sealer is configured.
func (k *KeySet) storedPEM(kid string, der []byte) ([]byte, error) {
	p := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if k.sealer == nil {
		return p, nil
	}
	sealed, err := k.sealer.seal(kid, p)
	if err != nil {
		return nil, fmt.Errorf("auth: seal signing key: %w", err)
	}
	return sealed, nil
}

// generate creates, stores and adds a new current key.
func (k *KeySet) generate(ctx context.Context) (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("auth: generate signing key: %w", err)
	}
	kid, err := Thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("auth: encode signing key: %w", err)
	}
	now := k.clock.Now().UTC()
	stored, err := k.storedPEM(kid, der)
	if err != nil {
		return nil, err
	}
	sk := store.SigningKey{KID: kid, Alg: AlgRS256, PrivatePEM: stored, Created: now}
	if err := k.st.PutKey(ctx, sk); err != nil {
		return nil, fmt.Errorf("auth: store signing key: %w", err)
	}
	key := &signingKey{kid: kid, priv: priv, created: now}
	k.mu.Lock()
	k.keys = append([]*signingKey{key}, k.keys...)
	sortKeys(k.keys)
	k.mu.Unlock()
	return key, nil
}

func parsePrivatePEM(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PKCS#8 PEM private key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	if rk.N.BitLen() < rsaBits {
		return nil, errors.New("RSA key shorter than 2048 bits")
	}
	return rk, nil
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA
// public key: the kid of the gateway's signing keys.
func Thumbprint(pub *rsa.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("auth: key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// current returns the signing key: the newest non-retired one.
func (k *KeySet) current() *signingKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, key := range k.keys {
		if key.retired.IsZero() {
			return key
		}
	}
	return nil
}

// signer returns the current key's kid and private key.
func (k *KeySet) signer() (string, *rsa.PrivateKey, error) {
	if k == nil {
		return "", nil, errors.New("auth: no signing keys configured")
	}
	key := k.current()
	if key == nil {
		return "", nil, errors.New("auth: no current signing key")
	}
	return key.kid, key.priv, nil
}

// publicKey returns the verification key for kid, if it still verifies.
// An unknown kid reloads the set from the store (at most every
// keyReloadInterval), so a key another replica generated is found.
func (k *KeySet) publicKey(ctx context.Context, kid string) (*rsa.PublicKey, bool) {
	if k == nil || kid == "" {
		return nil, false
	}
	if pub, ok := k.lookup(kid); ok {
		return pub, true
	}
	k.mu.RLock()
	stale := k.clock.Now().Sub(k.lastReload) >= keyReloadInterval
	k.mu.RUnlock()
	if !stale || k.reload(ctx) != nil {
		return nil, false
	}
	return k.lookup(kid)
}

func (k *KeySet) lookup(kid string) (*rsa.PublicKey, bool) {
	now := k.clock.Now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, key := range k.keys {
		if key.kid == kid {
			if !key.verifies(now) {
				return nil, false
			}
			return &key.priv.PublicKey, true
		}
	}
	return nil, false
}

// JWKS returns the JWK Set document {"keys":[...]} of the public keys that
// still verify: the current key and retired keys within AccessTTL of their
// retirement (RFC 7517 §5; docs/design/security.md DISC-9). Each key has kty,
// kid, use, alg, n, e.
func (k *KeySet) JWKS() []byte {
	now := k.clock.Now()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	k.mu.RLock()
	for _, key := range k.keys {
		if key.verifies(now) {
			set.Keys = append(set.Keys, jose.JSONWebKey{
				Key: &key.priv.PublicKey, KeyID: key.kid, Algorithm: AlgRS256, Use: "sig",
			})
		}
	}
	k.mu.RUnlock()
	b, err := json.Marshal(set)
	if err != nil {
		// Marshalling RSA public keys cannot fail; never serve a partial set.
		return []byte(`{"keys":[]}`)
	}
	return b
}

// Rotate makes a new key current and retires the previous current key(s),
// which keep verifying (and stay in the JWKS) until AccessTTL after now.
func (k *KeySet) Rotate(ctx context.Context) error {
	now := k.clock.Now().UTC()
	k.mu.RLock()
	var old []*signingKey
	for _, key := range k.keys {
		if key.retired.IsZero() {
			old = append(old, key)
		}
	}
	k.mu.RUnlock()
	if _, err := k.generate(ctx); err != nil {
		return err
	}
	for _, key := range old {
		der, err := x509.MarshalPKCS8PrivateKey(key.priv)
		if err != nil {
			return fmt.Errorf("auth: encode signing key: %w", err)
		}
		stored, err := k.storedPEM(key.kid, der)
		if err != nil {
			return err
		}
		if err := k.st.PutKey(ctx, store.SigningKey{
			KID: key.kid, Alg: AlgRS256, Created: key.created, Retired: now, PrivatePEM: stored,
		}); err != nil {
			return fmt.Errorf("auth: retire signing key: %w", err)
		}
		k.mu.Lock()
		key.retired = now
		k.mu.Unlock()
	}
	return nil
}
