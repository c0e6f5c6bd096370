package priorauth

import (
	"bytes"
	"os"
	"slices"
	"testing"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// TestCheckAnswer: the example answer of docs/prior-auth.md passes; each
// change of it is refused at the element it breaks.
func TestCheckAnswer(t *testing.T) {
	ex, err := os.ReadFile("../docs/examples/claim-response.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		from, to string
		outcome  string
		paths    []string
	}{
		{"the example", "", "", "approved", nil},
		{"pended", `"code": "A1"`, `"code": "A4"`, "pended", []string{"ClaimResponse.outcome"}},
		{"denied", `"code": "A1"`, `"code": "A3"`, "denied", nil},
		{"partial needs outcome partial", `"code": "A1"`, `"code": "A2"`, "partial", []string{"ClaimResponse.outcome"}},
		{"no profile", `"meta": {"profile": ["http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-claimresponse"]},`, "", "approved", []string{"ClaimResponse.meta.profile"}},
		{"no identifier", `"identifier": [{"system": "https://blueheron.example/pa-decisions", "value": "BHP-2025-0042117"}],`, "", "approved", []string{"ClaimResponse.identifier[0]"}},
		{"no number", `"preAuthRef": "BHP-2025-0042117",`, "", "approved", []string{"ClaimResponse.preAuthRef"}},
		{"no period", `"preAuthPeriod": {"start": "2025-03-03", "end": "2025-08-29"},`, "", "approved", []string{"ClaimResponse.preAuthPeriod"}},
		{"requested service not an order", `"MedicationRequest/3eeed314`, `"ServiceRequest/3eeed314`, "approved", []string{"ClaimResponse.item[0].extension[0].valueReference"}},
		{"no review action", `"code": "A1"`, `"code": "Z9"`, "", []string{"ClaimResponse.item[0].adjudication"}},
		{"fractional units", `"value": 16`, `"value": 1.5`, "approved", []string{"ClaimResponse.item[0].adjudication[0].value"}},
		{"a Claim by reference", `"request": {`, `"request": {"reference": "Claim/1", `, "approved", []string{"ClaimResponse.request.reference"}},
		{"not a preauthorization", `"use": "preauthorization"`, `"use": "claim"`, "approved", []string{"ClaimResponse.use"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := ex
			if c.from != "" {
				if !bytes.Contains(ex, []byte(c.from)) {
					t.Fatalf("the example has no %s", c.from)
				}
				b = bytes.Replace(ex, []byte(c.from), []byte(c.to), 1)
			}
			cr, err := r4.UnmarshalClaimResponse(b)
			if err != nil {
				t.Fatal(err)
			}
			a, issues := CheckAnswer(&cr)
			var paths []string
			for _, is := range issues {
				paths = append(paths, is.Path)
			}
			if !slices.Equal(paths, c.paths) || a.Outcome != c.outcome {
				t.Errorf("issues %v outcome %q, want %v %q (%v)", paths, a.Outcome, c.paths, c.outcome, issues)
			}
			if len(c.paths) == 0 && (a.Order != "MedicationRequest/3eeed314-9742-5bb0-9934-c13e2665ff23" || a.Value != "BHP-2025-0042117") {
				t.Errorf("answer %+v", a)
			}
		})
	}
}
