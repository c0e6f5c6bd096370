package auth

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ketabridge/ketabridge/store"
)

// The registration rules: what the authorization server accepts as a client
// or a login, whoever registers it (the CLI, the demo, a test).

// Registration limits.
const (
	// MinRSABits is the smallest RSA key accepted in a client's JWK Set.
	MinRSABits = 2048
	// MinSecretLen is the shortest client secret accepted.
	MinSecretLen = 32
	// MinPasswordLen is the shortest password accepted (NIST SP 800-63B
	// §5.1.1.2: at least 8 characters).
	MinPasswordLen = 8
	// maxSecretLen bounds secrets and passwords (Argon2id hashes whatever it
	// is given).
	maxSecretLen = 4096
)

// FieldError is a registration refused because of one field. Field names
// the setting as the CLI flags do ("id", "kind", "redirect-uri",
// "launch-url", "origin", "scope", "jwks", "jwks-url", "secret", "role",
// "fhir-user", "password").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Msg }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// appScopes are the non-resource scopes a user-facing client may be
// registered for (SMART App Launch 2.2 scopes-and-launch-context).
var appScopes = map[string]bool{
	"openid": true, "fhirUser": true, "profile": true, "launch": true, "launch/patient": true,
	"launch/encounter": true, "offline_access": true, "online_access": true,
}

// ClientRegistration is a client an administrator asks to register.
type ClientRegistration struct {
	ID, Name     string
	Kind         store.ClientKind
	RedirectURIs []string
	LaunchURL    string
	Scopes       []string
	Origins      []string
	// JWKS is an inline public JWK Set; JWKSURL where the client publishes
	// it. Asymmetric and backend clients have one or the other.
	JWKS    []byte
	JWKSURL string
	// Secret is a symmetric client's secret; empty generates one.
	Secret string
	// Organization is the id of the Organization the client acts for and
	// Role what it is to the clinic (docs/access.md). The caller checks
	// the Organization exists and has the role's type (CheckOrganization)
	// before registering.
	Organization string
	Role         Role
}

// NewClient checks r and returns the client to store, created at now. For a
// symmetric client registered without a secret it generates one and returns
// it: the caller shows it once; only its hash is stored.
func NewClient(r ClientRegistration, now time.Time) (c store.Client, generated string, err error) {
	c = store.Client{
		ID: r.ID, Name: strings.TrimSpace(r.Name), Kind: r.Kind, RedirectURIs: r.RedirectURIs,
		LaunchURL: r.LaunchURL, Scopes: r.Scopes, Origins: r.Origins, JWKS: r.JWKS, JWKSURL: r.JWKSURL,
		Organization: r.Organization, Role: string(r.Role), Created: now.UTC(),
	}
	if c.Role == "" {
		c.Role = string(RoleEHR)
	}
	if err := ValidateClient(c); err != nil {
		return store.Client{}, "", err
	}
	secret := r.Secret
	switch {
	case c.Kind != store.ClientSymmetric && secret != "":
		return store.Client{}, "", fieldErr("secret", "is for symmetric clients only")
	case c.Kind != store.ClientSymmetric:
		return c, "", nil
	case secret == "":
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return store.Client{}, "", err
		}
		secret = base64.RawURLEncoding.EncodeToString(b)
		generated = secret
	case len(secret) < MinSecretLen || len(secret) > maxSecretLen:
		return store.Client{}, "", fieldErr("secret", "must have at least %d characters (at most %d)", MinSecretLen, maxSecretLen)
	}
	if c.SecretHash, err = HashPassword(secret); err != nil {
		return store.Client{}, "", err
	}
	return c, generated, nil
}

// ValidateClient checks a client registration. User-facing clients (public,
// symmetric, asymmetric) need a redirect URI and take launch/openid scopes
// and patient/ or user/ resource scopes; backend clients (SMART Backend
// Services) take system/ scopes only. Asymmetric and backend clients need a
// JWK Set, inline or by URL (docs/design/security.md CLI-1); the others must
// not have one. URLs are https except on loopback hosts (RFC 8252 §8.3).
func ValidateClient(c store.Client) error {
	if !ValidID(c.ID) {
		return fieldErr("id", "must be 1 to 64 printable characters without spaces")
	}
	backend := c.Kind == store.ClientBackend
	switch c.Kind {
	case store.ClientPublic, store.ClientSymmetric, store.ClientAsymmetric, store.ClientBackend:
	default:
		return fieldErr("kind", "must be public, symmetric, asymmetric or backend")
	}
	if err := checkClientURLs(c, backend); err != nil {
		return err
	}
	if len(c.Scopes) == 0 {
		return fieldErr("scope", "is required (space-separated scopes)")
	}
	if err := checkBinding(c); err != nil {
		return err
	}
	for _, s := range c.Scopes {
		if err := checkClientScope(s, backend); err != nil {
			return err
		}
	}
	needKeys := c.Kind == store.ClientAsymmetric || backend
	hasKeys := len(c.JWKS) > 0 || c.JWKSURL != ""
	switch {
	case needKeys && !hasKeys:
		return fieldErr("jwks", "or a JWK Set URL is required for a %s client", c.Kind)
	case !needKeys && hasKeys:
		return fieldErr("jwks", "and JWK Set URLs are for asymmetric and backend clients only")
	}
	if c.JWKSURL != "" {
		if err := CheckWebURL(c.JWKSURL); err != nil {
			return fieldErr("jwks-url", "%v", err)
		}
	}
	if len(c.JWKS) > 0 {
		if err := CheckJWKS(c.JWKS); err != nil {
			return fieldErr("jwks", "%v", err)
		}
	}
	return nil
}

// checkClientURLs checks the redirect URIs, launch URL and origins.
func checkClientURLs(c store.Client, backend bool) error {
	if !backend && len(c.RedirectURIs) == 0 {
		return fieldErr("redirect-uri", "is required for a %s client", c.Kind)
	}
	if backend && (len(c.RedirectURIs) > 0 || c.LaunchURL != "") {
		return fieldErr("redirect-uri", "and launch URL: a backend client has neither")
	}
	for _, r := range c.RedirectURIs {
		if err := CheckWebURL(r); err != nil {
			return fieldErr("redirect-uri", "%q %v", r, err)
		}
	}
	if c.LaunchURL != "" {
		if err := CheckWebURL(c.LaunchURL); err != nil {
			return fieldErr("launch-url", "%v", err)
		}
	}
	for _, o := range c.Origins {
		if err := checkOrigin(o); err != nil {
			return fieldErr("origin", "%q %v", o, err)
		}
	}
	return nil
}

// CheckWebURL checks an absolute https URL (http only for loopback hosts),
// without credentials or fragment (RFC 6749 §3.1.2: a redirection URI is
// absolute and has no fragment).
func CheckWebURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return errors.New("must be an absolute URL")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("must not have a fragment")
	case u.User != nil:
		return errors.New("must not contain credentials")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && IsLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errors.New("must use https (http is allowed for loopback hosts only)")
	default:
		return errors.New("must be an http(s) URL")
	}
}

// checkOrigin checks a web origin: scheme://host[:port] only (RFC 6454),
// https unless loopback.
func checkOrigin(o string) error {
	if err := CheckWebURL(o); err != nil {
		return err
	}
	u, _ := url.Parse(o)
	if u.Path != "" || u.RawQuery != "" || u.ForceQuery {
		return errors.New("must be an origin: scheme://host[:port] without path or query")
	}
	return nil
}

// checkClientScope checks one registered scope.
func checkClientScope(s string, backend bool) error {
	if !IsResourceScope(s) {
		if backend {
			return fieldErr("scope", "%q: a backend client takes system/ resource scopes only", s)
		}
		if !appScopes[s] {
			return fieldErr("scope", "%q: unknown scope", s)
		}
		return nil
	}
	sc, err := ParseScope(s)
	if err != nil {
		return fieldErr("scope", "%v", err)
	}
	if backend != (sc.Context == ContextSystem) {
		if backend {
			return fieldErr("scope", "%q: a backend client takes system/ scopes only", s)
		}
		return fieldErr("scope", "%q: system/ scopes are for backend clients", s)
	}
	return nil
}

// CheckJWKS checks a client's JWK Set (RFC 7517 §5): at least one key, each
// a public RSA (at least MinRSABits) or EC key with a kid.
func CheckJWKS(b []byte) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return errors.New("not a JWK Set: " + err.Error())
	}
	if len(set.Keys) == 0 {
		return errors.New("the JWK Set has no keys")
	}
	for i, k := range set.Keys {
		if k.KeyID == "" {
			return fmt.Errorf("key %d has no kid", i)
		}
		if !k.IsPublic() {
			return fmt.Errorf("key %s is a private key: register the public keys only", k.KeyID)
		}
		if !k.Valid() {
			return fmt.Errorf("key %s is not a valid key", k.KeyID)
		}
		switch pk := k.Key.(type) {
		case *rsa.PublicKey:
			if pk.N.BitLen() < MinRSABits {
				return fmt.Errorf("key %s: RSA keys must have at least %d bits", k.KeyID, MinRSABits)
			}
		case *ecdsa.PublicKey:
		default:
			return fmt.Errorf("key %s: only RSA and EC keys are accepted", k.KeyID)
		}
	}
	return nil
}

// UserRegistration is a login an administrator asks to register.
type UserRegistration struct {
	ID, Name string
	Role     store.UserRole
	// FHIRUser is the user's FHIR resource, "Practitioner/ID" or
	// "Patient/ID".
	FHIRUser string
	Password string
}

// NewUser checks r and returns the user to store, created at now, with the
// password's Argon2id hash.
func NewUser(r UserRegistration, now time.Time) (store.User, error) {
	u := store.User{ID: r.ID, Name: strings.TrimSpace(r.Name), Role: r.Role, FHIRUser: r.FHIRUser, Created: now.UTC()}
	if err := ValidateUser(u); err != nil {
		return store.User{}, err
	}
	if n := len([]rune(r.Password)); n < MinPasswordLen || len(r.Password) > maxSecretLen {
		return store.User{}, fieldErr("password", "must have at least %d characters", MinPasswordLen)
	}
	var err error
	if u.PasswordHash, err = HashPassword(r.Password); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// fhirIDPattern is the FHIR id datatype (datatypes.html#id).
var fhirIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// ValidateUser checks the id, role and fhirUser of a user: a clinician is a
// Practitioner, a patient a Patient, an admin either or none.
func ValidateUser(u store.User) error {
	if !ValidID(u.ID) {
		return fieldErr("id", "must be 1 to 64 printable characters without spaces")
	}
	var want []string
	switch u.Role {
	case store.RoleClinician:
		want = []string{"Practitioner"}
	case store.RolePatient:
		want = []string{"Patient"}
	case store.RoleAdmin:
		if u.FHIRUser == "" {
			return nil
		}
		want = []string{"Practitioner", "Patient"}
	default:
		return fieldErr("role", "must be clinician, patient or admin")
	}
	typ, fid, ok := strings.Cut(u.FHIRUser, "/")
	if !ok || !fhirIDPattern.MatchString(fid) || !slices.Contains(want, typ) {
		return fieldErr("fhir-user", "must be %s/ID for a %s (ID a FHIR id)", strings.Join(want, "/ID or "), u.Role)
	}
	return nil
}

// ValidID checks a login or client id: 1 to 64 printable characters without
// spaces.
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// checkBinding checks a client's organization and role
// (docs/design/security.md PRIV-11): the role is ehr, payer or partner; a
// payer or partner acts for an organization and is a backend client (an
// outside organization's system, with system/ scopes: its view, not a
// user's login, limits what it sees); the organization is a FHIR id.
func checkBinding(c store.Client) error {
	role, ok := ParseRole(c.Role)
	if !ok {
		return fieldErr("role", "must be ehr, payer or partner")
	}
	if c.Organization != "" && !ValidID(c.Organization) {
		return fieldErr("organization", "must be an Organization id")
	}
	if role == RoleEHR {
		return nil
	}
	if c.Organization == "" {
		return fieldErr("organization", "is required for the %s role", role)
	}
	if c.Kind != store.ClientBackend {
		return fieldErr("role", "%s is for backend clients only", role)
	}
	return nil
}
