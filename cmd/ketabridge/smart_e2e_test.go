package main

// End-to-end acceptance tests of SMART on FHIR: the real
// `ketabridge serve --demo` in-process on a loopback port, clients and users
// registered with the real CLI, and every flow driven over real HTTP (cookie
// jar, form posts, redirects caught where the test checks them). The ids in
// comments (AZ-1, NEG-13, ...) are the requirements and negative cases of
// docs/design/security.md.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/ketabridge/ketabridge/auth"
)

// smartPassword is the password of every test user (from a --password-file).
const smartPassword = "correct horse battery staple"

// smartEnv is one running gateway with demo data and what the tests found
// in it.
type smartEnv struct {
	dir      string
	base     string // http://127.0.0.1:PORT, also the configured --base-url
	fhirBase string // base + /fhir: the token audience
	issuer   string // base + /auth
	logs     *syncBuffer
	// system is a backend access token (system/*.rs) for looking data up.
	system string
	// patient has both survey and vital-signs Observations; other is
	// another demo patient.
	patient, other string
	// practitioner is a demo Practitioner id.
	practitioner string
	// surveyObs is one survey Observation of patient.
	surveyObs string
}

// smartFreePort returns a loopback port that was free a moment ago: the
// gateway's --base-url must name the port it listens on (issuer, aud).
func smartFreePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// smartCLI runs a ketabridge command against the gateway's data directory
// and returns its stdout; a non-zero exit fails the test.
func (e *smartEnv) cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	full := append(append([]string{}, args...), "--data-dir", e.dir, "--base-url", e.base)
	if code := run(context.Background(), full, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		getenv: envOf(nil)}); code != 0 {
		t.Fatalf("ketabridge %s exited %d: %s", strings.Join(args[:2], " "), code, errOut.String())
	}
	return out.String()
}

// startSMART starts the real gateway with demo data on a loopback port whose
// base URL is the configured --base-url, registers a backend client for
// looking the demo data up, and finds the patients and practitioner the
// flows use.
func startSMART(t *testing.T, extra ...string) *smartEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := &smartEnv{dir: t.TempDir()}
	// A port that was free a moment ago; should another process take it
	// first, serve fails to listen and startServe fails the test.
	port := smartFreePort(t)
	want := "http://127.0.0.1:" + port
	base, logs, _ := startServe(t, e.dir, append([]string{"--demo", "--addr", "127.0.0.1:" + port, "--base-url", want}, extra...)...)
	if base != want {
		t.Fatalf("serve listens on %s, not %s", base, want)
	}
	e.logs = logs
	e.base, e.fhirBase, e.issuer = base, base+"/fhir", base+"/auth"

	// The lookup client: registered with the CLI, token from `ketabridge token`.
	keyFile, jwksFile := backendKeyFiles(t, "lookup")
	e.cli(t, "clients", "add", "--id", "e2e-lookup", "--kind", "backend", "--jwks-file", jwksFile, "--scope", "system/*.rs")
	e.system = strings.TrimSpace(e.cli(t, "token", "--client", "e2e-lookup", "--key", keyFile, "--scope", "system/*.rs",
		"--token-url", e.issuer+"/token"))

	vitals := e.subjects(t, e.system, "/Observation?category=vital-signs&_count=200")
	surveys := e.subjects(t, e.system, "/Observation?category=survey&_count=200")
	for p := range vitals {
		if len(surveys[p]) > 0 && (e.patient == "" || p < e.patient) {
			e.patient = p
		}
	}
	if e.patient == "" {
		t.Fatalf("no demo patient has both vital-signs and survey Observations (vitals %d, surveys %d)", len(vitals), len(surveys))
	}
	e.surveyObs = surveys[e.patient][0]
	for _, id := range e.ids(t, e.system, "/Patient?_count=50") {
		if id != e.patient {
			e.other = id
			break
		}
	}
	prs := e.ids(t, e.system, "/Practitioner?_count=1")
	if e.other == "" || len(prs) == 0 {
		t.Fatalf("demo data lacks a second patient (%q) or a practitioner (%d)", e.other, len(prs))
	}
	e.practitioner = prs[0]
	return e
}

// backendKeyFiles writes a fresh RSA key (PKCS#8 PEM) for the backend
// client name and its public JWKS, as an operator would have them.
func backendKeyFiles(t *testing.T, name string) (keyFile, jwksFile string) {
	t.Helper()
	bk, err := auth.NewBackendKey(name)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := bk.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := bk.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	keyFile, jwksFile = filepath.Join(d, name+".key.pem"), filepath.Join(d, name+".jwks.json")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, jwksFile
}

// addUser registers a login with the CLI (password from --password-file).
func (e *smartEnv) addUser(t *testing.T, id, role, fhirUser string) {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(smartPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cli(t, "users", "add", "--id", id, "--role", role, "--fhir-user", fhirUser, "--name", "Test "+id, "--password-file", pw)
}

// addPublicClient registers a public app with a loopback redirect URI (and
// a launch URL when launchURL is not empty).
func (e *smartEnv) addPublicClient(t *testing.T, id, redirect, launchURL, scope string) {
	t.Helper()
	args := []string{"clients", "add", "--id", id, "--kind", "public", "--name", "App " + id,
		"--redirect-uri", redirect, "--scope", scope}
	if launchURL != "" {
		args = append(args, "--launch-url", launchURL)
	}
	e.cli(t, args...)
}

// smartResp is a buffered HTTP response.
type smartResp struct {
	status int
	header http.Header
	body   []byte
}

func (r smartResp) String() string { return http.StatusText(r.status) + " " + string(r.body) }

// json decodes the body into a map (failing the test when it is not JSON).
func (r smartResp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("not JSON (%d): %.300s", r.status, r.body)
	}
	return m
}

// noRedirect is an HTTP client that never follows redirects.
var noRedirect = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func smartDo(t *testing.T, c *http.Client, req *http.Request) smartResp {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return smartResp{status: resp.StatusCode, header: resp.Header, body: b}
}

// fhir GETs path under the FHIR base with a bearer token ("" for none).
func (e *smartEnv) fhir(t *testing.T, token, path string) smartResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.fhirBase+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return smartDo(t, noRedirect, req)
}

// postForm POSTs an application/x-www-form-urlencoded body.
func postForm(t *testing.T, target string, form url.Values) smartResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	return smartDo(t, noRedirect, req)
}

// smartResource is the part of a FHIR resource the checks look at.
type smartResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Subject      *struct {
		Reference string `json:"reference"`
	} `json:"subject"`
	Category []struct {
		Coding []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"coding"`
	} `json:"category"`
}

// categories lists the category codes of a resource.
func (r smartResource) categories() []string {
	var out []string
	for _, c := range r.Category {
		for _, cd := range c.Coding {
			out = append(out, cd.Code)
		}
	}
	return out
}

// search runs a FHIR search that must answer 200 with a searchset and
// returns its match entries.
func (e *smartEnv) search(t *testing.T, token, path string) []smartResource {
	t.Helper()
	r := e.fhir(t, token, path)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %s", path, r)
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource smartResource `json:"resource"`
			Search   struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "searchset" {
		t.Fatalf("GET %s: not a searchset (%v): %.300s", path, err, r.body)
	}
	var out []smartResource
	for _, en := range b.Entry {
		if en.Search.Mode == "" || en.Search.Mode == "match" {
			out = append(out, en.Resource)
		}
	}
	return out
}

// count runs a _summary=count search and returns Bundle.total.
func (e *smartEnv) count(t *testing.T, token, path string) int {
	t.Helper()
	r := e.fhir(t, token, path)
	var b struct {
		Total *int `json:"total"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &b) != nil || b.Total == nil {
		t.Fatalf("GET %s: %s", path, r)
	}
	return *b.Total
}

func (e *smartEnv) ids(t *testing.T, token, path string) []string {
	t.Helper()
	var out []string
	for _, r := range e.search(t, token, path) {
		out = append(out, r.ID)
	}
	return out
}

// subjects maps patient id -> ids of the resources of a search whose
// subject is that patient.
func (e *smartEnv) subjects(t *testing.T, token, path string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, r := range e.search(t, token, path) {
		if r.Subject != nil {
			if p, ok := strings.CutPrefix(r.Subject.Reference, "Patient/"); ok {
				out[p] = append(out[p], r.ID)
			}
		}
	}
	return out
}

// smartBrowser is a user agent for the authorization pages: a cookie jar,
// no automatic redirects (every hop is checked).
type smartBrowser struct {
	e *smartEnv
	c *http.Client
}

func (e *smartEnv) newBrowser(t *testing.T) *smartBrowser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &smartBrowser{e: e, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *smartBrowser) get(t *testing.T, target string) smartResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.abs(target), nil)
	if err != nil {
		t.Fatal(err)
	}
	return smartDo(t, b.c, req)
}

func (b *smartBrowser) post(t *testing.T, target string, form url.Values) smartResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.abs(target), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return smartDo(t, b.c, req)
}

// abs resolves a server-relative Location against the gateway.
func (b *smartBrowser) abs(target string) string {
	if strings.HasPrefix(target, "/") {
		return b.e.base + target
	}
	return target
}

// onServer reports whether a redirect Location stays on the gateway.
func (b *smartBrowser) onServer(loc string) bool {
	return strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, b.e.base+"/")
}

// smartPage is an HTML form page of the authorization server.
type smartPage struct {
	html     string
	action   string            // the POST form's action
	hidden   map[string]string // hidden fields of the POST form
	scopes   []string          // checkbox name=scope values
	subs     []string          // checkbox name=sub values
	patients []string          // radio name=patient values
	clients  []string          // radio name=client_id values
}

var (
	rePostForm = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)">(.*?)</form>`)
	reInput    = regexp.MustCompile(`<input ([^>]*)>`)
	reAttr     = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// parsePage reads the POST form of a page: its action, hidden fields and
// the values of its checkboxes and radio buttons.
func parsePage(t *testing.T, body []byte) smartPage {
	t.Helper()
	p := smartPage{html: string(body), hidden: map[string]string{}}
	m := rePostForm.FindStringSubmatch(p.html)
	if m == nil {
		t.Fatalf("no POST form on the page: %.600s", body)
	}
	p.action = html.UnescapeString(m[1])
	for _, in := range reInput.FindAllStringSubmatch(m[2], -1) {
		a := map[string]string{}
		for _, kv := range reAttr.FindAllStringSubmatch(in[1], -1) {
			a[kv[1]] = html.UnescapeString(kv[2])
		}
		switch {
		case a["type"] == "hidden":
			p.hidden[a["name"]] = a["value"]
		case a["type"] == "checkbox" && a["name"] == "scope":
			p.scopes = append(p.scopes, a["value"])
		case a["type"] == "checkbox" && a["name"] == "sub":
			p.subs = append(p.subs, a["value"])
		case a["type"] == "radio" && a["name"] == "patient":
			p.patients = append(p.patients, a["value"])
		case a["type"] == "radio" && a["name"] == "client_id":
			p.clients = append(p.clients, a["value"])
		}
	}
	return p
}

// form starts a submission of the page's form with its hidden fields.
func (p smartPage) form() url.Values {
	v := url.Values{}
	for k, x := range p.hidden {
		v.Set(k, x)
	}
	return v
}

// approveAll is the consent choice "Allow" with every offered scope ticked.
func approveAll(_ *testing.T, p smartPage) url.Values {
	v := p.form()
	v["scope"] = p.scopes
	v.Set("action", "approve")
	return v
}

// authorize runs the browser through an authorization request: GET the
// authorize URL, sign in when the login page shows (as user), fill the
// consent page with consent, and return the redirect to the app (the
// Location of the final 302, parsed). user "" expects an existing session.
func (b *smartBrowser) authorize(t *testing.T, authURL, user string, consent func(*testing.T, smartPage) url.Values) *url.URL {
	t.Helper()
	r := b.get(t, authURL)
	for hop := 0; hop < 8; hop++ {
		switch r.status {
		case http.StatusFound, http.StatusSeeOther:
			loc := r.header.Get("Location")
			if !b.onServer(loc) {
				u, err := url.Parse(loc)
				if err != nil {
					t.Fatal(err)
				}
				return u
			}
			r = b.get(t, loc)
		case http.StatusOK:
			p := parsePage(t, r.body)
			switch p.action {
			case "/auth/login":
				if user == "" {
					t.Fatalf("unexpected login page")
				}
				f := p.form()
				f.Set("username", user)
				f.Set("password", smartPassword)
				r = b.post(t, p.action, f)
				user = "" // one login only
			case "/auth/consent":
				r = b.post(t, p.action, consent(t, p))
			default:
				t.Fatalf("unexpected form %q", p.action)
			}
		default:
			t.Fatalf("authorization hop %d: %d %.600s", hop, r.status, r.body)
		}
	}
	t.Fatal("authorization did not reach the app's redirect URI")
	return nil
}

// smartApp is a registered public app and one PKCE authorization request.
type smartApp struct {
	cfg      oauth2.Config
	verifier string
	state    string
}

func (e *smartEnv) app(clientID, redirect string, scopes ...string) *smartApp {
	return &smartApp{
		cfg: oauth2.Config{
			ClientID: clientID,
			Endpoint: oauth2.Endpoint{AuthURL: e.issuer + "/authorize", TokenURL: e.issuer + "/token",
				AuthStyle: oauth2.AuthStyleInParams},
			RedirectURL: redirect,
			Scopes:      scopes,
		},
		verifier: oauth2.GenerateVerifier(),
		state:    oauth2.GenerateVerifier()[:20],
	}
}

// authURL is the authorization request (PKCE S256, aud = FHIR base).
func (a *smartApp) authURL(e *smartEnv, extra ...oauth2.AuthCodeOption) string {
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.verifier), oauth2.SetAuthURLParam("aud", e.fhirBase)},
		extra...)
	return a.cfg.AuthCodeURL(a.state, opts...)
}

// code checks the redirect carries the state and a code and returns it.
func (a *smartApp) code(t *testing.T, redirect *url.URL) string {
	t.Helper()
	q := redirect.Query()
	if got := redirect.Scheme + "://" + redirect.Host + redirect.Path; got != a.cfg.RedirectURL {
		t.Fatalf("redirected to %s, not the redirect URI %s", got, a.cfg.RedirectURL)
	}
	if q.Get("state") != a.state || q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("authorization response: %s", redirect.RawQuery)
	}
	return q.Get("code")
}

// exchange redeems the code with oauth2.Config.Exchange and the verifier.
func (a *smartApp) exchange(t *testing.T, code string) *oauth2.Token {
	t.Helper()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 30 * time.Second})
	tok, err := a.cfg.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	return tok
}

// scopeSet splits a scope string.
func scopeSet(s string) []string {
	f := strings.Fields(s)
	slices.Sort(f)
	return f
}

// extraString is a string extra of the token response.
func extraString(t *testing.T, tok *oauth2.Token, name string) string {
	t.Helper()
	v, ok := tok.Extra(name).(string)
	if !ok {
		t.Fatalf("token response %s: %#v (want a string)", name, tok.Extra(name))
	}
	return v
}

// verifyIDToken checks an id_token against the gateway's JWKS (OIDC-1): RS256,
// kid, iss, aud = client_id, exp, iat, sub, fhirUser.
func (e *smartEnv) verifyIDToken(t *testing.T, raw, clientID, fhirUser string) {
	t.Helper()
	r := e.newBrowser(t).get(t, e.issuer+"/jwks")
	var set jose.JSONWebKeySet
	if r.status != http.StatusOK || json.Unmarshal(r.body, &set) != nil || len(set.Keys) == 0 {
		t.Fatalf("GET /auth/jwks: %s", r)
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) != 1 {
			return nil, jwt.ErrTokenUnverifiable
		}
		return keys[0].Key, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(clientID), jwt.WithIssuer(e.issuer),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		t.Fatalf("id_token does not verify: %v", err)
	}
	if sub, _ := claims["sub"].(string); sub == "" || len(sub) > 255 {
		t.Errorf("id_token sub %q", sub)
	}
	if _, ok := claims["iat"]; !ok {
		t.Error("id_token has no iat")
	}
	if got, _ := claims["fhirUser"].(string); got != e.fhirBase+"/"+fhirUser {
		t.Errorf("id_token fhirUser %q, want %q", got, e.fhirBase+"/"+fhirUser)
	}
}

// tokenPost POSTs a form to the token endpoint.
func (e *smartEnv) tokenPost(t *testing.T, form url.Values) smartResp {
	t.Helper()
	return postForm(t, e.issuer+"/token", form)
}

// wantOAuthError checks an RFC 6749 §5.2 error response.
func wantOAuthError(t *testing.T, r smartResp, statuses []int, code string) {
	t.Helper()
	if !slices.Contains(statuses, r.status) {
		t.Errorf("status %d, want one of %v: %.300s", r.status, statuses, r.body)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil || m["error"] != code {
		t.Errorf("error %v, want %q: %.300s", m["error"], code, r.body)
	}
}

// noStoreHeaders checks TOK-4 on a token response.
func noStoreHeaders(t *testing.T, r smartResp) {
	t.Helper()
	if !strings.Contains(r.header.Get("Cache-Control"), "no-store") || r.header.Get("Pragma") != "no-cache" {
		t.Errorf("token response caching headers: Cache-Control %q Pragma %q", r.header.Get("Cache-Control"), r.header.Get("Pragma"))
	}
}

// patientLogin is the standalone launch of a patient user through a public
// app (scenario 1 and the start of 4 and 6).
func (e *smartEnv) patientLogin(t *testing.T, clientID, redirect, user string, scopes ...string) (*smartApp, *oauth2.Token) {
	t.Helper()
	a := e.app(clientID, redirect, scopes...)
	b := e.newBrowser(t)
	tok := a.exchange(t, a.code(t, b.authorize(t, a.authURL(e), user, approveAll)))
	return a, tok
}

func TestSMARTEndToEnd(t *testing.T) {
	e := startSMART(t)
	const redirect = "http://127.0.0.1:47001/callback"
	patientScope := "openid fhirUser launch/patient offline_access patient/Patient.rs patient/Observation.rs"
	e.addPublicClient(t, "patient-app", redirect, "", patientScope)
	e.addUser(t, "pat1", "patient", "Patient/"+e.patient)

	// 1. Standalone launch as a patient user (AZ-1 to AZ-10, TOK-1 to TOK-6,
	// OIDC-1, OIDC-2, NEG-40).
	t.Run("StandalonePatient", func(t *testing.T) {
		_, tok := e.patientLogin(t, "patient-app", redirect, "pat1", strings.Fields(patientScope)...)
		checks := []struct {
			name string
			ok   func() bool
			got  any
		}{
			{"token_type Bearer", func() bool { return strings.EqualFold(tok.TokenType, "Bearer") }, tok.TokenType},
			{"patient is the user's own", func() bool { return tok.Extra("patient") == e.patient }, tok.Extra("patient")},
			{"scope is the granted set", func() bool {
				return slices.Equal(scopeSet(extraString(t, tok, "scope")), scopeSet(patientScope))
			}, tok.Extra("scope")},
			{"expires_in in (0, 3600]", func() bool {
				n, ok := tok.Extra("expires_in").(float64)
				return ok && n > 0 && n <= 3600
			}, tok.Extra("expires_in")},
			{"need_patient_banner true", func() bool { return tok.Extra("need_patient_banner") == true }, tok.Extra("need_patient_banner")},
			{"smart_style_url on the issuer", func() bool {
				s, _ := tok.Extra("smart_style_url").(string)
				return strings.HasPrefix(s, e.base+"/")
			}, tok.Extra("smart_style_url")},
			{"refresh_token with offline_access", func() bool { return tok.RefreshToken != "" }, tok.RefreshToken != ""},
		}
		for _, c := range checks {
			if !c.ok() {
				t.Errorf("%s: got %v", c.name, c.got)
			}
		}
		e.verifyIDToken(t, extraString(t, tok, "id_token"), "patient-app", "Patient/"+e.patient)
		if style := e.newBrowser(t).get(t, extraString(t, tok, "smart_style_url")); style.status != http.StatusOK ||
			!json.Valid(style.body) {
			t.Errorf("smart_style_url: %s", style)
		}

		at := tok.AccessToken
		reads := []struct {
			name, path string
			want       []int
		}{
			{"own Patient (fhirUser readable, OIDC-2)", "/Patient/" + e.patient, []int{http.StatusOK}},
			{"another Patient", "/Patient/" + e.other, []int{http.StatusForbidden}},
			{"another patient's Observations", "/Observation?patient=" + e.other, []int{http.StatusForbidden, http.StatusNotFound}},
			{"no token", "/Patient/" + e.patient, []int{http.StatusUnauthorized}},
			{"garbage token", "/Patient/" + e.patient, []int{http.StatusUnauthorized}},
		}
		for _, c := range reads {
			t.Run(c.name, func(t *testing.T) {
				tk := at
				switch c.name {
				case "no token":
					tk = ""
				case "garbage token":
					tk = at[:len(at)-4] + "AAAA"
				}
				r := e.fhir(t, tk, c.path)
				if !slices.Contains(c.want, r.status) {
					t.Fatalf("GET %s: %d, want %v: %.300s", c.path, r.status, c.want, r.body)
				}
				if r.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without a Bearer challenge: %q", r.header.Get("WWW-Authenticate"))
				}
			})
		}
		t.Run("Observation search without a patient filter", func(t *testing.T) {
			obs := e.search(t, at, "/Observation?_count=200")
			if len(obs) == 0 {
				t.Fatal("no Observations of the patient")
			}
			for _, o := range obs {
				if o.Subject == nil || o.Subject.Reference != "Patient/"+e.patient {
					t.Fatalf("Observation/%s of %v in a patient-%s token's search", o.ID, o.Subject, e.patient)
				}
			}
			mine, own, all := e.count(t, at, "/Observation?_summary=count"),
				e.count(t, e.system, "/Observation?_summary=count&patient="+e.patient),
				e.count(t, e.system, "/Observation?_summary=count")
			if mine != own || all <= own {
				t.Errorf("Observation totals: patient token %d, the patient's %d, everyone's %d", mine, own, all)
			}
		})
	})

	// 2. Standalone launch as a clinician: patient picker, user/ scopes and
	// a granular scope chosen on the consent page (AZ-9, AZ-11, RS-4, RS-5).
	e.addUser(t, "doc1", "clinician", "Practitioner/"+e.practitioner)
	const clinRedirect = "http://127.0.0.1:47002/cb"
	clinScope := "openid fhirUser launch/patient patient/Observation.rs patient/Patient.rs user/Practitioner.rs"
	e.addPublicClient(t, "clin-app", clinRedirect, "", clinScope)
	t.Run("StandaloneClinicianGranular", func(t *testing.T) {
		const vitals = "patient/Observation.rs?category=vital-signs"
		a := e.app("clin-app", clinRedirect, strings.Fields(clinScope)...)
		b := e.newBrowser(t)
		redirectURL := b.authorize(t, a.authURL(e), "doc1", func(t *testing.T, p smartPage) url.Values {
			if !slices.Contains(p.patients, e.patient) {
				t.Fatalf("the patient picker does not offer Patient/%s: %v", e.patient, p.patients)
			}
			if !slices.Contains(p.subs, vitals) {
				t.Fatalf("the consent page offers no %s: %v", vitals, p.subs)
			}
			v := p.form()
			for _, s := range p.scopes {
				if s != "patient/Observation.rs" { // unticked: only its vital-signs category
					v.Add("scope", s)
				}
			}
			v.Set("sub", vitals)
			v.Set("patient", e.patient)
			v.Set("action", "approve")
			return v
		})
		tok := a.exchange(t, a.code(t, redirectURL))
		granted := scopeSet(extraString(t, tok, "scope"))
		if !slices.Contains(granted, vitals) || slices.Contains(granted, "patient/Observation.rs") ||
			!slices.Contains(granted, "user/Practitioner.rs") {
			t.Fatalf("granted scope %v", granted)
		}
		if tok.Extra("patient") != e.patient {
			t.Fatalf("patient %v, want the picked %s", tok.Extra("patient"), e.patient)
		}
		e.verifyIDToken(t, extraString(t, tok, "id_token"), "clin-app", "Practitioner/"+e.practitioner)
		at := tok.AccessToken

		t.Run("vitals are returned", func(t *testing.T) {
			obs := e.search(t, at, "/Observation?_count=200")
			if len(obs) == 0 {
				t.Fatal("no vital-signs Observations returned")
			}
			for _, o := range obs {
				if !slices.Contains(o.categories(), "vital-signs") || o.Subject == nil || o.Subject.Reference != "Patient/"+e.patient {
					t.Fatalf("Observation/%s (categories %v, subject %v) returned", o.ID, o.categories(), o.Subject)
				}
			}
		})
		t.Run("survey search returns no survey", func(t *testing.T) {
			for _, o := range e.search(t, at, "/Observation?category=survey&patient="+e.patient) {
				if slices.Contains(o.categories(), "survey") {
					t.Fatalf("survey Observation/%s returned", o.ID)
				}
			}
		})
		t.Run("survey read is 403", func(t *testing.T) {
			if r := e.fhir(t, at, "/Observation/"+e.surveyObs); r.status != http.StatusForbidden {
				t.Fatalf("GET Observation/%s (survey): %s", e.surveyObs, r)
			}
			if r := e.fhir(t, e.system, "/Observation/"+e.surveyObs); r.status != http.StatusOK {
				t.Fatalf("the survey Observation is not readable with the system token: %s", r)
			}
		})
		t.Run("user scope reads the own Practitioner", func(t *testing.T) {
			if r := e.fhir(t, at, "/Practitioner/"+e.practitioner); r.status != http.StatusOK {
				t.Fatalf("GET Practitioner/%s: %s", e.practitioner, r)
			}
		})
		t.Run("no scope for Encounter", func(t *testing.T) {
			if r := e.fhir(t, at, "/Encounter?patient="+e.patient); r.status != http.StatusForbidden {
				t.Fatalf("GET Encounter: %s", r)
			}
		})
	})

	// 3. EHR launch (AZ-8, AZ-10, TOK-6, NEG-7).
	const ehrRedirect, ehrLaunch = "http://127.0.0.1:47003/cb", "http://127.0.0.1:47003/launch"
	e.addPublicClient(t, "ehr-app", ehrRedirect, ehrLaunch, "launch openid fhirUser patient/*.rs")
	t.Run("EHRLaunch", func(t *testing.T) {
		b := e.newBrowser(t)
		login := b.get(t, "/auth/login")
		lp := parsePage(t, login.body)
		if lp.action != "/auth/login" || lp.hidden["next"] != "launch" {
			t.Fatalf("GET /auth/login: form %q next %q", lp.action, lp.hidden["next"])
		}
		f := lp.form()
		f.Set("username", "doc1")
		f.Set("password", smartPassword)
		r := b.post(t, "/auth/login", f)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/auth/launch" {
			t.Fatalf("POST /auth/login: %d %q %.300s", r.status, r.header.Get("Location"), r.body)
		}
		r = b.get(t, "/auth/launch")
		lp = parsePage(t, r.body)
		if r.status != http.StatusOK || !slices.Contains(lp.clients, "ehr-app") || !slices.Contains(lp.patients, e.other) {
			t.Fatalf("launcher: %d clients %v patients %v", r.status, lp.clients, lp.patients)
		}
		if slices.Contains(lp.clients, "patient-app") {
			t.Errorf("the launcher offers an app without a launch URL")
		}
		f = lp.form()
		f.Set("client_id", "ehr-app")
		f.Set("patient", e.other)
		r = b.post(t, "/auth/launch", f)
		loc, err := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || err != nil || loc.Scheme+"://"+loc.Host+loc.Path != ehrLaunch {
			t.Fatalf("POST /auth/launch: %d %q", r.status, r.header.Get("Location"))
		}
		if loc.Query().Get("iss") != e.fhirBase || loc.Query().Get("launch") == "" {
			t.Fatalf("launch URL query %q: want iss=%s and a launch id", loc.RawQuery, e.fhirBase)
		}
		launch := loc.Query().Get("launch")

		a := e.app("ehr-app", ehrRedirect, "launch", "openid", "fhirUser", "patient/*.rs")
		tok := a.exchange(t, a.code(t, b.authorize(t, a.authURL(e, oauth2.SetAuthURLParam("launch", launch)), "", approveAll)))
		if tok.Extra("patient") != e.other {
			t.Errorf("patient %v, want the launched %s", tok.Extra("patient"), e.other)
		}
		if tok.Extra("need_patient_banner") != false {
			t.Errorf("need_patient_banner %v, want false in an EHR launch", tok.Extra("need_patient_banner"))
		}
		if r := e.fhir(t, tok.AccessToken, "/Patient/"+e.other); r.status != http.StatusOK {
			t.Errorf("GET the launched Patient: %s", r)
		}
		if r := e.fhir(t, tok.AccessToken, "/Patient/"+e.patient); r.status != http.StatusForbidden {
			t.Errorf("GET another Patient: %s", r)
		}

		// The launch id is single use (NEG-7).
		a2 := e.app("ehr-app", ehrRedirect, "launch", "patient/*.rs")
		r = b.get(t, a2.authURL(e, oauth2.SetAuthURLParam("launch", launch)))
		loc, _ = url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || loc == nil || loc.Query().Get("error") != "invalid_request" ||
			loc.Query().Get("state") != a2.state || loc.Query().Get("code") != "" {
			t.Fatalf("reused launch id: %d %q", r.status, r.header.Get("Location"))
		}
	})

	// A code redeemed twice: invalid_grant, and what the first redemption
	// issued is revoked (RFC 6749 §4.1.2, TOK-8, NEG-13).
	t.Run("CodeReplay", func(t *testing.T) {
		a := e.app("patient-app", redirect, "launch/patient", "patient/Patient.rs")
		code := a.code(t, e.newBrowser(t).authorize(t, a.authURL(e), "pat1", approveAll))
		tok := a.exchange(t, code)
		if r := e.fhir(t, tok.AccessToken, "/Patient/"+e.patient); r.status != http.StatusOK {
			t.Fatalf("first token: %s", r)
		}
		r := e.tokenPost(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
			"client_id": {"patient-app"}, "code_verifier": {a.verifier}})
		wantOAuthError(t, r, []int{http.StatusBadRequest}, "invalid_grant")
		if r := e.fhir(t, tok.AccessToken, "/Patient/"+e.patient); r.status != http.StatusUnauthorized {
			t.Errorf("the first redemption's token after the replay: %s", r)
		}
	})

	// 4. Refresh (REF-1 to REF-5, NEG-18 to NEG-20).
	t.Run("Refresh", func(t *testing.T) {
		_, tok := e.patientLogin(t, "patient-app", redirect, "pat1", strings.Fields(patientScope)...)
		refresh := func(rt, scope string) smartResp {
			f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
			if scope != "" {
				f.Set("scope", scope)
			}
			return e.tokenPost(t, f)
		}
		first := tok.RefreshToken

		r := refresh(first, "")
		m := r.json(t)
		if r.status != http.StatusOK || !slices.Equal(scopeSet(m["scope"].(string)), scopeSet(patientScope)) {
			t.Fatalf("refresh without scope: %s", r)
		}
		noStoreHeaders(t, r)
		if n, ok := m["expires_in"].(float64); !ok || n <= 0 || n > 3600 || m["access_token"] == "" ||
			!strings.EqualFold(m["token_type"].(string), "Bearer") {
			t.Errorf("refresh response: %s", r.body)
		}
		second, _ := m["refresh_token"].(string)
		if second == "" || second == first {
			t.Fatalf("the refresh token was not rotated")
		}
		if m["patient"] != e.patient {
			t.Errorf("refresh response patient %v", m["patient"])
		}

		r = refresh(second, "patient/Patient.rs")
		m = r.json(t)
		if r.status != http.StatusOK || m["scope"] != "patient/Patient.rs" {
			t.Fatalf("refresh with a narrower scope: %s", r)
		}
		narrow, _ := m["access_token"].(string)
		third, _ := m["refresh_token"].(string)
		if r := e.fhir(t, narrow, "/Patient/"+e.patient); r.status != http.StatusOK {
			t.Errorf("narrowed token reading the Patient: %s", r)
		}
		if r := e.fhir(t, narrow, "/Observation?patient="+e.patient); r.status != http.StatusForbidden {
			t.Errorf("narrowed token searching Observations: %s", r)
		}

		wantOAuthError(t, refresh(third, patientScope+" user/*.rs"), []int{http.StatusBadRequest}, "invalid_scope")
		wantOAuthError(t, refresh("not-a-refresh-token", ""), []int{http.StatusBadRequest}, "invalid_grant")
		wantOAuthError(t, refresh(narrow, ""), []int{http.StatusBadRequest}, "invalid_grant") // NEG-22

		r = refresh(third, "")
		m = r.json(t)
		last, _ := m["access_token"].(string)
		if r.status != http.StatusOK || last == "" {
			t.Fatalf("refresh after the invalid_scope attempt: %s", r)
		}
		if r := e.fhir(t, last, "/Patient/"+e.patient); r.status != http.StatusOK {
			t.Fatalf("the last access token before reuse: %s", r)
		}
		// Reusing a rotated-away token revokes the whole grant (REF-5).
		wantOAuthError(t, refresh(second, ""), []int{http.StatusBadRequest}, "invalid_grant")
		if r := e.fhir(t, last, "/Patient/"+e.patient); r.status != http.StatusUnauthorized {
			t.Errorf("the grant's access token after refresh-token reuse: %s", r)
		}
		if nt, _ := m["refresh_token"].(string); nt != "" {
			wantOAuthError(t, refresh(nt, ""), []int{http.StatusBadRequest}, "invalid_grant")
		}
	})

	// 5. Backend services (CLI-1 to CLI-7, NEG-31, NEG-34).
	t.Run("BackendServices", func(t *testing.T) {
		keyFile, jwksFile := backendKeyFiles(t, "cli-backend")
		e.cli(t, "clients", "add", "--id", "bk-cli", "--kind", "backend", "--jwks-file", jwksFile, "--scope", "system/*.rs")
		tok := strings.TrimSpace(e.cli(t, "token", "--client", "bk-cli", "--key", keyFile, "--scope", "system/*.read",
			"--token-url", e.issuer+"/token"))
		if r := e.fhir(t, tok, "/Patient/"+e.patient); r.status != http.StatusOK {
			t.Fatalf("v1 system/*.read token from `ketabridge token`: %s", r)
		}

		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: rsaKey.Public(), KeyID: "rsa-1", Algorithm: "RS384", Use: "sig"},
			{Key: ecKey.Public(), KeyID: "ec-1", Algorithm: "ES384", Use: "sig"},
		}}
		jwks, _ := json.Marshal(set)
		jwksFile = filepath.Join(t.TempDir(), "bk-direct.jwks.json")
		if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
			t.Fatal(err)
		}
		e.cli(t, "clients", "add", "--id", "bk-direct", "--kind", "backend", "--jwks-file", jwksFile,
			"--scope", "system/Patient.rs system/Observation.rs")

		assertion := func(method jwt.SigningMethod, kid string, key crypto.Signer) string {
			tk := jwt.NewWithClaims(method, jwt.MapClaims{
				"iss": "bk-direct", "sub": "bk-direct", "aud": e.issuer + "/token",
				"exp": time.Now().Add(4 * time.Minute).Unix(), "jti": uuid.NewString(),
			})
			tk.Header["kid"] = kid
			s, err := tk.SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		request := func(as, scope string) smartResp {
			return e.tokenPost(t, url.Values{
				"grant_type": {"client_credentials"}, "scope": {scope},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {as},
			})
		}
		for _, c := range []struct {
			name   string
			method jwt.SigningMethod
			kid    string
			key    crypto.Signer
		}{
			{"RS384", jwt.SigningMethodRS384, "rsa-1", rsaKey},
			{"ES384", jwt.SigningMethodES384, "ec-1", ecKey},
		} {
			t.Run(c.name, func(t *testing.T) {
				as := assertion(c.method, c.kid, c.key)
				r := request(as, "system/Patient.read system/Observation.rs")
				m := r.json(t)
				if r.status != http.StatusOK {
					t.Fatalf("client_credentials: %s", r)
				}
				noStoreHeaders(t, r)
				if _, has := m["refresh_token"]; has {
					t.Error("a backend token response has a refresh_token (NEG-34)")
				}
				if n, ok := m["expires_in"].(float64); !ok || n <= 0 || n > 300 {
					t.Errorf("expires_in %v (want <= 300)", m["expires_in"])
				}
				if got := scopeSet(m["scope"].(string)); !slices.Equal(got, []string{"system/Observation.rs", "system/Patient.read"}) {
					t.Errorf("scope %v", got)
				}
				at, _ := m["access_token"].(string)
				if r := e.fhir(t, at, "/Patient/"+e.other); r.status != http.StatusOK {
					t.Errorf("GET Patient with the backend token: %s", r)
				}
				if r := e.fhir(t, at, "/Encounter?patient="+e.other); r.status != http.StatusForbidden {
					t.Errorf("GET Encounter outside the policy: %s", r)
				}
				// The same assertion again: jti replay (NEG-31).
				wantOAuthError(t, request(as, "system/Patient.read"), []int{http.StatusBadRequest, http.StatusUnauthorized}, "invalid_client")
			})
		}
		t.Run("assertion signed by an unregistered key", func(t *testing.T) {
			other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			wantOAuthError(t, request(assertion(jwt.SigningMethodES384, "ec-1", other), "system/Patient.rs"),
				[]int{http.StatusBadRequest, http.StatusUnauthorized}, "invalid_client")
		})
	})

	// 6. Introspection and revocation (INT-1 to INT-3, NEG-39, NEG-48).
	t.Run("IntrospectionAndRevocation", func(t *testing.T) {
		_, tok := e.patientLogin(t, "patient-app", redirect, "pat1", strings.Fields(patientScope)...)
		introspect := func(token string) smartResp {
			req, _ := http.NewRequest(http.MethodPost, e.issuer+"/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+e.system)
			return smartDo(t, noRedirect, req)
		}
		r := introspect(tok.AccessToken)
		m := r.json(t)
		exp, _ := m["exp"].(float64)
		if r.status != http.StatusOK || m["active"] != true || m["client_id"] != "patient-app" || m["patient"] != e.patient ||
			exp < float64(time.Now().Unix()) || !slices.Equal(scopeSet(m["scope"].(string)), scopeSet(extraString(t, tok, "scope"))) {
			t.Fatalf("introspection of an active token: %s", r)
		}
		if got, _ := m["fhirUser"].(string); got != e.fhirBase+"/Patient/"+e.patient {
			t.Errorf("introspection fhirUser %q", got)
		}
		// Without credentials (NEG-49).
		if r := postForm(t, e.issuer+"/introspect", url.Values{"token": {tok.AccessToken}}); r.status != http.StatusUnauthorized {
			t.Errorf("introspection without credentials: %s", r)
		}
		if r := e.fhir(t, tok.AccessToken, "/Patient/"+e.patient); r.status != http.StatusOK {
			t.Fatalf("before revocation: %s", r)
		}

		// RFC 7009: revoke the refresh token; the grant's access token stops at once.
		r = postForm(t, e.issuer+"/revoke", url.Values{"token": {tok.RefreshToken}, "client_id": {"patient-app"}})
		if r.status != http.StatusOK {
			t.Fatalf("revoke: %s", r)
		}
		if r := e.fhir(t, tok.AccessToken, "/Patient/"+e.patient); r.status != http.StatusUnauthorized {
			t.Errorf("access token after revoking its refresh token: %s", r)
		}
		for name, token := range map[string]string{"access": tok.AccessToken, "refresh": tok.RefreshToken, "garbage": "garbage"} {
			r := introspect(token)
			if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"active":false}` {
				t.Errorf("introspection of a revoked %s token: %s", name, r)
			}
		}
		wantOAuthError(t, e.tokenPost(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}),
			[]int{http.StatusBadRequest}, "invalid_grant")
		// 200 for an unknown token too (RFC 7009 §2.2).
		if r := postForm(t, e.issuer+"/revoke", url.Values{"token": {"unknown"}, "client_id": {"patient-app"}}); r.status != http.StatusOK {
			t.Errorf("revoke an unknown token: %s", r)
		}
	})

	// 7. Discovery (DISC-1 to DISC-9, NEG-50).
	t.Run("Discovery", func(t *testing.T) {
		b := e.newBrowser(t)
		req, _ := http.NewRequest(http.MethodGet, e.fhirBase+"/.well-known/smart-configuration", nil)
		req.Header.Set("Accept", "application/xml")
		r := smartDo(t, noRedirect, req)
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Fatalf("smart-configuration with Accept: application/xml: %d %q", r.status, r.header.Get("Content-Type"))
		}
		var sc struct {
			Issuer                string   `json:"issuer"`
			JWKSURI               string   `json:"jwks_uri"`
			AuthorizationEndpoint string   `json:"authorization_endpoint"`
			TokenEndpoint         string   `json:"token_endpoint"`
			IntrospectionEndpoint string   `json:"introspection_endpoint"`
			RevocationEndpoint    string   `json:"revocation_endpoint"`
			Capabilities          []string `json:"capabilities"`
			CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
			GrantTypes            []string `json:"grant_types_supported"`
			AuthMethods           []string `json:"token_endpoint_auth_methods_supported"`
			SigningAlgs           []string `json:"token_endpoint_auth_signing_alg_values_supported"`
			ResponseTypes         []string `json:"response_types_supported"`
		}
		if err := json.Unmarshal(r.body, &sc); err != nil {
			t.Fatal(err)
		}
		wantCaps := []string{"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
			"client-confidential-asymmetric", "sso-openid-connect", "context-standalone-patient", "context-ehr-patient",
			"context-banner", "context-style", "permission-offline", "permission-patient", "permission-user",
			"permission-v1", "permission-v2", "authorize-post"}
		for _, c := range wantCaps {
			if !slices.Contains(sc.Capabilities, c) {
				t.Errorf("capabilities lack %s: %v", c, sc.Capabilities)
			}
		}
		if !slices.Equal(sc.CodeChallengeMethods, []string{"S256"}) {
			t.Errorf("code_challenge_methods_supported %v, want [S256] only", sc.CodeChallengeMethods)
		}
		endpoints := map[string]string{
			"authorization_endpoint": sc.AuthorizationEndpoint, "token_endpoint": sc.TokenEndpoint,
			"introspection_endpoint": sc.IntrospectionEndpoint, "revocation_endpoint": sc.RevocationEndpoint,
			"issuer": sc.Issuer, "jwks_uri": sc.JWKSURI,
		}
		want := map[string]string{
			"authorization_endpoint": e.issuer + "/authorize", "token_endpoint": e.issuer + "/token",
			"introspection_endpoint": e.issuer + "/introspect", "revocation_endpoint": e.issuer + "/revoke",
			"issuer": e.issuer, "jwks_uri": e.issuer + "/jwks",
		}
		for k, v := range want {
			if endpoints[k] != v {
				t.Errorf("%s %q, want %q", k, endpoints[k], v)
			}
		}
		for _, c := range []struct {
			name string
			got  []string
			want []string
		}{
			{"grant_types_supported", sc.GrantTypes, []string{"authorization_code", "client_credentials"}},
			{"token_endpoint_auth_methods_supported", sc.AuthMethods, []string{"private_key_jwt"}},
			{"token_endpoint_auth_signing_alg_values_supported", sc.SigningAlgs, []string{"RS384", "ES384"}},
			{"response_types_supported", sc.ResponseTypes, []string{"code"}},
		} {
			for _, w := range c.want {
				if !slices.Contains(c.got, w) {
					t.Errorf("%s %v lacks %s", c.name, c.got, w)
				}
			}
		}

		r = b.get(t, e.issuer+"/.well-known/openid-configuration")
		oc := r.json(t)
		if r.status != http.StatusOK || oc["issuer"] != e.issuer || oc["jwks_uri"] != e.issuer+"/jwks" ||
			oc["authorization_endpoint"] != e.issuer+"/authorize" || oc["token_endpoint"] != e.issuer+"/token" {
			t.Errorf("openid-configuration: %s", r)
		}
		for _, k := range []string{"response_types_supported", "subject_types_supported", "id_token_signing_alg_values_supported"} {
			if l, ok := oc[k].([]any); !ok || len(l) == 0 {
				t.Errorf("openid-configuration %s: %v", k, oc[k])
			}
		}
		if l, _ := oc["id_token_signing_alg_values_supported"].([]any); !slices.Contains(l, any("RS256")) {
			t.Errorf("id_token_signing_alg_values_supported %v lacks RS256", l)
		}

		r = b.get(t, e.issuer+"/jwks")
		var set struct {
			Keys []map[string]any `json:"keys"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &set) != nil || len(set.Keys) == 0 {
			t.Fatalf("jwks: %s", r)
		}
		for _, k := range set.Keys {
			if k["kty"] != "RSA" || k["kid"] == "" || k["n"] == nil || k["e"] == nil || k["d"] != nil || k["p"] != nil {
				t.Errorf("jwks key %v: want a bare public RSA JWK", k)
			}
		}
	})

	// Authorization request errors that must never redirect or must carry
	// the state (NEG-1 to NEG-4): quick guards on the same server.
	t.Run("AuthorizeErrors", func(t *testing.T) {
		a := e.app("patient-app", redirect, "patient/*.rs")
		challenge := base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("x", 32)))
		cases := []struct {
			name      string
			mutate    func(q url.Values)
			redirects bool
			errCode   string
		}{
			{"unknown client", func(q url.Values) { q.Set("client_id", "nope") }, false, ""},
			{"redirect near-miss", func(q url.Values) { q.Set("redirect_uri", redirect+"/") }, false, ""},
			{"foreign aud", func(q url.Values) { q.Set("aud", "https://evil.example/fhir") }, true, "invalid_request"},
			{"plain PKCE", func(q url.Values) {
				q.Set("code_challenge_method", "plain")
				q.Set("code_challenge", challenge)
			}, true, "invalid_request"},
			{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, true, "invalid_request"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				u, _ := url.Parse(a.authURL(e))
				q := u.Query()
				c.mutate(q)
				u.RawQuery = q.Encode()
				r := e.newBrowser(t).get(t, u.String())
				if !c.redirects {
					if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
						t.Fatalf("%d Location %q, want a 400 page", r.status, r.header.Get("Location"))
					}
					return
				}
				loc, _ := url.Parse(r.header.Get("Location"))
				if r.status != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), redirect+"?") ||
					loc.Query().Get("error") != c.errCode || loc.Query().Get("state") != a.state {
					t.Fatalf("%d Location %q", r.status, r.header.Get("Location"))
				}
			})
		}
	})
}
