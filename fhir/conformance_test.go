package fhir

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/conformance"
)

// checkConformance runs the gateway's own validator (conformance.Validate)
// on a response body; every Bundle, OperationOutcome and
// CapabilityStatement the tests receive passes through it via parseFHIR.
//
// One finding is excused: conformance requires an http(s) fullUrl on every
// searchset entry, while the search.mode=outcome OperationOutcome is not a
// stored resource and has no RESTful URL, so it carries a urn:uuid fullUrl
// (bundle.html allows it; the independent validator requires a fullUrl on
// every searchset entry). Reported to the conformance owner.
func checkConformance(t testing.TB, body []byte) {
	t.Helper()
	var b struct {
		Entry []struct {
			Search struct{ Mode string } `json:"search"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(body, &b)
	for _, is := range conformance.Validate(body) {
		excused := false
		for i, e := range b.Entry {
			if e.Search.Mode == "outcome" && is.Path == fmt.Sprintf("Bundle.entry[%d].fullUrl", i) &&
				strings.Contains(is.Message, "absolute http(s) URL") {
				excused = true
			}
		}
		if !excused {
			t.Errorf("conformance: %s [%s] %s", is.Path, is.Code, is.Message)
		}
	}
}
