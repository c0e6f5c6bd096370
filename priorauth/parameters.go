package priorauth

import (
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// DefaultIdentifierSystem is the system of PAS request identifiers when the
// deployment names no clinic namespace.
const DefaultIdentifierSystem = codes.DefaultIdentifierSystemBase + "/pas-request"

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
