package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

// Test doubles and a harness for the token endpoint, introspection and
// revocation tests (engineer D). Prefix td* keeps them apart from the other
// test files of the package.

type tdClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tdClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *tdClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tdStore is an in-memory store.AuthStore.
type tdStore struct {
	mu      sync.Mutex
	clients map[string]store.Client
	users   map[string]store.User
	grants  map[string]store.Grant
	rotated map[string]string // old refresh hash -> grant id
	keys    []store.SigningKey
}

var _ store.AuthStore = (*tdStore)(nil)

func newTDStore() *tdStore {
	return &tdStore{clients: map[string]store.Client{}, users: map[string]store.User{},
		grants: map[string]store.Grant{}, rotated: map[string]string{}}
}

func (s *tdStore) PutClient(_ context.Context, c store.Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = c
	return nil
}
func (s *tdStore) GetClient(_ context.Context, id string) (store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return c, nil
}
func (s *tdStore) ListClients(context.Context) ([]store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Client
	for _, c := range s.clients {
		out = append(out, c)
	}
	return out, nil
}
func (s *tdStore) DeleteClient(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, id)
	return nil
}
func (s *tdStore) PutUser(_ context.Context, u store.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.ID] = u
	return nil
}
func (s *tdStore) GetUser(_ context.Context, id string) (store.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}
func (s *tdStore) ListUsers(context.Context) ([]store.User, error) { return nil, nil }
func (s *tdStore) DeleteUser(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, id)
	return nil
}
func (s *tdStore) CreateGrant(_ context.Context, g store.Grant) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.grants[g.ID]; ok {
		return store.ErrExists
	}
	s.grants[g.ID] = g
	return nil
}
func (s *tdStore) GetGrant(_ context.Context, id string) (store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return store.Grant{}, store.ErrNotFound
	}
	return g, nil
}
func (s *tdStore) RotateRefresh(_ context.Context, id, oldHash, newHash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return store.ErrNotFound
	}
	if g.RefreshHash != oldHash {
		return store.ErrStale
	}
	s.rotated[oldHash] = id
	g.RefreshHash = newHash
	s.grants[id] = g
	return nil
}
func (s *tdStore) FindGrantByRefresh(_ context.Context, h string) (store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		if g.RefreshHash != "" && g.RefreshHash == h {
			return g, nil
		}
	}
	return store.Grant{}, store.ErrNotFound
}
func (s *tdStore) FindGrantByAnyRefresh(ctx context.Context, h string) (store.Grant, error) {
	if g, err := s.FindGrantByRefresh(ctx, h); err == nil {
		return g, nil
	}
	s.mu.Lock()
	id, ok := s.rotated[h]
	s.mu.Unlock()
	if !ok {
		return store.Grant{}, store.ErrNotFound
	}
	return s.GetGrant(ctx, id)
}
func (s *tdStore) RevokeGrant(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return store.ErrNotFound
	}
	if g.Revoked.IsZero() {
		g.Revoked = at
		s.grants[id] = g
	}
	return nil
}
func (s *tdStore) RevokedSince(_ context.Context, t time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, g := range s.grants {
		if !g.Revoked.IsZero() && !g.Revoked.Before(t) {
			out = append(out, id)
		}
	}
	return out, nil
}
func (s *tdStore) PutKey(_ context.Context, k store.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.keys {
		if s.keys[i].KID == k.KID {
			s.keys[i] = k
			return nil
		}
	}
	s.keys = append(s.keys, k)
	return nil
}
func (s *tdStore) ListKeys(context.Context) ([]store.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.SigningKey(nil), s.keys...), nil
}

func (s *tdStore) grant(t *testing.T, id string) store.Grant {
	t.Helper()
	g, err := s.GetGrant(context.Background(), id)
	if err != nil {
		t.Fatalf("grant %s: %v", id, err)
	}
	return g
}

// Registered test clients and users.
const (
	tdRedirect   = "https://app.example/cb"
	tdOrigin     = "https://app.example"
	tdSecret     = "s3cret-of-conf"
	tdPatientRef = "Patient/p1"
)

// tdKey is a client signing key with its public JWK.
type tdKey struct {
	kid  string
	alg  string
	priv any
	jwk  jose.JSONWebKey
}

func newTDKey(t testing.TB, alg, kid string) tdKey {
	t.Helper()
	var priv, pub any
	switch alg {
	case "RS384":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, &k.PublicKey
	case "ES384":
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, &k.PublicKey
	}
	return tdKey{kid: kid, alg: alg, priv: priv, jwk: jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}}
}

func tdJWKS(t testing.TB, keys ...tdKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Client keys are generated once for the package's tests (RSA keygen is slow).
var (
	tdKeysOnce sync.Once
	tdKeys     [4]tdKey
	tdHashOnce sync.Once
	tdHash     string
	tdHashErr  error
)

type tdEnv struct {
	t     testing.TB
	srv   *httptest.Server
	s     *Server
	st    *tdStore
	eph   *memory.Ephemeral
	clock *tdClock

	rs, es, esURL, other tdKey
	jwksHits             atomic.Int64
	jwksURL              string
}

func newTDEnv(t testing.TB) *tdEnv {
	t.Helper()
	ctx := context.Background()
	env := &tdEnv{t: t, st: newTDStore(), clock: &tdClock{t: time.Now().Truncate(time.Second)}}
	env.eph = memory.NewEphemeral(env.clock)
	keys, err := LoadKeySet(ctx, env.st, env.clock)
	if err != nil {
		t.Fatal(err)
	}
	tdKeysOnce.Do(func() {
		tdKeys = [4]tdKey{newTDKey(t, "RS384", "rs1"), newTDKey(t, "ES384", "es1"),
			newTDKey(t, "ES384", "es-url"), newTDKey(t, "RS384", "rs1")}
	})
	// other has the kid of rs but is not registered.
	env.rs, env.es, env.esURL, env.other = tdKeys[0], tdKeys[1], tdKeys[2], tdKeys[3]

	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.jwksHits.Add(1)
		if r.Header.Get("Accept") != "application/json" {
			http.Error(w, "accept", http.StatusNotAcceptable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(tdJWKS(t, env.esURL))
	}))
	t.Cleanup(jwksSrv.Close)
	env.jwksURL = jwksSrv.URL + "/jwks.json"

	e := echo.New()
	env.srv = httptest.NewServer(e)
	t.Cleanup(env.srv.Close)
	env.s = New(Options{BaseURL: env.srv.URL, Clients: env.st, Users: env.st, Grants: env.st, Ephemeral: env.eph,
		Keys: keys, Clock: env.clock})
	revs, err := NewRevocations(ctx, env.st, env.clock)
	if err != nil {
		t.Fatal(err)
	}
	env.s.Tokens().SetRevocations(revs)
	env.s.Register(e)

	tdHashOnce.Do(func() { tdHash, tdHashErr = HashPassword(tdSecret) })
	hash, err := tdHash, tdHashErr
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []store.Client{
		{ID: "pub", Kind: store.ClientPublic, RedirectURIs: []string{tdRedirect}, Origins: []string{tdOrigin}},
		{ID: "pub2", Kind: store.ClientPublic, RedirectURIs: []string{tdRedirect}},
		{ID: "conf", Kind: store.ClientSymmetric, SecretHash: hash, RedirectURIs: []string{tdRedirect}},
		{ID: "bk", Kind: store.ClientBackend, JWKS: tdJWKS(t, env.rs, env.es), Scopes: []string{"system/*.rs", "system/Observation.cruds"}},
		{ID: "bkurl", Kind: store.ClientBackend, JWKSURL: env.jwksURL, Scopes: []string{"system/*.rs"}},
		{ID: "bkbad", Kind: store.ClientBackend, SecretHash: hash, JWKS: tdJWKS(t, env.rs), Scopes: []string{"system/*.rs"}},
		{ID: "asym", Kind: store.ClientAsymmetric, JWKS: tdJWKS(t, env.rs), RedirectURIs: []string{tdRedirect}, Scopes: []string{"system/*.rs"}},
	} {
		if err := env.st.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []store.User{
		{ID: "alice", Role: store.RolePatient, FHIRUser: tdPatientRef},
		{ID: "drbob", Role: store.RoleClinician, FHIRUser: "Practitioner/pr1"},
	} {
		if err := env.st.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// code stores an authorization code the way /auth/authorize does and
// returns it with its PKCE verifier.
func (env *tdEnv) code(ac AuthCode) (code, verifier string) {
	env.t.Helper()
	code = base64.RawURLEncoding.EncodeToString([]byte(uuid.NewString()))
	verifier = strings.Repeat("v", 10) + base64.RawURLEncoding.EncodeToString([]byte(uuid.NewString()+uuid.NewString()))
	sum := sha256.Sum256([]byte(verifier))
	if ac.ClientID == "" {
		ac.ClientID = "pub"
	}
	if ac.RedirectURI == "" {
		ac.RedirectURI = tdRedirect
	}
	if ac.UserID == "" {
		ac.UserID = "alice"
	}
	if ac.Scope == "" {
		ac.Scope = "launch/patient patient/*.rs openid fhirUser offline_access"
		ac.Patient = "p1"
	}
	ac.CodeChallenge = base64.RawURLEncoding.EncodeToString(sum[:])
	ac.GrantID = uuid.NewString()
	ac.AuthTime = env.clock.Now()
	b, _ := json.Marshal(ac)
	if err := env.eph.Put(context.Background(), CodeKey(code), b, CodeTTL); err != nil {
		env.t.Fatal(err)
	}
	return code, verifier
}

// tdResp is a response with its decoded JSON body.
type tdResp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r tdResp) str(k string) string { s, _ := r.body[k].(string); return s }

// post sends a form; hdr adds headers ("Authorization" etc.).
func (env *tdEnv) post(path string, form url.Values, hdr ...string) tdResp {
	env.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, env.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return env.do(req)
}

func (env *tdEnv) do(req *http.Request) tdResp {
	env.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := tdResp{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if len(b) > 0 {
		_ = json.Unmarshal(b, &out.body)
	}
	return out
}

// wantError checks an RFC 6749 §5.2 error response.
func wantError(t *testing.T, r tdResp, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, code)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Errorf("error response caching headers: %q %q", r.header.Get("Cache-Control"), r.header.Get("Pragma"))
	}
}

// exchange redeems a code for client pub.
func (env *tdEnv) exchange(code, verifier string) tdResp {
	env.t.Helper()
	return env.post("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {tdRedirect}, "code_verifier": {verifier}, "client_id": {"pub"}})
}

// assertion builds a client assertion for iss signed by k; mutate edits
// claims and header before signing.
func (env *tdEnv) assertion(k tdKey, iss string, mutate func(c jwt.MapClaims, h map[string]any)) string {
	env.t.Helper()
	now := env.clock.Now()
	c := jwt.MapClaims{"iss": iss, "sub": iss, "aud": env.s.opts.TokenEndpoint(),
		"exp": now.Add(4 * time.Minute).Unix(), "jti": uuid.NewString()}
	var m jwt.SigningMethod = jwt.SigningMethodRS384
	if k.alg == "ES384" {
		m = jwt.SigningMethodES384
	}
	tok := jwt.NewWithClaims(m, c)
	tok.Header["kid"] = k.kid
	if mutate != nil {
		mutate(c, tok.Header)
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		env.t.Fatal(err)
	}
	return s
}

// backend requests a client_credentials token with an assertion.
func (env *tdEnv) backend(assertion, scope string) tdResp {
	env.t.Helper()
	return env.post("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {JWTBearerAssertionType}, "client_assertion": {assertion}})
}

// active introspects tok as the backend client "bk" with a fresh
// system/*.rs token and reports whether it is active.
func (env *tdEnv) active(tok string) bool {
	env.t.Helper()
	bt := env.backend(env.assertion(env.rs, "bk", nil), "system/*.rs")
	if bt.status != 200 {
		env.t.Fatalf("backend token: %d %s", bt.status, bt.raw)
	}
	r := env.post("/auth/introspect", url.Values{"token": {tok}}, "Authorization", "Bearer "+bt.str("access_token"))
	if r.status != 200 {
		env.t.Fatalf("introspect: %d %s", r.status, r.raw)
	}
	a, _ := r.body["active"].(bool)
	return a
}

func pkceS256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func jwtSegment(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
