package priorauth

import (
	"encoding/json"
	"fmt"
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/codes"
)

// Types are the resource types the evaluation and the PAS request read. A
// caller gathers the patient's resources of these types that the requester
// may see; a type it may not see is Hidden, and the criteria that need it
// answer unknown.
var Types = []string{
	"Patient", "CarePlan", "MedicationRequest", "Medication", "Condition", "MedicationStatement",
	"Observation", "MedicationAdministration", "Encounter", "Location", "Practitioner",
	"Organization", "Coverage", "ClaimResponse",
}

// Records are one patient's resources, decoded, keyed by "Type/id".
type Records struct {
	Patients          map[string]*r4.Patient
	CarePlans         map[string]*r4.CarePlan
	MedRequests       map[string]*r4.MedicationRequest
	Medications       map[string]*r4.Medication
	Conditions        map[string]*r4.Condition
	MedStatements     map[string]*r4.MedicationStatement
	Observations      map[string]*r4.Observation
	MedAdministration map[string]*r4.MedicationAdministration
	Encounters        map[string]*r4.Encounter
	Locations         map[string]*r4.Location
	Practitioners     map[string]*r4.Practitioner
	Organizations     map[string]*r4.Organization
	Coverages         map[string]*r4.Coverage
	ClaimResponses    map[string]*r4.ClaimResponse
	// Hidden are the types the requester may not see: what depends on them
	// is unknown (minimum necessary; docs/design/security.md PA-1).
	Hidden map[string]bool
}

// NewRecords returns empty Records.
func NewRecords() *Records {
	return &Records{
		Patients: map[string]*r4.Patient{}, CarePlans: map[string]*r4.CarePlan{},
		MedRequests: map[string]*r4.MedicationRequest{}, Medications: map[string]*r4.Medication{},
		Conditions: map[string]*r4.Condition{}, MedStatements: map[string]*r4.MedicationStatement{},
		Observations: map[string]*r4.Observation{}, MedAdministration: map[string]*r4.MedicationAdministration{},
		Encounters: map[string]*r4.Encounter{}, Locations: map[string]*r4.Location{},
		Practitioners: map[string]*r4.Practitioner{}, Organizations: map[string]*r4.Organization{},
		Coverages: map[string]*r4.Coverage{}, ClaimResponses: map[string]*r4.ClaimResponse{}, Hidden: map[string]bool{},
	}
}

// Add decodes one resource's JSON and keeps it; types the evaluation does
// not read are ignored.
func (rs *Records) Add(body []byte) error {
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return fmt.Errorf("priorauth: %w", err)
	}
	if head.ID == "" {
		return fmt.Errorf("priorauth: a %s without id", head.ResourceType)
	}
	key := head.ResourceType + "/" + head.ID
	var err error
	switch head.ResourceType {
	case "Patient":
		err = put(rs.Patients, key, body)
	case "CarePlan":
		err = put(rs.CarePlans, key, body)
	case "MedicationRequest":
		err = put(rs.MedRequests, key, body)
	case "Medication":
		err = put(rs.Medications, key, body)
	case "Condition":
		err = put(rs.Conditions, key, body)
	case "MedicationStatement":
		err = put(rs.MedStatements, key, body)
	case "Observation":
		err = put(rs.Observations, key, body)
	case "MedicationAdministration":
		err = put(rs.MedAdministration, key, body)
	case "Encounter":
		err = put(rs.Encounters, key, body)
	case "Location":
		err = put(rs.Locations, key, body)
	case "Practitioner":
		err = put(rs.Practitioners, key, body)
	case "Organization":
		err = put(rs.Organizations, key, body)
	case "Coverage":
		err = put(rs.Coverages, key, body)
	case "ClaimResponse":
		err = put(rs.ClaimResponses, key, body)
	}
	if err != nil {
		return fmt.Errorf("priorauth: %s: %w", key, err)
	}
	return nil
}

func put[T any](m map[string]*T, key string, body []byte) error {
	v := new(T)
	if err := json.Unmarshal(body, v); err != nil {
		return err
	}
	m[key] = v
	return nil
}

// refKey is a relative reference's "Type/id" ("" for none or an absolute
// or contained reference).
func refKey(r *r4.Reference) string {
	if r == nil || r.Reference == nil {
		return ""
	}
	s := *r.Reference
	if strings.HasPrefix(s, "#") || strings.Contains(s, "://") || strings.Count(s, "/") != 1 {
		return ""
	}
	return s
}

// RefsTo lists the resources (as "Type/id") a resource's references name,
// for gathering what a course references outside the patient's compartment
// (Practitioner, Location, Organization, Medication).
func RefsTo(rs *Records) []string {
	seen := map[string]bool{}
	var out []string
	add := func(r *r4.Reference) {
		if k := refKey(r); k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, cp := range rs.CarePlans {
		add(cp.Author)
	}
	for _, mr := range rs.MedRequests {
		add(&mr.MedicationReference)
		add(mr.Requester)
	}
	for _, e := range rs.Encounters {
		for _, l := range e.Location {
			add(&l.Location)
		}
		add(e.ServiceProvider)
	}
	for _, c := range rs.Coverages {
		for i := range c.Payor {
			add(&c.Payor[i])
		}
	}
	for _, p := range rs.Patients {
		add(p.ManagingOrganization)
	}
	return out
}

// Coding is a system and code.
type Coding struct{ System, Code string }

// ObservationCodes are the only Observation codes the rules read (the PHQ-9
// and MADRS totals and the REMS monitoring form): a caller gathering a
// patient's Observations may ask for these alone (minimum necessary, and a
// course has hundreds of other Observations).
var ObservationCodes = []Coding{
	{codes.LOINC, loincPHQ9Total}, {codes.Scales, madrsTotal}, {codes.Local, codes.REMSMonitoring.Code},
}
