package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ketabridge/ketabridge/store"
)

var (
	regKeysOnce sync.Once
	regEC       *ecdsa.PrivateKey
	regRSA      *rsa.PrivateKey
	regWeak     *rsa.PrivateKey
)

// regJWKS returns JWK Sets for the registration tests: good (EC and RSA
// public keys) and the faulty ones by name.
func regJWKS(t *testing.T) map[string][]byte {
	t.Helper()
	regKeysOnce.Do(func() {
		regEC, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		regRSA, _ = rsa.GenerateKey(rand.Reader, MinRSABits)
		regWeak, _ = rsa.GenerateKey(rand.Reader, 1024)
	})
	set := func(keys ...jose.JSONWebKey) []byte {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return map[string][]byte{
		"good": set(jose.JSONWebKey{Key: &regEC.PublicKey, KeyID: "ec-1", Algorithm: "ES384", Use: "sig"},
			jose.JSONWebKey{Key: &regRSA.PublicKey, KeyID: "rsa-1", Algorithm: "RS384", Use: "sig"}),
		"private": set(jose.JSONWebKey{Key: regEC, KeyID: "ec-1", Algorithm: "ES384"}),
		"no kid":  set(jose.JSONWebKey{Key: &regEC.PublicKey, Algorithm: "ES384"}),
		"weak":    set(jose.JSONWebKey{Key: &regWeak.PublicKey, KeyID: "w", Algorithm: "RS384"}),
		"oct":     []byte(`{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0c2VjcmV0c2VjcmV0"}]}`),
		"empty":   []byte(`{"keys":[]}`),
		"garbage": []byte(`{"keys":[{"kty":"RSA"`),
	}
}

func TestNewClient(t *testing.T) {
	jwks := regJWKS(t)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	public := func(edit func(*ClientRegistration)) ClientRegistration {
		r := ClientRegistration{ID: "pub", Kind: store.ClientPublic, RedirectURIs: []string{"https://app.example/cb"},
			Scopes: strings.Fields("launch openid fhirUser patient/*.rs")}
		if edit != nil {
			edit(&r)
		}
		return r
	}
	backend := func(edit func(*ClientRegistration)) ClientRegistration {
		r := ClientRegistration{ID: "ehr", Kind: store.ClientBackend, Scopes: []string{"system/*.rs"}, JWKS: jwks["good"]}
		if edit != nil {
			edit(&r)
		}
		return r
	}
	const secret = "a-very-long-client-secret-of-40-characters"
	tests := []struct {
		name  string
		reg   ClientRegistration
		field string // the FieldError's field; "" = accepted
		msg   string // substring of the message
	}{
		{"public", public(nil), "", ""},
		{"public with loopback http redirect and origin", public(func(r *ClientRegistration) {
			r.RedirectURIs = append(r.RedirectURIs, "http://127.0.0.1:9000/cb", "http://localhost:8765/cb")
			r.Origins = []string{"https://app.example", "http://localhost:8765"}
			r.LaunchURL = "https://app.example/launch"
		}), "", ""},
		{"backend with inline JWKS", backend(nil), "", ""},
		{"backend with JWKS URL", backend(func(r *ClientRegistration) { r.JWKS, r.JWKSURL = nil, "https://e.example/jwks" }), "", ""},
		{"asymmetric", ClientRegistration{ID: "a", Kind: store.ClientAsymmetric, RedirectURIs: []string{"https://a.example/cb"},
			Scopes: []string{"launch/patient", "patient/Patient.rs"}, JWKSURL: "https://a.example/jwks"}, "", ""},
		{"symmetric with its secret", public(func(r *ClientRegistration) { r.Kind, r.Secret = store.ClientSymmetric, secret }), "", ""},
		{"empty id", public(func(r *ClientRegistration) { r.ID = "" }), "id", "1 to 64"},
		{"id with space", public(func(r *ClientRegistration) { r.ID = "a b" }), "id", "without spaces"},
		{"bad kind", public(func(r *ClientRegistration) { r.Kind = "confidential" }), "kind", "public, symmetric"},
		{"missing redirect", public(func(r *ClientRegistration) { r.RedirectURIs = nil }), "redirect-uri", "is required"},
		{"http redirect", public(func(r *ClientRegistration) { r.RedirectURIs = []string{"http://app.example/cb"} }), "redirect-uri", "https"},
		{"relative redirect", public(func(r *ClientRegistration) { r.RedirectURIs = []string{"/cb"} }), "redirect-uri", "absolute"},
		{"redirect with fragment", public(func(r *ClientRegistration) { r.RedirectURIs = []string{"https://app.example/cb#x"} }), "redirect-uri", "fragment"},
		{"redirect with credentials", public(func(r *ClientRegistration) { r.RedirectURIs = []string{"https://u:p@app.example/cb"} }), "redirect-uri", "credentials"},
		{"custom scheme", public(func(r *ClientRegistration) { r.RedirectURIs = []string{"myapp:/cb"} }), "redirect-uri", "absolute"},
		{"ftp redirect", public(func(r *ClientRegistration) { r.RedirectURIs = []string{"ftp://app.example/cb"} }), "redirect-uri", "http(s)"},
		{"origin with path", public(func(r *ClientRegistration) { r.Origins = []string{"https://app.example/x"} }), "origin", "scheme://host"},
		{"http launch url", public(func(r *ClientRegistration) { r.LaunchURL = "http://app.example/launch" }), "launch-url", "https"},
		{"v2 scope out of order", public(func(r *ClientRegistration) { r.Scopes = []string{"patient/*.dus"} }), "scope", "cruds"},
		{"unknown scope", public(func(r *ClientRegistration) { r.Scopes = []string{"launch", "admin"} }), "scope", "unknown scope"},
		{"system scope for an app", public(func(r *ClientRegistration) { r.Scopes = []string{"system/*.rs"} }), "scope", "backend clients"},
		{"no scope", public(func(r *ClientRegistration) { r.Scopes = nil }), "scope", "is required"},
		{"JWKS for a public client", public(func(r *ClientRegistration) { r.JWKS = jwks["good"] }), "jwks", "asymmetric and backend clients only"},
		{"backend without keys", backend(func(r *ClientRegistration) { r.JWKS = nil }), "jwks", "is required for a backend client"},
		{"backend patient scope", backend(func(r *ClientRegistration) { r.Scopes = []string{"patient/*.rs"} }), "scope", "system/ scopes only"},
		{"backend launch scope", backend(func(r *ClientRegistration) { r.Scopes = []string{"launch", "system/*.rs"} }), "scope", "system/ resource scopes only"},
		{"backend with redirect", backend(func(r *ClientRegistration) { r.RedirectURIs = []string{"https://e.example/cb"} }), "redirect-uri", "backend client has neither"},
		{"backend with launch url", backend(func(r *ClientRegistration) { r.LaunchURL = "https://e.example/launch" }), "redirect-uri", "backend client has neither"},
		{"private JWK", backend(func(r *ClientRegistration) { r.JWKS = jwks["private"] }), "jwks", "private key"},
		{"JWK without kid", backend(func(r *ClientRegistration) { r.JWKS = jwks["no kid"] }), "jwks", "no kid"},
		{"RSA under 2048 bits", backend(func(r *ClientRegistration) { r.JWKS = jwks["weak"] }), "jwks", "2048"},
		{"symmetric JWK", backend(func(r *ClientRegistration) { r.JWKS = jwks["oct"] }), "jwks", "private key"},
		{"empty JWK Set", backend(func(r *ClientRegistration) { r.JWKS = jwks["empty"] }), "jwks", "no keys"},
		{"not a JWK Set", backend(func(r *ClientRegistration) { r.JWKS = jwks["garbage"] }), "jwks", "not a JWK Set"},
		{"http JWKS URL", backend(func(r *ClientRegistration) { r.JWKS, r.JWKSURL = nil, "http://e.example/jwks" }), "jwks-url", "https"},
		{"short secret", public(func(r *ClientRegistration) { r.Kind, r.Secret = store.ClientSymmetric, "tooshort" }), "secret", "32"},
		{"secret for a public client", public(func(r *ClientRegistration) { r.Secret = secret }), "secret", "symmetric clients only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, generated, err := NewClient(tc.reg, now)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.ID != tc.reg.ID || !c.Created.Equal(now) || generated != "" {
					t.Errorf("client %+v, generated %q", c, generated)
				}
				if (c.Kind == store.ClientSymmetric) != (c.SecretHash != "") {
					t.Errorf("secret hash %q for a %s client", c.SecretHash, c.Kind)
				}
				if err := ValidateClient(c); err != nil {
					t.Errorf("ValidateClient refuses what NewClient made: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("error %v, want field %s with %q", err, tc.field, tc.msg)
			}
		})
	}

	t.Run("a generated secret verifies against the stored hash", func(t *testing.T) {
		c, generated, err := NewClient(public(func(r *ClientRegistration) { r.Kind = store.ClientSymmetric }), now)
		if err != nil {
			t.Fatal(err)
		}
		if len(generated) < MinSecretLen || !CheckPassword(c.SecretHash, generated) || strings.Contains(c.SecretHash, generated) {
			t.Errorf("generated %d characters, hash %q", len(generated), c.SecretHash)
		}
	})
	t.Run("a given secret is stored as its hash", func(t *testing.T) {
		c, generated, err := NewClient(public(func(r *ClientRegistration) { r.Kind, r.Secret = store.ClientSymmetric, secret }), now)
		if err != nil || generated != "" || !CheckPassword(c.SecretHash, secret) {
			t.Errorf("%v, generated %q", err, generated)
		}
	})
}

func TestNewUser(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	const pw = "first-Passw0rd"
	tests := []struct {
		name  string
		reg   UserRegistration
		field string
	}{
		{"clinician", UserRegistration{ID: "dr.lee", Role: store.RoleClinician, FHIRUser: "Practitioner/pr-1", Password: pw}, ""},
		{"patient", UserRegistration{ID: "pat1", Role: store.RolePatient, FHIRUser: "Patient/p-1", Password: pw}, ""},
		{"admin without fhir user", UserRegistration{ID: "root", Role: store.RoleAdmin, Password: pw}, ""},
		{"admin as practitioner", UserRegistration{ID: "root", Role: store.RoleAdmin, FHIRUser: "Practitioner/x", Password: pw}, ""},
		{"bad role", UserRegistration{ID: "x", Role: "nurse", FHIRUser: "Practitioner/a", Password: pw}, "role"},
		{"clinician as patient", UserRegistration{ID: "x", Role: store.RoleClinician, FHIRUser: "Patient/a", Password: pw}, "fhir-user"},
		{"patient without fhir user", UserRegistration{ID: "x", Role: store.RolePatient, Password: pw}, "fhir-user"},
		{"fhir user id invalid", UserRegistration{ID: "x", Role: store.RolePatient, FHIRUser: "Patient/a b", Password: pw}, "fhir-user"},
		{"admin as organization", UserRegistration{ID: "x", Role: store.RoleAdmin, FHIRUser: "Organization/o", Password: pw}, "fhir-user"},
		{"missing id", UserRegistration{Role: store.RoleAdmin, Password: pw}, "id"},
		{"id with space", UserRegistration{ID: "a b", Role: store.RoleAdmin, Password: pw}, "id"},
		{"short password", UserRegistration{ID: "x", Role: store.RoleAdmin, Password: "short"}, "password"},
		{"seven runes", UserRegistration{ID: "x", Role: store.RoleAdmin, Password: "ééééééé"}, "password"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := NewUser(tc.reg, now)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if u.ID != tc.reg.ID || u.Role != tc.reg.Role || !u.Created.Equal(now) || !CheckPassword(u.PasswordHash, pw) {
					t.Errorf("user %+v", u)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("error %v, want field %s", err, tc.field)
			}
		})
	}
}
