package postgres_test

import (
	"context"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestPatientSubjectOneRow: a resource's patient and subject reference rows
// naming one target are stored as one row (docs/design/security.md
// PERF-PG-8), on both write paths (the set-based batch, and the per-record
// rerun); a patient or subject row without the other, or naming another
// target, keeps its own parameter. Every search of either parameter
// (values, :missing, :not, sorts, within a compartment with a code) and
// _include's Refs answer as the two rows did.
func TestPatientSubjectOneRow(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s := openSchema(t, url)
	defer s.Close()
	c := connect(t, url)
	code := storetest.Token("code", "http://loinc.org", "8867-4")
	both := func(p string) []store.IndexRow {
		return []store.IndexRow{storetest.Ref("patient", "Patient/"+p), storetest.Ref("subject", "Patient/"+p)}
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "pa", "h1", storetest.Res("Patient", "pa", "pa", ``)),
		storetest.Rec("session", "t1", "h1",
			storetest.Res("Observation", "o1", "pa", ``, append(both("pa"), storetest.Ref("performer", "Practitioner/pr1"), code)...),
			storetest.Res("Observation", "o2", "pa", ``, storetest.Ref("patient", "Patient/pa"), storetest.Ref("subject", "Group/g1"), code),
			storetest.Res("Observation", "o3", "pb", ``, storetest.Ref("subject", "Patient/pb")),
			storetest.Res("Observation", "o4", "pb", ``, storetest.Ref("patient", "Patient/pb"))),
		storetest.Rec("session", "t5", "h1", storetest.Res("Observation", "o5", "pa", ``)),
		storetest.Rec("session", "t6", "h1", storetest.Res("Observation", "o6", "", ``)),
	}); err != nil {
		t.Fatal(err)
	}
	// o5 is written again on the per-record path (bulk.go: a record drops
	// o5, which another record of its run produces).
	if _, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "t5", "h2", storetest.Res("Observation", "o7", "", ``)),
		storetest.Rec("session", "t5b", "h1", storetest.Res("Observation", "o5", "pa", ``, append(both("pa"), code)...)),
	}); err != nil {
		t.Fatal(err)
	}
	want := "o1 patient|subject rid:Patient/pa|; o1 performer -|Practitioner/pr1; " +
		"o2 patient rid:Patient/pa|; o2 subject -|Group/g1; o3 subject -|Patient/pb; o4 patient -|Patient/pb; " +
		"o5 patient|subject rid:Patient/pa|"
	if got := refRows(t, c); got != want {
		t.Errorf("reference rows:\n%s\nwant\n%s", got, want)
	}
	yes := true
	obs := func(cl ...store.Clause) store.Query { return store.Query{Type: "Observation", Clauses: cl} }
	missing := func(param string) store.Clause {
		return store.Clause{Param: param, Kind: store.KindReference, Missing: &yes}
	}
	sortBy := func(param string, desc bool) store.Query {
		return store.Query{Type: "Observation", Sort: []store.Sort{{Param: param, Kind: store.KindReference, Desc: desc}}}
	}
	codeClause := store.Clause{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "http://loinc.org", Code: "8867-4"}}}
	for _, tc := range []struct {
		name string
		q    store.Query
		want string
	}{
		{"patient", obs(refClause("patient", false, "Patient/pa")), "o1,o2,o5"},
		{"subject", obs(refClause("subject", false, "Patient/pa")), "o1,o5"},
		{"subject, another target", obs(refClause("subject", false, "Group/g1")), "o2"},
		{"patient alone", obs(refClause("patient", false, "Patient/pb")), "o4"},
		{"subject alone", obs(refClause("subject", false, "Patient/pb")), "o3"},
		{"two values", obs(refClause("subject", false, "Patient/pb", "Patient/pa")), "o1,o3,o5"},
		{"patient missing", obs(missing("patient")), "o3,o6,o7"},
		{"subject missing", obs(missing("subject")), "o4,o6,o7"},
		{"patient not", obs(refClause("patient", true, "Patient/pa")), "o3,o4,o6,o7"},
		{"subject not", obs(refClause("subject", true, "Patient/pa")), "o2,o3,o4,o6,o7"},
		{"within a compartment, with a code", obs(refClause("subject", false, "Patient/pa"), codeClause), "o1,o5"},
		{"patient within a compartment, with a code", obs(refClause("patient", false, "Patient/pa"), codeClause), "o1,o2,o5"},
		{"sort by subject", sortBy("subject", false), "o2,o1,o5,o3,o4,o6,o7"},
		{"sort by patient, descending", sortBy("patient", true), "o4,o1,o2,o5,o3,o6,o7"},
	} {
		if got := searchIDs(t, s, tc.q); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	keys := []store.Key{{Type: "Observation", ID: "o1"}, {Type: "Observation", ID: "o2"}, {Type: "Observation", ID: "o5"}}
	if g, w := refsText(t, s, nil, keys...), "o1 patient Patient/pa, o1 performer Practitioner/pr1, o1 subject Patient/pa, "+
		"o2 patient Patient/pa, o2 subject Group/g1, o5 patient Patient/pa, o5 subject Patient/pa"; g != w {
		t.Errorf("refs:\n%s\nwant\n%s", g, w)
	}
	if g, w := refsText(t, s, []string{"subject"}, keys...), "o1 subject Patient/pa, o2 subject Group/g1, o5 subject Patient/pa"; g != w {
		t.Errorf("refs of subject:\n%s\nwant\n%s", g, w)
	}
}
