// Package redis is the Redis backend of store.Ephemeral, shared by replicas:
// authorization codes, launch contexts, login sessions, the
// client-assertion jti replay set and login throttling live in one Redis so
// every replica sees the same state. Expiry is Redis's own (PX, wall clock).
//
// Every command runs under short dial/read/write timeouts, so a down or
// unreachable Redis fails fast; every error other than "not found" is
// returned (wrapped) so callers fail closed. Error texts never carry keys or
// values.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ketabridge/ketabridge/store"
)

// Timeouts of every connection and command.
const (
	dialTimeout = 500 * time.Millisecond
	ioTimeout   = 500 * time.Millisecond
	poolTimeout = time.Second
)

// Ephemeral is the Redis store.Ephemeral. Safe for concurrent use; create it
// with Open and release it with Close.
type Ephemeral struct {
	c      *goredis.Client
	prefix string
	// reads batches GetBatched and the read cache's Stamps (batch.go).
	reads *reads
	// w is the read cache's invalidation watch (watch.go).
	w *watch
}

var (
	_ store.Ephemeral   = (*Ephemeral)(nil)
	_ store.BatchGetter = (*Ephemeral)(nil)
)

// incrScript increments a counter and, on its first increment, sets its
// expiry, atomically: the window runs from the first increment (a
// non-positive ttl deletes the key again, so the counter never lives).
// ARGV[1] is the ttl in milliseconds.
var incrScript = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

// Open connects to the Redis at url (redis://[user:pass@]host:port/db or
// rediss://..., see redis.ParseURL), checks it answers a PING, and returns
// an Ephemeral whose keys all begin with prefix.
func Open(ctx context.Context, url, prefix string) (*Ephemeral, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis ephemeral: parse url: %w", err)
	}
	e := newEphemeral(opt, prefix)
	if err := e.c.Ping(ctx).Err(); err != nil {
		e.c.Close()
		return nil, fmt.Errorf("redis ephemeral: ping: %w", err)
	}
	return e, nil
}

// Connect is Open without the PING: the gateway starts while Redis is down
// (commands fail fast with store.ErrUnavailable, /readyz reports it) and the
// client reconnects on its own when Redis is back.
func Connect(url, prefix string) (*Ephemeral, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		// The parse error may echo the URL (and a password): no detail.
		return nil, errors.New("redis ephemeral: invalid redis url")
	}
	return newEphemeral(opt, prefix), nil
}

// Ping checks Redis answers.
func (e *Ephemeral) Ping(ctx context.Context) error {
	if err := e.c.Ping(ctx).Err(); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// newEphemeral applies the fail-fast timeouts to opt and makes the client
// (without contacting the server).
func newEphemeral(opt *goredis.Options, prefix string) *Ephemeral {
	opt.DialTimeout = dialTimeout
	opt.ReadTimeout = ioTimeout
	opt.WriteTimeout = ioTimeout
	opt.PoolTimeout = poolTimeout
	opt.MaxRetries = 1               // one retry of a failed command
	opt.DialerRetries = 1            // no dial retries (the default is 5, 100 ms apart)
	opt.ContextTimeoutEnabled = true // honour callers' deadlines too
	// RESP2: the gateway uses no client-side caching (its one subscription,
	// the read cache's watch, reads its messages itself), so RESP3's push
	// notifications carry nothing for it, yet with
	// RESP3 go-redis peeks for them around every reply (about 3 % of the
	// process's CPU in a profile of cached reads by id, where every request
	// makes Redis round trips). Every reply the gateway reads (strings,
	// integers, nil, script arrays) is the same in both protocols.
	opt.Protocol = 2
	c := goredis.NewClient(opt)
	return &Ephemeral{c: c, prefix: prefix, reads: newReads(c), w: newWatch(c, prefix)}
}

// Close stops the read cache's watch (giving its lease up) and closes the
// connection pool.
func (e *Ephemeral) Close() error {
	e.w.close()
	return e.c.Close()
}

func (e *Ephemeral) key(k string) string { return e.prefix + k }

// ms is ttl in whole milliseconds, rounded up so a positive ttl never
// becomes 0 (PX needs at least 1).
func ms(ttl time.Duration) int64 {
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}

// wrap names the failed operation and marks the error store.ErrUnavailable:
// every error but "not found" (handled by the callers) means Redis could not
// answer (down, unreachable, timed out, loading, read-only), so callers
// fail closed with a 503, never a 500.
func wrap(op string, err error) error {
	return fmt.Errorf("redis ephemeral: %s: %w: %w", op, store.ErrUnavailable, err)
}

// Put stores val under key for ttl, replacing any value (SET PX). A
// non-positive ttl stores a value that is already expired: the key is
// removed.
func (e *Ephemeral) Put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return e.Delete(ctx, key)
	}
	if val == nil {
		val = []byte{}
	}
	if err := e.c.SetArgs(ctx, e.key(key), val, goredis.SetArgs{TTL: time.Duration(ms(ttl)) * time.Millisecond}).Err(); err != nil {
		return wrap("put", err)
	}
	return nil
}

// Get returns the value, or store.ErrNotFound when absent or expired.
func (e *Ephemeral) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := e.c.Get(ctx, e.key(key)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get", err)
	}
	return b, nil
}

// GetBatched implements store.BatchGetter: Get, read after the call began,
// from an MGET shared with concurrent GetBatched and Stamps calls (batch.go).
func (e *Ephemeral) GetBatched(ctx context.Context, key string) ([]byte, error) {
	vals, err := e.reads.mget(ctx, []string{e.key(key)})
	if err != nil {
		return nil, wrap("get", err)
	}
	switch v := vals[0].(type) {
	case nil:
		return nil, store.ErrNotFound
	case string:
		return []byte(v), nil
	}
	return nil, wrap("get", fmt.Errorf("unexpected value type %T", vals[0]))
}

var _ store.Mirrored = (*Ephemeral)(nil)

// Mark implements store.Mirrored: the key's value and its membership of the
// marked set are written, and published to every replica's watch, in one
// script; it returns once each replica holding a lease has acknowledged it
// or lost its lease (watch.go; docs/design/security.md INT-4). A key holding
// a space cannot be published and is refused.
func (e *Ephemeral) Mark(ctx context.Context, key string, ttl time.Duration) error {
	if key == "" || strings.ContainsAny(key, " =") || ttl <= 0 {
		return fmt.Errorf("redis ephemeral: mark: invalid key or ttl")
	}
	if err := e.w.mark(ctx, key, ttl); err != nil {
		return wrap("mark", err)
	}
	return nil
}

// Marked implements store.Mirrored from this replica's mirror of the marked
// keys: no round trip; it declines until the watch is subscribed, holds its
// lease and has loaded the marks (the first call starts that).
func (e *Ephemeral) Marked(key string) (marked, ok bool) { return e.w.marked(key) }

// Take returns and deletes the value atomically (GETDEL, Redis >= 6.2), or
// store.ErrNotFound: of concurrent Takes exactly one gets the value.
func (e *Ephemeral) Take(ctx context.Context, key string) ([]byte, error) {
	b, err := e.c.GetDel(ctx, e.key(key)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("take", err)
	}
	return b, nil
}

// Claim stores key for ttl if absent (SET NX PX) and reports whether this
// call stored it. With a non-positive ttl nothing lasts: it reports whether
// the key was absent.
func (e *Ephemeral) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		n, err := e.c.Exists(ctx, e.key(key)).Result()
		if err != nil {
			return false, wrap("claim", err)
		}
		return n == 0, nil
	}
	err := e.c.SetArgs(ctx, e.key(key), "", goredis.SetArgs{Mode: "NX", TTL: time.Duration(ms(ttl)) * time.Millisecond}).Err()
	if errors.Is(err, goredis.Nil) {
		return false, nil // NX refused: present
	}
	if err != nil {
		return false, wrap("claim", err)
	}
	return true, nil
}

// Incr increments the counter under key, which expires ttl after its first
// increment, and returns the new value (INCR, then PEXPIRE when the value is
// 1, in one Lua script).
func (e *Ephemeral) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	ttlMS := ms(ttl)
	if ttl <= 0 {
		ttlMS = 0 // PEXPIRE 0 deletes the key
	}
	n, err := incrScript.Run(ctx, e.c, []string{e.key(key)}, ttlMS).Int64()
	if err != nil {
		return 0, wrap("incr", err)
	}
	return n, nil
}

// Delete removes key (no error when absent).
func (e *Ephemeral) Delete(ctx context.Context, key string) error {
	if err := e.c.Del(ctx, e.key(key)).Err(); err != nil {
		return wrap("delete", err)
	}
	return nil
}
