package mapping

import (
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// benchSession is a realistic IV ketamine session: weight, one 40-minute
// infusion with a lot number, 12 vitals sets (BP, HR, RR, SpO2) and a PHQ-9
// with items and difficulty.
func benchSession() *clinic.Session {
	i := func(v int) *int { return &v }
	f := func(v float64) *float64 { return &v }
	start := time.Date(2025, 1, 6, 9, 0, 0, 0, time.FixedZone("", -6*3600))
	at := func(min int) string { return start.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	s := &clinic.Session{
		Header:    clinic.Header{Kind: clinic.KindSession, ID: "S-BENCH"},
		PatientID: "P-1", CourseID: "C-1", LocationID: "LOC-1", ClinicianID: "PR-1",
		Status: clinic.SessionCompleted, ScheduledStart: at(0), ActualStart: at(10), ActualEnd: at(50),
		DischargeTime: at(110), WeightKg: f(72.4), WeightTime: at(2), SessionNumber: 3,
		Administrations: []clinic.Administration{{
			Drug: "ketamine", DoseMg: 36.2, MgPerKg: f(0.5), Route: "iv", Start: at(10), End: at(50),
			RateMgPerHour: f(54.3), LotNumber: "KX2291A", PerformerID: "PR-2",
		}},
		Assessments: []clinic.Assessment{{
			Instrument: clinic.InstrumentPHQ9, Time: at(-5), Items: []int{2, 3, 2, 3, 1, 2, 2, 1, 1},
			Total: i(17), Difficulty: i(2), Timing: "pre-dose",
		}},
	}
	for k := range 12 {
		s.Vitals = append(s.Vitals, clinic.Vitals{
			Time: at(5 + 9*k), Systolic: i(120 + k), Diastolic: i(78 + k/2), HeartRate: i(70 + k),
			RespRate: i(14), SpO2: i(97),
		})
	}
	return s
}

func BenchmarkMapSession(b *testing.B) {
	m := testMapper()
	s := benchSession()
	recorded := time.Date(2025, 2, 1, 12, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		outs, err := m.Map(s, recorded)
		if err != nil {
			b.Fatal(err)
		}
		n = len(outs)
	}
	b.ReportMetric(float64(n), "resources/op")
}

func TestBenchSessionIsValid(t *testing.T) {
	s := benchSession()
	if errs := clinic.Validate(s); len(errs) > 0 {
		t.Fatalf("benchmark session is not a valid record: %v", errs)
	}
	outs, err := testMapper().Map(s, recordedAt)
	if err != nil {
		t.Fatal(err)
	}
	// Encounter, weight, Medication, MedicationAdministration, 12 x 4 vitals,
	// PHQ-9 panel + 9 items + difficulty + score, Provenance.
	if want := 1 + 1 + 2 + 48 + 12 + 1; len(outs) != want {
		t.Errorf("mapped %d resources, want %d", len(outs), want)
	}
}
