package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// Lifetimes of what the authorization server issues.
const (
	// CodeTTL is the authorization code lifetime (docs/design/security.md
	// AZ-7: about a minute).
	CodeTTL = 60 * time.Second
	// AccessTTL is the access-token lifetime for user launches
	// (TOK-5: <= 1 h).
	AccessTTL = time.Hour
	// BackendAccessTTL is the client_credentials token lifetime
	// (CLI-5: <= 300 s).
	BackendAccessTTL = 5 * time.Minute
	// LaunchTTL is how long an EHR launch id can be redeemed at /authorize.
	LaunchTTL = 5 * time.Minute
	// RefreshTTL bounds a grant's refresh tokens.
	RefreshTTL = 90 * 24 * time.Hour
	// AssertionMaxLifetime is the longest client assertion accepted
	// (CLI-2: exp <= now + 300 s, plus Skew).
	AssertionMaxLifetime = 5 * time.Minute
	// Skew is the clock skew tolerated on client assertions.
	Skew = 60 * time.Second
)

// PatientSummary is what the patient picker shows a clinician.
type PatientSummary struct {
	ID        string // FHIR Patient id
	Name      string
	BirthDate string
}

// PatientDirectory looks patients up for the picker and checks launch
// contexts. Implemented over the FHIR store in cmd wiring.
type PatientDirectory interface {
	// FindPatients returns up to limit patients whose name starts with
	// query (all when query is empty), ordered by name.
	FindPatients(ctx context.Context, query string, limit int) ([]PatientSummary, error)
	// PatientExists reports whether the FHIR Patient id exists.
	PatientExists(ctx context.Context, id string) (bool, error)
}

// Options configure the authorization server.
type Options struct {
	// BaseURL is the gateway's public URL (e.g. http://localhost:8080).
	// The issuer is BaseURL+"/auth"; the FHIR base (token audience) is
	// BaseURL+"/fhir".
	BaseURL string
	// Clients, Users and Grants are the durable auth state (a
	// store.AuthStore serves all three).
	Clients   Clients
	Users     Users
	Grants    Grants
	Ephemeral store.Ephemeral
	Keys      *KeySet
	Patients  PatientDirectory
	Clock     store.Clock
	Logger    *slog.Logger
	// SecureCookies sets the Secure attribute on cookies (true under TLS).
	SecureCookies bool
	// PartnerLogins binds logins (by id) to the partner clinic
	// Organization (by id) they act for (docs/design/security.md PRIV-18).
	PartnerLogins map[string]string
	// Records reads the clinic's stored Organizations (a partner login's
	// binding is checked against them at every token issue).
	Records ResourceReader
	// Disclosed lists the patients an organization acting as role may see
	// now (the consent decision, fhir.ReadDisclosure): a partner login's
	// pickers offer only these.
	Disclosed func(ctx context.Context, role Role, org string) ([]string, error)
}

// Server is the SMART authorization server: discovery, /auth/authorize with
// its login and consent pages, EHR launch, /auth/token, introspection,
// revocation, JWKS.
type Server struct {
	opts   Options
	tokens *Tokens
	cors   *CORS
}

// New builds the authorization server.
func New(opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = store.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts, tokens: NewTokens(opts.Keys, opts.Issuer(), opts.FHIRBase(), opts.Clock),
		cors: NewCORS(opts.Clients, opts.Clock)}
}

// CORS returns the gateway's CORS policy over the registered clients, which
// the server applies to its own routes; the FHIR API applies it too.
func (s *Server) CORS() *CORS { return s.cors }

// Issuer is the OIDC issuer (and access-token iss).
func (o Options) Issuer() string { return o.BaseURL + "/auth" }

// FHIRBase is the audience of access tokens (docs/design/security.md AZ-4,
// RS-2).
func (o Options) FHIRBase() string { return o.BaseURL + "/fhir" }

// TokenEndpoint is the exact URL client assertions must name as aud (CLI-2).
func (o Options) TokenEndpoint() string { return o.Issuer() + "/token" }

// Tokens returns the token minter/verifier the server signs with.
func (s *Server) Tokens() *Tokens { return s.tokens }

// Register mounts the authorization server's routes on e: /auth/* and the
// discovery documents (/fhir/.well-known/smart-configuration and
// /auth/.well-known/openid-configuration). mw wrap every route, the first
// outermost, before the route's own middleware (the gateway passes its one
// access log).
func (s *Server) Register(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	r := routes{e: e, g: e.Group("/auth"), mw: mw}
	s.mountAuthorize(r)
	s.mountToken(r)
}

// routes mounts handlers with the middleware Register was given.
type routes struct {
	e  *echo.Echo
	g  *echo.Group
	mw []echo.MiddlewareFunc
}

// auth mounts h at /auth+path with the common middleware, then own.
func (r routes) auth(method, path string, h echo.HandlerFunc, own ...echo.MiddlewareFunc) {
	r.g.Add(method, path, h, append(slices.Clip(r.mw), own...)...)
}

// root mounts h at path (outside /auth) with the common middleware, then own.
func (r routes) root(method, path string, h echo.HandlerFunc, own ...echo.MiddlewareFunc) {
	r.e.Add(method, path, h, append(slices.Clip(r.mw), own...)...)
}

// AuthCode is what an authorization code is bound to (docs/design/security.md
// AZ-7, TOK-1): stored in Ephemeral under CodeKey(code) for CodeTTL, taken
// exactly once.
type AuthCode struct {
	ClientID      string    `json:"client_id"`
	RedirectURI   string    `json:"redirect_uri"`
	CodeChallenge string    `json:"code_challenge"` // S256 only
	Scope         string    `json:"scope"`          // granted, space-separated
	UserID        string    `json:"user_id"`
	Patient       string    `json:"patient,omitempty"`
	Encounter     string    `json:"encounter,omitempty"`
	NeedBanner    bool      `json:"need_patient_banner,omitempty"`
	EHRLaunch     bool      `json:"ehr_launch,omitempty"`
	Nonce         string    `json:"nonce,omitempty"`
	AuthTime      time.Time `json:"auth_time"`
	// GrantID is pre-allocated so that a second redemption can revoke what
	// the first one issued (RFC 6749 §4.1.2, docs/design/security.md NEG-13).
	GrantID string `json:"grant_id"`
}

// LaunchContext is what an EHR launch id stands for (docs/design/security.md
// AZ-8, NEG-7): stored under LaunchKey(id) for LaunchTTL, bound to one client.
type LaunchContext struct {
	ClientID  string `json:"client_id"`
	UserID    string `json:"user_id"`
	Patient   string `json:"patient"`
	Encounter string `json:"encounter,omitempty"`
}

// CodeKey is the Ephemeral key of an authorization code (a hash: the code
// itself never becomes a key name).
func CodeKey(code string) string { return "code:" + Hash(code) }

// UsedCodeKey marks a redeemed code, remembering its grant for reuse
// detection until the code would have expired anyway.
func UsedCodeKey(code string) string { return "code-used:" + Hash(code) }

// LaunchKey is the Ephemeral key of an EHR launch id.
func LaunchKey(id string) string { return "launch:" + Hash(id) }

// JTIKey is the Ephemeral key of a client assertion's jti (per issuer).
func JTIKey(iss, jti string) string { return "jti:" + Hash(iss+"\x00"+jti) }

// Hash is the hex SHA-256 of a secret value (codes, refresh tokens, launch
// ids): stored and compared in place of the value itself.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
