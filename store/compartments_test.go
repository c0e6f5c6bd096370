package store

import (
	"slices"
	"testing"
)

func TestQueryCompartments(t *testing.T) {
	ref := func(param string, targets ...string) Clause {
		c := Clause{Param: param, Kind: KindReference}
		for _, tg := range targets {
			c.Values = append(c.Values, Value{Str: tg})
		}
		return c
	}
	yes := true
	notRef := ref("patient", "Patient/p1")
	notRef.Not = true
	for _, tc := range []struct {
		name string
		q    Query
		want []string
	}{
		{"patient reference", Query{Clauses: []Clause{ref("patient", "Patient/p1")}}, []string{"p1"}},
		{"subject references", Query{Clauses: []Clause{ref("subject", "Patient/p1", "Patient/p2")}}, []string{"p1", "p2"}},
		{"a non-Patient value names none", Query{Clauses: []Clause{ref("subject", "Patient/p1", "Group/g1")}, Patients: []string{"p9"}}, []string{"p9"}},
		{"other reference params name none", Query{Clauses: []Clause{ref("performer", "Patient/p1")}}, nil},
		{"a token clause names none", Query{Clauses: []Clause{{Param: "patient", Kind: KindToken, Values: []Value{{Code: "Patient/p1"}}}}}, nil},
		{":missing names none", Query{Clauses: []Clause{{Param: "patient", Kind: KindReference, Missing: &yes}}}, nil},
		{"access restriction", Query{Patients: []string{"p1", "p2"}}, []string{"p1", "p2"}},
		{"reference before restriction", Query{Clauses: []Clause{ref("patient", "Patient/p1")}, Patients: []string{"p1", "p2"}}, []string{"p1"}},
		{":not names none", Query{Clauses: []Clause{notRef}}, nil},
		{"access terms all naming patients: their union", Query{Access: &Access{Terms: []AccessTerm{
			{Patients: []string{"p1", "p2"}}, {Patients: []string{"p2", "p3"}, Clauses: []Clause{ref("performer", "Practitioner/x")}}}}},
			[]string{"p1", "p2", "p3"}},
		{"one access term", Query{Access: &Access{Terms: []AccessTerm{{Patients: []string{"p2"}}}}}, []string{"p2"}},
		{"an access term open to every compartment names none", Query{Access: &Access{Terms: []AccessTerm{
			{Patients: []string{"p1"}}, {Types: []string{"Practitioner"}}}}}, nil},
		{"an access without terms names none", Query{Access: &Access{}}, nil},
		{"restriction before access", Query{Patients: []string{"p9"}, Access: &Access{Terms: []AccessTerm{{Patients: []string{"p1"}}}}}, []string{"p9"}},
		{"reference before access", Query{Clauses: []Clause{ref("patient", "Patient/p1")}, Access: &Access{Terms: []AccessTerm{{Patients: []string{"p2"}}}}}, []string{"p1"}},
		{"nothing", Query{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.q.Compartments(); !slices.Equal(got, tc.want) {
				t.Errorf("Compartments() = %v, want %v", got, tc.want)
			}
		})
	}
}
