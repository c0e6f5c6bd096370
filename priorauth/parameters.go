package priorauth

import (
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// IdentifierSystem is the system of the PAS request's identifiers (Bundle
// and Claim) in the clinic's identifier namespace base, the same
// configured base the mapper names the clinic's own ids under
// (mapping.Options.IdentifierSystemBase): {base}/pas-request. An empty base
// is codes.DefaultIdentifierSystemBase.
func IdentifierSystem(base string) string {
	if base = strings.TrimRight(base, "/"); base == "" {
		base = codes.DefaultIdentifierSystemBase
	}
	return base + "/pas-request"
}

// Parameters renders an evaluation as the $pa-criteria answer: a `policy`
// (valueString id|version), `course` (valueReference), `request`
// (valueCode initial | renewal), one `criterion` per criterion with parts
// code (valueCode), text (valueString), status (valueCode), evidence
// (valueReference, one per resource) and reason (valueString), and the
// overall `result` (valueCode).
func Parameters(ev *Evaluation) ([]byte, error) {
	request := "initial"
	if ev.Renewal {
		request = "renewal"
	}
	p := &r4.Parameters{Parameter: []r4.ParametersParameter{
		{Name: "policy", ValueString: ptr(ev.Policy.ID + "|" + ev.Policy.Version)},
		{Name: "course", ValueReference: &r4.Reference{Reference: ptr(ev.CarePlan)}},
		{Name: "request", ValueCode: ptr(request)},
	}}
	for _, r := range ev.Criteria {
		parts := []r4.ParametersParameter{
			{Name: "code", ValueCode: ptr(r.Code)},
			{Name: "text", ValueString: ptr(r.Text)},
			{Name: "status", ValueCode: ptr(string(r.Status))},
		}
		for _, e := range r.Evidence {
			parts = append(parts, r4.ParametersParameter{Name: "evidence", ValueReference: &r4.Reference{Reference: ptr(e)}})
		}
		if r.Reason != "" {
			parts = append(parts, r4.ParametersParameter{Name: "reason", ValueString: ptr(r.Reason)})
		}
		p.Parameter = append(p.Parameter, r4.ParametersParameter{Name: "criterion", Part: parts})
	}
	p.Parameter = append(p.Parameter, r4.ParametersParameter{Name: "result", ValueCode: ptr(string(ev.Result))})
	return fhirjson.Marshal(p)
}
