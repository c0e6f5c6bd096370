package auth

import "slices"

// The views of outside organizations, as tables (docs/access.md states the
// same tables in plain words for a privacy officer; a test keeps the two in
// agreement).

// classOfType is the data class of each patient resource type whose class
// does not depend on its content. Observation depends on its category
// (classOfCategory). Patient is the demographics class, but a Patient is in
// every view that shows any of that patient's data: identity travels with
// the data, reduced to identifier, name, gender and birth date without the
// demographics class.
var classOfType = map[string]DataClass{
	"Patient":                  ClassDemographics,
	"Condition":                ClassDiagnoses,
	"MedicationRequest":        ClassMedications,
	"MedicationStatement":      ClassMedications,
	"CarePlan":                 ClassSessions,
	"Encounter":                ClassSessions,
	"MedicationAdministration": ClassSessions,
	"AdverseEvent":             ClassSessions,
	"Coverage":                 ClassCoverage,
}

// classOfCategory is the data class of an Observation by its category
// (http://terminology.hl7.org/CodeSystem/observation-category). An
// Observation of any other category is in no class, so no outside
// organization sees it.
var classOfCategory = map[string]DataClass{
	"survey":      ClassAssessments,
	"vital-signs": ClassVitals,
}

// ClassOf returns the data class of a resource of type typ with the given
// Observation category ("" for other types), and false when the resource is
// in no class.
func ClassOf(typ, category string) (DataClass, bool) {
	if typ == "Observation" {
		c, ok := classOfCategory[category]
		return c, ok
	}
	c, ok := classOfType[typ]
	return c, ok
}

// ClassCategories returns the Observation categories of class c (nil for
// classes that are not Observations).
func ClassCategories(c DataClass) []string {
	var out []string
	for cat, cc := range classOfCategory {
		if cc == c {
			out = append(out, cat)
		}
	}
	slices.Sort(out)
	return out
}

// TypeClasses returns the data classes resources of type typ can be in.
func TypeClasses(typ string) Classes {
	if typ == "Observation" {
		var s Classes
		for _, c := range classOfCategory {
			s |= ClassSet(c)
		}
		return s
	}
	if c, ok := classOfType[typ]; ok {
		return ClassSet(c)
	}
	return 0
}

// directoryTypes hold no patient's data: the clinic's directory (who and
// where), drug products, treatment protocols, and the gateway's own
// published definitions. A view that lists them shows all of them.
var directoryTypes = []string{
	"Practitioner", "PractitionerRole", "Organization", "Location", "Medication", "PlanDefinition",
	"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide", "SearchParameter", "OperationDefinition",
}

// viewTypes are the resource types each outside role may ever see. Any
// other type is invisible to it, whatever its scopes say.
//
// Payer (minimum necessary for a prior-authorization review): the patient
// and coverage, diagnoses, the course (CarePlan and its PlanDefinition), the
// order and the doses given, the antidepressant history, the session
// encounters, assessment scores and adverse events; the Practitioners and
// Organizations they reference; and, beyond the table the issue started
// from, Medication (the product a request or dose names) and Location (the
// REMS-certified setting is a prior-authorization criterion), and its own
// answers to prior-authorization requests (ClaimResponse). Not vital
// signs, consents, provenance or anything else.
//
// Partner: every data class (each still limited by the patient's consent)
// and the directory; the referral Tasks it owns or requested, and the
// ServiceRequests of the referrals sent to it while the patient's consent
// permits it (docs/referrals.md).
var viewTypes = map[Role][]string{
	RolePayer: {
		"Patient", "Coverage", "Condition", "CarePlan", "PlanDefinition", "MedicationRequest",
		"MedicationStatement", "MedicationAdministration", "Encounter", "Observation", "AdverseEvent",
		"Practitioner", "Organization", "Medication", "Location",
		"ClaimResponse", // only its own answers (fhir: payerAnswerTerms)
		"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide", "SearchParameter", "OperationDefinition",
	},
	RolePartner: {
		"Task",           // only the referrals it owns or requested (fhir: referralTerms)
		"ServiceRequest", // only the referrals sent to it, while the consent permits it (fhir: referralPackageTerms)
		"Patient", "Coverage", "Condition", "CarePlan", "MedicationRequest", "MedicationStatement",
		"MedicationAdministration", "Encounter", "Observation", "AdverseEvent",
		"Practitioner", "PractitionerRole", "Organization", "Location", "Medication", "PlanDefinition",
		"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide", "SearchParameter", "OperationDefinition",
	},
}

// ViewTypes returns the resource types role may ever see (nil for RoleEHR:
// its scopes decide).
func ViewTypes(r Role) []string { return slices.Clone(viewTypes[r]) }

// InView reports whether role may ever see resources of type typ. RoleEHR
// sees every type its scopes grant.
func InView(r Role, typ string) bool {
	if r == RoleEHR {
		return true
	}
	return slices.Contains(viewTypes[r], typ)
}

// Directory reports whether typ holds no patient's data (see
// directoryTypes).
func Directory(typ string) bool { return slices.Contains(directoryTypes, typ) }
