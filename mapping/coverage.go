package mapping

import (
	"strconv"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

var coverageStatuses = map[string]r4.FinancialResourceStatusCodes{
	"active": r4.FinancialResourceStatusCodesActive, "cancelled": r4.FinancialResourceStatusCodesCancelled,
	"draft": r4.FinancialResourceStatusCodesDraft,
}

var relationships = map[string]codes.Code{
	"self":   {System: codes.SubscriberRel, Code: "self", Display: "Self"},
	"spouse": {System: codes.SubscriberRel, Code: "spouse", Display: "Spouse"},
	"child":  {System: codes.SubscriberRel, Code: "child", Display: "Child"},
	"other":  {System: codes.SubscriberRel, Code: "other", Display: "Other"},
}

// coverage maps a patient's insurance to a US Core Coverage: member id
// identifier (type MB, system {IdentifierSystemBase}/payer/{payerId}/member-id)
// and subscriberId, type (Source of Payment Typology) when the clinic records
// the payer type, beneficiary, payor, relationship, plan/group classes,
// period.
// US Core requires relationship; when the clinic did not send one it is
// marked with the data-absent-reason extension (unknown) instead of guessed.
func (e *emitter) coverage(c *clinic.Coverage) {
	m := e.m
	id := ResourceID(clinic.KindCoverage, c.ID)
	e.org = m.org
	e.require("patientId", c.PatientID)
	e.require("payerId", c.PayerID)
	e.require("memberId", c.MemberID)
	status, ok := coverageStatuses[c.Status]
	if !ok {
		e.fail("status", "unsupported value")
	}
	e.setPatient(c.PatientID)
	res := &r4.Coverage{
		Id:   ptr(id),
		Meta: m.meta("us-core-coverage", unlabelled),
		Identifier: []r4.Identifier{{
			Type:   ccp(m.cc("", codeOf(codes.V2IdentifierType, "MB", "Member Number"))),
			System: ptr(m.sid("payer/" + c.PayerID + "/member-id")),
			Value:  str(c.MemberID),
		}},
		Status:       status,
		SubscriberId: str(c.MemberID),
		Beneficiary:  ref("Patient", e.patientID),
		Period:       period(e.date("start", c.Start), e.date("end", c.End)),
		Payor:        []r4.Reference{kref("Organization", clinic.KindOrganization, c.PayerID)},
	}
	if c.PayerType != "" {
		t, ok := codes.PayerTypes[c.PayerType]
		if !ok {
			e.fail("payerType", "unsupported value")
		}
		res.Type = ccp(m.cc("", t))
	}
	if rel, ok := relationships[c.Relationship]; ok {
		res.Relationship = ccp(m.cc("", rel))
		if c.Relationship == "self" {
			res.Subscriber = refp("Patient", e.patientID)
		}
	} else {
		if c.Relationship != "" {
			e.fail("relationship", "unsupported value")
		}
		res.Relationship = &r4.CodeableConcept{Extension: []r4.Extension{{
			Url: codes.DataAbsentReasonExt, ValueCode: ptr("unknown"),
		}}}
	}
	for _, cl := range []struct{ typ, display, value string }{
		{"group", "Group", c.Group}, {"plan", "Plan", c.Plan},
	} {
		if cl.value == "" {
			continue
		}
		res.Class = append(res.Class, r4.CoverageClass{
			Type:  m.cc("", codeOf(codes.CoverageClass, cl.typ, cl.display)),
			Value: cl.value,
			Name:  ptr(cl.value),
		})
	}
	e.add("Coverage", id, true, res)
}

var consentStates = map[string]r4.ConsentState{
	"active": r4.ConsentStateActive, "inactive": r4.ConsentStateInactive,
	"rejected": r4.ConsentStateRejected, "proposed": r4.ConsentStateProposed,
}

// consent maps a sharing consent to a Consent (scope patient-privacy,
// category LOINC 59284-0, policyRule v3-ActCode OPTIN/OPTOUT) with one
// provision: type permit/deny, actors = the recipient Organizations (role
// IRCP), purposes from v3-ActReason (TREAT, HPAYMT, HOPERAT), period.
//
// Data classes are provision.class codings from the ketabridge CodeSystem
// (data-demographics, data-diagnoses, ...; each concept's definition names
// the resources it covers). FHIR's resource-type codes cannot tell vitals
// from assessments (both Observation), so the local codes are the precise
// form; no class means every class.
func (e *emitter) consent(c *clinic.Consent) {
	m := e.m
	id := ResourceID(clinic.KindConsent, c.ID)
	e.org = m.org
	e.require("patientId", c.PatientID)
	status, ok := consentStates[c.Status]
	if !ok {
		e.fail("status", "unsupported value")
	}
	var ptype r4.ConsentProvisionType
	policy := codeOf(codes.V3ActCode, "OPTIN", "opt-in")
	switch c.Decision {
	case "permit":
		ptype = r4.ConsentProvisionTypePermit
	case "deny":
		ptype = r4.ConsentProvisionTypeDeny
		policy = codeOf(codes.V3ActCode, "OPTOUT", "opt-out")
	default:
		e.fail("decision", "unsupported value")
	}
	dt := e.dateTime("dateTime", c.DateTime)
	if dt == nil {
		e.fail("dateTime", "is required")
	}
	if len(c.RecipientIDs) == 0 && c.Decision != "deny" {
		// A deny naming no actor applies to every recipient (FHIR R4
		// Consent; docs/design/security.md PRIV-20).
		e.fail("recipientIds", "is required")
	}
	e.setPatient(c.PatientID)
	prov := &r4.ConsentProvision{
		Type:   &ptype,
		Period: period(e.dateOrTime("start", c.Start), e.dateOrTime("end", c.End)),
	}
	for _, r := range c.RecipientIDs {
		prov.Actor = append(prov.Actor, r4.ConsentProvisionActor{
			Role:      m.cc("", codeOf(codes.V3Participation, "IRCP", "information recipient")),
			Reference: kref("Organization", clinic.KindOrganization, r),
		})
	}
	for i, p := range c.Purposes {
		code, ok := codes.Purposes[p]
		if !ok {
			e.fail("purposes["+strconv.Itoa(i)+"]", "unsupported value")
			continue
		}
		prov.Purpose = append(prov.Purpose, m.coding(code))
	}
	for i, d := range c.DataClasses {
		code, ok := codes.DataClasses[d]
		if !ok {
			e.fail("dataClasses["+strconv.Itoa(i)+"]", "unsupported value")
			continue
		}
		prov.Class = append(prov.Class, m.coding(code))
	}
	res := &r4.Consent{
		Id:     ptr(id),
		Meta:   m.meta("", unlabelled),
		Status: status,
		Scope:  m.cc("", codeOf(codes.ConsentScope, "patient-privacy", "Privacy Consent")),
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.LOINC, "59284-0", "Patient Consent"))},
		Patient:    refp("Patient", e.patientID),
		DateTime:   dt,
		PolicyRule: ccp(m.cc("", policy)),
		Provision:  prov,
	}
	e.add("Consent", id, true, res)
}

// trial maps an antidepressant trial to a MedicationStatement (status active
// while ongoing, else completed; RxNorm when given, else the drug as text;
// effectivePeriod; the daily dose as dosage.doseAndRate.doseQuantity (mg)
// taken once a day; reasonReference = the diagnosis the trial treated, when
// the clinic records it). The outcome is statusReason (local trial-* code)
// and a note; the drug class (WHO ATC where it matches, and the local code),
// the adequate-trial flag and the improvement percent are the
// antidepressant-class, antidepressant-adequate and antidepressant-improvement
// extensions.
func (e *emitter) trial(t *clinic.AntidepressantTrial) {
	m := e.m
	id := ResourceID(clinic.KindAntidepressantTrial, t.ID)
	e.org = m.org
	e.require("patientId", t.PatientID)
	e.require("drug", t.Drug)
	outcome, ok := codes.TrialOutcomes[t.Outcome]
	if !ok {
		e.fail("outcome", "unsupported value")
	}
	class, ok := codes.DrugClasses[t.Class]
	if !ok {
		e.fail("class", "unsupported value")
	}
	start := e.date("start", t.Start)
	if start == nil {
		e.fail("start", "is required")
	}
	e.setPatient(t.PatientID)
	status := "completed"
	if t.Outcome == "ongoing" {
		status = "active"
	}
	exts := []r4.Extension{
		{Url: codes.ExtTrialClass, ValueCodeableConcept: ccp(m.cc(t.Class, class...))},
		{Url: codes.ExtTrialAdequate, ValueBoolean: ptr(t.AdequateTrial)},
	}
	note := outcome.Display
	if t.AdequateTrial {
		note += "; adequate trial (therapeutic dose for at least 6 weeks)"
	}
	if t.ImprovementPercent != nil {
		exts = append(exts, r4.Extension{
			Url: codes.ExtTrialImprovement, ValueQuantity: qty(*t.ImprovementPercent, codes.UnitPercent),
		})
		note += "; " + fmtNum(*t.ImprovementPercent) + " % improvement on a validated scale"
	}
	med := textCC(t.Drug)
	if t.RxNorm != "" {
		med = m.cc(t.Drug, codeOf(codes.RxNorm, t.RxNorm, t.Drug))
	}
	res := &r4.MedicationStatement{
		Id:                        ptr(id),
		Meta:                      m.meta("", mentalHealth),
		Extension:                 exts,
		Status:                    status,
		StatusReason:              []r4.CodeableConcept{m.cc("", outcome)},
		MedicationCodeableConcept: med,
		Subject:                   ref("Patient", e.patientID),
		EffectivePeriod:           period(start, e.date("end", t.End)),
		Note:                      []r4.Annotation{{Text: note + "."}},
	}
	if t.DiagnosisID != "" {
		res.ReasonReference = []r4.Reference{kref("Condition", clinic.KindDiagnosis, t.DiagnosisID)}
	}
	if t.DoseMgDay != nil {
		res.Dosage = []r4.Dosage{{
			Text: ptr(fmtNum(*t.DoseMgDay) + " mg a day"),
			Timing: &r4.Timing{Repeat: &r4.TimingRepeat{
				Frequency: ptr(1), Period: dec(1), PeriodUnit: ptr("d"),
			}},
			DoseAndRate: []r4.DosageDoseAndRate{{DoseQuantity: qty(*t.DoseMgDay, codes.UnitMg)}},
		}}
	}
	e.add("MedicationStatement", id, true, res)
}
