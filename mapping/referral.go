package mapping

import (
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// The BSeR Task business status of a new referral (BSeR STU1
// TaskBusinessStatusCS; the fhir/referral package holds the whole table).
const (
	bserBusinessStatus = "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS"
	sysTaskCode        = "http://hl7.org/fhir/CodeSystem/task-code"
)

// referral maps an outbound referral (HL7 BSeR / 360X) to a ServiceRequest
// (the referral: intent order, the reason as ICD-10-CM, the requested
// service in words, performer the partner, identifier under
// {IdentifierSystemBase}/referral) and a Task (status requested, intent
// order, focus the ServiceRequest, requester the clinic, owner the
// partner, business status 2.0). The partner moves the Task from there
// (docs/referrals.md), so the Task is CreateOnly: re-sending the record
// updates the ServiceRequest and leaves the Task as the partner left it.
// Both are labelled by the reason as a diagnosis is.
func (e *emitter) referral(r *clinic.Referral) {
	m := e.m
	srID := ResourceID(clinic.KindReferral, r.ID)
	taskID := e.id("Task")
	e.org = m.org
	e.require("patientId", r.PatientID)
	e.require("partnerId", r.PartnerID)
	e.require("reason", r.Reason)
	e.require("service", r.Service)
	e.require("authoredOn", r.AuthoredOn)
	e.setPatient(r.PatientID)
	l := unlabelled
	switch {
	case codes.SuicideRiskDiagnosis(r.Reason):
		l = suicideRisk
	case codes.MentalHealthDiagnosis(r.Reason):
		l = mentalHealth
	}
	var clinicOrg *r4.Reference
	if org := e.clinicOrg(); org != "" {
		clinicOrg = krefp("Organization", clinic.KindOrganization, org)
	}
	requester := clinicOrg
	if r.RequesterID != "" {
		requester = krefp("Practitioner", clinic.KindPractitioner, r.RequesterID)
		e.author = requester
	}
	if requester == nil || clinicOrg == nil {
		e.fail("partnerId", "the clinic's organization is unknown: configure it (--clinic-organization)")
		return
	}
	authored := e.dateTime("authoredOn", r.AuthoredOn)
	sr := &r4.ServiceRequest{
		Id:         ptr(srID),
		Meta:       m.meta("", l),
		Identifier: []r4.Identifier{{System: ptr(m.sid("referral")), Value: str(r.ID)}},
		Status:     r4.RequestStatusActive,
		Intent:     r4.RequestIntentOrder,
		Code:       ccp(m.cc(r.Service, codeOf("http://snomed.info/sct", "3457005", "Patient referral"))),
		Subject:    ref("Patient", e.patientID),
		AuthoredOn: authored,
		Requester:  requester,
		Performer:  []r4.Reference{kref("Organization", clinic.KindOrganization, r.PartnerID)},
		ReasonCode: []r4.CodeableConcept{m.cc("", codeOf(codes.ICD10CM, r.Reason, ""))},
	}
	if r.Note != "" {
		sr.Note = []r4.Annotation{{Text: r.Note}}
	}
	// The package: what the referral names of the patient's records. The
	// partner reads each only as the patient's consent allows
	// (docs/design/security.md RFL-5).
	for _, id := range r.DiagnosisIDs {
		sr.SupportingInfo = append(sr.SupportingInfo, kref("Condition", clinic.KindDiagnosis, id))
	}
	if r.CourseID != "" {
		sr.SupportingInfo = append(sr.SupportingInfo, kref("CarePlan", clinic.KindCourse, r.CourseID))
	}
	for _, id := range r.TrialIDs {
		sr.SupportingInfo = append(sr.SupportingInfo, kref("MedicationStatement", clinic.KindAntidepressantTrial, id))
	}
	if r.CoverageID != "" {
		sr.Insurance = []r4.Reference{kref("Coverage", clinic.KindCoverage, r.CoverageID)}
	}
	e.add("ServiceRequest", srID, true, sr)
	task := &r4.Task{
		Id:             ptr(taskID),
		Meta:           m.meta("", l),
		Status:         r4.TaskStatusRequested,
		Intent:         "order",
		Code:           ccp(m.cc("", codeOf(sysTaskCode, "fulfill", "Fulfill the focal request"))),
		Focus:          refp("ServiceRequest", srID),
		For:            refp("Patient", e.patientID),
		AuthoredOn:     authored,
		Requester:      clinicOrg,
		Owner:          krefp("Organization", clinic.KindOrganization, r.PartnerID),
		BusinessStatus: ccp(m.cc("", codeOf(bserBusinessStatus, "2.0", "Service Request Created"))),
	}
	e.add("Task", taskID, true, task)
	e.outs[len(e.outs)-1].CreateOnly = true
}
