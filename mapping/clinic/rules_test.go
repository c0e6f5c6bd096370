package clinic

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

type op struct {
	path string
	v    any
	del  bool
}

func set(path string, v any) op { return op{path: path, v: v} }
func del(path string) op        { return op{path: path, del: true} }

// extra records the reference tests need beside testdata/valid.ndjson.
var extraRecords = []string{
	`{"kind":"patient","id":"pat-1002","mrn":"MRN0001002","name":{"family":"Chen"},"birthDate":"1990-07-01","sex":"male"}`,
	`{"kind":"diagnosis","id":"dx-1002-1","patientId":"pat-1002","icd10":"F43.10","clinicalStatus":"active"}`,
}

// baseBatch returns the valid records keyed "kind/id", in order.
func baseBatch(t *testing.T) ([]string, map[string][]byte) {
	t.Helper()
	raw := readNDJSON(t, "testdata/valid.ndjson")
	for _, s := range extraRecords {
		raw = append(raw, []byte(s))
	}
	var order []string
	byKey := map[string][]byte{}
	for _, b := range raw {
		m := jsonObject(t, b)
		k := fmt.Sprint(m["kind"], "/", m["id"])
		order = append(order, k)
		byKey[k] = b
	}
	return order, byKey
}

func TestValidBatchHasNoErrors(t *testing.T) {
	order, byKey := baseBatch(t)
	var raw [][]byte
	for _, k := range order {
		raw = append(raw, byKey[k])
	}
	if errs := checkBatch(raw); len(errs) > 0 {
		t.Fatalf("valid batch has errors:\n%s", strings.Join(errs, "\n"))
	}
}

const (
	ivSession  = "session/ses-1001-01"
	sprSession = "session/ses-1001-s01"
	noShow     = "session/ses-1001-s02"
	patient    = "patient/pat-1001"
)

func TestRules(t *testing.T) {
	items20 := make([]any, 20)
	for i := range items20 {
		items20[i] = 1
	}
	items10 := []any{1, 2, 3, 4, 5, 6, 1, 2, 3, 4}
	tests := []struct {
		name   string
		target string
		ops    []op
		stage  string // decode, validate or refs
		path   string
		msg    string // a substring of the message, when it matters
	}{
		// Decode.
		{"unknown kind", patient, []op{set("kind", "person")}, "decode", "kind", "must be one of"},
		{"missing kind", patient, []op{del("kind")}, "decode", "kind", "required"},
		{"kind not a string", patient, []op{set("kind", 3)}, "decode", "kind", "string"},
		{"unknown field", patient, []op{set("ssn", "123-45-6789")}, "decode", "ssn", "unknown field"},
		{"unknown nested field", ivSession, []op{set("administrations[0].dose", 3)}, "decode", "administrations[0].dose", "unknown field"},
		{"case-mismatched field is unknown", patient, []op{set("MRN", "MRN0001001")}, "decode", "MRN", "unknown field"},
		{"string for number", ivSession, []op{set("administrations[0].doseMg", "36.2")}, "decode", "administrations[0].doseMg", "must be a number"},
		{"fraction for integer", ivSession, []op{set("sessionNumber", 1.5)}, "decode", "sessionNumber", "must be an integer"},
		{"integer out of range", ivSession, []op{set("vitals[1].heartRate", json.Number("99999999999999999999"))}, "decode", "vitals[1].heartRate", "out of range"},
		{"string for array", patient, []op{set("name.given", "Jordan")}, "decode", "name.given", "must be an array"},
		{"number in string array", patient, []op{set("name.given[1]", 7)}, "decode", "name.given[1]", "must be a string"},
		{"array for object", patient, []op{set("contact", []any{})}, "decode", "contact", "must be an object"},
		{"string for boolean", "location/loc-suite-a", []op{set("remsCertified", "yes")}, "decode", "remsCertified", "must be a boolean"},
		{"null member", patient, []op{set("contact", nil)}, "decode", "contact", "null"},
		{"null array element", ivSession, []op{set("assessments[0].items[0]", nil)}, "decode", "assessments[0].items[0]", "null"},

		// Validate: header and required fields.
		{"missing id", patient, []op{del("id")}, "validate", "id", "required"},
		{"id with space", patient, []op{set("id", "pat 1001")}, "validate", "id", "1-64"},
		{"id too long", patient, []op{set("id", strings.Repeat("a", 65))}, "validate", "id", "1-64"},
		{"reference id malformed", ivSession, []op{set("patientId", "pat/1001")}, "validate", "patientId", "1-64"},
		{"missing mrn", patient, []op{del("mrn")}, "validate", "mrn", "required"},
		{"missing family name", patient, []op{del("name.family")}, "validate", "name.family", "required"},
		{"missing session patientId", ivSession, []op{del("patientId")}, "validate", "patientId", "required"},
		{"missing administration start", ivSession, []op{del("administrations[0].start")}, "validate", "administrations[0].start", "required"},
		{"missing vitals time", ivSession, []op{del("vitals[2].time")}, "validate", "vitals[2].time", "required"},
		{"empty vitals set", ivSession, []op{set("vitals[2]", map[string]any{"time": "2025-01-06T09:35:00-06:00"})}, "validate", "vitals[2]", "at least one"},
		{"consent without recipients", "consent/consent-1001", []op{del("recipientIds")}, "validate", "recipientIds", "required"},

		// Validate: formats and enums.
		{"birthDate US format", patient, []op{set("birthDate", "03/12/1984")}, "validate", "birthDate", "YYYY-MM-DD"},
		{"birthDate impossible day", patient, []op{set("birthDate", "1984-02-30")}, "validate", "birthDate", "YYYY-MM-DD"},
		{"date-time without zone", ivSession, []op{set("scheduledStart", "2025-01-06T09:00:00")}, "validate", "scheduledStart", "zone"},
		{"date where date-time needed", ivSession, []op{set("actualStart", "2025-01-06")}, "validate", "actualStart", "RFC 3339"},
		{"sex abbreviation", patient, []op{set("sex", "F")}, "validate", "sex", "female, male, other, unknown"},
		{"organization type", "organization/org-payer-bh", []op{set("type", "insurer")}, "validate", "type", "clinic, payer, partner"},
		{"icd10 lowercase", "diagnosis/dx-1001-1", []op{set("icd10", "f33.2")}, "validate", "icd10", "ICD-10-CM"},
		{"icd9 code", "diagnosis/dx-1001-1", []op{set("icd10", "296.33")}, "validate", "icd10", "ICD-10-CM"},
		{"protocol indication shape", "protocol/proto-iv-05", []op{set("indications[1]", "F33-1")}, "validate", "indications[1]", "ICD-10-CM"},
		{"npi check digit", "practitioner/prac-okafor", []op{set("npi", "1456789010")}, "validate", "npi", "check digit"},
		{"specialty not a NUCC code", "practitioner/prac-okafor", []op{set("specialty", "psychiatry")}, "validate", "specialty", "NUCC taxonomy"},
		{"specialty without the final X", "practitioner/prac-okafor", []op{set("specialty", "2084P08000")}, "validate", "specialty", "NUCC taxonomy"},
		{"cssrs risk level", ivSession, []op{set("assessments[2].riskLevel", "extreme")}, "validate", "assessments[2].riskLevel", "low, moderate, high"},
		{"cssrs without risk level", ivSession, []op{del("assessments[2].riskLevel")}, "validate", "assessments[2].riskLevel", "required"},
		{"session status", ivSession, []op{set("status", "done")}, "validate", "status", "must be one of"},

		// Validate: end before start.
		{"session actualEnd before actualStart", ivSession, []op{set("actualEnd", "2025-01-06T08:00:00-06:00")}, "validate", "actualEnd", "before actualStart"},
		{"session discharge before actualStart", ivSession, []op{set("dischargeTime", "2025-01-06T09:00:00-06:00")}, "validate", "dischargeTime", "before actualStart"},
		{"discharge compared as instants", ivSession, []op{set("dischargeTime", "2025-01-06T15:00:00Z")}, "validate", "dischargeTime", "before actualStart"},
		{"administration end before start", ivSession, []op{set("administrations[0].end", "2025-01-06T09:14:00-06:00")}, "validate", "administrations[0].end", "before start"},
		{"adverse effect resolved before onset", ivSession, []op{set("adverseEffects[0].resolved", "2025-01-06T09:30:00-06:00")}, "validate", "adverseEffects[0].resolved", "before onset"},
		{"course end before start", "course/course-1001", []op{set("end", "2025-01-05")}, "validate", "end", "before start"},
		{"coverage end before start", "coverage/cov-1001", []op{set("end", "2024-12-31")}, "validate", "end", "before start"},
		{"consent end before start", "consent/consent-1001", []op{set("end", "2025-01-01")}, "validate", "end", "before start"},
		{"trial end before start", "antidepressant_trial/adt-1001-1", []op{set("end", "2022-01-01")}, "validate", "end", "before start"},
		{"adequate trial shorter than 6 weeks", "antidepressant_trial/adt-1001-1", []op{set("end", "2022-03-01")}, "validate", "adequateTrial", "6 weeks"},

		// Validate: vitals and weight.
		{"diastolic equal to systolic", ivSession, []op{set("vitals[0].diastolic", 122)}, "validate", "vitals[0].diastolic", "below systolic"},
		{"diastolic above systolic", ivSession, []op{set("vitals[0].diastolic", 130)}, "validate", "vitals[0].diastolic", "below systolic"},
		{"systolic without diastolic", ivSession, []op{del("vitals[0].diastolic")}, "validate", "vitals[0].diastolic", "required with systolic"},
		{"heart rate high", ivSession, []op{set("vitals[0].heartRate", 251)}, "validate", "vitals[0].heartRate", "20 and 250"},
		{"heart rate low", ivSession, []op{set("vitals[0].heartRate", 19)}, "validate", "vitals[0].heartRate", "20 and 250"},
		{"resp rate low", ivSession, []op{set("vitals[0].respRate", 3)}, "validate", "vitals[0].respRate", "4 and 60"},
		{"spo2 low", ivSession, []op{set("vitals[0].spo2", 49)}, "validate", "vitals[0].spo2", "50 and 100"},
		{"spo2 high", ivSession, []op{set("vitals[0].spo2", 101)}, "validate", "vitals[0].spo2", "50 and 100"},
		{"systolic high", ivSession, []op{set("vitals[0].systolic", 261)}, "validate", "vitals[0].systolic", "50 and 260"},
		{"temperature high", ivSession, []op{set("vitals[0].tempC", 43.5)}, "validate", "vitals[0].tempC", "30 and 43"},
		{"weight low", ivSession, []op{set("weightKg", 19.9), set("administrations[0].doseMg", 9.95)}, "validate", "weightKg", "20 and 350"},
		{"weight high", ivSession, []op{set("weightKg", 351), set("administrations[0].doseMg", 175.5)}, "validate", "weightKg", "20 and 350"},

		// Validate: scales.
		{"phq9 eight items", ivSession, []op{set("assessments[0].items", []any{3, 2, 3, 2, 2, 1, 2, 2}), del("assessments[0].total")}, "validate", "assessments[0].items", "9 items"},
		{"phq9 item out of range", ivSession, []op{set("assessments[0].items[2]", 4), set("assessments[0].total", 19)}, "validate", "assessments[0].items[2]", "0 and 3"},
		{"phq9 total not the sum", ivSession, []op{set("assessments[0].total", 19)}, "validate", "assessments[0].total", "sum of items"},
		{"phq9 total out of range", ivSession, []op{del("assessments[0].items"), set("assessments[0].total", 28)}, "validate", "assessments[0].total", "0 and 27"},
		{"phq9 neither items nor total", ivSession, []op{del("assessments[0].items"), del("assessments[0].total")}, "validate", "assessments[0].total", "required"},
		{"phq9 difficulty out of range", ivSession, []op{set("assessments[0].difficulty", 4)}, "validate", "assessments[0].difficulty", "0 and 3"},
		{"difficulty on gad7", ivSession, []op{set("assessments[1].difficulty", 1)}, "validate", "assessments[1].difficulty", "phq9 only"},
		{"gad7 six items", ivSession, []op{set("assessments[1].items", []any{2, 2, 1, 2, 1, 2}), del("assessments[1].total")}, "validate", "assessments[1].items", "7 items"},
		{"gad7 total out of range", ivSession, []op{del("assessments[1].items"), set("assessments[1].total", 22)}, "validate", "assessments[1].total", "0 and 21"},
		{"pcl5 item out of range", ivSession, []op{set("assessments[1]", map[string]any{"instrument": "pcl5", "time": "2025-01-06T09:05:00-06:00", "items": append(append([]any{}, items20[:19]...), 5)})}, "validate", "assessments[1].items[19]", "0 and 4"},
		{"pcl5 total out of range", ivSession, []op{set("assessments[1]", map[string]any{"instrument": "pcl5", "time": "2025-01-06T09:05:00-06:00", "total": 81})}, "validate", "assessments[1].total", "0 and 80"},
		{"pcl5 total not the sum", ivSession, []op{set("assessments[1]", map[string]any{"instrument": "pcl5", "time": "2025-01-06T09:05:00-06:00", "items": items20, "total": 21})}, "validate", "assessments[1].total", "sum of items"},
		{"madrs total out of range", ivSession, []op{set("assessments[1]", map[string]any{"instrument": "madrs", "time": "2025-01-06T09:05:00-06:00", "total": 61})}, "validate", "assessments[1].total", "0 and 60"},
		{"madrs item out of range", ivSession, []op{set("assessments[1]", map[string]any{"instrument": "madrs", "time": "2025-01-06T09:05:00-06:00", "items": append(append([]any{}, items10[:9]...), 7)})}, "validate", "assessments[1].items[9]", "0 and 6"},
		{"madrs nine items", ivSession, []op{set("assessments[1]", map[string]any{"instrument": "madrs", "time": "2025-01-06T09:05:00-06:00", "items": items10[:9]})}, "validate", "assessments[1].items", "10 items"},
		{"cadss total out of range", ivSession, []op{set("assessments[3].total", 93)}, "validate", "assessments[3].total", "0 and 92"},
		{"cadss 22 items", ivSession, []op{set("assessments[3].items", items20[:18]), set("assessments[3].items", append(append([]any{}, items20...), 1, 0))}, "validate", "assessments[3].items", "23 items"},
		{"moaas total out of range", ivSession, []op{set("assessments[4].total", 6)}, "validate", "assessments[4].total", "0 and 5"},
		{"moaas items", ivSession, []op{set("assessments[4].items", []any{4})}, "validate", "assessments[4].items", "does not apply"},
		{"risk level on phq9", ivSession, []op{set("assessments[0].riskLevel", "low")}, "validate", "assessments[0].riskLevel", "cssrs only"},

		// Validate: dosing and status.
		{"mg/kg without weight", ivSession, []op{del("weightKg"), del("weightTime")}, "validate", "administrations[0].mgPerKg", "weightKg"},
		{"mg/kg disagrees with dose", ivSession, []op{set("administrations[0].doseMg", 40)}, "validate", "administrations[0].doseMg", "5 %"},
		{"mg/kg within 5 percent", ivSession, []op{set("administrations[0].doseMg", 37.5), set("status", "bogus")}, "validate", "status", ""},
		{"completed without actualStart", ivSession, []op{del("actualStart"), del("actualEnd"), del("dischargeTime")}, "validate", "actualStart", "completed"},
		{"stopped-early without actualStart", ivSession, []op{set("status", "stopped-early"), del("actualStart"), del("actualEnd"), del("dischargeTime")}, "validate", "actualStart", "stopped-early"},
		{"cancelled with administrations", ivSession, []op{set("status", "cancelled")}, "validate", "administrations", "cancelled"},
		{"no-show with administrations", ivSession, []op{set("status", "no-show")}, "validate", "administrations", "no-show"},
		{"esketamine intravenous", sprSession, []op{set("administrations[0].route", "iv")}, "validate", "administrations[0].route", "intranasal"},
		{"esketamine devices disagree", sprSession, []op{set("administrations[0].devices", 3)}, "validate", "administrations[0].devices", "28"},
		{"esketamine without devices", sprSession, []op{del("administrations[0].devices")}, "validate", "administrations[0].devices", "required"},
		{"devices on ketamine", ivSession, []op{set("administrations[0].devices", 1)}, "validate", "administrations[0].devices", "esketamine only"},
		{"dose missing", ivSession, []op{del("administrations[0].doseMg"), del("administrations[0].mgPerKg")}, "validate", "administrations[0].doseMg", "required"},
		{"ndc shape", sprSession, []op{set("administrations[0].ndc", "5045802802")}, "validate", "administrations[0].ndc", "NDC"},
		{"protocol esketamine not intranasal", "protocol/proto-spravato", []op{set("route", "iv")}, "validate", "route", "intranasal"},
		{"protocol esketamine dose not a device multiple", "protocol/proto-spravato", []op{set("dose.mg", 60)}, "validate", "dose.mg", "28"},
		{"protocol mg/kg rule without mgPerKg", "protocol/proto-iv-05", []op{del("dose.mgPerKg")}, "validate", "dose.mgPerKg", "required"},
		{"protocol min above max", "protocol/proto-iv-05", []op{set("dose.minMgPerKg", 0.8), set("dose.maxMgPerKg", 0.3)}, "validate", "dose.maxMgPerKg", "minMgPerKg"},
		{"protocol induction missing", "protocol/proto-iv-05", []op{del("induction")}, "validate", "induction", "required"},
		{"protocol induction zero sessions", "protocol/proto-iv-05", []op{set("induction.sessions", 0)}, "validate", "induction.sessions", "1 and 1000"},

		// Validate: interoperability fields.
		{"race unknown value", patient, []op{set("race", []any{"caucasian"})}, "validate", "race[0]", "must be one of"},
		{"race duplicate", patient, []op{set("race", []any{"asian", "asian"})}, "validate", "race[1]", "duplicate"},
		{"race declined with a category", patient, []op{set("race", []any{"white", "declined"})}, "validate", "race[1]", "only value"},
		{"ethnicity value", patient, []op{set("ethnicity", "spanish")}, "validate", "ethnicity", "must be one of"},
		{"birth sex abbreviation", patient, []op{set("birthSex", "F")}, "validate", "birthSex", "female, male, unknown"},
		{"language not BCP 47", patient, []op{set("language", "English")}, "validate", "language", "BCP 47"},
		{"naic shape", "organization/org-payer-bh", []op{set("naic", "1234")}, "validate", "naic", "5-digit"},
		{"naic on a clinic", "organization/org-main", []op{set("naic", "12345")}, "validate", "naic", "payers only"},
		{"payer id on a partner", "organization/org-partner-rb", []op{set("payerId", "RB1")}, "validate", "payerId", "payers only"},
		{"payer id shape", "organization/org-payer-bh", []op{set("payerId", "BH 01")}, "validate", "payerId", "A-Z"},
		{"coverage payer type", "coverage/cov-1001", []op{set("payerType", "gold")}, "validate", "payerType", "must be one of"},
		{"adverse effect causality", ivSession, []op{set("adverseEffects[0].causality", "maybe")}, "validate", "adverseEffects[0].causality", "must be one of"},
		{"product form", "protocol/proto-iv-05", []op{set("product", map[string]any{"form": "vial", "strengthMg": 100})}, "validate", "product.form", "must be one of"},
		{"product without strength", "protocol/proto-iv-05", []op{set("product", map[string]any{"form": "injection-solution"})}, "validate", "product.strengthMg", "required"},
		{"product form against route", "protocol/proto-iv-05", []op{set("product", map[string]any{"form": "lozenge", "strengthMg": 50})}, "validate", "product.form", "route"},
		{"esketamine product not a device", "protocol/proto-spravato", []op{set("product", map[string]any{"form": "nasal-spray", "strengthMg": 56})}, "validate", "product", "28 mg"},
		{"trial diagnosis malformed", "antidepressant_trial/adt-1001-1", []op{set("diagnosisId", "dx 1")}, "validate", "diagnosisId", "1-64"},

		// CheckRefs.
		{"trial diagnosis of another patient", "antidepressant_trial/adt-1001-1", []op{set("diagnosisId", "dx-1002-1")}, "refs", "diagnosisId", "trial's patient"},
		{"trial diagnosis missing", "antidepressant_trial/adt-1001-1", []op{set("diagnosisId", "dx-none")}, "refs", "diagnosisId", "diagnosis"},
		{"session patient missing", ivSession, []op{set("patientId", "pat-9999")}, "refs", "patientId", "existing patient"},
		{"session patient differs from course", ivSession, []op{set("patientId", "pat-1002")}, "refs", "patientId", "course"},
		{"course id of another kind", ivSession, []op{set("courseId", "pat-1001")}, "refs", "courseId", "belongs to a patient"},
		{"clinician missing", ivSession, []op{set("clinicianId", "prac-nobody")}, "refs", "clinicianId", "practitioner"},
		{"location missing", ivSession, []op{set("locationId", "loc-nowhere")}, "refs", "locationId", "location"},
		{"performer missing", ivSession, []op{set("administrations[0].performerId", "prac-nobody")}, "refs", "administrations[0].performerId", "practitioner"},
		{"course prescriber missing", "course/course-1001", []op{set("prescriberId", "prac-nobody")}, "refs", "prescriberId", "practitioner"},
		{"course protocol missing", "course/course-1001", []op{set("protocolId", "proto-none")}, "refs", "protocolId", "protocol"},
		{"course diagnosis of another patient", "course/course-1001", []op{set("diagnosisId", "dx-1002-1")}, "refs", "diagnosisId", "course's patient"},
		{"coverage payer not a payer", "coverage/cov-1001", []op{set("payerId", "org-partner-rb")}, "refs", "payerId", "type payer"},
		{"coverage payer missing", "coverage/cov-1001", []op{set("payerId", "org-none")}, "refs", "payerId", "organization"},
		{"consent recipient missing", "consent/consent-1001", []op{set("recipientIds[1]", "org-none")}, "refs", "recipientIds[1]", "organization"},
		{"diagnosis recorder missing", "diagnosis/dx-1001-1", []op{set("recorderId", "prac-nobody")}, "refs", "recorderId", "practitioner"},
		{"trial patient missing", "antidepressant_trial/adt-1001-1", []op{set("patientId", "pat-9999")}, "refs", "patientId", "patient"},
		{"location organization missing", "location/loc-suite-a", []op{set("organizationId", "org-none")}, "refs", "organizationId", "organization"},
		{"mg/kg far above protocol", ivSession, []op{set("administrations[0].mgPerKg", 1.2), set("administrations[0].doseMg", 86.88)}, "refs", "administrations[0].doseMg", "protocol"},
		{"mg/kg far below protocol", ivSession, []op{set("administrations[0].mgPerKg", 0.15), set("administrations[0].doseMg", 10.86)}, "refs", "administrations[0].doseMg", "protocol"},
		{"mg/kg from dose and weight", ivSession, []op{del("administrations[0].mgPerKg"), set("administrations[0].doseMg", 90)}, "refs", "administrations[0].doseMg", "protocol"},
		{"fixed dose far above protocol", sprSession, []op{set("administrations[0].doseMg", 168), set("administrations[0].devices", 6)}, "refs", "administrations[0].doseMg", "protocol"},
		{"drug differs from protocol", ivSession, []op{set("administrations[0]", map[string]any{"drug": "esketamine", "doseMg": 56, "devices": 2, "route": "intranasal", "start": "2025-01-06T09:15:00-06:00"})}, "refs", "administrations[0].drug", "protocol"},
		{"completed IV session without administration", ivSession, []op{del("administrations")}, "refs", "administrations", "IV"},
	}
	_, byKey := baseBatch(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, ok := byKey[tc.target]
			if !ok {
				t.Fatalf("no base record %s", tc.target)
			}
			m := jsonObject(t, base)
			for _, o := range tc.ops {
				setPath(t, m, o.path, o.v, o.del)
			}
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got := runStages(t, data, tc.stage, byKey)
			if len(got) != 1 || got[0].Path != tc.path || !strings.Contains(got[0].Message, tc.msg) {
				t.Fatalf("errors = %v, want exactly one at %q containing %q", got, tc.path, tc.msg)
			}
			for _, o := range tc.ops {
				if s, ok := o.v.(string); ok && len(s) > 2 && !isVocabulary(s) && strings.Contains(got[0].Message, s) {
					t.Errorf("message %q repeats a record value", got[0].Message)
				}
			}
		})
	}
}

// runStages runs Decode, then Validate, then CheckRefs (with the base batch
// plus the edited record as the resolver), requiring the stages before the
// one under test to pass, and returns the errors of the stage under test.
func runStages(t *testing.T, data []byte, stage string, byKey map[string][]byte) []FieldError {
	t.Helper()
	r, errs := Decode(data)
	if stage == "decode" {
		if r != nil {
			t.Fatalf("Decode returned a record along with errors %v", errs)
		}
		return errs
	}
	if len(errs) > 0 {
		t.Fatalf("Decode: %v", errs)
	}
	errs = Validate(r)
	if stage == "validate" {
		return errs
	}
	if len(errs) > 0 {
		t.Fatalf("Validate: %v", errs)
	}
	res := mapResolver{}
	for _, b := range byKey {
		br, derrs := Decode(b)
		if len(derrs) > 0 {
			t.Fatalf("base record: %v", derrs)
		}
		res[Key{br.RecordKind(), br.RecordID()}] = br
	}
	res[Key{r.RecordKind(), r.RecordID()}] = r
	return CheckRefs(r, res)
}

func TestDecodeRaw(t *testing.T) {
	tests := []struct {
		name, data, path, msg string
	}{
		{"trailing data", `{"kind":"organization","id":"o","name":"N","type":"clinic"} {"kind":"x"}`, "", "trailing data"},
		{"trailing garbage", `{"kind":"organization","id":"o","name":"N","type":"clinic"}]`, "", "trailing data"},
		{"duplicate member", `{"kind":"organization","id":"o","name":"N","name":"M","type":"clinic"}`, "name", "duplicate"},
		{"array not object", `[{"kind":"organization"}]`, "", "JSON object"},
		{"null", `null`, "", "JSON object"},
		{"syntax error", `{"kind":"organization","id":"Jane Doe",}`, "", "byte offset"},
		{"truncated", `{"kind":"organization","id":"o"`, "", "JSON"},
		{"empty", ``, "", "JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, errs := Decode([]byte(tc.data))
			if r != nil || len(errs) != 1 || errs[0].Path != tc.path || !strings.Contains(errs[0].Message, tc.msg) {
				t.Fatalf("Decode = %v, %v; want one error at %q containing %q", r, errs, tc.path, tc.msg)
			}
			if strings.Contains(errs[0].Message, "Jane") {
				t.Errorf("message %q repeats record content", errs[0].Message)
			}
		})
	}
}

func TestDecodeCollectsAllErrors(t *testing.T) {
	data := `{"kind":"patient","id":"p","mrn":1,"name":{"family":"F","nick":"x"},"birthDate":"2000-01-01","sex":"female","extra":true}`
	_, errs := Decode([]byte(data))
	want := []FieldError{
		{"mrn", "must be a string"},
		{"name.nick", "unknown field"},
		{"extra", "unknown field"},
	}
	if fmt.Sprint(errs) != fmt.Sprint(want) {
		t.Fatalf("errors = %v, want %v", errs, want)
	}
}

func TestDecodeReturnsKindStruct(t *testing.T) {
	_, byKey := baseBatch(t)
	for key, b := range byKey {
		t.Run(key, func(t *testing.T) {
			r, errs := Decode(b)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			want, _ := New(r.RecordKind())
			if fmt.Sprintf("%T", r) != fmt.Sprintf("%T", want) {
				t.Fatalf("Decode returned %T, want %T", r, want)
			}
			if got := string(r.RecordKind()) + "/" + r.RecordID(); got != key {
				t.Fatalf("key = %s, want %s", got, key)
			}
		})
	}
}

func TestValidateValueAndNil(t *testing.T) {
	tests := []struct {
		name string
		r    Record
		path string
	}{
		{"nil", nil, ""},
		{"typed nil pointer", (*Patient)(nil), ""},
		{"value with wrong kind", Organization{Header: Header{Kind: KindPatient, ID: "o"}, Name: "N", Type: "clinic"}, "kind"},
		{"value missing kind", Organization{Header: Header{ID: "o"}, Name: "N", Type: "clinic"}, "kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := Validate(tc.r)
			if len(errs) != 1 || errs[0].Path != tc.path {
				t.Fatalf("Validate = %v, want one error at %q", errs, tc.path)
			}
		})
	}
}

func TestRefs(t *testing.T) {
	_, byKey := baseBatch(t)
	r, _ := Decode(byKey[ivSession])
	got := fmt.Sprint(Refs(r))
	want := "[patient/pat-1001 course/course-1001 location/loc-suite-a practitioner/prac-lind]"
	if got != want {
		t.Fatalf("Refs = %s, want %s", got, want)
	}
}

func TestStoppedEarlyAllowsPartialDose(t *testing.T) {
	_, byKey := baseBatch(t)
	m := jsonObject(t, byKey[ivSession])
	setPath(t, m, "status", "stopped-early", false)
	setPath(t, m, "administrations[0].mgPerKg", 0.15, false)
	setPath(t, m, "administrations[0].doseMg", 10.86, false)
	data, _ := json.Marshal(m)
	if errs := runStages(t, data, "refs", byKey); len(errs) > 0 {
		t.Fatalf("errors = %v, want none", errs)
	}
}

func TestFieldErrorString(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{"a[0].b", "is required"}, "a[0].b: is required"},
		{FieldError{"", "trailing data after the record"}, "trailing data after the record"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.e.Error(); got != tc.want {
				t.Fatalf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

// isVocabulary says whether s is one of the code values Validate accepts:
// those are ours, not the clinic's, and may appear in messages.
func isVocabulary(s string) bool {
	for _, set := range [][]string{sessionStatuses, sexes, orgTypes, drugs, routes, instruments} {
		for _, v := range set {
			if v == s {
				return true
			}
		}
	}
	return false
}
