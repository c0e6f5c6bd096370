package fhir

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// subsettedTag is the meta.tag a subsetted resource carries
// (search.html#elements, search.html#summary).
const subsettedTag = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}`

// rewriter trims stored bodies for _elements and _summary=text/data by a
// small rewrite of the top-level members; nil rewrites nothing.
type rewriter struct {
	keep map[string]bool // members to keep; nil = keep all but drop
	drop map[string]bool
}

// newRewriter returns the rewrite for a search's _elements and _summary.
// _summary=true is answered with full resources (returning more than asked
// is allowed; the samply models carry no isSummary flags to subset by).
func newRewriter(typ string, elements []string, summary string) (*rewriter, error) {
	switch {
	case len(elements) > 0:
		keep := mandatory(typ)
		for _, e := range elements {
			e, _, _ = strings.Cut(strings.TrimSpace(e), ".")
			if e != "" {
				keep[e] = true
			}
		}
		return &rewriter{keep: keep}, nil
	case summary == "text":
		keep := mandatory(typ)
		keep["text"] = true
		return &rewriter{keep: keep}, nil
	case summary == "data":
		return &rewriter{drop: map[string]bool{"text": true}}, nil
	}
	return nil, nil
}

// wanted reports whether the top-level member name survives.
func (rw *rewriter) wanted(name string) bool {
	switch name {
	case "resourceType", "id", "meta":
		return true
	}
	if rw.drop != nil {
		return !rw.drop[name]
	}
	if rw.keep[name] {
		return true
	}
	// A choice element asked for by its base name: "value" keeps "valueQuantity".
	for i := 1; i < len(name); i++ {
		if name[i] >= 'A' && name[i] <= 'Z' {
			return rw.keep[name[:i]]
		}
	}
	return false
}

type member struct {
	name string
	raw  json.RawMessage
}

// members splits a JSON object into its top-level members, in order.
func members(obj []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, ErrInternal.WithDetails("stored body is not a JSON object")
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, ErrInternal.WithDetails("stored body is not valid JSON").WithCause(err)
		}
		name, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, ErrInternal.WithDetails("stored body is not valid JSON").WithCause(err)
		}
		out = append(out, member{name, raw})
	}
	return out, nil
}

// apply returns the rewritten body with the SUBSETTED tag added to meta, or
// nil when rw is nil (use the stored bytes).
func (rw *rewriter) apply(body []byte) ([]byte, error) {
	if rw == nil {
		return nil, nil
	}
	ms, err := members(body)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(body)+len(subsettedTag)+16)
	out = append(out, '{')
	n, sawMeta := 0, false
	for _, m := range ms {
		if !rw.wanted(m.name) {
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = appendString(out, m.name)
		out = append(out, ':')
		if m.name != "meta" {
			out = append(out, m.raw...)
			continue
		}
		sawMeta = true
		meta, err := tagSubsetted(m.raw)
		if err != nil {
			return nil, err
		}
		out = append(out, meta...)
	}
	if !sawMeta {
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, `"meta":{"tag":[`+subsettedTag+`]}`...)
	}
	return append(out, '}'), nil
}

// tagSubsetted adds the SUBSETTED coding to a meta object's tag array and
// drops meta.profile: a subset no longer carries the elements its profiles
// make mandatory, so keeping the claim would be false (and invalid against
// those profiles).
func tagSubsetted(meta []byte) ([]byte, error) {
	ms, err := members(meta)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(meta)+len(subsettedTag)+16)
	out = append(out, '{')
	sawTag, kept := false, 0
	for _, m := range ms {
		if m.name == "profile" {
			continue
		}
		if kept > 0 {
			out = append(out, ',')
		}
		kept++
		out = appendString(out, m.name)
		out = append(out, ':')
		if m.name == "tag" {
			arr := bytes.TrimSpace(m.raw)
			if len(arr) >= 2 && arr[0] == '[' && arr[len(arr)-1] == ']' {
				sawTag = true
				if bytes.Contains(arr, []byte(`"SUBSETTED"`)) {
					out = append(out, arr...)
					continue
				}
				out = append(out, arr[:len(arr)-1]...)
				out = append(out, ","+subsettedTag+"]"...)
				continue
			}
		}
		out = append(out, m.raw...)
	}
	if !sawTag {
		if kept > 0 {
			out = append(out, ',')
		}
		out = append(out, `"tag":[`+subsettedTag+`]`...)
	}
	return append(out, '}'), nil
}

// resourceModels maps resource types to their samply models; their required
// top-level elements (json fields without omitempty) survive _elements
// (search.html#elements: servers SHOULD return mandatory elements).
var resourceModels = map[string]any{
	"ActivityDefinition": r4.ActivityDefinition{}, "AdverseEvent": r4.AdverseEvent{},
	"AllergyIntolerance": r4.AllergyIntolerance{}, "Appointment": r4.Appointment{},
	"AuditEvent": r4.AuditEvent{}, "CarePlan": r4.CarePlan{},
	"CareTeam": r4.CareTeam{}, "Claim": r4.Claim{},
	"ClaimResponse": r4.ClaimResponse{}, "CodeSystem": r4.CodeSystem{},
	"Communication": r4.Communication{}, "Condition": r4.Condition{},
	"Consent": r4.Consent{}, "Coverage": r4.Coverage{},
	"Device": r4.Device{}, "DiagnosticReport": r4.DiagnosticReport{},
	"DocumentReference": r4.DocumentReference{}, "Encounter": r4.Encounter{},
	"Goal": r4.Goal{}, "Group": r4.Group{},
	"Immunization": r4.Immunization{}, "ImplementationGuide": r4.ImplementationGuide{},
	"Location": r4.Location{}, "Medication": r4.Medication{},
	"MedicationAdministration": r4.MedicationAdministration{}, "MedicationDispense": r4.MedicationDispense{},
	"MedicationRequest": r4.MedicationRequest{}, "MedicationStatement": r4.MedicationStatement{},
	"Observation": r4.Observation{}, "OperationDefinition": r4.OperationDefinition{},
	"Organization": r4.Organization{}, "Patient": r4.Patient{},
	"PlanDefinition": r4.PlanDefinition{}, "Practitioner": r4.Practitioner{},
	"PractitionerRole": r4.PractitionerRole{}, "Procedure": r4.Procedure{},
	"Provenance": r4.Provenance{}, "Questionnaire": r4.Questionnaire{},
	"QuestionnaireResponse": r4.QuestionnaireResponse{}, "RelatedPerson": r4.RelatedPerson{},
	"SearchParameter": r4.SearchParameter{}, "ServiceRequest": r4.ServiceRequest{},
	"StructureDefinition": r4.StructureDefinition{}, "Task": r4.Task{},
	"ValueSet": r4.ValueSet{},
}

var mandatoryCache sync.Map // type -> []string

// mandatory returns a fresh set of the required top-level element names of
// typ (empty for a type without a model).
func mandatory(typ string) map[string]bool {
	names, ok := mandatoryCache.Load(typ)
	if !ok {
		var list []string
		if m, ok := resourceModels[typ]; ok {
			t := reflect.TypeOf(m)
			for i := 0; i < t.NumField(); i++ {
				tag := t.Field(i).Tag.Get("json")
				name, opts, _ := strings.Cut(tag, ",")
				if name != "" && name != "-" && !strings.Contains(opts, "omitempty") {
					list = append(list, name)
				}
			}
		}
		names, _ = mandatoryCache.LoadOrStore(typ, list)
	}
	set := map[string]bool{}
	for _, n := range names.([]string) {
		set[n] = true
	}
	return set
}
