package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// TestQueryPlans checks with EXPLAIN QUERY PLAN that search shapes are driven
// by an index and never scan a whole table.
func TestQueryPlans(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Index rows for every param used below, so pids exist.
	rw := store.ResourceWrite{Type: "Observation", ID: "o1", Patient: "p1", Body: []byte(`{"id":"o1","resourceType":"Observation"}`),
		Index: []store.IndexRow{
			{Param: "patient", Kind: store.KindReference, Value: "Patient/p1"},
			{Param: "code", Kind: store.KindToken, System: "s", Code: "c"},
			{Param: "date", Kind: store.KindDate, Lo: 1, Hi: 2},
			{Param: "name", Kind: store.KindString, Value: "x"},
			{Param: "score", Kind: store.KindNumber, Num: 1},
			{Param: "_security", Kind: store.KindToken, System: "s", Code: "R"},
		}}
	if _, err := s.Apply(ctx, []store.RecordWrite{{Kind: "k", ClinicID: "c", Hash: "h", Resources: []store.ResourceWrite{rw}}}); err != nil {
		t.Fatal(err)
	}
	ref := store.Clause{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}}
	code := store.Clause{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "s", Code: "c"}, {Code: "d", AnySystem: true}}}
	date := store.Clause{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Ge, Lo: 1, Hi: 2}}}
	name := store.Clause{Param: "name", Kind: store.KindString, Values: []store.Value{{Str: "x"}}}
	id := store.Clause{Param: store.ParamID, Values: []store.Value{{Str: "o1"}}}
	lu := store.Clause{Param: store.ParamLastUpdated, Values: []store.Value{{Prefix: store.Gt, Lo: 1, Hi: 2}}}
	// A payer's restriction: many patients in terms with clauses, a :not.
	notR := store.Clause{Param: "code", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "R", AnySystem: true}}}
	many := make([]string, 0, 700)
	for i := range 700 {
		many = append(many, fmt.Sprintf("p%d", i))
	}
	payer := &store.Access{Terms: []store.AccessTerm{
		{Patients: many[:350], Clauses: []store.Clause{name, notR}},
		{Patients: many[350:], Clauses: []store.Clause{notR}},
	}}
	few := &store.Access{Terms: []store.AccessTerm{{Patients: []string{"p1", "p2"}, Clauses: []store.Clause{notR}}, {Patients: []string{"p3"}}}}
	for _, tc := range []struct {
		name  string
		q     store.Query
		wants []string // substrings the plan must contain
	}{
		{"type scan in id order", store.Query{Type: "Observation", Count: 10}, []string{"sqlite_autoindex_resources_1 (type=?)"}},
		{"type scan by _lastUpdated", store.Query{Type: "Observation", Sort: []store.Sort{{Param: store.ParamLastUpdated}}, Count: 10}, []string{"resources_updated (type=?)"}},
		// A reference value is its target's rid (looked up once, by (type, id)) or its text (PERF-SQLB-4).
		{"reference drives", store.Query{Type: "Observation", Clauses: []store.Clause{date, name, ref}}, []string{"PRIMARY KEY (pid=? AND target=?)",
			"SCALAR SUBQUERY 1\n    SEARCH resources USING COVERING INDEX sqlite_autoindex_resources_1 (type=? AND id=?)", "idx_string_rid (rid=? AND pid=?", "idx_date_rid (rid=? AND pid=?)"}},
		{"code within the referenced patient drives", store.Query{Type: "Observation", Clauses: []store.Clause{date, code, ref}}, []string{"idx_token_comp (cid=? AND pid=? AND code=? AND sid=?)", "idx_ref_rid (rid=? AND pid=? AND target=?)", "idx_date_rid (rid=? AND pid=?)"}},
		{"code within the allowed patients drives", store.Query{Type: "Observation", Clauses: []store.Clause{code}, Patients: []string{"p1", "p2"}}, []string{"idx_token_comp (cid=? AND pid=? AND code=?)"}},
		{"token drives", store.Query{Type: "Observation", Clauses: []store.Clause{date, code}}, []string{"PRIMARY KEY (pid=? AND code=? AND sid=?)", "PRIMARY KEY (pid=? AND code=?)"}},
		{"string prefix drives", store.Query{Type: "Observation", Clauses: []store.Clause{name}}, []string{"PRIMARY KEY (pid=? AND value>? AND value<?)"}},
		{"patients drive", store.Query{Type: "Observation", Clauses: []store.Clause{date}, Patients: []string{"p1", "p2"}}, []string{"resources_patient (patient=? AND type=?)"}},
		{"_id drives", store.Query{Type: "Observation", Clauses: []store.Clause{code, id}}, []string{"sqlite_autoindex_resources_1 (type=? AND id=?)"}},
		{"_lastUpdated filters", store.Query{Type: "Observation", Clauses: []store.Clause{ref, lu}}, []string{"PRIMARY KEY (pid=? AND target=?)"}},
		{"sort by param", store.Query{Type: "Observation", Clauses: []store.Clause{ref}, Sort: []store.Sort{{Param: "date", Kind: store.KindDate}}}, []string{"idx_date_rid (rid=? AND pid=?)"}},
		{"code within the access patients drives", store.Query{Type: "Observation", Clauses: []store.Clause{code}, Access: few},
			[]string{"idx_token_comp (cid=? AND pid=? AND code=?)", "idx_token_rid (rid=? AND pid=?"}},
		{"code within the referenced patient drives under access", store.Query{Type: "Observation", Clauses: []store.Clause{date, code, ref}, Access: payer},
			[]string{"idx_token_comp (cid=? AND pid=? AND code=? AND sid=?)", "idx_string_rid (rid=? AND pid=?", "idx_token_rid (rid=? AND pid=?"}},
		{"access patients drive", store.Query{Type: "Observation", Clauses: []store.Clause{date}, Access: few}, []string{"resources_patient (patient=? AND type=?)"}},
		{"many access patients drive", store.Query{Type: "Observation", Clauses: []store.Clause{date}, Access: payer}, []string{"resources_patient (patient=? AND type=?)"}},
		{"code within many access patients", store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "s", Code: "c"}}}}, Patients: many[:30], Access: payer},
			[]string{"idx_token_comp (cid=? AND pid=? AND code=? AND sid=?)"}},
		// Labels' rows are not in idx_token_comp (PERF-SQLB-2): the patient drives.
		{"label within the referenced patient", store.Query{Type: "Observation", Clauses: []store.Clause{ref, {Param: "_security", Kind: store.KindToken, Values: []store.Value{{System: "s", Code: "R"}}}}},
			[]string{"PRIMARY KEY (pid=? AND target=?)", "idx_token_rid (rid=? AND pid=?"}},
		{"_id under access", store.Query{Type: "Observation", Clauses: []store.Clause{id}, Access: payer}, []string{"sqlite_autoindex_resources_1 (type=? AND id=?)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := s.ExplainSearch(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(plan, "\n") {
				// A long list of values is a scan of its json_each.
				if strings.HasPrefix(strings.TrimSpace(line), "SCAN ") && !strings.Contains(line, "SCAN json_each VIRTUAL TABLE") {
					t.Errorf("plan scans a table:\n%s", plan)
				}
			}
			for _, w := range tc.wants {
				if !strings.Contains(plan, w) {
					t.Errorf("plan lacks %q:\n%s", w, plan)
				}
			}
		})
	}
}

// TestExportPlans checks that a Bulk Data export's walk reads the covering
// (type, rid, ...) index alone (migration 0011): no resources row, and the
// history only for the bodies, or for counting only for resources changed
// after the snapshot.
func TestExportPlans(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rw := store.ResourceWrite{Type: "Observation", ID: "o1", Patient: "p1", Body: []byte(`{"id":"o1","resourceType":"Observation"}`)}
	if _, err := s.Apply(ctx, []store.RecordWrite{{Kind: "k", ClinicID: "c", Hash: "h", Resources: []store.ResourceWrite{rw}}}); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	for _, tc := range []struct {
		name string
		q    store.ExportQuery
	}{
		{"files", store.ExportQuery{Type: "Observation", At: at, Count: 1000, After: 5, Last: 9000}},
		{"counting", store.ExportQuery{Type: "Observation", At: at, Count: 1000, NoBody: true}},
		{"patients", store.ExportQuery{Type: "Observation", At: at, Count: 1000, Patients: []string{"p1", "p2"}}},
		{"since", store.ExportQuery{Type: "Observation", At: at, Since: at.Add(-time.Hour), Count: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := s.ExplainExport(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(plan, "SEARCH r USING COVERING INDEX resources_type_rid (type=? AND rid>?") {
				t.Errorf("plan does not walk the covering index:\n%s", plan)
			}
			if strings.Contains(plan, "SCAN history") {
				t.Errorf("plan scans the history:\n%s", plan)
			}
		})
	}
}
