package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// What the backends' migration tests share: data as a store held it before
// a migration, and the searches that must find it after.

// WriteUnindexedLabels writes resources whose bodies carry security labels
// (meta.security) but whose index rows lack the _security rows Apply now
// writes for them: what a store held before _security was indexed.
//
//	Observation o-r     p1 PSY R    code 44260-8
//	Observation o-psy   p1 PSY      code 44260-8, a NUL escaped in its text
//	Observation o-nocode p1 a label without a code
//	Observation o-plain p1 no label ("security" in its text only)
//	Condition   c-r     p2 R
//	Practitioner pr-r   -  R
//	Observation o-gone  p1 R        deleted
func WriteUnindexedLabels(t *testing.T, s store.Store) {
	t.Helper()
	const (
		conf = `{"system":"` + sysConfidentiality + `","code":"R"}`
		psy  = `{"system":"` + sysActCode + `","code":"PSY","display":"psychiatry disorder information sensitivity"}`
	)
	// A canonical body: meta right after id (store.StampMeta).
	labelled := func(typ, id, patient, labels, rest string, index ...store.IndexRow) store.ResourceWrite {
		return store.ResourceWrite{Type: typ, ID: id, Patient: patient, Index: index,
			Body: []byte(`{"id":"` + id + `","meta":{"security":[` + labels + `]},"resourceType":"` + typ + `"` + rest + `}`)}
	}
	obs := func(id, labels, rest string) store.ResourceWrite {
		return labelled("Observation", id, "p1", labels, rest, Ref("patient", "Patient/p1"), Token("code", loinc, "44260-8"))
	}
	apply(t, s,
		Rec("session", "s1", "h1",
			obs("o-r", psy+","+conf, ""),
			obs("o-psy", psy, `,"note":[{"text":"a NUL \u0000 in JSON text"}]`),
			obs("o-nocode", `{"system":"`+sysConfidentiality+`"}`, ""),
			Res("Observation", "o-plain", "p1", `,"status":"final","note":[{"text":"no security here"}]`, Ref("patient", "Patient/p1")),
			labelled("Condition", "c-r", "p2", conf, "", Ref("patient", "Patient/p2")),
			labelled("Practitioner", "pr-r", "", conf, ""),
		),
		Rec("session", "s2", "h1", obs("o-gone", conf, "")),
	)
	apply(t, s, Rec("session", "s2", "h2")) // o-gone deleted
}

// CheckLabelsIndexed checks that the resources of WriteUnindexedLabels are
// found by their labels, within their compartments too.
func CheckLabelsIndexed(t *testing.T, s store.Store) {
	t.Helper()
	psyC := store.Clause{Param: "_security", Kind: store.KindToken, Values: []store.Value{anyV("PSY")}}
	code := clause("code", store.KindToken, tokV(loinc, "44260-8"))
	pat := clause("patient", store.KindReference, strV("Patient/p1"))
	for _, tc := range []struct {
		name string
		q    store.Query
		want []string
	}{
		{"R excluded", store.Query{Type: "Observation", Clauses: []store.Clause{notR}}, []string{"o-psy", "o-nocode", "o-plain"}},
		{"PSY found", store.Query{Type: "Observation", Clauses: []store.Clause{psyC}}, []string{"o-r", "o-psy"}},
		// Found within a compartment too (code rows through idx_token_comp or
		// idx_token_patient; SQLite's label rows carry no compartment since
		// migration 0015, PERF-SQLB-2, and the patient drives).
		{"within the compartment, by code", store.Query{Type: "Observation", Clauses: []store.Clause{pat, code, notR}}, []string{"o-psy", "o-nocode"}},
		{"within the compartment, by label", store.Query{Type: "Observation", Clauses: []store.Clause{pat, psyC}}, []string{"o-r", "o-psy"}},
		{"other types", store.Query{Type: "Condition", Clauses: []store.Clause{notR}}, nil},
		{"no compartment", store.Query{Type: "Practitioner", Clauses: []store.Clause{notR}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Search(context.Background(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			wantStrings(t, "ids", ids(got.Resources), tc.want)
		})
	}
}

// CheckUnboundClient checks that the client a migration test inserted
// without an organization and a role (id ehr-1, JWK Set URL
// https://ehr.example/jwks, scope system/*.rs) reads as an unbound EHR
// client, otherwise unchanged.
func CheckUnboundClient(t *testing.T, s store.AuthStore) {
	t.Helper()
	c, err := s.GetClient(context.Background(), "ehr-1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Organization != "" || c.Role != "" || c.JWKSURL != "https://ehr.example/jwks" || !slices.Equal(c.Scopes, []string{"system/*.rs"}) {
		t.Errorf("client after migration = %+v, want unbound and otherwise unchanged", c)
	}
}
