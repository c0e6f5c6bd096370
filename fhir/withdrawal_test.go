package fhir

import (
	"encoding/json"
	"testing"

	"github.com/ketabridge/ketabridge/conformance"
)

// TestReferralCodesPublished checks that every local code the referral
// path writes (the patient-match input and its bases, the referred-patient
// tag, the consent-withdrawn status reason) is a concept of the published
// CodeSystem ketabridge with the same display, so what the gateway stores
// validates against its implementation guide (conformance/ig).
func TestReferralCodesPublished(t *testing.T) {
	defs, err := conformance.Definitions()
	if err != nil {
		t.Fatal(err)
	}
	concepts := map[string]string{}
	for _, d := range defs {
		if d.Type != "CodeSystem" || d.URL != LocalCodeSystem {
			continue
		}
		var cs struct {
			Concept []struct{ Code, Display string } `json:"concept"`
		}
		if err := json.Unmarshal(d.Body, &cs); err != nil {
			t.Fatal(err)
		}
		for _, c := range cs.Concept {
			concepts[c.Code] = c.Display
		}
	}
	if len(concepts) == 0 {
		t.Fatalf("no CodeSystem %s in the guide", LocalCodeSystem)
	}
	want := map[string]string{CodeConsentWithdrawn: DisplayConsentWithdrawn}
	for _, b := range matchBases {
		want[b.code] = b.display
	}
	for _, in := range []map[string]any{
		localConcept("patient-match", "Basis of the referred patient's match", ""),
		localConcept("matched-patient", "Clinic patient the referred patient matched", ""),
		localConcept(referredTagCode, referredTagDisplay, ""),
	} {
		c := in["coding"].([]any)[0].(map[string]any)
		want[c["code"].(string)] = c["display"].(string)
	}
	for code, display := range want {
		if got, ok := concepts[code]; !ok || got != display {
			t.Errorf("%s: published display %q (%v), the gateway writes %q", code, got, ok, display)
		}
	}
}
