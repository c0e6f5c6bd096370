package mapping

import (
	"slices"
	"strconv"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// assessment maps one scored scale to US Core screening-assessment
// Observations (category survey).
//
// Instruments with a LOINC panel (PHQ-9 44249-1, GAD-7 69737-5, C-SSRS
// 93373-9) become a panel Observation without a value whose hasMember lists
// an Observation per item, the PHQ-9 difficulty answer and the total score
// (44261-6, 70274-6) or C-SSRS risk level (93374-7) - in that order, after
// the panel. PHQ-9 and GAD-7 item answers are LOINC answer codes (LL358-3) as
// valueCodeableConcept, the item score kept in the R4 core ordinalValue
// extension of the coding; the PHQ-9 difficulty item (69722-7) is its LOINC
// answer (LL359-1) without a score: it is not part of the total, which is the
// sum of the nine items and derives from them only. The C-SSRS risk level is
// the LOINC answer of 93374-7 with the local code as a translation. The
// totals are valueInteger. The other instruments (PCL-5 101698-9, and MADRS,
// CADSS, MOAA/S with codes of the ketabridge-scales CodeSystem) are one score
// Observation with an integer component per item, except a MADRS whose items
// include item 10: its total is one Observation (no components) and its item
// scores another (madrs-items, components, hasMember the total). Patient-reported
// instruments (PHQ-9, GAD-7, PCL-5) have the Patient as performer,
// clinician-rated ones the session clinician; the timing (baseline,
// pre-dose, ...) is a second category (local timing code).
//
// Every assessment Observation is labelled PSY. Confidentiality is R
// (restricted) only on suicide-risk content: every C-SSRS Observation, the
// Observation of the PHQ-9 item 9 answer (44260-8) and the MADRS item-scores
// Observation, which carries item 10 (suicidal thoughts); N on the others,
// the PHQ-9 panel and total included (their hasMember and derivedFrom still
// reference item 9: docs/fhir-mapping.md "Security labels").
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
	var timing *codes.Code
	if a.Timing != "" {
		c, ok := codes.AssessmentTiming[a.Timing]
		if !ok {
			e.fail(path+".timing", "unsupported value")
			return
		}
		timing = &c
	}
	n := strconv.Itoa(i)
	// label is the labels of an Observation of the instrument that carries
	// the answers to its items 1..items (0: none) as components.
	label := func(items int) labels {
		if inst.SuicideRisk || inst.SuicideItem > 0 && inst.SuicideItem <= items {
			return suicideRisk
		}
		return mentalHealth
	}
	obs := func(id string, code codes.Code, l labels) *r4.Observation {
		cats := []r4.CodeableConcept{m.cc("", codeOf(codes.ObsCategory, "survey", "Survey"))}
		if timing != nil {
			cats = append(cats, m.cc("", *timing))
		}
		return &r4.Observation{
			Id:                ptr(id),
			Meta:              m.meta("us-core-observation-screening-assessment", l),
			Status:            r4.ObservationStatusFinal,
			Category:          cats,
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
		score = func(o *r4.Observation) { o.ValueCodeableConcept = ccp(m.cc("", risk...)) }
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
		if inst.ItemScores.Code != "" && label(len(a.Items)) != label(0) {
			// The items include the restricted one (MADRS item 10): the
			// total keeps the assessment's id without components, labelled
			// N, and the item scores are an Observation of their own,
			// labelled R, whose hasMember is the total. A client that does
			// not clear R (a payer) sees the total and not the items
			// (minimum necessary); the total names no restricted resource
			// (PRIV-16).
			o := obs(id, inst.Score, label(0))
			score(o)
			e.add("Observation", id, true, o)
			itemsID := e.id("assessment", n, "items")
			items := obs(itemsID, inst.ItemScores, label(len(a.Items)))
			for j, v := range a.Items {
				items.Component = append(items.Component, r4.ObservationComponent{
					Code: m.cc("", inst.Items[j]), ValueInteger: ptr(v),
				})
			}
			items.HasMember = []r4.Reference{ref("Observation", id)}
			e.add("Observation", itemsID, true, items)
			return
		}
		o := obs(id, inst.Score, label(len(a.Items)))
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
	panel := obs(panelID, inst.Panel, label(0))
	e.add("Observation", panelID, true, panel)
	for j, v := range a.Items {
		id := e.id("assessment", n, "item", strconv.Itoa(j+1))
		l := mentalHealth
		if inst.SuicideRisk || j+1 == inst.SuicideItem {
			l = suicideRisk
		}
		o := obs(id, inst.Items[j], l)
		if inst.Answers == nil {
			o.ValueInteger = ptr(v)
		} else if o.ValueCodeableConcept = e.answer(inst.Answers, v, path+".items["+strconv.Itoa(j)+"]"); o.ValueCodeableConcept == nil {
			return
		}
		panel.HasMember = append(panel.HasMember, ref("Observation", id))
		e.add("Observation", id, true, o)
	}
	if a.Difficulty != nil {
		if inst.Difficulty.Code == "" {
			e.fail(path+".difficulty", "does not apply to the instrument")
			return
		}
		id := e.id("assessment", n, "difficulty")
		o := obs(id, inst.Difficulty, label(0))
		if o.ValueCodeableConcept = e.answer(codes.DifficultyAnswers, *a.Difficulty, path+".difficulty"); o.ValueCodeableConcept == nil {
			return
		}
		panel.HasMember = append(panel.HasMember, ref("Observation", id))
		e.add("Observation", id, true, o)
	}
	id := e.id("assessment", n, "score")
	o := obs(id, inst.Score, label(0))
	score(o)
	if len(a.Items) > 0 {
		o.DerivedFrom = slices.Clone(panel.HasMember[:len(a.Items)])
	}
	panel.HasMember = append(panel.HasMember, ref("Observation", id))
	e.add("Observation", id, true, o)
}

// answer is the LOINC answer of a score as a CodeableConcept; a scored
// answer carries its score in the ordinalValue extension of the coding. A
// score outside the list fails the record at path.
func (e *emitter) answer(list []codes.Answer, score int, path string) *r4.CodeableConcept {
	if score < 0 || score >= len(list) || list[score].Score != score {
		e.fail(path, "has no answer code")
		return nil
	}
	a := list[score]
	c := e.m.coding(a.Code)
	if a.Scored {
		c.Extension = []r4.Extension{{Url: codes.ExtOrdinalValue, ValueDecimal: dec(float64(a.Score))}}
	}
	return &r4.CodeableConcept{Coding: []r4.Coding{c}, Text: ptr(a.Display)}
}
