package course

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

const testBase = "http://127.0.0.1:8080"

// fakeGateway answers the token endpoint with a fixed token and counts
// the calls.
type fakeGateway struct {
	tokenCalls atomic.Int32
	// fhir answers GET /fhir/{key} where key is the type (or type/id);
	// forbid answers 403 for a type and category ("Observation vital-signs").
	fhir   map[string]string
	forbid map[string]bool
	// status answers a key (as forbid) with that status and an empty body.
	status map[string]int
	// auth is the Authorization header of the last FHIR read.
	auth string
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/auth/token" {
		f.tokenCalls.Add(1)
		_ = r.ParseForm()
		if r.PostForm.Get("client_id") != ClientID || r.PostForm.Get("code_verifier") == "" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"secret-access-token","token_type":"Bearer","expires_in":3600,"scope":"patient/Patient.r patient/Observation.rs","patient":"p1"}`))
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/fhir/"); ok && f.fhir != nil {
		f.auth = r.Header.Get("Authorization")
		if f.forbid[rest+" "+r.URL.Query().Get("category")] {
			http.Error(w, "{}", http.StatusForbidden)
			return
		}
		if st := f.status[rest+" "+r.URL.Query().Get("category")]; st != 0 {
			http.Error(w, "{}", st)
			return
		}
		key := rest
		if c := r.URL.Query().Get("category"); c != "" {
			key += " " + c
		}
		body, ok := f.fhir[key]
		if !ok {
			body = `{"resourceType":"Bundle","type":"searchset"}`
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(body))
		return
	}
	http.Error(w, "{}", http.StatusForbidden)
}

func bundleOf(resources ...string) string {
	var entries []string
	for _, r := range resources {
		entries = append(entries, `{"resource":`+r+`}`)
	}
	return `{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Join(entries, ",") + `]}`
}

func newTestApp(t *testing.T, ancestors ...string) (*echo.Echo, *fakeGateway, store.Ephemeral) {
	t.Helper()
	return newTestAppWith(t, &fakeGateway{}, ancestors...)
}

func newTestAppWith(t *testing.T, gw *fakeGateway, ancestors ...string) (*echo.Echo, *fakeGateway, store.Ephemeral) {
	t.Helper()
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

// signIn completes a standalone launch against the fake token endpoint and
// returns the session cookie.
func signIn(t *testing.T, e *echo.Echo) *http.Cookie {
	t.Helper()
	start := do(e, http.MethodGet, Path)
	loc, _ := url.Parse(start.Header().Get("Location"))
	w := do(e, http.MethodGet, Path+"callback?"+url.Values{"code": {"c"}, "state": {loc.Query().Get("state")}}.Encode(),
		cookieOf(start, pendingCookie))
	c := cookieOf(w, sessionCookie)
	if c == nil {
		t.Fatalf("no session: %d", w.Code)
	}
	return c
}

const (
	fxEncounter = `{"resourceType":"Encounter","id":"e1","status":"finished","period":{"start":"2025-06-09T08:40:00-06:00","end":"2025-06-09T10:10:00-06:00"}}`
	fxMA        = `{"resourceType":"MedicationAdministration","id":"m1","context":{"reference":"Encounter/e1"},"medicationReference":{"reference":"Medication/k"},"effectivePeriod":{"start":"2025-06-09T08:50:00-06:00","end":"2025-06-09T09:30:00-06:00"},"dosage":{"extension":[{"url":"http://ketabridge.org/fhir/StructureDefinition/dose-per-kg","valueQuantity":{"value":0.5}}],"route":{"text":"Intravenous route"},"dose":{"value":42.5,"unit":"mg"}}}`
	fxMed       = `{"resourceType":"Medication","id":"k","code":{"text":"ketamine 100 mg/mL"},"ingredient":[{"itemCodeableConcept":{"text":"ketamine"}}]}`
	fxPHQ1      = `{"resourceType":"Observation","id":"q1","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"effectiveDateTime":"2025-06-02T09:00:00-06:00","valueInteger":18}`
	fxPHQ2      = `{"resourceType":"Observation","id":"q2","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"encounter":{"reference":"Encounter/e1"},"effectiveDateTime":"2025-06-09T08:42:00-06:00","valueInteger":8}`
	fxCADSS     = `{"resourceType":"Observation","id":"c1","code":{"coding":[{"system":"http://ketabridge.org/fhir/CodeSystem/ketabridge-scales","code":"cadss-total"}]},"encounter":{"reference":"Encounter/e1"},"effectiveDateTime":"2025-06-09T09:40:00-06:00","valueInteger":27}`
	fxBP0       = `{"resourceType":"Observation","id":"b0","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"effectiveDateTime":"2025-06-09T08:45:00-06:00","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":145}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":85}}]}`
	fxBP40      = `{"resourceType":"Observation","id":"b1","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"effectiveDateTime":"2025-06-09T09:30:00-06:00","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":132}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80}}]}`
)

func courseFixture() *fakeGateway {
	return &fakeGateway{fhir: map[string]string{
		"Patient/p1":               `{"resourceType":"Patient","id":"p1","name":[{"given":["Ada"],"family":"Test"}],"birthDate":"1980-01-02"}`,
		"Encounter":                bundleOf(fxEncounter),
		"MedicationAdministration": bundleOf(fxMA, fxMed),
		"Observation survey":       bundleOf(fxPHQ1, fxPHQ2, fxCADSS),
		"Observation vital-signs":  bundleOf(fxBP0, fxBP40),
	}, forbid: map[string]bool{}}
}

// TestRender: the page shows the records it read, with the user's token,
// and the chart points are the table's numbers.
func TestRender(t *testing.T) {
	e, gw, _ := newTestAppWith(t, courseFixture())
	ck := signIn(t, e)
	w := do(e, http.MethodGet, Path+"?session=e1", ck)
	body := w.Body.String()
	if w.Code != http.StatusOK || gw.auth != "Bearer secret-access-token" {
		t.Fatalf("view: %d, FHIR read with %q\n%s", w.Code, gw.auth, body)
	}
	if strings.Contains(body, "secret-access-token") || strings.Contains(body, "<script") {
		t.Error("the page holds the token or a script")
	}
	for _, want := range []string{
		"Ada Test, born 1980-01-02",
		`<tr data-encounter="e1" class="selected" aria-current="true"><td>1</td><td>2025-06-09</td><td>finished</td><td>ketamine</td><td>Intravenous</td><td>42.5</td><td>0.5</td><td>40</td><td>80</td><td>27</td>`,
		`<tr><td>2025-06-02</td><td>18</td><td>baseline</td></tr>`,
		`<tr><td>2025-06-09</td><td>8</td><td>-56%</td></tr>`,
		`data-value="18" data-at="2025-06-02"`, `data-value="8" data-at="2025-06-09"`,
		"latest 8 on 2025-06-09, baseline 18: response",
		`<tr><td>-5</td><td>145</td><td>85</td>`, `<tr><td>40</td><td>132</td><td>80</td>`,
		`data-value="145" data-at="-5"`,
		"Pre-dose blood pressure 145/85 is above 140/90.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

// TestRenderNotShared: a refused read says so and shows nothing
// (docs/design/security.md VIEW-6); any other failure fails the page.
func TestRenderNotShared(t *testing.T) {
	f := courseFixture()
	f.forbid["Observation vital-signs"] = true
	f.forbid["MedicationStatement "] = true
	e, _, _ := newTestAppWith(t, f)
	ck := signIn(t, e)
	w := do(e, http.MethodGet, Path+"?session=e1", ck)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `id="vitals-not-shared"`) || strings.Contains(body, `id="vitals"`) ||
		!strings.Contains(body, "Not shared with you.") {
		t.Errorf("refused vitals: %d\n%s", w.Code, body)
	}

	f = courseFixture()
	f.fhir["Encounter"] = `not json`
	e, _, _ = newTestAppWith(t, f)
	if w := do(e, http.MethodGet, Path, signIn(t, e)); w.Code != http.StatusInternalServerError {
		t.Errorf("a broken read: %d, want 500", w.Code)
	}
}

const (
	fxPlan  = `{"resourceType":"CarePlan","id":"cp1","status":"active","period":{"start":"2025-01-06"}}`
	fxCR    = `{"resourceType":"ClaimResponse","id":"a1426e2f-8dcd-5b0d-a1f1-c0cc9fe50c4a","preAuthPeriod":{"start":"2025-01-06","end":"2025-07-05"}}`
	fxTask1 = `{"resourceType":"Task","id":"t1","status":"accepted","authoredOn":"2025-02-01T10:00:00-06:00","lastModified":"2025-02-03T09:00:00-06:00","requester":{"reference":"Organization/clinic"},"owner":{"reference":"Organization/willow"},"businessStatus":{"coding":[{"system":"http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS","code":"3.0","display":"Service Request Accepted"}]}}`
	fxTask2 = `{"resourceType":"Task","id":"t2","status":"rejected","authoredOn":"2025-03-01T10:00:00-06:00","requester":{"reference":"Organization/clinic"},"owner":{"reference":"Organization/hidden"},"statusReason":{"text":"not taking new patients"}}`
	fxOrg   = `{"resourceType":"Organization","id":"willow","name":"Willow Therapy Group"}`
)

// statusFixture is courseFixture with a course, its payer answer (the
// documented $pa-status example, which a test keeps equal to the
// operation's output) and two referrals.
func statusFixture(t *testing.T) *fakeGateway {
	t.Helper()
	pa, err := os.ReadFile("../../docs/examples/pa-status.json")
	if err != nil {
		t.Fatal(err)
	}
	f := courseFixture()
	f.fhir["CarePlan"] = bundleOf(fxPlan)
	f.fhir["CarePlan/cp1/$pa-status"] = string(pa)
	f.fhir["ClaimResponse/a1426e2f-8dcd-5b0d-a1f1-c0cc9fe50c4a"] = fxCR
	f.fhir["Task"] = bundleOf(fxTask1, fxTask2, fxOrg)
	f.status = map[string]int{}
	return f
}

// TestRenderPriorAuthAndReferrals: the course summary shows the payer's
// answer as $pa-status gives it, the approved period from the answer's
// ClaimResponse, and each referral's status and organizations (by name when
// the gateway included the Organization).
func TestRenderPriorAuthAndReferrals(t *testing.T) {
	e, _, _ := newTestAppWith(t, statusFixture(t))
	body := do(e, http.MethodGet, Path, signIn(t, e)).Body.String()
	for _, want := range []string{
		`<dd id="pa-outcome">approved</dd>`,
		`<dd id="pa-approved">16 of 16 requested</dd>`,
		`<dd id="pa-used">2</dd>`,
		`<dd id="pa-remaining">14</dd>`,
		`<dd id="pa-period">2025-01-06 to 2025-07-05 (172 days left)</dd>`,
		`<tr><td>2025-03-01</td><td>Organization/clinic</td><td>Organization/hidden</td><td>rejected (not taking new patients)</td><td></td><td></td></tr>`,
		`<tr><td>2025-02-01</td><td>Organization/clinic</td><td>Willow Therapy Group</td><td>accepted</td><td>Service Request Accepted</td><td>2025-02-03</td></tr>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(body, `id="pa-renewal"`) {
		t.Error("renewal shown as due")
	}

	// No payer answer (404), a course no criteria cover (422), the answers
	// or the Tasks outside the user's access (403): nothing of them is
	// shown, and the rest of the page is.
	for name, set := range map[string]func(f *fakeGateway){
		"none": func(f *fakeGateway) {
			f.status["CarePlan/cp1/$pa-status "] = http.StatusNotFound
			f.fhir["Task"] = bundleOf()
		},
		"no criteria": func(f *fakeGateway) {
			f.status["CarePlan/cp1/$pa-status "] = http.StatusUnprocessableEntity
			f.fhir["Task"] = bundleOf()
		},
		"not visible": func(f *fakeGateway) { f.forbid["CarePlan/cp1/$pa-status "] = true; f.forbid["Task "] = true },
	} {
		f := statusFixture(t)
		set(f)
		e, _, _ := newTestAppWith(t, f)
		w := do(e, http.MethodGet, Path, signIn(t, e))
		body := w.Body.String()
		if w.Code != http.StatusOK || strings.Contains(body, "Prior authorization") || strings.Contains(body, "Referrals") ||
			strings.Contains(body, "Not shared") || !strings.Contains(body, `<dd id="given">1</dd>`) {
			t.Errorf("%s: %d\n%s", name, w.Code, body)
		}
	}

	// The answer's ClaimResponse refused: the status without the period.
	f := statusFixture(t)
	f.forbid["ClaimResponse/a1426e2f-8dcd-5b0d-a1f1-c0cc9fe50c4a "] = true
	e, _, _ = newTestAppWith(t, f)
	body = do(e, http.MethodGet, Path, signIn(t, e)).Body.String()
	if !strings.Contains(body, `<dd id="pa-remaining">14</dd>`) || strings.Contains(body, "pa-period") {
		t.Errorf("ClaimResponse refused:\n%s", body)
	}

	// Any other failure fails the page (fail closed).
	f = statusFixture(t)
	f.status["CarePlan/cp1/$pa-status "] = http.StatusInternalServerError
	e, _, _ = newTestAppWith(t, f)
	if w := do(e, http.MethodGet, Path, signIn(t, e)); w.Code != http.StatusInternalServerError {
		t.Errorf("a failed $pa-status: %d, want 500", w.Code)
	}
}

// TestClientRole: the viewer's registration is of the clinic's own (ehr)
// role with no organization, so no outside view or consent narrows its
// reads to an empty Bundle the page could not tell from "none recorded"
// (docs/design/security.md VIEW-7), and its scopes are exactly Scope plus
// the standalone launch's.
func TestClientRole(t *testing.T) {
	c, err := Client(testBase, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.Role != string(auth.RoleEHR) || c.Organization != "" {
		t.Errorf("the viewer is registered as role %q for %q", c.Role, c.Organization)
	}
	if got, want := strings.Join(c.Scopes, " "), "launch/patient "+strings.Join(Scope, " "); got != want {
		t.Errorf("scopes %q, want %q", got, want)
	}
}

// withheldBundle is a searchset the gateway marked as withheld in part
// (docs/design/security.md PRIV-17): its entries and an outcome entry of
// issue type suppressed.
func withheldBundle(resources ...string) string {
	entries := []string{`{"fullUrl":"urn:uuid:0b7e1d3a-4f9e-4c1e-9a57-3f0c2c9d8e11","resource":{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"suppressed","details":{"text":"withheld"}}]},"search":{"mode":"outcome"}}`}
	for _, r := range resources {
		entries = append(entries, `{"resource":`+r+`,"search":{"mode":"match"}}`)
	}
	return `{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Join(entries, ",") + `]}`
}

// TestRenderWithheld: a search the gateway marks as withheld says "not
// shared with you", never "none recorded", and shows nothing of a
// withheld class: the monitoring chart of a partner whose consent leaves
// out vitals, and the assessments; assessments withheld in part show the
// trends they have with a note, and the safety check gives no all-clear
// (docs/design/security.md VIEW-8). An outcome entry of another kind (a
// lenient search's warning) changes nothing.
func TestRenderWithheld(t *testing.T) {
	f := courseFixture()
	f.fhir["Observation vital-signs"] = withheldBundle()
	f.fhir["Observation survey"] = withheldBundle()
	e, _, _ := newTestAppWith(t, f)
	w := do(e, http.MethodGet, Path+"?session=e1", signIn(t, e))
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `id="vitals-not-shared"`) || strings.Contains(body, `id="vitals"`) ||
		strings.Contains(body, "No outcome measures recorded") || strings.Contains(body, "No safety flags") ||
		strings.Count(body, "Not shared with you.") < 2 {
		t.Errorf("withheld vitals and assessments: %d\n%s", w.Code, body)
	}

	// A withheld mark on a page with data: the vitals show nothing.
	f = courseFixture()
	f.fhir["Observation vital-signs"] = withheldBundle(fxBP0, fxBP40)
	f.fhir["Observation survey"] = withheldBundle(fxPHQ1, fxPHQ2, fxCADSS)
	e, _, _ = newTestAppWith(t, f)
	w = do(e, http.MethodGet, Path+"?session=e1", signIn(t, e))
	body = w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `id="vitals-not-shared"`) || strings.Contains(body, `data-value="145"`) {
		t.Errorf("vitals withheld in part must show none: %d\n%s", w.Code, body)
	}
	for _, want := range []string{`data-value="18" data-at="2025-06-02"`, "Some outcome measures are not shared with you",
		"Not shared with you in full: the safety check"} {
		if !strings.Contains(body, want) {
			t.Errorf("assessments withheld in part: the page lacks %s", want)
		}
	}
	if strings.Contains(body, "No safety flags") {
		t.Error("assessments withheld in part: the safety check gives an all-clear")
	}

	// Another outcome issue (not suppressed) is no mark.
	f = courseFixture()
	f.fhir["Observation vital-signs"] = strings.Replace(withheldBundle(fxBP0, fxBP40), `"suppressed"`, `"not-supported"`, 1)
	e, _, _ = newTestAppWith(t, f)
	w = do(e, http.MethodGet, Path+"?session=e1", signIn(t, e))
	if body := w.Body.String(); w.Code != http.StatusOK || !strings.Contains(body, `data-value="145" data-at="-5"`) {
		t.Errorf("a warning outcome: the vitals are not shown: %d\n%s", w.Code, body)
	}
}

// TestVitalsSameMinute: blood pressures taken in the same minute (a
// repeat of a high reading), or even at the same instant, are rows and
// chart points of their own, none hiding another.
func TestVitalsSameMinute(t *testing.T) {
	f := courseFixture()
	repeat := strings.NewReplacer(`"id":"b0"`, `"id":"b0r"`, `08:45:00`, `08:45:20`, `"value":145`, `"value":138`).Replace(fxBP0)
	// And one at the very same instant as the first (two sets recorded at
	// one time).
	same := strings.NewReplacer(`"id":"b0"`, `"id":"b0s"`, `"value":145`, `"value":151`).Replace(fxBP0)
	f.fhir["Observation vital-signs"] = bundleOf(fxBP0, repeat, same, fxBP40)
	e, _, _ := newTestAppWith(t, f)
	w := do(e, http.MethodGet, Path+"?session=e1", signIn(t, e))
	body := w.Body.String()
	for _, want := range []string{`<tr><td>-5</td><td>145</td><td>85</td>`, `<tr><td>-5</td><td>138</td><td>85</td>`,
		`<tr><td>-5</td><td>151</td><td>85</td>`,
		`data-value="145" data-at="-5"`, `data-value="138" data-at="-5"`, `data-value="151" data-at="-5"`} {
		if !strings.Contains(body, want) {
			t.Errorf("same-minute readings: the page lacks %s", want)
		}
	}
}
