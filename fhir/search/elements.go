package search

import (
	"reflect"
	"strings"
	"sync"
	"unicode"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// structs maps each searchable type to its samply struct, for the names of
// its top-level elements (_elements).
var structs = map[string]reflect.Type{
	"AdverseEvent":             reflect.TypeFor[r4.AdverseEvent](),
	"CarePlan":                 reflect.TypeFor[r4.CarePlan](),
	"CodeSystem":               reflect.TypeFor[r4.CodeSystem](),
	"Condition":                reflect.TypeFor[r4.Condition](),
	"Consent":                  reflect.TypeFor[r4.Consent](),
	"Coverage":                 reflect.TypeFor[r4.Coverage](),
	"DocumentReference":        reflect.TypeFor[r4.DocumentReference](),
	"Encounter":                reflect.TypeFor[r4.Encounter](),
	"ImplementationGuide":      reflect.TypeFor[r4.ImplementationGuide](),
	"Location":                 reflect.TypeFor[r4.Location](),
	"Medication":               reflect.TypeFor[r4.Medication](),
	"MedicationAdministration": reflect.TypeFor[r4.MedicationAdministration](),
	"MedicationRequest":        reflect.TypeFor[r4.MedicationRequest](),
	"MedicationStatement":      reflect.TypeFor[r4.MedicationStatement](),
	"ClaimResponse":            reflect.TypeFor[r4.ClaimResponse](),
	"Observation":              reflect.TypeFor[r4.Observation](),
	"OperationDefinition":      reflect.TypeFor[r4.OperationDefinition](),
	"Organization":             reflect.TypeFor[r4.Organization](),
	"Patient":                  reflect.TypeFor[r4.Patient](),
	"PlanDefinition":           reflect.TypeFor[r4.PlanDefinition](),
	"Practitioner":             reflect.TypeFor[r4.Practitioner](),
	"Provenance":               reflect.TypeFor[r4.Provenance](),
	"SearchParameter":          reflect.TypeFor[r4.SearchParameter](),
	"ServiceRequest":           reflect.TypeFor[r4.ServiceRequest](),
	"StructureDefinition":      reflect.TypeFor[r4.StructureDefinition](),
	"Task":                     reflect.TypeFor[r4.Task](),
	"ValueSet":                 reflect.TypeFor[r4.ValueSet](),
}

// choices are the top-level choice elements ([x]) of the searchable types,
// by base name (R4 resource definitions).
var choices = map[string][]string{
	"Condition":                {"onset", "abatement"},
	"Consent":                  {"source"},
	"MedicationAdministration": {"medication", "effective"},
	"MedicationRequest":        {"reported", "medication"},
	"MedicationStatement":      {"medication", "effective"},
	"Observation":              {"effective", "value"},
	"Patient":                  {"deceased", "multipleBirth"},
	"PlanDefinition":           {"subject"},
	"Provenance":               {"occurred"},
	"ServiceRequest":           {"quantity", "occurrence", "asNeeded"},
}

var (
	elementsOnce sync.Once
	elementsMap  map[string]map[string][]string
)

// elementsOf returns, for a type, each accepted _elements name mapped to the
// JSON member names it selects: every member selects itself, and a choice
// element's base name selects all its alternatives.
func elementsOf(typ string) map[string][]string {
	elementsOnce.Do(func() {
		elementsMap = make(map[string]map[string][]string, len(structs))
		for name, t := range structs {
			m := map[string][]string{}
			for i := 0; i < t.NumField(); i++ {
				tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
				if tag == "" || tag == "-" {
					continue
				}
				m[tag] = []string{tag}
				for _, base := range choices[name] {
					rest, ok := strings.CutPrefix(tag, base)
					if ok && rest != "" && unicode.IsUpper(rune(rest[0])) {
						m[base] = append(m[base], tag)
					}
				}
			}
			elementsMap[name] = m
		}
	})
	return elementsMap[typ]
}
