package fhirjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

func ptr[T any](v T) *T { return &v }

var (
	ketamineCC = r4.CodeableConcept{Coding: []r4.Coding{{
		System: ptr("http://www.nlm.nih.gov/research/umls/rxnorm"), Code: ptr("6130"), Display: ptr("ketamine"),
	}}}
	medRef     = r4.Reference{Reference: ptr("Medication/ket-1")}
	patientRef = r4.Reference{Reference: ptr("Patient/p1")}
	period     = r4.Period{Start: ptr("2024-01-01T10:00:00Z"), End: ptr("2024-01-01T11:00:00Z")}
	icd        = r4.CodeableConcept{Coding: []r4.Coding{{System: ptr("http://hl7.org/fhir/sid/icd-10-cm"), Code: ptr("F33.2")}}}
)

// alternatives returns the member names of obj that are alternatives of the
// choice element prefix[x].
func alternatives(obj map[string]any, prefix string) []string {
	var out []string
	for k := range obj {
		if choicePrefix(k) == prefix {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// dig follows a path of member names / array indexes into decoded JSON.
func dig(t *testing.T, v any, path ...any) map[string]any {
	t.Helper()
	for _, p := range path {
		switch p := p.(type) {
		case string:
			v = v.(map[string]any)[p]
		case int:
			v = v.([]any)[p]
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("path %v is not an object", path)
	}
	return m
}

// TestChoiceRoundTrip: every required choice element this project touches
// whose samply struct marshals all alternatives, with each alternative it
// can carry:
// marshal -> exactly one alternative -> unmarshal with samply -> re-marshal equal.
func TestChoiceRoundTrip(t *testing.T) {
	type tc struct {
		name   string
		v      any
		at     []any  // path to the object holding the choice element
		prefix string // choice element
		want   string // the alternative expected
		decode func([]byte) (any, error)
	}
	ma := func(mut func(*r4.MedicationAdministration)) r4.MedicationAdministration {
		m := r4.MedicationAdministration{Id: ptr("ma1"), Status: "completed", Subject: patientRef,
			MedicationCodeableConcept: ketamineCC, EffectiveDateTime: "2024-01-01T10:00:00Z"}
		mut(&m)
		return m
	}
	decMA := func(b []byte) (any, error) { return r4.UnmarshalMedicationAdministration(b) }
	decMR := func(b []byte) (any, error) { return r4.UnmarshalMedicationRequest(b) }
	decMS := func(b []byte) (any, error) { return r4.UnmarshalMedicationStatement(b) }
	decMed := func(b []byte) (any, error) { return r4.UnmarshalMedication(b) }
	decClaim := func(b []byte) (any, error) { return r4.UnmarshalClaim(b) }
	decPD := func(b []byte) (any, error) { return r4.UnmarshalPlanDefinition(b) }
	decUC := func(b []byte) (any, error) {
		var u r4.UsageContext
		err := json.Unmarshal(b, &u)
		return u, err
	}
	ucCode := r4.Coding{System: ptr("http://terminology.hl7.org/CodeSystem/usage-context-type"), Code: ptr("focus")}
	claim := func(d r4.ClaimDiagnosis) r4.Claim {
		return r4.Claim{Id: ptr("c1"), Status: r4.FinancialResourceStatusCodesActive, Type: icd, Use: r4.UseClaim,
			Patient: patientRef, Created: "2024-01-01", Provider: r4.Reference{Reference: ptr("Organization/o1")},
			Priority: icd, Insurance: []r4.ClaimInsurance{{Sequence: 1, Focal: true, Coverage: r4.Reference{Reference: ptr("Coverage/cv1")}}},
			Diagnosis: []r4.ClaimDiagnosis{d}}
	}
	cases := []tc{
		{"MedicationAdministration.medication[x]=CodeableConcept", ma(func(*r4.MedicationAdministration) {}), nil, "medication", "medicationCodeableConcept", decMA},
		{"MedicationAdministration.medication[x]=Reference", ma(func(m *r4.MedicationAdministration) {
			m.MedicationCodeableConcept = r4.CodeableConcept{}
			m.MedicationReference = medRef
		}), nil, "medication", "medicationReference", decMA},
		{"MedicationAdministration.effective[x]=dateTime", ma(func(*r4.MedicationAdministration) {}), nil, "effective", "effectiveDateTime", decMA},
		{"MedicationAdministration.effective[x]=Period", ma(func(m *r4.MedicationAdministration) {
			m.EffectiveDateTime = ""
			m.EffectivePeriod = period
		}), nil, "effective", "effectivePeriod", decMA},
		{"MedicationRequest.medication[x]=CodeableConcept", r4.MedicationRequest{Id: ptr("mr1"), Status: "active",
			Intent: "order", MedicationCodeableConcept: ketamineCC, Subject: patientRef}, nil, "medication", "medicationCodeableConcept", decMR},
		{"MedicationRequest.medication[x]=Reference", r4.MedicationRequest{Id: ptr("mr1"), Status: "active",
			Intent: "order", MedicationReference: medRef, Subject: patientRef}, nil, "medication", "medicationReference", decMR},
		{"MedicationRequest.substitution.allowed[x]=CodeableConcept", r4.MedicationRequest{Id: ptr("mr1"), Status: "active",
			Intent: "order", MedicationReference: medRef, Subject: patientRef,
			Substitution: &r4.MedicationRequestSubstitution{AllowedCodeableConcept: r4.CodeableConcept{Text: ptr("none")}}},
			[]any{"substitution"}, "allowed", "allowedCodeableConcept", decMR},
		{"MedicationStatement.medication[x]=CodeableConcept", r4.MedicationStatement{Id: ptr("ms1"), Status: "active",
			MedicationCodeableConcept: ketamineCC, Subject: patientRef}, nil, "medication", "medicationCodeableConcept", decMS},
		{"MedicationStatement.medication[x]=Reference", r4.MedicationStatement{Id: ptr("ms1"), Status: "active",
			MedicationReference: medRef, Subject: patientRef}, nil, "medication", "medicationReference", decMS},
		{"Medication.ingredient.item[x]=CodeableConcept", r4.Medication{Id: ptr("m1"), Ingredient: []r4.MedicationIngredient{
			{ItemReference: r4.Reference{Reference: ptr("Substance/s1")}}, {ItemCodeableConcept: ketamineCC}}},
			[]any{"ingredient", 1}, "item", "itemCodeableConcept", decMed},
		{"Medication.ingredient.item[x]=Reference", r4.Medication{Id: ptr("m1"), Ingredient: []r4.MedicationIngredient{
			{ItemCodeableConcept: ketamineCC}, {ItemReference: r4.Reference{Reference: ptr("Substance/s1")}}}},
			[]any{"ingredient", 1}, "item", "itemReference", decMed},
		{"Claim.diagnosis.diagnosis[x]=CodeableConcept", claim(r4.ClaimDiagnosis{Sequence: 1, DiagnosisCodeableConcept: icd}),
			[]any{"diagnosis", 0}, "diagnosis", "diagnosisCodeableConcept", decClaim},
		{"Claim.diagnosis.diagnosis[x]=Reference", claim(r4.ClaimDiagnosis{Sequence: 1, DiagnosisReference: r4.Reference{Reference: ptr("Condition/c1")}}),
			[]any{"diagnosis", 0}, "diagnosis", "diagnosisReference", decClaim},
		{"UsageContext.value[x]=CodeableConcept", r4.UsageContext{Code: ucCode, ValueCodeableConcept: icd}, nil, "value", "valueCodeableConcept", decUC},
		{"UsageContext.value[x]=Quantity", r4.UsageContext{Code: ucCode, ValueQuantity: r4.Quantity{Value: ptr(json.Number("18"))}}, nil, "value", "valueQuantity", decUC},
		{"UsageContext.value[x]=Range", r4.UsageContext{Code: ucCode, ValueRange: r4.Range{Low: &r4.Quantity{Value: ptr(json.Number("18"))}}}, nil, "value", "valueRange", decUC},
		{"UsageContext.value[x]=Reference", r4.UsageContext{Code: ucCode, ValueReference: r4.Reference{Reference: ptr("Group/g1")}}, nil, "value", "valueReference", decUC},
		{"PlanDefinition.useContext.value[x]=CodeableConcept", r4.PlanDefinition{Id: ptr("pd1"), Status: r4.PublicationStatusActive,
			UseContext: []r4.UsageContext{{Code: ucCode, ValueCodeableConcept: icd}}}, []any{"useContext", 0}, "value", "valueCodeableConcept", decPD},
		{"Extension.valueUsageContext.value[x] inside an Observation", func() r4.Observation {
			o := benchObs()
			o.Extension = []r4.Extension{{Url: "http://example.org/uc", ValueUsageContext: &r4.UsageContext{Code: ucCode, ValueReference: r4.Reference{Reference: ptr("Group/g1")}}}}
			return o
		}(), []any{"extension", 0, "valueUsageContext"}, "value", "valueReference", func(b []byte) (any, error) { return r4.UnmarshalObservation(b) }},
		{"Task.input.value[x]=string drops bool/int", r4.Task{Id: ptr("t1"), Status: r4.TaskStatusRequested, Intent: "order",
			Input: []r4.TaskInput{{Type: icd, ValueString: "x"}}}, []any{"input", 0}, "value", "valueString",
			func(b []byte) (any, error) { return r4.UnmarshalTask(b) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Marshal(c.v)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			var doc any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatalf("output is not JSON: %v", err)
			}
			obj := dig(t, doc, c.at...)
			if got := alternatives(obj, c.prefix); !slices.Equal(got, []string{c.want}) {
				t.Fatalf("alternatives of %s[x] = %v, want [%s]\n%s", c.prefix, got, c.want, b)
			}
			back, err := c.decode(b)
			if err != nil {
				t.Fatalf("samply unmarshal: %v", err)
			}
			b2, err := Marshal(back)
			if err != nil {
				t.Fatalf("re-Marshal: %v", err)
			}
			if !bytes.Equal(b, b2) {
				t.Fatalf("round trip differs:\n%s\n%s", b, b2)
			}
			if err := CheckEmpty(b, "x"); err != nil {
				t.Fatalf("CheckEmpty on output: %v", err)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	okMA := func() r4.MedicationAdministration {
		return r4.MedicationAdministration{Status: "completed", Subject: patientRef,
			MedicationCodeableConcept: ketamineCC, EffectiveDateTime: "2024-01-01T10:00:00Z"}
	}
	cases := []struct {
		name     string
		v        any
		wantPath string
		wantMsg  string
	}{
		{"Task.input value[x] with only bool/int alternatives is ambiguous",
			r4.Task{Status: r4.TaskStatusRequested, Intent: "order", Input: []r4.TaskInput{{Type: icd, ValueString: "a"}, {Type: icd, ValueBoolean: true}}},
			"Task.input[1].value[x]", "no alternative set (bool/number alternatives are ambiguous in samply structs; use an own type)"},
		{"MedicationRequest.substitution.allowed[x] boolean only is ambiguous",
			r4.MedicationRequest{Status: "active", Intent: "order", MedicationReference: medRef,
				Subject: patientRef, Substitution: &r4.MedicationRequestSubstitution{AllowedBoolean: true}},
			"MedicationRequest.substitution.allowed[x]", "ambiguous"},
		{"no alternative set", func() any { m := okMA(); m.MedicationCodeableConcept = r4.CodeableConcept{}; return m }(),
			"MedicationAdministration.medication[x]", "no alternative set"},
		{"two alternatives set", func() any { m := okMA(); m.MedicationReference = medRef; return &m }(),
			"MedicationAdministration.medication[x]", "more than one alternative set (medicationCodeableConcept, medicationReference)"},
		{"two effective alternatives set", func() any { m := okMA(); m.EffectivePeriod = period; return m }(),
			"MedicationAdministration.effective[x]", "more than one alternative set"},
		{"empty object in fast path", r4.Observation{Status: r4.ObservationStatusFinal},
			"Observation.code", "empty object"},
		{"empty string in fast path", r4.Observation{Status: r4.ObservationStatusFinal, Code: r4.CodeableConcept{Coding: []r4.Coding{{Code: ptr("x")}, {System: ptr("")}}}},
			"Observation.code.coding[1].system", "empty string"},
		{"empty array in a raw resource", r4.Bundle{Type: r4.BundleTypeSearchset, Entry: []r4.BundleEntry{{Resource: json.RawMessage(`{"resourceType":"Patient","name":[]}`)}}},
			"Bundle.entry[0].resource.name", "empty array"},
		{"empty string in walked struct", func() any { m := okMA(); m.Status = ""; return m }(),
			"MedicationAdministration.status", "empty string"},
		{"empty object below a walked struct", func() any { m := okMA(); m.Dosage = &r4.MedicationAdministrationDosage{}; return m }(),
			"MedicationAdministration.dosage", "empty object"},
		{"nil pointer", (*r4.Patient)(nil), "(root)", "nil value"},
		{"null raw resource", r4.Bundle{Type: r4.BundleTypeSearchset, Entry: []r4.BundleEntry{{Resource: json.RawMessage(`{"resourceType":"Patient","id":"a","active":null}`)}}},
			"Bundle.entry[0].resource.active", "null"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Marshal(c.v)
			if err == nil {
				t.Fatalf("Marshal succeeded: %s", b)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not *Error", err)
			}
			if fe.Path != c.wantPath || !strings.Contains(fe.Reason, c.wantMsg) {
				t.Fatalf("got path %q reason %q, want path %q reason containing %q", fe.Path, fe.Reason, c.wantPath, c.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "fhirjson: "+c.wantPath+": ") {
				t.Fatalf("message %q", err.Error())
			}
		})
	}
}

func TestOrderAndEscaping(t *testing.T) {
	div := `<div xmlns="http://www.w3.org/1999/xhtml">a &amp; b</div>`
	obs := r4.Observation{Id: ptr("o1"), Meta: &r4.Meta{Profile: []string{"http://hl7.org/fhir/StructureDefinition/vitalsigns"}},
		Text: &r4.Narrative{Status: r4.NarrativeStatusGenerated, Div: div}, Status: r4.ObservationStatusFinal, Code: icd,
		Subject: &patientRef, EffectiveDateTime: ptr("2024-01-01"), ValueBoolean: ptr(false)}
	ma := r4.MedicationAdministration{Id: ptr("ma1"), Meta: &r4.Meta{Source: ptr("urn:x")}, Text: obs.Text, Status: "completed",
		Subject: patientRef, MedicationCodeableConcept: ketamineCC, EffectiveDateTime: "2024-01-01T10:00:00Z"}
	for _, c := range []struct {
		name string
		v    any
	}{{"fast path Observation", obs}, {"walked MedicationAdministration", &ma}} {
		t.Run(c.name, func(t *testing.T) {
			b, err := Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte(`{"id":"`)) || !bytes.Contains(b, []byte(`","meta":{`)) {
				t.Fatalf("id/meta not first: %s", b)
			}
			if !bytes.Contains(b, []byte(`"<div xmlns=\"http://www.w3.org/1999/xhtml\">a &amp; b</div>"`)) {
				t.Fatalf("div not emitted verbatim (HTML escaped?): %s", b)
			}
			if b[len(b)-1] != '}' {
				t.Fatalf("trailing bytes")
			}
			name := reflect.TypeOf(c.v)
			for name.Kind() == reflect.Pointer {
				name = name.Elem()
			}
			if !bytes.HasSuffix(b, []byte(`,"resourceType":"`+name.Name()+`"}`)) {
				t.Fatalf("resourceType not last: %s", b)
			}
			// Same members and values as encoding/json would give (modulo the repaired choices).
			std, _ := json.Marshal(c.v)
			var a, s map[string]any
			_ = json.Unmarshal(b, &a)
			_ = json.Unmarshal(std, &s)
			for k, v := range a {
				if !reflect.DeepEqual(s[k], v) {
					t.Errorf("member %s differs from encoding/json", k)
				}
			}
		})
	}
	t.Run("legitimate false and 0 kept", func(t *testing.T) {
		b, err := Marshal(obs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"valueBoolean":false`)) {
			t.Fatalf("optional valueBoolean false dropped: %s", b)
		}
	})
}

func TestRequiredChoiceGroups(t *testing.T) {
	cases := []struct {
		name string
		v    any
		want []string
	}{
		{"MedicationAdministration", r4.MedicationAdministration{}, []string{
			"medication[x]: medicationCodeableConcept,medicationReference", "effective[x]: effectiveDateTime,effectivePeriod"}},
		{"Observation has none", r4.Observation{}, nil},
		{"Extension (all optional) has none", r4.Extension{}, nil},
		{"Claim diagnosis", r4.ClaimDiagnosis{}, []string{"diagnosis[x]: diagnosisCodeableConcept,diagnosisReference"}},
		{"MedicationRequest substitution", r4.MedicationRequestSubstitution{}, []string{"allowed[x]: allowedBoolean,allowedCodeableConcept"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := RequiredChoiceGroups(reflect.TypeOf(c.v)); !slices.Equal(got, c.want) {
				t.Fatalf("got %q want %q", got, c.want)
			}
		})
	}
	t.Run("Task.input value[x] has the plain bool alternative", func(t *testing.T) {
		g := RequiredChoiceGroups(reflect.TypeFor[r4.TaskInput]())
		if len(g) != 1 || !strings.Contains(g[0], "valueBoolean") || !strings.HasPrefix(g[0], "value[x]: ") {
			t.Fatalf("got %q", g)
		}
	})
	t.Run("fast path facts", func(t *testing.T) {
		obs := benchObs()
		if containsGroups(reflect.ValueOf(obs), planFor(reflect.TypeFor[r4.Observation]())) {
			t.Error("this Observation should take the encoding/json fast path")
		}
		obs.Extension = []r4.Extension{{Url: "http://x", ValueUsageContext: &r4.UsageContext{}}}
		if !containsGroups(reflect.ValueOf(obs), planFor(reflect.TypeFor[r4.Observation]())) {
			t.Error("an Observation with a UsageContext extension holds a group")
		}
		if !planFor(reflect.TypeFor[r4.Medication]()).hasGroups {
			t.Error("Medication has ingredient.item[x] below")
		}
		if !planFor(reflect.TypeFor[r4.PlanDefinition]()).hasGroups {
			t.Error("PlanDefinition has useContext.value[x] below")
		}
	})
}

func TestCheckEmpty(t *testing.T) {
	cases := []struct {
		name, in, wantPath string
	}{
		{"ok", `{"a":"x","b":[1,true,{"c":"\"}"}],"d":false}`, ""},
		{"escaped quote then empty", `{"a":"\\","b":""}`, "R.b"},
		{"array index", `{"a":[{"x":1},{"y":{}}]}`, "R.a[1].y"},
		{"string in array", `{"a":["x",""]}`, "R.a[1]"},
		{"null", `{"a":{"b":null}}`, "R.a.b"},
		{"n inside string is fine", `{"a":"null none"}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckEmpty([]byte(c.in), "R")
			if c.wantPath == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Path != c.wantPath {
				t.Fatalf("got %v want path %s", err, c.wantPath)
			}
		})
	}
}

func benchMA() r4.MedicationAdministration {
	return r4.MedicationAdministration{Id: ptr("8d7f1d8e-1c1e-5b7a-9a57-1f2e3d4c5b6a"),
		Meta:   &r4.Meta{Profile: []string{"http://example.org/ma"}, Security: []r4.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/v3-ActCode"), Code: ptr("PSY")}}},
		Status: "completed", MedicationCodeableConcept: ketamineCC, Subject: patientRef,
		Context: &r4.Reference{Reference: ptr("Encounter/e1")}, EffectivePeriod: period,
		Performer: []r4.MedicationAdministrationPerformer{{Actor: r4.Reference{Reference: ptr("Practitioner/pr1")}}},
		Dosage: &r4.MedicationAdministrationDosage{Route: &icd, Dose: &r4.Quantity{Value: ptr(json.Number("0.5")),
			Unit: ptr("mg/kg"), System: ptr("http://unitsofmeasure.org"), Code: ptr("mg/kg")}}}
}

func benchObs() r4.Observation {
	return r4.Observation{Id: ptr("8d7f1d8e-1c1e-5b7a-9a57-1f2e3d4c5b6b"),
		Meta:   &r4.Meta{Profile: []string{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-heart-rate"}},
		Status: r4.ObservationStatusFinal,
		Category: []r4.CodeableConcept{{Coding: []r4.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/observation-category"),
			Code: ptr("vital-signs")}}}},
		Code:              r4.CodeableConcept{Coding: []r4.Coding{{System: ptr("http://loinc.org"), Code: ptr("8867-4")}}},
		Subject:           &patientRef,
		EffectiveDateTime: ptr("2024-01-01T10:00:00Z"),
		ValueQuantity: &r4.Quantity{Value: ptr(json.Number("72")), Unit: ptr("beats/minute"),
			System: ptr("http://unitsofmeasure.org"), Code: ptr("/min")}}
}

func BenchmarkMarshalMedicationAdministration(b *testing.B) {
	v := benchMA()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(&v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalObservation(b *testing.B) {
	v := benchObs()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(&v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodingJSONObservation is the baseline: plain json.Marshal.
func BenchmarkEncodingJSONObservation(b *testing.B) {
	v := benchObs()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(&v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestResourceViewMatchesCopy pins PERF-IN-4 (docs/design/security.md): the
// fast path encodes a resource through a method-less view laid over its own
// memory; its bytes must equal those of the former path, a member-by-member
// copy into a struct with a trailing ResourceType member, for resources
// passed by pointer and by value, empty or full.
func TestResourceViewMatchesCopy(t *testing.T) {
	div := `<div xmlns="http://www.w3.org/1999/xhtml">a &amp; b "q" é</div>`
	obs := benchObs()
	obs.Text = &r4.Narrative{Status: r4.NarrativeStatusGenerated, Div: div}
	obs.Note = []r4.Annotation{{Text: "line\nbreak \u2028 <tag> & \\ \t"}}
	for _, c := range []struct {
		name string
		v    any
	}{
		{"observation pointer", &obs},
		{"observation value", obs},
		{"empty patient", &r4.Patient{}},
		{"patient", &r4.Patient{Id: ptr("p1"), Active: ptr(false), Gender: ptr(r4.AdministrativeGenderFemale),
			Name: []r4.HumanName{{Family: ptr("Ödön"), Given: []string{"A", "B"}}}}},
		{"provenance", &r4.Provenance{Id: ptr("pv"), Recorded: "2025-01-01T00:00:00Z",
			Target: []r4.Reference{{Reference: ptr("Observation/o")}},
			Agent:  []r4.ProvenanceAgent{{Who: r4.Reference{Display: ptr("feed")}}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rv := reflect.ValueOf(c.v)
			for rv.Kind() == reflect.Pointer {
				rv = rv.Elem()
			}
			pl := planFor(rv.Type())
			if !pl.resource || containsGroups(rv, pl) {
				t.Fatalf("%s does not take the fast path", c.name)
			}
			got, err := Marshal(c.v)
			if err != nil && !strings.Contains(c.name, "empty") {
				t.Fatal(err)
			}
			// The former path: a fresh plan forced onto the copy.
			old := &plan{t: pl.t, resource: true}
			old.fastOnce.Do(func() {
				old.buildFast()
				old.viewType = nil
				if old.fastType == nil {
					fs := []reflect.StructField{}
					for _, i := range old.exported {
						f := old.t.Field(i)
						fs = append(fs, reflect.StructField{Name: f.Name, Type: f.Type, Tag: f.Tag})
					}
					fs = append(fs, reflect.StructField{Name: "ResourceType", Type: reflect.TypeFor[string](), Tag: `json:"resourceType"`})
					old.fastType = reflect.StructOf(fs)
				}
			})
			if pl.viewType == nil {
				t.Fatalf("%s: no view type (layout mismatch?)", pl.t)
			}
			e := newEncoder()
			defer e.release()
			if err := e.encodeResourceFast(rv, old); err != nil {
				t.Fatal(err)
			}
			want := e.buf.Bytes()
			if err == nil && !bytes.Equal(got, want) {
				t.Fatalf("view path differs from copy path:\n got %s\nwant %s", got, want)
			}
			e2 := newEncoder()
			defer e2.release()
			if err := e2.encodeResourceFast(rv, pl); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e2.buf.Bytes(), want) {
				t.Fatalf("view path differs from copy path:\n got %s\nwant %s", e2.buf.Bytes(), want)
			}
		})
	}
}

func BenchmarkCheckEmpty(b *testing.B) {
	obs := benchObs()
	obs.Text = &r4.Narrative{Status: r4.NarrativeStatusGenerated, Div: `<div xmlns="http://www.w3.org/1999/xhtml">a \ b "q"</div>`}
	body, err := Marshal(&obs)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := CheckEmpty(body, "Observation"); err != nil {
			b.Fatal(err)
		}
	}
}
