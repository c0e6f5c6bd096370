package sqlcore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// Auth implements store.AuthStore, and the reading half of
// store.AuditStore, with the same SQL on both backends (the tables of their
// migrations 0002_auth.sql and 0003_audit.sql). Times are Unix milliseconds,
// NULL for the zero time. Each write is one transaction of the backend's
// DB.Write; the refresh-token rotation is a single conditional UPDATE, so of
// two concurrent rotations of one token (on any replica) exactly one wins.
type Auth struct {
	d      *Dialect
	db     DB
	clock  store.Clock
	closed error // the backend's error for a closed store, returned as is
	sql    authSQL

	adb        DB         // the audit trail's connections, when not db's (SetAuditDB)
	terms      auditTerms // the audit_terms cache (audit.go)
	insertOnce sync.Once
	inserts    [len(auditInsertSizes)]string // the audit INSERTs of auditInsertSizes rows
	// legacy: whether PostgreSQL's audit table (the rows before packs)
	// holds any: 0 not known, 1 yes, 2 no (auditpack.go legacyRows).
	legacy atomic.Int32
}

// authSQL are Auth's statements in the dialect's placeholder style.
type authSQL struct {
	putClient, getClient, listClients, deleteClient string
	putUser, getUser, listUsers, deleteUser         string
	revokeOfClient, revokeOfUser                    string
	createGrant, getGrant, grantByRefresh           string
	grantByAnyRefresh, rotate, grantExists, retire  string
	revokeGrant, revokedSince                       string
	putKey, listKeys, listAudit                     string
	auditDays, auditExports, markExported           string
	markDropped                                     string
}

const (
	clientCols = `id, name, kind, secret_hash, redirect_uris, launch_url, scopes, origins, jwks, jwks_url, organization, role, created`
	userCols   = `id, name, role, password_hash, fhir_user, disabled, created`
	grantCols  = `id, client_id, user_id, scope, patient, encounter, refresh_hash, created, expires, revoked`
)

// NewAuth returns the shared auth queries over db. clock stamps
// revocations; closed is the backend's error for a closed store.
func NewAuth(d *Dialect, db DB, clock store.Clock, closed error) *Auth {
	q := d.SQL
	return &Auth{d: d, db: db, clock: clock, closed: closed, sql: authSQL{
		putClient: q(`INSERT INTO clients (` + clientCols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, secret_hash = excluded.secret_hash,
 redirect_uris = excluded.redirect_uris, launch_url = excluded.launch_url, scopes = excluded.scopes,
 origins = excluded.origins, jwks = excluded.jwks, jwks_url = excluded.jwks_url,
 organization = excluded.organization, role = excluded.role, created = excluded.created`),
		getClient:    q(`SELECT ` + clientCols + ` FROM clients WHERE id = ?`),
		listClients:  `SELECT ` + clientCols + ` FROM clients ORDER BY id`,
		deleteClient: q(`DELETE FROM clients WHERE id = ?`),
		putUser: q(`INSERT INTO users (` + userCols + `) VALUES (?,?,?,?,?,?,?)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, password_hash = excluded.password_hash,
 fhir_user = excluded.fhir_user, disabled = excluded.disabled, created = excluded.created`),
		getUser:        q(`SELECT ` + userCols + ` FROM users WHERE id = ?`),
		listUsers:      `SELECT ` + userCols + ` FROM users ORDER BY id`,
		deleteUser:     q(`DELETE FROM users WHERE id = ?`),
		revokeOfClient: q(`UPDATE grants SET revoked = ? WHERE client_id = ? AND revoked IS NULL`),
		revokeOfUser:   q(`UPDATE grants SET revoked = ? WHERE user_id = ? AND revoked IS NULL`),
		createGrant: q(`INSERT INTO grants (` + grantCols + `) VALUES (?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (id) DO NOTHING`),
		getGrant:       q(`SELECT ` + grantCols + ` FROM grants WHERE id = ?`),
		grantByRefresh: q(`SELECT ` + grantCols + ` FROM grants WHERE refresh_hash = ?`),
		grantByAnyRefresh: q(`SELECT ` + grantCols + ` FROM grants WHERE refresh_hash = ?
   OR id = (SELECT grant_id FROM grant_refresh_retired WHERE hash = ?)`),
		rotate:      q(`UPDATE grants SET refresh_hash = ? WHERE id = ? AND refresh_hash = ? AND revoked IS NULL`),
		grantExists: q(`SELECT 1 FROM grants WHERE id = ?`),
		retire: q(`INSERT INTO grant_refresh_retired (hash, grant_id, retired) VALUES (?, ?, ?)
ON CONFLICT (hash) DO UPDATE SET grant_id = excluded.grant_id, retired = excluded.retired`),
		revokeGrant:  q(`UPDATE grants SET revoked = coalesce(revoked, ?) WHERE id = ?`),
		revokedSince: q(`SELECT id FROM grants WHERE revoked IS NOT NULL AND revoked >= ? ORDER BY revoked, id`),
		putKey: q(`INSERT INTO signing_keys (kid, alg, private_pem, created, retired) VALUES (?,?,?,?,?)
ON CONFLICT (kid) DO UPDATE SET alg = excluded.alg, private_pem = excluded.private_pem,
 created = excluded.created, retired = excluded.retired`),
		listKeys: `SELECT kid, alg, private_pem, created, retired FROM signing_keys ORDER BY coalesce(created, 0), kid`,
		listAudit: q(`SELECT ` + auditCols + ` FROM audit
WHERE recorded >= ? ORDER BY recorded, idk LIMIT ?`),
		auditDays:    q(`SELECT recorded / ? AS day, count(*) FROM audit WHERE recorded < ? GROUP BY 1 ORDER BY 1`),
		auditExports: q(`SELECT day, events, exported_at FROM audit_exports WHERE day < ? ORDER BY day`),
		markExported: q(`INSERT INTO audit_exports (day, events, exported_at) VALUES (?, ?, ?)
ON CONFLICT (day) DO UPDATE SET events = excluded.events, exported_at = excluded.exported_at, dropped_at = NULL`),
		markDropped: q(`UPDATE audit_exports SET dropped_at = ? WHERE day < ? AND dropped_at IS NULL`),
	}}
}

// SetAuditDB puts the audit trail's queries on db instead of the store's
// own connections (SQLite keeps the trail in a file of its own). Call it
// before any use.
func (a *Auth) SetAuditDB(db DB) { a.adb = db }

// auditDB is what the audit trail's queries run on.
func (a *Auth) auditDB() DB {
	if a.adb != nil {
		return a.adb
	}
	return a.db
}

// write runs fn in a write transaction.
func (a *Auth) write(ctx context.Context, op string, fn func(Querier) error) error {
	return a.Wrap(op, a.db.Write(ctx, fn))
}

// Wrap prefixes the error of a write operation op with the backend and op,
// except the contract's sentinel errors and a closed store's error, which
// are returned as they are.
func (a *Auth) Wrap(op string, err error) error {
	if err == nil || passThrough(err) || errors.Is(err, a.closed) {
		return err
	}
	return a.d.wrap(op, err)
}

// get reads the one row of query into scan; no row is store.ErrNotFound.
func get[T any](ctx context.Context, a *Auth, op string, scan func(Row) (T, error), query string, args ...any) (T, error) {
	var zero T
	q, err := a.db.Reader()
	if err != nil {
		return zero, err
	}
	v, err := scan(q.QueryRow(ctx, query, args...))
	if noRows(err) {
		return zero, store.ErrNotFound
	}
	if err != nil {
		return zero, a.d.wrap(op, err)
	}
	return v, nil
}

// list reads every row of query with scan.
func list[T any](ctx context.Context, a *Auth, op string, scan func(Row) (T, error), query string, args ...any) ([]T, error) {
	q, err := a.db.Reader()
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, query, args...)
	out, err := collect(rows, err, scan)
	if err != nil {
		return nil, a.d.wrap(op, err)
	}
	return out, nil
}

// execOne runs a statement that must change a row: none is
// store.ErrNotFound.
func execOne(ctx context.Context, q Querier, query string, args ...any) error {
	n, err := q.Exec(ctx, query, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ---- clients ----

// PutClient creates or replaces a client.
func (a *Auth) PutClient(ctx context.Context, c store.Client) error {
	if c.ID == "" {
		return a.d.wrap("put client", errors.New("empty id"))
	}
	var lists [3]any
	for i, l := range [3][]string{c.RedirectURIs, c.Scopes, c.Origins} {
		var err error
		if lists[i], err = a.d.list(l); err != nil {
			return a.d.wrap("put client", err)
		}
	}
	var jwks any
	if len(c.JWKS) > 0 {
		jwks = c.JWKS
	}
	return a.write(ctx, "put client", func(q Querier) error {
		_, err := q.Exec(ctx, a.sql.putClient, c.ID, c.Name, string(c.Kind), c.SecretHash, lists[0], c.LaunchURL,
			lists[1], lists[2], jwks, c.JWKSURL, c.Organization, c.Role, nullMS(c.Created))
		return err
	})
}

func (a *Auth) scanClient(r Row) (store.Client, error) {
	var c store.Client
	var kind string
	var created *int64
	if err := r.Scan(&c.ID, &c.Name, &kind, &c.SecretHash, a.d.listDest(&c.RedirectURIs), &c.LaunchURL,
		a.d.listDest(&c.Scopes), a.d.listDest(&c.Origins), &c.JWKS, &c.JWKSURL, &c.Organization, &c.Role, &created); err != nil {
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

// unlist reads an empty list as nil, as it was before it was stored.
func unlist(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// GetClient returns a client, or store.ErrNotFound.
func (a *Auth) GetClient(ctx context.Context, id string) (store.Client, error) {
	return get(ctx, a, "get client", a.scanClient, a.sql.getClient, id)
}

// ListClients returns every client, ordered by id.
func (a *Auth) ListClients(ctx context.Context) ([]store.Client, error) {
	return list(ctx, a, "list clients", a.scanClient, a.sql.listClients)
}

// DeleteClient removes a client and revokes its active grants in one
// transaction; store.ErrNotFound when there is none.
func (a *Auth) DeleteClient(ctx context.Context, id string) error {
	return a.write(ctx, "delete client", func(q Querier) error {
		if err := execOne(ctx, q, a.sql.deleteClient, id); err != nil {
			return err
		}
		return a.revokeGrantsOf(ctx, q, a.sql.revokeOfClient, id)
	})
}

// ---- users ----

// PutUser creates or replaces a user.
func (a *Auth) PutUser(ctx context.Context, u store.User) error {
	if u.ID == "" {
		return a.d.wrap("put user", errors.New("empty id"))
	}
	return a.write(ctx, "put user", func(q Querier) error {
		_, err := q.Exec(ctx, a.sql.putUser, u.ID, u.Name, string(u.Role), u.PasswordHash, u.FHIRUser, u.Disabled, nullMS(u.Created))
		return err
	})
}

func scanUser(r Row) (store.User, error) {
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
func (a *Auth) GetUser(ctx context.Context, id string) (store.User, error) {
	return get(ctx, a, "get user", scanUser, a.sql.getUser, id)
}

// ListUsers returns every user, ordered by id.
func (a *Auth) ListUsers(ctx context.Context) ([]store.User, error) {
	return list(ctx, a, "list users", scanUser, a.sql.listUsers)
}

// DeleteUser removes a user and revokes the user's active grants in one
// transaction; store.ErrNotFound when there is none.
func (a *Auth) DeleteUser(ctx context.Context, id string) error {
	return a.write(ctx, "delete user", func(q Querier) error {
		if err := execOne(ctx, q, a.sql.deleteUser, id); err != nil {
			return err
		}
		return a.revokeGrantsOf(ctx, q, a.sql.revokeOfUser, id)
	})
}

// revokeGrantsOf revokes the active grants of a removed client or user
// (revokeOf: revokeOfClient or revokeOfUser), in the removal's transaction,
// so no refresh token outlives its registration (the resource server's
// revocation set picks them up via RevokedSince).
func (a *Auth) revokeGrantsOf(ctx context.Context, q Querier, revokeOf, id string) error {
	_, err := q.Exec(ctx, revokeOf, nullMS(a.clock.Now()), id)
	return err
}

// ---- grants ----

// CreateGrant stores a new grant; store.ErrExists when the id is taken.
func (a *Auth) CreateGrant(ctx context.Context, g store.Grant) error {
	if g.ID == "" {
		return a.d.wrap("create grant", errors.New("empty id"))
	}
	return a.write(ctx, "create grant", func(q Querier) error {
		n, err := q.Exec(ctx, a.sql.createGrant, g.ID, g.ClientID, g.UserID, g.Scope, g.Patient, g.Encounter,
			NullString(g.RefreshHash), nullMS(g.Created), nullMS(g.Expires), nullMS(g.Revoked))
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrExists
		}
		return nil
	})
}

func scanGrant(r Row) (store.Grant, error) {
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

// GetGrant returns a grant, or store.ErrNotFound.
func (a *Auth) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	return get(ctx, a, "get grant", scanGrant, a.sql.getGrant, id)
}

// RotateRefresh replaces the grant's current refresh hash oldHash with
// newHash (empty newHash leaves the grant without one) and remembers oldHash
// for reuse detection, in one transaction. The swap is one UPDATE ... WHERE
// refresh_hash = oldHash, so of concurrent rotations of one token exactly
// one succeeds. It returns store.ErrStale and changes nothing when oldHash
// is not the current hash or the grant is revoked, store.ErrNotFound when
// there is no such grant.
func (a *Auth) RotateRefresh(ctx context.Context, grantID, oldHash, newHash string) error {
	if oldHash == "" {
		return store.ErrStale
	}
	return a.write(ctx, "rotate refresh", func(q Querier) error {
		n, err := q.Exec(ctx, a.sql.rotate, NullString(newHash), grantID, oldHash)
		if err != nil {
			return err
		}
		if n == 0 {
			var one int
			err := q.QueryRow(ctx, a.sql.grantExists, grantID).Scan(&one)
			if noRows(err) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			return store.ErrStale
		}
		_, err = q.Exec(ctx, a.sql.retire, oldHash, grantID, a.clock.Now().UnixMilli())
		return err
	})
}

// FindGrantByRefresh returns the grant whose current refresh hash is h.
func (a *Auth) FindGrantByRefresh(ctx context.Context, h string) (store.Grant, error) {
	if h == "" {
		return store.Grant{}, store.ErrNotFound
	}
	return get(ctx, a, "find grant", scanGrant, a.sql.grantByRefresh, h)
}

// FindGrantByAnyRefresh returns the grant whose current or a rotated-away
// refresh hash is h.
func (a *Auth) FindGrantByAnyRefresh(ctx context.Context, h string) (store.Grant, error) {
	if h == "" {
		return store.Grant{}, store.ErrNotFound
	}
	return get(ctx, a, "find grant", scanGrant, a.sql.grantByAnyRefresh, h, h)
}

// RevokeGrant marks the grant revoked at at. Revoking a revoked grant keeps
// its first revocation time; an unknown grant is store.ErrNotFound.
func (a *Auth) RevokeGrant(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = a.clock.Now()
	}
	return a.write(ctx, "revoke grant", func(q Querier) error {
		return execOne(ctx, q, a.sql.revokeGrant, at.UnixMilli(), id)
	})
}

// RevokedSince lists the ids of grants revoked at or after t, ordered by
// revocation time then id.
func (a *Auth) RevokedSince(ctx context.Context, t time.Time) ([]string, error) {
	return list(ctx, a, "revoked since", func(r Row) (id string, err error) {
		return id, r.Scan(&id)
	}, a.sql.revokedSince, sinceMS(t))
}

// ---- signing keys ----

// PutKey creates or replaces a signing key (by kid).
func (a *Auth) PutKey(ctx context.Context, k store.SigningKey) error {
	if k.KID == "" || len(k.PrivatePEM) == 0 {
		return a.d.wrap("put key", errors.New("empty kid or key"))
	}
	return a.write(ctx, "put key", func(q Querier) error {
		_, err := q.Exec(ctx, a.sql.putKey, k.KID, k.Alg, k.PrivatePEM, nullMS(k.Created), nullMS(k.Retired))
		return err
	})
}

// ListKeys returns every signing key, oldest first.
func (a *Auth) ListKeys(ctx context.Context) ([]store.SigningKey, error) {
	return list(ctx, a, "list keys", func(r Row) (store.SigningKey, error) {
		var k store.SigningKey
		var created, retired *int64
		if err := r.Scan(&k.KID, &k.Alg, &k.PrivatePEM, &created, &retired); err != nil {
			return store.SigningKey{}, err
		}
		k.Created, k.Retired = msOrZero(created), msOrZero(retired)
		return k, nil
	}, a.sql.listKeys)
}
