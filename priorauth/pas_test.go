package priorauth

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/conformance"
)

var pasOpts = PASOptions{
	Base: "https://gateway.example/fhir", Now: time.Date(2025, 2, 20, 15, 4, 5, 0, time.UTC),
	IdentifierSystem: "https://lakeside.example/sid/pas-request",
}

type pasBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Meta         struct {
		Profile []string `json:"profile"`
	} `json:"meta"`
	Entry []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  any             `json:"request"`
		Search   any             `json:"search"`
	} `json:"entry"`
}

type pasClaim struct {
	ResourceType string `json:"resourceType"`
	Use          string `json:"use"`
	Meta         struct {
		Profile []string `json:"profile"`
	} `json:"meta"`
	Patient   struct{ Reference string } `json:"patient"`
	Insurer   struct{ Reference string } `json:"insurer"`
	Provider  struct{ Reference string } `json:"provider"`
	Insurance []struct {
		Focal    bool                       `json:"focal"`
		Coverage struct{ Reference string } `json:"coverage"`
	} `json:"insurance"`
	Item []struct {
		Extension []struct {
			URL            string                     `json:"url"`
			ValueReference struct{ Reference string } `json:"valueReference"`
		} `json:"extension"`
		ProductOrService struct {
			Coding []struct{ System, Code string } `json:"coding"`
		} `json:"productOrService"`
		Quantity struct {
			Value float64 `json:"value"`
		} `json:"quantity"`
		ServicedPeriod struct{ Start, End string } `json:"servicedPeriod"`
	} `json:"item"`
	SupportingInfo []struct {
		ValueReference struct{ Reference string } `json:"valueReference"`
	} `json:"supportingInfo"`
}

func buildPAS(t *testing.T, s *scenario, policyID string) ([]byte, *Evaluation) {
	t.Helper()
	rs, c := s.records(t)
	ev := Evaluate(policy(t, policyID), rs, c, false)
	b, err := BuildRequest(rs, c, ev, pasOpts)
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("KETABRIDGE_PAS_OUT"); dir != "" { // for running the external validator by hand
		name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + ".json"
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return b, ev
}

// TestBuildRequest: the PAS request Bundle for an esketamine course has the
// Claim first with its PAS profile, every entry a fullUrl and resource only,
// the items coded and counted from the dose plan, and supportingInfo naming
// the evaluation's evidence, each of which is in the Bundle.
func TestBuildRequest(t *testing.T) {
	b, ev := buildPAS(t, esketamineScenario(), "esketamine-blue-heron")
	var bundle pasBundle
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	if bundle.Type != "collection" || !reflect.DeepEqual(bundle.Meta.Profile, []string{ProfileRequestBundle}) {
		t.Fatalf("bundle type %q profile %v", bundle.Type, bundle.Meta.Profile)
	}
	checkValid(t, b)
	var claim pasClaim
	if err := json.Unmarshal(bundle.Entry[0].Resource, &claim); err != nil {
		t.Fatal(err)
	}
	if claim.ResourceType != "Claim" || claim.Use != "preauthorization" || claim.Meta.Profile[0] != ProfileClaim {
		t.Fatalf("first entry %s use %s profile %v", claim.ResourceType, claim.Use, claim.Meta.Profile)
	}
	inBundle := map[string]bool{}
	for _, e := range bundle.Entry {
		if e.Request != nil || e.Search != nil || e.FullURL == "" {
			t.Errorf("entry %s has request/search or no fullUrl", e.FullURL)
		}
		inBundle[strings.TrimPrefix(e.FullURL, pasOpts.Base+"/")] = true
	}
	for _, k := range []string{claim.Patient.Reference, claim.Insurer.Reference, claim.Provider.Reference,
		claim.Insurance[0].Coverage.Reference} {
		if !inBundle[k] {
			t.Errorf("%s referenced by the Claim is not in the Bundle", k)
		}
	}
	if len(claim.Item) != 2 {
		t.Fatalf("%d items, want induction and maintenance", len(claim.Item))
	}
	// Induction: 8 sessions at 56 mg, 2 a week from 2025-03-03 for 4 weeks.
	it := claim.Item[0]
	if c := it.ProductOrService.Coding[0]; c.System != HCPCSPAS || c.Code != "G2082" || it.Quantity.Value != 8 ||
		it.ServicedPeriod.Start != "2025-03-03" || it.ServicedPeriod.End != "2025-03-30" {
		t.Errorf("induction item %+v", it)
	}
	if it.Extension[0].URL != ExtRequestedService || !strings.HasPrefix(it.Extension[0].ValueReference.Reference, "MedicationRequest/") ||
		!inBundle[it.Extension[0].ValueReference.Reference] {
		t.Errorf("requestedService %+v", it.Extension)
	}
	if got := claim.Item[1].ServicedPeriod.Start; got != "2025-03-31" {
		t.Errorf("maintenance starts %s", got)
	}
	var refs []string
	for _, si := range claim.SupportingInfo {
		refs = append(refs, si.ValueReference.Reference)
		if !inBundle[si.ValueReference.Reference] {
			t.Errorf("supportingInfo %s is not in the Bundle", si.ValueReference.Reference)
		}
	}
	if want := ev.Evidence(); !reflect.DeepEqual(refs, want) {
		t.Errorf("supportingInfo %v, want the evidence %v", refs, want)
	}
	// Deterministic for the same records and instant.
	if b2, _ := buildPAS(t, esketamineScenario(), "esketamine-blue-heron"); string(b2) != string(b) {
		t.Error("the same request built twice differs")
	}
}

// TestBuildRequestIV: an IV ketamine course is requested as CPT 96365.
func TestBuildRequestIV(t *testing.T) {
	b, _ := buildPAS(t, ivScenario(), "ketamine-iv")
	var bundle pasBundle
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	var claim pasClaim
	if err := json.Unmarshal(bundle.Entry[0].Resource, &claim); err != nil {
		t.Fatal(err)
	}
	if c := claim.Item[0].ProductOrService.Coding[0]; c.System != CPT || c.Code != "96365" || claim.Item[0].Quantity.Value != 6 {
		t.Errorf("IV item %+v", claim.Item[0])
	}
	checkValid(t, b)
}

// TestBuildRequestMissing: data a required element needs is named, not
// emitted as an invalid Bundle (docs/design/security.md PA-3).
func TestBuildRequestMissing(t *testing.T) {
	cases := []struct {
		name   string
		change func(s *scenario)
		want   string
	}{
		{"no coverage", func(s *scenario) { s.course.CoverageID = "" }, "course.coverageId"},
		{"cancelled coverage", func(s *scenario) { s.coverage.Status = "cancelled" }, "coverage.status active"},
		{"no clinic organization", func(s *scenario) { s.patient.OrganizationID = ""; s.sessions = nil }, "clinic organization"},
		{"no diagnosis", func(s *scenario) { s.dropTypes = []string{"Condition"} }, "ICD-10-CM"},
		{"no prescriber", func(s *scenario) { s.dropTypes = []string{"Practitioner"} }, "course.prescriberId"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := esketamineScenario()
			tc.change(s)
			rs, c := s.records(t)
			_, err := BuildRequest(rs, c, nil, pasOpts)
			var me *MissingError
			if !errors.As(err, &me) || !strings.Contains(strings.Join(me.Missing, "; "), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// checkValid runs the project's own validator over the Bundle and its
// entries. It does not check the PAS profiles themselves (only R4 and what
// the gateway claims elsewhere): .ci/run passes the $pas-bundle responses of
// the conformance export through fhir-validate, which does.
func checkValid(t *testing.T, b []byte) {
	t.Helper()
	for _, is := range conformance.Validate(b) {
		t.Errorf("%s [%s] %s", is.Path, is.Code, is.Message)
	}
}
