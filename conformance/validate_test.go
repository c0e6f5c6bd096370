package conformance

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

const security = `"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"},{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}]`

const vitalCat = `"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}]`

// Known-good resources: each must validate without issues.
var goodDocs = map[string]string{
	"heart rate": `{"id":"o1","meta":{"versionId":"1","lastUpdated":"2024-01-01T10:00:00.000Z","profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-heart-rate"],` + security + `},
		"status":"final",` + vitalCat + `,"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
		"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01T10:00:00Z",
		"valueQuantity":{"value":72,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"},"resourceType":"Observation"}`,
	"blood pressure": `{"id":"bp","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure","http://hl7.org/fhir/StructureDefinition/vitalsigns|4.0.1"],` + security + `},
		"status":"final",` + vitalCat + `,"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
		"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01T10:00:00+01:00",
		"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
		{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}],"resourceType":"Observation"}`,
	"pulse oximetry": `{"id":"po","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-pulse-oximetry"],` + security + `},
		"status":"final",` + vitalCat + `,"code":{"coding":[{"system":"http://loinc.org","code":"59408-5"},{"system":"http://loinc.org","code":"2708-6"}]},
		"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01",
		"valueQuantity":{"value":98,"unit":"%","system":"http://unitsofmeasure.org","code":"%"},"resourceType":"Observation"}`,
	"ketamine administration over a period": `{"id":"ma2","meta":{` + security + `},"status":"completed",
		"medicationReference":{"reference":"Medication/ket"},"subject":{"reference":"Patient/p1"},
		"effectivePeriod":{"start":"2024-01-01T10:00:00+01:00","end":"2024-01-01T09:40:00Z"},
		"dosage":{"rateQuantity":{"value":0.5,"unit":"mg/kg/h","system":"http://unitsofmeasure.org","code":"mg/kg/h"}},"resourceType":"MedicationAdministration"}`,
	"ketamine administration": `{"id":"ma1","meta":{` + security + `},"status":"completed",
		"medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"6130"}]},
		"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01T10:00:00Z",
		"dosage":{"dose":{"value":0.5,"unit":"mg/kg","system":"http://unitsofmeasure.org","code":"mg/kg"}},"resourceType":"MedicationAdministration"}`,
	"us core patient": `{"id":"p1","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient|6.1.0"]},
		"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
		"identifier":[{"system":"http://example.org/mrn","value":"1"}],"name":[{"family":"D"}],"gender":"female","birthDate":"1980-05-17",
		"_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1980-05-17T10:00:00Z"}]},
		"contained":[{"resourceType":"Organization","id":"o1","name":"Clinic"}],"managingOrganization":{"reference":"#o1"},"resourceType":"Patient"}`,
	"us core practitioner with NPI": `{"id":"pr1","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner"]},
		"identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}],"name":[{"family":"K"}],"resourceType":"Practitioner"}`,
	"searchset": `{"id":"s","meta":{"lastUpdated":"2024-01-01T11:00:00Z"},"type":"searchset","total":1,
		"link":[{"relation":"self","url":"https://fhir.example.org/r4/Patient?_id=p1"}],
		"entry":[{"fullUrl":"https://fhir.example.org/r4/Patient/p1","resource":{"resourceType":"Patient","id":"p1","gender":"other"},"search":{"mode":"match"}},
		{"fullUrl":"https://fhir.example.org/r4/OperationOutcome/oo","resource":{"resourceType":"OperationOutcome","id":"oo","issue":[{"severity":"information","code":"informational"}]},"search":{"mode":"outcome"}}],
		"resourceType":"Bundle"}`,
	"searchset with urn:uuid outcome entry": `{"id":"s2","type":"searchset","total":0,
		"entry":[{"fullUrl":"urn:uuid:6a3e1f0c-7f4e-4c1c-9c1e-3f0b8f0f1f12","resource":{"resourceType":"OperationOutcome","id":"6a3e1f0c-7f4e-4c1c-9c1e-3f0b8f0f1f12",
		"issue":[{"severity":"warning","code":"not-supported","diagnostics":"ignored parameter"}]},"search":{"mode":"outcome"}}],"resourceType":"Bundle"}`,
	"transaction with conditional reference": `{"type":"transaction","entry":[{"fullUrl":"urn:uuid:6a3e1f0c-7f4e-4c1c-9c1e-3f0b8f0f1f11",
		"resource":{"resourceType":"Practitioner","name":[{"family":"K"}],"managingOrganization":null},"request":{"method":"POST","url":"Practitioner"}}],"resourceType":"Bundle"}`,
	"task with string input": `{"id":"t1","status":"requested","intent":"order","input":[{"type":{"text":"note"},"valueString":"x"}],"resourceType":"Task"}`,
}

func init() {
	// the transaction case above deliberately carries nothing invalid; drop the null used as a placeholder
	goodDocs["transaction with conditional reference"] = strings.Replace(goodDocs["transaction with conditional reference"], `,"managingOrganization":null`, `,"gender":"male"`, 1)
	goodDocs["transaction with conditional reference"] = strings.Replace(goodDocs["transaction with conditional reference"], `"resourceType":"Practitioner",`, `"resourceType":"Practitioner","extension":[{"url":"http://example.org/x","valueReference":{"reference":"Organization?identifier=http://example.org|1"}}],`, 1)
}

func TestValidateGood(t *testing.T) {
	for name, doc := range goodDocs {
		t.Run(name, func(t *testing.T) {
			if issues := Validate([]byte(doc)); len(issues) != 0 {
				t.Fatalf("issues on a good resource: %+v", issues)
			}
		})
	}
}

// mutate parses base, applies f and re-encodes.
func mutate(t *testing.T, base string, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(base))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("base: %v", err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func o(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }
func a(m map[string]any, k string, i int) map[string]any {
	return m[k].([]any)[i].(map[string]any)
}
func js(s string) any {
	var v any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		panic(err)
	}
	return v
}

func TestValidateBad(t *testing.T) {
	hr, ma, pat, ss, bp, po := goodDocs["heart rate"], goodDocs["ketamine administration"], goodDocs["us core patient"],
		goodDocs["searchset"], goodDocs["blood pressure"], goodDocs["pulse oximetry"]
	cases := []struct {
		name, base string
		f          func(m map[string]any)
		path, code string
	}{
		// structure from the samply structs
		{"unknown element", hr, func(m map[string]any) { m["foo"] = "x" }, "Observation.foo", CodeStructure},
		{"unknown element in datatype", hr, func(m map[string]any) { o(m, "subject")["ref"] = "x" }, "Observation.subject.ref", CodeStructure},
		{"resourceType inside a datatype", hr, func(m map[string]any) { o(m, "subject")["resourceType"] = "Patient" }, "Observation.subject.resourceType", CodeStructure},
		{"primitive extension on a complex element", hr, func(m map[string]any) { m["_subject"] = js(`{"id":"x"}`) }, "Observation._subject", CodeStructure},
		{"unknown member in primitive extension", hr, func(m map[string]any) { m["_status"] = js(`{"foo":"x"}`) }, "Observation._status.foo", CodeStructure},
		{"string for number", hr, func(m map[string]any) { o(m, "valueQuantity")["value"] = "72" }, "Observation.valueQuantity.value", CodeStructure},
		{"number for string", hr, func(m map[string]any) { o(m, "valueQuantity")["unit"] = json.Number("1") }, "Observation.valueQuantity.unit", CodeStructure},
		{"string for boolean", pat, func(m map[string]any) { m["active"] = "true" }, "Patient.active", CodeStructure},
		{"array for single", pat, func(m map[string]any) { m["gender"] = []any{"male"} }, "Patient.gender", CodeStructure},
		{"single for array", pat, func(m map[string]any) { m["name"] = js(`{"family":"x"}`) }, "Patient.name", CodeStructure},
		{"missing required element", hr, func(m map[string]any) { delete(m, "status") }, "Observation.status", CodeRequired},
		{"missing required choice", ma, func(m map[string]any) { delete(m, "effectiveDateTime") }, "MedicationAdministration.effective[x]", CodeRequired},
		{"two alternatives of a required choice", ma, func(m map[string]any) { m["medicationReference"] = js(`{"reference":"Medication/m1"}`) }, "MedicationAdministration.medication[x]", CodeStructure},
		{"two alternatives of an optional choice", hr, func(m map[string]any) { m["valueString"] = "x" }, "Observation.value[x]", CodeStructure},
		{"empty object", ma, func(m map[string]any) { m["medicationReference"] = js(`{}`); delete(m, "medicationCodeableConcept") }, "MedicationAdministration.medicationReference", CodeInvariant},
		{"empty array", pat, func(m map[string]any) { a(m, "name", 0)["given"] = []any{} }, "Patient.name[0].given", CodeStructure},
		{"empty string", ma, func(m map[string]any) { o(o(m, "dosage"), "dose")["unit"] = "" }, "MedicationAdministration.dosage.dose.unit", CodeValue},
		{"null", pat, func(m map[string]any) { m["birthDate"] = nil }, "Patient.birthDate", CodeStructure},
		{"null in array", ss, func(m map[string]any) { o(a(m, "entry", 0), "resource")["name"] = []any{nil} }, "Bundle.entry[0].resource.name[0]", CodeStructure},
		{"enum code", hr, func(m map[string]any) { m["status"] = "done" }, "Observation.status", CodeCodeInvalid},
		{"plain-string required code", ma, func(m map[string]any) { m["status"] = "given" }, "MedicationAdministration.status", CodeCodeInvalid},
		{"contained resource is validated", pat, func(m map[string]any) { a(m, "contained", 0)["active"] = "yes" }, "Patient.contained[0].active", CodeStructure},
		{"entry resource is validated", ss, func(m map[string]any) { o(a(m, "entry", 0), "resource")["gender"] = "m" }, "Bundle.entry[0].resource.gender", CodeCodeInvalid},
		{"unknown resourceType", ss, func(m map[string]any) {
			o(a(m, "entry", 0), "resource")["resourceType"] = "Foo"
			a(m, "entry", 0)["fullUrl"] = "https://fhir.example.org/r4/Foo/p1"
		}, "Bundle.entry[0].resource.resourceType", CodeCodeInvalid},
		// primitives (datatypes.html)
		{"id", hr, func(m map[string]any) { m["id"] = "a b" }, "Observation.id", CodeValue},
		{"id too long", hr, func(m map[string]any) { m["id"] = strings.Repeat("a", 65) }, "Observation.id", CodeValue},
		{"date", pat, func(m map[string]any) { m["birthDate"] = "1980-5-17" }, "Patient.birthDate", CodeValue},
		{"calendar date", pat, func(m map[string]any) { m["birthDate"] = "1980-02-30" }, "Patient.birthDate", CodeValue},
		{"dateTime without zone", hr, func(m map[string]any) { m["effectiveDateTime"] = "2024-01-01T10:00:00" }, "Observation.effectiveDateTime", CodeValue},
		{"dateTime without seconds", hr, func(m map[string]any) { m["effectiveDateTime"] = "2024-01-01T10:00Z" }, "Observation.effectiveDateTime", CodeValue},
		{"instant without zone", hr, func(m map[string]any) { o(m, "meta")["lastUpdated"] = "2024-01-01T10:00:00.000" }, "Observation.meta.lastUpdated", CodeValue},
		{"instant without seconds", hr, func(m map[string]any) { m["issued"] = "2024-01-01T10:00Z" }, "Observation.issued", CodeValue},
		{"period dateTime", ma, func(m map[string]any) {
			delete(m, "effectiveDateTime")
			m["effectivePeriod"] = js(`{"start":"2024-01-01T10:00:00Z","end":"2024-01-01 10:00"}`)
		}, "MedicationAdministration.effectivePeriod.end", CodeValue},
		{"time", hr, func(m map[string]any) { delete(m, "valueQuantity"); m["valueTime"] = "25:00:00" }, "Observation.valueTime", CodeValue},
		{"uri with whitespace", pat, func(m map[string]any) { a(m, "identifier", 0)["system"] = "http://example .org" }, "Patient.identifier[0].system", CodeValue},
		{"canonical with whitespace", ma, func(m map[string]any) {
			m["extension"] = js(`[{"url":"http://example.org/x","valueCanonical":"http://x y"}]`)
		}, "MedicationAdministration.extension[0].valueCanonical", CodeValue},
		{"code with leading space", ma, func(m map[string]any) {
			a(o(m, "medicationCodeableConcept"), "coding", 0)["code"] = " 6130"
		}, "MedicationAdministration.medicationCodeableConcept.coding[0].code", CodeValue},
		{"decimal is a number", ma, func(m map[string]any) { o(o(m, "dosage"), "dose")["value"] = true }, "MedicationAdministration.dosage.dose.value", CodeStructure},
		{"integer with fraction", hr, func(m map[string]any) { delete(m, "valueQuantity"); m["valueInteger"] = json.Number("1.5") }, "Observation.valueInteger", CodeValue},
		{"integer out of range", hr, func(m map[string]any) { delete(m, "valueQuantity"); m["valueInteger"] = json.Number("4294967296") }, "Observation.valueInteger", CodeValue},
		{"positiveInt zero", hr, func(m map[string]any) {
			m["extension"] = js(`[{"url":"http://example.org/n","valuePositiveInt":0}]`)
		}, "Observation.extension[0].valuePositiveInt", CodeValue},
		{"unsignedInt negative", pat, func(m map[string]any) { m["photo"] = js(`[{"contentType":"image/png","size":-1}]`) }, "Patient.photo[0].size", CodeValue},
		{"base64Binary", pat, func(m map[string]any) { m["photo"] = js(`[{"contentType":"image/png","data":"not base64!"}]`) }, "Patient.photo[0].data", CodeValue},
		{"control character in string", pat, func(m map[string]any) { a(m, "name", 0)["family"] = "a\x01b" }, "Patient.name[0].family", CodeValue},
		{"narrative div", pat, func(m map[string]any) { o(m, "text")["div"] = "<p>x</p>" }, "Patient.text.div", CodeValue},
		// invariants
		{"reference format", hr, func(m map[string]any) { o(m, "subject")["reference"] = "patient p1" }, "Observation.subject.reference", CodeValue},
		{"reference unknown type", hr, func(m map[string]any) { o(m, "subject")["reference"] = "Foo/1" }, "Observation.subject.reference", CodeValue},
		{"reference bad urn:uuid", hr, func(m map[string]any) { o(m, "subject")["reference"] = "urn:uuid:123" }, "Observation.subject.reference", CodeValue},
		{"conditional reference outside transaction", hr, func(m map[string]any) { o(m, "subject")["reference"] = "Patient?identifier=1" }, "Observation.subject.reference", CodeValue},
		{"reference target type", hr, func(m map[string]any) { o(m, "subject")["reference"] = "Medication/m1" }, "Observation.subject.reference", CodeValue},
		{"absolute reference target type", hr, func(m map[string]any) { o(m, "subject")["reference"] = "https://x.org/fhir/Medication/m1" }, "Observation.subject.reference", CodeValue},
		{"ref-1 unresolved local reference", hr, func(m map[string]any) { o(m, "subject")["reference"] = "#p1" }, "Observation.subject.reference", CodeInvariant},
		{"reference type mismatch", hr, func(m map[string]any) { o(m, "subject")["type"] = "Group" }, "Observation.subject.type", CodeInvariant},
		{"dom-3 contained not referenced", pat, func(m map[string]any) { delete(m, "managingOrganization") }, "Patient.contained", CodeInvariant},
		{"dom-2 nested contained", pat, func(m map[string]any) {
			a(m, "contained", 0)["contained"] = js(`[{"resourceType":"Organization","id":"o2","name":"x"}]`)
		}, "Patient.contained[0].contained", CodeInvariant},
		{"dom-4 contained versionId", pat, func(m map[string]any) { a(m, "contained", 0)["meta"] = js(`{"versionId":"1"}`) }, "Patient.contained[0].meta.versionId", CodeInvariant},
		{"qty-3 code without system", ma, func(m map[string]any) { delete(o(o(m, "dosage"), "dose"), "system") }, "MedicationAdministration.dosage.dose", CodeInvariant},
		{"sqty-1 comparator on dose", ma, func(m map[string]any) { o(o(m, "dosage"), "dose")["comparator"] = "<" }, "MedicationAdministration.dosage.dose.comparator", CodeInvariant},
		{"per-1", ma, func(m map[string]any) {
			delete(m, "effectiveDateTime")
			m["effectivePeriod"] = js(`{"start":"2024-01-01T10:00:00+01:00","end":"2024-01-01T08:59:59Z"}`)
		}, "MedicationAdministration.effectivePeriod", CodeInvariant},
		{"per-1 dates", ma, func(m map[string]any) {
			delete(m, "effectiveDateTime")
			m["effectivePeriod"] = js(`{"start":"2024-02","end":"2024-01-31"}`)
		}, "MedicationAdministration.effectivePeriod", CodeInvariant},
		{"obs-6", hr, func(m map[string]any) { m["dataAbsentReason"] = js(`{"text":"x"}`) }, "Observation.dataAbsentReason", CodeInvariant},
		{"obs-7", bp, func(m map[string]any) {
			m["valueString"] = "x"
			m["component"] = append(m["component"].([]any), js(`{"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"valueString":"x"}`))
		}, "Observation.component[2].code", CodeInvariant},
		{"ext-1", hr, func(m map[string]any) {
			m["extension"] = js(`[{"url":"http://example.org/x","valueString":"a","extension":[{"url":"y","valueString":"b"}]}]`)
		}, "Observation.extension[0]", CodeInvariant},
		{"mad-1", ma, func(m map[string]any) { m["dosage"] = js(`{"text":"slow"}`) }, "MedicationAdministration.dosage", CodeInvariant},
		{"coding code without system", ma, func(m map[string]any) {
			delete(a(o(m, "medicationCodeableConcept"), "coding", 0), "system")
		}, "MedicationAdministration.medicationCodeableConcept.coding[0]", CodeInvariant},
		// project security labels
		{"security label PSY missing", hr, func(m map[string]any) {
			o(m, "meta")["security"] = js(`[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]`)
		}, "Observation.meta.security", CodeRequired},
		{"confidentiality code missing", ma, func(m map[string]any) {
			o(m, "meta")["security"] = js(`[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]`)
		}, "MedicationAdministration.meta.security", CodeRequired},
		{"two confidentiality codes", ma, func(m map[string]any) {
			o(m, "meta")["security"] = js(`[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"},
				{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"},
				{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]`)
		}, "MedicationAdministration.meta.security", CodeValue},
		{"PSY without confidentiality on an unlisted type", pat, func(m map[string]any) {
			m["meta"] = js(`{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}`)
		}, "Patient.meta.security", CodeRequired},
		// Bundle rules
		{"searchset fullUrl missing", ss, func(m map[string]any) { delete(a(m, "entry", 0), "fullUrl") }, "Bundle.entry[0].fullUrl", CodeRequired},
		{"searchset fullUrl relative", ss, func(m map[string]any) { a(m, "entry", 0)["fullUrl"] = "Patient/p1" }, "Bundle.entry[0].fullUrl", CodeValue},
		{"searchset fullUrl urn:uuid", ss, func(m map[string]any) {
			a(m, "entry", 0)["fullUrl"] = "urn:uuid:6a3e1f0c-7f4e-4c1c-9c1e-3f0b8f0f1f11"
		}, "Bundle.entry[0].fullUrl", CodeValue},
		{"searchset fullUrl other id", ss, func(m map[string]any) { a(m, "entry", 0)["fullUrl"] = "https://fhir.example.org/r4/Patient/p2" }, "Bundle.entry[0].fullUrl", CodeValue},
		{"search mode", ss, func(m map[string]any) { o(a(m, "entry", 0), "search")["mode"] = "matched" }, "Bundle.entry[0].search.mode", CodeCodeInvalid},
		{"bdl-1 total on collection", ss, func(m map[string]any) {
			m["type"] = "collection"
			for i := range m["entry"].([]any) {
				delete(a(m, "entry", i), "search")
			}
		}, "Bundle.total", CodeInvariant},
		{"bdl-2 search outside searchset", ss, func(m map[string]any) {
			m["type"] = "collection"
			delete(m, "total")
			delete(a(m, "entry", 1), "search")
		}, "Bundle.entry[0].search", CodeInvariant},
		{"bdl-3 request in searchset", ss, func(m map[string]any) { a(m, "entry", 0)["request"] = js(`{"method":"GET","url":"Patient/p1"}`) }, "Bundle.entry[0].request", CodeInvariant},
		{"bdl-4 response in searchset", ss, func(m map[string]any) { a(m, "entry", 0)["response"] = js(`{"status":"200"}`) }, "Bundle.entry[0].response", CodeInvariant},
		{"bdl-7 duplicate fullUrl", ss, func(m map[string]any) {
			m["entry"] = append(m["entry"].([]any), a(m, "entry", 0))
			m["total"] = json.Number("2")
		}, "Bundle.entry[2].fullUrl", CodeInvariant},
		{"total below matches", ss, func(m map[string]any) { m["total"] = json.Number("0") }, "Bundle.total", CodeValue},
		// profiles
		{"unknown claimed profile", hr, func(m map[string]any) { o(m, "meta")["profile"] = []any{"http://example.org/StructureDefinition/x"} }, "Observation.meta.profile[0]", CodeNotSupported},
		{"profile version not checked", hr, func(m map[string]any) {
			o(m, "meta")["profile"] = []any{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-heart-rate|3.1.1"}
		}, "Observation.meta.profile[0]", CodeNotSupported},
		{"profile for another type", pat, func(m map[string]any) {
			o(m, "meta")["profile"] = []any{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-location"}
		}, "Patient.meta.profile[0]", CodeValue},
		{"vital signs category", hr, func(m map[string]any) { m["category"] = js(`[{"text":"vitals"}]`) }, "Observation.category", CodeRequired},
		{"vital signs subject", hr, func(m map[string]any) { delete(m, "subject") }, "Observation.subject", CodeRequired},
		{"vital signs effective", hr, func(m map[string]any) { delete(m, "effectiveDateTime") }, "Observation.effective[x]", CodeRequired},
		{"vital signs effective type", hr, func(m map[string]any) {
			delete(m, "effectiveDateTime")
			m["effectiveInstant"] = "2024-01-01T10:00:00Z"
		}, "Observation.effective[x]", CodeValue},
		{"vs-1", hr, func(m map[string]any) { m["effectiveDateTime"] = "2024-01" }, "Observation.effectiveDateTime", CodeInvariant},
		{"vs-2", hr, func(m map[string]any) { delete(m, "valueQuantity") }, "Observation", CodeInvariant},
		{"vs-3", bp, func(m map[string]any) { delete(a(m, "component", 1), "valueQuantity") }, "Observation.component[1]", CodeInvariant},
		{"heart rate code", hr, func(m map[string]any) { a(o(m, "code"), "coding", 0)["code"] = "8310-5" }, "Observation.code", CodeValue},
		{"heart rate unit", hr, func(m map[string]any) { o(m, "valueQuantity")["code"] = "{beats}/min" }, "Observation.valueQuantity.code", CodeValue},
		{"heart rate unit system", hr, func(m map[string]any) { o(m, "valueQuantity")["system"] = "http://example.org/units" }, "Observation.valueQuantity.system", CodeValue},
		{"heart rate unit missing", hr, func(m map[string]any) { delete(o(m, "valueQuantity"), "unit") }, "Observation.valueQuantity.unit", CodeRequired},
		{"blood pressure diastolic missing", bp, func(m map[string]any) {
			m["component"] = append(m["component"].([]any)[:1], js(`{"code":{"text":"x"},"valueString":"x"}`))
		}, "Observation.component", CodeRequired},
		{"blood pressure unit", bp, func(m map[string]any) { o(a(m, "component", 0), "valueQuantity")["code"] = "mmHg" }, "Observation.component[0].valueQuantity.code", CodeValue},
		{"blood pressure systolic twice", bp, func(m map[string]any) {
			m["component"] = append(m["component"].([]any), a(m, "component", 0))
		}, "Observation.component[2]", CodeStructure},
		{"pulse oximetry second code", po, func(m map[string]any) { o(m, "code")["coding"] = o(m, "code")["coding"].([]any)[:1] }, "Observation.code", CodeValue},
		{"us-core-6 name", pat, func(m map[string]any) { a(m, "name", 0)["text"] = "x"; delete(a(m, "name", 0), "family") }, "Patient.name[0]", CodeInvariant},
		{"us core patient gender", pat, func(m map[string]any) { delete(m, "gender") }, "Patient.gender", CodeRequired},
		{"us core patient identifier system", pat, func(m map[string]any) { delete(a(m, "identifier", 0), "system") }, "Patient.identifier[0].system", CodeRequired},
		{"us-core-17 NPI check digit", goodDocs["us core practitioner with NPI"], func(m map[string]any) { a(m, "identifier", 0)["value"] = "1234567890" }, "Practitioner.identifier[0].value", CodeInvariant},
		{"us core practitioner family", goodDocs["us core practitioner with NPI"], func(m map[string]any) { a(m, "name", 0)["given"] = []any{"x"}; delete(a(m, "name", 0), "family") }, "Practitioner.name[0].family", CodeRequired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := mutate(t, c.base, c.f)
			issues := Validate(body)
			if len(issues) != 1 || issues[0].Path != c.path || issues[0].Code != c.code {
				t.Fatalf("want exactly {%s %s}, got %+v", c.path, c.code, issues)
			}
			if strings.Contains(issues[0].Message, "a\x01b") {
				t.Fatalf("message leaks a value")
			}
		})
	}
}

func TestProfileRules(t *testing.T) {
	good := func(profile, rt, body string) string {
		sec := ""
		if sensitiveTypes[rt] {
			sec = "," + security
		}
		return `{"id":"x","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/` + profile + `"]` + sec + `},` + body + `,"resourceType":"` + rt + `"}`
	}
	cases := []struct {
		name, doc  string
		path, code string // empty path: valid
	}{
		{"organization ok", good("us-core-organization", "Organization", `"active":true,"name":"C","identifier":[{"system":"urn:oid:2.16.840.1.113883.4.7","value":"12D3456789"}]`), "", ""},
		{"organization active", good("us-core-organization", "Organization", `"name":"C"`), "Organization.active", CodeRequired},
		{"organization CLIA", good("us-core-organization", "Organization", `"active":true,"name":"C","identifier":[{"system":"urn:oid:2.16.840.1.113883.4.7","value":"123"}]`), "Organization.identifier[0].value", CodeInvariant},
		{"location name", good("us-core-location", "Location", `"status":"active"`), "Location.name", CodeRequired},
		{"encounter ok", good("us-core-encounter", "Encounter", `"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"type":[{"text":"session"}],"subject":{"reference":"Patient/p1"}`), "", ""},
		{"encounter type", good("us-core-encounter", "Encounter", `"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"}`), "Encounter.type", CodeRequired},
		{"condition encounter-diagnosis ok", good("us-core-condition-encounter-diagnosis", "Condition", `"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"encounter-diagnosis"}]}],"code":{"text":"x"},"subject":{"reference":"Patient/p1"}`), "", ""},
		{"condition encounter-diagnosis category", good("us-core-condition-encounter-diagnosis", "Condition", `"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}],"code":{"text":"x"},"subject":{"reference":"Patient/p1"}`), "Condition.category", CodeRequired},
		{"condition problem code", good("us-core-condition-problems-health-concerns", "Condition", `"category":[{"coding":[{"system":"http://hl7.org/fhir/us/core/CodeSystem/condition-category","code":"health-concern"}]}],"subject":{"reference":"Patient/p1"}`), "Condition.code", CodeRequired},
		{"condition clinicalStatus binding", good("us-core-condition-problems-health-concerns", "Condition", `"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"bogus"}]},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}],"code":{"text":"x"},"subject":{"reference":"Patient/p1"}`), "Condition.clinicalStatus", CodeCodeInvalid},
		{"medicationrequest requester", good("us-core-medicationrequest", "MedicationRequest", `"status":"active","intent":"order","medicationCodeableConcept":{"text":"ketamine"},"subject":{"reference":"Patient/p1"}`), "MedicationRequest.requester", CodeRequired},
		{"medicationrequest plan ok", good("us-core-medicationrequest", "MedicationRequest", `"status":"active","intent":"plan","medicationCodeableConcept":{"text":"ketamine"},"subject":{"reference":"Patient/p1"}`), "", ""},
		{"coverage us-core-15", good("us-core-coverage", "Coverage", `"status":"active","beneficiary":{"reference":"Patient/p1"},"relationship":{"text":"self"},"payor":[{"reference":"Organization/o1"}]`), "Coverage.identifier", CodeInvariant},
		{"coverage relationship", good("us-core-coverage", "Coverage", `"status":"active","subscriberId":"1","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/o1"}]`), "Coverage.relationship", CodeRequired},
		{"provenance two transmitters", good("us-core-provenance", "Provenance", `"target":[{"reference":"Patient/p1"}],"recorded":"2024-01-01T10:00:00Z","agent":[
			{"type":{"coding":[{"system":"http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type","code":"transmitter"}]},"who":{"reference":"Organization/o1"}},
			{"type":{"coding":[{"system":"http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type","code":"transmitter"}]},"who":{"reference":"Organization/o2"}}]`), "Provenance.agent", CodeStructure},
		{"careplan ok", good("us-core-careplan", "CarePlan", `"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">plan</div>"},"status":"active","intent":"plan","category":[{"coding":[{"system":"http://hl7.org/fhir/us/core/CodeSystem/careplan-category","code":"assess-plan"}]}],"subject":{"reference":"Patient/p1"}`), "", ""},
		{"careplan category", good("us-core-careplan", "CarePlan", `"status":"active","intent":"plan","category":[{"text":"x"}],"subject":{"reference":"Patient/p1"}`), "CarePlan.category", CodeRequired},
		{"careplan text status", good("us-core-careplan", "CarePlan", `"text":{"status":"empty","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">plan</div>"},"status":"active","intent":"plan","category":[{"coding":[{"system":"http://hl7.org/fhir/us/core/CodeSystem/careplan-category","code":"assess-plan"}]}],"subject":{"reference":"Patient/p1"}`), "CarePlan.text.status", CodeCodeInvalid},
		{"screening assessment ok", good("us-core-observation-screening-assessment", "Observation", `"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01","valueInteger":14`), "", ""},
		{"screening assessment survey", good("us-core-observation-screening-assessment", "Observation", `"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/p1"},"valueInteger":14`), "Observation.category", CodeRequired},
		{"screening assessment us-core-1", good("us-core-observation-screening-assessment", "Observation", `"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01","valueInteger":14`), "Observation.effectiveDateTime", CodeInvariant},
		{"body weight lb ok", good("us-core-body-weight", "Observation", `"status":"final",`+vitalCat+`,"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01","valueQuantity":{"value":150,"unit":"lb","system":"http://unitsofmeasure.org","code":"[lb_av]"}`), "", ""},
		{"body weight unit", good("us-core-body-weight", "Observation", `"status":"final",`+vitalCat+`,"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01","valueQuantity":{"value":150,"unit":"st","system":"http://unitsofmeasure.org","code":"[stone_av]"}`), "Observation.valueQuantity.code", CodeValue},
		{"body temperature ok", good("us-core-body-temperature", "Observation", `"status":"final",`+vitalCat+`,"code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01","valueQuantity":{"value":37,"unit":"C","system":"http://unitsofmeasure.org","code":"Cel"}`), "", ""},
		{"respiratory rate code", good("us-core-respiratory-rate", "Observation", `"status":"final",`+vitalCat+`,"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01","valueQuantity":{"value":16,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}`), "Observation.code", CodeValue},
		{"vital signs (us core base) ok", good("us-core-vital-signs", "Observation", `"status":"final",`+vitalCat+`,"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01","valueQuantity":{"value":16,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}`), "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			issues := Validate([]byte(c.doc))
			if c.path == "" {
				if len(issues) != 0 {
					t.Fatalf("issues on a good resource: %+v", issues)
				}
				return
			}
			if len(issues) != 1 || issues[0].Path != c.path || issues[0].Code != c.code {
				t.Fatalf("want exactly {%s %s}, got %+v", c.path, c.code, issues)
			}
		})
	}
	t.Run("every supported profile has a rule for its resource type", func(t *testing.T) {
		if n := len(SupportedProfiles()); n != 30 { // 20 US Core and R4, 10 Da Vinci PAS (pas.go)
			t.Fatalf("SupportedProfiles() has %d entries, want 30", n)
		}
		for _, url := range SupportedProfiles() {
			if _, ok := resourceTypes[profileRules[url].resourceType]; !ok {
				t.Errorf("%s: unknown resource type", url)
			}
		}
	})
}

// TestSelftestCorpus runs the known-good and known-bad cases of the
// independent validator's self-test (testdata, exported from fhir-validate's
// selftest.mjs). Project rules (security labels, Coding.system) and "unknown
// claimed profile" are stricter than the independent validator and are not
// counted.
func TestSelftestCorpus(t *testing.T) {
	b, err := os.ReadFile("testdata/fhir-validate-selftest.json")
	if err != nil {
		t.Fatal(err)
	}
	var corpus struct {
		Good, Bad []struct {
			Name     string
			Resource json.RawMessage
		}
	}
	if err := json.Unmarshal(b, &corpus); err != nil {
		t.Fatal(err)
	}
	relevant := func(issues []Issue) []Issue {
		var out []Issue
		for _, is := range issues {
			if strings.HasPrefix(is.Message, "project rule:") || is.Code == CodeNotSupported {
				continue
			}
			out = append(out, is)
		}
		return out
	}
	for _, g := range corpus.Good {
		t.Run("good/"+g.Name, func(t *testing.T) {
			if is := relevant(Validate(g.Resource)); len(is) > 0 {
				t.Fatalf("issues: %+v", is)
			}
		})
	}
	for _, g := range corpus.Bad {
		t.Run("bad/"+g.Name, func(t *testing.T) {
			if is := relevant(Validate(g.Resource)); len(is) == 0 {
				t.Fatal("accepted")
			}
		})
	}
}

func TestValidateResource(t *testing.T) {
	s := func(v string) *string { return &v }
	t.Run("ambiguous Task input", func(t *testing.T) {
		task := r4.Task{Status: r4.TaskStatusRequested, Intent: "order", Input: []r4.TaskInput{{Type: r4.CodeableConcept{Text: s("n")}, ValueInteger: 3}}}
		is := ValidateResource(task)
		if len(is) != 1 || is[0].Path != "Task.input[0].value[x]" || is[0].Code != CodeRequired {
			t.Fatalf("got %+v", is)
		}
	})
	t.Run("empty value", func(t *testing.T) {
		is := ValidateResource(&r4.Patient{Id: s("p1"), Gender: nil, Name: []r4.HumanName{{Family: s("")}}})
		if len(is) != 1 || is[0].Path != "Patient.name[0].family" || is[0].Code != CodeInvariant {
			t.Fatalf("got %+v", is)
		}
	})
	t.Run("valid MedicationAdministration", func(t *testing.T) {
		ma := r4.MedicationAdministration{Id: s("ma1"), Meta: &r4.Meta{Security: []r4.Coding{
			{System: s(sysActCode), Code: s("PSY")}, {System: s(sysConfidentiality), Code: s("R")}}},
			Status: "completed", MedicationCodeableConcept: r4.CodeableConcept{Text: s("ketamine")},
			Subject: r4.Reference{Reference: s("Patient/p1")}, EffectivePeriod: r4.Period{Start: s("2024-01-01T10:00:00Z")}}
		if is := ValidateResource(ma); len(is) != 0 {
			t.Fatalf("got %+v", is)
		}
	})
}

// TestReflectionTables builds the table of every struct type reachable from
// every resource and checks the hand-written tables against them.
func TestReflectionTables(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		if seen[rt] {
			return
		}
		seen[rt] = true
		ti := infoFor(rt)
		if len(ti.order) == 0 {
			t.Errorf("%s: no elements", rt.Name())
		}
		for _, e := range ti.elems {
			if e.kind == kObject {
				walk(e.obj)
			}
		}
	}
	for name, rt := range resourceTypes {
		if rt.Name() != name {
			t.Errorf("resourceTypes[%q] is %s", name, rt.Name())
		}
		if !infoFor(rt).resource {
			t.Errorf("%s: not marked as a resource", name)
		}
		walk(rt)
	}
	if len(resourceTypes) != 146 {
		t.Errorf("%d resource types, want 146 (R4 4.0.1 minus the abstract Resource/DomainResource)", len(resourceTypes))
	}
	byName := map[string]reflect.Type{}
	for rt := range seen {
		byName[rt.Name()] = rt
	}
	check := func(table, key string) {
		tn, en, _ := strings.Cut(key, ".")
		rt, ok := byName[tn]
		if !ok {
			t.Errorf("%s: %s: no such struct", table, key)
			return
		}
		if infoFor(rt).elems[en] == nil {
			t.Errorf("%s: %s: no such element", table, key)
		}
	}
	for k := range primTable {
		check("primTable", k)
	}
	for k := range plainCodes {
		check("plainCodes", k)
	}
	for k := range simpleQuantity {
		check("simpleQuantity", k)
	}
	for k := range targetTypes {
		check("targetTypes", k)
	}
	t.Run("choice groups", func(t *testing.T) {
		ma := infoFor(reflect.TypeFor[r4.MedicationAdministration]())
		var got []string
		for _, g := range ma.groups {
			got = append(got, fmt.Sprintf("%s:%v:%d", g.prefix, g.required, len(g.members)))
		}
		if strings.Join(got, " ") != "medication:true:2 effective:true:2" {
			t.Fatalf("MedicationAdministration groups %v", got)
		}
		obs := infoFor(reflect.TypeFor[r4.Observation]())
		if len(obs.groups) != 2 || obs.groups[0].prefix != "effective" || obs.groups[1].prefix != "value" || obs.groups[1].required {
			t.Fatalf("Observation groups %+v", obs.groups)
		}
		enc := infoFor(reflect.TypeFor[r4.Encounter]())
		if len(enc.groups) != 0 {
			t.Fatalf("Encounter reasonCode/reasonReference are not a choice: %+v", enc.groups)
		}
		if p := obs.elems["effectiveInstant"].prim; p != "instant" {
			t.Fatalf("effectiveInstant prim %q", p)
		}
	})
}

// TestValidateNeverPanics feeds random JSON and random mutations of good
// resources.
func TestValidateNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var gen func(depth int) any
	keys := []string{"resourceType", "id", "meta", "entry", "resource", "contained", "value", "code", "coding", "system",
		"reference", "subject", "valueQuantity", "component", "_status", "status", "extension", "url", "profile", "type", "fullUrl"}
	vals := []any{"Observation", "Bundle", "Patient", "searchset", "#a", "x", "", nil, true, json.Number("1"), json.Number("-1.5"),
		"http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure", "2024-02-30"}
	gen = func(depth int) any {
		switch n := rng.IntN(6); {
		case depth > 6 || n < 2:
			return vals[rng.IntN(len(vals))]
		case n < 4:
			m := map[string]any{}
			for i := rng.IntN(5); i >= 0; i-- {
				m[keys[rng.IntN(len(keys))]] = gen(depth + 1)
			}
			return m
		default:
			var a []any
			for i := rng.IntN(4); i >= 0; i-- {
				a = append(a, gen(depth+1))
			}
			return a
		}
	}
	var docs [][]byte
	for i := 0; i < 2000; i++ {
		v := gen(0)
		if m, ok := v.(map[string]any); ok && rng.IntN(2) == 0 {
			m["resourceType"] = []string{"Observation", "Bundle", "Patient", "MedicationAdministration"}[rng.IntN(4)]
		}
		b, _ := json.Marshal(v)
		docs = append(docs, b)
	}
	for _, g := range goodDocs {
		for i := 0; i < 200; i++ {
			b := []byte(g)
			pos := rng.IntN(len(b))
			docs = append(docs, append(append([]byte{}, b[:pos]...), b[min(len(b), pos+rng.IntN(5)):]...))
		}
	}
	docs = append(docs, []byte(``), []byte(`null`), []byte(`[]`), []byte(`{}`), []byte(`{"resourceType":1}`),
		[]byte(`{"resourceType":"Patient"} {}`), []byte(strings.Repeat(`{"resourceType":"Parameters","parameter":[{"name":"a","resource":`, 200)))
	for _, d := range docs {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic %v on %s", r, d)
				}
			}()
			_ = Validate(d)
		}()
	}
}

// FuzzValidate: go test -fuzz FuzzValidate ./conformance
func FuzzValidate(f *testing.F) {
	for _, g := range goodDocs {
		f.Add([]byte(g))
	}
	f.Fuzz(func(t *testing.T, b []byte) { _ = Validate(b) })
}

func BenchmarkValidateObservation(b *testing.B) {
	doc := []byte(goodDocs["heart rate"])
	b.ReportAllocs()
	for b.Loop() {
		if is := Validate(doc); len(is) != 0 {
			b.Fatal(is)
		}
	}
}
