package mapping

import (
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// course maps a patient's course on a protocol to a US Core CarePlan
// (instantiating the protocol's PlanDefinition, addressing the diagnosis) and
// the order, a US Core MedicationRequest based on it.
//
// A course record names neither drug, route nor dose: the MedicationRequest's
// medication is a reference to the protocol's Medication
// (ProtocolMedicationID), it instantiates the PlanDefinition, and its
// dosageInstruction says the dose, route and schedule follow that protocol.
func (e *emitter) course(c *clinic.Course) {
	m := e.m
	id := ResourceID(clinic.KindCourse, c.ID)
	e.org = m.org
	st, ok := codes.CourseStatus[c.Status]
	if !ok {
		e.fail("status", "unsupported value")
	}
	for _, f := range [][2]string{{"patientId", c.PatientID}, {"protocolId", c.ProtocolID},
		{"prescriberId", c.PrescriberID}, {"diagnosisId", c.DiagnosisID}} {
		e.require(f[0], f[1])
	}
	e.patientID = ResourceID(clinic.KindPatient, c.PatientID)
	start := e.date("start", c.Start)
	end := e.date("end", c.End)
	authored := start
	if c.AuthoredOn != "" {
		authored = e.dateTime("authoredOn", c.AuthoredOn)
	}
	planURL := m.PlanDefinitionURL(c.ProtocolID)
	subject := ref("Patient", e.patientID)
	condition := kref("Condition", clinic.KindDiagnosis, c.DiagnosisID)
	prescriber := krefp("Practitioner", clinic.KindPractitioner, c.PrescriberID)
	mrID := MedicationRequestID(c.ID)

	summary := "Ketamine-class treatment course under protocol " + c.ProtocolID + ", status " + c.Status
	if c.Phase != "" {
		summary += ", " + c.Phase + " phase"
	}
	summary += "."
	plan := &r4.CarePlan{
		Id:                    ptr(id),
		Meta:                  m.meta("us-core-careplan", true),
		Text:                  narrative(summary),
		InstantiatesCanonical: []string{planURL},
		Status:                carePlanStatus(st.CarePlan),
		Intent:                r4.CarePlanIntentPlan,
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.CarePlanCategory, "assess-plan", "Assessment and Plan of Treatment"))},
		Description: ptr(summary),
		Subject:     subject,
		Period:      period(start, end),
		Created:     authored,
		Author:      prescriber,
		Addresses:   []r4.Reference{condition},
		Activity:    []r4.CarePlanActivity{{Reference: refp("MedicationRequest", mrID)}},
	}
	if c.Phase != "" {
		plan.Extension = []r4.Extension{{Url: m.ext(codes.ExtCoursePhase), ValueCode: ptr(c.Phase)}}
	}
	e.add("CarePlan", id, true, plan)

	req := &r4.MedicationRequest{
		Id:     ptr(mrID),
		Meta:   m.meta("us-core-medicationrequest", true),
		Status: st.MedicationRequest,
		Intent: "order",
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.MedReqCategory, "outpatient", "Outpatient"))},
		MedicationReference:   ref("Medication", ProtocolMedicationID(c.ProtocolID)),
		Subject:               subject,
		AuthoredOn:            authored,
		Requester:             prescriber,
		ReasonReference:       []r4.Reference{condition},
		InstantiatesCanonical: []string{planURL},
		BasedOn:               []r4.Reference{ref("CarePlan", id)},
		DosageInstruction: []r4.Dosage{{
			Text: ptr("Dose, route and schedule per protocol " + planURL),
		}},
	}
	if c.CoverageID != "" {
		req.Insurance = []r4.Reference{kref("Coverage", clinic.KindCoverage, c.CoverageID)}
	}
	e.add("MedicationRequest", mrID, true, req)
}

func carePlanStatus(s string) r4.RequestStatus {
	switch s {
	case "completed":
		return r4.RequestStatusCompleted
	case "revoked":
		return r4.RequestStatusRevoked
	case "on-hold":
		return r4.RequestStatusOnHold
	}
	return r4.RequestStatusActive
}

// diagnosis maps an ICD-10-CM diagnosis to a US Core problem-list Condition
// (clinicalStatus, verificationStatus confirmed, category problem-list-item).
func (e *emitter) diagnosis(d *clinic.Diagnosis) {
	m := e.m
	id := ResourceID(clinic.KindDiagnosis, d.ID)
	e.org = m.org
	e.require("patientId", d.PatientID)
	e.require("icd10", d.ICD10)
	e.require("clinicalStatus", d.ClinicalStatus)
	e.patientID = ResourceID(clinic.KindPatient, d.PatientID)
	res := &r4.Condition{
		Id:   ptr(id),
		Meta: m.meta("us-core-condition-problems-health-concerns", true),
		ClinicalStatus: ccp(m.cc("",
			codeOf(codes.ConditionClinical, d.ClinicalStatus, ""))),
		VerificationStatus: ccp(m.cc("",
			codeOf(codes.ConditionVerStat, "confirmed", "Confirmed"))),
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.ConditionCategory, "problem-list-item", "Problem List Item"))},
		Code:          ccp(m.cc(d.Text, codeOf(codes.ICD10CM, d.ICD10, ""))),
		Subject:       ref("Patient", e.patientID),
		OnsetDateTime: e.dateOrTime("onset", d.Onset),
		RecordedDate:  e.dateOrTime("recordedDate", d.RecordedDate),
	}
	if d.RecorderID != "" {
		res.Recorder = krefp("Practitioner", clinic.KindPractitioner, d.RecorderID)
	}
	e.add("Condition", id, true, res)
}
