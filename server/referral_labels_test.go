package server

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/fhir/bulkclient"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
)

// taskLabelsOf returns the meta.security codes of a served Task and
// whether it is tagged SUBSETTED.
func taskLabelsOf(t *testing.T, r edgeAnswer) ([]string, bool) {
	t.Helper()
	b := r.json(t)
	if b["resourceType"] == "Bundle" {
		entries, _ := b["entry"].([]any)
		if len(entries) != 1 {
			t.Fatalf("want one Task in the Bundle: %s", r.body)
		}
		b, _ = entries[0].(map[string]any)["resource"].(map[string]any)
	}
	meta, _ := b["meta"].(map[string]any)
	var codes []string
	sec, _ := meta["security"].([]any)
	for _, s := range sec {
		codes = append(codes, s.(map[string]any)["code"].(string))
	}
	slices.Sort(codes)
	subsetted := false
	tags, _ := meta["tag"].([]any)
	for _, tg := range tags {
		if tg.(map[string]any)["code"] == "SUBSETTED" {
			subsetted = true
		}
	}
	return codes, subsetted
}

// TestReferralTaskLabels checks that a referral Task, which a partner sees
// whatever the patient's consent (PRIV-12), is served to it with only the
// security labels its consent clears, tagged SUBSETTED, in reads,
// searches and the answer to its own update; that it cannot search Task
// by _security nor probe the labels with a JSON Patch test
// (docs/design/security.md PRIV-19).
func TestReferralTaskLabels(t *testing.T) {
	e := newReferralEnv(t)
	riverbend := orgID(synth.OrgPartnerRiverbend)
	partner := e.token(t, "riverbend-lbl", "partner", riverbend, packageScope)
	pat := e.unconsentedPatient(t, synth.OrgPartnerRiverbend)
	// A suicide-risk reason: the Task is labelled PSY and R.
	ingestRecords(t, e.g, referralRecord("ref-lbl-1", pat, synth.OrgPartnerRiverbend, map[string]any{"reason": "R45.851"}))
	taskID := mapping.ResourceID(clinic.KindReferral, "ref-lbl-1", "Task")
	path := "/fhir/Task/" + taskID

	if got, sub := taskLabelsOf(t, e.do(t, http.MethodGet, path, e.ehr, nil)); !slices.Equal(got, []string{"PSY", "R"}) || sub {
		t.Fatalf("the clinic reads labels %v (subsetted %v), want PSY and R in full", got, sub)
	}
	check := func(what string, want []string, wantSub bool) {
		t.Helper()
		r := e.do(t, http.MethodGet, path, partner, nil)
		wantStatus(t, what+": read", r, http.StatusOK)
		if got, sub := taskLabelsOf(t, r); !slices.Equal(got, want) || sub != wantSub {
			t.Errorf("%s: read labels %v subsetted %v, want %v %v", what, got, sub, want, wantSub)
		}
		r = e.do(t, http.MethodGet, "/fhir/Task?owner=Organization/"+riverbend+"&_id="+taskID, partner, nil)
		wantStatus(t, what+": search", r, http.StatusOK)
		if got, sub := taskLabelsOf(t, r); !slices.Equal(got, want) || sub != wantSub {
			t.Errorf("%s: search labels %v subsetted %v, want %v %v", what, got, sub, want, wantSub)
		}
		// A Bulk export carries the Task as a read serves it (BULK-10).
		if got, sub := taskLabelsOf(t, exportedTask(t, e, partner, taskID)); !slices.Equal(got, want) || sub != wantSub {
			t.Errorf("%s: exported labels %v subsetted %v, want %v %v", what, got, sub, want, wantSub)
		}
		for _, q := range []string{"_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R",
			"_security:not=R", "_security=PSY", "_security:missing=true", "_sort=_security", "_sort=-_security"} {
			wantStatus(t, what+": "+q, e.do(t, http.MethodGet, "/fhir/Task?"+q, partner, nil), http.StatusBadRequest, "_security")
		}
	}

	check("without consent", nil, true)
	// Nor by a bulk export's _typeFilter (checked at the kick-off); the
	// same export without it is accepted.
	exp := "/fhir/$export?_type=Task&_typeFilter=" + url.QueryEscape("Task?_security=R")
	wantStatus(t, "export filtering Task by _security", e.do(t, http.MethodGet, exp, partner, nil, "Prefer", "respond-async"),
		http.StatusBadRequest, "_security")
	wantStatus(t, "export filtering Task by status", e.do(t, http.MethodGet, "/fhir/$export?_type=Task&_typeFilter="+
		url.QueryEscape("Task?status=requested"), partner, nil, "Prefer", "respond-async"), http.StatusAccepted)
	// A payer never sees a referral Task.
	payer := e.token(t, "blueheron-lbl", "payer", orgID(synth.OrgPayerBlueHeron), "system/*.rs")
	wantStatus(t, "payer reads the Task", e.do(t, http.MethodGet, path, payer, nil), http.StatusNotFound)
	wantStatus(t, "payer searches Task", e.do(t, http.MethodGet, "/fhir/Task?_id="+taskID, payer, nil), http.StatusForbidden)
	// A JSON Patch test of the withheld label fails as on a Task without
	// labels (the path is not in the Task as served: 422); the same move
	// without the test goes through, answered as served.
	probe := []byte(`[{"op":"test","path":"/meta/security/1/code","value":"R"},{"op":"replace","path":"/status","value":"received"}]`)
	wantStatus(t, "patch probing R", e.do(t, http.MethodPatch, path, partner, probe, "Content-Type", "application/json-patch+json", "If-Match", `W/"1"`), http.StatusUnprocessableEntity, "path does not exist")
	mv := e.do(t, http.MethodPatch, path, partner, []byte(`[{"op":"replace","path":"/status","value":"received"}]`),
		"Content-Type", "application/json-patch+json", "If-Match", `W/"1"`)
	wantStatus(t, "patch", mv, http.StatusOK, `"status":"received"`)
	if got, sub := taskLabelsOf(t, mv); len(got) != 0 || !sub {
		t.Errorf("the answer to the partner's update: labels %v subsetted %v", got, sub)
	}
	if got, _ := taskLabelsOf(t, e.do(t, http.MethodGet, path, e.ehr, nil)); !slices.Equal(got, []string{"PSY", "R"}) {
		t.Errorf("the partner's update lost the stored labels: %v", got)
	}

	// A consent of diagnoses clears PSY, not R (nor N beside it).
	ingestRecords(t, e.g, consentRecord("consent-lbl-1", pat, synth.OrgPartnerRiverbend, "active", "", "diagnoses"))
	check("consent of diagnoses", []string{"PSY"}, true)
	// A consent listing assessments clears R: the Task in full.
	ingestRecords(t, e.g, consentRecord("consent-lbl-1", pat, synth.OrgPartnerRiverbend, "active", "", "diagnoses", "assessments"))
	check("consent listing assessments", []string{"PSY", "R"}, false)
}

// exportedTask runs a Bulk Data export of Task with token and returns the
// line of Task/id as an answer (its body the resource).
func exportedTask(t *testing.T, e *referralEnv, token, id string) edgeAnswer {
	t.Helper()
	ctx := context.Background()
	bc := &bulkclient.Client{HTTP: http.DefaultClient, MinPoll: 10 * time.Millisecond, MaxPoll: time.Second,
		Token: func(context.Context) (string, error) { return token, nil }}
	status, err := bc.Kickoff(ctx, bulkclient.Request{Base: e.base + "/fhir", Types: []string{"Task"}})
	if err != nil {
		t.Fatalf("export kick-off: %v", err)
	}
	m, err := bc.Wait(ctx, status)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	for _, o := range m.Output {
		rc, err := bc.Open(ctx, o.URL)
		if err != nil {
			t.Fatalf("export file: %v", err)
		}
		sc := bufio.NewScanner(rc)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte(`"id":"`+id+`"`)) {
				line := bytes.Clone(sc.Bytes())
				rc.Close()
				return edgeAnswer{status: http.StatusOK, body: line}
			}
		}
		rc.Close()
	}
	t.Fatalf("Task/%s not in the export", id)
	return edgeAnswer{}
}
