package search

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// TestRoundTripSQLite indexes the literal resources of extractCases with the
// embedded store and runs parsed searches against them: extraction and
// parsing must agree with the store on ranges, systems and normalization.
func TestRoundTripSQLite(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rec := store.RecordWrite{Kind: "test", ClinicID: "1", Hash: "h", Source: []byte(`{}`)}
	for i, tc := range extractCases() {
		rows, err := Extract(tc.res)
		if err != nil {
			t.Fatal(err)
		}
		id := "r" + string(rune('a'+i))
		b, err := json.Marshal(tc.res)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "id")
		delete(m, "meta")
		rest, _ := json.Marshal(m)
		body := append([]byte(`{"id":"`+id+`",`), rest[1:]...)
		rw := store.ResourceWrite{Type: tc.typ, ID: id, Body: body, Index: rows}
		for _, row := range rows { // the compartment its patient reference names
			if p, ok := strings.CutPrefix(row.Value, "Patient/"); ok && slices.Contains(store.CompartmentParams, row.Param) {
				rw.Patient = p
			}
		}
		rec.Resources = append(rec.Resources, rw)
	}
	if _, err := st.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, typ, q string
		want         int
	}{
		{"string prefix and month", "Patient", "name=jose&birthdate=1980-02", 1},
		{"accents folded", "Patient", "name=N%C3%BA%C3%B1ez", 1},
		{"exact is case-insensitive", "Patient", "family:exact=NUNEZ", 1},
		{"code with implicit system", "Patient", "gender=http://hl7.org/fhir/administrative-gender|female", 1},
		{"other code", "Patient", "gender=male", 0},
		{"birthdate after", "Patient", "birthdate=gt1980-03", 0},
		{"US Core observation search", "Observation", "patient=p1&code=http://loinc.org|44249-1&date=ge2024-03-01&date=lt2024-03-02&_count=50", 1},
		{"instant in other zone", "Observation", "date=2024-03-01T15:15:00Z", 1},
		{"starts after", "Observation", "date=sa2024-03-01T15:15:01Z", 0},
		{"quantity with unit", "Observation", "value-quantity=gt10|http://unitsofmeasure.org|{score}", 1},
		{"quantity too high", "Observation", "value-quantity=gt20", 0},
		{"any code in system", "Observation", "category=http://terminology.hl7.org/CodeSystem/observation-category|", 1},
		{"period within day", "Encounter", "date=2024-03-01&practitioner=dr1", 1},
		{"period not within a second", "Encounter", "date=2024-03-01T10:00:00Z", 0},
		{"open period ge", "MedicationStatement", "effective=ge2030", 1},
		{"open period eq", "MedicationStatement", "effective=eq2030", 0},
		{"canonical", "CarePlan", "instantiates-canonical=https://clinic.example/fhir/PlanDefinition/ketamine-iv", 1},
		{"uri", "PlanDefinition", "url=https://clinic.example/fhir/PlanDefinition/ketamine-iv", 1},
		{"conformance url", "StructureDefinition", "url=http://ketabridge.org/fhir/StructureDefinition/dose-per-kg", 1},
		{"uri is no prefix match", "StructureDefinition", "url=http://ketabridge.org/fhir/StructureDefinition/dose", 0},
		{"extension definitions", "StructureDefinition", "type=Extension&kind=complex-type&derivation=constraint", 1},
		{"base canonical without version", "StructureDefinition", "base=http://hl7.org/fhir/StructureDefinition/Extension|4.0.1", 1},
		{"url and version", "CodeSystem", "url=https://clinic.example/fhir/CodeSystem/ketamine-local&version=1.0.0", 1},
		{"other version", "CodeSystem", "url=https://clinic.example/fhir/CodeSystem/ketamine-local&version=2.0.0", 0},
		{"value sets of a code system", "ValueSet", "reference=http://ketabridge.org/fhir/CodeSystem/ketabridge&status=draft", 1},
		{"guides depending on US Core", "ImplementationGuide", "depends-on=http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core", 1},
		{"search parameters of a type", "SearchParameter", "base=Encounter&type=number&code=session-number", 1},
		{"operation by code", "OperationDefinition", "code=course&kind=operation&title=a%20course", 1},
		{"missing true", "Encounter", "based-on:missing=true", 0},
		{"missing false and year", "Condition", "encounter:missing=false&onset-date=2019", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := url.ParseQuery(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			req, err := Parse(tc.typ, v, false)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			res, err := st.Search(ctx, req.Query)
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			if len(res.Resources) != tc.want {
				t.Errorf("%d matches, want %d", len(res.Resources), tc.want)
			}
		})
	}
}
