package fhir

import "testing"

// TestWriteSamples writes a 404 and a 400 OperationOutcome next to the
// samples the other tests write when FHIR_SAMPLES is set (for the
// independent FHIR validator, fhir-validate).
func TestWriteSamples(t *testing.T) {
	env := newEnv(t, allowAll)
	writeSample(t, "outcome-404.json", env.do("GET", "/fhir/Patient/nope", "").Body.Bytes())
	writeSample(t, "outcome-400.json", env.do("GET", "/fhir/Patient?shoe-size=1", "").Body.Bytes())
	writeSample(t, "outcome-401.json", newEnv(t, nil).do("GET", "/fhir/Patient/p1", "").Body.Bytes())
	writeSample(t, "read.json", env.do("GET", "/fhir/Patient/p1", "").Body.Bytes())
}
