package mapping

import (
	"slices"
	"strconv"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// assessment maps one scored scale to US Core screening-assessment
// Observations (category survey, values as valueInteger).
//
// Instruments with a LOINC panel (PHQ-9 44249-1, GAD-7 69737-5, C-SSRS
// 93373-9) become a panel Observation without a value whose hasMember lists
// an Observation per item, the PHQ-9 difficulty answer and the total score
// (44261-6, 70274-6) or C-SSRS risk level (93374-7, local risk code) - in that
// order, after the panel. The others (PCL-5 101698-9, and MADRS, CADSS, MOAA/S
// with codes of the ketabridge-scales CodeSystem) are one score Observation
// with an item score component per item. Patient-reported instruments
// (PHQ-9, GAD-7, PCL-5) have the Patient as performer, clinician-rated ones the
// session clinician; the timing (baseline, pre-dose, ...) is the
// assessment-timing extension.
func (e *emitter) assessment(sc *sessionCtx, i int) {
	m := e.m
	a := sc.s.Assessments[i]
	path := "assessments[" + strconv.Itoa(i) + "]"
	inst, ok := codes.Instruments[a.Instrument]
	if !ok {
		e.fail(path+".instrument", "unsupported value")
		return
	}
	when := e.dateTime(path+".time", a.Time)
	if when == nil {
		e.fail(path+".time", "is required")
		return
	}
	if len(a.Items) > len(inst.Items) {
		e.fail(path+".items", "has more items than the instrument")
		return
	}
	performer := sc.clinician
	if inst.SelfReport {
		performer = sc.subject
	}
	var exts []r4.Extension
	if a.Timing != "" {
		exts = []r4.Extension{{Url: m.ext(codes.ExtAssessmentTiming), ValueCode: ptr(a.Timing)}}
	}
	n := strconv.Itoa(i)
	obs := func(id string, code codes.Code) *r4.Observation {
		return &r4.Observation{
			Id:        ptr(id),
			Meta:      m.meta("us-core-observation-screening-assessment", true),
			Extension: exts,
			Status:    r4.ObservationStatusFinal,
			Category: []r4.CodeableConcept{m.cc("",
				codeOf(codes.ObsCategory, "survey", "Survey"))},
			Code:              m.cc("", code),
			Subject:           &sc.subject,
			Encounter:         sc.encounter,
			EffectiveDateTime: when,
			Performer:         []r4.Reference{performer},
		}
	}

	// The score: the total (sum of items when only items are given), or the
	// C-SSRS risk level.
	var score func(o *r4.Observation)
	if a.Instrument == clinic.InstrumentCSSRS {
		risk, ok := codes.CSSRSRisk[a.RiskLevel]
		if !ok {
			e.fail(path+".riskLevel", "unsupported value")
			return
		}
		score = func(o *r4.Observation) { o.ValueCodeableConcept = ccp(m.cc("", risk)) }
	} else {
		total := a.Total
		if total == nil && len(a.Items) > 0 {
			sum := 0
			for _, v := range a.Items {
				sum += v
			}
			total = &sum
		}
		if total == nil {
			e.fail(path+".total", "is required")
			return
		}
		t := *total
		score = func(o *r4.Observation) { o.ValueInteger = ptr(t) }
	}

	if inst.Panel.Code == "" {
		id := e.id("assessment", n)
		o := obs(id, inst.Score)
		score(o)
		for j, v := range a.Items {
			o.Component = append(o.Component, r4.ObservationComponent{
				Code: m.cc("", inst.Items[j]), ValueInteger: ptr(v),
			})
		}
		e.add("Observation", id, true, o)
		return
	}

	panelID := e.id("assessment", n)
	panel := obs(panelID, inst.Panel)
	e.add("Observation", panelID, true, panel)
	for j, v := range a.Items {
		id := e.id("assessment", n, "item", strconv.Itoa(j+1))
		o := obs(id, inst.Items[j])
		o.ValueInteger = ptr(v)
		panel.HasMember = append(panel.HasMember, ref("Observation", id))
		e.add("Observation", id, true, o)
	}
	if a.Difficulty != nil {
		if inst.Difficulty.Code == "" {
			e.fail(path+".difficulty", "does not apply to the instrument")
			return
		}
		id := e.id("assessment", n, "difficulty")
		o := obs(id, inst.Difficulty)
		o.ValueInteger = ptr(*a.Difficulty)
		panel.HasMember = append(panel.HasMember, ref("Observation", id))
		e.add("Observation", id, true, o)
	}
	id := e.id("assessment", n, "score")
	o := obs(id, inst.Score)
	score(o)
	if len(a.Items) > 0 {
		o.DerivedFrom = slices.Clone(panel.HasMember[:len(a.Items)])
	}
	panel.HasMember = append(panel.HasMember, ref("Observation", id))
	e.add("Observation", id, true, o)
}
