package mapping

import (
	"strconv"
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// administration maps one dose to a MedicationAdministration (base R4: US
// Core 6.1 has no profile for it). The drug is a Medication resource with
// code and batch.lotNumber when a lot number is given (REMS asks for it),
// else a medicationCodeableConcept; RxNorm plus the NDC when given. The mg/kg
// dose is the dose-per-kg extension on dosage and part of dosage.text.
// Status is completed, or stopped for the last dose of a stopped-early
// session.
func (e *emitter) administration(sc *sessionCtx, i int) {
	m, s := e.m, sc.s
	a := s.Administrations[i]
	path := "administrations[" + strconv.Itoa(i) + "]"
	n := strconv.Itoa(i)
	id := e.id("administration", n)
	drug, ok := codes.Drugs[a.Drug]
	if !ok {
		e.fail(path+".drug", "unsupported value")
	}
	route, ok := codes.Routes[a.Route]
	if !ok {
		e.fail(path+".route", "unsupported value")
	}
	if a.DoseMg <= 0 {
		e.fail(path+".doseMg", "must be positive")
	}
	drugCodes := drug
	if a.NDC != "" {
		drugCodes = append(drugCodes[:len(drugCodes):len(drugCodes)], codeOf(codes.NDC, a.NDC, ""))
	}
	med := m.cc(codes.DrugText[a.Drug], drugCodes...)

	res := &r4.MedicationAdministration{
		Id:       ptr(id),
		Meta:     m.meta("", true),
		Status:   "completed",
		Category: ccp(m.cc("", codeOf(codes.MedAdminCategory, "outpatient", "Outpatient"))),
		Subject:  sc.subject,
		Context:  sc.encounter,
		Request:  refp("MedicationRequest", MedicationRequestID(s.CourseID)),
	}
	if s.Status == clinic.SessionStoppedEarly && i == len(s.Administrations)-1 {
		res.Status = "stopped"
		if s.StatusReason != "" {
			res.StatusReason = []r4.CodeableConcept{textCC(s.StatusReason)}
		}
	}
	if a.LotNumber != "" {
		mid := e.id("administration", n, "Medication")
		e.add("Medication", mid, true, &r4.Medication{
			Id:     ptr(mid),
			Meta:   m.meta("", false),
			Code:   &med,
			Status: ptr("active"),
			Batch:  &r4.MedicationBatch{LotNumber: ptr(a.LotNumber)},
		})
		res.MedicationReference = ref("Medication", mid)
	} else {
		res.MedicationCodeableConcept = med
	}
	if sc.weight != nil {
		res.SupportingInformation = []r4.Reference{*sc.weight}
	}
	start := e.dateTime(path+".start", a.Start)
	if start == nil {
		e.fail(path+".start", "is required")
		return
	}
	if end := e.dateTime(path+".end", a.End); end != nil {
		res.EffectivePeriod = r4.Period{Start: start, End: end}
	} else {
		res.EffectiveDateTime = *start
	}
	performer := sc.clinician
	if a.PerformerID != "" {
		performer = kref("Practitioner", clinic.KindPractitioner, a.PerformerID)
	}
	res.Performer = []r4.MedicationAdministrationPerformer{{Actor: performer}}

	dosage := &r4.MedicationAdministrationDosage{
		Text:  ptr(dosageText(a, s.WeightKg)),
		Route: ccp(m.cc("", route)),
		Dose:  qty(a.DoseMg, codes.UnitMg),
	}
	if a.RateMgPerHour != nil {
		dosage.RateQuantity = qty(*a.RateMgPerHour, codes.UnitMgPerH)
	}
	if a.MgPerKg != nil {
		dosage.Extension = append(dosage.Extension, r4.Extension{
			Url: m.ext(codes.ExtDosePerKg), ValueQuantity: qty(*a.MgPerKg, codes.UnitMgPerKg),
		})
	}
	if a.Devices > 0 {
		dosage.Extension = append(dosage.Extension, r4.Extension{
			Url: m.ext(codes.ExtDeviceCount), ValuePositiveInt: ptr(a.Devices),
		})
	}
	res.Dosage = dosage
	sc.admins = append(sc.admins, ref("MedicationAdministration", id))
	e.add("MedicationAdministration", id, true, res)
}

// dosageText summarises a dose, e.g. "35 mg IV (0.5 mg/kg x 70 kg) at 52.5 mg/h"
// or "56 mg intranasal (2 x 28 mg devices)".
func dosageText(a clinic.Administration, weightKg *float64) string {
	var b strings.Builder
	b.WriteString(fmtNum(a.DoseMg) + " mg " + codes.RouteText[a.Route])
	if a.MgPerKg != nil {
		b.WriteString(" (" + fmtNum(*a.MgPerKg) + " mg/kg")
		if weightKg != nil {
			b.WriteString(" x " + fmtNum(*weightKg) + " kg")
		}
		b.WriteString(")")
	}
	if a.Devices > 0 {
		b.WriteString(" (" + strconv.Itoa(a.Devices) + " x 28 mg devices)")
	}
	if a.RateMgPerHour != nil {
		b.WriteString(" at " + fmtNum(*a.RateMgPerHour) + " mg/h")
	}
	return b.String()
}
