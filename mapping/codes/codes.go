// Package codes holds the terminology KetaBridge maps clinic records to: code
// system URIs, the drug, route, LOINC assessment and answer, vital-sign,
// billing, payer-type and demographics tables, UCUM units, status
// translations, the project's extensions and the concepts of its own code
// systems (under the fixed canonical base CanonicalBase). The codes come from
// the public terminologies: RxNorm, NDC, SNOMED CT, LOINC, ICD-10-CM, CPT,
// HCPCS, the Source of Payment Typology, CDC race and ethnicity, WHO ATC and
// UCUM; docs/fhir-mapping.md lists every code with the element it lands on.
//
// The tables are plain data with no FHIR model dependency; package mapping
// turns them into samply r4 Codings. Everything here is read-only: callers
// must not modify the maps or slices.
package codes

import "strings"

// Code system URIs (FHIR R4 terminologies.html and the US Core 6.1.0 IG).
const (
	LOINC             = "http://loinc.org"
	SNOMED            = "http://snomed.info/sct"
	RxNorm            = "http://www.nlm.nih.gov/research/umls/rxnorm"
	NDC               = "http://hl7.org/fhir/sid/ndc"
	ICD10CM           = "http://hl7.org/fhir/sid/icd-10-cm"
	UCUM              = "http://unitsofmeasure.org"
	NPI               = "http://hl7.org/fhir/sid/us-npi"
	V2IdentifierType  = "http://terminology.hl7.org/CodeSystem/v2-0203"
	V2Degree          = "http://terminology.hl7.org/CodeSystem/v2-0360|2.7"
	V3ActCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	V3Confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	V3ActReason       = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	V3Participation   = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	ObsCategory       = "http://terminology.hl7.org/CodeSystem/observation-category"
	ConditionCategory = "http://terminology.hl7.org/CodeSystem/condition-category"
	ConditionClinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	ConditionVerStat  = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	OrganizationType  = "http://terminology.hl7.org/CodeSystem/organization-type"
	PlanDefType       = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
	UsageContextType  = "http://terminology.hl7.org/CodeSystem/usage-context-type"
	CarePlanCategory  = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
	MedReqCategory    = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
	MedAdminCategory  = "http://terminology.hl7.org/CodeSystem/medication-admin-category"
	CoverageClass     = "http://terminology.hl7.org/CodeSystem/coverage-class"
	SubscriberRel     = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
	ConsentScope      = "http://terminology.hl7.org/CodeSystem/consentscope"
	ProvParticipant   = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	USCoreProvPart    = "http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type"
	AESeverity        = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
	AESeriousness     = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
	AEOutcome         = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
	DataAbsentReason  = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
	AECausalityAssess = "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess"
	MedAdminFunction  = "http://terminology.hl7.org/CodeSystem/med-admin-perform-function"
	NullFlavor        = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
	// CPT is the AMA CPT code system (terminology.hl7.org CodeSystem-CPT).
	CPT = "http://www.ama-assn.org/go/cpt"
	// HCPCS is HCPCS Level II as US payer IGs name it.
	HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
	// SOPT is the Source of Payment Typology, the US Core Coverage.type system.
	SOPT = "urn:oid:2.16.840.1.113883.3.221.5"
	// CDCRaceEthnicity is the CDC Race & Ethnicity code system of the US Core
	// race and ethnicity extensions.
	CDCRaceEthnicity = "urn:oid:2.16.840.1.113883.6.238"
	// BCP47 is the language tag system of Patient.communication.language.
	BCP47 = "urn:ietf:bcp:47"
	// ATC is the WHO Anatomical Therapeutic Chemical classification.
	ATC = "http://www.whocc.no/atc"
	// NAIC is the NAIC company code system of the US Core Organization NAIC slice.
	NAIC = "urn:oid:2.16.840.1.113883.6.300"
	// DataAbsentReasonExt is the core extension marking a missing required value.
	DataAbsentReasonExt = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
	// USCore is the canonical base of the US Core 6.1.0 profiles.
	USCore = "http://hl7.org/fhir/us/core/StructureDefinition/"
)

// The project's canonical base and what lives under it. Canonical URLs are
// fixed: they never depend on where a gateway is deployed (--base-url), so a
// code or extension means the same in every deployment and every export.
const (
	// CanonicalBase is the canonical base the project owns.
	CanonicalBase = "http://ketabridge.org/fhir"
	// IGURL is the canonical URL of the project's ImplementationGuide.
	IGURL = CanonicalBase + "/ImplementationGuide/ketabridge"
	// Scales is the CodeSystem of local assessment codes (MADRS, CADSS,
	// MOAA/S, item codes without a LOINC code).
	Scales = CanonicalBase + "/CodeSystem/ketabridge-scales"
	// Local is the CodeSystem of every other local code (session types, the
	// no-show reason, REMS questions, C-SSRS risk levels, adverse effects and
	// actions, assessment timing, course phases, trial outcomes, drug
	// classes, consent data classes).
	Local = CanonicalBase + "/CodeSystem/ketabridge"
	// ExtensionBase is the base of the project's extension URLs.
	ExtensionBase = CanonicalBase + "/StructureDefinition/"
	// ValueSetBase is the base of the project's ValueSet URLs.
	ValueSetBase = CanonicalBase + "/ValueSet/"
	// DefaultIdentifierSystemBase is the identifier-system base used when the
	// deployment configures none (package mapping, Options.IdentifierSystemBase):
	// {base}/mrn, {base}/practitioner, ... It is unique only within one
	// deployment; see docs/fhir-mapping.md.
	DefaultIdentifierSystemBase = CanonicalBase + "/sid"
)

// The project's own extensions (StructureDefinitions in conformance/ig). Only
// what no R4 core or US Core element or extension covers; Extensions says why
// each stays.
const (
	ExtDosePerKg        = ExtensionBase + "dose-per-kg"
	ExtREMSCertified    = ExtensionBase + "rems-certified"
	ExtTrialClass       = ExtensionBase + "antidepressant-class"
	ExtTrialAdequate    = ExtensionBase + "antidepressant-adequate"
	ExtTrialImprovement = ExtensionBase + "antidepressant-improvement"
	ExtAEAction         = ExtensionBase + "adverse-event-action"
	ExtAEResolved       = ExtensionBase + "adverse-event-resolved"
)

// Standard extensions the mappers use (R4 core and US Core 6.1.0).
const (
	// ExtOrdinalValue is the R4 core ordinalValue extension (on a Coding):
	// the score of a LOINC answer.
	ExtOrdinalValue = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
	// ExtReasonCancelled is the R4 core encounter-reasonCancelled extension.
	ExtReasonCancelled = "http://hl7.org/fhir/StructureDefinition/encounter-reasonCancelled"
	// US Core demographics extensions.
	ExtUSCoreRace      = USCore + "us-core-race"
	ExtUSCoreEthnicity = USCore + "us-core-ethnicity"
	ExtUSCoreBirthSex  = USCore + "us-core-birthsex"
)

// ExtensionSpec describes one of the project's extensions: what the
// StructureDefinition in conformance/ig states.
type ExtensionSpec struct {
	URL string
	// Name is the computable name, Title the human one.
	Name, Title string
	// Context is the element path the extension may appear on.
	Context string
	// ValueType is the one allowed value[x] type.
	ValueType string
	// Short is the one-line summary, Definition what the value means.
	Short, Definition string
	// Why says why no standard element or extension fits.
	Why string
	// ValueSet is the canonical of the value's binding ("" for none);
	// Strength its binding strength.
	ValueSet, Strength string
}

// Extensions are the project's extensions, in a stable order.
var Extensions = []ExtensionSpec{
	{URL: ExtDosePerKg, Name: "DosePerKg", Title: "Dose per kilogram",
		Context: "MedicationAdministration.dosage", ValueType: "Quantity",
		Short:      "Weight-based dose the amount given was calculated from (mg/kg)",
		Definition: "The weight-based dose (UCUM mg/kg) the clinician used to calculate this administration's dose, with the body weight of the session (MedicationAdministration.supportingInformation).",
		Why: "R4 MedicationAdministration.dosage.dose holds the amount given (mg). The weight-based dose it was calculated from " +
			"(the titration step, e.g. 0.5 mg/kg) has no element; dividing the rounded dose by the weight does not give it back exactly."},
	{URL: ExtREMSCertified, Name: "REMSCertified", Title: "Spravato REMS-certified setting",
		Context: "Location", ValueType: "boolean",
		Short:      "The location is a Spravato REMS-certified healthcare setting",
		Definition: "True when the location is certified as a healthcare setting under the Spravato (esketamine) REMS; the REMS setting id, when known, is a Location.identifier.",
		Why: "R4 Location and US Core Location have no element for a regulatory certification: Location.type is the kind of " +
			"service, and the REMS setting id is optional in the clinic record."},
	{URL: ExtTrialClass, Name: "AntidepressantClass", Title: "Antidepressant class",
		Context: "MedicationStatement", ValueType: "CodeableConcept",
		Short:      "Therapeutic class of the antidepressant taken",
		Definition: "The therapeutic class of the drug of this antidepressant trial: a WHO ATC group where one matches the class exactly, and the KetaBridge class code.",
		Why: "R4 MedicationStatement has no element for the drug's class (MedicationKnowledge.medicineClassification describes " +
			"drug catalogues, not a patient's trial); payers count failed trials per class.",
		ValueSet: ValueSetBase + "ketabridge-antidepressant-class", Strength: "extensible"},
	{URL: ExtTrialAdequate, Name: "AntidepressantAdequateTrial", Title: "Adequate antidepressant trial",
		Context: "MedicationStatement", ValueType: "boolean",
		Short:      "The trial reached a therapeutic dose for at least 6 weeks",
		Definition: "True when the clinician judged the antidepressant trial adequate: a therapeutic dose taken for at least 6 weeks.",
		Why:        "No R4 or US Core element records whether a medication trial was adequate; treatment-resistance criteria count adequate trials."},
	{URL: ExtTrialImprovement, Name: "AntidepressantImprovement", Title: "Improvement during an antidepressant trial",
		Context: "MedicationStatement", ValueType: "Quantity",
		Short:      "Percent improvement on a validated scale during the trial (UCUM %)",
		Definition: "The improvement from the trial's baseline on a validated depression scale, in percent (UCUM %); negative when worse.",
		Why: "R4 MedicationStatement has no outcome element, and the scale results of trials before the patient came to the " +
			"clinic are not available as Observations; payers read failure as at most 25 % improvement."},
	{URL: ExtAEAction, Name: "AdverseEventAction", Title: "Action taken for an adverse event",
		Context: "AdverseEvent", ValueType: "CodeableConcept",
		Short:      "What was done about the adverse event",
		Definition: "The action the clinician took in response to the adverse event (observed, infusion paused/slowed/stopped, medication given, transferred, none).",
		Why: "R4 AdverseEvent has no element for the action taken (R5 added AdverseEvent.mitigatingAction; its cross-version " +
			"extension is not an R4 definition validators know).",
		ValueSet: ValueSetBase + "ketabridge-adverse-event-action", Strength: "required"},
	{URL: ExtAEResolved, Name: "AdverseEventResolved", Title: "Adverse event resolution time",
		Context: "AdverseEvent", ValueType: "dateTime",
		Short:      "When the adverse event resolved",
		Definition: "The time the adverse event resolved; AdverseEvent.date is its onset and AdverseEvent.outcome says resolved.",
		Why: "R4 AdverseEvent has an onset (date) and an outcome code but no end time (R5 AdverseEvent.occurrence[x] is a " +
			"Period); Spravato REMS monitoring records until when sedation and dissociation lasted."},
}

// Code is one coded concept; System is a full URI.
type Code struct {
	System, Code, Display string
}

// Concept is a concept of a local CodeSystem.
type Concept struct {
	Code, Display, Definition string
}

// local returns a code of the ketabridge CodeSystem.
func local(code, display string) Code { return Code{Local, code, display} }

// Routes maps the clinic's route to SNOMED CT route of administration.
var Routes = map[string]Code{
	"iv":           {SNOMED, "47625008", "Intravenous route"},
	"im":           {SNOMED, "78421000", "Intramuscular route"},
	"intranasal":   {SNOMED, "46713006", "Nasal route"},
	"oral":         {SNOMED, "26643006", "Oral route"},
	"sublingual":   {SNOMED, "37839007", "Sublingual route"},
	"subcutaneous": {SNOMED, "34206005", "Subcutaneous route"},
}

// RouteText is the plain-language route used in dosage text.
var RouteText = map[string]string{
	"iv": "IV", "im": "IM", "intranasal": "intranasal", "oral": "oral",
	"sublingual": "sublingual", "subcutaneous": "subcutaneous",
}

// SelfAdministered are the routes by which the patient takes the dose under
// supervision (Spravato is self-administered by label; lozenges are taken by
// the patient): the patient is the performer, the clinician a witness.
var SelfAdministered = map[string]bool{"intranasal": true, "sublingual": true, "oral": true}

// Drugs maps the clinic's drug to its RxNorm codings when no product is
// known: ketamine is the ingredient 6130; esketamine carries the nasal spray
// (2201623) and the Spravato brand (2201625), esketamine's only US product.
var Drugs = map[string][]Code{
	"ketamine": {{RxNorm, "6130", "ketamine"}},
	"esketamine": {
		{RxNorm, "2201623", "esketamine nasal spray"},
		{RxNorm, "2201625", "esketamine nasal spray [Spravato]"},
	},
}

// DrugText is the display text of a drug.
var DrugText = map[string]string{"ketamine": "ketamine", "esketamine": "esketamine (Spravato)"}

// Ingredients are the ingredient codings of Medication.ingredient.item.
var Ingredients = map[string]Code{
	"ketamine":   {RxNorm, "6130", "ketamine"},
	"esketamine": {System: "", Code: "", Display: "esketamine"},
}

// ProductKey identifies a drug product by drug, form and strength (mg per
// unit of the form).
type ProductKey struct {
	Drug, Form string
	StrengthMg float64
}

// ClinicalDrugs maps a product to its RxNorm clinical drug (SCD): only
// products whose RxNorm code was checked against a published source (the
// openFDA NDC directory maps the 100 mg/mL ketamine vials, e.g. NDC
// 71872-7296, to RxCUI 238083).
var ClinicalDrugs = map[ProductKey]Code{
	{"ketamine", "injection-solution", 100}: {RxNorm, "238083", "ketamine 100 MG/ML Injectable Solution"},
}

// Forms maps a product form to Medication.form: SNOMED CT where the concept
// was checked (385087003 Lozenge, basic dose form), else text only.
var Forms = map[string]Code{
	"injection-solution": {Display: "Injectable solution"},
	"nasal-spray":        {Display: "Nasal spray"},
	"lozenge":            {SNOMED, "385087003", "Lozenge"},
}

// FormUnits is the UCUM denominator unit of a form's strength (per mL, per
// device, per lozenge).
var FormUnits = map[string]Unit{
	"injection-solution": {"mL", "mL"},
	"nasal-spray":        {"{device}", "device"},
	"lozenge":            {"{lozenge}", "lozenge"},
}

// UCUM units: code and human-readable unit.
type Unit struct{ Code, Unit string }

// Units used by the mappers.
var (
	UnitMg      = Unit{"mg", "mg"}
	UnitMgPerKg = Unit{"mg/kg", "mg/kg"}
	UnitMgPerH  = Unit{"mg/h", "mg/h"}
	UnitKg      = Unit{"kg", "kg"}
	UnitMmHg    = Unit{"mm[Hg]", "mmHg"}
	UnitPerMin  = Unit{"/min", "/min"}
	UnitPercent = Unit{"%", "%"}
	UnitCel     = Unit{"Cel", "Cel"}
	UnitMin     = Unit{"min", "min"}
)

// Vital sign LOINC codes (US Core 6.1.0 vital-sign profiles).
var (
	VitalBPPanel   = Code{LOINC, "85354-9", "Blood pressure panel with all children optional"}
	VitalSystolic  = Code{LOINC, "8480-6", "Systolic blood pressure"}
	VitalDiastolic = Code{LOINC, "8462-4", "Diastolic blood pressure"}
	VitalHR        = Code{LOINC, "8867-4", "Heart rate"}
	VitalRR        = Code{LOINC, "9279-1", "Respiratory rate"}
	VitalSpO2      = Code{LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"}
	VitalO2Sat     = Code{LOINC, "2708-6", "Oxygen saturation in Arterial blood"}
	VitalTemp      = Code{LOINC, "8310-5", "Body temperature"}
	VitalWeight    = Code{LOINC, "29463-7", "Body weight"}
)

// Answer is a LOINC answer with its score (ordinalValue); Scored is false for
// answers that are not part of a total (the PHQ-9 difficulty item).
type Answer struct {
	Code
	Score  int
	Scored bool
}

// FrequencyAnswers is the LOINC answer list LL358-3 of the PHQ-9 and GAD-7
// items, indexed by the item score 0-3 (US Core 6.1 screening-assessment
// examples code the items with it).
var FrequencyAnswers = []Answer{
	{Code{LOINC, "LA6568-5", "Not at all"}, 0, true},
	{Code{LOINC, "LA6569-3", "Several days"}, 1, true},
	{Code{LOINC, "LA6570-1", "More than half the days"}, 2, true},
	{Code{LOINC, "LA6571-9", "Nearly every day"}, 3, true},
}

// DifficultyAnswers is the LOINC answer list LL359-1 of the PHQ-9 difficulty
// item 69722-7, indexed by the clinic's 0-3. The item is not scored.
var DifficultyAnswers = []Answer{
	{Code{LOINC, "LA6572-7", "Not difficult at all"}, 0, false},
	{Code{LOINC, "LA6573-5", "Somewhat difficult"}, 1, false},
	{Code{LOINC, "LA6575-0", "Very difficult"}, 2, false},
	{Code{LOINC, "LA6574-3", "Extremely difficult"}, 3, false},
}

// Instrument describes how an assessment instrument is coded. Panel is empty
// when the instrument is a single score Observation; Items are the item codes
// in instrument order (LOINC where LOINC has them, else local scale codes).
type Instrument struct {
	Name       string
	Panel      Code
	Score      Code
	Items      []Code
	Difficulty Code
	// Answers is the LOINC answer list of the items (nil: the items are
	// integer scores).
	Answers []Answer
	// SelfReport marks patient-reported instruments (performer = Patient).
	SelfReport bool
	// SuicideRisk marks an instrument whose every answer is suicide-risk
	// content (the C-SSRS screener): all its Observations are restricted.
	SuicideRisk bool
	// SuicideItem is the 1-based number of the item that asks about
	// thoughts of death or self-harm (PHQ-9 item 9, MADRS item 10: suicidal
	// thoughts), 0 for none: the Observation carrying its answer is
	// restricted.
	SuicideItem int
	// ItemScores is the code of the Observation that carries the item
	// scores as components, apart from the total, of an instrument without
	// a panel whose SuicideItem is among the answered items: that
	// Observation is restricted and the total is an Observation of its
	// own that is not, so that minimum necessary can show the total
	// without item 10 (docs/fhir-mapping.md "Security labels").
	ItemScores Code
}

// scale returns a local scale code.
func scale(code, display string) Code { return Code{Scales, code, display} }

func localItems(prefix, name string, n int) []Code {
	out := make([]Code, n)
	for i := range out {
		num := itoa(i + 1)
		out[i] = scale(prefix+"-item-"+num, name+" item "+num)
	}
	return out
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// Instruments maps the clinic's instrument to its codes (LOINC panels, scores,
// items and answers from loinc.org; MADRS, CADSS, MOAA/S and items LOINC
// lacks are local).
var Instruments = map[string]Instrument{
	"phq9": {
		Name:  "PHQ-9",
		Panel: Code{LOINC, "44249-1", "PHQ-9 quick depression assessment panel"},
		Score: Code{LOINC, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score"},
		Items: []Code{
			{LOINC, "44250-9", "Little interest or pleasure in doing things"},
			{LOINC, "44255-8", "Feeling down, depressed, or hopeless"},
			{LOINC, "44259-0", "Trouble falling or staying asleep, or sleeping too much"},
			{LOINC, "44254-1", "Feeling tired or having little energy"},
			{LOINC, "44251-7", "Poor appetite or overeating"},
			{LOINC, "44258-2", "Feeling bad about yourself-or that you are a failure or have let yourself or your family down"},
			{LOINC, "44252-5", "Trouble concentrating on things, such as reading the newspaper or watching television"},
			{LOINC, "44253-3", "Moving or speaking so slowly that other people could have noticed. Or the opposite"},
			{LOINC, "44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way"},
		},
		Difficulty:  Code{LOINC, "69722-7", "How difficult have these problems made it for you to do your work, take care of things at home, or get along with other people"},
		Answers:     FrequencyAnswers,
		SelfReport:  true,
		SuicideItem: 9,
	},
	"gad7": {
		Name:  "GAD-7",
		Panel: Code{LOINC, "69737-5", "Generalized anxiety disorder 7 item (GAD-7)"},
		Score: Code{LOINC, "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score"},
		Items: []Code{
			{LOINC, "69725-0", "Feeling nervous, anxious or on edge"},
			{LOINC, "68509-9", "Not being able to stop or control worrying"},
			{LOINC, "69733-4", "Worrying too much about different things"},
			{LOINC, "69734-2", "Trouble relaxing"},
			{LOINC, "69735-9", "Being so restless that it is hard to sit still"},
			{LOINC, "69689-8", "Becoming easily annoyed or irritable"},
			{LOINC, "69736-7", "Feeling afraid as if something awful might happen"},
		},
		Answers:    FrequencyAnswers,
		SelfReport: true,
	},
	"pcl5": {
		Name:       "PCL-5",
		Score:      Code{LOINC, "101698-9", "PTSD Checklist for DSM-5 (PCL-5) total score"},
		Items:      localItems("pcl5", "PCL-5", 20),
		SelfReport: true,
	},
	"cssrs": {
		Name:        "C-SSRS",
		Panel:       Code{LOINC, "93373-9", "Columbia suicide severity rating scale screener - recent"},
		Score:       Code{LOINC, "93374-7", "Suicide risk level [C-SSRS]"},
		SuicideRisk: true,
	},
	"madrs": {
		Name:        "MADRS",
		Score:       scale("madrs-total", "MADRS total score"),
		Items:       localItems("madrs", "MADRS", 10),
		SuicideItem: 10,
		ItemScores:  scale("madrs-items", "MADRS item scores"),
	},
	"cadss": {
		Name:  "CADSS",
		Score: scale("cadss-total", "CADSS total score"),
		Items: localItems("cadss", "CADSS", 23),
	},
	"moaas": {
		Name:  "MOAA/S",
		Score: scale("moaas-score", "MOAA/S score"),
	},
}

// CSSRSRisk maps the C-SSRS screener risk level to the LOINC answer list
// LL465-6 of 93374-7 (Low LA9194-7 as in the HL7 US Behavioral Health
// Profiles example; Moderate and High as published implementations list
// them) followed by the local code, kept as a translation until the LOINC
// answers are confirmed against loinc.org (docs/fhir-mapping.md).
var CSSRSRisk = map[string][]Code{
	"low":      {{LOINC, "LA9194-7", "Low"}, local("cssrs-risk-low", "Low suicide risk")},
	"moderate": {{LOINC, "LA6751-7", "Moderate"}, local("cssrs-risk-moderate", "Moderate suicide risk")},
	"high":     {{LOINC, "LA9193-9", "High"}, local("cssrs-risk-high", "High suicide risk")},
}

// ScaleConcepts are the concepts of the ketabridge-scales CodeSystem.
func ScaleConcepts() []Concept {
	out := []Concept{
		{"madrs-total", "MADRS total score", "Montgomery-Asberg Depression Rating Scale total score (0-60)."},
		{"madrs-items", "MADRS item scores", "Montgomery-Asberg Depression Rating Scale item scores, items 1-10 as components, apart from the total."},
		{"cadss-total", "CADSS total score", "Clinician-Administered Dissociative States Scale total score (0-92)."},
		{"moaas-score", "MOAA/S score", "Modified Observer's Assessment of Alertness/Sedation score (0-5)."},
	}
	for _, inst := range []string{"pcl5", "madrs", "cadss"} {
		for _, c := range Instruments[inst].Items {
			out = append(out, Concept{c.Code, c.Display, c.Display + " score."})
		}
	}
	return out
}

// EncounterStatus maps the clinic session status to Encounter.status (R4
// valueset-encounter-status). R4 has no no-show or stopped-early status: a
// no-show is cancelled with the reason SessionNoShow; a session stopped early
// is finished, and its last MedicationAdministration is stopped.
var EncounterStatus = map[string]string{
	"completed": "finished", "stopped-early": "finished",
	"cancelled": "cancelled", "no-show": "cancelled", "scheduled": "planned",
}

// Session types and the no-show reason (Encounter.type,
// encounter-reasonCancelled).
var (
	SessionKetamine   = local("ketamine-treatment-session", "Ketamine treatment session")
	SessionEsketamine = local("esketamine-treatment-session", "Esketamine (Spravato) treatment session with REMS monitoring")
	SessionNoShow     = local("session-no-show", "Patient did not attend")
	REMSMonitoring    = local("rems-monitoring", "Spravato REMS patient monitoring")
	// SessionProcedure is the SNOMED CT procedure of every treatment session
	// (no concept specific to ketamine sessions was confirmed).
	SessionProcedure = Code{SNOMED, "225426007", "Administration of therapeutic substance"}
)

// Billing codes of a session (a second Encounter.type): CPT 96365 for an IV
// infusion up to 1 hour, CPT 96372 for an IM or subcutaneous injection, HCPCS
// G2082/G2083 for supervised esketamine self-administration up to / over
// 56 mg including the 2-hour observation.
var (
	BillingIVInfusion   = Code{CPT, "96365", "Intravenous infusion, for therapy, prophylaxis, or diagnosis; initial, up to 1 hour"}
	BillingInjection    = Code{CPT, "96372", "Therapeutic, prophylactic, or diagnostic injection; subcutaneous or intramuscular"}
	BillingEsketamine56 = Code{HCPCS, "G2082", "Esketamine self-administration, up to 56 mg, with 2 hours post-administration observation"}
	BillingEsketamine84 = Code{HCPCS, "G2083", "Esketamine self-administration, greater than 56 mg, with 2 hours post-administration observation"}
)

// REMS question codes (components of the REMS monitoring Observation).
var (
	REMSFirstTreatment   = local("rems-first-treatment", "First Spravato treatment")
	REMSEnrolled         = local("rems-enrolled", "Patient enrolled in the Spravato REMS")
	REMSConcomitant      = local("rems-concomitant-medication", "Concomitant medication of concern")
	REMSMinutesToReady   = local("rems-minutes-to-ready", "Minutes from first device until ready to leave")
	REMSTotalMonitoring  = local("rems-total-monitoring-minutes", "Total monitoring minutes")
	REMSVitalsBefore     = local("rems-vitals-acceptable-before", "Vital signs acceptable before dosing")
	REMSVitalsAtDischarg = local("rems-vitals-acceptable-at-discharge", "Vital signs acceptable before discharge")
)

// AssessmentTiming maps the clinic's assessment timing to a local category
// code (a second Observation.category beside survey).
var AssessmentTiming = map[string]Code{
	"baseline":  local("timing-baseline", "Baseline assessment"),
	"pre-dose":  local("timing-pre-dose", "Pre-dose assessment"),
	"post-dose": local("timing-post-dose", "Post-dose assessment"),
	"follow-up": local("timing-follow-up", "Follow-up assessment"),
}

// CoursePhases maps the clinic's course phase to a local CarePlan.category.
var CoursePhases = map[string]Code{
	"induction":   local("phase-induction", "Induction phase"),
	"maintenance": local("phase-maintenance", "Maintenance phase"),
}

// AdverseEffects maps the clinic's effect to its SNOMED CT finding where one
// was confirmed, then the local code.
var AdverseEffects = map[string][]Code{
	"dissociation":           {local("ae-dissociation", "Dissociation")},
	"hypertension":           {{SNOMED, "24184005", "Finding of increased blood pressure"}, local("ae-hypertension", "Transient blood pressure elevation")},
	"nausea":                 {{SNOMED, "422587007", "Nausea"}, local("ae-nausea", "Nausea")},
	"vomiting":               {{SNOMED, "422400008", "Vomiting"}, local("ae-vomiting", "Vomiting")},
	"sedation":               {local("ae-sedation", "Sedation")},
	"headache":               {{SNOMED, "25064002", "Headache"}, local("ae-headache", "Headache")},
	"dizziness":              {{SNOMED, "404640003", "Dizziness"}, local("ae-dizziness", "Dizziness")},
	"anxiety":                {{SNOMED, "48694002", "Anxiety"}, local("ae-anxiety", "Anxiety")},
	"respiratory-depression": {local("ae-respiratory-depression", "Respiratory depression")},
	"other":                  {local("ae-other", "Other adverse effect")},
}

// AdverseActions maps the clinic's action taken to a local code.
var AdverseActions = map[string]Code{
	"none":             local("ae-action-none", "No action taken"),
	"observed":         local("ae-action-observed", "Observed"),
	"infusion-paused":  local("ae-action-infusion-paused", "Infusion paused"),
	"infusion-slowed":  local("ae-action-infusion-slowed", "Infusion slowed"),
	"infusion-stopped": local("ae-action-infusion-stopped", "Infusion stopped"),
	"medication-given": local("ae-action-medication-given", "Medication given"),
	"transferred":      local("ae-action-transferred", "Transferred to a higher level of care"),
}

// Causality maps the clinic's causality assessment to R4
// adverse-event-causality-assess.
var Causality = map[string]Code{
	"certain":      {AECausalityAssess, "Certain", "Certain"},
	"probable":     {AECausalityAssess, "Probably-Likely", "Probably/Likely"},
	"possible":     {AECausalityAssess, "Possible", "Possible"},
	"unlikely":     {AECausalityAssess, "Unlikely", "Unlikely"},
	"unassessable": {AECausalityAssess, "Unassessable-Unclassifiable", "Unassessable/Unclassifiable"},
}

// Performer functions of MedicationAdministration.performer.
var (
	FunctionPerformer = Code{MedAdminFunction, "performer", "Performer"}
	FunctionWitness   = Code{MedAdminFunction, "witness", "Witness"}
)

// TrialOutcomes maps an antidepressant trial outcome to a local code.
var TrialOutcomes = map[string]Code{
	"inadequate-response": local("trial-inadequate-response", "Inadequate response"),
	"partial-response":    local("trial-partial-response", "Partial response"),
	"response":            local("trial-response", "Response"),
	"intolerance":         local("trial-intolerance", "Stopped for intolerance"),
	"ongoing":             local("trial-ongoing", "Trial ongoing"),
}

// DrugClasses maps an antidepressant class to its codes: the WHO ATC group
// when one is the class exactly (SSRI N06AB, TCA N06AA, atypical = other
// antidepressants N06AX), then the local code.
var DrugClasses = map[string][]Code{
	"SSRI":         {{ATC, "N06AB", "Selective serotonin reuptake inhibitors"}, local("class-ssri", "Selective serotonin reuptake inhibitor")},
	"SNRI":         {local("class-snri", "Serotonin-norepinephrine reuptake inhibitor")},
	"TCA":          {{ATC, "N06AA", "Non-selective monoamine reuptake inhibitors"}, local("class-tca", "Tricyclic antidepressant")},
	"MAOI":         {local("class-maoi", "Monoamine oxidase inhibitor")},
	"atypical":     {{ATC, "N06AX", "Other antidepressants"}, local("class-atypical", "Atypical antidepressant")},
	"augmentation": {local("class-augmentation", "Augmentation agent")},
	"other":        {local("class-other", "Other antidepressant")},
}

// DataClasses maps a consent data class to a local code (Consent.provision.class).
// Each display names the resources of the class as the access decision
// classifies them (package auth, ClassOf).
var DataClasses = map[string]Code{
	"demographics": local("data-demographics", "Demographics (Patient)"),
	"diagnoses":    local("data-diagnoses", "Diagnoses (Condition)"),
	"medications":  local("data-medications", "Medications (MedicationRequest, MedicationStatement)"),
	"sessions":     local("data-sessions", "Treatment sessions (CarePlan, Encounter, MedicationAdministration, AdverseEvent)"),
	"assessments":  local("data-assessments", "Assessments (Observation category survey)"),
	"vitals":       local("data-vitals", "Vital signs (Observation category vital-signs)"),
	"coverage":     local("data-coverage", "Coverage"),
}

// Purposes maps a consent purpose to v3-ActReason.
var Purposes = map[string]Code{
	"treatment":  {V3ActReason, "TREAT", "treatment"},
	"payment":    {V3ActReason, "HPAYMT", "healthcare payment"},
	"operations": {V3ActReason, "HOPERAT", "healthcare operations"},
}

// OrganizationTypes maps the clinic's organization type to organization-type.
var OrganizationTypes = map[string]Code{
	"clinic":  {OrganizationType, "prov", "Healthcare Provider"},
	"partner": {OrganizationType, "prov", "Healthcare Provider"},
	"payer":   {OrganizationType, "pay", "Payer"},
}

// OrganizationRoles are local Organization.type codes, sent beside the
// organization-type code, for what organization-type cannot tell: a partner
// clinic is a healthcare provider (prov) like the clinic itself, and the
// gateway must know which organizations are partners (the partner view of
// the access decision).
var OrganizationRoles = map[string]Code{
	"partner": local("org-partner-clinic", "Partner clinic"),
}

// PayerTypes maps the clinic's coverage payer type to the Source of Payment
// Typology (Coverage.type, US Core Payer Type).
var PayerTypes = map[string]Code{
	"medicare":       {SOPT, "1", "MEDICARE"},
	"medicare-hmo":   {SOPT, "111", "Medicare HMO"},
	"medicare-ppo":   {SOPT, "112", "Medicare PPO"},
	"medicaid":       {SOPT, "2", "MEDICAID"},
	"medicaid-hmo":   {SOPT, "211", "Medicaid HMO"},
	"commercial":     {SOPT, "5", "PRIVATE HEALTH INSURANCE"},
	"commercial-hmo": {SOPT, "511", "Commercial Managed Care - HMO"},
	"commercial-ppo": {SOPT, "512", "Commercial Managed Care - PPO"},
	"commercial-pos": {SOPT, "513", "Commercial Managed Care - POS"},
	"commercial-epo": {SOPT, "514", "Exclusive Provider Organization"},
	"bcbs":           {SOPT, "6", "BLUE CROSS/BLUE SHIELD"},
	"tricare":        {SOPT, "311", "TRICARE (CHAMPUS)"},
	"self-pay":       {SOPT, "81", "Self-pay"},
	"other":          {SOPT, "9", "MISCELLANEOUS/OTHER"},
}

// Races maps the clinic's race value to the US Core race extension's
// ombCategory (OMB categories of the CDC Race & Ethnicity system; declined
// and unknown are the v3-NullFlavor ASKU and UNK).
var Races = map[string]Code{
	"american-indian-alaska-native":    {CDCRaceEthnicity, "1002-5", "American Indian or Alaska Native"},
	"asian":                            {CDCRaceEthnicity, "2028-9", "Asian"},
	"black":                            {CDCRaceEthnicity, "2054-5", "Black or African American"},
	"native-hawaiian-pacific-islander": {CDCRaceEthnicity, "2076-8", "Native Hawaiian or Other Pacific Islander"},
	"white":                            {CDCRaceEthnicity, "2106-3", "White"},
	"declined":                         {NullFlavor, "ASKU", "Asked but no answer"},
	"unknown":                          {NullFlavor, "UNK", "Unknown"},
}

// Ethnicities maps the clinic's ethnicity to the US Core ethnicity
// extension's ombCategory.
var Ethnicities = map[string]Code{
	"hispanic-latino":     {CDCRaceEthnicity, "2135-2", "Hispanic or Latino"},
	"not-hispanic-latino": {CDCRaceEthnicity, "2186-5", "Not Hispanic or Latino"},
	"declined":            {NullFlavor, "ASKU", "Asked but no answer"},
	"unknown":             {NullFlavor, "UNK", "Unknown"},
}

// BirthSexes maps the clinic's birth sex to the us-core-birthsex code.
var BirthSexes = map[string]string{"female": "F", "male": "M", "unknown": "UNK"}

// Qualifications maps a credential to v2-0360 (degree/license) where it has one;
// others are carried as text only.
var Qualifications = map[string]Code{
	"MD": {V2Degree, "MD", "Doctor of Medicine"},
	"DO": {V2Degree, "DO", "Doctor of Osteopathy"},
	"NP": {V2Degree, "NP", "Nurse practitioner"},
	"RN": {V2Degree, "RN", "Registered Nurse"},
	"PA": {V2Degree, "PA", "Physician Assistant"},
}

// NUCCTaxonomy is the NUCC Health Care Provider Taxonomy, the code system
// of a practitioner's specialty (US Core 6.1.0 binds PractitionerRole.specialty
// to it).
const NUCCTaxonomy = "http://nucc.org/provider-taxonomy"

// Taxonomies are the displays of the NUCC taxonomy codes a ketamine clinic's
// staff commonly have (nucc.org, version 24.0 names). A valid code not listed
// here is carried without a display.
var Taxonomies = map[string]string{
	"2084P0800X": "Psychiatry & Neurology, Psychiatry",
	"2084P0804X": "Psychiatry & Neurology, Child & Adolescent Psychiatry",
	"2084P0805X": "Psychiatry & Neurology, Geriatric Psychiatry",
	"2084A0401X": "Psychiatry & Neurology, Addiction Medicine",
	"2084N0400X": "Psychiatry & Neurology, Neurology",
	"207L00000X": "Anesthesiology",
	"207Q00000X": "Family Medicine",
	"207R00000X": "Internal Medicine",
	"363LP0808X": "Nurse Practitioner, Psychiatric/Mental Health",
	"363LF0000X": "Nurse Practitioner, Family",
	"363AM0700X": "Physician Assistant, Medical",
	"367500000X": "Nurse Anesthetist, Certified Registered",
	"163W00000X": "Registered Nurse",
	"163WP0808X": "Registered Nurse, Psychiatric/Mental Health",
	"103T00000X": "Psychologist",
}

// CourseStatus maps a course status to MedicationRequest.status
// (medicationrequest-status) and CarePlan.status (request-status).
var CourseStatus = map[string]struct{ MedicationRequest, CarePlan string }{
	"active":    {"active", "active"},
	"completed": {"completed", "completed"},
	"stopped":   {"stopped", "revoked"},
	"on-hold":   {"on-hold", "on-hold"},
}

// Security labels (meta.security) from the HL7 Healthcare Privacy and
// Security Classification System (FHIR R4 security-labels.html#hcs), with
// their official displays: the sensitivity category PSY (v3-ActCode) on
// mental-health content, and one confidentiality code (v3-Confidentiality)
// beside it: R (restricted) on suicide-risk content, else N (normal).
// docs/fhir-mapping.md "Security labels" says which resource gets which.
var (
	SecurityPSY        = Code{V3ActCode, "PSY", "psychiatry disorder information sensitivity"}
	SecurityNormal     = Code{V3Confidentiality, "N", "normal"}
	SecurityRestricted = Code{V3Confidentiality, "R", "restricted"}
)

// Local codes of referrals (docs/referrals.md). The fhir package writes
// them (it does not import this package; a server test keeps the two
// equal).
var (
	// ReferralInputPatientMatch and ReferralInputMatchedPatient are the
	// Task.input types of an inbound referral: the basis of the patient
	// match, and the clinic's Patient it matched.
	ReferralInputPatientMatch   = local("patient-match", "Basis of the referred patient's match")
	ReferralInputMatchedPatient = local("matched-patient", "Clinic patient the referred patient matched")
	// The bases of a patient match, the value of the patient-match input.
	MatchIdentifier   = local("match-identifier", "Matched by identifier")
	MatchDemographics = local("match-demographics", "Matched by family name, first given name, birth date and gender")
	MatchNone         = local("match-none", "No match: awaiting registration")
	// ReferredPatient tags a Patient an inbound referral wrote (meta.tag).
	ReferredPatient = local("referred-patient", "Referred patient awaiting registration")
	// ConsentWithdrawn is the Task.statusReason of a referral closed when
	// the patient's consent for its recipient stopped counting.
	ConsentWithdrawn = local("consent-withdrawn", "Patient consent for the recipient withdrawn")
)

// LocalGroup is a group of local codes published as one ValueSet.
type LocalGroup struct {
	// ID is the ValueSet id (its url is ValueSetBase + ID).
	ID, Title, Description string
	Codes                  []Code
}

// LocalGroups are the groups of the ketabridge CodeSystem, each published as
// a ValueSet, in a stable order; together they hold every local code.
func LocalGroups() []LocalGroup {
	pick := func(m map[string]Code, keys ...string) []Code {
		out := make([]Code, len(keys))
		for i, k := range keys {
			out[i] = m[k]
		}
		return out
	}
	localOf := func(cs []Code) Code {
		for _, c := range cs {
			if c.System == Local {
				return c
			}
		}
		return Code{}
	}
	var effects, classes, risks []Code
	for _, k := range []string{"dissociation", "hypertension", "nausea", "vomiting", "sedation", "headache",
		"dizziness", "anxiety", "respiratory-depression", "other"} {
		effects = append(effects, localOf(AdverseEffects[k]))
	}
	for _, k := range []string{"SSRI", "SNRI", "TCA", "MAOI", "atypical", "augmentation", "other"} {
		classes = append(classes, localOf(DrugClasses[k]))
	}
	for _, k := range []string{"low", "moderate", "high"} {
		risks = append(risks, localOf(CSSRSRisk[k]))
	}
	return []LocalGroup{
		{"ketabridge-session-type", "KetaBridge session types",
			"Encounter.type codes of a ketamine or esketamine treatment session.",
			[]Code{SessionKetamine, SessionEsketamine}},
		{"ketabridge-session-cancel-reason", "KetaBridge session cancellation reasons",
			"encounter-reasonCancelled codes the clinic's session status says more precisely than Encounter.status.",
			[]Code{SessionNoShow}},
		{"ketabridge-rems-question", "KetaBridge Spravato REMS monitoring questions",
			"The code of the Spravato REMS Patient Monitoring Form Observation and of its components.",
			[]Code{REMSMonitoring, REMSFirstTreatment, REMSEnrolled, REMSConcomitant, REMSMinutesToReady,
				REMSTotalMonitoring, REMSVitalsBefore, REMSVitalsAtDischarg}},
		{"ketabridge-cssrs-risk", "KetaBridge C-SSRS risk levels",
			"Local C-SSRS screener risk levels, sent as a translation of the LOINC answers of 93374-7.", risks},
		{"ketabridge-assessment-timing", "KetaBridge assessment timing",
			"Observation.category codes saying when in a course or session an assessment was taken.",
			pick(AssessmentTiming, "baseline", "pre-dose", "post-dose", "follow-up")},
		{"ketabridge-course-phase", "KetaBridge course phases",
			"CarePlan.category codes of the phase of a treatment course.",
			pick(CoursePhases, "induction", "maintenance")},
		{"ketabridge-adverse-effect", "KetaBridge adverse effects",
			"AdverseEvent.event codes of effects seen in ketamine therapy (sent with SNOMED CT where confirmed).", effects},
		{"ketabridge-adverse-event-action", "KetaBridge adverse event actions",
			"Values of the adverse-event-action extension.",
			pick(AdverseActions, "none", "observed", "infusion-paused", "infusion-slowed", "infusion-stopped",
				"medication-given", "transferred")},
		{"ketabridge-trial-outcome", "KetaBridge antidepressant trial outcomes",
			"MedicationStatement.statusReason codes of an antidepressant trial.",
			pick(TrialOutcomes, "inadequate-response", "partial-response", "response", "intolerance", "ongoing")},
		{"ketabridge-antidepressant-class", "KetaBridge antidepressant classes",
			"Local antidepressant classes, the values of the antidepressant-class extension (with a WHO ATC group where one matches).",
			classes},
		{"ketabridge-organization-role", "KetaBridge organization roles",
			"Organization.type codes, beside organization-type, saying what an organization is to the clinic.",
			[]Code{OrganizationRoles["partner"]}},
		{"ketabridge-consent-data-class", "KetaBridge consent data classes",
			"Consent.provision.class codes; each concept names the resources it covers.",
			pick(DataClasses, "demographics", "diagnoses", "medications", "sessions", "assessments", "vitals", "coverage")},
		{"ketabridge-referral-input", "KetaBridge referral Task inputs",
			"Task.input.type codes of an inbound referral: the basis of the referred patient's match and the clinic's Patient it matched.",
			[]Code{ReferralInputPatientMatch, ReferralInputMatchedPatient}},
		{"ketabridge-patient-match-basis", "KetaBridge patient match bases",
			"Values of a referral Task's patient-match input: how the referred patient was matched to a clinic patient, or that it was not.",
			[]Code{MatchIdentifier, MatchDemographics, MatchNone}},
		{"ketabridge-referral-tag", "KetaBridge referral tags",
			"meta.tag codes of resources a referral wrote: a referred Patient awaiting registration, never merged.",
			[]Code{ReferredPatient}},
		{"ketabridge-referral-status-reason", "KetaBridge referral status reasons",
			"Task.statusReason codes the gateway sets when it closes a referral itself.",
			[]Code{ConsentWithdrawn}},
	}
}

// LocalConcepts are the concepts of the ketabridge CodeSystem (every local
// code other than assessment scales), in group order.
func LocalConcepts() []Concept {
	var out []Concept
	for _, g := range LocalGroups() {
		for _, c := range g.Codes {
			out = append(out, Concept{Code: c.Code, Display: c.Display})
		}
	}
	return out
}

// MentalHealthDiagnosis reports whether an ICD-10-CM code is mental-health
// content (label PSY): chapter 5, mental, behavioral and neurodevelopmental
// disorders (F01-F99); R45, symptoms and signs involving emotional state;
// and every suicide-risk code (SuicideRiskDiagnosis).
func MentalHealthDiagnosis(icd10 string) bool {
	c := icdKey(icd10)
	return strings.HasPrefix(c, "F") || strings.HasPrefix(c, "R45") || SuicideRiskDiagnosis(icd10)
}

// SuicideRiskDiagnosis reports whether an ICD-10-CM code records suicidal
// ideation, suicidal behaviour or self-harm (confidentiality R): R45.851
// suicidal ideations, R45.88 nonsuicidal self-harm, T14.91 suicide attempt,
// Z91.5 personal history of self-harm (Z91.51, Z91.52), X71-X83 intentional
// self-harm, and the poisonings, toxic effects and asphyxiations whose intent
// character is 2, intentional self-harm (T36-T65, T71.1).
func SuicideRiskDiagnosis(icd10 string) bool {
	c := icdKey(icd10)
	for _, p := range []string{"R45851", "R4588", "T1491", "Z915"} {
		if strings.HasPrefix(c, p) {
			return true
		}
	}
	if len(c) < 3 {
		return false
	}
	n, ok := twoDigits(c[1:3])
	switch {
	case !ok:
		return false
	case c[0] == 'X':
		return n >= 71 && n <= 83
	case c[0] == 'T' && (n >= 36 && n <= 65 || strings.HasPrefix(c, "T711")):
		// The intent is the character after the subcategory: the 6th
		// (T36.0X2A, T43.012A), or the 5th when a placeholder X follows it
		// (T51.92XA). Every T code needs a 7th character, so a code too
		// short to show its intent is not a code the clinic can send.
		return len(c) >= 6 && (c[5] == '2' || c[5] == 'X' && c[4] == '2')
	}
	return false
}

// icdKey is an ICD-10-CM code without its dot, in upper case.
func icdKey(code string) string {
	return strings.ToUpper(strings.ReplaceAll(code, ".", ""))
}

func twoDigits(s string) (int, bool) {
	if len(s) != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}
