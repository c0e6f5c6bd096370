package sqlite

import (
	"context"
	"database/sql"

	"github.com/ketabridge/ketabridge/store"
)

// The SMART authorization state (store.AuthStore) lives in the tables of
// migrations/0002_auth.sql, read and written by the shared queries of
// sqlcore.Auth. Writes run on the one writer connection under wsem, each in
// its own BEGIN IMMEDIATE transaction; reads use the reader pool, which sees
// the last committed state.

var _ store.AuthStore = (*Store)(nil)

// writeTx runs fn in a BEGIN IMMEDIATE transaction on the writer
// connection, rolled back when fn fails; fn's error is returned as is.
func (s *Store) writeTx(ctx context.Context, fn func(c *sql.Conn) error) error {
	if err := s.lockWriter(ctx); err != nil {
		return err
	}
	defer s.unlockWriter()
	return execTx(ctx, s.w, func() error { return fn(s.w) })
}
