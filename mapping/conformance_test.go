package mapping_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// TestConformance runs every mapped golden resource and the definitions
// through the Go validator (conformance.Validate, which also checks the US
// Core profiles claimed in meta.profile). It lives in package mapping_test so
// conformance may import mapping without an import cycle.
func TestConformance(t *testing.T) {
	m := mapping.New(mapping.Options{IdentifierSystemBase: "https://brightmind.example/fhir/sid", Organization: "ORG-1"})
	recorded := time.Date(2025, 2, 1, 12, 0, 0, 0, time.UTC)
	files, err := filepath.Glob("testdata/*.input.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	check := func(t *testing.T, outs []mapping.Output) {
		for _, o := range outs {
			for _, is := range conformance.Validate(o.Body) {
				t.Errorf("%s/%s: %s: %s (%s)", o.Type, o.ID, is.Path, is.Message, is.Code)
			}
		}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			rec, ferrs := clinic.Decode(data)
			if len(ferrs) > 0 {
				t.Fatalf("decode: %v", ferrs)
			}
			outs, err := m.Map(rec, recorded)
			if err != nil {
				t.Fatal(err)
			}
			check(t, outs)
		})
	}
	t.Run("definitions", func(t *testing.T) {
		outs, err := mapping.Definitions()
		if err != nil {
			t.Fatal(err)
		}
		check(t, outs)
	})
}
