package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
)

// TestBackendKeyAccessToken obtains a token with BackendKey from a real
// token endpoint, as `ketabridge token` does (docs/design/security.md CLI-2,
// CLI-5): generated, written as PEM and read back, registered through
// NewClient.
func TestBackendKeyAccessToken(t *testing.T) {
	env := newTDEnv(t)
	gen, err := NewBackendKey("bk-gen")
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := gen.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseBackendKey("bk-gen", pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Client("generated", "system/Patient.rs", env.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := env.st.PutClient(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	aud := env.srv.URL + "/auth/token"
	tests := []struct {
		name, scope, tokenURL, aud string
		ok                         bool
	}{
		{"registered scope", "system/Patient.rs", aud, aud, true},
		{"audience not the token endpoint", "system/Patient.rs", aud, env.srv.URL + "/fhir", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := k.AccessToken(t.Context(), http.DefaultClient, tc.tokenURL, tc.aud, tc.scope)
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), "invalid_client") {
					t.Fatalf("token %q, error %v; want invalid_client", tok, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			info, err := env.s.Tokens().Verify(t.Context(), tok)
			if err != nil || info.ClientID != "bk-gen" || info.Scope != tc.scope {
				t.Fatalf("verify: %+v %v", info, err)
			}
		})
	}
	t.Run("a key another client registered is refused", func(t *testing.T) {
		other := &BackendKey{ClientID: "bk", Key: gen.Key}
		if _, err := other.AccessToken(t.Context(), http.DefaultClient, aud, aud, "system/*.rs"); err == nil {
			t.Fatal("a key not in bk's JWKS obtained a token")
		}
	})
}

func TestParseBackendKey(t *testing.T) {
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, MinRSABits)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(p384)
	tests := []struct {
		name string
		pem  []byte
		alg  string // "" = refused
	}{
		{"PKCS#8 RSA", pkcs8(rsaKey), "RS384"},
		{"PKCS#1 RSA", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), "RS384"},
		{"PKCS#8 P-384", pkcs8(p384), "ES384"},
		{"SEC 1 P-384", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), "ES384"},
		{"P-256", pkcs8(p256), ""},
		{"not PEM", []byte("hello"), ""},
		{"not a key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseBackendKey("c", tc.pem)
			if tc.alg == "" {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, alg := k.alg(); alg != tc.alg {
				t.Errorf("alg %s, want %s", alg, tc.alg)
			}
			jwks, err := k.JWKS()
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckJWKS(jwks); err != nil {
				t.Errorf("the key's own JWKS is refused: %v", err)
			}
		})
	}
}
