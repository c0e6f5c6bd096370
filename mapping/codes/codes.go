// Package codes holds the terminology KetaBridge maps clinic records to: code
// system URIs, the drug, route, LOINC assessment and vital-sign tables, UCUM
// units, status translations and the concepts of the project's own code
// systems (defined under the gateway's canonical base). The codes come from
// the public terminologies: RxNorm, NDC, SNOMED CT, LOINC, ICD-10-CM and UCUM.
//
// The tables are plain data with no FHIR model dependency; package mapping
// turns them into samply r4 Codings. Everything here is read-only: callers
// must not modify the maps or slices.
package codes

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
	// DataAbsentReasonExt is the core extension marking a missing required value.
	DataAbsentReasonExt = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
	// EncounterBasedOnR5 is the cross-version extension carrying R5
	// Encounter.basedOn (which allows CarePlan) in R4, where Encounter.basedOn
	// may only reference a ServiceRequest (encounter-definitions.html#Encounter.basedOn).
	EncounterBasedOnR5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.basedOn"
	// USCore is the canonical base of the US Core 6.1.0 profiles.
	USCore = "http://hl7.org/fhir/us/core/StructureDefinition/"
)

// Paths of the project's own definitions under the gateway's canonical base
// (Options.Canonical in package mapping).
const (
	// ScalesPath is the CodeSystem of local assessment codes (MADRS, CADSS,
	// MOAA/S, item codes without a LOINC code).
	ScalesPath = "/CodeSystem/ketabridge-scales"
	// LocalPath is the CodeSystem of every other local code (session types and
	// statuses, trial outcomes, drug classes, adverse effects and actions, REMS
	// questions, consent data classes, C-SSRS risk levels).
	LocalPath = "/CodeSystem/ketabridge"
	// ExtensionPath is the base of the project's extension URLs.
	ExtensionPath = "/StructureDefinition/"
	// SIDPath is the base of the project's identifier systems ({Canonical}/sid/mrn, ...).
	SIDPath = "/sid/"
)

// Extension names under {Canonical}/StructureDefinition/. The StructureDefinitions
// describing them belong to package conformance.
const (
	ExtDosePerKg        = "dose-per-kg"                // MedicationAdministration.dosage: valueQuantity mg/kg
	ExtDeviceCount      = "device-count"               // MedicationAdministration.dosage: valuePositiveInt (esketamine devices)
	ExtSessionStatus    = "session-status"             // Encounter: valueCodeableConcept (local session-status code, text = reason)
	ExtScheduledStart   = "scheduled-start"            // Encounter: valueDateTime
	ExtSessionNumber    = "session-number"             // Encounter: valuePositiveInt
	ExtAssessmentTiming = "assessment-timing"          // Observation: valueCode baseline|pre-dose|post-dose|follow-up
	ExtAEAction         = "adverse-event-action"       // AdverseEvent: valueCodeableConcept (local action code)
	ExtAEResolved       = "adverse-event-resolved"     // AdverseEvent: valueDateTime
	ExtREMSCertified    = "rems-certified"             // Location: valueBoolean
	ExtTrialAdequate    = "antidepressant-adequate"    // MedicationStatement: valueBoolean
	ExtTrialImprovement = "antidepressant-improvement" // MedicationStatement: valueQuantity %
	ExtTrialClass       = "antidepressant-class"       // MedicationStatement: valueCoding (local drug-class code)
	ExtCoursePhase      = "course-phase"               // CarePlan: valueCode induction|maintenance
)

// Code is one coded concept. System is a full URI, or one of ScalesPath /
// LocalPath for a local code (package mapping prefixes the canonical base).
type Code struct {
	System, Code, Display string
}

// Concept is a concept of a local CodeSystem.
type Concept struct {
	Code, Display, Definition string
}

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

// Drugs maps the clinic's drug to its RxNorm codings: ketamine is the
// ingredient 6130; esketamine carries the nasal spray (2201623) and the
// Spravato brand (2201625).
var Drugs = map[string][]Code{
	"ketamine": {{RxNorm, "6130", "ketamine"}},
	"esketamine": {
		{RxNorm, "2201623", "esketamine nasal spray"},
		{RxNorm, "2201625", "esketamine nasal spray [Spravato]"},
	},
}

// DrugText is the display text of a drug.
var DrugText = map[string]string{"ketamine": "ketamine", "esketamine": "esketamine (Spravato)"}

// UCUM units: code and human-readable unit.
type Unit struct{ Code, Unit string }

// Units used by the mappers.
var (
	UnitMg      = Unit{"mg", "mg"}
	UnitMgPerKg = Unit{"mg/kg", "mg/kg"}
	UnitMgPerH  = Unit{"mg/h", "mg/h"}
	UnitMgPerD  = Unit{"mg/d", "mg/day"}
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

// Instrument describes how an assessment instrument is coded. Panel is empty
// when the instrument is a single score Observation; Items are the item codes
// in instrument order (LOINC where LOINC has them, else local scale codes).
type Instrument struct {
	Name       string
	Panel      Code
	Score      Code
	Items      []Code
	Difficulty Code
	// SelfReport marks patient-reported instruments (performer = Patient).
	SelfReport bool
}

// scale returns a local scale code.
func scale(code, display string) Code { return Code{ScalesPath, code, display} }

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

// Instruments maps the clinic's instrument to its codes (LOINC panels, scores
// and items from loinc.org; MADRS, CADSS, MOAA/S and items LOINC lacks are
// local).
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
		Difficulty: Code{LOINC, "69722-7", "How difficult have these problems made it for you to do your work, take care of things at home, or get along with other people"},
		SelfReport: true,
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
		SelfReport: true,
	},
	"pcl5": {
		Name:       "PCL-5",
		Score:      Code{LOINC, "101698-9", "PTSD Checklist for DSM-5 (PCL-5) total score"},
		Items:      localItems("pcl5", "PCL-5", 20),
		SelfReport: true,
	},
	"cssrs": {
		Name:  "C-SSRS",
		Panel: Code{LOINC, "93373-9", "Columbia suicide severity rating scale screener - recent"},
		Score: Code{LOINC, "93374-7", "Suicide risk level [C-SSRS]"},
	},
	"madrs": {
		Name:  "MADRS",
		Score: scale("madrs-total", "MADRS total score"),
		Items: localItems("madrs", "MADRS", 10),
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

// CSSRSRisk maps the C-SSRS screener risk level to a local code.
var CSSRSRisk = map[string]Code{
	"low":      {LocalPath, "cssrs-risk-low", "Low suicide risk"},
	"moderate": {LocalPath, "cssrs-risk-moderate", "Moderate suicide risk"},
	"high":     {LocalPath, "cssrs-risk-high", "High suicide risk"},
}

// ScaleConcepts are the concepts of the ketabridge-scales CodeSystem.
func ScaleConcepts() []Concept {
	out := []Concept{
		{"madrs-total", "MADRS total score", "Montgomery-Asberg Depression Rating Scale total score (0-60)."},
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

// Session statuses (clinic) -> local session-status codes. See mapping's
// session.go for how each is represented on the Encounter.
var SessionStatus = map[string]Code{
	"completed":     {LocalPath, "session-completed", "Session completed"},
	"stopped-early": {LocalPath, "session-stopped-early", "Session stopped early"},
	"cancelled":     {LocalPath, "session-cancelled", "Session cancelled"},
	"no-show":       {LocalPath, "session-no-show", "Patient did not attend"},
	"scheduled":     {LocalPath, "session-scheduled", "Session scheduled"},
}

// EncounterStatus maps the clinic session status to Encounter.status (R4
// valueset-encounter-status). R4 has no no-show status: a no-show is cancelled
// and told apart by the session-status extension.
var EncounterStatus = map[string]string{
	"completed": "finished", "stopped-early": "finished",
	"cancelled": "cancelled", "no-show": "cancelled", "scheduled": "planned",
}

// Session types (Encounter.type).
var (
	SessionKetamine   = Code{LocalPath, "ketamine-treatment-session", "Ketamine treatment session"}
	SessionEsketamine = Code{LocalPath, "esketamine-treatment-session", "Esketamine (Spravato) treatment session with REMS monitoring"}
	REMSMonitoring    = Code{LocalPath, "rems-monitoring", "Spravato REMS patient monitoring"}
)

// REMS question codes (components of the REMS monitoring Observation).
var (
	REMSFirstTreatment   = Code{LocalPath, "rems-first-treatment", "First Spravato treatment"}
	REMSEnrolled         = Code{LocalPath, "rems-enrolled", "Patient enrolled in the Spravato REMS"}
	REMSConcomitant      = Code{LocalPath, "rems-concomitant-medication", "Concomitant medication of concern"}
	REMSMinutesToReady   = Code{LocalPath, "rems-minutes-to-ready", "Minutes from first device until ready to leave"}
	REMSTotalMonitoring  = Code{LocalPath, "rems-total-monitoring-minutes", "Total monitoring minutes"}
	REMSVitalsBefore     = Code{LocalPath, "rems-vitals-acceptable-before", "Vital signs acceptable before dosing"}
	REMSVitalsAtDischarg = Code{LocalPath, "rems-vitals-acceptable-at-discharge", "Vital signs acceptable before discharge"}
)

// AdverseEffects maps the clinic's effect to a local code and, where a SNOMED
// CT finding could be confirmed, its SNOMED coding.
var AdverseEffects = map[string][]Code{
	"dissociation":           {{LocalPath, "ae-dissociation", "Dissociation"}},
	"hypertension":           {{LocalPath, "ae-hypertension", "Transient blood pressure elevation"}},
	"nausea":                 {{LocalPath, "ae-nausea", "Nausea"}, {SNOMED, "422587007", "Nausea"}},
	"vomiting":               {{LocalPath, "ae-vomiting", "Vomiting"}, {SNOMED, "422400008", "Vomiting"}},
	"sedation":               {{LocalPath, "ae-sedation", "Sedation"}},
	"headache":               {{LocalPath, "ae-headache", "Headache"}, {SNOMED, "25064002", "Headache"}},
	"dizziness":              {{LocalPath, "ae-dizziness", "Dizziness"}, {SNOMED, "404640003", "Dizziness"}},
	"anxiety":                {{LocalPath, "ae-anxiety", "Anxiety"}, {SNOMED, "48694002", "Anxiety"}},
	"respiratory-depression": {{LocalPath, "ae-respiratory-depression", "Respiratory depression"}},
	"other":                  {{LocalPath, "ae-other", "Other adverse effect"}},
}

// AdverseActions maps the clinic's action taken to a local code.
var AdverseActions = map[string]Code{
	"none":             {LocalPath, "ae-action-none", "No action taken"},
	"observed":         {LocalPath, "ae-action-observed", "Observed"},
	"infusion-paused":  {LocalPath, "ae-action-infusion-paused", "Infusion paused"},
	"infusion-slowed":  {LocalPath, "ae-action-infusion-slowed", "Infusion slowed"},
	"infusion-stopped": {LocalPath, "ae-action-infusion-stopped", "Infusion stopped"},
	"medication-given": {LocalPath, "ae-action-medication-given", "Medication given"},
	"transferred":      {LocalPath, "ae-action-transferred", "Transferred to a higher level of care"},
}

// TrialOutcomes maps an antidepressant trial outcome to a local code.
var TrialOutcomes = map[string]Code{
	"inadequate-response": {LocalPath, "trial-inadequate-response", "Inadequate response"},
	"partial-response":    {LocalPath, "trial-partial-response", "Partial response"},
	"response":            {LocalPath, "trial-response", "Response"},
	"intolerance":         {LocalPath, "trial-intolerance", "Stopped for intolerance"},
	"ongoing":             {LocalPath, "trial-ongoing", "Trial ongoing"},
}

// DrugClasses maps an antidepressant class to a local code.
var DrugClasses = map[string]Code{
	"SSRI":         {LocalPath, "class-ssri", "Selective serotonin reuptake inhibitor"},
	"SNRI":         {LocalPath, "class-snri", "Serotonin-norepinephrine reuptake inhibitor"},
	"TCA":          {LocalPath, "class-tca", "Tricyclic antidepressant"},
	"MAOI":         {LocalPath, "class-maoi", "Monoamine oxidase inhibitor"},
	"atypical":     {LocalPath, "class-atypical", "Atypical antidepressant"},
	"augmentation": {LocalPath, "class-augmentation", "Augmentation agent"},
	"other":        {LocalPath, "class-other", "Other antidepressant"},
}

// DataClasses maps a consent data class to a local code (Consent.provision.class).
var DataClasses = map[string]Code{
	"demographics": {LocalPath, "data-demographics", "Demographics (Patient)"},
	"diagnoses":    {LocalPath, "data-diagnoses", "Diagnoses (Condition)"},
	"medications":  {LocalPath, "data-medications", "Medications (MedicationRequest, MedicationAdministration, MedicationStatement, Medication)"},
	"sessions":     {LocalPath, "data-sessions", "Treatment sessions (Encounter, AdverseEvent, CarePlan)"},
	"assessments":  {LocalPath, "data-assessments", "Assessments (Observation category survey)"},
	"vitals":       {LocalPath, "data-vitals", "Vital signs (Observation category vital-signs)"},
	"coverage":     {LocalPath, "data-coverage", "Coverage"},
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

// Qualifications maps a credential to v2-0360 (degree/license) where it has one;
// others are carried as text only.
var Qualifications = map[string]Code{
	"MD": {V2Degree, "MD", "Doctor of Medicine"},
	"DO": {V2Degree, "DO", "Doctor of Osteopathy"},
	"NP": {V2Degree, "NP", "Nurse practitioner"},
	"RN": {V2Degree, "RN", "Registered Nurse"},
	"PA": {V2Degree, "PA", "Physician Assistant"},
}

// CourseStatus maps a course status to MedicationRequest.status
// (medicationrequest-status) and CarePlan.status (request-status).
var CourseStatus = map[string]struct{ MedicationRequest, CarePlan string }{
	"active":    {"active", "active"},
	"completed": {"completed", "completed"},
	"stopped":   {"stopped", "revoked"},
	"on-hold":   {"on-hold", "on-hold"},
}

// Security labels for mental-health content: PSY (psychiatry information
// sensitivity, v3-ActCode) and confidentiality R (restricted,
// v3-Confidentiality), from the HL7 privacy and security classification.
var (
	SecurityPSY        = Code{V3ActCode, "PSY", "psychiatry information sensitivity"}
	SecurityRestricted = Code{V3Confidentiality, "R", "restricted"}
)

// LocalConcepts are the concepts of the ketabridge CodeSystem (every local
// code other than assessment scales), in a stable order.
func LocalConcepts() []Concept {
	var out []Concept
	add := func(cs ...Code) {
		for _, c := range cs {
			if c.System == LocalPath {
				out = append(out, Concept{Code: c.Code, Display: c.Display})
			}
		}
	}
	add(SessionKetamine, SessionEsketamine, REMSMonitoring)
	for _, k := range []string{"completed", "stopped-early", "cancelled", "no-show", "scheduled"} {
		add(SessionStatus[k])
	}
	add(REMSFirstTreatment, REMSEnrolled, REMSConcomitant, REMSMinutesToReady, REMSTotalMonitoring,
		REMSVitalsBefore, REMSVitalsAtDischarg)
	for _, k := range []string{"low", "moderate", "high"} {
		add(CSSRSRisk[k])
	}
	for _, k := range []string{"dissociation", "hypertension", "nausea", "vomiting", "sedation", "headache",
		"dizziness", "anxiety", "respiratory-depression", "other"} {
		add(AdverseEffects[k]...)
	}
	for _, k := range []string{"none", "observed", "infusion-paused", "infusion-slowed", "infusion-stopped",
		"medication-given", "transferred"} {
		add(AdverseActions[k])
	}
	for _, k := range []string{"inadequate-response", "partial-response", "response", "intolerance", "ongoing"} {
		add(TrialOutcomes[k])
	}
	for _, k := range []string{"SSRI", "SNRI", "TCA", "MAOI", "atypical", "augmentation", "other"} {
		add(DrugClasses[k])
	}
	for _, k := range []string{"demographics", "diagnoses", "medications", "sessions", "assessments", "vitals", "coverage"} {
		add(DataClasses[k])
	}
	return out
}
