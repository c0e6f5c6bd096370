package course

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

const testBase = "http://127.0.0.1:8080"

// fakeGateway answers the token endpoint with a fixed token and counts
// the calls.
type fakeGateway struct{ tokenCalls atomic.Int32 }

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/auth/token" {
		f.tokenCalls.Add(1)
		_ = r.ParseForm()
		if r.PostForm.Get("client_id") != ClientID || r.PostForm.Get("code_verifier") == "" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"secret-access-token","token_type":"Bearer","expires_in":3600,"scope":"patient/Patient.r","patient":"p1"}`))
		return
	}
	http.Error(w, "{}", http.StatusForbidden)
}

func newTestApp(t *testing.T, ancestors ...string) (*echo.Echo, *fakeGateway, store.Ephemeral) {
	t.Helper()
	gw := &fakeGateway{}
	eph := memory.NewEphemeral(store.SystemClock{})
	a, err := New(Options{BaseURL: testBase, Gateway: gw, Ephemeral: eph, FrameAncestors: ancestors})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	a.Register(e)
	return e, gw, eph
}

func do(e *echo.Echo, method, target string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}

func cookieOf(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestHeaders: docs/design/security.md VIEW-2.
func TestHeaders(t *testing.T) {
	e, _, _ := newTestApp(t)
	w := do(e, http.MethodGet, Path+"course.css")
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q allows script or unsafe sources", csp)
	}
	if w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", w.Header())
	}

	e, _, _ = newTestApp(t, "https://ehr.example", "http://localhost:9000")
	w = do(e, http.MethodGet, Path+"launch")
	if csp := w.Header().Get("Content-Security-Policy"); !strings.HasSuffix(csp, "frame-ancestors https://ehr.example http://localhost:9000") ||
		w.Header().Get("X-Frame-Options") != "" {
		t.Errorf("with ancestors: CSP %q, X-Frame-Options %q", csp, w.Header().Get("X-Frame-Options"))
	}
}

func TestCheckFrameAncestor(t *testing.T) {
	for o, ok := range map[string]bool{
		"https://ehr.example": true, "https://ehr.example:8443": true, "http://127.0.0.1:3000": true,
		"http://ehr.example": false, "https://ehr.example/": false, "https://ehr.example/path": false,
		"*": false, "'self'": false, "https://ehr.example?x=1": false, "https://u:p@ehr.example": false,
	} {
		if err := CheckFrameAncestor(o); (err == nil) != ok {
			t.Errorf("CheckFrameAncestor(%q) = %v", o, err)
		}
	}
}

// TestEHRLaunch: docs/design/security.md VIEW-1, VIEW-4.
func TestEHRLaunch(t *testing.T) {
	e, _, _ := newTestApp(t)
	if w := do(e, http.MethodGet, Path+"launch?iss=https://evil.example/fhir&launch=abc"); w.Code != http.StatusBadRequest ||
		w.Header().Get("Location") != "" {
		t.Errorf("foreign iss: %d %q", w.Code, w.Header().Get("Location"))
	}
	w := do(e, http.MethodGet, Path+"launch?"+url.Values{"iss": {testBase + "/fhir"}, "launch": {"L1"}}.Encode())
	if w.Code != http.StatusFound {
		t.Fatalf("launch: %d", w.Code)
	}
	loc, _ := url.Parse(w.Header().Get("Location"))
	q := loc.Query()
	if loc.Scheme+"://"+loc.Host+loc.Path != testBase+"/auth/authorize" || q.Get("launch") != "L1" || q.Get("aud") != testBase+"/fhir" ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("client_id") != ClientID ||
		q.Get("redirect_uri") != testBase+Path+"callback" || q.Get("scope") != strings.Join(Scope, " ") || len(q.Get("state")) < 40 {
		t.Errorf("authorize request %s", loc)
	}
	c := cookieOf(w, pendingCookie)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != Path || c.Value == q.Get("state") {
		t.Errorf("binding cookie %+v", c)
	}
}

// TestCallback: the state is single use and bound to the browser; the
// session cookie is opaque and the stored session holds no readable token
// (docs/design/security.md VIEW-3, VIEW-4).
func TestCallback(t *testing.T) {
	e, gw, eph := newTestApp(t)
	start := do(e, http.MethodGet, Path)
	if start.Code != http.StatusFound {
		t.Fatalf("standalone start: %d", start.Code)
	}
	loc, _ := url.Parse(start.Header().Get("Location"))
	if !strings.Contains(loc.Query().Get("scope"), "launch/patient") || strings.Contains(" "+loc.Query().Get("scope")+" ", " launch ") {
		t.Errorf("standalone scope %q", loc.Query().Get("scope"))
	}
	state, binding := loc.Query().Get("state"), cookieOf(start, pendingCookie)
	cb := Path + "callback?" + url.Values{"code": {"c1"}, "state": {state}}.Encode()

	for name, w := range map[string]*httptest.ResponseRecorder{
		"no binding cookie":      do(e, http.MethodGet, cb),
		"another browser's":      do(e, http.MethodGet, cb, &http.Cookie{Name: pendingCookie, Value: "other"}),
		"unknown state":          do(e, http.MethodGet, Path+"callback?code=c1&state=nope", binding),
		"error from the server":  do(e, http.MethodGet, Path+"callback?error=access_denied&state="+state, binding),
		"no code (state intact)": do(e, http.MethodGet, Path+"callback?state="+state, binding),
	} {
		if w.Code < 400 || cookieOf(w, sessionCookie) != nil {
			t.Errorf("%s: %d, session cookie %v", name, w.Code, cookieOf(w, sessionCookie))
		}
	}
	// The state was taken by the foreign-cookie attempt: a state is single use.
	if w := do(e, http.MethodGet, cb, binding); w.Code != http.StatusBadRequest || gw.tokenCalls.Load() != 0 {
		t.Fatalf("a used state: %d, %d token calls", w.Code, gw.tokenCalls.Load())
	}

	// A fresh launch, completed properly.
	start = do(e, http.MethodGet, Path)
	loc, _ = url.Parse(start.Header().Get("Location"))
	w := do(e, http.MethodGet, Path+"callback?"+url.Values{"code": {"c2"}, "state": {loc.Query().Get("state")}}.Encode(),
		cookieOf(start, pendingCookie))
	sess := cookieOf(w, sessionCookie)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != Path || sess == nil || !sess.HttpOnly ||
		sess.SameSite != http.SameSiteLaxMode || sess.Path != Path || gw.tokenCalls.Load() != 1 {
		t.Fatalf("callback: %d %q cookie %+v", w.Code, w.Header().Get("Location"), sess)
	}
	raw, err := eph.Get(context.Background(), sessionKey(sess.Value))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "secret-access-token") || strings.Contains(string(raw), sess.Value) {
		t.Error("the stored session holds the token or the cookie in clear")
	}
	if _, err := eph.Get(context.Background(), "course-session:"+sess.Value); err == nil {
		t.Error("the session is stored under the raw cookie value")
	}
	// The token opens only with the cookie.
	plain, err := open(sess.Value, raw)
	var s session
	if err != nil || json.Unmarshal(plain, &s) != nil || s.Token != "secret-access-token" || s.Patient != "p1" {
		t.Errorf("session %+v, %v", s, err)
	}
	if _, err := open("another-cookie-value-xxxxxxxx", raw); err == nil {
		t.Error("the session opens with another cookie")
	}
}

func TestVitalsShared(t *testing.T) {
	for scope, want := range map[string]bool{
		"patient/Observation.rs":                      true,
		"patient/*.rs":                                true,
		"patient/Observation.read":                    true,
		"patient/Observation.rs?category=vital-signs": true,
		"patient/Observation.rs?category=survey":      false,
		"patient/Observation.r":                       false,
		"patient/Patient.rs launch":                   false,
		"":                                            false,
		"patient/Observation.rs?category=survey patient/Observation.rs?category=vital-signs": true,
	} {
		if got := vitalsShared(scope); got != want {
			t.Errorf("vitalsShared(%q) = %v", scope, got)
		}
	}
}

func TestSafetyFlags(t *testing.T) {
	ord := func(n float64) *concept {
		return &concept{Coding: []coding{{System: loinc, Code: "LA6569-3", Extension: []extension{{URL: ordinalEx, ValueDecimal: &n}}}}}
	}
	item9 := func(when string, n float64) observation {
		return observation{Code: concept{Coding: []coding{{System: loinc, Code: codePHQ9Item9}}}, EffectiveDateTime: when, ValueCodeableConcept: ord(n)}
	}
	cssrs := func(when, risk string) observation {
		return observation{Code: concept{Coding: []coding{{System: loinc, Code: codeCSSRSRisk}}}, EffectiveDateTime: when,
			ValueCodeableConcept: &concept{Coding: []coding{{System: local, Code: risk, Display: strings.TrimPrefix(risk, "cssrs-risk-")}}}}
	}
	flags := safetyFlags([]observation{
		item9("2025-01-01T09:00:00-06:00", 0), // zero: nothing
		item9("2025-01-02T09:00:00-06:00", 2), // no C-SSRS that day: flagged
		item9("2025-01-03T09:00:00-06:00", 1), // C-SSRS the same day: not flagged
		cssrs("2025-01-03T09:30:00-06:00", "cssrs-risk-low"),
		cssrs("2025-01-04T09:30:00-06:00", "cssrs-risk-high"), // flagged
	})
	if len(flags) != 2 || !strings.Contains(flags[0], "same day: 2025-01-02 (2) (score") || !strings.Contains(flags[1], "2025-01-04: C-SSRS suicide risk high") {
		t.Errorf("flags %q", flags)
	}
}
