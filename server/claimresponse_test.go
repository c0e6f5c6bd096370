package server

import (
	"bytes"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
)

// answerEnv is the referral env with the two payers' clients.
type answerEnv struct {
	*referralEnv
	blueheron, cascade string // payer tokens
}

// bundleOf searches as tok and returns the matching resources.
func (e *answerEnv) searchAll(t *testing.T, tok, query string) []map[string]any {
	t.Helper()
	r := e.do(t, http.MethodGet, "/fhir/"+query, tok, nil)
	if r.status != http.StatusOK {
		t.Fatalf("%s: %d %s", query, r.status, r.body)
	}
	var out []map[string]any
	entries, _ := r.json(t)["entry"].([]any)
	for _, x := range entries {
		if m, _ := x.(map[string]any); m != nil {
			// A view's "suppressed" outcome entry (PRIV-17) is no match.
			if s, _ := m["search"].(map[string]any); s != nil && s["mode"] == "outcome" {
				continue
			}
			if res, _ := m["resource"].(map[string]any); res != nil {
				out = append(out, res)
			}
		}
	}
	return out
}

// answerBody is docs/examples/claim-response.json for the order of
// patient, from the payer org, with the identifier value and review
// action (outcome) given.
func answerBody(t *testing.T, order, patient, payer, value, action, outcome string) []byte {
	t.Helper()
	b, err := os.ReadFile("../docs/examples/claim-response.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]string{
		{"MedicationRequest/3eeed314-9742-5bb0-9934-c13e2665ff23", order},
		{"Patient/e1f3b14d-4eaf-5088-837b-ee9d814ba701", patient},
		{"Organization/f379e7fd-0c74-5e84-809d-753a423fc9b4", "Organization/" + payer},
		{"Organization/af9b8dee-2de1-510a-8d14-3d7799b5a02f", "Organization/" + orgID(synth.OrgClinic)},
		{`"value": "BHP-2025-0042117"`, `"value": "` + value + `"`},
		{`"code": "A1"`, `"code": "` + action + `"`},
		{`"outcome": "complete"`, `"outcome": "` + outcome + `"`},
		{`"created": "2025-03-05T10:12:00-05:00"`, `"created": "2099-01-01T00:00:00Z"`}, // the latest answer
	} {
		b = bytes.ReplaceAll(b, []byte(r[0]), []byte(r[1]))
	}
	return b
}

// TestClaimResponseFromPayer drives a payer's answer end to end with real
// tokens (docs/prior-auth.md; docs/design/security.md PA-4): only the payer
// of the course's coverage posts it, within its view; it is stored once
// (re-sent: nothing new; changed: a new version), with a Provenance naming
// the payer; bad answers are 422 naming the element; $pa-status then
// reflects it for the EHR and for the payer, who sees only its own
// answers.
func TestClaimResponseFromPayer(t *testing.T) {
	re := newReferralEnv(t)
	bh, cascade := orgID(synth.OrgPayerBlueHeron), orgID(synth.OrgPayerCascade)
	payerScope := "system/*.rs system/ClaimResponse.c"
	e := &answerEnv{referralEnv: re,
		blueheron: re.token(t, "blueheron-pa", "payer", bh, payerScope),
		cascade:   re.token(t, "cascade-pa", "payer", cascade, payerScope)}

	// An order of Blue Heron within its view, and one outside it.
	covPayer := map[string]string{}
	for _, c := range e.searchAll(t, e.ehr, "Coverage?_count=500") {
		covPayer["Coverage/"+c["id"].(string)] = str(c, "payor", 0, "reference")
	}
	visible := map[string]bool{}
	for _, m := range e.searchAll(t, e.blueheron, "MedicationRequest?_count=500") {
		visible[m["id"].(string)] = true
	}
	var order, patient, outside string
	for _, m := range e.searchAll(t, e.ehr, "MedicationRequest?_count=500") {
		id := m["id"].(string)
		bhOrder := covPayer[str(m, "insurance", 0, "reference")] == "Organization/"+bh
		switch {
		case visible[id] && bhOrder && order == "" && strings.Contains(mustJSON(m), `"code":"46713006"`):
			// An esketamine order (nasal route): Blue Heron's policy for
			// it asks for a psychiatrist prescriber.
			order, patient = "MedicationRequest/"+id, str(m, "subject", "reference")
		case !visible[id] && outside == "":
			outside = "MedicationRequest/" + id
		}
	}
	if order == "" || outside == "" {
		t.Fatalf("demo data: order %q, outside %q", order, outside)
	}
	post := func(tok string, body []byte) edgeAnswer {
		return e.do(t, http.MethodPost, "/fhir/ClaimResponse", tok, body)
	}

	t.Run("only the payer posts, within its view", func(t *testing.T) {
		good := answerBody(t, order, patient, bh, "BH-1", "A4", "queued")
		wantStatus(t, "ehr client", post(e.ehr, good), http.StatusForbidden)
		wantStatus(t, "partner client", post(e.partner, good), http.StatusForbidden)
		wantStatus(t, "as another payer", post(e.cascade, good), http.StatusForbidden, "ClaimResponse.insurer.reference")
		// The other payer, for its own name, on Blue Heron's order: the
		// same 404 as an order that does not exist or lies outside its view.
		other := post(e.cascade, answerBody(t, order, patient, cascade, "C-1", "A4", "queued"))
		none := post(e.cascade, answerBody(t, "MedicationRequest/00000000-0000-5000-8000-000000000000", patient, cascade, "C-1", "A4", "queued"))
		wantStatus(t, "another payer's order", other, http.StatusNotFound, "ClaimResponse.item[0].extension[0].valueReference")
		wantStatus(t, "no such order", none, http.StatusNotFound)
		if !bytes.Equal(other.body, none.body) {
			t.Errorf("another payer's order and none answer differently:\n%s\n%s", other.body, none.body)
		}
		wantStatus(t, "outside the view", post(e.blueheron, answerBody(t, outside, patient, bh, "BH-9", "A4", "queued")), http.StatusNotFound)
		noScope := re.token(t, "blueheron-ro", "payer", bh, "system/*.rs")
		wantStatus(t, "without ClaimResponse.c", post(noScope, good), http.StatusForbidden)
	})

	t.Run("bad answers name the element", func(t *testing.T) {
		b := answerBody(t, order, patient, bh, "BH-1", "A1", "queued")
		wantStatus(t, "outcome against the review action", post(e.blueheron, b), http.StatusUnprocessableEntity, "ClaimResponse.outcome")
		b = bytes.Replace(answerBody(t, order, patient, bh, "BH-1", "A1", "complete"), []byte(`"preAuthRef": "BHP-2025-0042117",`), nil, 1)
		wantStatus(t, "approval without number", post(e.blueheron, b), http.StatusUnprocessableEntity, "ClaimResponse.preAuthRef")
		b = bytes.Replace(answerBody(t, order, patient, bh, "BH-1", "A4", "queued"), []byte(`"identifier": [{"system": "https://blueheron.example/pa-decisions", "value": "BH-1"}],`), nil, 1)
		wantStatus(t, "no identifier", post(e.blueheron, b), http.StatusUnprocessableEntity, "ClaimResponse.identifier[0]")
		b = answerBody(t, order, "Patient/00000000-0000-5000-8000-000000000000", bh, "BH-1", "A4", "queued")
		wantStatus(t, "another patient", post(e.blueheron, b), http.StatusUnprocessableEntity, "ClaimResponse.patient.reference")
		b = bytes.Replace(answerBody(t, order, patient, bh, "BH-1", "A4", "queued"), []byte(`"request": {"identifier"`), []byte(`"request": {"reference": "Claim/x", "identifier"`), 1)
		wantStatus(t, "Claim by reference", post(e.blueheron, b), http.StatusUnprocessableEntity, "ClaimResponse.request.reference")
		b = bytes.Replace(answerBody(t, order, patient, bh, "BH-1", "A4", "queued"), []byte(`"use": "preauthorization"`), []byte(`"use": "claim"`), 1)
		wantStatus(t, "not a preauthorization", post(e.blueheron, b), http.StatusUnprocessableEntity, "ClaimResponse.use")
		wantStatus(t, "not JSON", post(e.blueheron, []byte(`{`)), http.StatusBadRequest)
		wantStatus(t, "not a ClaimResponse", post(e.blueheron, []byte(`{"resourceType":"Claim"}`)), http.StatusBadRequest, "ClaimResponse.resourceType")
		if n := e.total(t, e.ehr, "ClaimResponse?identifier=https://blueheron.example/pa-decisions|BH-1"); n != 0 {
			t.Errorf("a refused answer was stored (%d)", n)
		}
	})

	var id string
	t.Run("stored once, versioned, with provenance", func(t *testing.T) {
		pended := answerBody(t, order, patient, bh, "BH-1", "A4", "queued")
		pended = bytes.Replace(pended, []byte(`"preAuthRef": "BHP-2025-0042117",`), nil, 1)
		r := post(e.blueheron, pended)
		wantStatus(t, "pended", r, http.StatusCreated)
		loc := r.header.Get("Location")
		if !strings.HasPrefix(loc, e.base+"/fhir/ClaimResponse/") || !strings.HasSuffix(loc, "/_history/1") || r.header.Get("ETag") != `W/"1"` {
			t.Fatalf("Location %q ETag %q", loc, r.header.Get("ETag"))
		}
		id = strings.Split(strings.TrimPrefix(loc, e.base+"/fhir/ClaimResponse/"), "/")[0]
		wantStatus(t, "re-sent", post(e.blueheron, pended), http.StatusOK, `"versionId":"1"`)
		approved := answerBody(t, order, patient, bh, "BH-1", "A1", "complete")
		wantStatus(t, "decided", post(e.blueheron, approved), http.StatusOK, `"versionId":"2"`, `"preAuthRef":"BHP-2025-0042117"`)
		wantStatus(t, "decided, re-sent", post(e.blueheron, approved), http.StatusOK, `"versionId":"2"`)
		h := e.do(t, http.MethodGet, "/fhir/ClaimResponse/"+id+"/_history", e.ehr, nil)
		wantStatus(t, "history", h, http.StatusOK, `"total":2`)
		if n := e.total(t, e.ehr, "Provenance?target=ClaimResponse/"+id+"&agent=Organization/"+bh); n != 1 {
			t.Errorf("%d Provenances naming the payer", n)
		}
		cr := e.do(t, http.MethodGet, "/fhir/ClaimResponse/"+id, e.ehr, nil)
		wantStatus(t, "EHR read", cr, http.StatusOK, `"code":"PSY"`, order)
		if issues := conformance.Validate(cr.body); len(issues) > 0 {
			t.Errorf("stored answer: %v", issues)
		}
		// Every create, and the refused attempt of the EHR client, is audited
		// with the payer's purpose of use.
		awaitAudit(t, e.g, map[string]func(store.AuditRecord) bool{
			"the create": func(r store.AuditRecord) bool {
				return r.Interaction == "create" && r.Type == "ClaimResponse" && r.ResourceID == id &&
					r.Status == http.StatusCreated && r.Purpose == "HPAYMT" && r.Patient == strings.TrimPrefix(patient, "Patient/")
			},
			"the EHR client's refused create": func(r store.AuditRecord) bool {
				return r.Interaction == "create" && r.Type == "ClaimResponse" && r.ClientID == "lakeside-ehr" && r.Status == http.StatusForbidden
			},
		})
		md := e.do(t, http.MethodGet, "/fhir/metadata", "", nil)
		if !strings.Contains(string(md.body), `"type":"ClaimResponse"`) || !strings.Contains(string(md.body), `{"code":"create","documentation":"A payer's answer`) {
			t.Errorf("the CapabilityStatement does not state the ClaimResponse create")
		}
	})

	t.Run("$pa-status reflects it", func(t *testing.T) {
		var plan string
		for _, p := range e.searchAll(t, e.ehr, "CarePlan?patient="+patient) {
			r := e.do(t, http.MethodGet, "/fhir/CarePlan/"+p["id"].(string)+"/$pa-status", e.ehr, nil)
			if r.status == http.StatusOK && strings.Contains(string(r.body), "ClaimResponse/"+id) {
				plan = p["id"].(string)
				wantStatus(t, "EHR status", r, http.StatusOK, `{"name":"outcome","valueCode":"approved"}`, `{"name":"approved","valueInteger":16}`)
			}
		}
		if plan == "" {
			t.Fatalf("no course of %s answers with ClaimResponse/%s", patient, id)
		}
		r := e.do(t, http.MethodGet, "/fhir/CarePlan/"+plan+"/$pa-status", e.blueheron, nil)
		wantStatus(t, "payer status", r, http.StatusOK, "ClaimResponse/"+id, `"valueCode":"approved"`)
		// The payer's own checklist and request of the course, with its
		// token: the psychiatrist criterion of its policy is answered from
		// the prescriber's recorded specialty, not unknown.
		crit := e.do(t, http.MethodGet, "/fhir/CarePlan/"+plan+"/$pa-criteria", e.blueheron, nil)
		wantStatus(t, "payer criteria", crit, http.StatusOK, `"valueString":"esketamine-blue-heron|`, `"valueCode":"psychiatrist-prescriber"`)
		status := ""
		for _, q := range crit.json(t)["parameter"].([]any) {
			parts, _ := q.(map[string]any)["part"].([]any)
			if len(parts) > 2 && str(parts, 0, "valueCode") == "psychiatrist-prescriber" {
				status = str(parts, 2, "valueCode")
			}
		}
		if status != "met" && status != "not-met" {
			t.Errorf("payer criteria: psychiatrist-prescriber %q, want met or not-met: %s", status, crit.body)
		}
		if b := e.do(t, http.MethodGet, "/fhir/CarePlan/"+plan+"/$pas-bundle", e.blueheron, nil); b.status != http.StatusOK && b.status != http.StatusUnprocessableEntity {
			t.Errorf("payer PAS request: %d %s", b.status, b.body)
		}
		// The payer sees its own answers only; the other payer none.
		own := e.searchAll(t, e.blueheron, "ClaimResponse?_count=500")
		if len(own) == 0 {
			t.Error("Blue Heron sees none of its answers")
		}
		for _, c := range own {
			if str(c, "insurer", "reference") != "Organization/"+bh {
				t.Errorf("Blue Heron sees %s of %s", c["id"], str(c, "insurer", "reference"))
			}
		}
		if got := e.searchAll(t, e.cascade, "ClaimResponse?_id="+id); len(got) != 0 {
			t.Errorf("Cascade sees Blue Heron's answer: %v", got)
		}
		wantStatus(t, "Cascade read", e.do(t, http.MethodGet, "/fhir/ClaimResponse/"+id, e.cascade, nil), http.StatusNotFound)
	})
	t.Run("two answers with one identifier at once", func(t *testing.T) {
		// Whatever the interleaving: one create, never two, never a 5xx; a
		// loser is 409 (send again) or, when it came second, a new version.
		bodies := [][]byte{
			bytes.Replace(answerBody(t, order, patient, bh, "BH-RACE", "A4", "queued"), []byte(`"preAuthRef": "BHP-2025-0042117",`), nil, 1),
			answerBody(t, order, patient, bh, "BH-RACE", "A1", "complete"),
		}
		statuses := make([]int, 2)
		var wg sync.WaitGroup
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = post(e.blueheron, bodies[i]).status
			}()
		}
		wg.Wait()
		created, conflict := 0, 0
		for _, st := range statuses {
			switch st {
			case http.StatusCreated:
				created++
			case http.StatusConflict:
				conflict++
			case http.StatusOK:
			default:
				t.Fatalf("statuses %v", statuses)
			}
		}
		if created != 1 {
			t.Fatalf("statuses %v: want exactly one create", statuses)
		}
		found := e.searchAll(t, e.ehr, "ClaimResponse?identifier=https://blueheron.example/pa-decisions|BH-RACE")
		if len(found) != 1 {
			t.Fatalf("%d ClaimResponses with the identifier", len(found))
		}
		h := e.do(t, http.MethodGet, "/fhir/ClaimResponse/"+found[0]["id"].(string)+"/_history", e.ehr, nil)
		want := `"total":2`
		if conflict == 1 {
			want = `"total":1`
		}
		wantStatus(t, "history after the race", h, http.StatusOK, want)
	})
}

// str digs a string out of decoded JSON by member names and array indexes.
func str(v any, path ...any) string {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return ""
			}
			v = a[k]
		}
	}
	s, _ := v.(string)
	return s
}

// TestMADRSTotalInPayerView: a MADRS sent with its items maps to a total
// (N) and an item-scores Observation (R, item 10 rates suicidal thoughts).
// A payer, who never clears R, reads the total of every such MADRS of a
// patient whose assessments it may see, without components, and never the
// item scores (docs/fhir-mapping.md "Security labels", PRIV-14).
func TestMADRSTotalInPayerView(t *testing.T) {
	re := newReferralEnv(t)
	e := &answerEnv{referralEnv: re,
		blueheron: re.token(t, "blueheron-pa", "payer", orgID(synth.OrgPayerBlueHeron), "system/*.rs")}
	const scales = "http://ketabridge.org/fhir/CodeSystem/ketabridge-scales"
	items := e.searchAll(t, e.ehr, "Observation?code="+scales+"|madrs-items&_count=500")
	if len(items) == 0 {
		t.Fatal("the demo data has no MADRS with items")
	}
	if got := e.searchAll(t, e.blueheron, "Observation?code="+scales+"|madrs-items&_count=500"); len(got) != 0 {
		t.Errorf("the payer finds %d MADRS item-scores Observations", len(got))
	}
	seen := 0
	for _, it := range items {
		id := it["id"].(string)
		if !strings.Contains(mustJSON(it["meta"]), `"code":"R"`) || len(it["component"].([]any)) != 10 {
			t.Errorf("item scores %s: %v", id, it["meta"])
		}
		wantStatus(t, "payer reads the item scores", e.do(t, http.MethodGet, "/fhir/Observation/"+id, e.blueheron, nil), http.StatusNotFound)
		total := str(it, "hasMember", 0, "reference")
		patient := str(it, "subject", "reference")
		// The payer sees this patient's assessments when it finds any of
		// them (the PHQ-9 totals, N).
		assessments := e.searchAll(t, e.blueheron, "Observation?patient="+patient+"&code=http://loinc.org|44261-6&_count=1")
		r := e.do(t, http.MethodGet, "/fhir/"+total, e.blueheron, nil)
		if len(assessments) == 0 {
			wantStatus(t, "a total outside the payer's view", r, http.StatusNotFound)
			continue
		}
		wantStatus(t, "payer reads the total", r, http.StatusOK, `"code":"madrs-total"`, `"valueInteger"`, `"code":"N"`)
		if strings.Contains(string(r.body), `"component"`) || strings.Contains(string(r.body), "madrs-item-") {
			t.Errorf("the payer's MADRS total carries items: %s", r.body)
		}
		seen++
	}
	t.Logf("%d MADRS with items; the payer reads %d totals", len(items), seen)
	if seen == 0 {
		t.Error("the payer reads no MADRS total")
	}
}

// TestPAOperationsPayerAndEHR runs the prior-authorization operations with
// the real tokens of Blue Heron and of the EHR over every course the payer
// sees in the demo data: the checklist answers for each, and the payer, who
// sees less, never has a criterion met that the EHR's checklist of the same
// course does not also have met (docs/design/security.md PA-1, PA-2); the
// status answers as for the EHR or 404, and the PAS request is a Bundle or
// a 422 naming what to record.
func TestPAOperationsPayerAndEHR(t *testing.T) {
	re := newReferralEnv(t)
	e := &answerEnv{referralEnv: re,
		blueheron: re.token(t, "blueheron-pa", "payer", orgID(synth.OrgPayerBlueHeron), "system/*.rs")}
	criteria := func(tok, plan string) (string, map[string]string) {
		r := e.do(t, http.MethodGet, "/fhir/CarePlan/"+plan+"/$pa-criteria", tok, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s criteria: %d %s", plan, r.status, r.body)
		}
		out, result := map[string]string{}, ""
		for _, q := range r.json(t)["parameter"].([]any) {
			q := q.(map[string]any)
			if q["name"] == "result" {
				result, _ = q["valueCode"].(string)
			}
			if parts, _ := q["part"].([]any); q["name"] == "criterion" && len(parts) > 2 {
				out[str(parts, 0, "valueCode")] = str(parts, 2, "valueCode")
			}
		}
		return result, out
	}
	plans := e.searchAll(t, e.blueheron, "CarePlan?_count=500")
	if len(plans) == 0 {
		t.Fatal("the payer sees no course")
	}
	results, statuses := map[string]int{}, map[int]int{}
	for _, p := range plans {
		id := p["id"].(string)
		if r := e.do(t, http.MethodGet, "/fhir/CarePlan/"+id+"/$pa-criteria", e.ehr, nil); r.status == http.StatusUnprocessableEntity {
			// A course no criteria set covers (IM or oral; priorauth
			// Policy.Routes): the payer is told the same, not another
			// route's checklist.
			wantStatus(t, id+" EHR criteria", r, http.StatusUnprocessableEntity, "no prior-authorization policy covers")
			wantStatus(t, id+" payer criteria", e.do(t, http.MethodGet, "/fhir/CarePlan/"+id+"/$pa-criteria", e.blueheron, nil),
				http.StatusUnprocessableEntity, "no prior-authorization policy covers")
			results["no policy"]++
			continue
		}
		result, payer := criteria(e.blueheron, id)
		_, ehr := criteria(e.ehr, id)
		results[result]++
		for code, st := range payer {
			if st == "met" && ehr[code] != "met" {
				t.Errorf("%s: %s met for the payer, %q for the EHR", id, code, ehr[code])
			}
		}
		ps := e.do(t, http.MethodGet, "/fhir/CarePlan/"+id+"/$pa-status", e.blueheron, nil)
		es := e.do(t, http.MethodGet, "/fhir/CarePlan/"+id+"/$pa-status", e.ehr, nil)
		statuses[ps.status]++
		// The renewal criteria are checked under each caller's view and may
		// differ; the rest is the same answer.
		core := func(a edgeAnswer) string {
			var kept []any
			for _, q := range a.json(t)["parameter"].([]any) {
				if q.(map[string]any)["name"] != "renewalCriteria" {
					kept = append(kept, q)
				}
			}
			return mustJSON(kept)
		}
		if ps.status == http.StatusOK && (es.status != http.StatusOK || core(ps) != core(es)) || ps.status != http.StatusOK && ps.status != http.StatusNotFound {
			t.Errorf("%s status: payer %d %s, EHR %d %s", id, ps.status, ps.body, es.status, es.body)
		}
		if b := e.do(t, http.MethodGet, "/fhir/CarePlan/"+id+"/$pas-bundle", e.blueheron, nil); b.status != http.StatusOK && b.status != http.StatusUnprocessableEntity {
			t.Errorf("%s PAS request: %d %s", id, b.status, b.body)
		}
	}
	t.Logf("%d courses: results %v, status answers %v", len(plans), results, statuses)
	if statuses[http.StatusOK] == 0 {
		t.Error("the payer reads no authorization status")
	}
}
