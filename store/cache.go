package store

import (
	"context"
	"time"
)

// Cache is the read cache replicas share (Redis), or its in-memory twin in
// the embedded mode. It is a version-stamp cache: an entry is stored under
// its key together with the values its stamps had when the entry's data was
// read from the store, and is found only while every stamp still has that
// value. Bumping a stamp after a write therefore makes every entry that may
// hold older data unreachable at once, on every replica, with no list of
// entries to delete and no message to miss.
//
// Keys and stamp names are opaque (hashes, bucket numbers): never PHI.
// Values may hold resource bodies and live only as long as their ttl.
type Cache interface {
	// Lookup reads the current values of stamps (a missing stamp reads as
	// "0") and the entry stored for key at exactly those values, atomically
	// and in one round trip. at is the stamps' current values, encoded; pass
	// it to Fill after reading the data from the store on a miss. val is
	// the caller's to keep and never changes afterwards (the caller's
	// decoded answer may share its bytes).
	Lookup(ctx context.Context, key string, stamps []string) (at string, val []byte, hit bool, err error)
	// Fill stores val for key at the stamp values at (from a Lookup made
	// BEFORE the data was read from the store), for ttl. A Fill racing with
	// a Bump stores an entry nobody will find: never a stale hit.
	// Fill does not keep val, nor any slice of it, after it returns (the
	// caller reuses the buffer: PERF-ST-11).
	Fill(ctx context.Context, key, at string, val []byte, ttl time.Duration) error
	// Bump increments each stamp. It returns only after the increments are
	// visible to every Lookup, on every replica.
	Bump(ctx context.Context, stamps []string) error
}

// TypeVersioner is implemented by a read-cached store (store/cached): it
// tells whether anything of some types may have changed, so that a value
// derived from searches of those types alone can be reused until then.
type TypeVersioner interface {
	// TypeVersions returns a token of the current versions of types: after
	// an Apply writing a resource of one of them has returned, on any
	// replica, every later call returns a different token. ok is false when
	// that cannot be promised (the cache cannot be reached, or is dirty
	// after a failed invalidation): the caller must not reuse anything then.
	// Read the token BEFORE the data a value is derived from, as Cache.Fill
	// requires of its stamps.
	TypeVersions(ctx context.Context, types []string) (token string, ok bool)
}

// NearCache is optionally implemented by a Cache shared between processes
// (Redis), for an in-process near cache in front of it (store/cached): a
// replica keeps decoded answers with the stamp values they were filled at,
// and asks the shared cache only whether those values are still current.
type NearCache interface {
	// Stamps returns the current values of stamps, encoded as Lookup's at,
	// read from the shared cache after the call began (so every Bump that
	// returned before it, on any replica, is seen). An implementation may
	// answer concurrent calls from one round trip.
	Stamps(ctx context.Context, stamps []string) (at string, err error)
}

// Watched is optionally implemented by a NearCache whose replicas learn of
// every Bump by message (Redis pub/sub), for near hits without a round trip
// (docs/design/security.md CACHE-3).
type Watched interface {
	// Known returns the current values of stamps, encoded as Stamps does,
	// without asking the shared cache, or ok false when it cannot vouch
	// that they are current: it may answer only while no Bump can have
	// returned, on any replica, without this replica having applied it
	// (its subscription confirmed and unbroken, its lease held, every
	// value learned within that session). Then every Bump that returned
	// before the call is seen, as with Stamps.
	Known(stamps []string) (at string, ok bool)
}

// Preloaded is optionally implemented by a Watched cache that can load
// stamps into its mirror ahead of use (docs/design/security.md CACHE-4).
type Preloaded interface {
	// Preload has the mirror load names in every session, so that Known
	// answers for them without a stamp read having taught it first.
	Preload(names []string)
}
