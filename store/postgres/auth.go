package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
)

// The SMART authorization state (store.AuthStore) lives in the tables of
// migrations/0002_auth.sql. Each write is one transaction; the refresh-token
// rotation is a single conditional UPDATE, so of two replicas rotating the
// same token exactly one wins.

// authWrite runs fn in a write transaction, passing the contract's sentinel
// errors through unwrapped.
func (s *Store) authWrite(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	pool, err := s.db()
	if err != nil {
		return err
	}
	if err := pgx.BeginFunc(ctx, pool, fn); err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrStale) {
			return err
		}
		return fmt.Errorf("store: postgres: %s: %w", op, err)
	}
	return nil
}

// nullMS stores a time as Unix milliseconds, the zero time as NULL.
func nullMS(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

// msOrZero reads what nullMS stored.
func msOrZero(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return msTime(*v)
}

func nullStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func list(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func unlist(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// ---- clients ----

const clientCols = `id, name, kind, secret_hash, redirect_uris, launch_url, scopes, origins, jwks, jwks_url, created`

// PutClient creates or replaces a client.
func (s *Store) PutClient(ctx context.Context, c store.Client) error {
	if c.ID == "" {
		return errors.New("store: postgres: put client: empty id")
	}
	var jwks []byte
	if len(c.JWKS) > 0 {
		jwks = c.JWKS
	}
	return s.authWrite(ctx, "put client", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, secret_hash = EXCLUDED.secret_hash,
 redirect_uris = EXCLUDED.redirect_uris, launch_url = EXCLUDED.launch_url, scopes = EXCLUDED.scopes,
 origins = EXCLUDED.origins, jwks = EXCLUDED.jwks, jwks_url = EXCLUDED.jwks_url, created = EXCLUDED.created`,
			c.ID, c.Name, string(c.Kind), c.SecretHash, list(c.RedirectURIs), c.LaunchURL, list(c.Scopes), list(c.Origins),
			jwks, c.JWKSURL, nullMS(c.Created))
		return err
	})
}

func scanClient(r pgx.Row) (store.Client, error) {
	var c store.Client
	var kind string
	var created *int64
	if err := r.Scan(&c.ID, &c.Name, &kind, &c.SecretHash, &c.RedirectURIs, &c.LaunchURL, &c.Scopes, &c.Origins, &c.JWKS, &c.JWKSURL, &created); err != nil {
		return store.Client{}, err
	}
	c.Kind = store.ClientKind(kind)
	c.Created = msOrZero(created)
	c.RedirectURIs, c.Scopes, c.Origins = unlist(c.RedirectURIs), unlist(c.Scopes), unlist(c.Origins)
	if len(c.JWKS) == 0 {
		c.JWKS = nil
	}
	return c, nil
}

// GetClient returns a client, or store.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	pool, err := s.db()
	if err != nil {
		return store.Client{}, err
	}
	c, err := scanClient(pool.QueryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Client{}, store.ErrNotFound
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("store: postgres: get client: %w", err)
	}
	return c, nil
}

// ListClients returns every client, ordered by id.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT `+clientCols+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: list clients: %w", err)
	}
	defer rows.Close()
	var out []store.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, fmt.Errorf("store: postgres: list clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: postgres: list clients: %w", err)
	}
	return out, nil
}

// DeleteClient removes a client and revokes its active grants in one
// transaction; store.ErrNotFound when there is none.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return s.authWrite(ctx, "delete client", func(tx pgx.Tx) error {
		if err := deleteOne(ctx, tx, `DELETE FROM clients WHERE id = $1`, id); err != nil {
			return err
		}
		return s.revokeGrantsOf(ctx, tx, "client_id", id)
	})
}

func deleteOne(ctx context.Context, tx pgx.Tx, query, id string) error {
	tag, err := tx.Exec(ctx, query, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ---- users ----

const userCols = `id, name, role, password_hash, fhir_user, disabled, created`

// PutUser creates or replaces a user.
func (s *Store) PutUser(ctx context.Context, u store.User) error {
	if u.ID == "" {
		return errors.New("store: postgres: put user: empty id")
	}
	return s.authWrite(ctx, "put user", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, role = EXCLUDED.role, password_hash = EXCLUDED.password_hash,
 fhir_user = EXCLUDED.fhir_user, disabled = EXCLUDED.disabled, created = EXCLUDED.created`,
			u.ID, u.Name, string(u.Role), u.PasswordHash, u.FHIRUser, u.Disabled, nullMS(u.Created))
		return err
	})
}

func scanUser(r pgx.Row) (store.User, error) {
	var u store.User
	var role string
	var created *int64
	if err := r.Scan(&u.ID, &u.Name, &role, &u.PasswordHash, &u.FHIRUser, &u.Disabled, &created); err != nil {
		return store.User{}, err
	}
	u.Role = store.UserRole(role)
	u.Created = msOrZero(created)
	return u, nil
}

// GetUser returns a user, or store.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	pool, err := s.db()
	if err != nil {
		return store.User{}, err
	}
	u, err := scanUser(pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	if err != nil {
		return store.User{}, fmt.Errorf("store: postgres: get user: %w", err)
	}
	return u, nil
}

// ListUsers returns every user, ordered by id.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: list users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: postgres: list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: postgres: list users: %w", err)
	}
	return out, nil
}

// DeleteUser removes a user and revokes the user's active grants in one
// transaction; store.ErrNotFound when there is none.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return s.authWrite(ctx, "delete user", func(tx pgx.Tx) error {
		if err := deleteOne(ctx, tx, `DELETE FROM users WHERE id = $1`, id); err != nil {
			return err
		}
		return s.revokeGrantsOf(ctx, tx, "user_id", id)
	})
}

// revokeGrantsOf revokes the active grants of a removed client or user, in
// the removal's transaction, so no refresh token outlives its registration
// (the resource server's revocation set picks them up via RevokedSince).
func (s *Store) revokeGrantsOf(ctx context.Context, tx pgx.Tx, col, id string) error {
	_, err := tx.Exec(ctx, `UPDATE grants SET revoked = $1 WHERE `+col+` = $2 AND revoked IS NULL`,
		nullMS(s.clock.Now()), id)
	return err
}

// ---- grants ----

const grantCols = `id, client_id, user_id, scope, patient, encounter, refresh_hash, created, expires, revoked`

// CreateGrant stores a new grant; store.ErrExists when the id is taken.
func (s *Store) CreateGrant(ctx context.Context, g store.Grant) error {
	if g.ID == "" {
		return errors.New("store: postgres: create grant: empty id")
	}
	return s.authWrite(ctx, "create grant", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO grants (`+grantCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)
ON CONFLICT (id) DO NOTHING`,
			g.ID, g.ClientID, g.UserID, g.Scope, g.Patient, g.Encounter, nullStr(g.RefreshHash),
			nullMS(g.Created), nullMS(g.Expires), nullMS(g.Revoked))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrExists
		}
		return nil
	})
}

func scanGrant(r pgx.Row) (store.Grant, error) {
	var g store.Grant
	var refresh *string
	var created, expires, revoked *int64
	if err := r.Scan(&g.ID, &g.ClientID, &g.UserID, &g.Scope, &g.Patient, &g.Encounter, &refresh, &created, &expires, &revoked); err != nil {
		return store.Grant{}, err
	}
	if refresh != nil {
		g.RefreshHash = *refresh
	}
	g.Created, g.Expires, g.Revoked = msOrZero(created), msOrZero(expires), msOrZero(revoked)
	return g, nil
}

func (s *Store) getGrant(ctx context.Context, op, where string, args ...any) (store.Grant, error) {
	pool, err := s.db()
	if err != nil {
		return store.Grant{}, err
	}
	g, err := scanGrant(pool.QueryRow(ctx, `SELECT `+grantCols+` FROM grants WHERE `+where, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Grant{}, store.ErrNotFound
	}
	if err != nil {
		return store.Grant{}, fmt.Errorf("store: postgres: %s: %w", op, err)
	}
	return g, nil
}

// GetGrant returns a grant, or store.ErrNotFound.
func (s *Store) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	return s.getGrant(ctx, "get grant", "id = $1", id)
}

// RotateRefresh replaces the grant's current refresh hash oldHash with
// newHash (empty newHash leaves the grant without one) and remembers oldHash
// for reuse detection, in one transaction. The swap is one UPDATE ... WHERE
// refresh_hash = oldHash, so of concurrent rotations of one token (on any
// replica) exactly one succeeds. It returns store.ErrStale and changes
// nothing when oldHash is not the current hash or the grant is revoked,
// store.ErrNotFound when there is no such grant.
func (s *Store) RotateRefresh(ctx context.Context, grantID, oldHash, newHash string) error {
	if oldHash == "" {
		return store.ErrStale
	}
	return s.authWrite(ctx, "rotate refresh", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE grants SET refresh_hash = $1 WHERE id = $2 AND refresh_hash = $3 AND revoked IS NULL`,
			nullStr(newHash), grantID, oldHash)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM grants WHERE id = $1`, grantID).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			return store.ErrStale
		}
		_, err = tx.Exec(ctx, `INSERT INTO grant_refresh_retired (hash, grant_id, retired) VALUES ($1, $2, $3)
ON CONFLICT (hash) DO UPDATE SET grant_id = EXCLUDED.grant_id, retired = EXCLUDED.retired`,
			oldHash, grantID, s.clock.Now().UnixMilli())
		return err
	})
}

// FindGrantByRefresh returns the grant whose current refresh hash is h.
func (s *Store) FindGrantByRefresh(ctx context.Context, h string) (store.Grant, error) {
	if h == "" {
		return store.Grant{}, store.ErrNotFound
	}
	return s.getGrant(ctx, "find grant", "refresh_hash = $1", h)
}

// FindGrantByAnyRefresh returns the grant whose current or a rotated-away
// refresh hash is h.
func (s *Store) FindGrantByAnyRefresh(ctx context.Context, h string) (store.Grant, error) {
	if h == "" {
		return store.Grant{}, store.ErrNotFound
	}
	return s.getGrant(ctx, "find grant", `refresh_hash = $1
   OR id = (SELECT grant_id FROM grant_refresh_retired WHERE hash = $1)`, h)
}

// RevokeGrant marks the grant revoked at at. Revoking a revoked grant keeps
// its first revocation time; an unknown grant is store.ErrNotFound.
func (s *Store) RevokeGrant(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = s.clock.Now()
	}
	return s.authWrite(ctx, "revoke grant", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE grants SET revoked = coalesce(revoked, $1) WHERE id = $2`, at.UnixMilli(), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// RevokedSince lists the ids of grants revoked at or after t, ordered by
// revocation time then id.
func (s *Store) RevokedSince(ctx context.Context, t time.Time) ([]string, error) {
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	since := int64(-1 << 62)
	if !t.IsZero() {
		since = t.UnixMilli()
	}
	rows, err := pool.Query(ctx, `SELECT id FROM grants WHERE revoked IS NOT NULL AND revoked >= $1 ORDER BY revoked, id`, since)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: revoked since: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: postgres: revoked since: %w", err)
	}
	return out, nil
}

// ---- signing keys ----

// PutKey creates or replaces a signing key (by kid).
func (s *Store) PutKey(ctx context.Context, k store.SigningKey) error {
	if k.KID == "" || len(k.PrivatePEM) == 0 {
		return errors.New("store: postgres: put key: empty kid or key")
	}
	return s.authWrite(ctx, "put key", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO signing_keys (kid, alg, private_pem, created, retired) VALUES ($1,$2,$3,$4,$5)
ON CONFLICT (kid) DO UPDATE SET alg = EXCLUDED.alg, private_pem = EXCLUDED.private_pem,
 created = EXCLUDED.created, retired = EXCLUDED.retired`,
			k.KID, k.Alg, k.PrivatePEM, nullMS(k.Created), nullMS(k.Retired))
		return err
	})
}

// ListKeys returns every signing key, oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]store.SigningKey, error) {
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT kid, alg, private_pem, created, retired FROM signing_keys ORDER BY coalesce(created, 0), kid`)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: list keys: %w", err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		var created, retired *int64
		if err := rows.Scan(&k.KID, &k.Alg, &k.PrivatePEM, &created, &retired); err != nil {
			return nil, fmt.Errorf("store: postgres: list keys: %w", err)
		}
		k.Created, k.Retired = msOrZero(created), msOrZero(retired)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: postgres: list keys: %w", err)
	}
	return out, nil
}
