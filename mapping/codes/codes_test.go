package codes

import (
	"strings"
	"testing"
)

// The clinic's value sets (mapping/clinic/validate.go); every value must map.
func TestTablesCoverClinicValues(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		has    func(string) bool
	}{
		{"routes", []string{"iv", "im", "intranasal", "oral", "sublingual", "subcutaneous"},
			func(v string) bool { _, ok := Routes[v]; return ok && RouteText[v] != "" }},
		{"drugs", []string{"ketamine", "esketamine"},
			func(v string) bool { return len(Drugs[v]) > 0 && DrugText[v] != "" }},
		{"instruments", []string{"phq9", "gad7", "pcl5", "cssrs", "cadss", "moaas", "madrs"},
			func(v string) bool { _, ok := Instruments[v]; return ok }},
		{"session statuses", []string{"completed", "cancelled", "no-show", "stopped-early", "scheduled"},
			func(v string) bool { return EncounterStatus[v] != "" }},
		{"effects", []string{"dissociation", "hypertension", "nausea", "vomiting", "sedation", "headache",
			"dizziness", "anxiety", "respiratory-depression", "other"},
			func(v string) bool { cs := AdverseEffects[v]; return len(cs) > 0 && cs[len(cs)-1].System == Local }},
		{"actions", []string{"none", "observed", "infusion-paused", "infusion-slowed", "infusion-stopped",
			"medication-given", "transferred"}, func(v string) bool { _, ok := AdverseActions[v]; return ok }},
		{"course statuses", []string{"active", "completed", "stopped", "on-hold"},
			func(v string) bool { _, ok := CourseStatus[v]; return ok }},
		{"risk levels", []string{"low", "moderate", "high"},
			func(v string) bool { return len(CSSRSRisk[v]) == 2 && CSSRSRisk[v][0].System == LOINC }},
		{"assessment timings", []string{"baseline", "pre-dose", "post-dose", "follow-up"},
			func(v string) bool { _, ok := AssessmentTiming[v]; return ok }},
		{"course phases", []string{"induction", "maintenance"}, func(v string) bool { _, ok := CoursePhases[v]; return ok }},
		{"causality", []string{"certain", "probable", "possible", "unlikely", "unassessable"},
			func(v string) bool { _, ok := Causality[v]; return ok }},
		{"payer types", []string{"medicare", "medicare-hmo", "medicare-ppo", "medicaid", "medicaid-hmo", "commercial",
			"commercial-hmo", "commercial-ppo", "commercial-pos", "commercial-epo", "bcbs", "tricare", "self-pay", "other"},
			func(v string) bool { c, ok := PayerTypes[v]; return ok && c.System == SOPT }},
		{"races", []string{"american-indian-alaska-native", "asian", "black", "native-hawaiian-pacific-islander",
			"white", "declined", "unknown"}, func(v string) bool { _, ok := Races[v]; return ok }},
		{"ethnicities", []string{"hispanic-latino", "not-hispanic-latino", "declined", "unknown"},
			func(v string) bool { _, ok := Ethnicities[v]; return ok }},
		{"birth sexes", []string{"female", "male", "unknown"}, func(v string) bool { return BirthSexes[v] != "" }},
		{"product forms", []string{"injection-solution", "nasal-spray", "lozenge"},
			func(v string) bool { _, f := Forms[v]; _, u := FormUnits[v]; return f && u }},
		{"trial outcomes", []string{"inadequate-response", "partial-response", "response", "intolerance", "ongoing"},
			func(v string) bool { _, ok := TrialOutcomes[v]; return ok }},
		{"trial classes", []string{"SSRI", "SNRI", "TCA", "MAOI", "atypical", "augmentation", "other"},
			func(v string) bool { cs := DrugClasses[v]; return len(cs) > 0 && cs[len(cs)-1].System == Local }},
		{"data classes", []string{"demographics", "diagnoses", "medications", "sessions", "assessments", "vitals", "coverage"},
			func(v string) bool { _, ok := DataClasses[v]; return ok }},
		{"purposes", []string{"treatment", "payment", "operations"}, func(v string) bool { _, ok := Purposes[v]; return ok }},
		{"organization types", []string{"clinic", "payer", "partner"},
			func(v string) bool { _, ok := OrganizationTypes[v]; return ok }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range tc.values {
				if !tc.has(v) {
					t.Errorf("no mapping for %q", v)
				}
			}
		})
	}
}

func TestInstrumentItemCounts(t *testing.T) {
	// Item counts of mapping/clinic's scales table.
	want := map[string]int{"phq9": 9, "gad7": 7, "pcl5": 20, "madrs": 10, "cadss": 23, "moaas": 0, "cssrs": 0}
	for inst, n := range want {
		t.Run(inst, func(t *testing.T) {
			if got := len(Instruments[inst].Items); got != n {
				t.Errorf("%d item codes, want %d", got, n)
			}
			if Instruments[inst].Score.Code == "" {
				t.Error("no score code")
			}
		})
	}
}

func TestLocalConceptsUnique(t *testing.T) {
	for name, concepts := range map[string][]Concept{"local": LocalConcepts(), "scales": ScaleConcepts()} {
		t.Run(name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, c := range concepts {
				if c.Code == "" || c.Display == "" {
					t.Errorf("concept %+v lacks code or display", c)
				}
				if seen[c.Code] {
					t.Errorf("duplicate code %s", c.Code)
				}
				seen[c.Code] = true
			}
		})
	}
}

// TestAnswerLists checks the LOINC answer lists are indexed by their score
// and that only the frequency answers are scored.
func TestAnswerLists(t *testing.T) {
	for name, tc := range map[string]struct {
		list   []Answer
		scored bool
	}{"frequency": {FrequencyAnswers, true}, "difficulty": {DifficultyAnswers, false}} {
		t.Run(name, func(t *testing.T) {
			if len(tc.list) != 4 {
				t.Fatalf("%d answers, want 4", len(tc.list))
			}
			for i, a := range tc.list {
				if a.Score != i || a.Scored != tc.scored || a.System != LOINC || !strings.HasPrefix(a.Code.Code, "LA") {
					t.Errorf("answer %d = %+v", i, a)
				}
			}
		})
	}
}

// TestLocalGroupsPartitionLocalCodes checks every local code belongs to
// exactly one ValueSet group and every group code is local.
func TestLocalGroupsPartitionLocalCodes(t *testing.T) {
	seen := map[string]string{}
	for _, g := range LocalGroups() {
		if len(g.Codes) == 0 || g.ID == "" || g.Title == "" || g.Description == "" {
			t.Errorf("group %+v is incomplete", g)
		}
		for _, c := range g.Codes {
			if c.System != Local || c.Code == "" {
				t.Errorf("%s: %+v is not a local code", g.ID, c)
			}
			if other, dup := seen[c.Code]; dup {
				t.Errorf("%s in %s and %s", c.Code, other, g.ID)
			}
			seen[c.Code] = g.ID
		}
	}
}

func TestExtensionsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, x := range Extensions {
		if !strings.HasPrefix(x.URL, ExtensionBase) || x.Name == "" || x.Title == "" || x.Context == "" ||
			x.ValueType == "" || x.Short == "" || x.Definition == "" || x.Why == "" {
			t.Errorf("extension %+v is incomplete", x)
		}
		if (x.ValueSet == "") != (x.Strength == "") {
			t.Errorf("%s: value set %q with strength %q", x.URL, x.ValueSet, x.Strength)
		}
		if seen[x.URL] {
			t.Errorf("duplicate %s", x.URL)
		}
		seen[x.URL] = true
	}
}

func TestDiagnosisSensitivity(t *testing.T) {
	tests := []struct {
		code             string
		mental, suicidal bool
	}{
		{"F33.2", true, false},
		{"F32.A", true, false},
		{"F43.10", true, false},
		{"f41.1", true, false},
		{"R45.1", true, false},
		{"R45.84", true, false},
		{"R45.851", true, true},
		{"R45.88", true, true},
		{"R45.89", true, false},
		{"T14.91XA", true, true},
		{"T14.90XA", false, false},
		{"Z91.51", true, true},
		{"Z91.52", true, true},
		{"Z91.5", true, true},
		{"Z91.41", false, false},
		{"X71.0XXA", true, true},
		{"X83.8XXA", true, true},
		{"X84", false, false},
		{"X70", false, false},
		{"T42.4X2A", true, true},
		{"T42.4X1A", false, false},
		{"T43.012A", true, true},
		{"T43.011A", false, false},
		{"T51.92XA", true, true},
		{"T51.91XA", false, false},
		{"T65.822A", true, true},
		{"T71.122A", true, true},
		{"T71.121A", false, false},
		{"T71.20XA", false, false},
		{"T66.XXXA", false, false},
		{"T35.2", false, false},
		{"I10", false, false},
		{"G89.4", false, false},
		{"", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			if got := MentalHealthDiagnosis(tc.code); got != tc.mental {
				t.Errorf("MentalHealthDiagnosis = %v, want %v", got, tc.mental)
			}
			if got := SuicideRiskDiagnosis(tc.code); got != tc.suicidal {
				t.Errorf("SuicideRiskDiagnosis = %v, want %v", got, tc.suicidal)
			}
		})
	}
}

// TestSuicideItems pins the items whose answers are suicide-risk content to
// the questions they ask.
func TestSuicideItems(t *testing.T) {
	tests := []struct {
		instrument string
		item       string
		all        bool
	}{
		{"phq9", "44260-8", false},
		{"madrs", "madrs-item-10", false},
		{"cssrs", "", true},
		{"gad7", "", false},
		{"pcl5", "", false},
		{"cadss", "", false},
		{"moaas", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.instrument, func(t *testing.T) {
			inst := Instruments[tc.instrument]
			if inst.SuicideRisk != tc.all {
				t.Errorf("SuicideRisk = %v, want %v", inst.SuicideRisk, tc.all)
			}
			var got string
			if inst.SuicideItem > 0 {
				got = inst.Items[inst.SuicideItem-1].Code
			}
			if got != tc.item {
				t.Errorf("suicide item code = %q, want %q", got, tc.item)
			}
		})
	}
}
