package fhir

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestDefaultDeny(t *testing.T) {
	env := newEnv(t, nil)
	outcome(t, env.do("GET", "/fhir/Patient/p1", ""), 401, "login")
	if len(env.fs.queries) != 0 {
		t.Errorf("store queried before the decision")
	}
}

// patientOnly restricts every data interaction to patient p1 and records the
// accesses it was asked about.
type patientOnly struct{ asked []Access }

func (p *patientOnly) Authorize(_ echo.Context, a Access) (Decision, error) {
	p.asked = append(p.asked, a)
	if a.Type == "Practitioner" {
		return Deny(nil), nil // scopes without Practitioner
	}
	return AllowPatients("p1"), nil
}

func TestPatientRestriction(t *testing.T) {
	auth := &patientOnly{}
	env := newEnv(t, auth)
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
	if !slices.Contains(auth.asked, Access{Interaction: InteractionEverything, Type: "Patient", ID: "p2"}) {
		t.Errorf("everything access not described: %v", auth.asked)
	}
}

func TestAuthorizerFailure(t *testing.T) {
	tests := []struct {
		name   string
		auth   Authorizer
		status int
		code   string
	}{
		{"error fails closed", AuthorizerFunc(func(echo.Context, Access) (Decision, error) {
			return Allow(), errors.New("token cache down")
		}), 500, "exception"},
		{"fhir error is rendered", AuthorizerFunc(func(echo.Context, Access) (Decision, error) {
			return Decision{}, ErrForbidden.WithDetails("insufficient scope")
		}), 403, "forbidden"},
		{"zero decision denies", AuthorizerFunc(func(echo.Context, Access) (Decision, error) {
			return Decision{}, nil
		}), 403, "forbidden"},
		{"allow without patients shows nothing patient-bound", AuthorizerFunc(func(echo.Context, Access) (Decision, error) {
			return Decision{Allow: true}, nil
		}), 403, "forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, tc.auth)
			w := env.do("GET", "/fhir/Patient/p1", "")
			outcome(t, w, tc.status, tc.code)
			if strings.Contains(w.Body.String(), "Doe") || strings.Contains(w.Body.String(), "token cache") {
				t.Errorf("leak: %s", w.Body)
			}
			// A search under such a decision returns no data either.
			w = env.do("GET", "/fhir/Observation?code=8867-4", "")
			if w.Code == 200 && strings.Contains(w.Body.String(), `"entry"`) {
				t.Errorf("search returned data: %s", w.Body)
			}
		})
	}
}

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

func TestIncludeAuthorization(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		status  int
		entries string
	}{
		{"fhir error means not included", ErrForbidden, 200, "match:Observation/o01"},
		{"other error fails the request", errors.New("policy store down"), 500, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, AuthorizerFunc(func(_ echo.Context, a Access) (Decision, error) {
				if a.Type == "Practitioner" {
					return Decision{}, tc.err
				}
				return Allow(), nil
			}))
			w := env.do("GET", "/fhir/Observation?_id=o01&_include=Observation:performer", "")
			if tc.status != 200 {
				outcome(t, w, tc.status, "exception")
				if strings.Contains(w.Body.String(), "o01") {
					t.Errorf("data in a failed response: %s", w.Body)
				}
				return
			}
			if got := strings.Join(entryIDs(parseFHIR(t, w.Body.Bytes())), " "); got != tc.entries {
				t.Errorf("entries %s", got)
			}
		})
	}
}
