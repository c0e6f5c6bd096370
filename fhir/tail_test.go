package fhir

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// TestAppendPlainIsAppendEscaped: appendPlain's fast path (PERF-ST-15)
// appends exactly what appendEscaped does, for every byte value at every
// position of strings that span the eight-byte words and the tail, and for
// random strings of mostly plain bytes.
func TestAppendPlainIsAppendEscaped(t *testing.T) {
	check := func(s string) {
		t.Helper()
		got, want := appendPlain([]byte("x"), s), appendEscaped([]byte("x"), s)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendPlain(%q) = %q, appendEscaped %q", s, got, want)
		}
		plain := true
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
				plain = false
			}
		}
		if jsonPlain(s) != plain {
			t.Fatalf("jsonPlain(%q) = %v, want %v", s, !plain, plain)
		}
	}
	base := []byte("0123456789abcdef-.ABCDEFGHIJ")
	for n := 1; n <= len(base); n++ {
		for pos := range n {
			for c := range 256 {
				b := bytes.Clone(base[:n])
				b[pos] = byte(c)
				check(string(b))
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rng.IntN(80))
		for i := range b {
			b[i] = byte(0x20 + rng.IntN(0x60))
			if rng.IntN(40) == 0 {
				b[i] = byte(rng.IntN(256))
			}
		}
		check(string(b))
	}
	check("")
}

// TestEverythingAllowsRemembersNoType: allows tries the type it found last
// first (PERF-ST-15) but still refuses a type outside the plan and applies
// each type's own decision, in any order of the page.
func TestEverythingAllowsRemembersNoType(t *testing.T) {
	plan := &everythingTypes{types: []everythingType{
		{typ: "Patient", d: narrowing{patients: []string{"p1"}}},
		{typ: "Observation", d: narrowing{all: true}},
		{typ: "Provenance", d: narrowing{patients: []string{"p2"}}},
	}}
	for i, tc := range []struct {
		typ, patient string
		want         bool
	}{
		{"Patient", "p1", true},
		{"Patient", "p2", false},
		{"Observation", "p2", true},
		{"Observation", "p1", true},
		{"Flag", "p1", false},
		{"Provenance", "p1", false},
		{"Provenance", "p2", true},
		{"Observation", "p9", true},
		{"Flag", "p1", false},
		{"Patient", "p1", true},
		{"Condition", "p1", false},
	} {
		if got := plan.allows(&store.Resource{Type: tc.typ, Patient: tc.patient}); got != tc.want {
			t.Errorf("%d: allows(%s in %s) = %v, want %v", i, tc.typ, tc.patient, got, tc.want)
		}
	}
}
