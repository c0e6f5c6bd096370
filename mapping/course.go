package mapping

import (
	"strconv"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// course maps a patient's course on a protocol to a US Core CarePlan
// (instantiating the protocol's PlanDefinition, addressing the diagnosis) and
// the order, a US Core MedicationRequest based on it.
//
// A course record names neither drug, route nor dose: the MedicationRequest's
// medication is a reference to the protocol's Medication
// (ProtocolMedicationID), it instantiates the PlanDefinition, and its
// dosageInstruction (US Core must-support) is the protocol's: one per phase
// (sequence 1 induction, 2 maintenance) with doseAndRate.doseQuantity (mg or
// mg/kg), route, timing (count, frequency per period, infusion duration) and
// the maximum per administration and per period where the protocol bounds
// titration. Without the protocol (MapWith without a resolver) it is text
// only. reportedBoolean is false: the clinic's own record is the source. The
// course phase is a second CarePlan.category (local phase code).
func (e *emitter) course(c *clinic.Course) {
	m := e.m
	id := ResourceID(clinic.KindCourse, c.ID)
	e.org = m.org
	st, ok := codes.CourseStatus[c.Status]
	if !ok {
		e.fail("status", "unsupported value")
	}
	for _, f := range [][2]string{{"patientId", c.PatientID}, {"protocolId", c.ProtocolID},
		{"prescriberId", c.PrescriberID}, {"diagnosisId", c.DiagnosisID}} {
		e.require(f[0], f[1])
	}
	e.setPatient(c.PatientID)
	start := e.date("start", c.Start)
	end := e.date("end", c.End)
	authored := start
	if c.AuthoredOn != "" {
		authored = e.dateTime("authoredOn", c.AuthoredOn)
	}
	planURL := m.PlanDefinitionURL(c.ProtocolID)
	subject := ref("Patient", e.patientID)
	condition := kref("Condition", clinic.KindDiagnosis, c.DiagnosisID)
	prescriber := krefp("Practitioner", clinic.KindPractitioner, c.PrescriberID)
	e.author = prescriber
	mrID := MedicationRequestID(c.ID)

	summary := "Ketamine-class treatment course under protocol " + c.ProtocolID + ", status " + c.Status
	if c.Phase != "" {
		summary += ", " + c.Phase + " phase"
	}
	summary += "."
	plan := &r4.CarePlan{
		Id:                    ptr(id),
		Meta:                  m.meta("us-core-careplan", mentalHealth),
		Text:                  narrative(summary),
		InstantiatesCanonical: []string{planURL},
		Status:                carePlanStatus(st.CarePlan),
		Intent:                r4.CarePlanIntentPlan,
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.CarePlanCategory, "assess-plan", "Assessment and Plan of Treatment"))},
		Description: ptr(summary),
		Subject:     subject,
		Period:      period(start, end),
		Created:     authored,
		Author:      prescriber,
		Addresses:   []r4.Reference{condition},
		Activity:    []r4.CarePlanActivity{{Reference: refp("MedicationRequest", mrID)}},
	}
	if c.Phase != "" {
		phase, ok := codes.CoursePhases[c.Phase]
		if !ok {
			e.fail("phase", "unsupported value")
		}
		plan.Category = append(plan.Category, m.cc("", phase))
	}
	e.add("CarePlan", id, true, plan)

	req := &r4.MedicationRequest{
		Id:     ptr(mrID),
		Meta:   m.meta("us-core-medicationrequest", mentalHealth),
		Status: st.MedicationRequest,
		Intent: "order",
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.MedReqCategory, "outpatient", "Outpatient"))},
		MedicationReference:   ref("Medication", ProtocolMedicationID(c.ProtocolID)),
		Subject:               subject,
		AuthoredOn:            authored,
		Requester:             prescriber,
		ReasonReference:       []r4.Reference{condition},
		InstantiatesCanonical: []string{planURL},
		BasedOn:               []r4.Reference{ref("CarePlan", id)},
		ReportedBoolean:       ptr(false),
		DosageInstruction:     []r4.Dosage{{Text: ptr("Dose, route and schedule per protocol " + planURL)}},
	}
	if r, ok := e.related(clinic.KindProtocol, c.ProtocolID); ok {
		if d := e.dosageInstructions(r.(*clinic.Protocol)); len(d) > 0 {
			req.DosageInstruction = d
		}
	}
	if c.CoverageID != "" {
		req.Insurance = []r4.Reference{kref("Coverage", clinic.KindCoverage, c.CoverageID)}
	}
	e.add("MedicationRequest", mrID, true, req)
}

// dosageInstructions are a protocol's dose, route and schedules as Dosage:
// one per phase, in order (nil when the protocol's dose rule is unusable).
func (e *emitter) dosageInstructions(p *clinic.Protocol) []r4.Dosage {
	m := e.m
	route, ok := codes.Routes[p.Route]
	if !ok {
		return nil
	}
	d := p.Dose
	var dose, maxDose *r4.Quantity
	var doseText string
	switch {
	case d.Rule == "mg_per_kg" && d.MgPerKg != nil:
		dose, doseText = qty(*d.MgPerKg, codes.UnitMgPerKg), fmtNum(*d.MgPerKg)+" mg/kg"
		if d.MaxMgPerKg != nil {
			maxDose = qty(*d.MaxMgPerKg, codes.UnitMgPerKg)
		}
	case d.Rule == "fixed_mg" && d.Mg != nil:
		dose, doseText = qty(*d.Mg, codes.UnitMg), fmtNum(*d.Mg)+" mg"
		if d.MaxMg != nil {
			maxDose = qty(*d.MaxMg, codes.UnitMg)
		}
	default:
		return nil
	}
	phases := []struct {
		name string
		s    *clinic.Schedule
	}{{"Induction", &p.Induction}, {"Maintenance", p.Maintenance}}
	var out []r4.Dosage
	for _, ph := range phases {
		s := ph.s
		if s == nil || s.Sessions <= 0 || s.Frequency <= 0 || s.PeriodDays <= 0 {
			continue
		}
		period, unit, per := float64(s.PeriodDays), "d", fmtNum(float64(s.PeriodDays))+" days"
		if s.PeriodDays%7 == 0 {
			period, unit, per = float64(s.PeriodDays/7), "wk", fmtNum(float64(s.PeriodDays/7))+" weeks"
		}
		switch per {
		case "1 days":
			per = "day"
		case "1 weeks":
			per = "week"
		}
		rep := &r4.TimingRepeat{
			Count: ptr(s.Sessions), Frequency: ptr(s.Frequency), Period: dec(period), PeriodUnit: ptr(unit),
		}
		text := ph.name + ": " + doseText + " " + codes.RouteText[p.Route]
		if p.InfusionMinutes > 0 {
			rep.Duration, rep.DurationUnit = dec(float64(p.InfusionMinutes)), ptr("min")
			text += " over " + strconv.Itoa(p.InfusionMinutes) + " min"
		}
		text += ", " + strconv.Itoa(s.Frequency) + " per " + per + ", " + strconv.Itoa(s.Sessions) + " sessions"
		ds := r4.Dosage{
			Sequence:                 ptr(len(out) + 1),
			Text:                     ptr(text),
			Timing:                   &r4.Timing{Repeat: rep},
			Route:                    ccp(m.cc("", route)),
			DoseAndRate:              []r4.DosageDoseAndRate{{DoseQuantity: dose}},
			MaxDosePerAdministration: maxDose,
		}
		// A fixed-dose maximum bounds the dose per period too (e.g. 84 mg x 2
		// a week = 168 mg per week), which payers check.
		if d.Rule == "fixed_mg" && maxDose != nil {
			ds.MaxDosePerPeriod = &r4.Ratio{
				Numerator:   qty(*d.MaxMg*float64(s.Frequency), codes.UnitMg),
				Denominator: qty(period, codes.Unit{Code: unit, Unit: unitName[unit]}),
			}
		}
		out = append(out, ds)
	}
	return out
}

// unitName is the human unit of a UCUM time unit.
var unitName = map[string]string{"d": "day", "wk": "week"}

func carePlanStatus(s string) r4.RequestStatus {
	switch s {
	case "completed":
		return r4.RequestStatusCompleted
	case "revoked":
		return r4.RequestStatusRevoked
	case "on-hold":
		return r4.RequestStatusOnHold
	}
	return r4.RequestStatusActive
}

// diagnosis maps an ICD-10-CM diagnosis to a US Core problem-list Condition
// (clinicalStatus, verificationStatus confirmed, category problem-list-item),
// labelled by its code: PSY + R for suicidal ideation, suicidal behaviour or
// self-harm, PSY + N for other mental-health diagnoses, none for the rest.
func (e *emitter) diagnosis(d *clinic.Diagnosis) {
	m := e.m
	id := ResourceID(clinic.KindDiagnosis, d.ID)
	e.org = m.org
	e.require("patientId", d.PatientID)
	e.require("icd10", d.ICD10)
	e.require("clinicalStatus", d.ClinicalStatus)
	e.setPatient(d.PatientID)
	l := unlabelled
	switch {
	case codes.SuicideRiskDiagnosis(d.ICD10):
		l = suicideRisk
	case codes.MentalHealthDiagnosis(d.ICD10):
		l = mentalHealth
	}
	res := &r4.Condition{
		Id:   ptr(id),
		Meta: m.meta("us-core-condition-problems-health-concerns", l),
		ClinicalStatus: ccp(m.cc("",
			codeOf(codes.ConditionClinical, d.ClinicalStatus, ""))),
		VerificationStatus: ccp(m.cc("",
			codeOf(codes.ConditionVerStat, "confirmed", "Confirmed"))),
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.ConditionCategory, "problem-list-item", "Problem List Item"))},
		Code:          ccp(m.cc(d.Text, codeOf(codes.ICD10CM, d.ICD10, ""))),
		Subject:       ref("Patient", e.patientID),
		OnsetDateTime: e.dateOrTime("onset", d.Onset),
		RecordedDate:  e.dateOrTime("recordedDate", d.RecordedDate),
	}
	if d.RecorderID != "" {
		res.Recorder = krefp("Practitioner", clinic.KindPractitioner, d.RecorderID)
		e.author = res.Recorder
	}
	e.add("Condition", id, true, res)
}
