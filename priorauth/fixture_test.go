package priorauth

import (
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// scenario is one hand-built patient and course as clinic records; tests
// change it, then map it (records) to the FHIR resources the evaluator reads.
type scenario struct {
	clinicOrg, payer  *clinic.Organization
	prescriber, nurse *clinic.Practitioner
	suite             *clinic.Location
	protocol          *clinic.Protocol
	patient           *clinic.Patient
	dx                *clinic.Diagnosis
	extra             []clinic.Record
	coverage          *clinic.Coverage
	course            *clinic.Course
	trials            []*clinic.AntidepressantTrial
	sessions          []*clinic.Session
	noNUCC            bool     // leave the prescriber's NUCC taxonomy out
	nucc              string   // the prescriber's NUCC taxonomy
	hidden            []string // types the requester may not see
	dropTypes         []string // types left out of the records
}

func fp(v float64) *float64 { return &v }
func ip(v int) *int         { return &v }

// courseStart is the fixture course's first session day.
var courseStart = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)

func dayStr(offset int) string { return courseStart.AddDate(0, 0, offset).Format(time.DateOnly) }
func at(offset int, hhmm string) string {
	return courseStart.AddDate(0, 0, offset).Format(time.DateOnly) + "T" + hhmm + ":00-06:00"
}

// esketamineScenario meets every criterion of the esketamine policies.
func esketamineScenario() *scenario {
	h := func(k clinic.Kind, id string) clinic.Header { return clinic.Header{Kind: k, ID: id} }
	s := &scenario{
		clinicOrg: &clinic.Organization{Header: h(clinic.KindOrganization, "org-main"), Name: "Lakeside Ketamine Clinic",
			Type: "clinic", NPI: "1234567893"},
		payer: &clinic.Organization{Header: h(clinic.KindOrganization, "org-payer"), Name: "Blue Heron Health Plan",
			Type: "payer", NAIC: "98101", PayerID: "BHP01"},
		prescriber: &clinic.Practitioner{Header: h(clinic.KindPractitioner, "prac-psych"), NPI: "1456789019",
			Name: clinic.HumanName{Family: "Okafor", Given: []string{"Adaeze"}}, Qualification: "MD"},
		nurse: &clinic.Practitioner{Header: h(clinic.KindPractitioner, "prac-rn"),
			Name: clinic.HumanName{Family: "Lind", Given: []string{"Maren"}}, Qualification: "RN"},
		suite: &clinic.Location{Header: h(clinic.KindLocation, "loc-spravato"), Name: "Spravato rooms",
			OrganizationID: "org-main", REMSCertified: true, REMSSettingID: "HCS-4471902"},
		protocol: &clinic.Protocol{Header: h(clinic.KindProtocol, "proto-spravato"), Name: "Spravato 56/84 mg",
			Drug: "esketamine", Route: "intranasal", Dose: clinic.DoseRule{Rule: "fixed_mg", Mg: fp(56), MinMg: fp(56), MaxMg: fp(84)},
			Product:   &clinic.Product{Form: "nasal-spray", StrengthMg: 28},
			Induction: clinic.Schedule{Sessions: 8, Frequency: 2, PeriodDays: 7}, Maintenance: &clinic.Schedule{Sessions: 8, Frequency: 1, PeriodDays: 7},
			Monitoring: clinic.Monitoring{ObservationMinutes: 120, REMS: true}, Indications: []string{"F33.2"}, OrganizationID: "org-main"},
		patient: &clinic.Patient{Header: h(clinic.KindPatient, "pat-1"), MRN: "MRN1", Name: clinic.HumanName{Family: "Rivera", Given: []string{"Jordan"}},
			BirthDate: "1984-03-12", Sex: "female", OrganizationID: "org-main"},
		dx: &clinic.Diagnosis{Header: h(clinic.KindDiagnosis, "dx-1"), PatientID: "pat-1", ICD10: "F33.2", ClinicalStatus: "active",
			Onset: "2024-01-15"},
		coverage: &clinic.Coverage{Header: h(clinic.KindCoverage, "cov-1"), PatientID: "pat-1", PayerID: "org-payer", MemberID: "BHP000111",
			Status: "active", PayerType: "commercial-ppo", Relationship: "self", Plan: "Blue Heron PPO Gold"},
		course: &clinic.Course{Header: h(clinic.KindCourse, "course-1"), PatientID: "pat-1", ProtocolID: "proto-spravato",
			PrescriberID: "prac-psych", DiagnosisID: "dx-1", Start: dayStr(0), Status: "active", Phase: "induction", CoverageID: "cov-1",
			AuthoredOn: at(-10, "10:00")},
		nucc: "2084P0800X",
	}
	s.trials = []*clinic.AntidepressantTrial{
		{Header: h(clinic.KindAntidepressantTrial, "adt-1"), PatientID: "pat-1", Drug: "sertraline", RxNorm: "36437", Class: "SSRI",
			DoseMgDay: fp(150), Start: "2024-02-01", End: "2024-04-01", Outcome: "inadequate-response", AdequateTrial: true,
			ImprovementPercent: fp(10), DiagnosisID: "dx-1"},
		{Header: h(clinic.KindAntidepressantTrial, "adt-2"), PatientID: "pat-1", Drug: "duloxetine", RxNorm: "72625", Class: "SNRI",
			DoseMgDay: fp(60), Start: "2024-05-01", Outcome: "ongoing", AdequateTrial: true, ImprovementPercent: fp(15), DiagnosisID: "dx-1"},
	}
	s.sessions = []*clinic.Session{s.session(1, 0, 56, 18), s.session(2, 3, 56, 0)}
	return s
}

// session is session n on day offset with a dose of mg and, when phq > 0, a
// PHQ-9 total before the dose.
func (s *scenario) session(n, offset int, mg float64, phq int) *clinic.Session {
	id := "sess-" + string(rune('0'+n/10)) + string(rune('0'+n%10))
	ss := &clinic.Session{Header: clinic.Header{Kind: clinic.KindSession, ID: id}, PatientID: "pat-1", CourseID: "course-1",
		LocationID: s.suite.ID, ClinicianID: s.nurse.ID, Status: clinic.SessionCompleted, SessionNumber: n,
		ScheduledStart: at(offset, "09:00"), ActualStart: at(offset, "09:05"), ActualEnd: at(offset, "11:15"),
		Administrations: []clinic.Administration{{Drug: "esketamine", DoseMg: mg, Route: "intranasal", Start: at(offset, "09:10"),
			Devices: int(mg / 28)}},
		REMS: &clinic.REMSMonitoring{FirstTreatment: n == 1, Enrolled: true, TotalMonitoringMinutes: 125, MinutesToReady: 110,
			VitalsAcceptableBefore: true, VitalsAcceptableAtLeave: true},
	}
	if phq > 0 {
		timing := "pre-dose"
		if n == 1 {
			timing = "baseline"
		}
		ss.Assessments = []clinic.Assessment{{Instrument: clinic.InstrumentPHQ9, Time: at(offset, "09:00"), Total: ip(phq), Timing: timing}}
	}
	return ss
}

// ivScenario is the esketamine scenario on an IV ketamine protocol.
func ivScenario() *scenario {
	s := esketamineScenario()
	s.protocol = &clinic.Protocol{Header: clinic.Header{Kind: clinic.KindProtocol, ID: "proto-iv"}, Name: "IV ketamine 0.5 mg/kg",
		Drug: "ketamine", Route: "iv", Dose: clinic.DoseRule{Rule: "mg_per_kg", MgPerKg: fp(0.5), MinMgPerKg: fp(0.4), MaxMgPerKg: fp(0.75)},
		Product: &clinic.Product{Form: "injection-solution", StrengthMg: 100}, InfusionMinutes: 40,
		Induction:  clinic.Schedule{Sessions: 6, Frequency: 3, PeriodDays: 7},
		Monitoring: clinic.Monitoring{ObservationMinutes: 40}, Indications: []string{"F33.2"}, OrganizationID: "org-main"}
	s.course.ProtocolID = "proto-iv"
	for _, ss := range s.sessions {
		ss.REMS = nil
		ss.WeightKg, ss.WeightTime = fp(80), ss.ActualStart
		ss.Administrations = []clinic.Administration{{Drug: "ketamine", DoseMg: 40, MgPerKg: fp(0.5), Route: "iv",
			Start: ss.ActualStart, End: ss.ActualEnd, RateMgPerHour: fp(60)}}
	}
	return s
}

type resolver map[clinic.Key]clinic.Record

func (r resolver) Resolve(k clinic.Key) (clinic.Record, bool) { v, ok := r[k]; return v, ok }

// all lists the scenario's records in dependency order.
func (s *scenario) all() []clinic.Record {
	// The prescriber's specialty, from the clinic record's specialty member.
	if s.prescriber.Specialty = s.nucc; s.noNUCC {
		s.prescriber.Specialty = ""
	}
	out := []clinic.Record{s.clinicOrg, s.payer, s.prescriber, s.nurse, s.suite, s.patient, s.protocol, s.dx}
	out = append(out, s.extra...)
	out = append(out, s.coverage, s.course)
	for _, ss := range s.sessions {
		out = append(out, ss)
	}
	for _, t := range s.trials {
		out = append(out, t)
	}
	return out
}

// records maps the scenario and decodes the resources as Records.
func (s *scenario) records(t testing.TB) (*Records, *Course) {
	t.Helper()
	recs := s.all()
	res := resolver{}
	for _, r := range recs {
		res[clinic.Key{Kind: r.RecordKind(), ID: r.RecordID()}] = r
	}
	m := mapping.New(mapping.Options{Organization: "org-main"})
	rs := NewRecords()
	drop := map[string]bool{}
	for _, d := range s.dropTypes {
		drop[d] = true
	}
	for _, r := range recs {
		outs, err := m.MapWith(r, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), res)
		if err != nil {
			t.Fatalf("map %s/%s: %v", r.RecordKind(), r.RecordID(), err)
		}
		for _, o := range outs {
			if drop[o.Type] {
				continue
			}
			if err := rs.Add(o.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, h := range s.hidden {
		rs.Hidden[h] = true
	}
	c, err := ResolveCourse(rs, mapping.ResourceID(clinic.KindCourse, s.course.ID))
	if err != nil {
		t.Fatal(err)
	}
	return rs, c
}
