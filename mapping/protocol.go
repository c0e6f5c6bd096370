package mapping

import (
	"strconv"
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

var publicationStatuses = map[string]r4.PublicationStatus{
	"": r4.PublicationStatusActive, "active": r4.PublicationStatusActive,
	"retired": r4.PublicationStatusRetired, "draft": r4.PublicationStatusDraft,
}

// protocol maps a treatment protocol to a PlanDefinition (type
// clinical-protocol, url {IdentifierSystemBase}/protocol/{clinic id}) and a
// Medication for its drug and product (the course's MedicationRequest
// references it, since a course record does not name the drug). useContext
// focus carries the indications (ICD-10-CM); actions describe the dose rule
// and route, the induction and maintenance schedules (timingTiming) and each
// monitoring rule.
func (e *emitter) protocol(p *clinic.Protocol) {
	m := e.m
	id := ResourceID(clinic.KindProtocol, p.ID)
	e.org = p.OrganizationID
	status, ok := publicationStatuses[p.Status]
	if !ok {
		e.fail("status", "unsupported value")
	}
	drug, ok := codes.Drugs[p.Drug]
	if !ok {
		e.fail("drug", "unsupported value")
	}
	route, ok := codes.Routes[p.Route]
	if !ok {
		e.fail("route", "unsupported value")
	}
	e.require("name", p.Name)
	if len(p.Indications) == 0 {
		e.fail("indications", "is required")
	}
	ctx := make([]r4.UsageContext, len(p.Indications))
	for i, icd := range p.Indications {
		e.require("indications["+strconv.Itoa(i)+"]", icd)
		ctx[i] = r4.UsageContext{
			Code:                 m.coding(codeOf(codes.UsageContextType, "focus", "Clinical Focus")),
			ValueCodeableConcept: m.cc("", codeOf(codes.ICD10CM, icd, "")),
		}
	}
	doseText := e.doseRule(p)
	actions := []r4.PlanDefinitionAction{{
		Title:       ptr("Dose"),
		Description: ptr(doseText),
		Code:        []r4.CodeableConcept{m.cc(codes.DrugText[p.Drug], drug...), m.cc(codes.RouteText[p.Route], route)},
	}}
	actions = append(actions, schedule("Induction", "induction", p.Induction))
	if p.Maintenance != nil {
		actions = append(actions, schedule("Maintenance", "maintenance", *p.Maintenance))
	}
	if mon := monitoring(p.Monitoring); len(mon) > 0 {
		actions = append(actions, r4.PlanDefinitionAction{
			Title:  ptr("Monitoring"),
			Action: mon,
		})
	}
	res := &r4.PlanDefinition{
		Id:   ptr(id),
		Meta: m.meta("", unlabelled),
		Url:  ptr(m.PlanDefinitionURL(p.ID)),
		Identifier: []r4.Identifier{{
			System: ptr(m.sid("protocol")), Value: ptr(p.ID),
		}},
		Title:       str(p.Name),
		Type:        ccp(m.cc("", codeOf(codes.PlanDefType, "clinical-protocol", "Clinical Protocol"))),
		Status:      status,
		Description: ptr(codes.DrugText[p.Drug] + " treatment protocol: " + doseText),
		UseContext:  ctx,
		Action:      actions,
	}
	e.add("PlanDefinition", id, false, res)

	mid := ProtocolMedicationID(p.ID)
	e.add("Medication", mid, false, m.medication(mid, p.Drug, p.Product, "", ""))
}

// doseRule describes a protocol's dose rule, route and infusion time.
func (e *emitter) doseRule(p *clinic.Protocol) string {
	var b strings.Builder
	d := p.Dose
	switch d.Rule {
	case "mg_per_kg":
		if d.MgPerKg == nil {
			e.fail("dose.mgPerKg", "is required for rule mg_per_kg")
			return ""
		}
		b.WriteString(fmtNum(*d.MgPerKg) + " mg/kg")
		if d.MinMgPerKg != nil && d.MaxMgPerKg != nil {
			b.WriteString(" (titrate " + fmtNum(*d.MinMgPerKg) + "-" + fmtNum(*d.MaxMgPerKg) + " mg/kg)")
		}
	case "fixed_mg":
		if d.Mg == nil {
			e.fail("dose.mg", "is required for rule fixed_mg")
			return ""
		}
		b.WriteString(fmtNum(*d.Mg) + " mg")
		if d.MinMg != nil && d.MaxMg != nil {
			b.WriteString(" (titrate " + fmtNum(*d.MinMg) + "-" + fmtNum(*d.MaxMg) + " mg)")
		}
	default:
		e.fail("dose.rule", "unsupported value")
		return ""
	}
	b.WriteString(" " + codes.RouteText[p.Route])
	if p.InfusionMinutes > 0 {
		b.WriteString(" over " + strconv.Itoa(p.InfusionMinutes) + " min")
	}
	return b.String()
}

// schedule is a phase action with its Timing (count sessions, frequency per
// periodDays days).
func schedule(title, phase string, s clinic.Schedule) r4.PlanDefinitionAction {
	desc := strconv.Itoa(s.Sessions) + " " + phase + " sessions, " + strconv.Itoa(s.Frequency) +
		" per " + strconv.Itoa(s.PeriodDays) + " days"
	rep := &r4.TimingRepeat{PeriodUnit: ptr("d")}
	if s.Sessions > 0 {
		rep.Count = ptr(s.Sessions)
	}
	if s.Frequency > 0 {
		rep.Frequency = ptr(s.Frequency)
	}
	if s.PeriodDays > 0 {
		rep.Period = dec(float64(s.PeriodDays))
	} else {
		rep.PeriodUnit = nil
	}
	a := r4.PlanDefinitionAction{Title: ptr(title), Description: ptr(desc)}
	if rep.Count != nil || rep.Frequency != nil || rep.Period != nil {
		a.TimingTiming = &r4.Timing{Repeat: rep}
	}
	return a
}

// monitoring turns each monitoring rule into an action.
func monitoring(mo clinic.Monitoring) []r4.PlanDefinitionAction {
	var out []r4.PlanDefinitionAction
	add := func(title, desc string) {
		out = append(out, r4.PlanDefinitionAction{Title: ptr(title), Description: ptr(desc)})
	}
	if mo.BPBeforeDose {
		add("Blood pressure before dose", "Measure blood pressure before the dose.")
	}
	switch sys, dia := mo.HoldAboveSystolic, mo.HoldAboveDiastolic; {
	case sys > 0 && dia > 0:
		add("Hold for elevated blood pressure", "Delay the dose when blood pressure is above "+
			strconv.Itoa(sys)+"/"+strconv.Itoa(dia)+" mmHg.")
	case sys > 0:
		add("Hold for elevated blood pressure", "Delay the dose when systolic blood pressure is above "+
			strconv.Itoa(sys)+" mmHg.")
	case dia > 0:
		add("Hold for elevated blood pressure", "Delay the dose when diastolic blood pressure is above "+
			strconv.Itoa(dia)+" mmHg.")
	}
	if mo.VitalsIntervalMinutes > 0 {
		add("Vital signs", "Record vital signs every "+strconv.Itoa(mo.VitalsIntervalMinutes)+" min during treatment.")
	}
	if mo.BPAfterMinutes > 0 {
		add("Blood pressure after dose", "Measure blood pressure "+strconv.Itoa(mo.BPAfterMinutes)+" min after the dose.")
	}
	if mo.PulseOximetry {
		add("Pulse oximetry", "Monitor oxygen saturation by pulse oximetry.")
	}
	if mo.ObservationMinutes > 0 {
		add("Post-dose observation", "Observe for at least "+strconv.Itoa(mo.ObservationMinutes)+
			" min and until sedation, dissociation and respiratory depression have resolved.")
	}
	if mo.REMS {
		add("Spravato REMS", "Complete the Spravato REMS Patient Monitoring Form after each session.")
	}
	return out
}
