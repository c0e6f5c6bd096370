package store

import (
	"context"
	"errors"
	"time"
)

// Errors of the auth state.
var (
	// ErrExists is returned when creating something whose id is taken.
	ErrExists = errors.New("store: already exists")
	// ErrStale is returned by RotateRefresh when the presented refresh token
	// is not the grant's current one: a reuse of a rotated token.
	ErrStale = errors.New("store: stale refresh token")
)

// ClientKind is how a SMART client authenticates (SMART App Launch 2.2
// client-public, client-confidential-symmetric, client-confidential-asymmetric).
type ClientKind string

// Client kinds. A backend (SMART Backend Services) client is asymmetric and
// uses client_credentials.
const (
	ClientPublic     ClientKind = "public"
	ClientSymmetric  ClientKind = "symmetric"
	ClientAsymmetric ClientKind = "asymmetric"
	ClientBackend    ClientKind = "backend"
)

// Client is a registered SMART client application.
type Client struct {
	ID   string
	Name string
	Kind ClientKind
	// SecretHash is the Argon2id/bcrypt hash of a symmetric client's secret.
	SecretHash string
	// RedirectURIs must match the authorize request's redirect_uri exactly.
	RedirectURIs []string
	// LaunchURL is the app's EHR launch URL.
	LaunchURL string
	// Scopes are the scopes the client may be granted (resource scopes are
	// ceilings: a request is narrowed to what they allow).
	Scopes []string
	// Origins are the browser origins allowed by CORS for this client.
	Origins []string
	// JWKS is an asymmetric client's inline JWK Set; JWKSURL its registered
	// JWK Set URL (either or both).
	JWKS    []byte
	JWKSURL string
	// Organization is the FHIR Organization id of the organization the
	// client acts for (empty when none), and Role what it is to the clinic:
	// "ehr" (also when empty), "payer" or "partner" (auth.Role). What the
	// client may see follows from both (docs/design/security.md PRIV-3).
	Organization string
	Role         string
	Created      time.Time
}

// UserRole is what a login is.
type UserRole string

// User roles.
const (
	RoleClinician UserRole = "clinician"
	RolePatient   UserRole = "patient"
	RoleAdmin     UserRole = "admin"
)

// User is a person who logs in at the authorization endpoint.
type User struct {
	// ID is the login name.
	ID           string
	Name         string
	Role         UserRole
	PasswordHash string
	// FHIRUser is the user's FHIR resource as "Practitioner/{id}" or
	// "Patient/{id}" (the id_token fhirUser claim is its absolute URL).
	FHIRUser string
	Disabled bool
	Created  time.Time
}

// Grant is one authorization: what a user (or a backend client) allowed a
// client, with the launch context, from which access and refresh tokens are
// issued. Revoking it stops all of them.
type Grant struct {
	ID        string
	ClientID  string
	UserID    string // empty for client_credentials
	Scope     string // granted scopes, space-separated
	Patient   string // launch context
	Encounter string
	// RefreshHash is the SHA-256 (hex) of the current refresh token; empty
	// when the grant has none.
	RefreshHash string
	Created     time.Time
	// Expires bounds the grant (and so its refresh tokens).
	Expires time.Time
	// Revoked is set when the grant was revoked (zero when active).
	Revoked time.Time
}

// AuthStore is the durable auth state: the client and user registries and the
// grants (refresh-token families and revocations). Backends implement it
// beside Store and pass storetest.RunAuth.
type AuthStore interface {
	PutClient(ctx context.Context, c Client) error // create or replace
	GetClient(ctx context.Context, id string) (Client, error)
	ListClients(ctx context.Context) ([]Client, error)
	// DeleteClient removes a client and revokes its active grants atomically.
	DeleteClient(ctx context.Context, id string) error

	PutUser(ctx context.Context, u User) error // create or replace
	GetUser(ctx context.Context, id string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// DeleteUser removes a user and revokes the user's active grants atomically.
	DeleteUser(ctx context.Context, id string) error

	// CreateGrant stores a new grant (ErrExists if the id is taken).
	CreateGrant(ctx context.Context, g Grant) error
	GetGrant(ctx context.Context, id string) (Grant, error)
	// RotateRefresh replaces the grant's refresh hash oldHash with newHash
	// atomically. If oldHash is not the current hash it returns ErrStale and
	// changes nothing (the caller then revokes the grant: reuse detection).
	RotateRefresh(ctx context.Context, grantID, oldHash, newHash string) error
	// FindGrantByRefresh returns the grant whose current refresh hash is h,
	// or ErrNotFound; FindGrantByAnyRefresh also finds grants by refresh
	// hashes they rotated away from (for reuse detection).
	FindGrantByRefresh(ctx context.Context, h string) (Grant, error)
	FindGrantByAnyRefresh(ctx context.Context, h string) (Grant, error)
	// RevokeGrant marks the grant revoked at the given time (idempotent).
	RevokeGrant(ctx context.Context, id string, at time.Time) error
	// RevokedSince lists the ids of grants revoked at or after t (the
	// resource server's revocation set is loaded and refreshed from it).
	RevokedSince(ctx context.Context, t time.Time) ([]string, error)

	// Keys: the signing keys, PEM-encoded private keys with their kid,
	// creation and retirement times, shared by every replica.
	PutKey(ctx context.Context, k SigningKey) error
	ListKeys(ctx context.Context) ([]SigningKey, error)
}

// SigningKey is one of the authorization server's signing keys.
type SigningKey struct {
	KID string
	Alg string // RS256 (id_token and access tokens)
	// PrivatePEM is the PKCS#8 private key.
	PrivatePEM []byte
	Created    time.Time
	// Retired is when the key stopped signing (zero while current); its
	// public half stays in the JWKS until every token it signed has expired.
	Retired time.Time
}

// Ephemeral is short-lived shared auth state: authorization codes, launch
// contexts, login sessions, the client-assertion jti replay set, login
// throttling. In-memory in the embedded mode; Redis for replicas. Keys are
// opaque ids or hashes, never PHI.
type Ephemeral interface {
	// Put stores val under key for ttl, replacing any value.
	Put(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Get returns the value, or ErrNotFound when absent or expired.
	Get(ctx context.Context, key string) ([]byte, error)
	// Take returns and deletes the value atomically (single use), or
	// ErrNotFound: of two concurrent Takes exactly one succeeds.
	Take(ctx context.Context, key string) ([]byte, error)
	// Claim stores key for ttl if absent and reports whether this call
	// stored it (a replay set: false means seen before).
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Incr increments a counter that expires ttl after its first increment
	// and returns the new value (throttling).
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// Delete removes a key (no error when absent).
	Delete(ctx context.Context, key string) error
}

// BatchGetter is optionally implemented by an Ephemeral shared between
// processes (Redis): a Get whose concurrent calls may share one round trip.
// The value is still read after the call began, so a Put that returned
// before the call, on any process, is seen; what is saved is the round trip
// per call (the revocation check of every request, auth/revocation.go).
type BatchGetter interface {
	// GetBatched is Get, read after the call began, possibly in one round
	// trip with concurrent calls.
	GetBatched(ctx context.Context, key string) ([]byte, error)
}

// Mirrored is optionally implemented by an Ephemeral shared between
// processes (Redis) whose processes each keep a mirror of a set of marked
// keys (the revoked grants), so that a membership check needs no round trip
// (docs/design/security.md INT-4).
type Mirrored interface {
	// Mark puts key (with a value, as Put does, readable by Get) for ttl and
	// adds it to the mirrored set. It returns only once every process that
	// may answer Marked from its mirror has applied it, or can no longer
	// answer from it (its lease expired): so a Marked that begins after Mark
	// returned, on any process, reports the key marked, or declines.
	Mark(ctx context.Context, key string, ttl time.Duration) error
	// Marked reports whether key is marked, from this process's mirror,
	// without a round trip; ok is false when the mirror cannot vouch for
	// its answer (not yet loaded, its subscription down or its lease
	// lapsed): then the caller must read the key (Get).
	Marked(key string) (marked, ok bool)
}
