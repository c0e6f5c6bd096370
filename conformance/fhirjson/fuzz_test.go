package fhirjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// decoder decodes one resource type into its samply model.
type decoder func([]byte) (any, error)

func dec[T any](f func([]byte) (T, error)) decoder {
	return func(b []byte) (any, error) {
		v, err := f(b)
		return v, err
	}
}

// fuzzDecoders are the resource types the mapper emits (the types of the
// seed corpus, mapping/testdata/*.golden.json).
var fuzzDecoders = map[string]decoder{
	"AdverseEvent":             dec(r4.UnmarshalAdverseEvent),
	"CarePlan":                 dec(r4.UnmarshalCarePlan),
	"Condition":                dec(r4.UnmarshalCondition),
	"Consent":                  dec(r4.UnmarshalConsent),
	"Coverage":                 dec(r4.UnmarshalCoverage),
	"Encounter":                dec(r4.UnmarshalEncounter),
	"Location":                 dec(r4.UnmarshalLocation),
	"Medication":               dec(r4.UnmarshalMedication),
	"MedicationAdministration": dec(r4.UnmarshalMedicationAdministration),
	"MedicationRequest":        dec(r4.UnmarshalMedicationRequest),
	"MedicationStatement":      dec(r4.UnmarshalMedicationStatement),
	"Observation":              dec(r4.UnmarshalObservation),
	"Organization":             dec(r4.UnmarshalOrganization),
	"Patient":                  dec(r4.UnmarshalPatient),
	"PlanDefinition":           dec(r4.UnmarshalPlanDefinition),
	"Practitioner":             dec(r4.UnmarshalPractitioner),
	"Provenance":               dec(r4.UnmarshalProvenance),
}

// FuzzEmitRoundTrip: the emit path is a fixed point (docs/design/architecture.md,
// "all R4 JSON leaves through conformance/fhirjson"). Seeds are the
// resources the mapper emits for its golden inputs
// (testdata/fuzz/FuzzEmitRoundTrip). For any resource the models decode:
// Marshal either refuses it with an *Error, or its bytes decode again and
// Marshal gives the same bytes (emit, parse, emit) and they hold no empty
// value (CheckEmpty).
func FuzzEmitRoundTrip(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"Doe"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var probe struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(b, &probe) != nil {
			return
		}
		decode, ok := fuzzDecoders[probe.ResourceType]
		if !ok {
			return
		}
		v, err := decode(b)
		if err != nil {
			return
		}
		out, err := Marshal(v)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("Marshal: %T %v, want *Error", err, err)
			}
			return
		}
		if err := CheckEmpty(out, probe.ResourceType); err != nil {
			t.Fatalf("emitted bytes fail CheckEmpty: %v", err)
		}
		v2, err := decode(out)
		if err != nil {
			t.Fatalf("emitted bytes do not decode: %v\n%s", err, out)
		}
		out2, err := Marshal(v2)
		if err != nil {
			t.Fatalf("re-emit: %v\n%s", err, out)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("emit, parse, emit differs:\n%s\n%s", out, out2)
		}
	})
}
