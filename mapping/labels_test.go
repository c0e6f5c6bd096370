package mapping

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/mapping/codes"
)

// labelRules are the security labels of each kind of resource
// (docs/fhir-mapping.md "Security labels"): a rule with a code applies to the
// resources of its type with that code (Observation.code, Condition.code), a
// rule without to the other resources of its type. want is the exact list of
// meta.security codes, in order ("" for none).
var labelRules = []struct {
	name, typ, code, want string
}{
	{"patient", "Patient", "", ""},
	{"practitioner", "Practitioner", "", ""},
	{"organization", "Organization", "", ""},
	{"location", "Location", "", ""},
	{"protocol", "PlanDefinition", "", ""},
	{"drug product and lot", "Medication", "", ""},
	{"coverage", "Coverage", "", ""},
	{"consent", "Consent", "", ""},
	{"provenance", "Provenance", "", ""},
	{"mental-health diagnosis", "Condition", "", "PSY N"},
	{"referral for a mental-health reason", "ServiceRequest", "", "PSY N"},
	{"referral task for a mental-health reason", "Task", "", "PSY N"},
	{"course plan", "CarePlan", "", "PSY N"},
	{"course order", "MedicationRequest", "", "PSY N"},
	{"antidepressant trial", "MedicationStatement", "", "PSY N"},
	{"session", "Encounter", "", "PSY N"},
	{"dose", "MedicationAdministration", "", "PSY N"},
	{"adverse event of therapy", "AdverseEvent", "", "PSY N"},
	{"session vital signs, scales and REMS form", "Observation", "", "PSY N"},
	{"PHQ-9 panel", "Observation", "44249-1", "PSY N"},
	{"PHQ-9 item 8", "Observation", "44253-3", "PSY N"},
	{"PHQ-9 item 9", "Observation", "44260-8", "PSY R"},
	{"PHQ-9 difficulty", "Observation", "69722-7", "PSY N"},
	{"PHQ-9 total", "Observation", "44261-6", "PSY N"},
	{"C-SSRS panel", "Observation", "93373-9", "PSY R"},
	{"C-SSRS risk level", "Observation", "93374-7", "PSY R"},
	{"MADRS total", "Observation", "madrs-total", "PSY N"},
	{"MADRS item scores with item 10", "Observation", "madrs-items", "PSY R"},
	{"blood pressure", "Observation", "85354-9", "PSY N"},
	{"body weight", "Observation", "29463-7", "PSY N"},
}

// labelDoc is what the label tests read of a resource.
type labelDoc struct {
	Meta struct {
		Security []struct{ System, Code, Display string }
	}
	Code struct {
		Coding []struct{ Code string }
	}
}

// securityOf returns the meta.security codes of a body, space-separated,
// checking each coding's system and display against the codes table.
func securityOf(t *testing.T, body []byte) (labels, code string) {
	t.Helper()
	var d labelDoc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	known := map[string]codes.Code{"PSY": codes.SecurityPSY, "N": codes.SecurityNormal, "R": codes.SecurityRestricted}
	var out []string
	for _, s := range d.Meta.Security {
		if k, ok := known[s.Code]; !ok || s.System != k.System || s.Display != k.Display {
			t.Errorf("security label %s|%s %q is not one of the labels the mapper may emit", s.System, s.Code, s.Display)
		}
		out = append(out, s.Code)
	}
	if len(d.Code.Coding) > 0 {
		code = d.Code.Coding[0].Code
	}
	return strings.Join(out, " "), code
}

// TestSecurityLabels checks the exact labels of every resource of every
// golden case against labelRules, and that every rule is exercised.
func TestSecurityLabels(t *testing.T) {
	m, f := testMapper(), loadFixture(t)
	used := map[int]bool{}
	for _, file := range cases(t) {
		t.Run(caseName(file), func(t *testing.T) {
			for _, o := range mapCase(t, m, f, file) {
				got, code := securityOf(t, o.Body)
				rule := -1
				for i, r := range labelRules {
					if r.typ == o.Type && (r.code == code || r.code == "" && rule < 0) {
						rule = i
					}
				}
				if rule < 0 {
					t.Errorf("%s/%s (code %q): no label rule", o.Type, o.ID, code)
					continue
				}
				used[rule] = true
				if r := labelRules[rule]; got != r.want {
					t.Errorf("%s (%s/%s): labels %q, want %q", r.name, o.Type, code, got, r.want)
				}
			}
		})
	}
	for i, r := range labelRules {
		if !used[i] {
			t.Errorf("rule %q matched no resource of the golden cases", r.name)
		}
	}
}

// TestSecurityLabelsByContent checks the labels that depend on a record's
// content rather than the resource's kind: the diagnosis code, and whether a
// MADRS Observation carries its suicidal-thoughts item.
func TestSecurityLabelsByContent(t *testing.T) {
	tests := []struct {
		name, fixture, edit string
		typ, code           string
		want                string
	}{
		{"depression", "diagnosis", "", "Condition", "F33.2", "PSY N"},
		{"anxiety symptom", "diagnosis", `icd10="R45.0"`, "Condition", "R45.0", "PSY N"},
		{"suicidal ideation", "diagnosis", `icd10="R45.851"`, "Condition", "R45.851", "PSY R"},
		{"suicide attempt", "diagnosis", `icd10="T14.91XA"`, "Condition", "T14.91XA", "PSY R"},
		{"history of self-harm", "diagnosis", `icd10="Z91.51"`, "Condition", "Z91.51", "PSY R"},
		{"intentional antidepressant overdose", "diagnosis", `icd10="T43.012A"`, "Condition", "T43.012A", "PSY R"},
		{"accidental antidepressant overdose", "diagnosis", `icd10="T43.011A"`, "Condition", "T43.011A", ""},
		{"hypertension", "diagnosis", `icd10="I10"`, "Condition", "I10", ""},
		{"chronic pain", "diagnosis", `icd10="G89.4"`, "Condition", "G89.4", ""},
		{"MADRS total of a MADRS with items", "session-iv", "", "Observation", "madrs-total", "PSY N"},
		{"MADRS item scores", "session-iv", "", "Observation", "madrs-items", "PSY R"},
		{"MADRS total only", "session-iv", "assessments[3].items=null;assessments[3].total=31",
			"Observation", "madrs-total", "PSY N"},
		{"PHQ-9 item 9", "session-iv", "", "Observation", "44260-8", "PSY R"},
		{"PHQ-9 item 8", "session-iv", "", "Observation", "44253-3", "PSY N"},
		{"PHQ-9 total", "session-iv", "", "Observation", "44261-6", "PSY N"},
		{"PHQ-9 total without items", "session-iv", "assessments[0].items=null",
			"Observation", "44261-6", "PSY N"},
		{"C-SSRS risk level", "session-lozenge", "", "Observation", "93374-7", "PSY R"},
		{"GAD-7 total", "session-iv", "", "Observation", "70274-6", "PSY N"},
		{"PCL-5 total", "session-spravato-rems", "", "Observation", "101698-9", "PSY N"},
		{"REMS form", "session-spravato-rems", "", "Observation", "rems-monitoring", "PSY N"},
		{"heart rate", "session-iv", "", "Observation", "8867-4", "PSY N"},
	}
	m, f := testMapper(), loadFixture(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := editedRecord(t, tableRow{fixture: tc.fixture, edit: tc.edit})
			outs, err := m.MapWith(rec, recordedAt, f)
			if err != nil {
				t.Fatalf("MapWith: %v", err)
			}
			n := 0
			for _, o := range outs {
				got, code := securityOf(t, o.Body)
				if o.Type != tc.typ || code != tc.code {
					continue
				}
				n++
				if got != tc.want {
					t.Errorf("%s/%s: labels %q, want %q", o.Type, code, got, tc.want)
				}
			}
			if n == 0 {
				t.Fatalf("no %s with code %s", tc.typ, tc.code)
			}
		})
	}
}
