package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaName is what NewSchema accepts: a plain lower-case identifier.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// NewSchema creates the schema name on the server dbURL names and returns
// the URL whose search_path selects it, and the function that drops it with
// everything in it: a run that must not see or touch the database's existing
// data (a benchmark variant, a test) opens the store at that URL.
func NewSchema(ctx context.Context, dbURL, name string) (schemaURL string, drop func(context.Context) error, err error) {
	if !schemaName.MatchString(name) {
		return "", nil, fmt.Errorf("postgres: invalid schema name %q", name)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", nil, errors.New("postgres: invalid database url")
	}
	if err := execOnce(ctx, dbURL, "CREATE SCHEMA "+name); err != nil {
		return "", nil, fmt.Errorf("postgres: create schema: %w", err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	drop = func(ctx context.Context) error { return execOnce(ctx, dbURL, "DROP SCHEMA "+name+" CASCADE") }
	return u.String(), drop, nil
}

// execOnce runs one statement on a connection of its own, opened with the
// URL the store's pool takes (its pool_* parameters are the pool's, not
// session settings).
func execOnce(ctx context.Context, dbURL, sql string) error {
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		// The parse error may echo the URL (and a password): no detail.
		return errors.New("invalid database url")
	}
	conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}
