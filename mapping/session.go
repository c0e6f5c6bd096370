package mapping

import (
	"strconv"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

var encounterStatuses = map[string]r4.EncounterStatus{
	"finished": r4.EncounterStatusFinished, "cancelled": r4.EncounterStatusCancelled,
	"planned": r4.EncounterStatusPlanned,
}

// sessionCtx is what every resource of one session shares.
type sessionCtx struct {
	s         *clinic.Session
	subject   r4.Reference
	encounter *r4.Reference
	clinician r4.Reference
	weight    *r4.Reference // the body-weight Observation, when weighed
	admins    []r4.Reference
}

// session maps a treatment visit: the Encounter first, then the dosing
// body-weight Observation, each administration (Medication for a lot, then
// MedicationAdministration), vital signs, assessments, adverse events and the
// REMS form. See the package documentation for how statuses are represented.
func (e *emitter) session(s *clinic.Session) {
	m := e.m
	id := ResourceID(clinic.KindSession, s.ID)
	e.org = m.org
	for _, f := range [][2]string{{"patientId", s.PatientID}, {"courseId", s.CourseID},
		{"locationId", s.LocationID}, {"clinicianId", s.ClinicianID}} {
		e.require(f[0], f[1])
	}
	e.setPatient(s.PatientID)
	e.author = krefp("Practitioner", clinic.KindPractitioner, s.ClinicianID)
	e.locationClinicID = s.LocationID
	sc := &sessionCtx{
		s:         s,
		subject:   ref("Patient", e.patientID),
		encounter: refp("Encounter", id),
		clinician: kref("Practitioner", clinic.KindPractitioner, s.ClinicianID),
	}
	e.encounter(sc, id)
	e.weight(sc)
	for i := range s.Administrations {
		e.administration(sc, i)
	}
	for i := range s.Vitals {
		e.vitals(sc, i)
	}
	for i := range s.Assessments {
		e.assessment(sc, i)
	}
	for i := range s.AdverseEffects {
		e.adverseEvent(sc, i)
	}
	if s.REMS != nil {
		e.rems(sc)
	}
}

// encounter maps the visit itself to a US Core Encounter (class AMB; see the
// package documentation for status, period and type): identifier = the
// clinic's session id, reasonReference = the diagnosis of the session's
// course (when the course resolves), serviceProvider = the clinic
// Organization when configured.
func (e *emitter) encounter(sc *sessionCtx, id string) {
	m, s := e.m, sc.s
	statusCode, ok := codes.EncounterStatus[s.Status]
	if !ok {
		e.fail("status", "unsupported value")
	}
	typ := codes.SessionKetamine
	if s.REMS != nil {
		typ = codes.SessionEsketamine
	}
	for _, a := range s.Administrations {
		if a.Drug == "esketamine" {
			typ = codes.SessionEsketamine
		}
	}
	types := []r4.CodeableConcept{m.cc(typ.Display, codes.SessionProcedure, typ)}
	if bill, ok := billingCode(s.Administrations); ok {
		types = append(types, m.cc("", bill))
	}
	res := &r4.Encounter{
		Id:   ptr(id),
		Meta: m.meta("us-core-encounter", mentalHealth),
		Identifier: []r4.Identifier{{
			Use: ptr(r4.IdentifierUseUsual), System: ptr(m.sid("session")), Value: ptr(s.ID),
		}},
		Status:  encounterStatuses[statusCode],
		Class:   m.coding(codeOf(codes.V3ActCode, "AMB", "ambulatory")),
		Type:    types,
		Subject: &sc.subject,
		Participant: []r4.EncounterParticipant{{
			Type:       []r4.CodeableConcept{m.cc("", codeOf(codes.V3Participation, "PPRF", "primary performer"))},
			Individual: &sc.clinician,
		}},
		Location: []r4.EncounterLocation{{
			Location: kref("Location", clinic.KindLocation, s.LocationID),
		}},
	}
	if c := e.sessionCourse(s); c != nil && c.DiagnosisID != "" {
		res.ReasonReference = []r4.Reference{kref("Condition", clinic.KindDiagnosis, c.DiagnosisID)}
	}
	if org := e.clinicOrg(); org != "" {
		res.ServiceProvider = krefp("Organization", clinic.KindOrganization, org)
	}
	switch s.Status {
	case clinic.SessionNoShow:
		res.Extension = []r4.Extension{{
			Url: codes.ExtReasonCancelled, ValueCodeableConcept: ccp(m.cc(s.StatusReason, codes.SessionNoShow)),
		}}
	case clinic.SessionCancelled:
		if s.StatusReason != "" {
			res.Extension = []r4.Extension{{Url: codes.ExtReasonCancelled, ValueCodeableConcept: ptr(textCC(s.StatusReason))}}
		}
	}
	start := e.dateTime("actualStart", s.ActualStart)
	end := e.dateTime("dischargeTime", s.DischargeTime)
	if end == nil {
		end = e.dateTime("actualEnd", s.ActualEnd)
	}
	switch s.Status {
	case clinic.SessionCompleted, clinic.SessionStoppedEarly:
		if start == nil {
			e.fail("actualStart", "is required for a "+s.Status+" session")
		}
		res.Period = period(start, end)
	default:
		// Planned, cancelled and no-show: the time it was planned for.
		res.Period = period(e.dateTime("scheduledStart", s.ScheduledStart), nil)
	}
	e.add("Encounter", id, true, res)
}

// billingCode is the CPT or HCPCS code of the doses given in a session: HCPCS
// G2082/G2083 for esketamine up to / over 56 mg in total, else CPT 96365 for
// an IV infusion, else CPT 96372 for an IM or subcutaneous injection; ok is
// false when no dose was given or no code applies (oral and sublingual
// doses are part of the visit).
func billingCode(admins []clinic.Administration) (codes.Code, bool) {
	var esk float64
	var iv, inj bool
	for _, a := range admins {
		switch {
		case a.Drug == "esketamine":
			esk += a.DoseMg
		case a.Route == "iv":
			iv = true
		case a.Route == "im" || a.Route == "subcutaneous":
			inj = true
		}
	}
	switch {
	case esk > 56:
		return codes.BillingEsketamine84, true
	case esk > 0:
		return codes.BillingEsketamine56, true
	case iv:
		return codes.BillingIVInfusion, true
	case inj:
		return codes.BillingInjection, true
	}
	return codes.Code{}, false
}

// vitalObs is a vital-sign Observation of the session claiming profile. It is
// labelled PSY + N like the rest of the session: vital signs taken during a
// ketamine treatment session reveal the psychiatric treatment (the
// Observation references the session's Encounter, and the readings follow
// the dose).
func (e *emitter) vitalObs(sc *sessionCtx, id, profile, when string, code r4.CodeableConcept) *r4.Observation {
	m := e.m
	return &r4.Observation{
		Id:     ptr(id),
		Meta:   m.meta(profile, mentalHealth),
		Status: r4.ObservationStatusFinal,
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.ObsCategory, "vital-signs", "Vital Signs"))},
		Code:              code,
		Subject:           &sc.subject,
		Encounter:         sc.encounter,
		EffectiveDateTime: ptr(when),
		Performer:         []r4.Reference{sc.clinician},
	}
}

// weight maps the dosing body weight to a US Core body-weight Observation,
// effective at weightTime (else the dose start, else the scheduled start).
func (e *emitter) weight(sc *sessionCtx) {
	s := sc.s
	if s.WeightKg == nil {
		return
	}
	when := e.dateTime("weightTime", s.WeightTime)
	if when == nil {
		when = e.dateTime("actualStart", s.ActualStart)
	}
	if when == nil {
		when = e.dateTime("scheduledStart", s.ScheduledStart)
	}
	if when == nil {
		e.fail("weightTime", "is required")
		return
	}
	id := e.id("weight")
	o := e.vitalObs(sc, id, "us-core-body-weight", *when, e.m.cc("", codes.VitalWeight))
	o.ValueQuantity = qty(*s.WeightKg, codes.UnitKg)
	sc.weight = refp("Observation", id)
	e.add("Observation", id, true, o)
}

// vitals maps one vitals entry to a US Core Observation per measured sign:
// blood pressure panel (systolic/diastolic components), heart rate,
// respiratory rate, pulse oximetry (59408-5 and 2708-6), body temperature.
func (e *emitter) vitals(sc *sessionCtx, i int) {
	m, v := e.m, sc.s.Vitals[i]
	path := "vitals[" + strconv.Itoa(i) + "]"
	when := e.dateTime(path+".time", v.Time)
	if when == nil {
		e.fail(path+".time", "is required")
		return
	}
	n := strconv.Itoa(i)
	if v.Systolic != nil || v.Diastolic != nil {
		id := e.id("vitals", n, "bp")
		o := e.vitalObs(sc, id, "us-core-blood-pressure", *when, m.cc("", codes.VitalBPPanel))
		o.Component = []r4.ObservationComponent{
			e.bpComponent(codes.VitalSystolic, v.Systolic),
			e.bpComponent(codes.VitalDiastolic, v.Diastolic),
		}
		e.add("Observation", id, true, o)
	}
	single := func(part, profile string, code r4.CodeableConcept, val float64, u codes.Unit) {
		id := e.id("vitals", n, part)
		o := e.vitalObs(sc, id, profile, *when, code)
		o.ValueQuantity = qty(val, u)
		e.add("Observation", id, true, o)
	}
	if v.HeartRate != nil {
		single("hr", "us-core-heart-rate", m.cc("", codes.VitalHR), float64(*v.HeartRate),
			codes.Unit{Code: "/min", Unit: "beats/minute"})
	}
	if v.RespRate != nil {
		single("rr", "us-core-respiratory-rate", m.cc("", codes.VitalRR), float64(*v.RespRate),
			codes.Unit{Code: "/min", Unit: "breaths/minute"})
	}
	if v.SpO2 != nil {
		single("spo2", "us-core-pulse-oximetry", m.cc("", codes.VitalSpO2, codes.VitalO2Sat), float64(*v.SpO2),
			codes.UnitPercent)
	}
	if v.TempC != nil {
		single("temp", "us-core-body-temperature", m.cc("", codes.VitalTemp), *v.TempC, codes.UnitCel)
	}
}

// bpComponent is a blood-pressure component; a missing value is marked with
// dataAbsentReason (US Core vs-3) rather than dropped, since the profile
// requires both components.
func (e *emitter) bpComponent(code codes.Code, v *int) r4.ObservationComponent {
	c := r4.ObservationComponent{Code: e.m.cc("", code)}
	if v == nil {
		c.DataAbsentReason = ccp(e.m.cc("", codeOf(codes.DataAbsentReason, "unknown", "Unknown")))
		return c
	}
	c.ValueQuantity = qty(float64(*v), codes.UnitMmHg)
	return c
}
