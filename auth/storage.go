package auth

import (
	"context"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// The storage the authorization server uses, declared here by its consumers,
// each as small as it needs (one interface per flow, as ory/fosite declares
// its storage per grant). store.AuthStore is the backend contract that
// store/storetest checks; it implements every one of them (asserted below),
// but no consumer asks for all of it.

// Clients reads the client registry: the authorization endpoint, the EHR
// launcher, client authentication, the refresh flow and the CORS policy.
type Clients interface {
	GetClient(ctx context.Context, id string) (store.Client, error)
	ListClients(ctx context.Context) ([]store.Client, error)
}

// Users reads the user registry: login sessions and the code and refresh
// flows (id_token, fhirUser).
type Users interface {
	GetUser(ctx context.Context, id string) (store.User, error)
}

// Grants keeps the grants the token endpoint issues (refresh-token families):
// what the code, refresh and client_credentials flows, introspection and
// revocation use between them.
type Grants interface {
	CreateGrant(ctx context.Context, g store.Grant) error
	GetGrant(ctx context.Context, id string) (store.Grant, error)
	FindGrantByRefresh(ctx context.Context, h string) (store.Grant, error)
	FindGrantByAnyRefresh(ctx context.Context, h string) (store.Grant, error)
	RotateRefresh(ctx context.Context, grantID, oldHash, newHash string) error
}

// KeyStore keeps the signing keys every replica shares (KeySet).
type KeyStore interface {
	PutKey(ctx context.Context, k store.SigningKey) error
	ListKeys(ctx context.Context) ([]store.SigningKey, error)
}

// RevocationStore is the durable revocation set (NewRevocations).
type RevocationStore interface {
	RevokeGrant(ctx context.Context, id string, at time.Time) error
	RevokedSince(ctx context.Context, t time.Time) ([]string, error)
}

// SharedRevocationStore is RevocationStore plus the grant lookup
// NewSharedRevocations falls back to when the shared Ephemeral cannot answer.
type SharedRevocationStore interface {
	RevocationStore
	GetGrant(ctx context.Context, id string) (store.Grant, error)
}

// clientGetter looks a client up: client authentication, the authorization
// endpoint, the refresh flow.
type clientGetter interface {
	GetClient(ctx context.Context, id string) (store.Client, error)
}

// grantCreator stores a new grant: the code and client_credentials flows.
type grantCreator interface {
	CreateGrant(ctx context.Context, g store.Grant) error
}

// refreshFinder finds the grant of a refresh token: revocation.
type refreshFinder interface {
	FindGrantByRefresh(ctx context.Context, h string) (store.Grant, error)
}

// refreshGrants rotates refresh tokens: the refresh flow.
type refreshGrants interface {
	refreshFinder
	FindGrantByAnyRefresh(ctx context.Context, h string) (store.Grant, error)
	RotateRefresh(ctx context.Context, grantID, oldHash, newHash string) error
}

// grantReader reads grants: introspection.
type grantReader interface {
	refreshFinder
	GetGrant(ctx context.Context, id string) (store.Grant, error)
}

// The backend contract implements every consumer's interface.
var (
	_ Clients               = store.AuthStore(nil)
	_ Users                 = store.AuthStore(nil)
	_ Grants                = store.AuthStore(nil)
	_ KeyStore              = store.AuthStore(nil)
	_ SharedRevocationStore = store.AuthStore(nil)
)
