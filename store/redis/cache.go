package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ketabridge/ketabridge/store"
)

// Cache is the Redis store.Cache shared by replicas. Under the Ephemeral's
// prefix, a stamp is the counter "cache:s:{name}" (no expiry) and an entry
// the string "cache:v:{key}:{sha1 of the stamp values}" (expiring after its
// ttl), so a Bump makes every older entry unreachable at once and the old
// entries simply expire.
//
// Stamps never expire: Redis must not evict them either, or a stamp would
// restart at 0 and entries filled long ago at 0 could be found again. Run the
// cache's Redis with maxmemory-policy noeviction or a volatile-* policy
// (which evicts only keys with an expiry: entries, never stamps).
//
// Lookup's script reads an entry whose name it computes, so it is not Redis
// Cluster safe; a replicated deployment uses one Redis shared by every replica
// (docs/design/architecture.md, deployments).
type Cache struct {
	c      *goredis.Client
	stamps string // prefix of stamp counters
	vals   string // prefix of entries

	// Stamps' batches, shared with the Ephemeral's GetBatched (batch.go).
	reads *reads
	// w publishes Bumps and mirrors the stamps (watch.go).
	w *watch
}

var (
	_ store.Cache     = (*Cache)(nil)
	_ store.NearCache = (*Cache)(nil)
	_ store.Watched   = (*Cache)(nil)
)

// Cache returns the read cache over e's client and key prefix. It needs no
// closing of its own: closing e closes it.
func (e *Ephemeral) Cache() *Cache {
	return &Cache{c: e.c, stamps: e.prefix + "cache:s:", vals: e.prefix + "cache:v:", reads: e.reads, w: e.w}
}

// lookupScript reads the stamps (KEYS, a missing one as "0"), joins their
// values with "." into at, and reads the entry ARGV[1]..sha1(at): one round
// trip, and atomic, as Redis runs a script alone. It returns {at, entry or
// nil}.
var lookupScript = goredis.NewScript(`
local at = {}
for i, k in ipairs(KEYS) do
  at[i] = redis.call('GET', k) or '0'
end
local s = table.concat(at, '.')
return {s, redis.call('GET', ARGV[1] .. redis.sha1hex(s))}
`)

// wrapCache names the failed operation and marks the error
// store.ErrUnavailable, as wrap does for the Ephemeral: no cache error is a
// "not found", so every one means Redis could not answer.
func wrapCache(op string, err error) error {
	return fmt.Errorf("redis cache: %s: %w: %w", op, store.ErrUnavailable, err)
}

// Lookup implements store.Cache in one script call.
func (c *Cache) Lookup(ctx context.Context, key string, stamps []string) (at string, val []byte, hit bool, err error) {
	keys := make([]string, len(stamps))
	for i, s := range stamps {
		keys[i] = c.stamps + s
	}
	res, err := lookupScript.Run(ctx, c.c, keys, c.vals+key+":").Slice()
	if err != nil {
		return "", nil, false, wrapCache("lookup", err)
	}
	if len(res) < 1 {
		return "", nil, false, wrapCache("lookup", fmt.Errorf("script returned %d values, want 2", len(res)))
	}
	at, ok := res[0].(string)
	if !ok {
		return "", nil, false, wrapCache("lookup", fmt.Errorf("script returned at of type %T", res[0]))
	}
	if len(res) < 2 || res[1] == nil {
		return at, nil, false, nil
	}
	s, ok := res[1].(string)
	if !ok {
		return "", nil, false, wrapCache("lookup", fmt.Errorf("script returned an entry of type %T", res[1]))
	}
	return at, []byte(s), true, nil
}

// entry is the name of key's entry at the stamp values at. The values are
// hashed so that a key read under many stamps keeps a short name.
func (c *Cache) entry(key, at string) string {
	sum := sha1.Sum([]byte(at))
	return c.vals + key + ":" + hex.EncodeToString(sum[:])
}

// Fill stores val with SET PX. A non-positive ttl stores nothing.
func (c *Cache) Fill(ctx context.Context, key, at string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	if val == nil {
		val = []byte{}
	}
	if err := c.c.Set(ctx, c.entry(key, at), val, time.Duration(ms(ttl))*time.Millisecond).Err(); err != nil {
		return wrapCache("fill", err)
	}
	return nil
}

// Bump increments every stamp, publishes their new values to the replicas'
// watches, and returns once Redis has applied the increments and every
// replica that may answer from its mirror of the stamps has applied them
// too, or lost its lease (watch.go; docs/design/security.md CACHE-3). So any
// Lookup, Stamps or Known that starts afterwards, on any replica, sees them.
func (c *Cache) Bump(ctx context.Context, stamps []string) error {
	if len(stamps) == 0 {
		return nil
	}
	if err := c.w.bump(ctx, stamps); err != nil {
		return wrapCache("bump", err)
	}
	return nil
}

var _ store.Preloaded = (*Cache)(nil)

// Preload implements store.Preloaded: every session of the watch loads the
// stamps' values (MGETs sent after it began, merged with the messages since)
// into the mirror (watch.go loadStamps; docs/design/security.md CACHE-4).
// Only the first call's names count; at most three quarters of the
// mirror's bound.
func (c *Cache) Preload(names []string) { c.w.setPreload(names) }

// Known implements store.Watched: the stamps' values from this replica's
// mirror, without a round trip, while its watch can vouch for them.
func (c *Cache) Known(stamps []string) (string, bool) { return c.w.known(stamps) }

// KnownAt reports whether this replica's mirror vouches that the stamps'
// current values are at (Known would return at, true), without encoding
// them: the near cache's hit check (store/cached, CACHE-5).
func (c *Cache) KnownAt(stamps []string, at string) bool { return c.w.knownAt(stamps, at) }
