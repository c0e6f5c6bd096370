package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
)

// denyEveryoneRecord is a patient's "share with no one": a deny consent
// record naming no recipient, for every purpose and class.
func denyEveryoneRecord(id, patient string, classes ...string) json.RawMessage {
	r := map[string]any{"kind": "consent", "id": id, "patientId": patient, "status": "active",
		"decision": "deny", "dateTime": "2026-01-06T10:00:00Z", "purposes": []string{"treatment", "payment", "operations"},
		"start": "2026-01-01"}
	if len(classes) > 0 {
		r["dataClasses"] = classes
	}
	b, _ := json.Marshal(r)
	return b
}

// TestReferralDenyNamingNoOne records a patient's deny naming no
// recipient after a permit for a partner: the partner's view of the
// patient closes at once (the deny applies to every recipient and
// overrides the permit), the open referrals to that partner and to a
// partner the patient never named are closed, and the clinic's own client
// still reads everything (docs/design/security.md PRIV-20, RFL-6).
func TestReferralDenyNamingNoOne(t *testing.T) {
	e := newReferralEnv(t)
	riverbend := orgID(synth.OrgPartnerRiverbend)
	partner := e.token(t, "riverbend-dny", "partner", riverbend, packageScope)
	pat := e.unconsentedPatient(t, synth.OrgPartnerRiverbend)
	pid := mapping.ResourceID(clinic.KindPatient, pat)
	ingestRecords(t, e.g,
		consentRecord("consent-dny-1", pat, synth.OrgPartnerRiverbend, "active", "", "diagnoses"),
		referralRecord("ref-dny-1", pat, synth.OrgPartnerRiverbend),
		referralRecord("ref-dny-2", pat, synth.OrgPartnerNorthgate))
	sr := "/fhir/ServiceRequest/" + mapping.ResourceID(clinic.KindReferral, "ref-dny-1")
	task1 := mapping.ResourceID(clinic.KindReferral, "ref-dny-1", "Task")
	task2 := mapping.ResourceID(clinic.KindReferral, "ref-dny-2", "Task")
	wantStatus(t, "ServiceRequest under the permit", e.do(t, http.MethodGet, sr, partner, nil), http.StatusOK)
	wantStatus(t, "Patient under the permit", e.do(t, http.MethodGet, "/fhir/Patient/"+pid, partner, nil), http.StatusOK)

	// A deny of one class to everyone takes that class away and leaves
	// both referrals open: the permit's diagnoses still count, and
	// nothing was given to Northgate that a deny of assessments withdraws.
	ingestRecords(t, e.g, denyEveryoneRecord("consent-dny-3", pat, "assessments"))
	wantStatus(t, "ServiceRequest after a deny of assessments", e.do(t, http.MethodGet, sr, partner, nil), http.StatusOK)
	for _, id := range []string{task1, task2} {
		if task, _ := e.task(t, id); task["status"] != "requested" {
			t.Fatalf("Task %s after a deny of assessments to everyone: %v, want requested", id, task["status"])
		}
	}

	ingestRecords(t, e.g, denyEveryoneRecord("consent-dny-2", pat))
	if n := e.total(t, e.ehr, "Consent?patient=Patient/"+pid+"&actor:missing=true"); n != 2 {
		t.Fatalf("the denies are stored naming no actor: %d found, want 2", n)
	}
	wantStatus(t, "ServiceRequest after the deny", e.do(t, http.MethodGet, sr, partner, nil), http.StatusNotFound)
	wantStatus(t, "Patient after the deny", e.do(t, http.MethodGet, "/fhir/Patient/"+pid, partner, nil), http.StatusNotFound)
	if n := e.total(t, partner, "Condition?patient=Patient/"+pid); n != 0 {
		t.Errorf("Conditions after the deny: %d", n)
	}
	for _, id := range []string{task1, task2} {
		task, etag := e.task(t, id)
		if task["status"] != "cancelled" || etag != `W/"2"` {
			t.Errorf("Task %s after the deny: %v at %s, want cancelled at W/\"2\"", id, task["status"], etag)
		}
	}
	// The clinic's own treatment is not narrowed by consent.
	wantStatus(t, "the clinic reads the ServiceRequest", e.do(t, http.MethodGet, sr, e.ehr, nil), http.StatusOK)
	wantStatus(t, "the clinic reads the Patient", e.do(t, http.MethodGet, "/fhir/Patient/"+pid, e.ehr, nil), http.StatusOK)
}
