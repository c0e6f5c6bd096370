package auth

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Scope
		bad  bool
	}{
		{name: "v2 rs", in: "patient/Observation.rs", want: Scope{Context: ContextPatient, ResourceType: "Observation", Perms: PermRead | PermSearch}},
		{name: "v2 cruds wildcard", in: "system/*.cruds", want: Scope{Context: ContextSystem, ResourceType: "*", Perms: PermAll}},
		{name: "v2 single r", in: "user/Patient.r", want: Scope{Context: ContextUser, ResourceType: "Patient", Perms: PermRead}},
		{name: "v1 read", in: "system/*.read", want: Scope{Context: ContextSystem, ResourceType: "*", Perms: PermRead | PermSearch, V1: true}},
		{name: "v1 write", in: "user/Encounter.write", want: Scope{Context: ContextUser, ResourceType: "Encounter", Perms: PermCreate | PermUpdate | PermDelete, V1: true}},
		{name: "v1 star", in: "patient/*.*", want: Scope{Context: ContextPatient, ResourceType: "*", Perms: PermAll, V1: true}},
		{name: "granular category", in: "patient/Observation.rs?category=vital-signs",
			want: Scope{Context: ContextPatient, ResourceType: "Observation", Perms: PermRead | PermSearch,
				Filters: []Filter{{Param: "category", Code: "vital-signs"}}}},
		{name: "granular with system", in: "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|survey",
			want: Scope{Context: ContextPatient, ResourceType: "Observation", Perms: PermRead | PermSearch,
				Filters: []Filter{{Param: "category", System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "survey"}}}},
		// docs/design/security.md NEG-9: undefined or out-of-order suffixes
		// are rejected, never widened.
		{name: "out of order dus", in: "patient/Observation.dus", bad: true},
		{name: "out of order sr", in: "patient/Observation.sr", bad: true},
		{name: "v1 read is never letters r-e-a-d", in: "patient/Observation.read",
			want: Scope{Context: ContextPatient, ResourceType: "Observation", Perms: PermRead | PermSearch, V1: true}},
		{name: "misspelt v1 reads", in: "patient/Observation.reads", bad: true},
		{name: "repeated letter", in: "patient/Observation.rrs", bad: true},
		{name: "unknown letter", in: "patient/Observation.rx", bad: true},
		{name: "unknown context", in: "admin/Observation.rs", bad: true},
		{name: "lower-case type", in: "patient/observation.rs", bad: true},
		{name: "no permissions", in: "patient/Observation.", bad: true},
		{name: "no type", in: "patient/.rs", bad: true},
		{name: "v1 with filter", in: "patient/Observation.read?category=laboratory", bad: true},
		{name: "empty filter value", in: "patient/Observation.rs?category=", bad: true},
		{name: "not a resource scope", in: "openid", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScope(tc.in)
			if tc.bad {
				var se *ScopeError
				if !errors.As(err, &se) || se.Scope != tc.in {
					t.Fatalf("ParseScope(%q) = %+v, %v; want a ScopeError", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseScope(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseScope(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestScopeStringRoundTrip(t *testing.T) {
	for _, in := range []string{"patient/Observation.rs", "system/*.cruds", "user/Patient.r",
		"patient/Observation.rs?category=vital-signs", "patient/Condition.s?category=http://x|problem-list-item"} {
		s, err := ParseScope(in)
		if err != nil {
			t.Fatal(err)
		}
		if s.String() != in {
			t.Errorf("String() = %q, want %q", s.String(), in)
		}
	}
	// v1 scopes render in v2 form with the same meaning.
	s, _ := ParseScope("system/*.read")
	if s.String() != "system/*.rs" {
		t.Errorf("v1 read renders %q, want system/*.rs", s.String())
	}
}

func TestParseGrant(t *testing.T) {
	g, errs := ParseGrant("openid fhirUser launch/patient patient/Observation.rs patient/Observation.dus offline_access")
	if len(errs) != 1 {
		t.Fatalf("errors = %v, want exactly the .dus one", errs)
	}
	if len(g.Resource) != 1 || g.Resource[0].ResourceType != "Observation" {
		t.Fatalf("resource scopes = %+v", g.Resource)
	}
	for _, o := range []string{"openid", "fhirUser", "launch/patient", "offline_access"} {
		if !g.Has(o) {
			t.Errorf("grant lacks %q", o)
		}
	}
	if g.Has("launch") {
		t.Error("grant has launch, which was not requested")
	}
}
