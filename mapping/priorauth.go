package mapping

import (
	"encoding/json"
	"strconv"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// Da Vinci PAS 2.0.1 canonicals the ClaimResponse uses.
const (
	pasBase              = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"
	pasClaimResponse     = pasBase + "profile-claimresponse"
	pasRequestedService  = pasBase + "extension-requestedService"
	pasReviewAction      = pasBase + "extension-reviewAction"
	pasReviewActionCode  = pasBase + "extension-reviewActionCode"
	x12ReviewActionCodes = "https://codesystem.x12.org/005010/306"
)

// paOutcomes maps a response outcome to the ClaimResponse outcome and the
// X12 306 review action code (A1 certified in total, A2 certified partial,
// A3 not certified, A4 pended).
var paOutcomes = map[string]struct {
	outcome r4.ClaimProcessingCodes
	action  codes.Code
}{
	"approved": {r4.ClaimProcessingCodesComplete, codes.Code{System: x12ReviewActionCodes, Code: "A1", Display: "Certified in total"}},
	"partial":  {r4.ClaimProcessingCodesPartial, codes.Code{System: x12ReviewActionCodes, Code: "A2", Display: "Certified - partial"}},
	"denied":   {r4.ClaimProcessingCodesComplete, codes.Code{System: x12ReviewActionCodes, Code: "A3", Display: "Not certified"}},
	"pended":   {r4.ClaimProcessingCodesQueued, codes.Code{System: x12ReviewActionCodes, Code: "A4", Display: "Pended"}},
}

// priorAuthResponse maps a payer's answer to a Da Vinci PAS ClaimResponse
// (profile-claimresponse): use preauthorization, the payer as insurer,
// outcome (complete, partial or queued), preAuthRef and preAuthPeriod, and
// one item whose requestedService extension names the course's
// MedicationRequest (the link to the course) and whose adjudication carries
// the review action (X12 306 code, the authorization number) and, as its
// value, the approved sessions. The requested sessions are a second
// adjudication (category submitted, the PAS pattern) when given. Labelled PSY
// like the course it answers for.
func (e *emitter) priorAuthResponse(r *clinic.PriorAuthResponse) {
	m := e.m
	id := ResourceID(clinic.KindPriorAuthResponse, r.ID)
	e.org = m.org
	for _, f := range [][2]string{{"patientId", r.PatientID}, {"courseId", r.CourseID}, {"payerId", r.PayerID}} {
		e.require(f[0], f[1])
	}
	o, ok := paOutcomes[r.Outcome]
	if !ok {
		e.fail("outcome", "unsupported value")
	}
	created := e.dateTime("created", r.Created)
	if created == nil {
		e.fail("created", "is required")
		return
	}
	e.setPatient(r.PatientID)
	review := []r4.Extension{{Url: pasReviewActionCode, ValueCodeableConcept: ccp(m.cc("", o.action))}}
	if r.PreAuthRef != "" {
		review = append(review, r4.Extension{Url: "number", ValueString: ptr(r.PreAuthRef)})
	}
	approved := 0
	if r.ApprovedSessions != nil {
		approved = *r.ApprovedSessions
	}
	adj := []r4.ClaimResponseItemAdjudication{{
		Extension: []r4.Extension{{Url: pasReviewAction, Extension: review}},
		Category:  m.cc("", codeOf("http://terminology.hl7.org/CodeSystem/adjudication", "submitted", "Submitted Amount")),
		Value:     ptr(json.Number(strconv.Itoa(approved))),
	}}
	text := "Prior authorization " + r.Outcome
	if r.ApprovedSessions != nil {
		text += ": " + strconv.Itoa(approved) + " sessions approved"
	}
	if r.RequestedSessions != nil {
		text += " of " + strconv.Itoa(*r.RequestedSessions) + " requested"
	}
	res := &r4.ClaimResponse{
		Id:   ptr(id),
		Meta: m.meta("", mentalHealth),
		Text: narrative(text + "."),
		Identifier: []r4.Identifier{{
			System: ptr(m.sid("prior-auth-response")), Value: ptr(r.ID),
		}},
		Status:      r4.FinancialResourceStatusCodesActive,
		Type:        m.cc("", codeOf("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional")),
		Use:         r4.UsePreauthorization,
		Patient:     ref("Patient", e.patientID),
		Created:     *created,
		Insurer:     kref("Organization", clinic.KindOrganization, r.PayerID),
		Outcome:     o.outcome,
		Disposition: ptr(text + "."),
		Item: []r4.ClaimResponseItem{{
			Extension:    []r4.Extension{{Url: pasRequestedService, ValueReference: refp("MedicationRequest", MedicationRequestID(r.CourseID))}},
			ItemSequence: 1,
			Adjudication: adj,
		}},
	}
	res.Meta.Profile = []string{pasClaimResponse}
	if r.PreAuthRef != "" {
		res.PreAuthRef = ptr(r.PreAuthRef)
	}
	if p := period(e.date("start", r.Start), e.date("end", r.End)); p != nil {
		res.PreAuthPeriod = p
	}
	e.add("ClaimResponse", id, true, res)
}
