package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

// Test fakes at the I/O seams (prefixed az to stay clear of the other auth
// test files): map-backed Clients and Users, a settable clock and a fixed
// patient directory. Ephemeral is the real in-memory twin.

type azClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *azClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *azClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type azStore struct {
	mu      sync.Mutex
	clients map[string]store.Client
	users   map[string]store.User
	// failClients and failUsers, when set, are returned by GetClient and
	// GetUser.
	failClients, failUsers error
}

var (
	_ Clients = (*azStore)(nil)
	_ Users   = (*azStore)(nil)
)

func (s *azStore) GetClient(_ context.Context, id string) (store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failClients != nil {
		return store.Client{}, s.failClients
	}
	c, ok := s.clients[id]
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return c, nil
}

func (s *azStore) ListClients(context.Context) ([]store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Client
	for _, c := range s.clients {
		out = append(out, c)
	}
	return out, nil
}

func (s *azStore) GetUser(_ context.Context, id string) (store.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failUsers != nil {
		return store.User{}, s.failUsers
	}
	u, ok := s.users[id]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}

type azPatients struct{ list []PatientSummary }

func (p azPatients) FindPatients(_ context.Context, q string, limit int) ([]PatientSummary, error) {
	var out []PatientSummary
	for _, s := range p.list {
		if strings.HasPrefix(strings.ToLower(s.Name), strings.ToLower(q)) && len(out) < limit {
			out = append(out, s)
		}
	}
	return out, nil
}

func (p azPatients) PatientExists(_ context.Context, id string) (bool, error) {
	return slices.ContainsFunc(p.list, func(s PatientSummary) bool { return s.ID == id }), nil
}

const (
	azBase     = "https://kb.example"
	azFHIR     = azBase + "/fhir"
	azRedirect = "https://app.example/cb"
	azVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-verifier-for-tests"
	azState    = "st-98765"
)

var (
	azHashOnce sync.Once
	azHashes   map[string]string
)

// azPasswordHashes hashes the test passwords once (Argon2id is slow on purpose).
func azPasswordHashes(t testing.TB) map[string]string {
	azHashOnce.Do(func() {
		azHashes = map[string]string{}
		for _, pw := range []string{"pat-pw", "doc-pw", "off-pw"} {
			h, err := HashPassword(pw)
			if err != nil {
				panic(err)
			}
			azHashes[pw] = h
		}
	})
	return azHashes
}

func azChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

type azEnv struct {
	t     *testing.T
	srv   *httptest.Server
	st    *azStore
	eph   *memory.Ephemeral
	clock *azClock
}

func newAZEnv(t *testing.T, secure bool) *azEnv {
	t.Helper()
	h := azPasswordHashes(t)
	clock := &azClock{t: time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)}
	scopes := []string{"openid", "fhirUser", "launch", "launch/patient", "offline_access",
		"patient/*.rs", "user/*.rs"}
	st := &azStore{
		clients: map[string]store.Client{
			"app": {ID: "app", Name: "Mood Tracker", Kind: store.ClientPublic, RedirectURIs: []string{azRedirect, "https://app.example/cb2?x=1"},
				LaunchURL: "https://app.example/launch", Scopes: scopes},
			"other": {ID: "other", Name: "Other App", Kind: store.ClientPublic, RedirectURIs: []string{"https://other.example/cb"},
				LaunchURL: "https://other.example/launch", Scopes: scopes},
			"narrow": {ID: "narrow", Name: "Narrow App", Kind: store.ClientPublic, RedirectURIs: []string{"https://narrow.example/cb"},
				Scopes: []string{"openid", "patient/Observation.rs", "patient/Patient.r"}},
			"backend": {ID: "backend", Name: "Bulk", Kind: store.ClientBackend, RedirectURIs: []string{"https://backend.example/cb"},
				LaunchURL: "https://backend.example/launch", Scopes: []string{"system/*.rs"}},
		},
		users: map[string]store.User{
			"pat":  {ID: "pat", Name: "Pat Example", Role: store.RolePatient, PasswordHash: h["pat-pw"], FHIRUser: "Patient/p1"},
			"doc":  {ID: "doc", Name: "Dr Doc", Role: store.RoleClinician, PasswordHash: h["doc-pw"], FHIRUser: "Practitioner/d1"},
			"doc2": {ID: "doc2", Name: "Dr Two", Role: store.RoleClinician, PasswordHash: h["doc-pw"], FHIRUser: "Practitioner/d2"},
			"off":  {ID: "off", Name: "Gone", Role: store.RoleClinician, PasswordHash: h["off-pw"], Disabled: true},
		},
	}
	eph := memory.NewEphemeral(clock)
	s := New(Options{
		BaseURL:   azBase,
		Clients:   st,
		Users:     st,
		Ephemeral: eph,
		Patients: azPatients{list: []PatientSummary{
			{ID: "p1", Name: "Pat Example", BirthDate: "1980-01-01"},
			{ID: "p2", Name: "Sam Smith", BirthDate: "1975-05-05"},
			{ID: "p3", Name: "Sue Smythe"},
		}},
		Clock:         clock,
		SecureCookies: secure,
	})
	e := echo.New()
	s.mountAuthorize(routes{e: e, g: e.Group("/auth")})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &azEnv{t: t, srv: srv, st: st, eph: eph, clock: clock}
}

// browser is a cookie-keeping client that does not follow redirects.
func (env *azEnv) browser() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		env.t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type azResp struct {
	status int
	header http.Header
	body   string
}

func (r azResp) location() *url.URL {
	u, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		return &url.URL{}
	}
	return u
}

func (env *azEnv) do(b *http.Client, method, path string, form url.Values) azResp {
	env.t.Helper()
	target := path
	if !strings.HasPrefix(path, "http") {
		target = env.srv.URL + path
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		env.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.Do(req)
	if err != nil {
		env.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return azResp{status: res.StatusCode, header: res.Header, body: string(raw)}
}

// azParams are a valid standalone authorization request.
func azParams(scope string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {"app"},
		"redirect_uri":          {azRedirect},
		"scope":                 {scope},
		"state":                 {azState},
		"aud":                   {azFHIR},
		"code_challenge":        {azChallenge(azVerifier)},
		"code_challenge_method": {"S256"},
		"nonce":                 {"n-1"},
	}
}

func (env *azEnv) authorize(b *http.Client, p url.Values) azResp {
	env.t.Helper()
	return env.do(b, http.MethodGet, "/auth/authorize?"+p.Encode(), nil)
}

var azHiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// hidden returns the hidden inputs of the page's last form that has them.
func hidden(body string) map[string]string {
	m := map[string]string{}
	for _, sm := range azHiddenRE.FindAllStringSubmatch(body, -1) {
		m[sm[1]] = html.UnescapeString(sm[2])
	}
	return m
}

var azCheckboxRE = regexp.MustCompile(`<input type="(checkbox|radio)" name="([a-z_]+)" value="([^"]*)"`)

// inputs returns the values of the page's checkboxes/radios named name.
func inputs(body, name string) []string {
	var out []string
	for _, sm := range azCheckboxRE.FindAllStringSubmatch(body, -1) {
		if sm[2] == name {
			out = append(out, html.UnescapeString(sm[3]))
		}
	}
	return out
}

// startFlow sends an authorization request and follows it to the consent
// URL; it returns that page (login or consent) and the rid.
func (env *azEnv) startFlow(b *http.Client, p url.Values) (azResp, string) {
	env.t.Helper()
	r := env.authorize(b, p)
	if r.status != http.StatusSeeOther || r.location().Path != "/auth/consent" {
		env.t.Fatalf("authorize: status %d location %q body %.300s", r.status, r.header.Get("Location"), r.body)
	}
	rid := r.location().Query().Get("rid")
	return env.do(b, http.MethodGet, r.header.Get("Location"), nil), rid
}

// login posts the login form of page and expects the redirect back.
func (env *azEnv) login(b *http.Client, page azResp, user, pw string) azResp {
	env.t.Helper()
	h := hidden(page.body)
	r := env.do(b, http.MethodPost, "/auth/login", url.Values{"csrf": {h["csrf"]}, "rid": {h["rid"]}, "next": {h["next"]},
		"username": {user}, "password": {pw}})
	if r.status != http.StatusSeeOther {
		env.t.Fatalf("login: status %d body %.400s", r.status, r.body)
	}
	return env.do(b, http.MethodGet, r.header.Get("Location"), nil)
}

// consent posts the consent form of page with the given choices.
func (env *azEnv) consent(b *http.Client, page azResp, action string, scopes, subs []string, patient string) azResp {
	env.t.Helper()
	h := hidden(page.body)
	f := url.Values{"csrf": {h["csrf"]}, "rid": {h["rid"]}, "action": {action}, "scope": scopes, "sub": subs}
	if patient != "" {
		f.Set("patient", patient)
	}
	return env.do(b, http.MethodPost, "/auth/consent", f)
}

// code reads the AuthCode stored for the code in a successful redirect.
func (env *azEnv) code(r azResp) (string, AuthCode) {
	env.t.Helper()
	if r.status != http.StatusFound {
		env.t.Fatalf("consent: status %d body %.400s", r.status, r.body)
	}
	loc := r.location()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != azRedirect {
		env.t.Fatalf("redirected to %q", got)
	}
	if loc.Query().Get("state") != azState {
		env.t.Fatalf("state = %q", loc.Query().Get("state"))
	}
	code := loc.Query().Get("code")
	raw, err := env.eph.Get(context.Background(), CodeKey(code))
	if err != nil {
		env.t.Fatalf("code not stored: %v", err)
	}
	var ac AuthCode
	if err := json.Unmarshal(raw, &ac); err != nil {
		env.t.Fatal(err)
	}
	return code, ac
}

func TestAuthorizeNeverRedirectsBadClientOrRedirectURI(t *testing.T) {
	env := newAZEnv(t, false)
	tests := []struct {
		name string
		mod  func(url.Values)
	}{
		{"NEG-1 unknown client", func(v url.Values) { v.Set("client_id", "nope") }},
		{"missing client_id", func(v url.Values) { v.Del("client_id") }},
		{"backend client", func(v url.Values) { v.Set("client_id", "backend"); v.Set("redirect_uri", "https://backend.example/cb") }},
		{"NEG-2 missing redirect_uri", func(v url.Values) { v.Del("redirect_uri") }},
		{"NEG-2 trailing slash", func(v url.Values) { v.Set("redirect_uri", azRedirect+"/") }},
		{"NEG-2 case", func(v url.Values) { v.Set("redirect_uri", "https://APP.example/cb") }},
		{"NEG-2 path case", func(v url.Values) { v.Set("redirect_uri", "https://app.example/CB") }},
		{"NEG-2 extra query", func(v url.Values) { v.Set("redirect_uri", azRedirect+"?x=1") }},
		{"NEG-2 other port", func(v url.Values) { v.Set("redirect_uri", "https://app.example:8443/cb") }},
		{"NEG-2 other scheme", func(v url.Values) { v.Set("redirect_uri", "http://app.example/cb") }},
		{"NEG-2 evil host", func(v url.Values) { v.Set("redirect_uri", "https://evil.example") }},
		{"NEG-2 another client's uri", func(v url.Values) { v.Set("redirect_uri", "https://other.example/cb") }},
		{"repeated redirect_uri", func(v url.Values) { v.Add("redirect_uri", azRedirect) }},
		// Even with every other parameter wrong, a bad redirect_uri is never used.
		{"NEG-2 with bad response_type", func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb"); v.Set("response_type", "token") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := azParams("openid patient/*.rs")
			tc.mod(p)
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				var r azResp
				if method == http.MethodGet {
					r = env.authorize(env.browser(), p)
				} else {
					r = env.do(env.browser(), method, "/auth/authorize", p)
				}
				if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
					t.Fatalf("%s: status %d location %q, want 400 and no redirect", method, r.status, r.header.Get("Location"))
				}
				if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
					t.Errorf("content type %q", r.header.Get("Content-Type"))
				}
			}
		})
	}
}

func TestAuthorizeErrorRedirects(t *testing.T) {
	env := newAZEnv(t, false)
	ctx := context.Background()
	putLaunch := func(id string, lc LaunchContext) {
		raw, _ := json.Marshal(lc)
		if err := env.eph.Put(ctx, LaunchKey(id), raw, LaunchTTL); err != nil {
			t.Fatal(err)
		}
	}
	putLaunch("launch-expired", LaunchContext{ClientID: "app", UserID: "doc", Patient: "p2"})
	env.clock.Add(LaunchTTL + time.Second)
	putLaunch("launch-other-client", LaunchContext{ClientID: "other", UserID: "doc", Patient: "p2"})
	tests := []struct {
		name      string
		mod       func(url.Values)
		wantError string
		noState   bool
	}{
		{"NEG-3 foreign aud", func(v url.Values) { v.Set("aud", "https://inferno.example/invalid_aud") }, "invalid_request", false},
		{"NEG-3 aud with trailing slash", func(v url.Values) { v.Set("aud", azFHIR+"/") }, "invalid_request", false},
		{"NEG-3 missing aud", func(v url.Values) { v.Del("aud") }, "invalid_request", false},
		{"NEG-4 missing code_challenge", func(v url.Values) { v.Del("code_challenge") }, "invalid_request", false},
		{"NEG-4 plain method", func(v url.Values) { v.Set("code_challenge_method", "plain") }, "invalid_request", false},
		{"NEG-4 missing method", func(v url.Values) { v.Del("code_challenge_method") }, "invalid_request", false},
		{"NEG-4 challenge not a digest", func(v url.Values) { v.Set("code_challenge", "short") }, "invalid_request", false},
		{"NEG-5 response_type token", func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type", false},
		{"missing response_type", func(v url.Values) { v.Del("response_type") }, "invalid_request", false},
		{"NEG-6 missing state", func(v url.Values) { v.Del("state") }, "invalid_request", true},
		{"NEG-7 bogus launch", func(v url.Values) { v.Set("launch", "bogus") }, "invalid_request", false},
		{"NEG-7 expired launch", func(v url.Values) { v.Set("launch", "launch-expired") }, "invalid_request", false},
		{"NEG-7 launch of another client", func(v url.Values) { v.Set("launch", "launch-other-client") }, "invalid_request", false},
		{"NEG-9 out of order dus", func(v url.Values) { v.Set("scope", "openid patient/Observation.dus") }, "invalid_scope", false},
		{"NEG-9 reads suffix", func(v url.Values) { v.Set("scope", "patient/Observation.reads") }, "invalid_scope", false},
		{"nothing allowed", func(v url.Values) { v.Set("scope", "system/*.rs") }, "invalid_scope", false},
		{"empty scope", func(v url.Values) { v.Del("scope") }, "invalid_scope", false},
		{"repeated scope", func(v url.Values) { v.Add("scope", "patient/*.rs") }, "invalid_request", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := azParams("openid fhirUser launch patient/*.rs")
			tc.mod(p)
			r := env.authorize(env.browser(), p)
			if r.status != http.StatusFound {
				t.Fatalf("status %d, want 302; body %.300s", r.status, r.body)
			}
			loc := r.location()
			if base := loc.Scheme + "://" + loc.Host + loc.Path; base != azRedirect {
				t.Fatalf("redirected to %q", base)
			}
			q := loc.Query()
			if q.Get("error") != tc.wantError {
				t.Errorf("error = %q (%s), want %q", q.Get("error"), q.Get("error_description"), tc.wantError)
			}
			if q.Has("code") {
				t.Error("a code was issued")
			}
			wantState := azState
			if tc.noState {
				wantState = ""
			}
			if q.Get("state") != wantState {
				t.Errorf("state = %q, want %q", q.Get("state"), wantState)
			}
			if strings.Contains(r.header.Get("Location"), "p2") {
				t.Error("launch context leaked into the redirect")
			}
		})
	}
	// NEG-7: the launch of another client is not consumed by the failed
	// attempt.
	if _, err := env.eph.Get(ctx, LaunchKey("launch-other-client")); err != nil {
		t.Errorf("another client's launch was consumed: %v", err)
	}
}

func TestAuthorizeKeepsRegisteredQueryOnRedirect(t *testing.T) {
	env := newAZEnv(t, false)
	p := azParams("openid")
	p.Set("redirect_uri", "https://app.example/cb2?x=1")
	p.Set("response_type", "token")
	r := env.authorize(env.browser(), p)
	if got := r.header.Get("Location"); !strings.HasPrefix(got, "https://app.example/cb2?x=1&") || r.location().Query().Get("error") != "unsupported_response_type" {
		t.Fatalf("Location %q", got)
	}
}

func TestStandalonePatientUser(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	p := azParams("openid fhirUser launch/patient patient/*.rs offline_access")
	// AZ-1: the request comes as a form POST (SMART authorize-post).
	r := env.do(b, http.MethodPost, "/auth/authorize", p)
	if r.status != http.StatusSeeOther {
		t.Fatalf("POST authorize: %d %.300s", r.status, r.body)
	}
	page := env.do(b, http.MethodGet, r.header.Get("Location"), nil)
	if page.status != http.StatusOK || !strings.Contains(page.body, `action="/auth/login"`) || !strings.Contains(page.body, "Mood Tracker") {
		t.Fatalf("want the login page naming the app, got %d %.300s", page.status, page.body)
	}
	azCheckPageHeaders(t, page)
	env.clock.Add(time.Second)
	loginAt := env.clock.Now()
	page = env.login(b, page, "pat", "pat-pw")
	if !strings.Contains(page.body, `action="/auth/consent"`) {
		t.Fatalf("want the consent page, got %.400s", page.body)
	}
	if got := inputs(page.body, "patient"); len(got) != 0 {
		t.Errorf("a patient user got a picker: %v", got)
	}
	offered := inputs(page.body, "scope")
	if want := []string{"openid", "fhirUser", "launch/patient", "patient/*.rs", "offline_access"}; !slices.Equal(offered, want) {
		t.Errorf("offered %v, want %v", offered, want)
	}
	env.clock.Add(time.Minute)
	code, ac := env.code(env.consent(b, page, "approve", offered, nil, ""))
	if len(code) != 43 || !validOpaque(code) {
		t.Errorf("code %q is not 32 random bytes base64url", code)
	}
	if _, err := uuid.Parse(ac.GrantID); err != nil {
		t.Errorf("GrantID %q: %v", ac.GrantID, err)
	}
	want := AuthCode{ClientID: "app", RedirectURI: azRedirect, CodeChallenge: azChallenge(azVerifier),
		Scope: "openid fhirUser launch/patient patient/*.rs offline_access", UserID: "pat", Patient: "p1",
		NeedBanner: true, Nonce: "n-1", AuthTime: loginAt, GrantID: ac.GrantID}
	if !ac.AuthTime.Equal(want.AuthTime) {
		t.Errorf("AuthTime %v, want %v", ac.AuthTime, want.AuthTime)
	}
	ac.AuthTime = want.AuthTime
	if ac != want {
		t.Errorf("AuthCode\n got %+v\nwant %+v", ac, want)
	}
	// AZ-7: the code lives CodeTTL.
	env.clock.Add(CodeTTL)
	if _, err := env.eph.Get(context.Background(), CodeKey(code)); err == nil {
		t.Error("code still stored after CodeTTL")
	}
	// The pending request is used up: posting the form again fails.
	if r := env.consent(b, page, "approve", offered, nil, ""); r.status != http.StatusBadRequest {
		t.Errorf("second approve: %d", r.status)
	}
	// A second authorization in the same browser skips the login.
	page, _ = env.startFlow(b, azParams("openid patient/*.rs"))
	if !strings.Contains(page.body, `action="/auth/consent"`) {
		t.Errorf("signed-in user sees %.200s", page.body)
	}
}

func azCheckPageHeaders(t *testing.T, r azResp) {
	t.Helper()
	for k, v := range map[string]string{
		"Cache-Control":   "no-store",
		"X-Frame-Options": "DENY",
		"Referrer-Policy": "no-referrer",
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
}

func TestStandaloneClinicianPicksPatient(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	page, rid := env.startFlow(b, azParams("openid fhirUser launch/patient patient/*.rs"))
	page = env.login(b, page, "doc", "doc-pw")
	if got := inputs(page.body, "patient"); !slices.Equal(got, []string{"p1", "p2", "p3"}) {
		t.Fatalf("picker lists %v", got)
	}
	// The search box narrows the list.
	search := env.do(b, http.MethodGet, "/auth/consent?"+url.Values{"rid": {rid}, "q": {"s"}}.Encode(), nil)
	if got := inputs(search.body, "patient"); !slices.Equal(got, []string{"p2", "p3"}) {
		t.Errorf("search s lists %v", got)
	}
	all := inputs(page.body, "scope")
	tests := []struct {
		name, patient, wantMsg string
	}{
		{"no patient chosen", "", "Choose the patient."},
		{"unknown patient", "p404", "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := env.consent(b, page, "approve", all, nil, tc.patient)
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, tc.wantMsg) {
				t.Fatalf("status %d, want 400 with %q; %.300s", r.status, tc.wantMsg, r.body)
			}
		})
	}
	_, ac := env.code(env.consent(b, page, "approve", all, nil, "p2"))
	if ac.Patient != "p2" || ac.UserID != "doc" || !ac.NeedBanner || ac.EHRLaunch {
		t.Errorf("AuthCode %+v", ac)
	}
}

func TestClinicianWithoutPatientScopesGetsNoPicker(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	page, _ := env.startFlow(b, azParams("openid fhirUser user/*.rs"))
	page = env.login(b, page, "doc", "doc-pw")
	if got := inputs(page.body, "patient"); len(got) != 0 {
		t.Fatalf("picker shown: %v", got)
	}
	_, ac := env.code(env.consent(b, page, "approve", inputs(page.body, "scope"), nil, "p2"))
	if ac.Patient != "" || ac.Scope != "openid fhirUser user/*.rs" {
		t.Errorf("AuthCode %+v", ac)
	}
}

func TestEHRLaunch(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	// The launcher asks for a login first.
	page := env.do(b, http.MethodGet, "/auth/launch", nil)
	if page.status != http.StatusOK || hidden(page.body)["next"] != "launch" {
		t.Fatalf("launcher without session: %d %.300s", page.status, page.body)
	}
	page = env.login(b, page, "doc", "doc-pw")
	apps := inputs(page.body, "client_id")
	if !slices.Equal(apps, []string{"app", "other"}) {
		t.Errorf("launcher offers %v (backend and apps without a launch URL must not show)", apps)
	}
	h := hidden(page.body)
	if r := env.do(b, http.MethodPost, "/auth/launch", url.Values{"client_id": {"app"}, "patient": {"p2"}}); r.status != http.StatusForbidden {
		t.Errorf("launch without CSRF: %d", r.status)
	}
	if r := env.do(b, http.MethodPost, "/auth/launch", url.Values{"csrf": {h["csrf"]}, "client_id": {"app"}, "patient": {"p404"}}); r.status != http.StatusBadRequest {
		t.Errorf("launch unknown patient: %d", r.status)
	}
	if r := env.do(b, http.MethodPost, "/auth/launch", url.Values{"csrf": {h["csrf"]}, "client_id": {"backend"}, "patient": {"p2"}}); r.status != http.StatusBadRequest {
		t.Errorf("launch backend client: %d", r.status)
	}
	r := env.do(b, http.MethodPost, "/auth/launch", url.Values{"csrf": {h["csrf"]}, "client_id": {"app"}, "patient": {"p2"}})
	if r.status != http.StatusFound {
		t.Fatalf("launch: %d %.300s", r.status, r.body)
	}
	loc := r.location()
	if loc.Scheme+"://"+loc.Host+loc.Path != "https://app.example/launch" || loc.Query().Get("iss") != azFHIR {
		t.Fatalf("launch redirect %q", r.header.Get("Location"))
	}
	launch := loc.Query().Get("launch")
	raw, err := env.eph.Get(context.Background(), LaunchKey(launch))
	if err != nil {
		t.Fatalf("launch context not stored: %v", err)
	}
	var lc LaunchContext
	_ = json.Unmarshal(raw, &lc)
	if lc != (LaunchContext{ClientID: "app", UserID: "doc", Patient: "p2"}) {
		t.Errorf("LaunchContext %+v", lc)
	}

	// The app authorizes with the launch id (g10 POSTs).
	p := azParams("launch openid fhirUser patient/Patient.rs")
	p.Set("launch", launch)
	ar := env.do(b, http.MethodPost, "/auth/authorize", p)
	if ar.status != http.StatusSeeOther {
		t.Fatalf("authorize with launch: %d %s", ar.status, ar.header.Get("Location"))
	}
	page = env.do(b, http.MethodGet, ar.header.Get("Location"), nil)
	if !strings.Contains(page.body, "Patient/p2") || len(inputs(page.body, "patient")) != 0 {
		t.Errorf("consent page should show the launch patient without a picker: %.500s", page.body)
	}
	_, ac := env.code(env.consent(b, page, "approve", inputs(page.body, "scope"), nil, "p3"))
	if ac.Patient != "p2" || !ac.EHRLaunch || ac.NeedBanner || ac.UserID != "doc" || ac.Scope != "launch openid fhirUser patient/Patient.rs" {
		t.Errorf("AuthCode %+v", ac)
	}
	// NEG-7: a launch id is single use.
	if r := env.authorize(b, p); r.location().Query().Get("error") != "invalid_request" {
		t.Errorf("reused launch: %d %s", r.status, r.header.Get("Location"))
	}
}

func TestEHRLaunchOfAnotherUserIsRefused(t *testing.T) {
	env := newAZEnv(t, false)
	raw, _ := json.Marshal(LaunchContext{ClientID: "app", UserID: "doc", Patient: "p2"})
	if err := env.eph.Put(context.Background(), LaunchKey("L1"), raw, LaunchTTL); err != nil {
		t.Fatal(err)
	}
	b := env.browser()
	p := azParams("launch patient/*.rs")
	p.Set("launch", "L1")
	page, _ := env.startFlow(b, p)
	if r := env.do(b, http.MethodPost, "/auth/login", url.Values{"csrf": {hidden(page.body)["csrf"]}, "rid": {hidden(page.body)["rid"]},
		"username": {"doc2"}, "password": {"doc-pw"}}); r.status != http.StatusSeeOther {
		t.Fatalf("login %d", r.status)
	} else if page = env.do(b, http.MethodGet, r.header.Get("Location"), nil); page.status != http.StatusForbidden || strings.Contains(page.body, "p2") {
		t.Errorf("other clinician: %d %.300s", page.status, page.body)
	}
}

func TestLauncherRefusesPatients(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	page := env.do(b, http.MethodGet, "/auth/login", nil)
	page = env.login(b, page, "pat", "pat-pw")
	if page.status != http.StatusForbidden {
		t.Errorf("patient at the launcher: %d", page.status)
	}
}

func TestConsentSubsetAndGranularScopes(t *testing.T) {
	tests := []struct {
		name          string
		request       string
		ticked, subs  []string
		extraForm     []string // offered nowhere: must be ignored
		wantScope     string
		wantSubsShown []string
	}{
		{name: "subset", request: "openid fhirUser launch/patient patient/Observation.rs patient/Condition.rs",
			ticked: []string{"launch/patient", "patient/Condition.rs"}, wantScope: "launch/patient patient/Condition.rs"},
		{name: "never widened by the form", request: "launch/patient patient/Condition.rs",
			ticked: []string{"patient/Condition.rs"}, extraForm: []string{"patient/*.cruds", "user/*.rs"}, wantScope: "patient/Condition.rs"},
		{name: "observation categories replace the type", request: "launch/patient patient/Observation.rs patient/Condition.rs",
			ticked:    []string{"launch/patient", "patient/Observation.rs", "patient/Condition.rs"},
			subs:      []string{"patient/Observation.rs?category=vital-signs", "patient/Observation.rs?category=laboratory"},
			wantScope: "launch/patient patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs patient/Condition.rs"},
		{name: "condition categories, type unticked", request: "patient/Condition.read",
			subs:      []string{"patient/Condition.rs?category=problem-list-item", "patient/Condition.rs?category=health-concern"},
			wantScope: "patient/Condition.rs?category=problem-list-item patient/Condition.rs?category=health-concern"},
		{name: "wildcard unticked narrows to categories", request: "patient/*.rs",
			subs: []string{"patient/Observation.rs?category=sdoh"}, wantScope: "patient/Observation.rs?category=sdoh"},
		{name: "ticked wildcard already covers categories", request: "patient/*.rs", ticked: []string{"patient/*.rs"},
			subs: []string{"patient/Observation.rs?category=sdoh"}, wantScope: "patient/*.rs"},
		{name: "category not offered for write scopes", request: "patient/Observation.cruds", ticked: []string{},
			subs: []string{"patient/Observation.cruds?category=sdoh"}, wantScope: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newAZEnv(t, false)
			env.st.clients["app"] = func() store.Client {
				c := env.st.clients["app"]
				c.Scopes = append(c.Scopes, "patient/*.cruds")
				return c
			}()
			b := env.browser()
			page, _ := env.startFlow(b, azParams(tc.request))
			page = env.login(b, page, "pat", "pat-pw")
			shown := inputs(page.body, "sub")
			for _, s := range tc.subs {
				if !slices.Contains(shown, s) && tc.wantScope != "" {
					t.Errorf("sub-scope %q not offered (offered %v)", s, shown)
				}
			}
			r := env.consent(b, page, "approve", append(slices.Clone(tc.ticked), tc.extraForm...), tc.subs, "")
			if tc.wantScope == "" {
				if r.status != http.StatusBadRequest {
					t.Fatalf("empty grant: %d", r.status)
				}
				return
			}
			_, ac := env.code(r)
			if ac.Scope != tc.wantScope {
				t.Errorf("Scope\n got %q\nwant %q", ac.Scope, tc.wantScope)
			}
		})
	}
}

func TestConsentOffersAllCategories(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	page, _ := env.startFlow(b, azParams("patient/Observation.rs patient/Condition.rs"))
	page = env.login(b, page, "pat", "pat-pw")
	want := []string{}
	for _, c := range subCategories["Observation"] {
		want = append(want, "patient/Observation.rs?category="+c)
	}
	for _, c := range subCategories["Condition"] {
		want = append(want, "patient/Condition.rs?category="+c)
	}
	if got := inputs(page.body, "sub"); !slices.Equal(got, want) {
		t.Errorf("sub-scopes\n got %v\nwant %v", got, want)
	}
	if len(want) != 9 {
		t.Errorf("AZ-11 lists 6 Observation and 3 Condition categories, have %d", len(want))
	}
}

func TestDeny(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	page, _ := env.startFlow(b, azParams("openid patient/*.rs"))
	page = env.login(b, page, "pat", "pat-pw")
	r := env.consent(b, page, "deny", inputs(page.body, "scope"), nil, "")
	q := r.location().Query()
	if r.status != http.StatusFound || q.Get("error") != "access_denied" || q.Get("state") != azState || q.Has("code") {
		t.Fatalf("NEG-8 deny: %d %s", r.status, r.header.Get("Location"))
	}
}

func TestCSRF(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	page, rid := env.startFlow(b, azParams("openid patient/*.rs"))
	good := hidden(page.body)["csrf"]
	tests := []struct {
		name, path string
		form       url.Values
	}{
		{"login missing", "/auth/login", url.Values{"rid": {rid}, "username": {"pat"}, "password": {"pat-pw"}}},
		{"login wrong", "/auth/login", url.Values{"csrf": {authzRandom(32)}, "rid": {rid}, "username": {"pat"}, "password": {"pat-pw"}}},
		{"login empty", "/auth/login", url.Values{"csrf": {""}, "rid": {rid}, "username": {"pat"}, "password": {"pat-pw"}}},
		{"consent wrong", "/auth/consent", url.Values{"csrf": {good + "x"}, "rid": {rid}, "action": {"approve"}, "scope": {"openid"}}},
		{"consent missing", "/auth/consent", url.Values{"rid": {rid}, "action": {"deny"}}},
		{"launch missing", "/auth/launch", url.Values{"client_id": {"app"}, "patient": {"p1"}}},
		{"logout missing", "/auth/logout", url.Values{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := env.do(b, http.MethodPost, tc.path, tc.form); r.status != http.StatusForbidden {
				t.Errorf("status %d, want 403", r.status)
			}
		})
	}
	t.Run("token without the cookie", func(t *testing.T) {
		other := env.browser() // a cross-site post: the form field but no cookie
		f := url.Values{"csrf": {good}, "rid": {rid}, "username": {"pat"}, "password": {"pat-pw"}}
		if r := env.do(other, http.MethodPost, "/auth/login", f); r.status != http.StatusForbidden {
			t.Errorf("status %d, want 403", r.status)
		}
	})
	// After all that, the real form still works.
	if page = env.login(b, page, "pat", "pat-pw"); !strings.Contains(page.body, `action="/auth/consent"`) {
		t.Error("valid login failed after CSRF rejections")
	}
}

func TestPendingRequestBoundToBrowser(t *testing.T) {
	env := newAZEnv(t, false)
	_, rid := env.startFlow(env.browser(), azParams("openid patient/*.rs"))
	r := env.do(env.browser(), http.MethodGet, consentURL(rid), nil)
	if r.status != http.StatusBadRequest || strings.Contains(r.body, `action="/auth/login"`) {
		t.Errorf("another browser: %d", r.status)
	}
	if r := env.do(env.browser(), http.MethodGet, consentURL(authzRandom(32)), nil); r.status != http.StatusBadRequest {
		t.Errorf("unknown rid: %d", r.status)
	}
}

func TestLoginFailuresAndThrottling(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	page, rid := env.startFlow(b, azParams("openid patient/*.rs"))
	csrf := hidden(page.body)["csrf"]
	post := func(user, pw string) azResp {
		return env.do(b, http.MethodPost, "/auth/login", url.Values{"csrf": {csrf}, "rid": {rid}, "username": {user}, "password": {pw}})
	}
	t.Run("disabled user", func(t *testing.T) {
		if r := post("off", "off-pw"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "wrong password") {
			t.Errorf("disabled: %d", r.status)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		if r := post("ghost", "x"); r.status != http.StatusBadRequest {
			t.Errorf("unknown: %d", r.status)
		}
	})
	for i := 1; i <= maxUserFailures; i++ {
		r := post("doc", "wrong")
		want := http.StatusBadRequest
		if i == maxUserFailures {
			want = http.StatusTooManyRequests
		}
		if r.status != want {
			t.Fatalf("failure %d: status %d, want %d", i, r.status, want)
		}
	}
	if r := post("doc", "doc-pw"); r.status != http.StatusTooManyRequests {
		t.Errorf("right password while locked: %d, want 429", r.status)
	}
	if r := post("DOC", "doc-pw"); r.status != http.StatusTooManyRequests {
		t.Errorf("case variant while locked: %d, want 429", r.status)
	}
	env.clock.Add(loginWindow + time.Second)
	// The pending request has expired meanwhile (pendingTTL): start again.
	if r := post("doc", "doc-pw"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "expired") {
		t.Errorf("expired request: %d", r.status)
	}
	page, rid = env.startFlow(b, azParams("openid patient/*.rs"))
	if r := post("doc", "doc-pw"); r.status != http.StatusSeeOther {
		t.Errorf("after the window: %d, want 303", r.status)
	}
	t.Run("per address", func(t *testing.T) {
		for i := 1; i <= maxIPFailures; i++ {
			r := post("user-"+string(rune('a'+i)), "wrong")
			if i == maxIPFailures && r.status != http.StatusTooManyRequests {
				t.Fatalf("failure %d: %d, want 429", i, r.status)
			}
		}
		if r := post("pat", "pat-pw"); r.status != http.StatusTooManyRequests {
			t.Errorf("other user from a locked address: %d, want 429", r.status)
		}
	})
}

func TestSessionCookie(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "secure"}[secure], func(t *testing.T) {
			env := newAZEnv(t, secure)
			b := env.browser()
			page, rid := env.startFlow(b, azParams("openid"))
			req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/auth/login", strings.NewReader(url.Values{
				"csrf": {hidden(page.body)["csrf"]}, "rid": {rid}, "username": {"pat"}, "password": {"pat-pw"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			u, _ := url.Parse(env.srv.URL + "/auth/login")
			for _, c := range b.Jar.Cookies(u) {
				req.AddCookie(c)
			}
			res, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			var sess *http.Cookie
			for _, c := range res.Cookies() {
				if c.Name == sessionCookie {
					sess = c
				}
			}
			if sess == nil {
				t.Fatal("no session cookie")
			}
			if !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/auth" || sess.Secure != secure || !validOpaque(sess.Value) {
				t.Errorf("cookie %+v", sess)
			}
		})
	}
}

func TestStyleJSON(t *testing.T) {
	env := newAZEnv(t, false)
	r := env.do(env.browser(), http.MethodGet, "/auth/style.json", nil)
	var m map[string]string
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &m) != nil || m["color_background"] == "" {
		t.Fatalf("style: %d %s", r.status, r.body)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || !strings.Contains(r.header.Get("Cache-Control"), "max-age") {
		t.Errorf("headers %v", r.header)
	}
}

func TestNarrowScopes(t *testing.T) {
	tests := []struct {
		name, requested string
		registered      []string
		want            []string
	}{
		{"covered kept as written (v1)", "patient/Observation.read", []string{"patient/*.rs"}, []string{"patient/Observation.read"}},
		{"wider perms narrowed", "patient/Observation.cruds", []string{"patient/*.rs"}, []string{"patient/Observation.rs"}},
		{"wildcard narrowed to registered types", "patient/*.rs", []string{"patient/Observation.rs", "patient/Patient.r"},
			[]string{"patient/Observation.rs", "patient/Patient.r"}},
		{"context must match", "user/Observation.rs", []string{"patient/*.rs"}, nil},
		{"other type dropped", "patient/Condition.rs", []string{"patient/Observation.rs"}, nil},
		{"disjoint perms dropped", "patient/Observation.c", []string{"patient/*.rs"}, nil},
		{"registered filter kept", "patient/Observation.rs", []string{"patient/Observation.rs?category=laboratory"},
			[]string{"patient/Observation.rs?category=laboratory"}},
		{"requested filter covered", "patient/Observation.rs?category=vital-signs", []string{"patient/Observation.rs"},
			[]string{"patient/Observation.rs?category=vital-signs"}},
		{"redundant intersections merged", "patient/*.rs", []string{"patient/*.r", "patient/*.rs"}, []string{"patient/*.rs"}},
		{"non-resource only when registered", "openid fhirUser offline_access launch/patient",
			[]string{"openid", "launch/patient"}, []string{"openid", "launch/patient"}},
		{"unknown scopes dropped", "openid made-up", []string{"openid", "made-up"}, []string{"openid"}},
		{"duplicates removed", "openid openid patient/*.rs patient/*.rs", []string{"openid", "patient/*.rs"}, []string{"openid", "patient/*.rs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := narrowScopes(tc.requested, tc.registered); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPageFailures: a page whose storage fails answers an HTML error page
// from the pages' one renderer (503 with Retry-After when shared state is
// down, else a generic 500), never a JSON body or the cause
// (docs/design/security.md PRIV-2, PRIV-9).
func TestPageFailures(t *testing.T) {
	env := newAZEnv(t, false)
	b := env.browser()
	page, _ := env.startFlow(b, azParams("launch/patient patient/*.rs"))
	for _, tc := range []struct {
		name   string
		fail   error
		send   func() azResp
		status int
	}{
		{"authorize, database down", fmt.Errorf("clients: %w", store.ErrUnavailable),
			func() azResp { return env.authorize(b, azParams("patient/*.rs")) }, http.StatusServiceUnavailable},
		{"login, unexpected store error", errors.New("users table: row for pat is corrupt"),
			func() azResp {
				h := hidden(page.body)
				return env.do(b, http.MethodPost, "/auth/login", url.Values{"csrf": {h["csrf"]}, "rid": {h["rid"]},
					"username": {"pat"}, "password": {"pat-pw"}})
			}, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.st.mu.Lock()
			env.st.failClients, env.st.failUsers = tc.fail, tc.fail
			env.st.mu.Unlock()
			defer func() {
				env.st.mu.Lock()
				env.st.failClients, env.st.failUsers = nil, nil
				env.st.mu.Unlock()
			}()
			r := tc.send()
			if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
				r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Security-Policy") == "" {
				t.Fatalf("status %d, headers %v: %.300s", r.status, r.header, r.body)
			}
			if (tc.status == http.StatusServiceUnavailable) != (r.header.Get("Retry-After") == "5") {
				t.Errorf("Retry-After = %q", r.header.Get("Retry-After"))
			}
			if strings.Contains(r.body, "corrupt") || strings.Contains(r.body, "unavailable:") {
				t.Errorf("the page shows the cause: %.500s", r.body)
			}
		})
	}
}

// TestAuthorizeQueryReadWholeOrRefused: a query net/url cannot read whole (a
// bad escape) is refused with 400, never judged on the part it could read
// (docs/design/security.md LIM-2). Before, the request went on with the
// parameters parsed before the bad one.
func TestAuthorizeQueryReadWholeOrRefused(t *testing.T) {
	env := newAZEnv(t, false)
	good := azParams("openid patient/*.rs").Encode()
	for name, raw := range map[string]string{
		"bad escape after valid parameters": good + "&x=%zz",
		"semicolon separator":               good + ";x=1",
	} {
		t.Run(name, func(t *testing.T) {
			r := env.do(env.browser(), http.MethodGet, "/auth/authorize?"+raw, nil)
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
				t.Fatalf("status %d location %q, want 400 and no redirect", r.status, r.header.Get("Location"))
			}
		})
	}
}
