package fhir

import (
	"slices"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

// TestConsentFacts reads stored Consents as the mapping writes them
// (docs/fhir-mapping.md) into the decision's facts; what cannot be read
// fails closed (a permit counts for nothing, a deny always applies).
func TestConsentFacts(t *testing.T) {
	const local = "http://ketabridge.org/fhir/CodeSystem/ketabridge"
	consent := func(provision string) []byte {
		return []byte(`{"resourceType":"Consent","id":"c1","status":"active","patient":{"reference":"Patient/p1"},"provision":` + provision + `}`)
	}
	day := func(s string) time.Time { t, _ := time.Parse("2006-01-02", s); return t }
	tests := []struct {
		name string
		body []byte
		want auth.ConsentFacts
	}{
		{"permit with classes and a date period",
			consent(`{"type":"permit","period":{"start":"2025-01-06","end":"2025-03-03"},
			"actor":[{"role":{},"reference":{"reference":"Organization/o1"}}],
			"purpose":[{"system":"` + systemActReasonCodes + `","code":"HPAYMT"}],
			"class":[{"system":"` + local + `","code":"data-diagnoses"},{"system":"` + local + `","code":"data-assessments"}]}`),
			auth.ConsentFacts{ID: "c1", Patient: "p1", Status: "active", Recipients: []string{"o1"},
				Purposes: []auth.Purpose{auth.PurposePayment}, ClassesListed: true,
				Classes: auth.ClassSet(auth.ClassDiagnoses, auth.ClassAssessments),
				Start:   day("2025-01-06"), End: day("2025-03-04")}}, // a date end covers its day
		{"deny of every class, another purpose kept",
			consent(`{"type":"deny","actor":[{"reference":{"reference":"Organization/o2"}}],
			"purpose":[{"system":"` + systemActReasonCodes + `","code":"HOPERAT"}]}`),
			auth.ConsentFacts{ID: "c1", Patient: "p1", Status: "active", Deny: true, Recipients: []string{"o2"},
				Purposes: []auth.Purpose{"other:HOPERAT"}}},
		{"an unknown class code keeps the list non-empty",
			consent(`{"type":"permit","actor":[{"reference":{"reference":"Organization/o1"}}],
			"class":[{"system":"` + local + `","code":"data-genomics"}]}`),
			auth.ConsentFacts{ID: "c1", Patient: "p1", Status: "active", Recipients: []string{"o1"}, ClassesListed: true}},
		{"a permit with an unreadable period counts for nothing",
			consent(`{"type":"permit","period":{"end":"soon"},"actor":[{"reference":{"reference":"Organization/o1"}}]}`),
			auth.ConsentFacts{ID: "c1", Patient: "p1", Status: "unreadable-period", Recipients: []string{"o1"}}},
		{"a deny with an unreadable period always applies",
			consent(`{"type":"deny","period":{"end":"soon"},"actor":[{"reference":{"reference":"Organization/o1"}}]}`),
			auth.ConsentFacts{ID: "c1", Patient: "p1", Status: "active", Deny: true, Recipients: []string{"o1"}}},
		{"no provision",
			[]byte(`{"resourceType":"Consent","id":"c1","status":"active","patient":{"reference":"Patient/p1"}}`),
			auth.ConsentFacts{ID: "c1", Patient: "p1", Status: "no-provision"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := consentFacts(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			if got.ID != w.ID || got.Patient != w.Patient || got.Status != w.Status || got.Deny != w.Deny ||
				!slices.Equal(got.Recipients, w.Recipients) || !slices.Equal(got.Purposes, w.Purposes) ||
				got.Classes != w.Classes || got.ClassesListed != w.ClassesListed ||
				!got.Start.Equal(w.Start) || !got.End.Equal(w.End) {
				t.Errorf("consentFacts =\n%+v\nwant\n%+v", got, w)
			}
		})
	}
}

// TestDisclosureAccess: the access builder turns a disclosure into one
// restriction per type: Observations by category per patient's classes,
// R excluded unless cleared, Patient for every disclosed patient, the
// directory open, types outside the view refused.
func TestDisclosureAccess(t *testing.T) {
	disc := auth.Disclosure{Patients: map[string]auth.PatientGrant{
		"p1": {Classes: auth.ClassSet(auth.ClassAssessments, auth.ClassVitals), Restricted: true},
		"p2": {Classes: auth.ClassSet(auth.ClassAssessments)},
		"p3": {Classes: auth.ClassSet(auth.ClassCoverage)},
	}}
	notR := store.Clause{Param: "_security", Kind: store.KindToken, Not: true,
		Values: []store.Value{{System: systemConfidentiality, Code: "R"}}}
	cat := func(codes ...string) store.Clause {
		cl := store.Clause{Param: "category", Kind: store.KindToken}
		for _, c := range codes {
			cl.Values = append(cl.Values, store.Value{System: systemObsCategory, Code: c})
		}
		return cl
	}

	inView, all, patients, access := DisclosureAccess(auth.RolePartner, disc, "Observation")
	want := &store.Access{Terms: []store.AccessTerm{
		{Patients: []string{"p1"}, Types: []string{"Observation"}, Clauses: []store.Clause{cat("survey", "vital-signs")}},
		{Patients: []string{"p2"}, Types: []string{"Observation"}, Clauses: []store.Clause{cat("survey"), notR}},
	}}
	if !inView || all || !slices.Equal(patients, []string{"p1", "p2"}) || !accessEqual(access, want) {
		t.Errorf("partner Observation: inView %v all %v patients %v access %+v", inView, all, patients, access)
	}

	inView, _, patients, access = DisclosureAccess(auth.RolePayer, disc, "Coverage")
	want = &store.Access{Terms: []store.AccessTerm{{Patients: []string{"p3"}, Types: []string{"Coverage"}, Clauses: []store.Clause{notR}}}}
	if !inView || !slices.Equal(patients, []string{"p3"}) || !accessEqual(access, want) {
		t.Errorf("payer Coverage: patients %v access %+v", patients, access)
	}

	if _, _, patients, _ = DisclosureAccess(auth.RolePayer, disc, "Patient"); !slices.Equal(patients, []string{"p1", "p2", "p3"}) {
		t.Errorf("payer Patient: %v, want every disclosed patient", patients)
	}
	if _, _, patients, access = DisclosureAccess(auth.RolePayer, disc, "Condition"); len(patients) != 0 || access == nil || len(access.Terms) != 0 {
		t.Errorf("payer Condition without diagnoses: %v %+v, want nobody", patients, access)
	}
	if inView, all, _, access = DisclosureAccess(auth.RolePayer, disc, "Practitioner"); !inView || !all || access != nil {
		t.Errorf("payer Practitioner: inView %v all %v", inView, all)
	}
	for _, typ := range []string{"Consent", "Provenance", "AuditEvent"} {
		if inView, _, _, _ = DisclosureAccess(auth.RolePayer, disc, typ); inView {
			t.Errorf("payer %s in view", typ)
		}
	}
}

func accessEqual(a, b *store.Access) bool {
	if a == nil || b == nil || len(a.Terms) != len(b.Terms) {
		return a == b
	}
	for i := range a.Terms {
		x, y := a.Terms[i], b.Terms[i]
		if !slices.Equal(x.Patients, y.Patients) || !slices.Equal(x.Types, y.Types) || len(x.Clauses) != len(y.Clauses) {
			return false
		}
		for j := range x.Clauses {
			if x.Clauses[j].Param != y.Clauses[j].Param || x.Clauses[j].Not != y.Clauses[j].Not ||
				!slices.Equal(x.Clauses[j].Values, y.Clauses[j].Values) {
				return false
			}
		}
	}
	return true
}

// TestWithholds: docs/design/security.md PRIV-17. The withheld mark follows
// the consents and the query only: the classes the search asks for (an
// Observation category narrows them), the patients of the view within the
// token's and the search's own patients, and R for assessments and
// diagnoses. A patient outside the view, laboratory Observations, the
// directory and a partner's Tasks are never marked.
func TestWithholds(t *testing.T) {
	v := &outsideView{role: auth.RolePartner, org: "north", disc: auth.Disclosure{Patients: map[string]auth.PatientGrant{
		// p1: sessions and medications only; p2: everything, R cleared.
		"p1": {Classes: auth.ClassSet(auth.ClassDemographics, auth.ClassSessions, auth.ClassMedications)},
		"p2": {Classes: auth.AllClasses, Restricted: true},
		// p3: everything but R.
		"p3": {Classes: auth.AllClasses},
	}}}
	ref := func(param string, ids ...string) store.Clause {
		c := store.Clause{Param: param, Kind: store.KindReference}
		for _, id := range ids {
			c.Values = append(c.Values, store.Value{Str: "Patient/" + id})
		}
		return c
	}
	cat := func(system string, codes ...string) store.Clause {
		c := store.Clause{Param: "category", Kind: store.KindToken}
		for _, code := range codes {
			c.Values = append(c.Values, store.Value{System: system, Code: code})
		}
		return c
	}
	const obsCat = systemObsCategory
	tests := []struct {
		name    string
		typ     string
		clauses []store.Clause
		scope   []string
		want    bool
	}{
		{"p1 vitals", "Observation", []store.Clause{ref("patient", "p1"), cat(obsCat, "vital-signs")}, nil, true},
		{"p1 vitals, category without system", "Observation", []store.Clause{ref("subject", "p1"), cat("", "vital-signs")}, nil, true},
		{"p2 vitals", "Observation", []store.Clause{ref("patient", "p2"), cat(obsCat, "vital-signs")}, nil, false},
		{"p3 vitals", "Observation", []store.Clause{ref("patient", "p3"), cat(obsCat, "vital-signs")}, nil, false},
		{"p3 assessments: R not cleared", "Observation", []store.Clause{ref("patient", "p3"), cat(obsCat, "survey")}, nil, true},
		{"p3 diagnoses: R not cleared", "Condition", []store.Clause{ref("patient", "p3")}, nil, true},
		{"p2 diagnoses", "Condition", []store.Clause{ref("patient", "p2")}, nil, false},
		{"p1 sessions", "Encounter", []store.Clause{ref("patient", "p1")}, nil, false},
		{"p1 coverage", "Coverage", []store.Clause{ref("patient", "p1")}, nil, true},
		{"a patient outside the view", "Observation", []store.Clause{ref("patient", "p9"), cat(obsCat, "vital-signs")}, nil, false},
		{"laboratory", "Observation", []store.Clause{ref("patient", "p1"), cat(obsCat, "laboratory")}, nil, false},
		{"another category system", "Observation", []store.Clause{ref("patient", "p1"), cat("http://example.org/cat", "vital-signs")}, nil, false},
		{"no patient: any of the view", "Observation", []store.Clause{cat(obsCat, "vital-signs")}, nil, true},
		{"token of p2 only", "Observation", []store.Clause{cat(obsCat, "vital-signs")}, []string{"p2"}, false},
		{"token of p1", "Observation", []store.Clause{cat(obsCat, "vital-signs")}, []string{"p1"}, true},
		{"token of nobody", "Observation", nil, []string{}, false},
		{"the Patient itself", "Patient", []store.Clause{ref("_id", "p1")}, nil, false},
		{"directory", "Organization", nil, nil, false},
		{"the partner's Tasks", "Task", []store.Clause{ref("patient", "p1")}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := withholds(v, tc.typ, tc.clauses, tc.scope); got != tc.want {
				t.Errorf("withholds = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTaskLabels checks the Task a partner is served (PRIV-19): only the
// labels it clears, tagged SUBSETTED whenever it does not clear both,
// whatever the Task bore, so that labelled and unlabelled Tasks cannot be
// told apart by the tag.
func TestTaskLabels(t *testing.T) {
	const psy = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}`
	const n = `{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}`
	const r = `{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}`
	task := func(sec string) []byte {
		meta := `"meta":{"versionId":"3"}`
		if sec != "" {
			meta = `"meta":{"versionId":"3","security":[` + sec + `]}`
		}
		return []byte(`{"resourceType":"Task","id":"t1",` + meta + `,"status":"requested"}`)
	}
	sub := `"tag":[` + subsettedTag + `]`
	for _, c := range []struct {
		name         string
		body         []byte
		clearPSY, cR bool
		want         string // "" = unchanged
	}{
		{"both cleared", task(psy + "," + r), true, true, ""},
		{"R withheld", task(psy + "," + r), true, false, `{"resourceType":"Task","id":"t1","meta":{"versionId":"3","security":[` + psy + `],` + sub + `},"status":"requested"}`},
		{"N withheld beside PSY", task(psy + "," + n), true, false, `{"resourceType":"Task","id":"t1","meta":{"versionId":"3","security":[` + psy + `],` + sub + `},"status":"requested"}`},
		{"nothing cleared", task(psy + "," + r), false, false, `{"resourceType":"Task","id":"t1","meta":{"versionId":"3",` + sub + `},"status":"requested"}`},
		{"unlabelled, nothing cleared", task(""), false, false, `{"resourceType":"Task","id":"t1","meta":{"versionId":"3",` + sub + `},"status":"requested"}`},
		{"no meta", []byte(`{"resourceType":"Task","id":"t1"}`), false, false, `{"resourceType":"Task","id":"t1","meta":{` + sub + `}}`},
	} {
		got, err := taskLabels(c.body, c.clearPSY, c.cR)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}
