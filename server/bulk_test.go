package server

import (
	"context"
	"net/http"
	"testing"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
)

// TestBulkDefersReferralClosing: a Consent withdrawn by an ingest inside a
// bulk load (Data.BeginBulk; searches may fail until it ends) closes its
// referral Task when the load ends, not during it, and not never
// (docs/design/security.md RFL-6, docs/design/architecture.md PERF-SQLB-1).
func TestBulkDefersReferralClosing(t *testing.T) {
	ctx := context.Background()
	e := newReferralEnv(t)
	riverbend := orgID(synth.OrgPartnerRiverbend)
	partner := e.token(t, "riverbend-bulk", "partner", riverbend, packageScope)
	pat := e.unconsentedPatient(t, synth.OrgPartnerRiverbend)
	dxs := demoRecordIDs(t, pat, "diagnosis")
	if len(dxs) == 0 {
		t.Fatalf("demo patient %s has no diagnosis", pat)
	}
	ingestRecords(t, e.g, referralRecord("ref-bulk-1", pat, synth.OrgPartnerRiverbend, map[string]any{"diagnosisIds": dxs[:1]}))
	ingestRecords(t, e.g, consentRecord("consent-bulk-1", pat, synth.OrgPartnerRiverbend, "active", "", "diagnoses"))
	taskID := mapping.ResourceID(clinic.KindReferral, "ref-bulk-1", "Task")
	wantStatus(t, "received", e.move(t, partner, taskID, `W/"1"`, "received", nil), http.StatusOK)

	end, ok, err := e.g.BeginBulk(ctx)
	if err != nil || !ok {
		t.Fatalf("BeginBulk: ok %v, %v", ok, err)
	}
	ingestRecords(t, e.g, consentRecord("consent-bulk-1", pat, synth.OrgPartnerRiverbend, "inactive", "", "diagnoses"))
	wantStatus(t, "Task during the load", e.do(t, http.MethodGet, "/fhir/Task/"+taskID, e.ehr, nil), http.StatusOK, `"status":"received"`)
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "Task after the load", e.do(t, http.MethodGet, "/fhir/Task/"+taskID, e.ehr, nil), http.StatusOK,
		`"status":"cancelled"`, `"code":"consent-withdrawn"`)
}
