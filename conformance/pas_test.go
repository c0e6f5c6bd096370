package conformance

import (
	"strings"
	"testing"
)

// TestPASRules: the PAS rules pass a conforming Claim and name the element
// of each violation.
func TestPASRules(t *testing.T) {
	claim := `{"resourceType":"Claim","id":"c1","meta":{"profile":["` + pasBase + `profile-claim"]},` +
		`"identifier":[{"system":"https://clinic.example/sid/pas","value":"1"}],"status":"active",` +
		`"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},` +
		`"use":"preauthorization","patient":{"reference":"Patient/p1"},"created":"2025-01-01T00:00:00Z",` +
		`"insurer":{"reference":"Organization/o1"},"provider":{"reference":"Organization/o2"},` +
		`"priority":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/processpriority","code":"normal"}]},` +
		`"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/c1"}}],` +
		`"item":[{"sequence":1,"category":{"coding":[{"system":"https://codesystem.x12.org/005010/1365","code":"MH"}]},` +
		`"productOrService":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"96365"}]}}]}`
	if issues := Validate([]byte(claim)); len(issues) != 0 {
		t.Fatalf("issues on a good Claim: %+v", issues)
	}
	for _, tc := range []struct{ from, to, path, code string }{
		{`"use":"preauthorization"`, `"use":"claim"`, "Claim.use", CodeValue},
		{`"focal":true`, `"focal":false`, "Claim.insurance[0].focal", CodeValue},
		{`"priority":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/processpriority","code":"normal"}]},`, ``, "Claim.priority", CodeRequired},
		{`"category":{"coding":[{"system":"https://codesystem.x12.org/005010/1365","code":"MH"}]},`, ``, "Claim.item[0].category", CodeRequired},
	} {
		doc := strings.Replace(claim, tc.from, tc.to, 1)
		issues := Validate([]byte(doc))
		// R4 itself requires some of these too: every issue is about the
		// element, one of them the profile's.
		ok := len(issues) > 0
		for _, is := range issues {
			ok = ok && is.Path == tc.path && is.Code == tc.code
		}
		if !ok {
			t.Errorf("%s: want {%s %s}, got %+v", tc.path, tc.path, tc.code, issues)
		}
	}
}
