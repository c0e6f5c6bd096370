package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
)

// packageScope is what a partner's client asks for to read a referral
// package (docs/referrals.md).
const packageScope = "system/Task.rus system/ServiceRequest.rs system/Patient.rs system/Condition.rs " +
	"system/Observation.rs system/MedicationStatement.rs system/Coverage.rs system/CarePlan.rs system/Organization.rs"

// referralRecord is an outbound referral clinic record for patient to
// partner, with the package members of extra (diagnosisIds, courseId, ...).
func referralRecord(id, patient, partner string, extra ...map[string]any) json.RawMessage {
	r := map[string]any{"kind": "referral", "id": id, "patientId": patient, "partnerId": partner,
		"reason": "F33.2", "service": "Psychotherapy after ketamine induction", "authoredOn": "2026-12-01T09:00:00Z"}
	for _, x := range extra {
		for k, v := range x {
			r[k] = v
		}
	}
	b, _ := json.Marshal(r)
	return b
}

// demoRecordIDs returns the clinic ids of the demo patient's records of
// kind, in the order of the demo data.
func demoRecordIDs(t *testing.T, patient, kind string) []string {
	t.Helper()
	raw, err := SynthRecords(DemoPatients, demoSeed, DemoStart)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range raw {
		var h struct{ Kind, ID, PatientID string }
		if err := json.Unmarshal(r, &h); err != nil {
			t.Fatal(err)
		}
		if h.Kind == kind && h.PatientID == patient {
			out = append(out, h.ID)
		}
	}
	return out
}

// consentRecord is a consent clinic record of patient for partner, for
// treatment, of classes, with status and an optional end date.
func consentRecord(id, patient, partner, status, end string, classes ...string) json.RawMessage {
	c := map[string]any{"kind": "consent", "id": id, "patientId": patient, "status": status, "decision": "permit",
		"dateTime": "2026-01-05T10:00:00Z", "recipientIds": []string{partner}, "purposes": []string{"treatment"},
		"start": "2026-01-01"}
	if len(classes) > 0 {
		c["dataClasses"] = classes
	}
	if end != "" {
		c["end"] = end
	}
	b, _ := json.Marshal(c)
	return b
}

// ingest ingests records and fails on any rejection.
func ingestRecords(t *testing.T, g *Gateway, recs ...json.RawMessage) {
	t.Helper()
	if _, sum, err := g.Ingester().Ingest(context.Background(), recs); err != nil || sum.Rejected > 0 {
		t.Fatalf("ingest: %v %+v", err, sum)
	}
}

// unconsentedPatient returns a demo patient's clinic id with no Consent
// naming org.
func (e *referralEnv) unconsentedPatient(t *testing.T, org string, skip ...string) string {
	t.Helper()
	for n := 1; n <= 40; n++ {
		id := fmt.Sprintf("pat-%06d", n)
		if strings.Contains(strings.Join(skip, ","), id) {
			continue
		}
		pid := mapping.ResourceID(clinic.KindPatient, id)
		if e.total(t, e.ehr, "Patient?_id="+pid) == 1 &&
			e.total(t, e.ehr, "Consent?patient=Patient/"+pid+"&actor=Organization/"+orgID(org)) == 0 {
			return id
		}
	}
	t.Fatal("no demo patient without a consent for the partner")
	return ""
}

// auditHas waits for the audit writer's batch that holds a record
// matching want (the trail is written behind the response).
func auditHas(t *testing.T, g *Gateway, what string, want func(store.AuditRecord) bool) {
	t.Helper()
	as := g.store.(store.AuditStore)
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := as.ListAudit(context.Background(), time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if want(r) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no AuditEvent of %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReferralPackage reads the package of a referral the clinic sent a
// partner, with real partner, payer and EHR tokens: nothing without the
// patient's consent, the ServiceRequest and what the consent's classes
// cover with it, nothing for another partner or a payer, every read
// audited; then the consent is withdrawn mid-way, and the package closes
// at once while the Task is closed along the state machine
// (docs/design/security.md RFL-5, RFL-6).
func TestReferralPackage(t *testing.T) {
	e := newReferralEnv(t)
	riverbend, northgate := orgID(synth.OrgPartnerRiverbend), orgID(synth.OrgPartnerNorthgate)
	partner := e.token(t, "riverbend-pkg", "partner", riverbend, packageScope)
	other := e.token(t, "northgate-pkg", "partner", northgate, packageScope)
	payer := e.token(t, "blueheron-pkg", "payer", orgID(synth.OrgPayerBlueHeron), "system/*.rs")

	pat := e.unconsentedPatient(t, synth.OrgPartnerRiverbend)
	pid := mapping.ResourceID(clinic.KindPatient, pat)
	dxs, courses, covs := demoRecordIDs(t, pat, "diagnosis"), demoRecordIDs(t, pat, "course"), demoRecordIDs(t, pat, "coverage")
	if len(dxs) == 0 || len(courses) == 0 || len(covs) == 0 {
		t.Fatalf("demo patient %s lacks a diagnosis, course or coverage", pat)
	}
	// A referral may name only its own patient's records.
	elsewhere := demoRecordIDs(t, e.unconsentedPatient(t, synth.OrgPartnerRiverbend, pat), "diagnosis")
	if _, sum, err := e.g.Ingester().Ingest(context.Background(), []json.RawMessage{referralRecord("ref-pkg-x", pat,
		synth.OrgPartnerRiverbend, map[string]any{"diagnosisIds": elsewhere[:1]})}); err != nil || sum.Rejected != 1 {
		t.Fatalf("a referral naming another patient's diagnosis: %v %+v", err, sum)
	}
	ingestRecords(t, e.g, referralRecord("ref-pkg-1", pat, synth.OrgPartnerRiverbend,
		map[string]any{"diagnosisIds": dxs[:1], "courseId": courses[0], "coverageId": covs[0]}))
	condition := "/fhir/Condition/" + mapping.ResourceID(clinic.KindDiagnosis, dxs[0])
	carePlan := "/fhir/CarePlan/" + mapping.ResourceID(clinic.KindCourse, courses[0])
	coverage := "/fhir/Coverage/" + mapping.ResourceID(clinic.KindCoverage, covs[0])
	srID := mapping.ResourceID(clinic.KindReferral, "ref-pkg-1")
	taskID := mapping.ResourceID(clinic.KindReferral, "ref-pkg-1", "Task")
	sr := "/fhir/ServiceRequest/" + srID

	t.Run("without consent", func(t *testing.T) {
		wantStatus(t, "ServiceRequest", e.do(t, http.MethodGet, sr, partner, nil), http.StatusNotFound)
		wantStatus(t, "Patient", e.do(t, http.MethodGet, "/fhir/Patient/"+pid, partner, nil), http.StatusNotFound)
		wantStatus(t, "its Condition", e.do(t, http.MethodGet, condition, partner, nil), http.StatusNotFound)
		if n := e.total(t, partner, "ServiceRequest?_id="+srID); n != 0 {
			t.Errorf("search finds %d", n)
		}
		// The Task is the business record: visible whatever the consent.
		r := e.do(t, http.MethodGet, "/fhir/Task/"+taskID, partner, nil)
		wantStatus(t, "Task", r, http.StatusOK, `"status":"requested"`)
	})

	ingestRecords(t, e.g, consentRecord("consent-pkg-1", pat, synth.OrgPartnerRiverbend, "active", "", "diagnoses"))
	t.Run("with consent", func(t *testing.T) {
		// The ServiceRequest names the package: supportingInfo and insurance.
		wantStatus(t, "ServiceRequest", e.do(t, http.MethodGet, sr, partner, nil), http.StatusOK, `"Organization/`+riverbend+`"`,
			`"supportingInfo":[{"reference":"`+strings.TrimPrefix(condition, "/fhir/")+`"},{"reference":"`+strings.TrimPrefix(carePlan, "/fhir/")+`"}]`,
			`"insurance":[{"reference":"`+strings.TrimPrefix(coverage, "/fhir/")+`"}]`)
		// Of what it names, what the consent's classes cover (diagnoses),
		// and nothing else, though it exists.
		wantStatus(t, "its Condition", e.do(t, http.MethodGet, condition, partner, nil), http.StatusOK)
		for _, p := range []string{carePlan, coverage} {
			wantStatus(t, "clinic reads "+p, e.do(t, http.MethodGet, p, e.ehr, nil), http.StatusOK)
			wantStatus(t, "partner reads "+p, e.do(t, http.MethodGet, p, partner, nil), http.StatusNotFound)
		}
		if n := e.total(t, partner, "ServiceRequest?patient=Patient/"+pid); n != 1 {
			t.Errorf("the partner's ServiceRequest search finds %d, want its one referral", n)
		}
		// The Patient as the view allows: no demographics class, reduced.
		wantStatus(t, "Patient", e.do(t, http.MethodGet, "/fhir/Patient/"+pid, partner, nil), http.StatusOK, "SUBSETTED")
		// The classes the consent lists, and nothing more.
		if ehr, got := e.total(t, e.ehr, "Condition?patient=Patient/"+pid+"&_security:not=R"), e.total(t, partner, "Condition?patient=Patient/"+pid); got != ehr || got == 0 {
			t.Errorf("Conditions: the partner sees %d, the clinic has %d without label R", got, ehr)
		}
		for _, typ := range []string{"Observation", "MedicationStatement", "Coverage"} {
			if n := e.total(t, partner, typ+"?patient=Patient/"+pid); n != 0 {
				t.Errorf("%s outside the consent's classes: the partner sees %d", typ, n)
			}
		}
		// Another partner, and a payer, never see it.
		wantStatus(t, "another partner", e.do(t, http.MethodGet, sr, other, nil), http.StatusNotFound)
		wantStatus(t, "payer read", e.do(t, http.MethodGet, sr, payer, nil), http.StatusNotFound)
		wantStatus(t, "payer search", e.do(t, http.MethodGet, "/fhir/ServiceRequest?_id="+srID, payer, nil), http.StatusForbidden)
	})
	t.Run("package reads are audited", func(t *testing.T) {
		auditHas(t, e.g, "the partner's package read", func(r store.AuditRecord) bool {
			return r.ClientID == "riverbend-pkg" && r.Type == "ServiceRequest" && r.ResourceID == srID &&
				r.Status == http.StatusOK && r.Patient == pid && r.Purpose == "TREAT" && r.Organization == riverbend
		})
		auditHas(t, e.g, "the refused read before the consent", func(r store.AuditRecord) bool {
			return r.ClientID == "riverbend-pkg" && r.Type == "ServiceRequest" && r.ResourceID == srID && r.Status == http.StatusNotFound
		})
		auditHas(t, e.g, "the payer's refused read", func(r store.AuditRecord) bool {
			return r.ClientID == "blueheron-pkg" && r.Type == "ServiceRequest" && r.Status == http.StatusNotFound
		})
	})

	// The partner moves the referral on; then the patient withdraws.
	wantStatus(t, "received", e.move(t, partner, taskID, `W/"1"`, "received", nil), http.StatusOK)
	wantStatus(t, "accepted", e.move(t, partner, taskID, `W/"2"`, "accepted", nil), http.StatusOK)
	ingestRecords(t, e.g, consentRecord("consent-pkg-1", pat, synth.OrgPartnerRiverbend, "inactive", "", "diagnoses"))
	t.Run("consent withdrawn", func(t *testing.T) {
		wantStatus(t, "ServiceRequest", e.do(t, http.MethodGet, sr, partner, nil), http.StatusNotFound)
		wantStatus(t, "Patient", e.do(t, http.MethodGet, "/fhir/Patient/"+pid, partner, nil), http.StatusNotFound)
		if n := e.total(t, partner, "Condition?patient=Patient/"+pid); n != 0 {
			t.Errorf("Conditions after the withdrawal: %d", n)
		}
		r := e.do(t, http.MethodGet, "/fhir/Task/"+taskID, partner, nil)
		wantStatus(t, "Task", r, http.StatusOK, `"status":"cancelled"`, `"code":"consent-withdrawn"`, `"code":"6.0"`)
		if etag := r.header.Get("ETag"); etag != `W/"4"` {
			t.Errorf("the closed Task is at %s, want a new version W/\"4\"", etag)
		}
		if n := e.total(t, e.ehr, "Task?_id="+taskID+"&status=cancelled"); n != 1 {
			t.Errorf("search by the new status: %d", n)
		}
		h := e.do(t, http.MethodGet, "/fhir/Task/"+taskID+"/_history", e.ehr, nil)
		wantStatus(t, "history", h, http.StatusOK, `"status":"accepted"`, `"status":"cancelled"`)
		pr := e.do(t, http.MethodGet, "/fhir/Provenance?_sort=-_lastUpdated&_count=20", e.ehr, nil)
		wantStatus(t, "Provenance", pr, http.StatusOK, `"Task/`+taskID+`/_history/4"`, fhir.GatewayAgent)
		auditHas(t, e.g, "the close", func(r store.AuditRecord) bool {
			return r.ClientID == fhir.GatewayAgent && r.Interaction == "update" && r.Type == "Task" &&
				r.ResourceID == taskID && r.Patient == pid
		})
		// Closed: nothing moves it any more.
		wantStatus(t, "in-progress after the close", e.move(t, partner, taskID, `W/"4"`, "in-progress", nil), http.StatusConflict, "nothing moves it")
		// Sending the same consent again changes nothing.
		ingestRecords(t, e.g, consentRecord("consent-pkg-1", pat, synth.OrgPartnerRiverbend, "inactive", "", "diagnoses"))
		if _, etag := e.task(t, taskID); etag != `W/"4"` {
			t.Errorf("after the re-send: %s", etag)
		}
	})
}

// TestReferralClosedWhenConsentExpires has the sweep close a referral
// whose consent's period has ended, without any ingest, and leave open a
// referral to a partner the patient never named in a consent
// (docs/design/security.md RFL-6).
func TestReferralClosedWhenConsentExpires(t *testing.T) {
	e := newReferralEnv(t)
	ctx := context.Background()
	riverbend := orgID(synth.OrgPartnerRiverbend)
	partner := e.token(t, "riverbend-exp", "partner", riverbend, packageScope)
	pat := e.unconsentedPatient(t, synth.OrgPartnerRiverbend)
	pat2 := e.unconsentedPatient(t, synth.OrgPartnerNorthgate, pat)
	end := time.Now().UTC().AddDate(0, 0, 2)
	ingestRecords(t, e.g,
		consentRecord("consent-exp-1", pat, synth.OrgPartnerRiverbend, "active", end.Format(time.DateOnly)),
		referralRecord("ref-exp-1", pat, synth.OrgPartnerRiverbend),
		referralRecord("ref-exp-2", pat2, synth.OrgPartnerNorthgate))
	srID := mapping.ResourceID(clinic.KindReferral, "ref-exp-1")
	taskID := mapping.ResourceID(clinic.KindReferral, "ref-exp-1", "Task")
	task2 := mapping.ResourceID(clinic.KindReferral, "ref-exp-2", "Task")
	wantStatus(t, "package inside the period", e.do(t, http.MethodGet, "/fhir/ServiceRequest/"+srID, partner, nil), http.StatusOK)

	if n, err := e.g.closer.Sweep(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("sweep inside the period: %d %v", n, err)
	}
	if task, _ := e.task(t, taskID); task["status"] != "requested" {
		t.Fatalf("closed inside the period: %v", task["status"])
	}
	// The period has ended (its end date is covered whole).
	after := end.AddDate(0, 0, 2)
	n, err := e.g.closer.Sweep(ctx, after)
	if err != nil || n != 1 {
		t.Fatalf("sweep after the period: closed %d, %v; want 1", n, err)
	}
	if task, etag := e.task(t, taskID); task["status"] != "cancelled" || etag != `W/"2"` {
		t.Errorf("after the sweep: %v at %s", task["status"], etag)
	}
	if task, _ := e.task(t, task2); task["status"] != "requested" {
		t.Errorf("a referral never consented to was closed: %v", task["status"])
	}
	// A second sweep, as another replica's, closes nothing again.
	if n, err := e.g.closer.Sweep(ctx, after); err != nil || n != 0 {
		t.Errorf("second sweep: %d %v", n, err)
	}
}

// TestReferralPackageAcrossReplicas runs the package and its closing on
// two replicas sharing PostgreSQL and Redis: a package read cached at B
// is refused at B on the request after the consent is withdrawn at A, the
// Task closed at A is served closed at B, and two replicas sweeping at
// once close a lapsed referral once (docs/design/security.md RFL-5, RFL-6).
func TestReferralPackageAcrossReplicas(t *testing.T) {
	var pat string
	eA, eB := replicaPair(t, func(r json.RawMessage) bool {
		var h struct{ Kind, ID string }
		_ = json.Unmarshal(r, &h)
		if h.Kind == "patient" {
			pat = h.ID
		}
		// One patient's records, without its own consents and referrals.
		return h.Kind != "consent" && h.Kind != "referral"
	})
	if pat == "" {
		t.Fatal("no patient record")
	}
	pid := mapping.ResourceID(clinic.KindPatient, pat)
	partner := eA.token(t, "riverbend-pkg", "partner", orgID(synth.OrgPartnerRiverbend), packageScope)
	ingestRecords(t, eA.g, referralRecord("ref-rep-1", pat, synth.OrgPartnerRiverbend),
		consentRecord("consent-rep-1", pat, synth.OrgPartnerRiverbend, "active", "", "diagnoses"))
	sr := "/fhir/ServiceRequest/" + mapping.ResourceID(clinic.KindReferral, "ref-rep-1")
	taskID := mapping.ResourceID(clinic.KindReferral, "ref-rep-1", "Task")
	wantStatus(t, "package at B", eB.do(t, http.MethodGet, sr, partner, nil), http.StatusOK)
	conditions := eB.total(t, partner, "Condition?patient=Patient/"+pid)
	if conditions == 0 {
		t.Fatal("the partner sees no Condition at B")
	}
	// Again at B: served from its cache.
	wantStatus(t, "package at B again", eB.do(t, http.MethodGet, sr, partner, nil), http.StatusOK)
	// The partner finds its work at B and moves it at both.
	poll := "Task?owner=Organization/" + orgID(synth.OrgPartnerRiverbend) + "&status=requested&_id=" + taskID
	if n := eB.total(t, partner, poll); n != 1 {
		t.Fatalf("the partner's poll at B finds %d", n)
	}
	wantStatus(t, "received at A", eA.move(t, partner, taskID, `W/"1"`, "received", nil), http.StatusOK)
	wantStatus(t, "accepted at B", eB.move(t, partner, taskID, `W/"2"`, "accepted", nil), http.StatusOK, `"code":"3.0"`)
	if n := eB.total(t, partner, poll); n != 0 {
		t.Errorf("the accepted referral still polls as requested at B: %d", n)
	}

	ingestRecords(t, eA.g, consentRecord("consent-rep-1", pat, synth.OrgPartnerRiverbend, "inactive", "", "diagnoses"))
	wantStatus(t, "package at B after the withdrawal at A", eB.do(t, http.MethodGet, sr, partner, nil), http.StatusNotFound)
	if n := eB.total(t, partner, "Condition?patient=Patient/"+pid); n != 0 {
		t.Errorf("Conditions at B after the withdrawal: %d", n)
	}
	r := eB.do(t, http.MethodGet, "/fhir/Task/"+taskID, partner, nil)
	wantStatus(t, "Task at B", r, http.StatusOK, `"status":"cancelled"`, `"code":"consent-withdrawn"`)
	if etag := r.header.Get("ETag"); etag != `W/"4"` {
		t.Errorf("Task at B: %s", etag)
	}

	// A consent that lapses: both replicas sweep at once after its end.
	end := time.Now().UTC().AddDate(0, 0, 1)
	ingestRecords(t, eA.g, consentRecord("consent-rep-2", pat, synth.OrgPartnerNorthgate, "active", end.Format(time.DateOnly)),
		referralRecord("ref-rep-2", pat, synth.OrgPartnerNorthgate))
	task2 := mapping.ResourceID(clinic.KindReferral, "ref-rep-2", "Task")
	if task, _ := eB.task(t, task2); task["status"] != "requested" {
		t.Fatalf("lapsing referral: %v", task["status"])
	}
	after := end.AddDate(0, 0, 2)
	var wg sync.WaitGroup
	closed := make([]int, 2)
	errs := make([]error, 2)
	for i, e := range []*referralEnv{eA, eB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closed[i], errs[i] = e.g.closer.Sweep(context.Background(), after)
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || closed[0]+closed[1] != 1 {
		t.Errorf("two sweeps closed %v (%v), want 1 in all", closed, errs)
	}
	if task, etag := eA.task(t, task2); task["status"] != "cancelled" || etag != `W/"2"` {
		t.Errorf("lapsed referral at A: %v at %s", task["status"], etag)
	}
	if task, etag := eB.task(t, task2); task["status"] != "cancelled" || etag != `W/"2"` {
		t.Errorf("lapsed referral at B: %v at %s", task["status"], etag)
	}
}
