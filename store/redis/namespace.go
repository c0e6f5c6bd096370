package redis

import "context"

// deleteBatch is how many keys DeleteAll deletes per command.
const deleteBatch = 1000

// DeleteAll deletes every key under the Ephemeral's prefix: the cleanup of
// a run that had a key prefix of its own (a benchmark variant, a test) on a
// shared Redis. Keys outside the prefix are never touched.
func (e *Ephemeral) DeleteAll(ctx context.Context) error {
	iter := e.c.Scan(ctx, 0, e.prefix+"*", deleteBatch).Iterator()
	keys := make([]string, 0, deleteBatch)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := e.c.Del(ctx, keys...).Err()
		keys = keys[:0]
		return err
	}
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == deleteBatch {
			if err := flush(); err != nil {
				return wrap("delete", err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return wrap("scan", err)
	}
	if err := flush(); err != nil {
		return wrap("delete", err)
	}
	return nil
}
