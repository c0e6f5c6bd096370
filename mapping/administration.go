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
// code, the protocol's product (form, ingredient strength) and
// batch.lotNumber when a lot number is given (REMS asks for it), else a
// medicationCodeableConcept; RxNorm (the clinical drug when the product is
// known) plus the NDC when given. The mg/kg dose is the dose-per-kg extension
// on dosage and part of dosage.text. Status is completed, or stopped for the
// last dose of a stopped-early session. A dose the patient takes under
// supervision (intranasal esketamine, sublingual or oral lozenges) has the
// patient as performer (function performer) and the clinician as a second
// performer (function witness); other doses have the clinician as performer.
func (e *emitter) administration(sc *sessionCtx, i int) {
	m, s := e.m, sc.s
	a := s.Administrations[i]
	path := "administrations[" + strconv.Itoa(i) + "]"
	n := strconv.Itoa(i)
	id := e.id("administration", n)
	if _, ok := codes.Drugs[a.Drug]; !ok {
		e.fail(path+".drug", "unsupported value")
	}
	route, ok := codes.Routes[a.Route]
	if !ok {
		e.fail(path+".route", "unsupported value")
	}
	if a.DoseMg <= 0 {
		e.fail(path+".doseMg", "must be positive")
	}
	var product *clinic.Product
	if p := e.sessionProtocol(s); p != nil && p.Drug == a.Drug {
		product = p.Product
	}

	res := &r4.MedicationAdministration{
		Id:       ptr(id),
		Meta:     m.meta("", mentalHealth),
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
		e.add("Medication", mid, true, m.medication(mid, a.Drug, product, a.NDC, a.LotNumber))
		res.MedicationReference = ref("Medication", mid)
	} else {
		res.MedicationCodeableConcept = m.cc(productText(a.Drug, product), drugCodes(a.Drug, product, a.NDC)...)
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
	clinician := sc.clinician
	if a.PerformerID != "" {
		clinician = kref("Practitioner", clinic.KindPractitioner, a.PerformerID)
	}
	if codes.SelfAdministered[a.Route] {
		res.Performer = []r4.MedicationAdministrationPerformer{
			{Function: ccp(m.cc("", codes.FunctionPerformer)), Actor: sc.subject},
			{Function: ccp(m.cc("", codes.FunctionWitness)), Actor: clinician},
		}
	} else {
		res.Performer = []r4.MedicationAdministrationPerformer{
			{Function: ccp(m.cc("", codes.FunctionPerformer)), Actor: clinician},
		}
	}

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
			Url: codes.ExtDosePerKg, ValueQuantity: qty(*a.MgPerKg, codes.UnitMgPerKg),
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
