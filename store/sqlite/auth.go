package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// The SMART authorization state (store.AuthStore) lives in the tables of
// migrations/0002_auth.sql. Writes run on the one writer connection under
// wsem, each in its own BEGIN IMMEDIATE transaction; reads use the reader
// pool, which sees the last committed state.

var _ store.AuthStore = (*Store)(nil)

// authWrite runs fn in a write transaction on the writer connection.
func (s *Store) authWrite(ctx context.Context, op string, fn func(c *sql.Conn) error) error {
	if s.closed.Load() {
		return errClosed
	}
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wsem }()
	if s.closed.Load() {
		return errClosed
	}
	c := s.w
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("store: sqlite: %s: %w", op, err)
	}
	if err := fn(c); err != nil {
		_, _ = c.ExecContext(context.Background(), "ROLLBACK")
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrStale) {
			return err
		}
		return fmt.Errorf("store: sqlite: %s: %w", op, err)
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = c.ExecContext(context.Background(), "ROLLBACK")
		return fmt.Errorf("store: sqlite: %s: %w", op, err)
	}
	return nil
}

// authReader returns the reader pool, or errClosed.
func (s *Store) authReader() (*sql.DB, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	return s.rdb, nil
}

// nullMS stores a time as Unix milliseconds, the zero time as NULL.
func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// msOrZero reads what nullMS stored.
func msOrZero(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return msTime(v.Int64)
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func jsonList(l []string) (string, error) {
	if l == nil {
		l = []string{}
	}
	b, err := json.Marshal(l)
	return string(b), err
}

func parseList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// rowScanner is what *sql.Row and *sql.Rows share.
type rowScanner interface{ Scan(dest ...any) error }

// ---- clients ----

const clientCols = `id, name, kind, secret_hash, redirect_uris, launch_url, scopes, origins, jwks, jwks_url, created`

// PutClient creates or replaces a client.
func (s *Store) PutClient(ctx context.Context, c store.Client) error {
	if c.ID == "" {
		return errors.New("store: sqlite: put client: empty id")
	}
	redirects, err := jsonList(c.RedirectURIs)
	if err != nil {
		return err
	}
	scopes, err := jsonList(c.Scopes)
	if err != nil {
		return err
	}
	origins, err := jsonList(c.Origins)
	if err != nil {
		return err
	}
	var jwks any
	if len(c.JWKS) > 0 {
		jwks = c.JWKS
	}
	return s.authWrite(ctx, "put client", func(w *sql.Conn) error {
		_, err := w.ExecContext(ctx, `INSERT OR REPLACE INTO clients (`+clientCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
			c.ID, c.Name, string(c.Kind), c.SecretHash, redirects, c.LaunchURL, scopes, origins, jwks, c.JWKSURL, nullMS(c.Created))
		return err
	})
}

func scanClient(r rowScanner) (store.Client, error) {
	var c store.Client
	var kind, redirects, scopes, origins string
	var created sql.NullInt64
	if err := r.Scan(&c.ID, &c.Name, &kind, &c.SecretHash, &redirects, &c.LaunchURL, &scopes, &origins, &c.JWKS, &c.JWKSURL, &created); err != nil {
		return store.Client{}, err
	}
	c.Kind = store.ClientKind(kind)
	c.Created = msOrZero(created)
	var err error
	if c.RedirectURIs, err = parseList(redirects); err != nil {
		return store.Client{}, err
	}
	if c.Scopes, err = parseList(scopes); err != nil {
		return store.Client{}, err
	}
	if c.Origins, err = parseList(origins); err != nil {
		return store.Client{}, err
	}
	if len(c.JWKS) == 0 {
		c.JWKS = nil
	}
	return c, nil
}

// GetClient returns a client, or store.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	db, err := s.authReader()
	if err != nil {
		return store.Client{}, err
	}
	c, err := scanClient(db.QueryRowContext(ctx, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Client{}, store.ErrNotFound
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("store: sqlite: get client: %w", err)
	}
	return c, nil
}

// ListClients returns every client, ordered by id.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	db, err := s.authReader()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT `+clientCols+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: list clients: %w", err)
	}
	defer rows.Close()
	var out []store.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, fmt.Errorf("store: sqlite: list clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sqlite: list clients: %w", err)
	}
	return out, nil
}

// DeleteClient removes a client; store.ErrNotFound when there is none.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return s.authWrite(ctx, "delete client", func(w *sql.Conn) error {
		if err := deleteOne(ctx, w, `DELETE FROM clients WHERE id = ?`, id); err != nil {
			return err
		}
		return s.revokeGrantsOf(ctx, w, "client_id", id)
	})
}

func deleteOne(ctx context.Context, w *sql.Conn, query, id string) error {
	res, err := w.ExecContext(ctx, query, id)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ---- users ----

const userCols = `id, name, role, password_hash, fhir_user, disabled, created`

// PutUser creates or replaces a user.
func (s *Store) PutUser(ctx context.Context, u store.User) error {
	if u.ID == "" {
		return errors.New("store: sqlite: put user: empty id")
	}
	return s.authWrite(ctx, "put user", func(w *sql.Conn) error {
		_, err := w.ExecContext(ctx, `INSERT OR REPLACE INTO users (`+userCols+`) VALUES (?,?,?,?,?,?,?)`,
			u.ID, u.Name, string(u.Role), u.PasswordHash, u.FHIRUser, u.Disabled, nullMS(u.Created))
		return err
	})
}

func scanUser(r rowScanner) (store.User, error) {
	var u store.User
	var role string
	var created sql.NullInt64
	if err := r.Scan(&u.ID, &u.Name, &role, &u.PasswordHash, &u.FHIRUser, &u.Disabled, &created); err != nil {
		return store.User{}, err
	}
	u.Role = store.UserRole(role)
	u.Created = msOrZero(created)
	return u, nil
}

// GetUser returns a user, or store.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	db, err := s.authReader()
	if err != nil {
		return store.User{}, err
	}
	u, err := scanUser(db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	if err != nil {
		return store.User{}, fmt.Errorf("store: sqlite: get user: %w", err)
	}
	return u, nil
}

// ListUsers returns every user, ordered by id.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	db, err := s.authReader()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: list users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: sqlite: list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sqlite: list users: %w", err)
	}
	return out, nil
}

// DeleteUser removes a user; store.ErrNotFound when there is none.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return s.authWrite(ctx, "delete user", func(w *sql.Conn) error {
		if err := deleteOne(ctx, w, `DELETE FROM users WHERE id = ?`, id); err != nil {
			return err
		}
		return s.revokeGrantsOf(ctx, w, "user_id", id)
	})
}

// revokeGrantsOf revokes the active grants of a removed client or user, in
// the removal's transaction, so no refresh token outlives its registration
// (the resource server's revocation set picks them up via RevokedSince).
func (s *Store) revokeGrantsOf(ctx context.Context, w *sql.Conn, col, id string) error {
	_, err := w.ExecContext(ctx, `UPDATE grants SET revoked = ? WHERE `+col+` = ? AND revoked IS NULL`,
		nullMS(s.clock.Now()), id)
	return err
}

// ---- grants ----

const grantCols = `id, client_id, user_id, scope, patient, encounter, refresh_hash, created, expires, revoked`

// CreateGrant stores a new grant; store.ErrExists when the id is taken.
func (s *Store) CreateGrant(ctx context.Context, g store.Grant) error {
	if g.ID == "" {
		return errors.New("store: sqlite: create grant: empty id")
	}
	return s.authWrite(ctx, "create grant", func(w *sql.Conn) error {
		res, err := w.ExecContext(ctx, `INSERT INTO grants (`+grantCols+`) VALUES (?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (id) DO NOTHING`,
			g.ID, g.ClientID, g.UserID, g.Scope, g.Patient, g.Encounter, nullStr(g.RefreshHash),
			nullMS(g.Created), nullMS(g.Expires), nullMS(g.Revoked))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrExists
		}
		return nil
	})
}

func scanGrant(r rowScanner) (store.Grant, error) {
	var g store.Grant
	var refresh sql.NullString
	var created, expires, revoked sql.NullInt64
	if err := r.Scan(&g.ID, &g.ClientID, &g.UserID, &g.Scope, &g.Patient, &g.Encounter, &refresh, &created, &expires, &revoked); err != nil {
		return store.Grant{}, err
	}
	g.RefreshHash = refresh.String
	g.Created, g.Expires, g.Revoked = msOrZero(created), msOrZero(expires), msOrZero(revoked)
	return g, nil
}

func (s *Store) getGrant(ctx context.Context, op, where string, args ...any) (store.Grant, error) {
	db, err := s.authReader()
	if err != nil {
		return store.Grant{}, err
	}
	g, err := scanGrant(db.QueryRowContext(ctx, `SELECT `+grantCols+` FROM grants WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Grant{}, store.ErrNotFound
	}
	if err != nil {
		return store.Grant{}, fmt.Errorf("store: sqlite: %s: %w", op, err)
	}
	return g, nil
}

// GetGrant returns a grant, or store.ErrNotFound.
func (s *Store) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	return s.getGrant(ctx, "get grant", "id = ?", id)
}

// RotateRefresh replaces the grant's current refresh hash oldHash with
// newHash (empty newHash leaves the grant without one) and remembers oldHash
// for reuse detection, in one transaction. It returns store.ErrStale and
// changes nothing when oldHash is not the current hash or the grant is
// revoked, store.ErrNotFound when there is no such grant.
func (s *Store) RotateRefresh(ctx context.Context, grantID, oldHash, newHash string) error {
	if oldHash == "" {
		return store.ErrStale
	}
	return s.authWrite(ctx, "rotate refresh", func(w *sql.Conn) error {
		res, err := w.ExecContext(ctx, `UPDATE grants SET refresh_hash = ? WHERE id = ? AND refresh_hash = ? AND revoked IS NULL`,
			nullStr(newHash), grantID, oldHash)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			var one int
			err := w.QueryRowContext(ctx, `SELECT 1 FROM grants WHERE id = ?`, grantID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			return store.ErrStale
		}
		_, err = w.ExecContext(ctx, `INSERT OR REPLACE INTO grant_refresh_retired (hash, grant_id, retired) VALUES (?,?,?)`,
			oldHash, grantID, s.clock.Now().UnixMilli())
		return err
	})
}

// FindGrantByRefresh returns the grant whose current refresh hash is h.
func (s *Store) FindGrantByRefresh(ctx context.Context, h string) (store.Grant, error) {
	if h == "" {
		return store.Grant{}, store.ErrNotFound
	}
	return s.getGrant(ctx, "find grant", "refresh_hash = ?", h)
}

// FindGrantByAnyRefresh returns the grant whose current or a rotated-away
// refresh hash is h.
func (s *Store) FindGrantByAnyRefresh(ctx context.Context, h string) (store.Grant, error) {
	if h == "" {
		return store.Grant{}, store.ErrNotFound
	}
	return s.getGrant(ctx, "find grant", `refresh_hash = ?
   OR id = (SELECT grant_id FROM grant_refresh_retired WHERE hash = ?)`, h, h)
}

// RevokeGrant marks the grant revoked at at. Revoking a revoked grant keeps
// its first revocation time; an unknown grant is store.ErrNotFound.
func (s *Store) RevokeGrant(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = s.clock.Now()
	}
	return s.authWrite(ctx, "revoke grant", func(w *sql.Conn) error {
		res, err := w.ExecContext(ctx, `UPDATE grants SET revoked = coalesce(revoked, ?) WHERE id = ?`, at.UnixMilli(), id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// RevokedSince lists the ids of grants revoked at or after t, ordered by
// revocation time then id.
func (s *Store) RevokedSince(ctx context.Context, t time.Time) ([]string, error) {
	db, err := s.authReader()
	if err != nil {
		return nil, err
	}
	var since int64
	if !t.IsZero() {
		since = t.UnixMilli()
	} else {
		since = -1 << 62
	}
	rows, err := db.QueryContext(ctx, `SELECT id FROM grants WHERE revoked IS NOT NULL AND revoked >= ? ORDER BY revoked, id`, since)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: revoked since: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: sqlite: revoked since: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sqlite: revoked since: %w", err)
	}
	return out, nil
}

// ---- signing keys ----

// PutKey creates or replaces a signing key (by kid).
func (s *Store) PutKey(ctx context.Context, k store.SigningKey) error {
	if k.KID == "" || len(k.PrivatePEM) == 0 {
		return errors.New("store: sqlite: put key: empty kid or key")
	}
	return s.authWrite(ctx, "put key", func(w *sql.Conn) error {
		_, err := w.ExecContext(ctx, `INSERT OR REPLACE INTO signing_keys (kid, alg, private_pem, created, retired) VALUES (?,?,?,?,?)`,
			k.KID, k.Alg, k.PrivatePEM, nullMS(k.Created), nullMS(k.Retired))
		return err
	})
}

// ListKeys returns every signing key, oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]store.SigningKey, error) {
	db, err := s.authReader()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT kid, alg, private_pem, created, retired FROM signing_keys ORDER BY coalesce(created, 0), kid`)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: list keys: %w", err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		var created, retired sql.NullInt64
		if err := rows.Scan(&k.KID, &k.Alg, &k.PrivatePEM, &created, &retired); err != nil {
			return nil, fmt.Errorf("store: sqlite: list keys: %w", err)
		}
		k.Created, k.Retired = msOrZero(created), msOrZero(retired)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sqlite: list keys: %w", err)
	}
	return out, nil
}
