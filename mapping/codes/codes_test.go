package codes

import "testing"

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
			func(v string) bool { _, ok := SessionStatus[v]; return ok && EncounterStatus[v] != "" }},
		{"effects", []string{"dissociation", "hypertension", "nausea", "vomiting", "sedation", "headache",
			"dizziness", "anxiety", "respiratory-depression", "other"},
			func(v string) bool { return len(AdverseEffects[v]) > 0 && AdverseEffects[v][0].System == LocalPath }},
		{"actions", []string{"none", "observed", "infusion-paused", "infusion-slowed", "infusion-stopped",
			"medication-given", "transferred"}, func(v string) bool { _, ok := AdverseActions[v]; return ok }},
		{"course statuses", []string{"active", "completed", "stopped", "on-hold"},
			func(v string) bool { _, ok := CourseStatus[v]; return ok }},
		{"risk levels", []string{"low", "moderate", "high"}, func(v string) bool { _, ok := CSSRSRisk[v]; return ok }},
		{"trial outcomes", []string{"inadequate-response", "partial-response", "response", "intolerance", "ongoing"},
			func(v string) bool { _, ok := TrialOutcomes[v]; return ok }},
		{"trial classes", []string{"SSRI", "SNRI", "TCA", "MAOI", "atypical", "augmentation", "other"},
			func(v string) bool { _, ok := DrugClasses[v]; return ok }},
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
