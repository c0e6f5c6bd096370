package priorauth

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
)

func policy(t testing.TB, id string) *Policy {
	t.Helper()
	p := Find(Policies(), id)
	if p == nil {
		t.Fatalf("no policy %s", id)
	}
	return p
}

func criterion(t testing.TB, ev *Evaluation, code string) Result {
	t.Helper()
	for _, r := range ev.Criteria {
		if r.Code == code {
			return r
		}
	}
	t.Fatalf("no criterion %s in %s", code, ev)
	return Result{}
}

func ref(kind clinic.Kind, id string, parts ...string) string {
	typ := map[clinic.Kind]string{clinic.KindPatient: "Patient", clinic.KindDiagnosis: "Condition",
		clinic.KindAntidepressantTrial: "MedicationStatement", clinic.KindLocation: "Location",
		clinic.KindPractitioner: "Practitioner"}[kind]
	if len(parts) > 0 {
		typ = parts[0]
		parts = parts[1:]
	}
	return typ + "/" + mapping.ResourceID(kind, id, parts...)
}

// TestEvaluateBaseline: the fixture meets every criterion of both esketamine
// policies except the PDMP attestation, which the records cannot show.
func TestEvaluateBaseline(t *testing.T) {
	rs, c := esketamineScenario().records(t)
	if c.Therapy != TherapyEsketamine {
		t.Fatalf("therapy %q", c.Therapy)
	}
	ev := Evaluate(policy(t, "esketamine-trd"), rs, c, false)
	if ev.Result != Met {
		t.Fatalf("result %s: %+v", ev, ev.Criteria)
	}
	ev = Evaluate(policy(t, "esketamine-blue-heron"), rs, c, false)
	for _, r := range ev.Criteria {
		want := Met
		if r.Code == "pdmp-check" {
			want = Unknown
		}
		if r.Status != want {
			t.Errorf("%s: %s (%s), want %s", r.Code, r.Status, r.Reason, want)
		}
	}
	if ev.Result != Unknown {
		t.Errorf("result %s, want unknown (the attestation)", ev.Result)
	}
	// Evidence names the resources used.
	if got := criterion(t, ev, "failed-trials").Evidence; !reflect.DeepEqual(got, []string{
		ref(clinic.KindAntidepressantTrial, "adt-1"), ref(clinic.KindAntidepressantTrial, "adt-2")}) {
		t.Errorf("failed-trials evidence %v", got)
	}
	if got := criterion(t, ev, "mdd-diagnosis").Evidence; !reflect.DeepEqual(got, []string{ref(clinic.KindDiagnosis, "dx-1")}) {
		t.Errorf("diagnosis evidence %v", got)
	}
	base := criterion(t, ev, "baseline-severity")
	if len(base.Evidence) != 1 || !strings.HasPrefix(base.Evidence[0], "Observation/") {
		t.Errorf("baseline evidence %v", base.Evidence)
	}
	rems := criterion(t, ev, "rems").Evidence
	if len(rems) != 2 || rems[0] != ref(clinic.KindLocation, "loc-spravato") {
		t.Errorf("rems evidence %v", rems)
	}
}

// TestEvaluateCriteria is the table of every criterion on hand-built
// records, edges included: exactly 6 weeks, exactly 25 %, the baseline on
// day 30 and day 31, a trial with no dose, the same class twice.
func TestEvaluateCriteria(t *testing.T) {
	cases := []struct {
		name     string
		policy   string
		scenario func() *scenario
		change   func(s *scenario)
		code     string
		want     Status
		reason   string // a substring of the reason
	}{
		{"age 18 on the first day", "esketamine-trd", esketamineScenario, func(s *scenario) { s.patient.BirthDate = "2007-03-03" }, "age", Met, "age 18"},
		{"age 17 the day before the birthday", "esketamine-trd", esketamineScenario, func(s *scenario) { s.patient.BirthDate = "2007-03-04" }, "age", NotMet, "age 17"},
		{"age: patient hidden", "esketamine-trd", esketamineScenario, func(s *scenario) { s.hidden = []string{"Patient"} }, "age", Unknown, "not available"},

		{"diagnosis F32.A", "esketamine-trd", esketamineScenario, func(s *scenario) { s.dx.ICD10 = "F32.A" }, "mdd-diagnosis", Met, "F32.A"},
		{"diagnosis PTSD", "esketamine-trd", esketamineScenario, func(s *scenario) { s.dx.ICD10 = "F43.10" }, "mdd-diagnosis", NotMet, "F43.10"},
		{"diagnosis in remission", "esketamine-trd", esketamineScenario, func(s *scenario) { s.dx.ClinicalStatus = "remission" }, "mdd-diagnosis", NotMet, "not active"},
		{"diagnosis hidden", "esketamine-trd", esketamineScenario, func(s *scenario) { s.hidden = []string{"Condition"} }, "mdd-diagnosis", Unknown, "not available"},
		{"diagnosis missing", "esketamine-trd", esketamineScenario, func(s *scenario) { s.dropTypes = []string{"Condition"} }, "mdd-diagnosis", Unknown, "no diagnosis"},

		{"trial exactly 6 weeks", "esketamine-trd", esketamineScenario, func(s *scenario) { s.trials[0].End = "2024-03-14" }, "failed-trials", Met, "2 failed"},
		{"trial 6 weeks less a day", "esketamine-trd", esketamineScenario, func(s *scenario) { s.trials[0].End = "2024-03-13" }, "failed-trials", NotMet, "41 days"},
		{"improvement exactly 25 %", "esketamine-trd", esketamineScenario, func(s *scenario) { s.trials[0].ImprovementPercent = fp(25) }, "failed-trials", Met, ""},
		{"improvement 25.5 %", "esketamine-trd", esketamineScenario, func(s *scenario) { s.trials[0].ImprovementPercent = fp(25.5) }, "failed-trials", NotMet, "improved 25.5 %"},
		{"trial with no dose", "esketamine-trd", esketamineScenario, func(s *scenario) { s.trials[0].DoseMgDay = nil }, "failed-trials", Unknown, "no dose"},
		{"trial with no measured improvement", "esketamine-trd", esketamineScenario, func(s *scenario) { s.trials[1].ImprovementPercent = nil }, "failed-trials", Unknown, "no measured improvement"},
		{"same class twice", "esketamine-trd", esketamineScenario, func(s *scenario) { s.trials[1].Class = "SSRI"; s.trials[1].Drug = "escitalopram" }, "failed-trials", NotMet, "1 failed"},
		{"trial before the current episode", "esketamine-trd", esketamineScenario, func(s *scenario) { s.dx.Onset = "2024-04-15" }, "failed-trials", NotMet, "before the current episode"},
		{"no antidepressant history", "esketamine-trd", esketamineScenario, func(s *scenario) { s.trials = nil }, "failed-trials", Unknown, "no antidepressant history"},
		{"trials hidden", "esketamine-trd", esketamineScenario, func(s *scenario) { s.hidden = []string{"MedicationStatement"} }, "failed-trials", Unknown, "not available"},

		{"baseline on day 30", "esketamine-trd", esketamineScenario, func(s *scenario) {
			s.sessions[0].Assessments = nil
			s.extra = append(s.extra, s.intake(-30, 16))
		}, "baseline-severity", Met, "PHQ-9 16, 30 days"},
		{"baseline on day 31", "esketamine-trd", esketamineScenario, func(s *scenario) {
			s.sessions[0].Assessments = nil
			s.extra = append(s.extra, s.intake(-31, 16))
		}, "baseline-severity", NotMet, "31 days before"},
		{"baseline PHQ-9 14", "esketamine-trd", esketamineScenario, func(s *scenario) { s.sessions[0].Assessments[0].Total = ip(14) }, "baseline-severity", NotMet, "below"},
		{"baseline PHQ-9 15", "esketamine-trd", esketamineScenario, func(s *scenario) { s.sessions[0].Assessments[0].Total = ip(15) }, "baseline-severity", Met, "PHQ-9 15"},
		{"baseline MADRS 28", "esketamine-trd", esketamineScenario, func(s *scenario) {
			s.sessions[0].Assessments[0] = clinic.Assessment{Instrument: clinic.InstrumentMADRS, Time: at(0, "09:00"), Total: ip(28), Timing: "baseline"}
		}, "baseline-severity", Met, "MADRS 28"},
		{"baseline MADRS 27", "esketamine-trd", esketamineScenario, func(s *scenario) {
			s.sessions[0].Assessments[0] = clinic.Assessment{Instrument: clinic.InstrumentMADRS, Time: at(0, "09:00"), Total: ip(27), Timing: "baseline"}
		}, "baseline-severity", NotMet, "below"},
		{"no baseline", "esketamine-trd", esketamineScenario, func(s *scenario) { s.sessions[0].Assessments = nil }, "baseline-severity", Unknown, "no baseline"},

		{"concurrent antidepressant ended", "esketamine-blue-heron", esketamineScenario, func(s *scenario) {
			s.trials[1].Outcome, s.trials[1].End = "inadequate-response", "2024-08-01"
		}, "oral-antidepressant", NotMet, "no antidepressant"},

		{"REMS not enrolled", "esketamine-trd", esketamineScenario, func(s *scenario) { s.sessions[1].REMS.Enrolled = false }, "rems", NotMet, "not enrolled"},
		{"REMS setting not certified", "esketamine-trd", esketamineScenario, func(s *scenario) { s.suite.REMSCertified, s.suite.REMSSettingID = false, "" }, "rems", NotMet, "not REMS-certified"},
		{"REMS before any session", "esketamine-trd", esketamineScenario, func(s *scenario) { s.sessions = nil }, "rems", Unknown, "no REMS monitoring form"},

		{"contraindication AVM", "esketamine-trd", esketamineScenario, func(s *scenario) { s.extra = append(s.extra, s.diagnosis("dx-avm", "Q28.2")) }, "no-contraindication", NotMet, "Q28.2"},
		{"contraindication resolved", "esketamine-trd", esketamineScenario, func(s *scenario) {
			d := s.diagnosis("dx-ich", "I61.9")
			d.ClinicalStatus = "resolved"
			s.extra = append(s.extra, d)
		}, "no-contraindication", Met, ""},
		{"unrelated condition", "esketamine-trd", esketamineScenario, func(s *scenario) { s.extra = append(s.extra, s.diagnosis("dx-htn", "I10")) }, "no-contraindication", Met, ""},

		{"dose 84 mg max", "esketamine-trd", esketamineScenario, func(s *scenario) {}, "dose-within-label", Met, ""},
		{"dose above label", "esketamine-trd", esketamineScenario, func(s *scenario) { s.protocol.Dose.MaxMg = fp(112) }, "dose-within-label", NotMet, "112 mg"},
		{"weekly limit", "esketamine-trd", esketamineScenario, func(s *scenario) { s.protocol.Induction.Frequency = 3 }, "dose-within-label", NotMet, "252 mg a week"},
		{"IV dose within range", "ketamine-iv", ivScenario, func(s *scenario) {}, "dose-within-range", Met, ""},
		{"IV dose above range", "ketamine-iv", ivScenario, func(s *scenario) { s.protocol.Dose.MaxMgPerKg = fp(1) }, "dose-within-range", NotMet, "1 mg/kg"},

		{"psychiatrist", "esketamine-blue-heron", esketamineScenario, func(s *scenario) {}, "psychiatrist-prescriber", Met, "2084P0800X"},
		{"nurse practitioner", "esketamine-blue-heron", esketamineScenario, func(s *scenario) { s.nucc = "363LP0808X" }, "psychiatrist-prescriber", NotMet, "363LP0808X"},
		{"specialty not recorded", "esketamine-blue-heron", esketamineScenario, func(s *scenario) { s.noNUCC = true }, "psychiatrist-prescriber", Unknown, "not recorded"},
		{"PDMP is never met", "esketamine-blue-heron", esketamineScenario, func(s *scenario) {}, "pdmp-check", Unknown, "attests"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.scenario()
			tc.change(s)
			rs, c := s.records(t)
			ev := Evaluate(policy(t, tc.policy), rs, c, false)
			r := criterion(t, ev, tc.code)
			if r.Status != tc.want || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("%s: %s (%q), want %s (%q)", tc.code, r.Status, r.Reason, tc.want, tc.reason)
			}
			if r.Status == Met && tc.code != "no-contraindication" && len(r.Evidence) == 0 {
				t.Errorf("met without evidence")
			}
			if r.Status == NotMet && ev.Result != NotMet {
				t.Errorf("overall %s with a criterion not met", ev.Result)
			}
		})
	}
}

// TestEvaluateRenewal: a documented response is >= 50 % PHQ-9 reduction
// between weeks 4 and 8.
func TestEvaluateRenewal(t *testing.T) {
	cases := []struct {
		name   string
		week   int
		phq    int
		want   Status
		reason string
	}{
		{"50 % at week 6", 6, 9, Met, "50 % reduction"},
		{"44 % at week 6", 6, 10, NotMet, "44.4 % reduction"},
		{"at week 4", 4, 5, Met, ""},
		{"week 9 is outside", 9, 5, Unknown, "no PHQ-9 between weeks 4 and 8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := esketamineScenario()
			s.sessions = append(s.sessions, s.session(3, tc.week*7, 84, tc.phq))
			rs, c := s.records(t)
			ev := Evaluate(policy(t, "esketamine-trd"), rs, c, true)
			r := criterion(t, ev, "documented-response")
			if r.Status != tc.want || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("%s (%q), want %s (%q)", r.Status, r.Reason, tc.want, tc.reason)
			}
			if r.Status != Unknown && len(r.Evidence) != 2 {
				t.Errorf("evidence %v, want baseline and follow-up", r.Evidence)
			}
		})
	}
}

// TestEvaluateDeterministic: the same records give the same evaluation.
func TestEvaluateDeterministic(t *testing.T) {
	rs, c := esketamineScenario().records(t)
	a := Evaluate(policy(t, "esketamine-blue-heron"), rs, c, false)
	for range 20 {
		if b := Evaluate(policy(t, "esketamine-blue-heron"), rs, c, false); !reflect.DeepEqual(a, b) {
			t.Fatalf("evaluation differs:\n%+v\n%+v", a, b)
		}
	}
}

func (s *scenario) diagnosis(id, icd string) *clinic.Diagnosis {
	return &clinic.Diagnosis{Header: clinic.Header{Kind: clinic.KindDiagnosis, ID: id}, PatientID: "pat-1", ICD10: icd,
		ClinicalStatus: "active"}
}

// intake is an assessment-only session (no dose) on day offset with a
// PHQ-9 total.
func (s *scenario) intake(offset, phq int) *clinic.Session {
	return &clinic.Session{Header: clinic.Header{Kind: clinic.KindSession, ID: "sess-intake"}, PatientID: "pat-1", CourseID: "course-1",
		LocationID: s.suite.ID, ClinicianID: s.nurse.ID, Status: clinic.SessionCompleted,
		ScheduledStart: at(offset, "09:00"), ActualStart: at(offset, "09:00"), ActualEnd: at(offset, "09:30"),
		Assessments: []clinic.Assessment{{Instrument: clinic.InstrumentPHQ9, Time: at(offset, "09:05"), Total: ip(phq), Timing: "baseline"}}}
}

// BenchmarkEvaluate is the evaluation alone (records already decoded) of
// the hand-built esketamine course under the Blue Heron policy.
func BenchmarkEvaluate(b *testing.B) {
	rs, c := esketamineScenario().records(b)
	p := policy(b, "esketamine-blue-heron")
	for b.Loop() {
		_ = Evaluate(p, rs, c, false)
	}
}
