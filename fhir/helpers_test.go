package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

const testBase = "http://localhost:8080/fhir"

var t0 = time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// testCallers is the fake auth.Verifier of the tests (the seam at token
// verification): each bearer token names a caller; any other token is
// invalid. The token "down" fails to verify because the revocation set
// cannot be read, "broken" for an unexpected reason.
type testCallers map[string]*auth.AccessInfo

func (tc testCallers) Verify(_ context.Context, raw string) (*auth.AccessInfo, error) {
	switch raw {
	case "down":
		return nil, fmt.Errorf("revocations: %w", store.ErrUnavailable)
	case "broken":
		return nil, errors.New("revocation set: Jane Doe's grant is corrupt")
	}
	if info, ok := tc[raw]; ok {
		return info, nil
	}
	return nil, fmt.Errorf("%w: not a test token", auth.ErrInvalidToken)
}

// defaultToken is the bearer token env.do sends when the request names none.
const defaultToken = "test"

// caller is a verified token of client "app" with scope and the patient in
// context.
func caller(scope, patient string) *auth.AccessInfo {
	g, errs := auth.ParseGrant(scope)
	if len(errs) > 0 {
		panic(fmt.Sprint(errs))
	}
	return &auth.AccessInfo{ClientID: "app", Subject: "app", Scope: scope,
		Principal: auth.Principal{ClientID: "app", Grant: g, Patient: patient}}
}

// allowAll is the caller of tests that are not about access: every
// interaction on every patient.
var allowAll = testCallers{defaultToken: caller("system/*.cruds", "")}

// secMeta is the meta every sensitive (psychiatric) resource carries: the
// project's PSY + R security labels.
const secMeta = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"},` +
	`{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}`

func obsBody(id, patient string) string {
	return `{"id":"` + id + `",` + secMeta + `,"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},` +
		`"subject":{"reference":"Patient/` + patient + `"},"performer":[{"reference":"Practitioner/dr1"}],` +
		`"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},"resourceType":"Observation"}`
}

func obsRows(patient string) []store.IndexRow {
	return []store.IndexRow{
		{Param: "subject", Kind: store.KindReference, Value: "Patient/" + patient},
		{Param: "patient", Kind: store.KindReference, Value: "Patient/" + patient},
		{Param: "performer", Kind: store.KindReference, Value: "Practitioner/dr1"},
		{Param: "code", Kind: store.KindToken, System: "http://loinc.org", Code: "8867-4"},
	}
}

func patientBody(id, family string) string {
	return `{"id":"` + id + `","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},"identifier":[{"system":"urn:oid:2.16.840.1.113883.4.1","value":"` + id + `-mrn"}],` +
		`"name":[{"family":"` + family + `","given":["Jane"]}],"gender":"female","birthDate":"1980-04-02","resourceType":"Patient"}`
}

// fixture fills a fake store: patients p1 (2 versions), p2, p3 (deleted),
// practitioner dr1, 25 observations of p1, one of p2, encounter e1 of p1.
func fixture() *fakeStore {
	f := newFakeStore()
	f.put("Patient", "p1", "p1", t0, patientBody("p1", "Doe"),
		store.IndexRow{Param: "name", Kind: store.KindString, Value: "doe"})
	f.put("Patient", "p1", "p1", t0.Add(time.Hour), patientBody("p1", "Doe-Smith"),
		store.IndexRow{Param: "name", Kind: store.KindString, Value: "doe-smith"})
	f.put("Patient", "p2", "p2", t0, patientBody("p2", "Roe"),
		store.IndexRow{Param: "name", Kind: store.KindString, Value: "roe"})
	f.put("Patient", "p3", "p3", t0, patientBody("p3", "Poe"))
	f.del("Patient", "p3", t0.Add(2*time.Hour))
	f.put("Practitioner", "dr1", "", t0, `{"id":"dr1","name":[{"family":"House","prefix":["Dr."]}],"resourceType":"Practitioner"}`)
	for i := 1; i <= 25; i++ {
		id := fmt.Sprintf("o%02d", i)
		f.put("Observation", id, "p1", t0.Add(time.Duration(i)*time.Minute), obsBody(id, "p1"), obsRows("p1")...)
	}
	f.put("Observation", "x1", "p2", t0, obsBody("x1", "p2"), obsRows("p2")...)
	f.put("Encounter", "e1", "p1", t0, `{"id":"e1",`+secMeta+`,"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"},"resourceType":"Encounter"}`,
		store.IndexRow{Param: "subject", Kind: store.KindReference, Value: "Patient/p1"},
		store.IndexRow{Param: "patient", Kind: store.KindReference, Value: "Patient/p1"})
	return f
}

type testEnv struct {
	e   *echo.Echo
	fs  *fakeStore
	log *bytes.Buffer
	// token is the bearer token do sends ("" = none).
	token string
}

// newEnv serves the fixture with callers verifying the tokens (nil: no
// Verifier, so every data request is refused).
func newEnv(t testing.TB, callers testCallers) *testEnv {
	t.Helper()
	opts := Options{}
	if callers != nil {
		opts.Verifier = callers
	}
	env := newEnvWith(t, opts)
	if callers[defaultToken] != nil {
		env.token = defaultToken
	}
	return env
}

// newEnvWith serves the fixture with opts (its Store, Base, Clock, Logger and
// BodyLimit are set here).
func newEnvWith(t testing.TB, opts Options) *testEnv {
	t.Helper()
	fs := fixture()
	var buf bytes.Buffer
	opts.Store, opts.Base, opts.Clock = fs, testBase, fixedClock{t0.Add(24 * time.Hour)}
	opts.Logger, opts.BodyLimit = slog.New(slog.NewJSONHandler(&buf, nil)), 4096
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	s.Register(e)
	return &testEnv{e: e, fs: fs, log: &buf}
}

// do runs one request with env.token, unless hdr names an Authorization
// header; hdr holds header name/value pairs.
func (env *testEnv) do(method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	return env.doAs(env.token, method, target, body, hdr...)
}

// doAs runs one request with bearer token tok ("" = none), unless hdr names
// an Authorization header.
func (env *testEnv) doAs(tok, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	if _, set := r.Header["Authorization"]; !set && tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	env.e.ServeHTTP(w, r)
	return w
}

// parseFHIR checks that a response body is a valid FHIR JSON resource: it
// parses, has a resourceType, holds no empty object, array, string or null
// (ele-1), passes every check in checkConformance, and returns it as a map.
func parseFHIR(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	if rt, _ := m["resourceType"].(string); rt == "" {
		t.Fatalf("no resourceType: %s", body)
	}
	if p := emptyPath(m, "$"); p != "" {
		t.Fatalf("empty value at %s: %s", p, body)
	}
	checkConformance(t, body)
	return m
}

func emptyPath(v any, path string) string {
	switch x := v.(type) {
	case nil:
		return path
	case string:
		if x == "" {
			return path
		}
	case []any:
		if len(x) == 0 {
			return path
		}
		for i, e := range x {
			if p := emptyPath(e, fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case map[string]any:
		if len(x) == 0 {
			return path
		}
		for k, e := range x {
			if p := emptyPath(e, path+"."+k); p != "" {
				return p
			}
		}
	}
	return ""
}

// outcome checks an OperationOutcome response: status, IssueType, and that
// it is valid FHIR; it returns the first issue.
func outcome(t testing.TB, w *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") && !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q", ct)
	}
	m := parseFHIR(t, w.Body.Bytes())
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("resourceType = %v", m["resourceType"])
	}
	issue := get(m, "issue", 0).(map[string]any)
	if issue["code"] != code || issue["severity"] != "error" {
		t.Fatalf("issue = %v, want code %s severity error", issue, code)
	}
	return issue
}

// get walks a decoded JSON value by keys and indexes (nil when absent).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// writeSample saves a response body for the external validator run (see
// TestWriteSamples); FHIR_SAMPLES names the directory.
func writeSample(t testing.TB, name string, body []byte) {
	dir := os.Getenv("FHIR_SAMPLES")
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
		t.Fatal(err)
	}
}
