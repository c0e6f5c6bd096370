package fhir

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

func TestDefaultDeny(t *testing.T) {
	env := newEnv(t, nil)
	outcome(t, env.doAs("anything", "GET", "/fhir/Patient/p1", ""), 401, "login")
	if len(env.fs.queries) != 0 {
		t.Errorf("store queried before the decision")
	}
}

func TestPatientRestriction(t *testing.T) {
	// Patient p1's app may read and search Patient, Observation and
	// Encounter of p1's compartment, and no Practitioner.
	env := newEnv(t, testCallers{defaultToken: caller("patient/Patient.rs patient/Observation.rs patient/Encounter.rs", "p1")})
	t.Run("read own", func(t *testing.T) {
		if w := env.do("GET", "/fhir/Patient/p1", ""); w.Code != 200 {
			t.Errorf("status %d", w.Code)
		}
	})
	t.Run("read other patient", func(t *testing.T) {
		outcome(t, env.do("GET", "/fhir/Patient/p2", ""), 403, "forbidden")
		outcome(t, env.do("GET", "/fhir/Observation/x1", ""), 403, "forbidden")
		outcome(t, env.do("GET", "/fhir/Patient/p2/_history/1", ""), 403, "forbidden")
		outcome(t, env.do("GET", "/fhir/Patient/p2/_history", ""), 403, "forbidden")
		outcome(t, env.do("GET", "/fhir/Patient/p2/$everything", ""), 403, "forbidden")
	})
	t.Run("denied type", func(t *testing.T) {
		outcome(t, env.do("GET", "/fhir/Practitioner/dr1", ""), 403, "forbidden")
	})
	t.Run("search is restricted before the query", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Observation?code=8867-4&_count=100", "").Body.Bytes())
		q := env.fs.queries[len(env.fs.queries)-1]
		if !slices.Equal(q.Patients, []string{"p1"}) {
			t.Errorf("query Patients = %v", q.Patients)
		}
		if m["total"] != 25.0 || slices.Contains(entryIDs(m), "match:Observation/x1") {
			t.Errorf("total %v", m["total"])
		}
	})
	t.Run("includes are filtered", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Observation?_id=o01&_include=Observation:performer&_include=Observation:subject", "").Body.Bytes())
		if got := strings.Join(entryIDs(m), " "); got != "match:Observation/o01 include:Patient/p1" {
			t.Errorf("entries %s (Practitioner must not be included)", got)
		}
	})
	t.Run("revinclude restricted", func(t *testing.T) {
		env.do("GET", "/fhir/Patient?_revinclude=Encounter:subject", "")
		q := env.fs.queries[len(env.fs.queries)-1]
		if q.Type != "Encounter" || !slices.Equal(q.Patients, []string{"p1"}) {
			t.Errorf("revinclude query = %+v", q)
		}
	})
}

// TestAccessFailsClosed: a token that cannot be verified, or a decision that
// denies, answers an OperationOutcome and never data
// (docs/design/security.md PRIV-1, PRIV-2).
func TestAccessFailsClosed(t *testing.T) {
	callers := testCallers{
		"no-patient":    caller("patient/*.rs", ""),
		"openid-only":   caller("openid fhirUser", "p1"),
		"unexpressible": caller("system/Observation.rs?code=1 system/Observation.rs?category=a", ""),
	}
	for _, tc := range []struct {
		name, token string
		want        *Error // the kind answered
	}{
		{"verification cannot reach shared state", "down", ErrUnavailable},
		{"verification fails otherwise", "broken", ErrInternal},
		{"patient scope without a patient", "no-patient", ErrForbidden},
		{"no resource scope", "openid-only", ErrForbidden},
		{"granular union that is not one query", "unexpressible", ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, callers)
			for _, target := range []string{"/fhir/Patient/p1", "/fhir/Observation?code=8867-4", "/fhir/Patient/p1/$everything"} {
				w := env.doAs(tc.token, "GET", target, "")
				outcome(t, w, tc.want.Status, tc.want.Code)
				if strings.Contains(w.Body.String(), "Doe") || strings.Contains(w.Body.String(), "revocation") {
					t.Errorf("%s: leak: %s", target, w.Body)
				}
			}
			if tc.want.Status >= 500 && len(env.fs.queries) != 0 {
				t.Errorf("store queried without a verified caller")
			}
		})
	}
}

// TestAuthenticationBeforeParsing: without a valid token the answer is 401,
// whatever else is wrong with the request, so the API's shape cannot be
// probed (docs/design/security.md RS-1, NEG-35).
func TestAuthenticationBeforeParsing(t *testing.T) {
	env := newEnv(t, allowAll)
	tests := []struct {
		name, method, target, body string
		hdr                        []string
		authenticated              int // the status with a valid token
	}{
		{name: "unknown search parameter", method: "GET", target: "/fhir/Observation?bogus=1", authenticated: 400},
		{name: "POST _search with a bad body", method: "POST", target: "/fhir/Observation/_search", body: "%zz",
			hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, authenticated: 400},
		{name: "POST _search with another content type", method: "POST", target: "/fhir/Observation/_search", body: "{}",
			hdr: []string{"Content-Type", "application/json"}, authenticated: 415},
		{name: "unacceptable Accept header", method: "GET", target: "/fhir/Patient/p1",
			hdr: []string{"Accept", "application/fhir+xml"}, authenticated: 406},
		{name: "unacceptable _format", method: "GET", target: "/fhir/Patient/p1?_format=xml", authenticated: 406},
		{name: "unknown type", method: "GET", target: "/fhir/Spaceship", authenticated: 404},
		{name: "invalid id", method: "GET", target: "/fhir/Patient/" + strings.Repeat("x", 65), authenticated: 404},
		{name: "body over the limit", method: "POST", target: "/fhir/Observation/_search", body: "a=" + strings.Repeat("x", 5000),
			hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, authenticated: 413},
		{name: "write on an instance", method: "POST", target: "/fhir/Patient/p1", authenticated: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := env.doAs("", tc.method, tc.target, tc.body, tc.hdr...)
			outcome(t, w, 401, "login")
			if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="KetaBridge"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if w := env.doAs("forged", tc.method, tc.target, tc.body, tc.hdr...); w.Code != 401 {
				t.Errorf("invalid token: status %d, want 401", w.Code)
			}
			if w := env.do(tc.method, tc.target, tc.body, tc.hdr...); w.Code != tc.authenticated {
				t.Errorf("valid token: status %d, want %d: %s", w.Code, tc.authenticated, w.Body)
			}
		})
	}
}

var _ auth.Verifier = testCallers{}

func TestMetadata(t *testing.T) {
	env := newEnv(t, nil) // no auth needed
	w := env.do("GET", "/fhir/metadata", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != contentFHIRJSON {
		t.Fatalf("status %d, %s", w.Code, w.Header().Get("Content-Type"))
	}
	m := parseFHIR(t, w.Body.Bytes())
	writeSample(t, "capability.json", w.Body.Bytes())
	if m["resourceType"] != "CapabilityStatement" || m["fhirVersion"] != "4.0.1" || m["kind"] != "instance" ||
		m["status"] != "active" || get(m, "implementation", "url") != testBase || get(m, "format", 0) != "json" {
		t.Fatalf("header: %v", m)
	}
	resources := get(m, "rest", 0, "resource").([]any)
	byType := map[string]map[string]any{}
	for _, r := range resources {
		byType[get(r, "type").(string)] = r.(map[string]any)
	}
	patient := byType["Patient"]
	if get(patient, "operation", 0, "name") != "everything" ||
		get(patient, "operation", 0, "definition") != "http://hl7.org/fhir/OperationDefinition/Patient-everything" {
		t.Errorf("Patient operation = %v", patient["operation"])
	}
	if get(patient, "supportedProfile", 0) != "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient" {
		t.Errorf("Patient profile = %v", patient["supportedProfile"])
	}
	var interactions []string
	for _, i := range patient["interaction"].([]any) {
		interactions = append(interactions, get(i, "code").(string))
	}
	if strings.Join(interactions, ",") != "read,vread,history-instance,search-type" {
		t.Errorf("interactions = %v", interactions)
	}
	obs := byType["Observation"]
	if !slices.Contains(obs["searchInclude"].([]any), any("Observation:subject")) {
		t.Errorf("Observation searchInclude = %v", obs["searchInclude"])
	}
	if !slices.Contains(patient["searchRevInclude"].([]any), any("Observation:subject")) {
		t.Errorf("Patient searchRevInclude = %v", patient["searchRevInclude"])
	}
	found := false
	for _, sp := range obs["searchParam"].([]any) {
		if get(sp, "name") == "code" {
			found = get(sp, "type") == "token" && get(sp, "definition") != nil && get(sp, "documentation") != nil
		}
	}
	if !found {
		t.Errorf("Observation code searchParam missing or incomplete")
	}
	outcome(t, env.do("GET", "/fhir/metadata", "", "Accept", "application/fhir+xml"), 406, "not-supported")
}

func TestNewValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no store", Options{Base: testBase}},
		{"relative base", Options{Store: newFakeStore(), Base: "/fhir"}},
		{"base with query", Options{Store: newFakeStore(), Base: testBase + "?x=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Errorf("New accepted %+v", tc.opts)
			}
		})
	}
}

// TestIncludeAuthorization: an included resource of a type the caller may
// not search is left out, not an error (docs/design/security.md NEG-41).
func TestIncludeAuthorization(t *testing.T) {
	tests := []struct {
		name  string
		scope string
	}{
		{"type not granted", "system/Observation.rs"},
		{"granular scope that cannot be enforced", "system/Observation.rs system/Practitioner.rs?colour=red"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, testCallers{defaultToken: caller(tc.scope, "")})
			w := env.do("GET", "/fhir/Observation?_id=o01&_include=Observation:performer", "")
			if got := strings.Join(entryIDs(parseFHIR(t, w.Body.Bytes())), " "); got != "match:Observation/o01" {
				t.Errorf("entries %s", got)
			}
		})
	}
}

// corsClients lists one client with a registered origin, or fails.
type corsClients struct{ fail error }

func (l corsClients) ListClients(context.Context) ([]store.Client, error) {
	return []store.Client{{ID: "app", Origins: []string{"https://app.example"}}}, l.fail
}

// TestCORS: the FHIR API applies auth's CORS policy before authentication,
// so a browser app's preflight succeeds without a token and its 401 is
// readable (docs/design/security.md NET-1); metadata is open to any origin;
// an unreadable origin list fails closed.
func TestCORS(t *testing.T) {
	const app = "https://app.example"
	env := newEnvWith(t, Options{Verifier: allowAll, CORS: auth.NewCORS(corsClients{}, nil)})
	tests := []struct {
		name, method, target, origin string
		hdr                          []string
		status                       int
		allowOrigin                  string
	}{
		{name: "preflight without a token", method: "OPTIONS", target: "/fhir/Observation?code=1", origin: app,
			hdr: []string{"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization"}, status: 204, allowOrigin: app},
		{name: "preflight of an unknown path", method: "OPTIONS", target: "/fhir/a/b/c", origin: app,
			hdr: []string{"Access-Control-Request-Method", "GET"}, status: 204, allowOrigin: app},
		{name: "preflight from a foreign origin", method: "OPTIONS", target: "/fhir/Observation", origin: "https://evil.example",
			hdr: []string{"Access-Control-Request-Method", "GET"}, status: 204},
		{name: "401 is readable by a registered origin", method: "GET", target: "/fhir/Patient/p1", origin: app, status: 401, allowOrigin: app},
		{name: "data for a registered origin", method: "GET", target: "/fhir/Patient/p1", origin: app,
			hdr: []string{"Authorization", "Bearer " + defaultToken}, status: 200, allowOrigin: app},
		{name: "data for a foreign origin carries no CORS headers", method: "GET", target: "/fhir/Patient/p1", origin: "https://evil.example",
			hdr: []string{"Authorization", "Bearer " + defaultToken}, status: 200},
		{name: "metadata for any origin", method: "GET", target: "/fhir/metadata", origin: "https://evil.example", status: 200, allowOrigin: "*"},
		{name: "metadata preflight", method: "OPTIONS", target: "/fhir/metadata", origin: "https://evil.example",
			hdr: []string{"Access-Control-Request-Method", "GET"}, status: 204, allowOrigin: "*"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := env.doAs("", tc.method, tc.target, "", append([]string{"Origin", tc.origin}, tc.hdr...)...)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != tc.allowOrigin {
				t.Errorf("Allow-Origin = %q, want %q", got, tc.allowOrigin)
			}
			if tc.allowOrigin != "" && !strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
				t.Errorf("Expose-Headers = %q", w.Header().Get("Access-Control-Expose-Headers"))
			}
		})
	}
	t.Run("an unreadable origin list fails closed", func(t *testing.T) {
		env := newEnvWith(t, Options{Verifier: allowAll, CORS: auth.NewCORS(corsClients{fail: store.ErrUnavailable}, nil)})
		w := env.doAs(defaultToken, "GET", "/fhir/Patient/p1", "", "Origin", app)
		outcome(t, w, 503, "transient")
		if w.Header().Get("Access-Control-Allow-Origin") != "" || strings.Contains(w.Body.String(), "Doe") {
			t.Errorf("headers %v body %s", w.Header(), w.Body)
		}
	})
}
