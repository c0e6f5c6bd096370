// Package search implements FHIR R4 search for KetaBridge (search.html): the
// registry of supported search parameters per resource type, the extraction
// of their index rows from resources at write time, and the parsing of a
// type-level search into a typed store.Query before storage sees it.
//
// Parameter names, FHIRPath expressions and canonical definitions follow the
// R4 (4.0.1) SearchParameter registry and US Core 6.1.
package search

import (
	"sort"

	"github.com/ketabridge/ketabridge/store"
)

// Param is one supported search parameter of a resource type.
type Param struct {
	Name       string
	Type       store.IndexKind
	Expression string   // FHIRPath, for the CapabilityStatement / documentation
	Targets    []string // reference target types (Type == KindReference)
	Definition string   // canonical of the SearchParameter, e.g. http://hl7.org/fhir/SearchParameter/clinical-patient
	Doc        string
}

// FHIRType is the parameter's FHIR search parameter type code
// (search.html#ptypes) for the CapabilityStatement. It differs from Type for
// uri parameters, which are indexed and matched as tokens without a system.
func (p Param) FHIRType() string {
	if uriParams[p.Definition] {
		return "uri"
	}
	switch p.Type {
	case store.KindToken:
		return "token"
	case store.KindString:
		return "string"
	case store.KindDate:
		return "date"
	case store.KindReference:
		return "reference"
	case store.KindNumber:
		return "number"
	case store.KindQuantity:
		return "quantity"
	}
	return ""
}

const sp = "http://hl7.org/fhir/SearchParameter/"

// uriParams are the uri-typed parameters (exact match on the whole value,
// search.html#uri); they are indexed as tokens with no system.
var uriParams = map[string]bool{
	sp + "PlanDefinition-url":       true,
	sp + "conformance-url":          true,
	sp + "StructureDefinition-type": true,
	sp + "ValueSet-reference":       true,
}

// canonicalParams are reference parameters whose element is a canonical
// (search.html#reference, "references to canonical URLs"): their values are
// indexed and matched as the canonical URL, without a |version.
var canonicalParams = map[string]bool{
	sp + "CarePlan-instantiates-canonical": true,
	sp + "StructureDefinition-base":        true,
	sp + "ImplementationGuide-depends-on":  true,
}

// Includable reports whether the parameter can name the source of an
// _include or _revinclude: a reference to a resource by Type/id, not a
// canonical URL (search.html#include; canonical references are not resolved).
func (p Param) Includable() bool {
	return p.Type == store.KindReference && !canonicalParams[p.Definition]
}

func uri(name, expr, def, doc string) Param {
	return Param{Name: name, Type: store.KindToken, Expression: expr, Definition: sp + def, Doc: doc + " (uri: exact match)"}
}

func tok(name, expr, def, doc string) Param {
	return Param{Name: name, Type: store.KindToken, Expression: expr, Definition: sp + def, Doc: doc}
}

func str(name, expr, def, doc string) Param {
	return Param{Name: name, Type: store.KindString, Expression: expr, Definition: sp + def, Doc: doc}
}

func date(name, expr, def, doc string) Param {
	return Param{Name: name, Type: store.KindDate, Expression: expr, Definition: sp + def, Doc: doc}
}

func quantity(name, expr, def, doc string) Param {
	return Param{Name: name, Type: store.KindQuantity, Expression: expr, Definition: sp + def, Doc: doc}
}

func ref(name, expr, def, doc string, targets ...string) Param {
	return Param{Name: name, Type: store.KindReference, Expression: expr, Definition: sp + def, Doc: doc, Targets: targets}
}

// Target lists shared by several parameters (R4 SearchParameter.target).
var (
	groupPatient = []string{"Group", "Patient"}
)

// searchable lists the resource types the gateway stores, in sorted order;
// Provenance.target may point at any of them.
var searchable = []string{
	"AdverseEvent", "CarePlan", "ClaimResponse", "CodeSystem", "Condition", "Consent", "Coverage",
	"DocumentReference", "Encounter", "ImplementationGuide", "Location", "Medication", "MedicationAdministration",
	"MedicationRequest", "MedicationStatement", "Observation", "OperationDefinition", "Organization",
	"Patient", "PlanDefinition", "Practitioner", "Provenance", "SearchParameter", "ServiceRequest",
	"StructureDefinition", "Task", "ValueSet",
}

// clinicalPatient is the patient parameter of the clinical resources
// (SearchParameter clinical-patient): the subject when it is a Patient.
func clinicalPatient(typ string) Param {
	return ref("patient", typ+".subject.where(resolve() is Patient)", "clinical-patient",
		"The patient the "+typ+" is about (subject when it is a Patient)", "Patient")
}

// conformance are the parameters R4 shares among the canonical conformance
// resources (SearchParameter conformance-url, -name, -status, -version and,
// for the types that have a title, conformance-title): a definition is found
// by its canonical URL, and a version by url plus version.
func conformance(typ string, title bool, more ...Param) []Param {
	ps := []Param{
		uri("url", typ+".url", "conformance-url", "The canonical URL"),
		str("name", typ+".name", "conformance-name", "The computer-friendly name"),
		tok("status", typ+".status", "conformance-status", "The publication status (http://hl7.org/fhir/publication-status)"),
		tok("version", typ+".version", "conformance-version", "The business version"),
	}
	if title {
		ps = append(ps, str("title", typ+".title", "conformance-title", "The human-friendly title"))
	}
	return append(ps, more...)
}

func subject(typ string, targets ...string) Param {
	return ref("subject", typ+".subject", typ+"-subject", "The subject of the "+typ, targets...)
}

// declared holds the type-specific parameters; _id and _lastUpdated are added
// to every type by init.
var declared = map[string][]Param{
	"Patient": {
		tok("identifier", "Patient.identifier", "Patient-identifier", "A patient identifier (system|value)"),
		str("name", "Patient.name", "Patient-name", "Any part of a name: text, family, given, prefix or suffix"),
		str("family", "Patient.name.family", "individual-family", "A family name"),
		str("given", "Patient.name.given", "individual-given", "A given name"),
		date("birthdate", "Patient.birthDate", "individual-birthdate", "The date of birth"),
		tok("gender", "Patient.gender", "individual-gender", "Administrative gender (http://hl7.org/fhir/administrative-gender)"),
		tok("telecom", "Patient.telecom", "individual-telecom", "A contact point value (phone, email, ...)"),
		ref("organization", "Patient.managingOrganization", "Patient-organization", "The managing organization", "Organization"),
	},
	"Practitioner": {
		tok("identifier", "Practitioner.identifier", "Practitioner-identifier", "A practitioner identifier (system|value), e.g. NPI"),
		str("name", "Practitioner.name", "Practitioner-name", "Any part of a name: text, family, given, prefix or suffix"),
	},
	"Organization": {
		tok("identifier", "Organization.identifier", "Organization-identifier", "An organization identifier (system|value)"),
		str("name", "Organization.name | Organization.alias", "Organization-name", "The name or an alias"),
		tok("type", "Organization.type", "Organization-type", "The kind of organization"),
	},
	"Location": {
		str("name", "Location.name | Location.alias", "Location-name", "The name or an alias"),
		ref("organization", "Location.managingOrganization", "Location-organization", "The managing organization", "Organization"),
		str("address-city", "Location.address.city", "Location-address-city", "The city of the address"),
	},
	"Observation": {
		clinicalPatient("Observation"),
		subject("Observation", "Device", "Group", "Location", "Patient"),
		tok("code", "Observation.code", "clinical-code", "The observation code"),
		tok("category", "Observation.category", "Observation-category", "The classification of the observation"),
		date("date", "Observation.effective", "clinical-date", "The clinically relevant time (effective[x])"),
		tok("status", "Observation.status", "Observation-status", "The status (http://hl7.org/fhir/observation-status)"),
		ref("encounter", "Observation.encounter", "clinical-encounter", "The encounter the observation was made in", "Encounter"),
		ref("performer", "Observation.performer", "Observation-performer", "Who performed the observation",
			"CareTeam", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
		quantity("value-quantity", "(Observation.value as Quantity)", "Observation-value-quantity",
			"The value when it is a Quantity ([prefix]number|system|code)"),
	},
	"Encounter": {
		clinicalPatient("Encounter"),
		subject("Encounter", groupPatient...),
		date("date", "Encounter.period", "clinical-date", "A date within the period of the encounter"),
		tok("status", "Encounter.status", "Encounter-status", "The status (http://hl7.org/fhir/encounter-status)"),
		tok("class", "Encounter.class", "Encounter-class", "The classification (e.g. AMB)"),
		tok("type", "Encounter.type", "Encounter-type", "The specific type of encounter"),
		ref("location", "Encounter.location.location", "Encounter-location", "A location of the encounter", "Location"),
		ref("practitioner", "Encounter.participant.individual.where(resolve() is Practitioner)", "Encounter-practitioner",
			"A practitioner participating in the encounter", "Practitioner"),
		ref("based-on", "Encounter.basedOn", "Encounter-based-on", "The request this encounter fulfils", "ServiceRequest"),
		tok("identifier", "Encounter.identifier", "clinical-identifier", "An encounter identifier (system|value)"),
	},
	"Condition": {
		clinicalPatient("Condition"),
		subject("Condition", groupPatient...),
		tok("code", "Condition.code", "clinical-code", "The condition code (e.g. ICD-10-CM, SNOMED CT)"),
		tok("category", "Condition.category", "Condition-category", "The category (e.g. problem-list-item)"),
		tok("clinical-status", "Condition.clinicalStatus", "Condition-clinical-status", "The clinical status"),
		date("onset-date", "Condition.onset.as(dateTime) | Condition.onset.as(Period)", "Condition-onset-date",
			"The onset date or period"),
		date("recorded-date", "Condition.recordedDate", "Condition-recorded-date", "When the condition was recorded"),
		ref("encounter", "Condition.encounter", "Condition-encounter", "The encounter the condition was asserted in", "Encounter"),
	},
	"MedicationAdministration": {
		clinicalPatient("MedicationAdministration"),
		subject("MedicationAdministration", groupPatient...),
		tok("code", "(MedicationAdministration.medication as CodeableConcept)", "clinical-code",
			"The medication code, when the medication is given as a code"),
		ref("medication", "(MedicationAdministration.medication as Reference)", "medications-medication",
			"The medication, when given as a reference", "Medication"),
		ref("context", "MedicationAdministration.context", "MedicationAdministration-context",
			"The encounter or episode of care", "Encounter", "EpisodeOfCare"),
		date("effective-time", "MedicationAdministration.effective", "MedicationAdministration-effective-time",
			"When the administration happened"),
		tok("status", "MedicationAdministration.status", "medications-status",
			"The status (http://terminology.hl7.org/CodeSystem/medication-admin-status)"),
		ref("request", "MedicationAdministration.request", "MedicationAdministration-request",
			"The order this administration fulfils", "MedicationRequest"),
		ref("performer", "MedicationAdministration.performer.actor", "MedicationAdministration-performer",
			"Who administered the medication", "Device", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
	},
	"MedicationRequest": {
		clinicalPatient("MedicationRequest"),
		subject("MedicationRequest", groupPatient...),
		tok("status", "MedicationRequest.status", "medications-status",
			"The status (http://hl7.org/fhir/CodeSystem/medicationrequest-status)"),
		tok("intent", "MedicationRequest.intent", "MedicationRequest-intent",
			"The intent (http://hl7.org/fhir/CodeSystem/medicationrequest-intent)"),
		date("authoredon", "MedicationRequest.authoredOn", "MedicationRequest-authoredon", "When the request was written"),
		ref("requester", "MedicationRequest.requester", "MedicationRequest-requester", "Who asked for the medication",
			"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
		tok("code", "(MedicationRequest.medication as CodeableConcept)", "clinical-code",
			"The medication code, when the medication is given as a code"),
		ref("medication", "(MedicationRequest.medication as Reference)", "medications-medication",
			"The medication, when given as a reference", "Medication"),
		ref("encounter", "MedicationRequest.encounter", "MedicationRequest-encounter",
			"The encounter the request was created in", "Encounter"),
	},
	"MedicationStatement": {
		clinicalPatient("MedicationStatement"),
		subject("MedicationStatement", groupPatient...),
		tok("status", "MedicationStatement.status", "medications-status",
			"The status (http://hl7.org/fhir/CodeSystem/medication-statement-status)"),
		date("effective", "MedicationStatement.effective", "MedicationStatement-effective",
			"When the medication was or is being taken"),
		tok("code", "(MedicationStatement.medication as CodeableConcept)", "clinical-code",
			"The medication code, when the medication is given as a code"),
		ref("medication", "(MedicationStatement.medication as Reference)", "medications-medication",
			"The medication, when given as a reference", "Medication"),
	},
	"CarePlan": {
		clinicalPatient("CarePlan"),
		subject("CarePlan", groupPatient...),
		tok("status", "CarePlan.status", "CarePlan-status", "The status (http://hl7.org/fhir/request-status)"),
		tok("category", "CarePlan.category", "CarePlan-category", "The type of plan"),
		date("date", "CarePlan.period", "clinical-date", "A date within the period the plan covers"),
		tok("intent", "CarePlan.intent", "CarePlan-intent", "The intent (http://hl7.org/fhir/request-intent)"),
		ref("instantiates-canonical", "CarePlan.instantiatesCanonical", "CarePlan-instantiates-canonical",
			"The canonical URL of the protocol the plan follows",
			"ActivityDefinition", "Measure", "OperationDefinition", "PlanDefinition", "Questionnaire"),
	},
	"PlanDefinition": {
		uri("url", "PlanDefinition.url", "PlanDefinition-url", "The canonical URL"),
		str("name", "PlanDefinition.name", "PlanDefinition-name", "The computer-friendly name"),
		tok("status", "PlanDefinition.status", "PlanDefinition-status", "The publication status"),
		str("title", "PlanDefinition.title", "PlanDefinition-title", "The human-friendly title"),
	},
	"AdverseEvent": {
		tok("actuality", "AdverseEvent.actuality", "AdverseEvent-actuality", "actual | potential"),
		tok("category", "AdverseEvent.category", "AdverseEvent-category", "The category of the event"),
		date("date", "AdverseEvent.date", "AdverseEvent-date", "When the event occurred"),
		tok("event", "AdverseEvent.event", "AdverseEvent-event", "The type of event"),
		ref("location", "AdverseEvent.location", "AdverseEvent-location", "Where the event occurred", "Location"),
		ref("recorder", "AdverseEvent.recorder", "AdverseEvent-recorder", "Who recorded the event",
			"Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
		ref("resultingcondition", "AdverseEvent.resultingCondition", "AdverseEvent-resultingcondition",
			"A condition that resulted from the event", "Condition"),
		tok("seriousness", "AdverseEvent.seriousness", "AdverseEvent-seriousness", "Seriousness of the event"),
		tok("severity", "AdverseEvent.severity", "AdverseEvent-severity", "mild | moderate | severe"),
		ref("study", "AdverseEvent.study", "AdverseEvent-study", "The research study", "ResearchStudy"),
		ref("subject", "AdverseEvent.subject", "AdverseEvent-subject", "The subject of the event",
			"Group", "Patient", "Practitioner", "RelatedPerson"),
		ref("substance", "AdverseEvent.suspectEntity.instance", "AdverseEvent-substance", "A suspected cause",
			"Device", "Immunization", "Medication", "MedicationAdministration", "MedicationStatement", "Procedure", "Substance"),
	},
	"ClaimResponse": {
		ref("patient", "ClaimResponse.patient", "ClaimResponse-patient", "The patient the answer is about", "Patient"),
		tok("identifier", "ClaimResponse.identifier", "ClaimResponse-identifier", "A response identifier (system|value)"),
		tok("status", "ClaimResponse.status", "ClaimResponse-status", "The status (http://hl7.org/fhir/fm-status)"),
		tok("outcome", "ClaimResponse.outcome", "ClaimResponse-outcome",
			"The processing outcome (http://hl7.org/fhir/remittance-outcome)"),
		tok("use", "ClaimResponse.use", "ClaimResponse-use", "claim | preauthorization | predetermination"),
		date("created", "ClaimResponse.created", "ClaimResponse-created", "When the payer answered"),
		ref("insurer", "ClaimResponse.insurer", "ClaimResponse-insurer", "The payer that answered", "Organization"),
	},
	"Coverage": {
		ref("patient", "Coverage.beneficiary", "Coverage-patient", "The covered patient (beneficiary)", "Patient"),
		ref("beneficiary", "Coverage.beneficiary", "Coverage-beneficiary", "The covered party", "Patient"),
		ref("payor", "Coverage.payor", "Coverage-payor", "The issuer of the coverage", "Organization", "Patient", "RelatedPerson"),
		tok("status", "Coverage.status", "Coverage-status", "The status (http://hl7.org/fhir/fm-status)"),
		tok("identifier", "Coverage.identifier", "Coverage-identifier", "A coverage identifier (system|value)"),
		ref("subscriber", "Coverage.subscriber", "Coverage-subscriber", "The subscriber", "Patient", "RelatedPerson"),
		tok("type", "Coverage.type", "Coverage-type", "The kind of coverage"),
	},
	"Consent": {
		ref("patient", "Consent.patient", "clinical-patient", "The patient the consent applies to", "Patient"),
		tok("status", "Consent.status", "Consent-status", "The status (http://hl7.org/fhir/consent-state-codes)"),
		date("date", "Consent.dateTime", "clinical-date", "When the consent was agreed"),
		ref("actor", "Consent.provision.actor.reference", "Consent-actor", "An actor of the (top-level) provision",
			"CareTeam", "Device", "Group", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
		tok("purpose", "Consent.provision.purpose", "Consent-purpose", "A purpose of use of the (top-level) provision"),
		tok("scope", "Consent.scope", "Consent-scope", "Which of the four areas the consent covers"),
		tok("category", "Consent.category", "Consent-category", "The classification of the consent"),
	},
	"Provenance": {
		ref("target", "Provenance.target", "Provenance-target", "A resource the provenance is about", searchable...),
		ref("patient", "Provenance.target.where(resolve() is Patient)", "Provenance-patient",
			"A target that is a Patient", "Patient"),
		date("recorded", "Provenance.recorded", "Provenance-recorded", "When the activity was recorded"),
		ref("agent", "Provenance.agent.who", "Provenance-agent", "Who participated",
			"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
	},
	"Medication": {
		tok("code", "Medication.code", "clinical-code", "The medication code (e.g. RxNorm, NDC)"),
		tok("lot-number", "Medication.batch.lotNumber", "Medication-lot-number", "The batch lot number"),
		tok("status", "Medication.status", "Medication-status", "The status (http://hl7.org/fhir/CodeSystem/medication-status)"),
	},
	// The definition resources of the implementation guides the gateway
	// publishes and follows (conformance resources, R4 conformance-*
	// parameters). They belong to no patient compartment.
	"CodeSystem": conformance("CodeSystem", true),
	"ValueSet": conformance("ValueSet", true,
		uri("reference", "ValueSet.compose.include.system", "ValueSet-reference", "A code system the value set includes codes from"),
	),
	"StructureDefinition": conformance("StructureDefinition", true,
		uri("type", "StructureDefinition.type", "StructureDefinition-type",
			"The type defined or constrained, e.g. Extension or Observation"),
		tok("kind", "StructureDefinition.kind", "StructureDefinition-kind",
			"primitive-type | complex-type | resource | logical (http://hl7.org/fhir/structure-definition-kind)"),
		tok("derivation", "StructureDefinition.derivation", "StructureDefinition-derivation",
			"specialization | constraint (http://hl7.org/fhir/type-derivation-rule)"),
		ref("base", "StructureDefinition.baseDefinition", "StructureDefinition-base",
			"The canonical URL of the definition this one derives from", "StructureDefinition"),
	),
	"ImplementationGuide": conformance("ImplementationGuide", true,
		ref("depends-on", "ImplementationGuide.dependsOn.uri", "ImplementationGuide-depends-on",
			"The canonical URL of an implementation guide this one depends on", "ImplementationGuide"),
	),
	"SearchParameter": conformance("SearchParameter", false,
		tok("base", "SearchParameter.base", "SearchParameter-base",
			"A resource type the parameter applies to (http://hl7.org/fhir/resource-types)"),
		tok("code", "SearchParameter.code", "SearchParameter-code", "The code used in the URL"),
		tok("type", "SearchParameter.type", "SearchParameter-type",
			"The parameter type (http://hl7.org/fhir/search-param-type)"),
	),
	"OperationDefinition": conformance("OperationDefinition", true,
		tok("code", "OperationDefinition.code", "OperationDefinition-code", "The name used to invoke the operation"),
		tok("kind", "OperationDefinition.kind", "OperationDefinition-kind",
			"operation | query (http://hl7.org/fhir/operation-kind)"),
	),
}

// paramSecurity is the security labels of a resource (Resource-security):
// access control excludes labelled resources with _security:not.
const paramSecurity = "_security"

// common are the parameters of every resource type (search.html#all).
var common = []Param{
	{Name: store.ParamID, Type: store.KindToken, Expression: "Resource.id", Definition: sp + "Resource-id",
		Doc: "The logical id of the resource"},
	{Name: store.ParamLastUpdated, Type: store.KindDate, Expression: "Resource.meta.lastUpdated",
		Definition: sp + "Resource-lastUpdated", Doc: "When the resource version last changed"},
	{Name: paramSecurity, Type: store.KindToken, Expression: "Resource.meta.security",
		Definition: sp + "Resource-security", Doc: "A security label on the resource (system|code)"},
}

var (
	params   map[string][]Param          // type -> params sorted by name
	byName   map[string]map[string]Param // type -> name -> param
	allTypes []string
)

func init() {
	for typ, ps := range referralParams {
		declared[typ] = ps
	}
	params = make(map[string][]Param, len(declared))
	byName = make(map[string]map[string]Param, len(declared))
	for typ, ps := range declared {
		all := append(append([]Param(nil), common...), ps...)
		sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
		m := make(map[string]Param, len(all))
		for _, p := range all {
			if _, dup := m[p.Name]; dup {
				panic("search: duplicate parameter " + typ + "." + p.Name)
			}
			m[p.Name] = p
		}
		params[typ] = all
		byName[typ] = m
		allTypes = append(allTypes, typ)
	}
	sort.Strings(allTypes)
}

// Types returns every searchable resource type, sorted.
func Types() []string { return append([]string(nil), allTypes...) }

// Params returns the supported search parameters of a resource type sorted by
// name, including _id and _lastUpdated; nil for an unknown type.
func Params(resourceType string) []Param {
	ps := params[resourceType]
	if ps == nil {
		return nil
	}
	out := make([]Param, len(ps))
	for i, p := range ps {
		p.Targets = append([]string(nil), p.Targets...)
		out[i] = p
	}
	return out
}

// Lookup returns one search parameter of a resource type.
func Lookup(resourceType, name string) (Param, bool) {
	p, ok := byName[resourceType][name]
	if ok {
		p.Targets = append([]string(nil), p.Targets...)
	}
	return p, ok
}
