package search

import (
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/store"
)

// The resources of a referral (HL7 BSeR / 360X: a ServiceRequest is the
// referral, a Task carries its state, a DocumentReference the referral
// letter). They are the first resources written from outside the clinic
// (docs/referrals.md); their parameters are R4's.

const (
	sysTaskStatus   = "http://hl7.org/fhir/task-status"
	sysTaskIntent   = "http://hl7.org/fhir/task-intent"
	sysDocRefStatus = "http://hl7.org/fhir/document-reference-status"
)

// referralTypes are the referral resource types, in sorted order.
var referralTypes = []string{"DocumentReference", "ServiceRequest", "Task"}

// referralParams are the referral types' parameters; init adds them to
// declared.
var referralParams = map[string][]Param{
	"Task": {
		tok("identifier", "Task.identifier", "Task-identifier", "A task identifier (system|value)"),
		tok("status", "Task.status", "Task-status", "The status (http://hl7.org/fhir/task-status)"),
		tok("business-status", "Task.businessStatus", "Task-business-status", "The business status (BSeR TaskBusinessStatusCS)"),
		tok("intent", "Task.intent", "Task-intent", "The intent (http://hl7.org/fhir/task-intent)"),
		tok("code", "Task.code", "Task-code", "The kind of task"),
		ref("owner", "Task.owner", "Task-owner", "Who is to carry out the task (the referral's recipient)",
			"CareTeam", "Device", "HealthcareService", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
		ref("requester", "Task.requester", "Task-requester", "Who asked for the task (the referrer)",
			"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
		ref("focus", "Task.focus", "Task-focus", "What the task acts on (the referral's ServiceRequest)", searchable...),
		ref("based-on", "Task.basedOn", "Task-based-on", "The request the task fulfils", searchable...),
		ref("patient", "Task.for.where(resolve() is Patient)", "Task-patient", "The patient the task is for", "Patient"),
		ref("subject", "Task.for", "Task-subject", "Who or what the task is for", searchable...),
		date("authored-on", "Task.authoredOn", "Task-authored-on", "When the task was created"),
		date("modified", "Task.lastModified", "Task-modified", "When the task last changed"),
	},
	"ServiceRequest": {
		tok("identifier", "ServiceRequest.identifier", "clinical-identifier", "A request identifier (system|value)"),
		tok("status", "ServiceRequest.status", "ServiceRequest-status", "The status (http://hl7.org/fhir/request-status)"),
		tok("intent", "ServiceRequest.intent", "ServiceRequest-intent", "The intent (http://hl7.org/fhir/request-intent)"),
		tok("code", "ServiceRequest.code", "clinical-code", "What is requested"),
		tok("category", "ServiceRequest.category", "ServiceRequest-category", "The classification of the service"),
		ref("patient", "ServiceRequest.subject.where(resolve() is Patient)", "clinical-patient",
			"The patient the request is for", "Patient"),
		subject("ServiceRequest", "Device", "Group", "Location", "Patient"),
		ref("requester", "ServiceRequest.requester", "ServiceRequest-requester", "Who asks for the service (the referrer)",
			"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
		ref("performer", "ServiceRequest.performer", "ServiceRequest-performer", "Who is asked to perform the service",
			"CareTeam", "Device", "HealthcareService", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"),
		date("authored", "ServiceRequest.authoredOn", "ServiceRequest-authored", "When the request was signed"),
	},
	"DocumentReference": {
		tok("identifier", "DocumentReference.identifier", "clinical-identifier", "A document identifier (system|value)"),
		tok("status", "DocumentReference.status", "DocumentReference-status",
			"The status (http://hl7.org/fhir/document-reference-status)"),
		tok("type", "DocumentReference.type", "clinical-type", "The kind of document"),
		tok("category", "DocumentReference.category", "DocumentReference-category", "The categorization of the document"),
		ref("patient", "DocumentReference.subject.where(resolve() is Patient)", "clinical-patient",
			"The patient the document is about", "Patient"),
		subject("DocumentReference", "Device", "Group", "Patient", "Practitioner"),
		date("date", "DocumentReference.date", "DocumentReference-date", "When the reference was created"),
	},
}

func extractReferral(resource any) ([]store.IndexRow, bool, error) {
	switch r := resource.(type) {
	case *r4.Task:
		rows, err := run("Task", r == nil, r, func(e *emitter) { extractTask(e, r) })
		return rows, true, err
	case r4.Task:
		rows, err := Extract(&r)
		return rows, true, err
	case *r4.ServiceRequest:
		rows, err := run("ServiceRequest", r == nil, r, func(e *emitter) { extractServiceRequest(e, r) })
		return rows, true, err
	case r4.ServiceRequest:
		rows, err := Extract(&r)
		return rows, true, err
	case *r4.DocumentReference:
		rows, err := run("DocumentReference", r == nil, r, func(e *emitter) { extractDocumentReference(e, r) })
		return rows, true, err
	case r4.DocumentReference:
		rows, err := Extract(&r)
		return rows, true, err
	}
	return nil, false, nil
}

func decodeReferral(typ string, body []byte) (any, bool, error) {
	switch typ {
	case "Task":
		v, err := decode(r4.UnmarshalTask, body)
		return v, true, err
	case "ServiceRequest":
		v, err := decode(r4.UnmarshalServiceRequest, body)
		return v, true, err
	case "DocumentReference":
		v, err := decode(r4.UnmarshalDocumentReference, body)
		return v, true, err
	}
	return nil, false, nil
}

func extractTask(e *emitter, r *r4.Task) {
	e.identifiers("identifier", r.Identifier)
	e.code("status", sysTaskStatus, r.Status.Code())
	e.concept("business-status", r.BusinessStatus)
	e.code("intent", sysTaskIntent, r.Intent)
	e.concept("code", r.Code)
	e.reference("owner", r.Owner)
	e.reference("requester", r.Requester)
	e.reference("focus", r.Focus)
	e.references("based-on", r.BasedOn)
	if r.For != nil {
		e.patient("patient", r.For)
	}
	e.reference("subject", r.For)
	e.dateTime("authored-on", "Task.authoredOn", r.AuthoredOn)
	e.dateTime("modified", "Task.lastModified", r.LastModified)
}

func extractServiceRequest(e *emitter, r *r4.ServiceRequest) {
	e.identifiers("identifier", r.Identifier)
	e.code("status", sysRequestStatus, r.Status.Code())
	e.code("intent", sysRequestIntent, r.Intent.Code())
	e.concept("code", r.Code)
	e.concepts("category", r.Category)
	e.patient("patient", &r.Subject)
	e.reference("subject", &r.Subject)
	e.reference("requester", r.Requester)
	e.references("performer", r.Performer)
	e.dateTime("authored", "ServiceRequest.authoredOn", r.AuthoredOn)
}

func extractDocumentReference(e *emitter, r *r4.DocumentReference) {
	e.identifiers("identifier", r.Identifier)
	if r.MasterIdentifier != nil {
		e.identifier("identifier", r.MasterIdentifier)
	}
	e.code("status", sysDocRefStatus, r.Status.Code())
	e.concept("type", r.Type)
	e.concepts("category", r.Category)
	if r.Subject != nil {
		e.patient("patient", r.Subject)
	}
	e.reference("subject", r.Subject)
	e.dateTime("date", "DocumentReference.date", r.Date)
}
