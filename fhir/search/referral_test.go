package search

import (
	"testing"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/store"
)

func referralExtractCases() []extractCase {
	return []extractCase{
		{
			name: "Task", typ: "Task",
			res: &r4.Task{
				Identifier:     []r4.Identifier{{System: ptr("urn:oid:1.2.3"), Value: ptr("T-1")}},
				Status:         r4.TaskStatusRequested,
				BusinessStatus: ptr(cc("http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS", "2.0")),
				Intent:         "order",
				Code:           ptr(cc("http://hl7.org/fhir/CodeSystem/task-code", "fulfill")),
				Focus:          ref4("ServiceRequest/sr1"),
				BasedOn:        []r4.Reference{*ref4("ServiceRequest/sr1")},
				For:            ref4("Patient/p1"),
				AuthoredOn:     ptr("2024-03-01"),
				LastModified:   ptr("2024-03-02"),
				Requester:      ref4("Organization/partner"),
				Owner:          ref4("Organization/clinic"),
			},
			want: func(t *testing.T) []store.IndexRow {
				day := func(d string) store.IndexRow {
					lo := ms(t, d+"T00:00:00Z")
					return store.IndexRow{Kind: store.KindDate, Lo: lo, Hi: lo + 24*3600*1000 - 1}
				}
				authored, modified := day("2024-03-01"), day("2024-03-02")
				authored.Param, modified.Param = "authored-on", "modified"
				return []store.IndexRow{
					tokRow("identifier", "urn:oid:1.2.3", "T-1"),
					tokRow("status", sysTaskStatus, "requested"),
					tokRow("business-status", "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS", "2.0"),
					tokRow("intent", sysTaskIntent, "order"),
					tokRow("code", "http://hl7.org/fhir/CodeSystem/task-code", "fulfill"),
					refRow("owner", "Organization/clinic"),
					refRow("requester", "Organization/partner"),
					refRow("focus", "ServiceRequest/sr1"),
					refRow("based-on", "ServiceRequest/sr1"),
					refRow("patient", "Patient/p1"),
					refRow("subject", "Patient/p1"),
					authored, modified,
				}
			},
		},
		{
			name: "ServiceRequest", typ: "ServiceRequest",
			res: &r4.ServiceRequest{
				Identifier: []r4.Identifier{{System: ptr("urn:oid:1.2.3"), Value: ptr("R-1")}},
				Status:     r4.RequestStatusActive,
				Intent:     r4.RequestIntentOrder,
				Code:       ptr(cc("http://snomed.info/sct", "306206005")),
				Category:   []r4.CodeableConcept{cc("http://snomed.info/sct", "3457005")},
				Subject:    *ref4("Patient/p1"),
				Requester:  ref4("Practitioner/dr1"),
				Performer:  []r4.Reference{*ref4("Organization/clinic")},
				AuthoredOn: ptr("2024-03-01T12:00:00Z"),
			},
			want: func(t *testing.T) []store.IndexRow {
				lo := ms(t, "2024-03-01T12:00:00Z")
				return []store.IndexRow{
					tokRow("identifier", "urn:oid:1.2.3", "R-1"),
					tokRow("status", sysRequestStatus, "active"),
					tokRow("intent", sysRequestIntent, "order"),
					tokRow("code", "http://snomed.info/sct", "306206005"),
					tokRow("category", "http://snomed.info/sct", "3457005"),
					refRow("patient", "Patient/p1"),
					refRow("subject", "Patient/p1"),
					refRow("requester", "Practitioner/dr1"),
					refRow("performer", "Organization/clinic"),
					dateRow("authored", lo, lo+999),
				}
			},
		},
		{
			name: "DocumentReference", typ: "DocumentReference",
			res: &r4.DocumentReference{
				MasterIdentifier: &r4.Identifier{System: ptr("urn:oid:1.2.3"), Value: ptr("D-1")},
				Status:           r4.DocumentReferenceStatusCurrent,
				Type:             ptr(cc(loinc, "57133-1")),
				Category:         []r4.CodeableConcept{cc("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note")},
				Subject:          ref4("Patient/p1"),
				Date:             ptr("2024-03-01T12:00:00.123Z"),
			},
			want: func(t *testing.T) []store.IndexRow {
				lo := ms(t, "2024-03-01T12:00:00.123Z")
				return []store.IndexRow{
					tokRow("identifier", "urn:oid:1.2.3", "D-1"),
					tokRow("status", sysDocRefStatus, "current"),
					tokRow("type", loinc, "57133-1"),
					tokRow("category", "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note"),
					refRow("patient", "Patient/p1"),
					refRow("subject", "Patient/p1"),
					dateRow("date", lo, lo),
				}
			},
		},
	}
}
