// Package clinic is the clinic's own record model: the shape a ketamine-therapy
// clinic's systems push into KetaBridge before anything is mapped to FHIR.
//
// Every record is a JSON object with a "kind", the clinic's own "id" (unique per
// kind), and references to other records by the clinic's ids (patientId,
// protocolId, ...). Times are RFC 3339 date-times with a zone offset; dates are
// YYYY-MM-DD. The documentation with an example of every kind is
// docs/clinic-records.md; the JSON Schema is served at GET /internal/v1/schema.
package clinic

// Kind names a record kind.
type Kind string

// The record kinds.
const (
	KindPatient             Kind = "patient"
	KindPractitioner        Kind = "practitioner"
	KindOrganization        Kind = "organization"
	KindLocation            Kind = "location"
	KindProtocol            Kind = "protocol"
	KindCourse              Kind = "course"
	KindDiagnosis           Kind = "diagnosis"
	KindSession             Kind = "session"
	KindCoverage            Kind = "coverage"
	KindConsent             Kind = "consent"
	KindAntidepressantTrial Kind = "antidepressant_trial"
	KindPriorAuthResponse   Kind = "prior_auth_response"
	KindReferral            Kind = "referral"
)

// Kinds lists every kind in dependency order: a kind only references kinds
// before it, so a batch sorted in this order can be checked front to back.
var Kinds = []Kind{
	KindOrganization, KindPractitioner, KindLocation, KindPatient, KindProtocol,
	KindDiagnosis, KindCoverage, KindCourse, KindSession, KindConsent, KindAntidepressantTrial,
	KindPriorAuthResponse, KindReferral,
}

// Record is implemented by every record kind.
type Record interface {
	// RecordKind is the record's kind.
	RecordKind() Kind
	// RecordID is the clinic's own id of the record.
	RecordID() string
}

// Key identifies a record: its kind and the clinic's id.
type Key struct {
	Kind Kind
	ID   string
}

func (k Key) String() string { return string(k.Kind) + "/" + k.ID }

// Header holds the two fields every record carries.
type Header struct {
	Kind Kind   `json:"kind"`
	ID   string `json:"id"`
}

// RecordKind implements Record.
func (h Header) RecordKind() Kind { return h.Kind }

// RecordID implements Record.
func (h Header) RecordID() string { return h.ID }

// HumanName is a person's name.
type HumanName struct {
	Family string   `json:"family"`
	Given  []string `json:"given,omitempty"`
	Prefix []string `json:"prefix,omitempty"`
	Suffix []string `json:"suffix,omitempty"`
}

// Address is a postal address.
type Address struct {
	Lines      []string `json:"lines,omitempty"`
	City       string   `json:"city,omitempty"`
	State      string   `json:"state,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
	Country    string   `json:"country,omitempty"`
}

// Contact is how to reach a person or place.
type Contact struct {
	Phone   string   `json:"phone,omitempty"`
	Email   string   `json:"email,omitempty"`
	Address *Address `json:"address,omitempty"`
}

// Patient is a person treated at the clinic.
type Patient struct {
	Header
	MRN       string    `json:"mrn"`
	Name      HumanName `json:"name"`
	BirthDate string    `json:"birthDate"`
	// Sex is administrative sex: female, male, other or unknown.
	Sex     string   `json:"sex"`
	Contact *Contact `json:"contact,omitempty"`
	// OrganizationID is the managing organization (kind organization).
	OrganizationID string `json:"organizationId,omitempty"`
	// Race is the patient's self-reported race (USCDI): any of
	// american-indian-alaska-native, asian, black,
	// native-hawaiian-pacific-islander, white; or declined or unknown alone.
	Race []string `json:"race,omitempty"`
	// Ethnicity is hispanic-latino, not-hispanic-latino, declined or unknown.
	Ethnicity string `json:"ethnicity,omitempty"`
	// BirthSex is the sex assigned at birth: female, male or unknown.
	BirthSex string `json:"birthSex,omitempty"`
	// Language is the preferred language as a BCP 47 tag, e.g. en, es, zh-Hant.
	Language string `json:"language,omitempty"`
}

// Practitioner is a clinician: prescriber, infusion nurse, monitoring clinician.
type Practitioner struct {
	Header
	NPI  string    `json:"npi,omitempty"`
	Name HumanName `json:"name"`
	// Qualification is the credential, e.g. MD, DO, NP, PMHNP, RN, CRNA.
	Qualification string `json:"qualification,omitempty"`
	// Specialty is the NUCC Health Care Provider Taxonomy code of the
	// practitioner's specialty, e.g. 2084P0800X (Psychiatry).
	Specialty string   `json:"specialty,omitempty"`
	Contact   *Contact `json:"contact,omitempty"`
}

// Organization is the clinic itself, a partner clinic or a payer.
type Organization struct {
	Header
	Name string `json:"name"`
	// Type is clinic, payer or partner.
	Type    string   `json:"type"`
	NPI     string   `json:"npi,omitempty"`
	Contact *Contact `json:"contact,omitempty"`
	// NAIC is a payer's 5-digit NAIC company code.
	NAIC string `json:"naic,omitempty"`
	// PayerID is the payer id the clinic bills the payer under (electronic
	// claims payer id), for type payer.
	PayerID string `json:"payerId,omitempty"`
}

// Location is a treatment site (infusion suite, Spravato monitoring room).
type Location struct {
	Header
	Name           string   `json:"name"`
	OrganizationID string   `json:"organizationId"`
	Contact        *Contact `json:"contact,omitempty"`
	// REMSCertified marks a Spravato REMS-certified healthcare setting.
	REMSCertified bool   `json:"remsCertified,omitempty"`
	REMSSettingID string `json:"remsSettingId,omitempty"`
}

// DoseRule is how a protocol sizes each dose.
type DoseRule struct {
	// Rule is fixed_mg or mg_per_kg.
	Rule string `json:"rule"`
	// Mg is the fixed dose (rule fixed_mg), e.g. 56 or 84 for esketamine.
	Mg *float64 `json:"mg,omitempty"`
	// MgPerKg is the weight-based dose (rule mg_per_kg), e.g. 0.5.
	MgPerKg *float64 `json:"mgPerKg,omitempty"`
	// MinMgPerKg/MaxMgPerKg (mg_per_kg) or MinMg/MaxMg (fixed_mg) bound
	// titration; doses outside [min/2, max*1.5] are rejected as implausible.
	MinMgPerKg *float64 `json:"minMgPerKg,omitempty"`
	MaxMgPerKg *float64 `json:"maxMgPerKg,omitempty"`
	MinMg      *float64 `json:"minMg,omitempty"`
	MaxMg      *float64 `json:"maxMg,omitempty"`
}

// Schedule is a phase of a protocol: how many sessions, how often.
type Schedule struct {
	Sessions int `json:"sessions"`
	// Frequency is sessions per Period days, e.g. 2 per 7.
	Frequency  int `json:"frequency"`
	PeriodDays int `json:"periodDays"`
}

// Monitoring is what a protocol requires during and after each dose.
type Monitoring struct {
	VitalsIntervalMinutes int  `json:"vitalsIntervalMinutes,omitempty"`
	ObservationMinutes    int  `json:"observationMinutes,omitempty"`
	BPBeforeDose          bool `json:"bpBeforeDose,omitempty"`
	BPAfterMinutes        int  `json:"bpAfterMinutes,omitempty"`
	PulseOximetry         bool `json:"pulseOximetry,omitempty"`
	REMS                  bool `json:"rems,omitempty"`
	// HoldAboveSystolic/HoldAboveDiastolic: delay the dose when BP is above.
	HoldAboveSystolic  int `json:"holdAboveSystolic,omitempty"`
	HoldAboveDiastolic int `json:"holdAboveDiastolic,omitempty"`
}

// Product is the drug product a protocol uses, when the clinic records it.
type Product struct {
	// Form is injection-solution, nasal-spray or lozenge.
	Form string `json:"form"`
	// StrengthMg is the drug per unit of the form: per mL
	// (injection-solution), per device (nasal-spray: 28) or per lozenge.
	StrengthMg float64 `json:"strengthMg"`
	// Compounded marks a pharmacy-compounded product (lozenges, troches).
	Compounded bool `json:"compounded,omitempty"`
	// NDC is the product's National Drug Code, when it has one.
	NDC string `json:"ndc,omitempty"`
}

// Protocol is the clinic's treatment plan template.
type Protocol struct {
	Header
	Name string `json:"name"`
	// Drug is ketamine or esketamine.
	Drug string `json:"drug"`
	// Route is iv, im, intranasal, oral, sublingual or subcutaneous.
	Route           string     `json:"route"`
	Dose            DoseRule   `json:"dose"`
	Product         *Product   `json:"product,omitempty"`
	InfusionMinutes int        `json:"infusionMinutes,omitempty"`
	Induction       Schedule   `json:"induction"`
	Maintenance     *Schedule  `json:"maintenance,omitempty"`
	Monitoring      Monitoring `json:"monitoring"`
	// Indications are ICD-10-CM codes, e.g. F33.2.
	Indications    []string `json:"indications"`
	OrganizationID string   `json:"organizationId,omitempty"`
	Status         string   `json:"status,omitempty"` // active (default), retired, draft
}

// Course is a patient on a protocol.
type Course struct {
	Header
	PatientID    string `json:"patientId"`
	ProtocolID   string `json:"protocolId"`
	PrescriberID string `json:"prescriberId"`
	DiagnosisID  string `json:"diagnosisId"`
	Start        string `json:"start"`
	End          string `json:"end,omitempty"`
	// Status is active, completed, stopped or on-hold.
	Status string `json:"status"`
	// Phase is induction or maintenance.
	Phase      string `json:"phase,omitempty"`
	CoverageID string `json:"coverageId,omitempty"`
	// AuthoredOn is when the course was ordered (date-time); defaults to Start.
	AuthoredOn string `json:"authoredOn,omitempty"`
}

// Diagnosis is an ICD-10-CM diagnosis of a patient.
type Diagnosis struct {
	Header
	PatientID string `json:"patientId"`
	ICD10     string `json:"icd10"`
	Text      string `json:"text,omitempty"`
	// ClinicalStatus is active, recurrence, relapse, inactive, remission or resolved.
	ClinicalStatus string `json:"clinicalStatus"`
	Onset          string `json:"onset,omitempty"`
	RecordedDate   string `json:"recordedDate,omitempty"`
	RecorderID     string `json:"recorderId,omitempty"`
}

// Session statuses.
const (
	SessionCompleted    = "completed"
	SessionCancelled    = "cancelled"
	SessionNoShow       = "no-show"
	SessionStoppedEarly = "stopped-early"
	SessionScheduled    = "scheduled"
)

// Session is one treatment visit: the dose(s), monitoring and scales.
type Session struct {
	Header
	PatientID      string `json:"patientId"`
	CourseID       string `json:"courseId"`
	LocationID     string `json:"locationId"`
	ClinicianID    string `json:"clinicianId"`
	Status         string `json:"status"`
	ScheduledStart string `json:"scheduledStart"`
	ActualStart    string `json:"actualStart,omitempty"`
	ActualEnd      string `json:"actualEnd,omitempty"`
	DischargeTime  string `json:"dischargeTime,omitempty"`
	// WeightKg is the body weight used for dosing, measured at WeightTime.
	WeightKg   *float64 `json:"weightKg,omitempty"`
	WeightTime string   `json:"weightTime,omitempty"`
	// SessionNumber is the ordinal within the course (1-based).
	SessionNumber   int              `json:"sessionNumber,omitempty"`
	Administrations []Administration `json:"administrations,omitempty"`
	Vitals          []Vitals         `json:"vitals,omitempty"`
	Assessments     []Assessment     `json:"assessments,omitempty"`
	AdverseEffects  []AdverseEffect  `json:"adverseEffects,omitempty"`
	// StatusReason explains cancelled, no-show and stopped-early sessions.
	StatusReason string `json:"statusReason,omitempty"`
	// REMS holds the Spravato REMS monitoring answers (esketamine sessions).
	REMS *REMSMonitoring `json:"rems,omitempty"`
}

// Administration is one dose given during a session.
type Administration struct {
	// Drug is ketamine or esketamine.
	Drug    string   `json:"drug"`
	DoseMg  float64  `json:"doseMg"`
	MgPerKg *float64 `json:"mgPerKg,omitempty"`
	// Route is iv, im, intranasal, oral, sublingual or subcutaneous.
	Route string `json:"route"`
	Start string `json:"start"`
	End   string `json:"end,omitempty"`
	// RateMgPerHour is the infusion rate (IV).
	RateMgPerHour *float64 `json:"rateMgPerHour,omitempty"`
	LotNumber     string   `json:"lotNumber,omitempty"`
	// NDC is the product's National Drug Code, e.g. 50458-028-02.
	NDC string `json:"ndc,omitempty"`
	// Devices is the number of 28 mg esketamine devices used.
	Devices     int    `json:"devices,omitempty"`
	PerformerID string `json:"performerId,omitempty"`
}

// Vitals is one set of vital signs taken at Time. At least one value is set.
type Vitals struct {
	Time      string   `json:"time"`
	Systolic  *int     `json:"systolic,omitempty"`
	Diastolic *int     `json:"diastolic,omitempty"`
	HeartRate *int     `json:"heartRate,omitempty"`
	RespRate  *int     `json:"respRate,omitempty"`
	SpO2      *int     `json:"spo2,omitempty"`
	TempC     *float64 `json:"tempC,omitempty"`
}

// Assessment instruments.
const (
	InstrumentPHQ9  = "phq9"
	InstrumentGAD7  = "gad7"
	InstrumentPCL5  = "pcl5"
	InstrumentCSSRS = "cssrs"
	InstrumentCADSS = "cadss"
	InstrumentMOAAS = "moaas"
	InstrumentMADRS = "madrs"
)

// Assessment is one scored scale.
type Assessment struct {
	// Instrument is phq9, gad7, pcl5, cssrs, cadss, moaas or madrs.
	Instrument string `json:"instrument"`
	Time       string `json:"time"`
	// Items are the item scores in instrument order (PHQ-9: 9 items 0-3;
	// GAD-7: 7 items 0-3). Optional; when given the total must equal their sum.
	Items []int `json:"items,omitempty"`
	Total *int  `json:"total,omitempty"`
	// Difficulty is the PHQ-9 functional difficulty answer 0-3.
	Difficulty *int `json:"difficulty,omitempty"`
	// RiskLevel is the C-SSRS screener risk: low, moderate or high.
	RiskLevel string `json:"riskLevel,omitempty"`
	// Timing is baseline, pre-dose, post-dose or follow-up.
	Timing string `json:"timing,omitempty"`
}

// AdverseEffect is an adverse effect observed during a session.
type AdverseEffect struct {
	// Effect is dissociation, hypertension, nausea, vomiting, sedation,
	// headache, dizziness, anxiety, respiratory-depression or other.
	Effect string `json:"effect"`
	Text   string `json:"text,omitempty"`
	// Severity is mild, moderate or severe.
	Severity string `json:"severity"`
	// Action is none, observed, infusion-paused, infusion-slowed,
	// infusion-stopped, medication-given or transferred.
	Action   string `json:"action"`
	Onset    string `json:"onset"`
	Resolved string `json:"resolved,omitempty"`
	// Causality is the clinician's assessment of whether the session's drug
	// caused the effect: certain, probable, possible, unlikely or unassessable.
	Causality string `json:"causality,omitempty"`
}

// REMSMonitoring holds the Spravato REMS Patient Monitoring Form answers.
type REMSMonitoring struct {
	FirstTreatment          bool     `json:"firstTreatment,omitempty"`
	Enrolled                bool     `json:"enrolled"`
	ConcomitantMedications  []string `json:"concomitantMedications,omitempty"`
	MinutesToReady          int      `json:"minutesToReady,omitempty"`
	TotalMonitoringMinutes  int      `json:"totalMonitoringMinutes,omitempty"`
	VitalsAcceptableBefore  bool     `json:"vitalsAcceptableBefore,omitempty"`
	VitalsAcceptableAtLeave bool     `json:"vitalsAcceptableAtLeave,omitempty"`
}

// Coverage is a patient's insurance.
type Coverage struct {
	Header
	PatientID string `json:"patientId"`
	// PayerID is an organization of type payer.
	PayerID  string `json:"payerId"`
	MemberID string `json:"memberId"`
	Plan     string `json:"plan,omitempty"`
	Group    string `json:"group,omitempty"`
	// Status is active, cancelled or draft.
	Status string `json:"status"`
	// PayerType is the kind of plan (Source of Payment Typology): medicare,
	// medicare-hmo, medicare-ppo, medicaid, medicaid-hmo, commercial,
	// commercial-hmo, commercial-ppo, commercial-pos, commercial-epo, bcbs,
	// tricare, self-pay or other.
	PayerType string `json:"payerType,omitempty"`
	// Relationship of the patient to the subscriber: self, spouse, child, other.
	Relationship string `json:"relationship,omitempty"`
	Start        string `json:"start,omitempty"`
	End          string `json:"end,omitempty"`
}

// Consent says who may receive which of a patient's records.
type Consent struct {
	Header
	PatientID string `json:"patientId"`
	// Status is active, inactive, rejected or proposed.
	Status string `json:"status"`
	// Decision is permit or deny.
	Decision string `json:"decision"`
	DateTime string `json:"dateTime"`
	// RecipientIDs are organizations (partner clinics, payers) the consent names.
	RecipientIDs []string `json:"recipientIds"`
	// Purposes are treatment, payment or operations.
	Purposes []string `json:"purposes"`
	// Data classes covered: demographics, diagnoses, medications, sessions,
	// assessments, vitals, coverage. Empty means all.
	DataClasses []string `json:"dataClasses,omitempty"`
	Start       string   `json:"start,omitempty"`
	End         string   `json:"end,omitempty"`
}

// AntidepressantTrial is one past or current antidepressant trial: the
// treatment-resistance evidence insurers ask for.
type AntidepressantTrial struct {
	Header
	PatientID string `json:"patientId"`
	// Drug is the generic name, e.g. sertraline.
	Drug string `json:"drug"`
	// RxNorm is the ingredient's RxNorm code when known.
	RxNorm string `json:"rxnorm,omitempty"`
	// Class is SSRI, SNRI, TCA, MAOI, atypical, augmentation or other.
	Class     string   `json:"class"`
	DoseMgDay *float64 `json:"doseMgPerDay,omitempty"`
	Start     string   `json:"start"`
	End       string   `json:"end,omitempty"`
	// Outcome is inadequate-response, partial-response, response, intolerance or ongoing.
	Outcome string `json:"outcome"`
	// AdequateTrial: at a therapeutic dose for at least 6 weeks.
	AdequateTrial bool `json:"adequateTrial,omitempty"`
	// ImprovementPercent on a validated scale, when measured.
	ImprovementPercent *float64 `json:"improvementPercent,omitempty"`
	// DiagnosisID is the diagnosis the trial treated (kind diagnosis), when
	// the clinic records it.
	DiagnosisID string `json:"diagnosisId,omitempty"`
}

// PriorAuthResponse is a payer's answer to a prior-authorization request for
// a course, as the clinic received it (portal, fax, phone or the payer's
// ClaimResponse).
type PriorAuthResponse struct {
	Header
	PatientID string `json:"patientId"`
	CourseID  string `json:"courseId"`
	// PayerID is the payer (kind organization, type payer) that answered.
	PayerID string `json:"payerId"`
	// Outcome is approved, partial (fewer sessions or a shorter period than
	// requested), denied or pended.
	Outcome string `json:"outcome"`
	// Created is when the payer answered.
	Created string `json:"created"`
	// PreAuthRef is the payer's authorization number (approved, partial).
	PreAuthRef string `json:"preAuthRef,omitempty"`
	// Start and End bound the approval (approved, partial).
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
	// RequestedSessions and ApprovedSessions count sessions (units).
	RequestedSessions *int `json:"requestedSessions,omitempty"`
	ApprovedSessions  *int `json:"approvedSessions,omitempty"`
}

// Referral is a referral the clinic sends to a partner clinic (an outbound
// referral: a summary after induction, a hand-off for maintenance, a
// referral for psychotherapy). It maps to a ServiceRequest and a Task whose
// owner is the partner, which the partner then moves (docs/referrals.md).
type Referral struct {
	Header
	PatientID string `json:"patientId"`
	// PartnerID is the organization (of type partner) the patient is
	// referred to.
	PartnerID string `json:"partnerId"`
	// RequesterID is the practitioner who refers, when one does.
	RequesterID string `json:"requesterId,omitempty"`
	// Reason is the ICD-10-CM code of the reason for the referral.
	Reason string `json:"reason"`
	// Service is the requested service, in words.
	Service string `json:"service"`
	Note    string `json:"note,omitempty"`
	// AuthoredOn is when the referral was made.
	AuthoredOn string `json:"authoredOn"`
	// The patient's records the referral names, its package for the
	// partner (docs/referrals.md): diagnoses, the ketamine course, the
	// antidepressant trials (ServiceRequest.supportingInfo) and the
	// coverage (ServiceRequest.insurance). Each must be the patient's.
	DiagnosisIDs []string `json:"diagnosisIds,omitempty"`
	CourseID     string   `json:"courseId,omitempty"`
	TrialIDs     []string `json:"trialIds,omitempty"`
	CoverageID   string   `json:"coverageId,omitempty"`
}
