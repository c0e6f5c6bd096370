package fhir

import (
	"testing"

	"github.com/ketabridge/ketabridge/conformance"
)

// checkConformance runs the gateway's own validator (conformance.Validate)
// on a response body; every Bundle, OperationOutcome and
// CapabilityStatement the tests receive passes through it via parseFHIR.
func checkConformance(t testing.TB, body []byte) {
	t.Helper()
	for _, is := range conformance.Validate(body) {
		t.Errorf("conformance: %s [%s] %s", is.Path, is.Code, is.Message)
	}
}
