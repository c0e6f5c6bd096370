package mapping

import (
	"strconv"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/codes"
)

var aeSeverities = map[string]codes.Code{
	"mild":     {System: codes.AESeverity, Code: "mild", Display: "Mild"},
	"moderate": {System: codes.AESeverity, Code: "moderate", Display: "Moderate"},
	"severe":   {System: codes.AESeverity, Code: "severe", Display: "Severe"},
}

// adverseEvent maps an adverse effect to an AdverseEvent (actuality actual).
// event: a local code plus SNOMED CT where confirmed, text = the clinic's
// text; seriousness serious only when the patient was transferred to a higher
// level of care; outcome resolved when a resolution time is given, else
// ongoing; suspectEntity = every MedicationAdministration of the session,
// each with the clinician's causality assessment (R4
// adverse-event-causality-assess, author = the session clinician) when the
// clinic records one. R4 has no element for the action taken: it is the
// adverse-event-action extension (local code), the resolution time the
// adverse-event-resolved extension.
func (e *emitter) adverseEvent(sc *sessionCtx, i int) {
	m := e.m
	a := sc.s.AdverseEffects[i]
	path := "adverseEffects[" + strconv.Itoa(i) + "]"
	event, ok := codes.AdverseEffects[a.Effect]
	if !ok {
		e.fail(path+".effect", "unsupported value")
		return
	}
	sev, ok := aeSeverities[a.Severity]
	if !ok {
		e.fail(path+".severity", "unsupported value")
		return
	}
	action, ok := codes.AdverseActions[a.Action]
	if !ok {
		e.fail(path+".action", "unsupported value")
		return
	}
	onset := e.dateTime(path+".onset", a.Onset)
	if onset == nil {
		e.fail(path+".onset", "is required")
		return
	}
	var causality []r4.AdverseEventSuspectEntityCausality
	if a.Causality != "" {
		c, ok := codes.Causality[a.Causality]
		if !ok {
			e.fail(path+".causality", "unsupported value")
			return
		}
		causality = []r4.AdverseEventSuspectEntityCausality{{Assessment: ccp(m.cc("", c)), Author: &sc.clinician}}
	}
	exts := []r4.Extension{{Url: codes.ExtAEAction, ValueCodeableConcept: ccp(m.cc("", action))}}
	outcome := codeOf(codes.AEOutcome, "ongoing", "Ongoing")
	if res := e.dateTime(path+".resolved", a.Resolved); res != nil {
		exts = append(exts, r4.Extension{Url: codes.ExtAEResolved, ValueDateTime: res})
		outcome = codeOf(codes.AEOutcome, "resolved", "Resolved")
	}
	serious := codeOf(codes.AESeriousness, "non-serious", "Non-serious")
	if a.Action == "transferred" {
		serious = codeOf(codes.AESeriousness, "serious", "Serious")
	}
	text := a.Text
	if text == "" {
		text = event[0].Display
	}
	id := e.id("adverse", strconv.Itoa(i))
	res := &r4.AdverseEvent{
		Id:          ptr(id),
		Meta:        m.meta("", mentalHealth),
		Extension:   exts,
		Actuality:   r4.AdverseEventActualityActual,
		Event:       ccp(m.cc(text, event...)),
		Subject:     sc.subject,
		Encounter:   sc.encounter,
		Date:        onset,
		Recorder:    &sc.clinician,
		Seriousness: ccp(m.cc("", serious)),
		Severity:    ccp(m.cc("", sev)),
		Outcome:     ccp(m.cc("", outcome)),
	}
	for _, adm := range sc.admins {
		res.SuspectEntity = append(res.SuspectEntity, r4.AdverseEventSuspectEntity{Instance: adm, Causality: causality})
	}
	e.add("AdverseEvent", id, true, res)
}

// rems maps the Spravato REMS Patient Monitoring Form answers to one
// Observation (see the package documentation), effective at discharge (else
// the end, start or scheduled start of the session).
func (e *emitter) rems(sc *sessionCtx) {
	m, s := e.m, sc.s
	r := s.REMS
	var when *string
	for _, f := range [][2]string{{"dischargeTime", s.DischargeTime}, {"actualEnd", s.ActualEnd},
		{"actualStart", s.ActualStart}, {"scheduledStart", s.ScheduledStart}} {
		if when = e.dateTime(f[0], f[1]); when != nil {
			break
		}
	}
	if when == nil {
		e.fail("scheduledStart", "is required")
		return
	}
	boolean := func(c codes.Code, v bool) r4.ObservationComponent {
		return r4.ObservationComponent{Code: m.cc("", c), ValueBoolean: ptr(v)}
	}
	comps := []r4.ObservationComponent{
		boolean(codes.REMSFirstTreatment, r.FirstTreatment),
		boolean(codes.REMSEnrolled, r.Enrolled),
	}
	for _, med := range r.ConcomitantMedications {
		if med == "" {
			continue
		}
		comps = append(comps, r4.ObservationComponent{
			Code: m.cc("", codes.REMSConcomitant), ValueCodeableConcept: ptr(textCC(med)),
		})
	}
	if r.MinutesToReady > 0 {
		comps = append(comps, r4.ObservationComponent{
			Code: m.cc("", codes.REMSMinutesToReady), ValueQuantity: qty(float64(r.MinutesToReady), codes.UnitMin),
		})
	}
	if r.TotalMonitoringMinutes > 0 {
		comps = append(comps, r4.ObservationComponent{
			Code:          m.cc("", codes.REMSTotalMonitoring),
			ValueQuantity: qty(float64(r.TotalMonitoringMinutes), codes.UnitMin),
		})
	}
	comps = append(comps,
		boolean(codes.REMSVitalsBefore, r.VitalsAcceptableBefore),
		boolean(codes.REMSVitalsAtDischarg, r.VitalsAcceptableAtLeave))
	id := e.id("rems")
	e.add("Observation", id, true, &r4.Observation{
		Id:     ptr(id),
		Meta:   m.meta("", mentalHealth),
		Status: r4.ObservationStatusFinal,
		Category: []r4.CodeableConcept{m.cc("",
			codeOf(codes.ObsCategory, "survey", "Survey"))},
		Code:              m.cc("", codes.REMSMonitoring),
		Subject:           &sc.subject,
		Encounter:         sc.encounter,
		EffectiveDateTime: when,
		Performer:         []r4.Reference{sc.clinician},
		Component:         comps,
	})
}
