package redis

import (
	"context"
	"errors"
	"strings"
)

// Stamps reads the current values of stamps from Redis and encodes them as
// Lookup's at does (the values joined by ".", a missing stamp as "0"). It
// implements store.NearCache for a near cache's hits.
//
// Concurrent calls share round trips (reads, batch.go): each call joins a
// batch that a worker sends as one MGET of every key the batch names, taken
// only after the call was made, so every value read was current after the
// call began: a Bump that returned before it, on any replica, is seen
// (docs/design/security.md CACHE-1). Under load a hot read costs a fraction
// of one round trip instead of one.
func (c *Cache) Stamps(ctx context.Context, stamps []string) (string, error) {
	keys := make([]string, len(stamps))
	for i, s := range stamps {
		keys[i] = c.stamps + s
	}
	mark, learn := c.w.session()
	vals, err := c.reads.mget(ctx, keys)
	if err != nil {
		return "", wrapCache("stamps", err)
	}
	if learn {
		c.w.learn(mark, stamps, vals)
	}
	var b strings.Builder
	for i, v := range vals {
		if i > 0 {
			b.WriteByte('.')
		}
		switch v := v.(type) {
		case string:
			b.WriteString(v)
		case nil:
			b.WriteByte('0')
		default:
			return "", wrapCache("stamps", errUnexpectedStamp)
		}
	}
	return b.String(), nil
}

var errUnexpectedStamp = errors.New("a stamp holds a value of an unexpected type")
