package mapping

import (
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// Definitions returns the project's own conformance resources to serve: the
// CodeSystem of local assessment scales ({Canonical}/CodeSystem/ketabridge-scales)
// and the CodeSystem of every other local code ({Canonical}/CodeSystem/ketabridge),
// both status active, content complete. Their ids are the last url segment.
func (m *Mapper) Definitions() ([]Output, error) {
	systems := []struct {
		id, name, title, desc string
		concepts              []codes.Concept
	}{
		{"ketabridge-scales", "KetaBridgeScales", "KetaBridge assessment scales",
			"Scores of assessment scales used in ketamine therapy that have no LOINC code " +
				"(MADRS, CADSS, MOAA/S totals and item scores of PCL-5, MADRS and CADSS).",
			codes.ScaleConcepts()},
		{"ketabridge", "KetaBridgeCodes", "KetaBridge local codes",
			"Local codes of KetaBridge: session types and statuses, Spravato REMS monitoring questions, " +
				"C-SSRS risk levels, adverse effects and actions taken, antidepressant trial outcomes and " +
				"drug classes, consent data classes.",
			codes.LocalConcepts()},
	}
	out := make([]Output, 0, len(systems))
	for _, s := range systems {
		concepts := make([]r4.CodeSystemConcept, len(s.concepts))
		for i, c := range s.concepts {
			concepts[i] = r4.CodeSystemConcept{Code: c.Code, Display: str(c.Display), Definition: str(c.Definition)}
		}
		cs := &r4.CodeSystem{
			Id:            ptr(s.id),
			Meta:          m.meta("", false),
			Url:           ptr(m.canonical + "/CodeSystem/" + s.id),
			Version:       ptr("1.0.0"),
			Name:          ptr(s.name),
			Title:         ptr(s.title),
			Status:        r4.PublicationStatusActive,
			Experimental:  ptr(false),
			Publisher:     ptr("KetaBridge"),
			Description:   ptr(s.desc),
			CaseSensitive: ptr(true),
			Content:       r4.CodeSystemContentModeComplete,
			Count:         ptr(len(concepts)),
			Concept:       concepts,
		}
		body, err := fhirjson.Marshal(cs)
		if err != nil {
			return nil, err
		}
		out = append(out, Output{Type: "CodeSystem", ID: s.id, Resource: cs, Body: body})
	}
	return out, nil
}
