package auth

import (
	"reflect"
	"testing"
)

func principal(t *testing.T, scope, patient string, patientUser bool) Principal {
	t.Helper()
	g, errs := ParseGrant(scope)
	if len(errs) > 0 {
		t.Fatalf("ParseGrant(%q): %v", scope, errs)
	}
	return Principal{ClientID: "app", Grant: g, Patient: patient, PatientUser: patientUser}
}

// TestDecideMatrix is the access matrix: scopes x interaction x resource type
// x patient context (docs/design/security.md RS-3 to RS-5, NEG-40 to NEG-42).
func TestDecideMatrix(t *testing.T) {
	all := []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch,
		InteractionHistoryType, InteractionCreate, InteractionUpdate, InteractionPatch, InteractionDelete}
	tests := []struct {
		name        string
		scope       string
		patient     string
		patientUser bool
		typ         string
		allowed     []Interaction // every other interaction of `all` must be denied
		patients    []string
		filters     [][]Filter
	}{
		{name: "patient rs reads and searches own compartment", scope: "patient/Observation.rs", patient: "p1", typ: "Observation",
			allowed: []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch, InteractionHistoryType}, patients: []string{"p1"}},
		{name: "patient rs does not reach other types", scope: "patient/Observation.rs", patient: "p1", typ: "Condition"},
		{name: "patient scope without patient context fails closed", scope: "patient/Observation.rs", typ: "Observation"},
		{name: "r only: read but no search", scope: "patient/Observation.r", patient: "p1", typ: "Observation",
			allowed: []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance}, patients: []string{"p1"}},
		{name: "s only: search but no read", scope: "patient/Observation.s", patient: "p1", typ: "Observation",
			allowed: []Interaction{InteractionSearch, InteractionHistoryType}, patients: []string{"p1"}},
		{name: "v1 read is rs", scope: "patient/*.read", patient: "p1", typ: "Encounter",
			allowed: []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch, InteractionHistoryType}, patients: []string{"p1"}},
		{name: "v1 write is cud", scope: "user/Observation.write", typ: "Observation",
			allowed: []Interaction{InteractionCreate, InteractionUpdate, InteractionPatch, InteractionDelete}},
		{name: "system wildcard reads every patient", scope: "system/*.rs", typ: "MedicationAdministration",
			allowed: []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch, InteractionHistoryType}},
		{name: "clinician user scope reaches every patient", scope: "user/Patient.rs", patient: "p1", typ: "Patient",
			allowed: []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch, InteractionHistoryType}},
		{name: "patient user's user scope is limited to self", scope: "user/Patient.rs", patient: "p1", patientUser: true, typ: "Patient",
			allowed: []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch, InteractionHistoryType}, patients: []string{"p1"}},
		{name: "granular scopes union", scope: "patient/Observation.rs?category=vital-signs patient/Observation.rs?category=survey", patient: "p1", typ: "Observation",
			allowed:  []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch, InteractionHistoryType},
			patients: []string{"p1"}, filters: [][]Filter{{{Param: "category", Code: "vital-signs"}}, {{Param: "category", Code: "survey"}}}},
		{name: "an unfiltered scope lifts the filters", scope: "patient/Observation.rs?category=vital-signs patient/Observation.rs", patient: "p1", typ: "Observation",
			allowed: []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch, InteractionHistoryType}, patients: []string{"p1"}},
		{name: "system scope wins over patient scope, never widening its filters", scope: "patient/Observation.rs system/Observation.rs?category=laboratory", patient: "p1", typ: "Observation",
			allowed: []Interaction{InteractionRead, InteractionEverything, InteractionVRead, InteractionHistoryInstance, InteractionSearch, InteractionHistoryType},
			filters: [][]Filter{{{Param: "category", Code: "laboratory"}}}},
		{name: "no resource scopes", scope: "openid fhirUser launch", patient: "p1", typ: "Patient"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := principal(t, tc.scope, tc.patient, tc.patientUser)
			allowed := map[Interaction]bool{}
			for _, i := range tc.allowed {
				allowed[i] = true
			}
			for _, i := range all {
				d := Decide(p, tc.typ, i)
				if d.Allowed != allowed[i] {
					t.Errorf("%s: Allowed = %v, want %v (reason %q)", i, d.Allowed, allowed[i], d.Reason)
					continue
				}
				if !d.Allowed {
					if d.Reason == "" {
						t.Errorf("%s: denial without a reason", i)
					}
					if d.Patients != nil || d.FilterSets != nil {
						t.Errorf("%s: denial carries a restriction %+v", i, d)
					}
					continue
				}
				if !reflect.DeepEqual(d.Patients, tc.patients) {
					t.Errorf("%s: Patients = %v, want %v", i, d.Patients, tc.patients)
				}
				if !reflect.DeepEqual(d.FilterSets, tc.filters) {
					t.Errorf("%s: FilterSets = %v, want %v", i, d.FilterSets, tc.filters)
				}
			}
		})
	}
}

func TestInteractionWrite(t *testing.T) {
	for _, tc := range []struct {
		i     Interaction
		write bool
	}{
		{InteractionRead, false}, {InteractionVRead, false}, {InteractionHistoryInstance, false},
		{InteractionHistoryType, false}, {InteractionSearch, false}, {InteractionEverything, false},
		{InteractionCreate, true}, {InteractionUpdate, true}, {InteractionPatch, true}, {InteractionDelete, true},
	} {
		t.Run(string(tc.i), func(t *testing.T) {
			if tc.i.Write() != tc.write {
				t.Errorf("Write() = %v", !tc.write)
			}
		})
	}
}

func TestDecideUnknownInteraction(t *testing.T) {
	p := principal(t, "system/*.cruds", "", false)
	if d := Decide(p, "Patient", Interaction("operation")); d.Allowed {
		t.Fatal("an unknown interaction was allowed")
	}
}

// BenchmarkDecide is the per-request access decision (a pure function over the
// token's already-parsed scopes).
func BenchmarkDecide(b *testing.B) {
	g, _ := ParseGrant("launch/patient openid fhirUser patient/Observation.rs?category=vital-signs patient/Observation.rs?category=survey patient/Patient.rs patient/Encounter.rs")
	p := Principal{ClientID: "app", Grant: g, Patient: "p1"}
	b.ReportAllocs()
	for b.Loop() {
		if d := Decide(p, "Observation", InteractionSearch); !d.Allowed {
			b.Fatal("denied")
		}
	}
}
