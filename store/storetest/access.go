package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// Code systems of the access fixture.
const (
	sysObsCategory     = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	sysActCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// accessFixture writes the data set of the access tests.
//
//	Patient p1, p2, p3; Practitioner pr1 (no compartment)
//	Condition c1 p1 PSY, c2 p2
//	Observation a1 p1 survey     PSY        code 44261-6  performer pr1
//	Observation a2 p1 survey     PSY R      code 44260-8
//	Observation v1 p1 vital-signs           code 8867-4
//	Observation n1 p1 (no category, no label)
//	Observation a3 p2 survey     PSY        code 44261-6
//	Observation v2 p2 vital-signs           code 8867-4
//	Observation v3 p2 vital-signs R         code 8867-4
//	Observation a4 p3 survey                code 44261-6
func accessFixture(t *testing.T, s store.Store) {
	t.Helper()
	psy := Token("_security", sysActCode, "PSY")
	r := Token("_security", sysConfidentiality, "R")
	cat := func(code string) store.IndexRow { return Token("category", sysObsCategory, code) }
	obs := func(id, patient string, rows ...store.IndexRow) store.RecordWrite {
		rows = append([]store.IndexRow{Ref("patient", "Patient/"+patient), Ref("subject", "Patient/"+patient)}, rows...)
		return Rec("session", id, "h1", Res("Observation", id, patient, `,"status":"final"`, rows...))
	}
	apply(t, s,
		Rec("patient", "p1", "h1", Res("Patient", "p1", "p1", "", Str("name", "Ada"))),
		Rec("patient", "p2", "h1", Res("Patient", "p2", "p2", "", Str("name", "Bea"))),
		Rec("patient", "p3", "h1", Res("Patient", "p3", "p3", "", Str("name", "Cy"))),
		Rec("practitioner", "pr1", "h1", Res("Practitioner", "pr1", "", "", Str("name", "Dee"))),
		Rec("diagnosis", "c1", "h1", Res("Condition", "c1", "p1", "", Ref("patient", "Patient/p1"), psy)),
		Rec("diagnosis", "c2", "h1", Res("Condition", "c2", "p2", "", Ref("patient", "Patient/p2"))),
		obs("a1", "p1", cat("survey"), psy, Token("code", loinc, "44261-6"), Ref("performer", "Practitioner/pr1")),
		obs("a2", "p1", cat("survey"), psy, r, Token("code", loinc, "44260-8")),
		obs("v1", "p1", cat("vital-signs"), Token("code", loinc, "8867-4")),
		obs("n1", "p1"),
		obs("a3", "p2", cat("survey"), psy, Token("code", loinc, "44261-6")),
		obs("v2", "p2", cat("vital-signs"), Token("code", loinc, "8867-4")),
		obs("v3", "p2", cat("vital-signs"), r, Token("code", loinc, "8867-4")),
		obs("a4", "p3", cat("survey"), Token("code", loinc, "44261-6")),
	)
}

// Clauses of the access tests.
var (
	survey     = store.Clause{Param: "category", Kind: store.KindToken, Values: []store.Value{{System: sysObsCategory, Code: "survey"}}}
	vitalSigns = store.Clause{Param: "category", Kind: store.KindToken, Values: []store.Value{{System: sysObsCategory, Code: "vital-signs"}}}
	notR       = store.Clause{Param: "_security", Kind: store.KindToken, Not: true, Values: []store.Value{{System: sysConfidentiality, Code: "R"}}}
)

func access(terms ...store.AccessTerm) *store.Access { return &store.Access{Terms: terms} }

func term(patients []string, clauses ...store.Clause) store.AccessTerm {
	return store.AccessTerm{Patients: patients, Clauses: clauses}
}

func pats(ids ...string) []string { return ids }

// manyPatients returns n patient ids no resource is in, then extra: more
// compartments than SQLite's 500 terms of a compound SELECT and its
// default of 999 variables in SQLite's older builds.
func manyPatients(n int, extra ...string) []string {
	out := make([]string, 0, n+len(extra))
	for i := range n {
		out = append(out, fmt.Sprintf("nobody-%04d", i))
	}
	return append(out, extra...)
}

// testNot: the :not modifier (Clause.Not) matches the resources none of
// whose rows of the parameter match, including those with no row at all.
func testNot(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	accessFixture(t, s)
	not := func(c store.Clause) store.Clause { c.Not = true; return c }
	for _, tc := range []struct {
		name    string
		typ     string
		clauses []store.Clause
		want    []string
	}{
		{"_security:not=R keeps the unlabelled and the otherwise labelled", "Observation", []store.Clause{notR}, []string{"a1", "v1", "n1", "a3", "v2", "a4"}},
		{"a code of any system", "Observation", []store.Clause{not(clause("_security", store.KindToken, anyV("R")))}, []string{"a1", "v1", "n1", "a3", "v2", "a4"}},
		{"any of several values", "Observation", []store.Clause{not(clause("_security", store.KindToken, anyV("R"), anyV("PSY")))}, []string{"v1", "n1", "v2", "a4"}},
		{"a resource without the parameter matches", "Observation", []store.Clause{not(survey)}, []string{"v1", "n1", "v2", "v3"}},
		{"a parameter the type never had matches every resource", "Patient", []store.Clause{notR}, []string{"p1", "p2", "p3"}},
		{"with a code of another system", "Observation", []store.Clause{not(clause("_security", store.KindToken, tokV("http://example.org", "R")))}, []string{"a1", "a2", "v1", "n1", "a3", "v2", "v3", "a4"}},
		{"ANDs with other clauses", "Observation", []store.Clause{survey, notR, clause("patient", store.KindReference, strV("Patient/p1"))}, []string{"a1"}},
		{"within a compartment, with a code", "Observation", []store.Clause{clause("patient", store.KindReference, strV("Patient/p2")), clause("code", store.KindToken, tokV(loinc, "8867-4")), notR}, []string{"v2"}},
		{"a reference", "Observation", []store.Clause{not(clause("performer", store.KindReference, strV("Practitioner/pr1")))}, []string{"a2", "v1", "n1", "a3", "v2", "v3", "a4"}},
		{"a :not compartment reference is not a compartment", "Observation", []store.Clause{not(clause("patient", store.KindReference, strV("Patient/p1"))), clause("code", store.KindToken, tokV(loinc, "8867-4"))}, []string{"v2", "v3"}},
		{"_id", "Observation", []store.Clause{not(clause(store.ParamID, 0, strV("a1"), strV("v1"))), clause("patient", store.KindReference, strV("Patient/p1"))}, []string{"a2", "n1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Search(ctx, store.Query{Type: tc.typ, Clauses: tc.clauses, Total: true})
			if err != nil {
				t.Fatal(err)
			}
			wantStrings(t, "ids", ids(got.Resources), tc.want)
			if got.Total != len(tc.want) {
				t.Errorf("Total = %d, want %d", got.Total, len(tc.want))
			}
		})
	}
	for _, tc := range []struct {
		name string
		c    store.Clause
	}{
		{"with :missing", store.Clause{Param: "category", Kind: store.KindToken, Not: true, Missing: new(bool)}},
		{"of a date", store.Clause{Param: "date", Kind: store.KindDate, Not: true, Values: []store.Value{dayV(store.Eq, "2024-01-01")}}},
		{"of _lastUpdated", store.Clause{Param: store.ParamLastUpdated, Not: true, Values: []store.Value{dayV(store.Eq, "2024-01-01")}}},
	} {
		t.Run("invalid "+tc.name, func(t *testing.T) {
			if _, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{tc.c}}); err == nil {
				t.Error("Search succeeded")
			}
		})
	}
}

// testAccess: Query.Access and EverythingQuery.Access restrict every answer
// to the resources one of their terms matches.
func testAccess(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	accessFixture(t, s)
	code := func(codes ...string) store.Clause {
		c := store.Clause{Param: "code", Kind: store.KindToken}
		for _, x := range codes {
			c.Values = append(c.Values, tokV(loinc, x))
		}
		return c
	}
	pat := func(id string) store.Clause { return clause("patient", store.KindReference, strV("Patient/"+id)) }
	// The payer of the design: assessments for p1, vital signs for p2,
	// neither cleared for label R.
	payer := access(term(pats("p1"), survey, notR), term(pats("p2"), vitalSigns, notR))
	many := manyPatients(1200, "p2")

	t.Run("search", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			typ      string
			clauses  []store.Clause
			patients []string
			access   *store.Access
			want     []string
		}{
			{"no access: everything", "Observation", nil, nil, nil, []string{"a1", "a2", "v1", "n1", "a3", "v2", "v3", "a4"}},
			{"no terms: nothing", "Observation", nil, nil, access(), nil},
			{"no terms: nothing of a type without compartments", "Practitioner", nil, nil, access(), nil},
			{"one term of patients", "Observation", nil, nil, access(term(pats("p2", "p3"))), []string{"a3", "v2", "v3", "a4"}},
			{"terms OR", "Observation", nil, nil, access(term(pats("p1"), survey), term(pats("p2"), vitalSigns)), []string{"a1", "a2", "v2", "v3"}},
			{"terms OR, label R excluded", "Observation", nil, nil, payer, []string{"a1", "v2"}},
			{"a term clearing R beside one that does not", "Observation", nil, nil, access(term(pats("p1"), survey), term(pats("p2"), vitalSigns, notR)), []string{"a1", "a2", "v2"}},
			{"a term of several patients", "Observation", nil, nil, access(term(pats("p1", "p2"), survey, notR)), []string{"a1", "a3"}},
			{"a term of any compartment", "Observation", nil, nil, access(term(nil, vitalSigns)), []string{"v1", "v2", "v3"}},
			{"ANDs with the clauses", "Observation", []store.Clause{code("8867-4", "44261-6")}, nil, payer, []string{"a1", "v2"}},
			{"ANDs with a searched patient", "Observation", []store.Clause{pat("p2")}, nil, payer, []string{"v2"}},
			{"a searched patient outside the terms", "Observation", []store.Clause{pat("p3")}, nil, payer, nil},
			{"a searched patient and a code", "Observation", []store.Clause{pat("p1"), code("44261-6", "44260-8")}, nil, payer, []string{"a1"}},
			{"ANDs with the compartments restriction", "Observation", nil, pats("p2", "p3"), payer, []string{"v2"}},
			{"_id inside", "Observation", []store.Clause{clause(store.ParamID, 0, strV("a1"))}, nil, payer, []string{"a1"}},
			{"_id outside", "Observation", []store.Clause{clause(store.ParamID, 0, strV("v1"), strV("a2"))}, nil, payer, nil},
			{"the Patient in its own compartment", "Patient", nil, nil, access(term(pats("p1", "p3"))), []string{"p1", "p3"}},
			{"a compartment term excludes resources in none", "Practitioner", nil, nil, payer, nil},
			{"a term of any compartment includes resources in none", "Practitioner", nil, nil, access(term(pats("p1")), term(nil)), []string{"pr1"}},
			{"a term of the type", "Condition", nil, nil, access(store.AccessTerm{Types: []string{"Condition"}, Patients: pats("p2")}), []string{"c2"}},
			{"a term of another type", "Observation", nil, nil, access(store.AccessTerm{Types: []string{"Condition"}}), nil},
			{":not of a parameter the type never had", "Condition", nil, nil, access(term(pats("p2"), notR), term(pats("p1"))), []string{"c1", "c2"}},
			{"a term clause of a parameter the type never had", "Condition", nil, nil, access(term(pats("p1"), survey), term(pats("p2"))), []string{"c2"}},
			{"over a thousand patients", "Observation", nil, nil, access(term(many, vitalSigns)), []string{"v2", "v3"}},
			{"over a thousand patients in terms, with codes", "Observation", []store.Clause{code("8867-4", "44261-6", "44260-8")}, nil,
				access(term(many, vitalSigns, notR), term(manyPatients(700, "p1"), survey)), []string{"a1", "a2", "v2"}},
			{"over a thousand patients, searched patient", "Observation", []store.Clause{pat("p2"), code("8867-4")}, nil, access(term(many, vitalSigns, notR)), []string{"v2"}},
			{"over a thousand patients and the compartments restriction", "Observation", []store.Clause{code("8867-4")}, many, access(term(many, notR)), []string{"v2"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q := store.Query{Type: tc.typ, Clauses: tc.clauses, Patients: tc.patients, Access: tc.access, Total: true}
				got, err := s.Search(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				wantStrings(t, "ids", ids(got.Resources), tc.want)
				if got.Total != len(tc.want) || got.More {
					t.Errorf("Total = %d, More = %v; want %d, false", got.Total, got.More, len(tc.want))
				}
				q.CountOnly = true
				got, err = s.Search(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if got.Total != len(tc.want) || len(got.Resources) != 0 {
					t.Errorf("CountOnly: Total = %d with %d resources; want %d", got.Total, len(got.Resources), len(tc.want))
				}
			})
		}
	})

	t.Run("paging and totals", func(t *testing.T) {
		wide := access(term(pats("p1"), survey), term(pats("p2"), vitalSigns), term(pats("p3")))
		want := []string{"a1", "a2", "v2", "v3", "a4"}
		for _, sort := range [][]store.Sort{nil, {{Param: store.ParamID, Desc: true}}} {
			w := slices.Clone(want)
			if sort != nil {
				slices.Sort(w)
				slices.Reverse(w)
			}
			var paged []string
			for off := 0; off < 7; off += 2 {
				got, err := s.Search(ctx, store.Query{Type: "Observation", Access: wide, Sort: sort, Count: 2, Offset: off, Total: true})
				if err != nil {
					t.Fatal(err)
				}
				if got.Total != len(w) {
					t.Errorf("offset %d: Total = %d, want %d", off, got.Total, len(w))
				}
				if more := off+2 < len(w); got.More != more {
					t.Errorf("offset %d: More = %v, want %v", off, got.More, more)
				}
				paged = append(paged, ids(got.Resources)...)
			}
			wantStrings(t, fmt.Sprintf("pages sorted by %v", sort), paged, w)
		}
	})

	t.Run("audiences", func(t *testing.T) {
		// The same search for several audiences, alternately: each gets its
		// own answer every time (a read cache keys the answers apart).
		obs := func(patients []string, clauses ...store.Clause) store.AccessTerm {
			return store.AccessTerm{Patients: patients, Types: []string{"Observation"}, Clauses: clauses}
		}
		for range 2 {
			for _, tc := range []struct {
				name       string
				a          *store.Access
				want, p1   []string
				everything int
			}{
				{"payer", access(obs(pats("p1"), survey, notR), obs(pats("p2"), vitalSigns, notR)), []string{"a1", "v2"}, []string{"Observation/a1"}, 1},
				{"other", access(obs(pats("p1"), vitalSigns), term(pats("p3"))), []string{"v1", "a4"}, []string{"Observation/v1"}, 1},
				{"nobody", access(), nil, nil, 0},
				{"unrestricted", nil, []string{"a1", "a2", "v1", "n1", "a3", "v2", "v3", "a4"},
					[]string{"Patient/p1", "Condition/c1", "Observation/a1", "Observation/a2", "Observation/n1", "Observation/v1"}, 6},
			} {
				got, err := s.Search(ctx, store.Query{Type: "Observation", Access: tc.a})
				if err != nil {
					t.Fatal(err)
				}
				wantStrings(t, tc.name+" search", ids(got.Resources), tc.want)
				rs, total, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1", Access: tc.a})
				if err != nil {
					t.Fatal(err)
				}
				wantStrings(t, tc.name+" everything", keys(rs), tc.p1)
				if total != tc.everything {
					t.Errorf("%s: Everything total %d, want %d", tc.name, total, tc.everything)
				}
			}
		}
	})

	t.Run("everything", func(t *testing.T) {
		payerView := access(
			store.AccessTerm{Patients: pats("p1", "p2"), Types: []string{"Patient", "Condition"}},
			store.AccessTerm{Patients: pats("p1"), Types: []string{"Observation"}, Clauses: []store.Clause{survey, notR}},
			store.AccessTerm{Patients: pats("p2"), Types: []string{"Observation"}, Clauses: []store.Clause{vitalSigns, notR}},
		)
		all := []string{"Patient/p1", "Condition/c1", "Observation/a1"}
		for _, tc := range []struct {
			name  string
			q     store.EverythingQuery
			want  []string
			total int
		}{
			{"no access: the whole compartment", store.EverythingQuery{Patient: "p1"},
				[]string{"Patient/p1", "Condition/c1", "Observation/a1", "Observation/a2", "Observation/n1", "Observation/v1"}, 6},
			{"no terms: nothing", store.EverythingQuery{Patient: "p1", Access: access()}, nil, 0},
			{"narrowed", store.EverythingQuery{Patient: "p1", Access: payerView}, all, 3},
			{"narrowed, another patient", store.EverythingQuery{Patient: "p2", Access: payerView}, []string{"Patient/p2", "Condition/c2", "Observation/v2"}, 3},
			{"a patient in no term", store.EverythingQuery{Patient: "p3", Access: payerView}, nil, 0},
			{"first page", store.EverythingQuery{Patient: "p1", Access: payerView, Count: 2}, all[:2], 3},
			{"last page", store.EverythingQuery{Patient: "p1", Access: payerView, Count: 2, Offset: 2}, all[2:], 3},
			{"past the end", store.EverythingQuery{Patient: "p1", Access: payerView, Count: 2, Offset: 4}, nil, 3},
			{"_type", store.EverythingQuery{Patient: "p1", Access: payerView, Types: []string{"Observation"}}, all[2:], 1},
			{"a term of every type", store.EverythingQuery{Patient: "p3", Access: access(term(pats("p3")))}, []string{"Patient/p3", "Observation/a4"}, 2},
			{":not of a parameter a type never had", store.EverythingQuery{Patient: "p2", Access: access(
				store.AccessTerm{Types: []string{"Patient", "Condition", "Observation"}, Clauses: []store.Clause{notR}})},
				[]string{"Patient/p2", "Condition/c2", "Observation/a3", "Observation/v2"}, 4},
			{"over a thousand patients", store.EverythingQuery{Patient: "p2", Access: access(store.AccessTerm{Patients: many, Types: []string{"Observation"}, Clauses: []store.Clause{vitalSigns}})},
				[]string{"Observation/v2", "Observation/v3"}, 2},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, total, err := s.Everything(ctx, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				wantStrings(t, "keys", keys(got), tc.want)
				if total != tc.total {
					t.Errorf("total = %d, want %d", total, tc.total)
				}
			})
		}
		_, _, err := s.Everything(ctx, store.EverythingQuery{Patient: "p1", Access: access(term(pats("p1"), survey))})
		if err == nil {
			t.Error("a term with clauses but no types: no error")
		}
	})
}
