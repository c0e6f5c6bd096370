// Package course is the course viewer: a SMART on FHIR app the gateway
// serves at /apps/course/ that shows one patient's ketamine treatment course
// (outcome trends, sessions, a session's monitoring chart, the course
// summary and safety flags) to a clinician inside the EHR, or to a patient.
//
// It is a client of the gateway's own authorization server like any other
// (docs/design/security.md VIEW-1): it launches by the SMART EHR launch
// (`launch` + `iss`) or standalone (`launch/patient`), exchanges the code
// with PKCE, keeps the access token server-side (VIEW-3) and reads only
// through the public FHIR API with that token, so the access decision,
// consent and the audit trail apply to it exactly as to an outside app. The
// pages are server-rendered HTML with inline SVG: no script at all, one
// embedded stylesheet, a strict Content-Security-Policy (VIEW-2).
package course

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

// ClientID is the app's client id in the gateway's client registry.
const ClientID = "ketabridge-course-viewer"

// Path is where the app is mounted.
const Path = "/apps/course/"

// Scope is what the app asks for: the launch scopes and read/search on the
// types it shows, nothing more (minimum necessary, docs/design/security.md
// VIEW-1). Standalone launches add launch/patient.
var Scope = []string{
	"launch",
	"patient/Patient.r",
	"patient/Encounter.rs",
	"patient/Observation.rs",
	"patient/MedicationAdministration.rs",
	"patient/Medication.rs",
	"patient/AdverseEvent.rs",
	"patient/CarePlan.rs",
	"patient/MedicationStatement.rs",
	// The prior-authorization status ($pa-status reads the course's order
	// and the payer's answers with the caller's own permissions) and the
	// referral Tasks with the Organizations they name.
	"patient/MedicationRequest.rs",
	"patient/ClaimResponse.rs",
	"patient/Task.rs",
	"patient/Organization.rs",
}

const (
	// sessionCookie holds the opaque id of a signed-in viewer session;
	// pendingCookie binds an authorization request to the browser that
	// started it (login CSRF, docs/design/security.md VIEW-4).
	sessionCookie = "kb_course"
	pendingCookie = "kb_course_auth"
	// pendingTTL bounds how long a started launch may take to come back.
	pendingTTL = 10 * time.Minute
	// maxSessionTTL caps a viewer session whatever the token says.
	maxSessionTTL = time.Hour
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/course.css
var stylesheet []byte

var pages = template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html"))

// Options configure the app.
type Options struct {
	// BaseURL is the gateway's public base URL (no trailing slash).
	BaseURL string
	// Gateway is the gateway's own HTTP handler: the app's token exchange
	// and FHIR reads go through it in process, through every middleware an
	// outside request meets (bearer verification, access decision, audit).
	Gateway http.Handler
	// Ephemeral keeps pending launches and sessions (shared by replicas).
	Ephemeral store.Ephemeral
	// FrameAncestors are the origins allowed to frame the app (the EHR's);
	// empty allows none (docs/design/security.md VIEW-2).
	FrameAncestors []string
	// SecureCookies marks the cookies Secure (a https base URL).
	SecureCookies bool
	Logger        *slog.Logger
}

// App is the course viewer.
type App struct {
	opts Options
	csp  string
}

// New returns the app.
func New(o Options) (*App, error) {
	if o.BaseURL == "" || o.Gateway == nil || o.Ephemeral == nil {
		return nil, errors.New("course: BaseURL, Gateway and Ephemeral are required")
	}
	for _, a := range o.FrameAncestors {
		if err := CheckFrameAncestor(a); err != nil {
			return nil, err
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &App{opts: o, csp: csp(o.FrameAncestors)}, nil
}

// CheckFrameAncestor checks one allowed framing origin: scheme://host[:port]
// (https, or http on loopback hosts).
func CheckFrameAncestor(o string) error {
	u, err := url.Parse(o)
	if err != nil || auth.CheckWebURL(o) != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("frame ancestor %q: must be an origin scheme://host[:port], https unless loopback", o)
	}
	return nil
}

// csp is the Content-Security-Policy of every response (docs/design/security.md
// VIEW-2): nothing but the app's own stylesheet and images, no script, forms
// only to the app, and framing only by the configured EHR origins.
func csp(ancestors []string) string {
	fa := "'none'"
	if len(ancestors) > 0 {
		fa = strings.Join(ancestors, " ")
	}
	return "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors " + fa
}

// Client is the app's registration: a public client (PKCE; the tokens never
// reach the browser, so no secret has to be shared by the replicas that
// register it at every start), launchable from the EHR launcher.
func Client(baseURL string, now time.Time) (store.Client, error) {
	c, _, err := auth.NewClient(auth.ClientRegistration{
		ID: ClientID, Name: "KetaBridge course viewer", Kind: store.ClientPublic,
		RedirectURIs: []string{baseURL + Path + "callback"}, LaunchURL: baseURL + Path + "launch",
		Scopes: append([]string{"launch/patient"}, Scope...),
	}, now)
	return c, err
}

// Documentation describes the app for the CapabilityStatement's
// rest.documentation (markdown).
func Documentation(baseURL string) string {
	return "Course viewer: a SMART on FHIR app this gateway serves at " + baseURL + Path +
		" (client id `" + ClientID + "`, public, PKCE; EHR launch URL " + baseURL + Path + "launch, " +
		"standalone launch at " + baseURL + Path + "). It shows one patient's ketamine treatment course " +
		"(outcome trends, sessions and doses, a session's monitoring vital signs, course summary with prior-authorization " +
		"and referral status, safety flags) " +
		"and reads this API with the signed-in user's token, so it shows only what that user and grant may see."
}

// Register mounts the app under Path with the given middleware (the access
// log).
func (a *App) Register(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	g := e.Group(strings.TrimSuffix(Path, "/"), append(mw, a.headers)...)
	g.GET("/", a.handleView)
	g.GET("/launch", a.handleLaunch)
	g.GET("/callback", a.handleCallback)
	g.POST("/signout", a.handleSignOut)
	g.GET("/course.css", a.handleCSS)
	e.GET(strings.TrimSuffix(Path, "/"), func(c echo.Context) error {
		return c.Redirect(http.StatusFound, Path)
	}, mw...)
}

// headers sets the security headers of every response.
func (a *App) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", a.csp)
		if len(a.opts.FrameAncestors) == 0 {
			h.Set("X-Frame-Options", "DENY")
		}
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		return next(c)
	}
}

func (a *App) handleCSS(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.Blob(http.StatusOK, "text/css; charset=utf-8", stylesheet)
}

// pending is a started authorization request, stored under its state.
type pending struct {
	Verifier string `json:"verifier"`
	Binding  string `json:"binding"` // hash of the pendingCookie value
}

// handleLaunch is the EHR launch (SMART app-launch#step-2-launch-ehr): iss
// must be the gateway's own FHIR base; the launch id goes to /authorize.
func (a *App) handleLaunch(c echo.Context) error {
	iss, launch := c.QueryParam("iss"), c.QueryParam("launch")
	if iss != a.fhirBase() || launch == "" {
		return a.page(c, http.StatusBadRequest, errorPage{"This launch is not valid",
			"The course viewer can only be launched by this gateway's EHR launcher. Launch it again from the patient's chart."})
	}
	return a.authorize(c, url.Values{"launch": {launch}}, Scope)
}

// authorize starts an authorization request: PKCE, a random state bound to
// this browser, and the redirect to /auth/authorize.
func (a *App) authorize(c echo.Context, extra url.Values, scope []string) error {
	state, verifier, binding := random(), random(), random()
	raw, _ := json.Marshal(pending{Verifier: verifier, Binding: auth.Hash(binding)})
	if err := a.opts.Ephemeral.Put(c.Request().Context(), pendingKey(state), raw, pendingTTL); err != nil {
		return err
	}
	c.SetCookie(a.cookie(pendingCookie, binding, int(pendingTTL/time.Second)))
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {ClientID},
		"redirect_uri":          {a.redirectURI()},
		"scope":                 {strings.Join(scope, " ")},
		"state":                 {state},
		"aud":                   {a.fhirBase()},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	for k, v := range extra {
		q[k] = v
	}
	return c.Redirect(http.StatusFound, a.opts.BaseURL+"/auth/authorize?"+q.Encode())
}

// tokenResponse is what the app reads from the token endpoint.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
	Patient     string `json:"patient"`
}

// session is a signed-in viewer; stored encrypted under a key derived from
// the cookie (docs/design/security.md VIEW-3).
type session struct {
	Token   string    `json:"token"`
	Scope   string    `json:"scope"`
	Patient string    `json:"patient"`
	Expires time.Time `json:"expires"`
}

// handleCallback is the redirect URI: the state must be live and bound to
// this browser; the code is exchanged in process with the PKCE verifier.
func (a *App) handleCallback(c echo.Context) error {
	ctx := c.Request().Context()
	c.SetCookie(a.cookie(pendingCookie, "", -1))
	if e := c.QueryParam("error"); e != "" {
		msg := "The sign-in did not complete. Launch the viewer again."
		if e == "access_denied" {
			msg = "Access was not approved, so the viewer shows nothing."
		}
		return a.page(c, http.StatusForbidden, errorPage{"Not signed in", msg})
	}
	bad := func() error {
		return a.page(c, http.StatusBadRequest, errorPage{"This sign-in is not valid",
			"It expired, was already used, or was started in another browser. Launch the viewer again."})
	}
	state, code := c.QueryParam("state"), c.QueryParam("code")
	ck, err := c.Cookie(pendingCookie)
	if state == "" || code == "" || err != nil || ck.Value == "" {
		return bad()
	}
	raw, err := a.opts.Ephemeral.Take(ctx, pendingKey(state))
	if errors.Is(err, store.ErrNotFound) {
		return bad()
	} else if err != nil {
		return err
	}
	var p pending
	if json.Unmarshal(raw, &p) != nil || subtle.ConstantTimeCompare([]byte(p.Binding), []byte(auth.Hash(ck.Value))) != 1 {
		return bad()
	}
	tok, err := a.exchange(c.Request(), code, p.Verifier)
	if err != nil {
		a.opts.Logger.WarnContext(ctx, "course viewer: code exchange failed", "error", err.Error())
		return bad()
	}
	if tok.Patient == "" || !validID(tok.Patient) {
		return a.page(c, http.StatusForbidden, errorPage{"No patient", "The sign-in did not name a patient, so the viewer shows nothing."})
	}
	ttl := min(time.Duration(tok.ExpiresIn)*time.Second, maxSessionTTL)
	s := session{Token: tok.AccessToken, Scope: tok.Scope, Patient: tok.Patient, Expires: time.Now().Add(ttl)}
	id := random()
	if err := a.saveSession(ctx, id, s, ttl); err != nil {
		return err
	}
	c.SetCookie(a.cookie(sessionCookie, id, int(ttl/time.Second)))
	// A clean URL: the code and state leave the address bar and history.
	return c.Redirect(http.StatusSeeOther, Path)
}

// exchange redeems the code at the token endpoint, in process.
func (a *App) exchange(orig *http.Request, code, verifier string) (tokenResponse, error) {
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {a.redirectURI()},
		"client_id": {ClientID}, "code_verifier": {verifier},
	}
	req, err := http.NewRequestWithContext(orig.Context(), http.MethodPost, a.opts.BaseURL+"/auth/token",
		strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	status, body := a.roundTrip(orig, req)
	var t tokenResponse
	if status != http.StatusOK {
		return t, fmt.Errorf("token endpoint answered %d", status)
	}
	if err := json.Unmarshal(body, &t); err != nil || t.AccessToken == "" || t.ExpiresIn <= 0 {
		return t, errors.New("token endpoint answered no usable token")
	}
	return t, nil
}

// roundTrip runs req through the gateway's handler. The peer address is the
// browser's, so the gateway sees the caller it would see from an outside app.
func (a *App) roundTrip(orig, req *http.Request) (int, []byte) {
	req.RemoteAddr = orig.RemoteAddr
	w := &recorder{header: http.Header{}}
	a.opts.Gateway.ServeHTTP(w, req)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.status, w.body.Bytes()
}

// handleSignOut ends the viewer session (a form post from the app's own
// page; SameSite cookies and form-action 'self' keep other sites out).
func (a *App) handleSignOut(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil && ck.Value != "" {
		_ = a.opts.Ephemeral.Delete(c.Request().Context(), sessionKey(ck.Value))
	}
	c.SetCookie(a.cookie(sessionCookie, "", -1))
	return a.page(c, http.StatusOK, errorPage{"Signed out", "The viewer session has ended."})
}

// handleView shows the course of the session's patient; without a session it
// starts a standalone launch (the patient's own record, or the clinician's
// pick on the gateway's patient picker).
func (a *App) handleView(c echo.Context) error {
	s, ok, err := a.loadSession(c)
	if err != nil {
		return err
	}
	if !ok {
		return a.authorize(c, nil, append([]string{"launch/patient"}, Scope[1:]...))
	}
	sel := c.QueryParam("session")
	if sel != "" && !validID(sel) {
		sel = ""
	}
	r := &reader{app: a, orig: c.Request(), token: s.Token}
	v, err := buildView(c.Request().Context(), r, s.Patient, s.Scope, sel)
	if errors.Is(err, errExpired) {
		c.SetCookie(a.cookie(sessionCookie, "", -1))
		return a.authorize(c, nil, append([]string{"launch/patient"}, Scope[1:]...))
	}
	if err != nil {
		// The app's own errors name a resource type and a status, never
		// request values (docs/design/security.md PRIV-4).
		a.opts.Logger.ErrorContext(c.Request().Context(), "course viewer: reading the course failed", "error", err.Error())
		return err
	}
	return a.page(c, http.StatusOK, v)
}

// page renders a view into a buffer first: a template failure is a clean
// 500, never half a page.
func (a *App) page(c echo.Context, status int, v any) error {
	name := "view.html"
	if _, ok := v.(errorPage); ok {
		name = "error.html"
	}
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, v); err != nil {
		return err
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// errorPage is a message page; its texts never hold PHI.
type errorPage struct{ Title, Message string }

func (a *App) fhirBase() string    { return a.opts.BaseURL + "/fhir" }
func (a *App) redirectURI() string { return a.opts.BaseURL + Path + "callback" }

// cookie is one of the app's cookies: HttpOnly, SameSite=Lax (the callback
// is a top-level redirect from the authorization server), limited to the
// app's path, Secure on a https base URL.
func (a *App) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: Path, MaxAge: maxAge, HttpOnly: true,
		Secure: a.opts.SecureCookies, SameSite: http.SameSiteLaxMode}
}

func (a *App) loadSession(c echo.Context) (session, bool, error) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil || len(ck.Value) < 20 || len(ck.Value) > 64 {
		return session{}, false, nil
	}
	raw, err := a.opts.Ephemeral.Get(c.Request().Context(), sessionKey(ck.Value))
	if errors.Is(err, store.ErrNotFound) {
		return session{}, false, nil
	} else if err != nil {
		return session{}, false, err
	}
	var s session
	plain, err := open(ck.Value, raw)
	if err != nil || json.Unmarshal(plain, &s) != nil || time.Now().After(s.Expires) {
		return session{}, false, nil
	}
	return s, true, nil
}

func (a *App) saveSession(ctx context.Context, id string, s session, ttl time.Duration) error {
	plain, err := json.Marshal(s)
	if err != nil {
		return err
	}
	sealed, err := seal(id, plain)
	if err != nil {
		return err
	}
	return a.opts.Ephemeral.Put(ctx, sessionKey(id), sealed, ttl)
}

// Ephemeral keys hold hashes only (docs/design/security.md PRIV-6).
func pendingKey(state string) string { return "course-pending:" + auth.Hash(state) }
func sessionKey(id string) string    { return "course-session:" + auth.Hash(id) }

// seal encrypts a session with AES-GCM under a key derived from the cookie
// value, so whoever reads the shared ephemeral store (Redis) holds no usable
// token without the browser's cookie (docs/design/security.md VIEW-3).
func seal(id string, plain []byte) ([]byte, error) {
	g, err := sessionAEAD(id)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plain, nil), nil
}

func open(id string, sealed []byte) ([]byte, error) {
	g, err := sessionAEAD(id)
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize() {
		return nil, errors.New("short")
	}
	return g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], nil)
}

func sessionAEAD(id string) (cipher.AEAD, error) {
	k := sha256.Sum256([]byte("ketabridge course session key\x00" + id))
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// random is 32 random bytes, base64url.
func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validID is a FHIR id ([A-Za-z0-9\-\.]{1,64}).
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// recorder is the response of an in-process request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
