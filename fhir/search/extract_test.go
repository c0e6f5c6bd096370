package search

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/store"
)

func ptr[T any](v T) *T { return &v }

func ms(t *testing.T, rfc3339 string) int64 {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, rfc3339)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMilli()
}

func tokRow(p, sys, code string) store.IndexRow {
	return store.IndexRow{Param: p, Kind: store.KindToken, System: sys, Code: code}
}
func strRow(p, v string) store.IndexRow {
	return store.IndexRow{Param: p, Kind: store.KindString, Value: v}
}
func refRow(p, v string) store.IndexRow {
	return store.IndexRow{Param: p, Kind: store.KindReference, Value: v}
}
func dateRow(p string, lo, hi int64) store.IndexRow {
	return store.IndexRow{Param: p, Kind: store.KindDate, Lo: lo, Hi: hi}
}

func ref4(s string) *r4.Reference { return &r4.Reference{Reference: &s} }

func cc(system, code string) r4.CodeableConcept {
	return r4.CodeableConcept{Coding: []r4.Coding{{System: &system, Code: &code}}}
}

const (
	sysActCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

	snomed = "http://snomed.info/sct"
	loinc  = "http://loinc.org"
	rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
	mrn    = "urn:oid:1.2.3.4"
)

// extractCase is one literal resource and the exact rows it must index.
type extractCase struct {
	name string
	typ  string
	res  any
	want func(t *testing.T) []store.IndexRow
}

func extractCases() []extractCase {
	return append(baseExtractCases(), referralExtractCases()...)
}

func baseExtractCases() []extractCase {
	day := func(t *testing.T, d string) (int64, int64) {
		lo := ms(t, d+"T00:00:00Z")
		return lo, lo + 24*3600*1000 - 1
	}
	sec := func(t *testing.T, s string) (int64, int64) {
		lo := ms(t, s)
		return lo, lo + 999
	}
	return []extractCase{
		{
			name: "Patient", typ: "Patient",
			res: &r4.Patient{
				Id:         ptr("p1"),
				Identifier: []r4.Identifier{{System: ptr(mrn), Value: ptr("MRN-1")}, {Value: ptr("no-system")}},
				Name: []r4.HumanName{{
					Text: ptr("Dr. José Núñez"), Family: ptr("Núñez"), Given: []string{"José", "María"},
					Prefix: []string{"Dr."},
				}},
				BirthDate:            ptr("1980-02-29"),
				Gender:               ptr(r4.AdministrativeGenderFemale),
				Telecom:              []r4.ContactPoint{{System: ptr(r4.ContactPointSystemPhone), Value: ptr("555-0100")}},
				ManagingOrganization: ref4("Organization/clinic"),
			},
			want: func(t *testing.T) []store.IndexRow {
				lo, hi := day(t, "1980-02-29")
				return []store.IndexRow{
					tokRow("identifier", mrn, "MRN-1"), tokRow("identifier", "", "no-system"),
					strRow("name", "dr. jose nunez"), strRow("name", "nunez"), strRow("name", "jose"),
					strRow("name", "maria"), strRow("name", "dr."),
					strRow("family", "nunez"), strRow("given", "jose"), strRow("given", "maria"),
					dateRow("birthdate", lo, hi),
					tokRow("gender", sysGender, "female"),
					tokRow("telecom", "", "555-0100"),
					refRow("organization", "Organization/clinic"),
				}
			},
		},
		{
			name: "Practitioner", typ: "Practitioner",
			res: r4.Practitioner{ // by value
				Identifier: []r4.Identifier{{System: ptr("http://hl7.org/fhir/sid/us-npi"), Value: ptr("1234567893")}},
				Name:       []r4.HumanName{{Family: ptr("Smith"), Given: []string{"Ann"}, Suffix: []string{"MD"}}},
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("identifier", "http://hl7.org/fhir/sid/us-npi", "1234567893"),
					strRow("name", "smith"), strRow("name", "ann"), strRow("name", "md"),
				}
			},
		},
		{
			name: "Organization", typ: "Organization",
			res: &r4.Organization{
				Identifier: []r4.Identifier{{System: ptr("http://hl7.org/fhir/sid/us-npi"), Value: ptr("1111111112")}},
				Name:       ptr("Sunrise  Ketamine Clinic"),
				Alias:      []string{"SKC"},
				Type:       []r4.CodeableConcept{cc("http://terminology.hl7.org/CodeSystem/organization-type", "prov")},
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("identifier", "http://hl7.org/fhir/sid/us-npi", "1111111112"),
					strRow("name", "sunrise  ketamine clinic"), strRow("name", "skc"),
					tokRow("type", "http://terminology.hl7.org/CodeSystem/organization-type", "prov"),
				}
			},
		},
		{
			name: "Location", typ: "Location",
			res: &r4.Location{
				Name: ptr("Infusion Room 2"), Alias: []string{"IR2"},
				ManagingOrganization: ref4("Organization/clinic"),
				Address:              &r4.Address{City: ptr("Zürich")},
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					strRow("name", "infusion room 2"), strRow("name", "ir2"),
					refRow("organization", "Organization/clinic"),
					strRow("address-city", "zurich"),
				}
			},
		},
		{
			name: "Observation", typ: "Observation",
			res: sampleObservation(),
			want: func(t *testing.T) []store.IndexRow {
				lo, hi := sec(t, "2024-03-01T10:15:00-05:00")
				return []store.IndexRow{
					refRow("patient", "Patient/p1"), refRow("subject", "Patient/p1"),
					tokRow("code", loinc, "44249-1"),
					tokRow("category", "http://terminology.hl7.org/CodeSystem/observation-category", "survey"),
					dateRow("date", lo, hi),
					tokRow("status", sysObsStatus, "final"),
					refRow("encounter", "Encounter/e1"),
					refRow("performer", "Practitioner/dr1"),
					{Param: "value-quantity", Kind: store.KindQuantity, System: "http://unitsofmeasure.org", Code: "{score}", Num: 14},
				}
			},
		},
		{
			name: "Observation with security labels", typ: "Observation",
			res: &r4.Observation{
				Meta: &r4.Meta{Security: []r4.Coding{
					{System: ptr(sysActCode), Code: ptr("PSY")},
					{System: ptr(sysConfidentiality), Code: ptr("R")},
					{System: ptr(sysConfidentiality), Code: ptr("R")}, // repeated: one row
					{Code: ptr("local")},                              // no system
					{System: ptr(sysConfidentiality)},                 // no code: no row
				}},
				Status:  r4.ObservationStatusFinal,
				Code:    cc(loinc, "44260-8"),
				Subject: ref4("Patient/p2"),
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					refRow("patient", "Patient/p2"), refRow("subject", "Patient/p2"),
					tokRow("code", loinc, "44260-8"),
					tokRow("status", sysObsStatus, "final"),
					tokRow("_security", sysActCode, "PSY"),
					tokRow("_security", sysConfidentiality, "R"),
					tokRow("_security", "", "local"),
				}
			},
		},
		{
			name: "Encounter", typ: "Encounter",
			res: &r4.Encounter{
				Identifier: []r4.Identifier{{System: ptr(mrn), Value: ptr("V-9")}},
				Status:     r4.EncounterStatusFinished,
				Class:      r4.Coding{System: ptr("http://terminology.hl7.org/CodeSystem/v3-ActCode"), Code: ptr("AMB")},
				Type:       []r4.CodeableConcept{cc(snomed, "702654006")},
				Subject:    ref4("Patient/p1"),
				BasedOn:    []r4.Reference{*ref4("ServiceRequest/sr1")},
				Participant: []r4.EncounterParticipant{
					{Individual: ref4("Practitioner/dr1")},
					{Individual: ref4("RelatedPerson/rp1")}, // not a Practitioner: not indexed
				},
				Period:   &r4.Period{Start: ptr("2024-03-01T09:00:00Z"), End: ptr("2024-03-01T11:30:00Z")},
				Location: []r4.EncounterLocation{{Location: *ref4("Location/room2/_history/3")}},
			},
			want: func(t *testing.T) []store.IndexRow {
				return []store.IndexRow{
					refRow("patient", "Patient/p1"), refRow("subject", "Patient/p1"),
					dateRow("date", ms(t, "2024-03-01T09:00:00Z"), ms(t, "2024-03-01T11:30:00Z")+999),
					tokRow("status", sysEncStatus, "finished"),
					tokRow("class", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
					tokRow("type", snomed, "702654006"),
					refRow("location", "Location/room2"),
					refRow("practitioner", "Practitioner/dr1"),
					refRow("based-on", "ServiceRequest/sr1"),
					tokRow("identifier", mrn, "V-9"),
				}
			},
		},
		{
			name: "Condition", typ: "Condition",
			res: &r4.Condition{
				Meta: &r4.Meta{Security: []r4.Coding{
					{System: ptr(sysActCode), Code: ptr("PSY"), Display: ptr("psychiatry disorder information sensitivity")},
				}},
				ClinicalStatus: ptr(cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active")),
				Category:       []r4.CodeableConcept{cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")},
				Code:           ptr(cc("http://hl7.org/fhir/sid/icd-10-cm", "F33.2")),
				Subject:        *ref4("Patient/p1"),
				Encounter:      ref4("Encounter/e1"),
				OnsetDateTime:  ptr("2019-06"),
				RecordedDate:   ptr("2024-01-15"),
			},
			want: func(t *testing.T) []store.IndexRow {
				rlo, rhi := day(t, "2024-01-15")
				return []store.IndexRow{
					refRow("patient", "Patient/p1"), refRow("subject", "Patient/p1"),
					tokRow("code", "http://hl7.org/fhir/sid/icd-10-cm", "F33.2"),
					tokRow("category", "http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item"),
					tokRow("clinical-status", "http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
					dateRow("onset-date", ms(t, "2019-06-01T00:00:00Z"), ms(t, "2019-07-01T00:00:00Z")-1),
					dateRow("recorded-date", rlo, rhi),
					refRow("encounter", "Encounter/e1"),
					tokRow("_security", sysActCode, "PSY"),
				}
			},
		},
		{
			name: "MedicationAdministration", typ: "MedicationAdministration",
			res: &r4.MedicationAdministration{
				Status:                    "completed",
				MedicationCodeableConcept: cc(rxnorm, "6130"),
				Subject:                   *ref4("Patient/p1"),
				Context:                   ref4("Encounter/e1"),
				EffectivePeriod:           r4.Period{Start: ptr("2024-03-01T09:05:00Z"), End: ptr("2024-03-01T09:45:00Z")},
				Request:                   ref4("MedicationRequest/mr1"),
				Performer:                 []r4.MedicationAdministrationPerformer{{Actor: *ref4("Practitioner/dr1")}},
			},
			want: func(t *testing.T) []store.IndexRow {
				return []store.IndexRow{
					refRow("patient", "Patient/p1"), refRow("subject", "Patient/p1"),
					tokRow("code", rxnorm, "6130"),
					refRow("context", "Encounter/e1"),
					dateRow("effective-time", ms(t, "2024-03-01T09:05:00Z"), ms(t, "2024-03-01T09:45:00Z")+999),
					tokRow("status", sysMedAdmStatus, "completed"),
					refRow("request", "MedicationRequest/mr1"),
					refRow("performer", "Practitioner/dr1"),
				}
			},
		},
		{
			name: "MedicationAdministration with medication reference", typ: "MedicationAdministration",
			res: &r4.MedicationAdministration{
				Status:              "in-progress",
				MedicationReference: *ref4("Medication/ket"),
				Subject:             *ref4("Group/g1"), // not a Patient: no patient row
				EffectiveDateTime:   "2024-03-01T09:05:00Z",
			},
			want: func(t *testing.T) []store.IndexRow {
				lo, hi := sec(t, "2024-03-01T09:05:00Z")
				return []store.IndexRow{
					refRow("subject", "Group/g1"),
					refRow("medication", "Medication/ket"),
					dateRow("effective-time", lo, hi),
					tokRow("status", sysMedAdmStatus, "in-progress"),
				}
			},
		},
		{
			name: "MedicationRequest", typ: "MedicationRequest",
			res: &r4.MedicationRequest{
				Status: "active", Intent: "order",
				MedicationCodeableConcept: cc(rxnorm, "6130"),
				MedicationReference:       *ref4("Medication/ket"),
				Subject:                   *ref4("Patient/p1"),
				Encounter:                 ref4("Encounter/e1"),
				AuthoredOn:                ptr("2024-02-20T08:00:00.5+01:00"),
				Requester:                 ref4("Practitioner/dr1"),
			},
			want: func(t *testing.T) []store.IndexRow {
				lo := ms(t, "2024-02-20T08:00:00.5+01:00")
				return []store.IndexRow{
					refRow("patient", "Patient/p1"), refRow("subject", "Patient/p1"),
					tokRow("status", sysMedReqStatus, "active"),
					tokRow("intent", sysMedReqIntent, "order"),
					dateRow("authoredon", lo, lo+99),
					refRow("requester", "Practitioner/dr1"),
					tokRow("code", rxnorm, "6130"),
					refRow("medication", "Medication/ket"),
					refRow("encounter", "Encounter/e1"),
				}
			},
		},
		{
			name: "MedicationStatement", typ: "MedicationStatement",
			res: &r4.MedicationStatement{
				Status:                    "active",
				MedicationCodeableConcept: cc(rxnorm, "36437"),
				MedicationReference:       *ref4("Medication/ssri"),
				Subject:                   *ref4("Patient/p1"),
				EffectivePeriod:           &r4.Period{Start: ptr("2023")},
			},
			want: func(t *testing.T) []store.IndexRow {
				return []store.IndexRow{
					refRow("patient", "Patient/p1"), refRow("subject", "Patient/p1"),
					tokRow("status", sysMedStmtStatus, "active"),
					dateRow("effective", ms(t, "2023-01-01T00:00:00Z"), openHi),
					tokRow("code", rxnorm, "36437"),
					refRow("medication", "Medication/ssri"),
				}
			},
		},
		{
			name: "ClaimResponse", typ: "ClaimResponse",
			res: &r4.ClaimResponse{
				Identifier: []r4.Identifier{{System: ptr("https://clinic.example/sid/par"), Value: ptr("par-1")}},
				Status:     r4.FinancialResourceStatusCodesActive,
				Use:        r4.UsePreauthorization,
				Patient:    *ref4("Patient/p1"),
				Created:    "2025-01-03T14:20:00Z",
				Insurer:    *ref4("Organization/payer"),
				Outcome:    r4.ClaimProcessingCodesPartial,
			},
			want: func(t *testing.T) []store.IndexRow {
				c := ms(t, "2025-01-03T14:20:00Z")
				return []store.IndexRow{
					refRow("patient", "Patient/p1"),
					tokRow("identifier", "https://clinic.example/sid/par", "par-1"),
					tokRow("status", sysFMStatus, "active"),
					tokRow("outcome", "http://hl7.org/fhir/remittance-outcome", "partial"),
					tokRow("use", "http://hl7.org/fhir/claim-use", "preauthorization"),
					dateRow("created", c, c+999),
					refRow("insurer", "Organization/payer"),
				}
			},
		},
		{
			name: "CarePlan", typ: "CarePlan",
			res: &r4.CarePlan{
				InstantiatesCanonical: []string{"https://clinic.example/fhir/PlanDefinition/ketamine-iv|1.0"},
				Status:                r4.RequestStatusActive,
				Intent:                r4.CarePlanIntentPlan,
				Category:              []r4.CodeableConcept{cc("http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan")},
				Subject:               *ref4("Patient/p1"),
				Period:                &r4.Period{End: ptr("2024-06-30")},
			},
			want: func(t *testing.T) []store.IndexRow {
				_, hi := day(t, "2024-06-30")
				return []store.IndexRow{
					refRow("patient", "Patient/p1"), refRow("subject", "Patient/p1"),
					tokRow("status", sysRequestStatus, "active"),
					tokRow("category", "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan"),
					dateRow("date", openLo, hi),
					tokRow("intent", sysRequestIntent, "plan"),
					refRow("instantiates-canonical", "https://clinic.example/fhir/PlanDefinition/ketamine-iv"),
				}
			},
		},
		{
			name: "PlanDefinition", typ: "PlanDefinition",
			res: &r4.PlanDefinition{
				Url: ptr("https://clinic.example/fhir/PlanDefinition/ketamine-iv"), Name: ptr("KetamineIV"),
				Title: ptr("IV Ketamine Induction"), Status: r4.PublicationStatusActive,
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("url", "", "https://clinic.example/fhir/PlanDefinition/ketamine-iv"),
					strRow("name", "ketamineiv"),
					tokRow("status", sysPublication, "active"),
					strRow("title", "iv ketamine induction"),
				}
			},
		},
		{
			name: "AdverseEvent", typ: "AdverseEvent",
			res: &r4.AdverseEvent{
				Actuality:          r4.AdverseEventActualityActual,
				Category:           []r4.CodeableConcept{cc("http://terminology.hl7.org/CodeSystem/adverse-event-category", "medication-mishap")},
				Event:              ptr(cc(snomed, "271795006")),
				Subject:            *ref4("Patient/p1"),
				Date:               ptr("2024-03-01T09:30:00Z"),
				ResultingCondition: []r4.Reference{*ref4("Condition/c9")},
				Location:           ref4("Location/room2"),
				Seriousness:        ptr(cc("http://terminology.hl7.org/CodeSystem/adverse-event-seriousness", "non-serious")),
				Severity:           ptr(cc("http://terminology.hl7.org/CodeSystem/adverse-event-severity", "mild")),
				Recorder:           ref4("Practitioner/dr1"),
				SuspectEntity:      []r4.AdverseEventSuspectEntity{{Instance: *ref4("MedicationAdministration/ma1")}},
				Study:              []r4.Reference{*ref4("ResearchStudy/rs1")},
			},
			want: func(t *testing.T) []store.IndexRow {
				lo, hi := sec(t, "2024-03-01T09:30:00Z")
				return []store.IndexRow{
					tokRow("actuality", sysAEActuality, "actual"),
					tokRow("category", "http://terminology.hl7.org/CodeSystem/adverse-event-category", "medication-mishap"),
					dateRow("date", lo, hi),
					tokRow("event", snomed, "271795006"),
					refRow("location", "Location/room2"),
					refRow("recorder", "Practitioner/dr1"),
					refRow("resultingcondition", "Condition/c9"),
					tokRow("seriousness", "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness", "non-serious"),
					tokRow("severity", "http://terminology.hl7.org/CodeSystem/adverse-event-severity", "mild"),
					refRow("study", "ResearchStudy/rs1"),
					refRow("subject", "Patient/p1"),
					refRow("substance", "MedicationAdministration/ma1"),
				}
			},
		},
		{
			name: "Coverage", typ: "Coverage",
			res: &r4.Coverage{
				Identifier:  []r4.Identifier{{System: ptr("https://payer.example/member"), Value: ptr("M-77")}},
				Status:      r4.FinancialResourceStatusCodesActive,
				Type:        ptr(cc("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIP")),
				Subscriber:  ref4("RelatedPerson/rp1"),
				Beneficiary: *ref4("Patient/p1"),
				Payor:       []r4.Reference{*ref4("Organization/payer")},
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					refRow("patient", "Patient/p1"), refRow("beneficiary", "Patient/p1"),
					refRow("payor", "Organization/payer"),
					tokRow("status", sysFMStatus, "active"),
					tokRow("identifier", "https://payer.example/member", "M-77"),
					refRow("subscriber", "RelatedPerson/rp1"),
					tokRow("type", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIP"),
				}
			},
		},
		{
			name: "Consent", typ: "Consent",
			res: &r4.Consent{
				Status:   r4.ConsentStateActive,
				Scope:    cc("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"),
				Category: []r4.CodeableConcept{cc(loinc, "59284-0")},
				Patient:  ref4("Patient/p1"),
				DateTime: ptr("2024-01-10T12:00:00+00:00"),
				Provision: &r4.ConsentProvision{
					Actor:   []r4.ConsentProvisionActor{{Reference: *ref4("Organization/partner")}},
					Purpose: []r4.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/v3-ActReason"), Code: ptr("TREAT")}},
				},
			},
			want: func(t *testing.T) []store.IndexRow {
				lo, hi := sec(t, "2024-01-10T12:00:00Z")
				return []store.IndexRow{
					refRow("patient", "Patient/p1"),
					tokRow("status", sysConsentState, "active"),
					dateRow("date", lo, hi),
					refRow("actor", "Organization/partner"),
					tokRow("purpose", "http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT"),
					tokRow("scope", "http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"),
					tokRow("category", loinc, "59284-0"),
				}
			},
		},
		{
			name: "Provenance", typ: "Provenance",
			res: &r4.Provenance{
				Target:   []r4.Reference{*ref4("Observation/o1"), *ref4("Patient/p1")},
				Recorded: "2024-03-01T12:00:00.123Z",
				Agent:    []r4.ProvenanceAgent{{Who: *ref4("Organization/clinic")}},
			},
			want: func(t *testing.T) []store.IndexRow {
				lo := ms(t, "2024-03-01T12:00:00.123Z")
				return []store.IndexRow{
					refRow("target", "Observation/o1"), refRow("target", "Patient/p1"),
					refRow("patient", "Patient/p1"),
					dateRow("recorded", lo, lo),
					refRow("agent", "Organization/clinic"),
				}
			},
		},
		{
			name: "Medication", typ: "Medication",
			res: &r4.Medication{
				Code:   ptr(cc("http://hl7.org/fhir/sid/ndc", "0409-2053-05")),
				Status: ptr("active"),
				Batch:  &r4.MedicationBatch{LotNumber: ptr("LOT42")},
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("code", "http://hl7.org/fhir/sid/ndc", "0409-2053-05"),
					tokRow("lot-number", "", "LOT42"),
					tokRow("status", sysMedStatus, "active"),
				}
			},
		},
		{
			name: "CodeSystem", typ: "CodeSystem",
			res: &r4.CodeSystem{
				Url: ptr("https://clinic.example/fhir/CodeSystem/ketamine-local"), Name: ptr("KetamineLocal"),
				Status: r4.PublicationStatusActive, Version: ptr("1.0.0"), Title: ptr("Ketamine local codes"),
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("url", "", "https://clinic.example/fhir/CodeSystem/ketamine-local"),
					strRow("name", "ketaminelocal"),
					tokRow("status", sysPublication, "active"),
					tokRow("version", "", "1.0.0"),
					strRow("title", "ketamine local codes"),
				}
			},
		},
		{
			name: "ValueSet", typ: "ValueSet",
			res: &r4.ValueSet{
				Url: ptr("http://ketabridge.org/fhir/ValueSet/ketabridge-session-type"), Name: ptr("KetabridgeSessionType"),
				Status: r4.PublicationStatusDraft, Version: ptr("1.0.0"), Title: ptr("Session types"),
				Compose: &r4.ValueSetCompose{Include: []r4.ValueSetComposeInclude{
					{System: ptr("http://ketabridge.org/fhir/CodeSystem/ketabridge")},
					{ValueSet: []string{"http://hl7.org/fhir/ValueSet/other"}}, // no system: no row
				}},
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("url", "", "http://ketabridge.org/fhir/ValueSet/ketabridge-session-type"),
					strRow("name", "ketabridgesessiontype"),
					tokRow("status", sysPublication, "draft"),
					tokRow("version", "", "1.0.0"),
					strRow("title", "session types"),
					tokRow("reference", "", "http://ketabridge.org/fhir/CodeSystem/ketabridge"),
				}
			},
		},
		{
			name: "StructureDefinition", typ: "StructureDefinition",
			res: &r4.StructureDefinition{
				Url: "http://ketabridge.org/fhir/StructureDefinition/dose-per-kg", Name: "DosePerKg",
				Status: r4.PublicationStatusActive, Version: ptr("1.0.0"), Title: ptr("Dose per kg"),
				Kind: r4.StructureDefinitionKindComplexType, Type: "Extension",
				Derivation:     ptr(r4.TypeDerivationRuleConstraint),
				BaseDefinition: ptr("http://hl7.org/fhir/StructureDefinition/Extension|4.0.1"),
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("url", "", "http://ketabridge.org/fhir/StructureDefinition/dose-per-kg"),
					strRow("name", "doseperkg"),
					tokRow("status", sysPublication, "active"),
					tokRow("version", "", "1.0.0"),
					strRow("title", "dose per kg"),
					tokRow("type", "", "Extension"),
					tokRow("kind", sysSDKind, "complex-type"),
					tokRow("derivation", sysDerivation, "constraint"),
					refRow("base", "http://hl7.org/fhir/StructureDefinition/Extension"),
				}
			},
		},
		{
			name: "ImplementationGuide", typ: "ImplementationGuide",
			res: &r4.ImplementationGuide{
				Url: "http://ketabridge.org/fhir/ImplementationGuide/ketabridge", Name: "KetaBridge",
				Status: r4.PublicationStatusActive, Version: ptr("1.0.0"), Title: ptr("KetaBridge guide"),
				DependsOn: []r4.ImplementationGuideDependsOn{
					{Uri: "http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core", Version: ptr("6.1.0")},
				},
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("url", "", "http://ketabridge.org/fhir/ImplementationGuide/ketabridge"),
					strRow("name", "ketabridge"),
					tokRow("status", sysPublication, "active"),
					tokRow("version", "", "1.0.0"),
					strRow("title", "ketabridge guide"),
					refRow("depends-on", "http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core"),
				}
			},
		},
		{
			name: "SearchParameter", typ: "SearchParameter",
			res: &r4.SearchParameter{
				Url: "http://ketabridge.org/fhir/SearchParameter/session-number", Name: "SessionNumber",
				Status: r4.PublicationStatusActive, Version: ptr("1.0.0"), Code: "session-number",
				Base: []r4.ResourceType{r4.ResourceTypeEncounter, r4.ResourceTypeMedicationAdministration},
				Type: r4.SearchParamTypeNumber,
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("url", "", "http://ketabridge.org/fhir/SearchParameter/session-number"),
					strRow("name", "sessionnumber"),
					tokRow("status", sysPublication, "active"),
					tokRow("version", "", "1.0.0"),
					tokRow("base", sysResourceTypes, "Encounter"),
					tokRow("base", sysResourceTypes, "MedicationAdministration"),
					tokRow("code", "", "session-number"),
					tokRow("type", sysSearchParam, "number"),
				}
			},
		},
		{
			name: "OperationDefinition", typ: "OperationDefinition",
			res: &r4.OperationDefinition{
				Url: ptr("http://ketabridge.org/fhir/OperationDefinition/Patient-course"), Name: "PatientCourse",
				Status: r4.PublicationStatusRetired, Version: ptr("1.0.0"), Title: ptr("A course of treatment"),
				Kind: r4.OperationKindOperation, Code: "course",
			},
			want: func(*testing.T) []store.IndexRow {
				return []store.IndexRow{
					tokRow("url", "", "http://ketabridge.org/fhir/OperationDefinition/Patient-course"),
					strRow("name", "patientcourse"),
					tokRow("status", sysPublication, "retired"),
					tokRow("version", "", "1.0.0"),
					strRow("title", "a course of treatment"),
					tokRow("code", "", "course"),
					tokRow("kind", sysOperationKind, "operation"),
				}
			},
		},
	}
}

func sampleObservation() *r4.Observation {
	return &r4.Observation{
		Id:                ptr("o1"),
		Status:            r4.ObservationStatusFinal,
		Category:          []r4.CodeableConcept{cc("http://terminology.hl7.org/CodeSystem/observation-category", "survey")},
		Code:              cc(loinc, "44249-1"),
		Subject:           ref4("Patient/p1"),
		Encounter:         ref4("Encounter/e1"),
		EffectiveDateTime: ptr("2024-03-01T10:15:00-05:00"),
		Performer:         []r4.Reference{*ref4("Practitioner/dr1")},
		ValueQuantity: &r4.Quantity{
			Value: ptr(json.Number("14")), Unit: ptr("score"),
			System: ptr("http://unitsofmeasure.org"), Code: ptr("{score}"),
		},
	}
}

func TestExtract(t *testing.T) {
	for _, tc := range extractCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Extract(tc.res)
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			want := tc.want(t)
			if !slices.Equal(got, want) {
				t.Errorf("rows differ\n got: %+v\nwant: %+v", got, want)
			}
		})
	}
}

// TestExtractCoversEveryParam checks that the literal resources above index
// every declared parameter of every type, so each one is tested.
func TestExtractCoversEveryParam(t *testing.T) {
	seen := map[string]map[string]bool{}
	for _, tc := range extractCases() {
		rows, err := Extract(tc.res)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if seen[tc.typ] == nil {
			seen[tc.typ] = map[string]bool{}
		}
		for _, r := range rows {
			seen[tc.typ][r.Param] = true
		}
	}
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			for _, p := range Params(typ) {
				if p.Name == store.ParamID || p.Name == store.ParamLastUpdated || p.Name == paramSecurity {
					continue // answered from columns; _security: TestExtractSecurity
				}
				if !seen[typ][p.Name] {
					t.Errorf("no test resource indexes %s.%s", typ, p.Name)
				}
			}
		})
	}
}

// TestExtractSecurity checks that every searchable type indexes its
// meta.security as _security, from the struct and from stored JSON.
func TestExtractSecurity(t *testing.T) {
	want := []store.IndexRow{tokRow("_security", sysConfidentiality, "R"), tokRow("_security", sysActCode, "PSY")}
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			body := `{"resourceType":"` + typ + `","meta":{"security":[{"system":"` + sysConfidentiality + `","code":"R"},{"system":"` + sysActCode + `","code":"PSY"}]}}`
			got, err := ExtractJSON(typ, []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			got = slices.DeleteFunc(got, func(r store.IndexRow) bool { return r.Param != "_security" })
			if !slices.Equal(got, want) {
				t.Errorf("rows = %+v, want %+v", got, want)
			}
			if p, ok := Lookup(typ, "_security"); !ok || p.Type != store.KindToken || p.FHIRType() != "token" {
				t.Errorf("Lookup(%s, _security) = %+v, %v", typ, p, ok)
			}
		})
	}
	t.Run("a value indexes as its pointer", func(t *testing.T) {
		o := sampleObservation()
		o.Meta = &r4.Meta{Security: []r4.Coding{{System: ptr(sysConfidentiality), Code: ptr("R")}}}
		byPtr, err := Extract(o)
		if err != nil {
			t.Fatal(err)
		}
		byValue, err := Extract(*o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(byPtr, byValue) || !slices.Contains(byValue, want[0]) {
			t.Errorf("by pointer %+v\nby value   %+v", byPtr, byValue)
		}
	})
}

func TestExtractJSONMatchesExtract(t *testing.T) {
	for _, tc := range extractCases() {
		t.Run(tc.name, func(t *testing.T) {
			body, err := json.Marshal(tc.res)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ExtractJSON(tc.typ, body)
			if err != nil {
				t.Fatalf("ExtractJSON: %v", err)
			}
			want, _ := Extract(tc.res)
			if !slices.Equal(got, want) {
				t.Errorf("rows differ\n got: %+v\nwant: %+v", got, want)
			}
		})
	}
}

func TestExtractErrors(t *testing.T) {
	tests := []struct {
		name     string
		res      any
		wantPath string
	}{
		{"time without zone", &r4.Observation{EffectiveDateTime: ptr("2024-03-01T10:15:00")}, "Observation.effectiveDateTime"},
		{"bad date", &r4.Patient{BirthDate: ptr("1980-02-30")}, "Patient.birthDate"},
		{"bad period end", &r4.Encounter{Period: &r4.Period{Start: ptr("2024"), End: ptr("soon")}}, "Encounter.period.end"},
		{"bad quantity", &r4.Observation{ValueQuantity: &r4.Quantity{Value: ptr(json.Number("x"))}}, "Observation.valueQuantity.value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Extract(tc.res)
			var xe *ExtractError
			if !errors.As(err, &xe) {
				t.Fatalf("err = %v, want *ExtractError", err)
			}
			if xe.Path != tc.wantPath {
				t.Errorf("Path = %q, want %q", xe.Path, tc.wantPath)
			}
		})
	}
	t.Run("unsupported type", func(t *testing.T) {
		if _, err := Extract(&r4.Appointment{}); err == nil {
			t.Error("want error")
		}
	})
	t.Run("nil pointer", func(t *testing.T) {
		if _, err := Extract((*r4.Patient)(nil)); err == nil {
			t.Error("want error")
		}
	})
	t.Run("ExtractJSON unknown type", func(t *testing.T) {
		if _, err := ExtractJSON("Appointment", []byte(`{}`)); err == nil {
			t.Error("want error")
		}
	})
	t.Run("ExtractJSON bad body does not echo it", func(t *testing.T) {
		_, err := ExtractJSON("Patient", []byte(`{"gender":"SECRET-VALUE"}`))
		if err == nil {
			t.Fatal("want error")
		}
		if s := err.Error(); strings.Contains(s, "SECRET") {
			t.Errorf("error %q echoes the body", s)
		}
	})
}

func TestExtractReferenceForms(t *testing.T) {
	tests := []struct {
		name, ref string
		want      []store.IndexRow
	}{
		{"relative", "Practitioner/a", []store.IndexRow{refRow("performer", "Practitioner/a")}},
		{"versioned", "Practitioner/a/_history/2", []store.IndexRow{refRow("performer", "Practitioner/a")}},
		{"absolute kept as written", "https://other.example/fhir/Practitioner/a", []store.IndexRow{refRow("performer", "https://other.example/fhir/Practitioner/a")}},
		{"contained skipped", "#c1", nil},
		{"urn skipped", "urn:uuid:0d5f1c2e-8d3c-4b59-9a0e-1f7e4f0c2b11", nil},
		{"malformed skipped", "not a reference", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Extract(&r4.Observation{Performer: []r4.Reference{*ref4(tc.ref)}})
			if err != nil {
				t.Fatal(err)
			}
			got = slices.DeleteFunc(got, func(r store.IndexRow) bool { return r.Param == "status" || r.Param == "code" })
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func BenchmarkExtractObservation(b *testing.B) {
	o := sampleObservation()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Extract(o); err != nil {
			b.Fatal(err)
		}
	}
}
