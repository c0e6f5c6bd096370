package clinic

import (
	"math"
	"reflect"
	"slices"
)

// Resolver finds a record by key, among the same batch and the stored records.
type Resolver interface {
	Resolve(k Key) (Record, bool)
}

// ref is one reference field of a record.
type ref struct {
	path string
	key  Key
}

// refs lists r's references with their paths, in field order. Empty ids are
// left out (Validate reports missing required ones).
func refs(r Record) []ref {
	var out []ref
	add := func(path string, k Kind, id string) {
		if id != "" {
			out = append(out, ref{path, Key{k, id}})
		}
	}
	switch v := asPointer(r).(type) {
	case *Patient:
		add("organizationId", KindOrganization, v.OrganizationID)
	case *Location:
		add("organizationId", KindOrganization, v.OrganizationID)
	case *Protocol:
		add("organizationId", KindOrganization, v.OrganizationID)
	case *Diagnosis:
		add("patientId", KindPatient, v.PatientID)
		add("recorderId", KindPractitioner, v.RecorderID)
	case *Coverage:
		add("patientId", KindPatient, v.PatientID)
		add("payerId", KindOrganization, v.PayerID)
	case *Course:
		add("patientId", KindPatient, v.PatientID)
		add("protocolId", KindProtocol, v.ProtocolID)
		add("prescriberId", KindPractitioner, v.PrescriberID)
		add("diagnosisId", KindDiagnosis, v.DiagnosisID)
		add("coverageId", KindCoverage, v.CoverageID)
	case *Session:
		add("patientId", KindPatient, v.PatientID)
		add("courseId", KindCourse, v.CourseID)
		add("locationId", KindLocation, v.LocationID)
		add("clinicianId", KindPractitioner, v.ClinicianID)
		for i, a := range v.Administrations {
			add(field(index("administrations", i), "performerId"), KindPractitioner, a.PerformerID)
		}
	case *Consent:
		add("patientId", KindPatient, v.PatientID)
		for i, id := range v.RecipientIDs {
			add(index("recipientIds", i), KindOrganization, id)
		}
	case *AntidepressantTrial:
		add("patientId", KindPatient, v.PatientID)
		add("diagnosisId", KindDiagnosis, v.DiagnosisID)
	case *PriorAuthResponse:
		add("patientId", KindPatient, v.PatientID)
		add("courseId", KindCourse, v.CourseID)
		add("payerId", KindOrganization, v.PayerID)
	case *Referral:
		add("patientId", KindPatient, v.PatientID)
		add("partnerId", KindOrganization, v.PartnerID)
		add("requesterId", KindPractitioner, v.RequesterID)
		for i, id := range v.DiagnosisIDs {
			add(index("diagnosisIds", i), KindDiagnosis, id)
		}
		add("courseId", KindCourse, v.CourseID)
		for i, id := range v.TrialIDs {
			add(index("trialIds", i), KindAntidepressantTrial, id)
		}
		add("coverageId", KindCoverage, v.CoverageID)
	}
	return out
}

// Refs lists the keys a record references directly, without duplicates, in
// field order (for loading them before CheckRefs). CheckRefs on a session
// also resolves one second-hop key, the protocol of the session's course
// (protocol/<course.protocolId>); when the resolver cannot find it the
// protocol checks are skipped, because the course was checked against it.
func Refs(r Record) []Key {
	var out []Key
	for _, rf := range refs(r) {
		if !slices.Contains(out, rf.key) {
			out = append(out, rf.key)
		}
	}
	return out
}

// CheckRefs checks that r's references resolve to records of the right kind
// and the rules that need another record:
//   - a session's patientId equals its course's patientId; a course's diagnosis
//     and coverage belong to the course's patient;
//   - a coverage's payer is an organization of type payer, a referral's
//     partner one of type partner; an antidepressant
//     trial's diagnosis belongs to the trial's patient;
//   - a session's administrations use the protocol's drug, their dose is not
//     far outside the protocol (mg_per_kg: mg/kg outside [min/2, max*1.5];
//     fixed_mg: doseMg outside [minMg/2, maxMg*1.5]; min and max default to
//     the rule's dose; a stopped-early session is only held to the upper
//     bound), and a completed session of an IV protocol has an administration.
//
// Errors name the referencing field's path. CheckRefs assumes r passed
// Validate.
func CheckRefs(r Record, res Resolver) []FieldError {
	var e errs
	found := map[Key]Record{}
	failed := map[string]bool{} // paths whose reference did not resolve
	for _, rf := range refs(r) {
		got, ok := resolve(res, rf.key)
		if !ok {
			e.add(rf.path, missingMessage(res, rf.key))
			failed[rf.path] = true
			continue
		}
		found[rf.key] = got
	}
	switch v := asPointer(r).(type) {
	case *Coverage:
		if org, ok := found[Key{KindOrganization, v.PayerID}].(*Organization); ok && org.Type != "payer" {
			e.add("payerId", "must reference an organization of type payer")
		}
	case *Referral:
		if org, ok := found[Key{KindOrganization, v.PartnerID}].(*Organization); ok && org.Type != "partner" {
			e.add("partnerId", "must reference an organization of type partner")
		}
		// The package holds the referred patient's records only.
		if !failed["patientId"] {
			for i, id := range v.DiagnosisIDs {
				if dx, ok := found[Key{KindDiagnosis, id}].(*Diagnosis); ok && dx.PatientID != v.PatientID {
					e.add(index("diagnosisIds", i), "must reference a diagnosis of the referral's patient")
				}
			}
			if c, ok := found[Key{KindCourse, v.CourseID}].(*Course); ok && c.PatientID != v.PatientID {
				e.add("courseId", "must reference a course of the referral's patient")
			}
			for i, id := range v.TrialIDs {
				if tr, ok := found[Key{KindAntidepressantTrial, id}].(*AntidepressantTrial); ok && tr.PatientID != v.PatientID {
					e.add(index("trialIds", i), "must reference an antidepressant trial of the referral's patient")
				}
			}
			if cov, ok := found[Key{KindCoverage, v.CoverageID}].(*Coverage); ok && cov.PatientID != v.PatientID {
				e.add("coverageId", "must reference a coverage of the referral's patient")
			}
		}
	case *Course:
		if dx, ok := found[Key{KindDiagnosis, v.DiagnosisID}].(*Diagnosis); ok && dx.PatientID != v.PatientID && !failed["patientId"] {
			e.add("diagnosisId", "must reference a diagnosis of the course's patient")
		}
		if cov, ok := found[Key{KindCoverage, v.CoverageID}].(*Coverage); ok && cov.PatientID != v.PatientID && !failed["patientId"] {
			e.add("coverageId", "must reference a coverage of the course's patient")
		}
	case *AntidepressantTrial:
		if dx, ok := found[Key{KindDiagnosis, v.DiagnosisID}].(*Diagnosis); ok && dx.PatientID != v.PatientID && !failed["patientId"] {
			e.add("diagnosisId", "must reference a diagnosis of the trial's patient")
		}
	case *PriorAuthResponse:
		if c, ok := found[Key{KindCourse, v.CourseID}].(*Course); ok && c.PatientID != v.PatientID && !failed["patientId"] {
			e.add("courseId", "must reference a course of the response's patient")
		}
		if org, ok := found[Key{KindOrganization, v.PayerID}].(*Organization); ok && org.Type != "payer" {
			e.add("payerId", "must reference an organization of type payer")
		}
	case *Session:
		course, ok := found[Key{KindCourse, v.CourseID}].(*Course)
		if !ok {
			break
		}
		if course.PatientID != v.PatientID && !failed["patientId"] {
			e.add("patientId", "must equal the patientId of the session's course")
		}
		if p, ok := resolve(res, Key{KindProtocol, course.ProtocolID}); ok {
			checkAgainstProtocol(&e, v, p.(*Protocol))
		}
	}
	return e
}

// resolve looks k up and normalises the result to a pointer of k's kind.
func resolve(res Resolver, k Key) (Record, bool) {
	if res == nil {
		return nil, false
	}
	got, ok := res.Resolve(k)
	if !ok {
		return nil, false
	}
	got = asPointer(got)
	if got == nil || got.RecordKind() != k.Kind {
		return nil, false
	}
	want, _ := New(k.Kind)
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		return nil, false
	}
	return got, true
}

// missingMessage says a reference does not resolve, and names the kind the id
// does belong to when it is a record of another kind (ids are per kind, so
// this costs a lookup per kind, on the error path only).
func missingMessage(res Resolver, k Key) string {
	if res != nil {
		for _, other := range Kinds {
			if other == k.Kind {
				continue
			}
			if _, ok := res.Resolve(Key{other, k.ID}); ok {
				return "must reference a " + string(k.Kind) + "; the id belongs to a " + string(other)
			}
		}
	}
	return "must reference an existing " + string(k.Kind)
}

func checkAgainstProtocol(e *errs, s *Session, p *Protocol) {
	for i, a := range s.Administrations {
		path := index("administrations", i)
		if a.Drug != "" && p.Drug != "" && a.Drug != p.Drug {
			e.add(field(path, "drug"), "must match the drug of the course's protocol")
			continue
		}
		lo, hi, v, ok := doseWindow(s, &a, p.Dose)
		if !ok {
			continue
		}
		if v > hi || (v < lo && s.Status != SessionStoppedEarly) {
			e.add(field(path, "doseMg"), "is far outside the dose of the course's protocol")
		}
	}
	if s.Status == SessionCompleted && p.Route == "iv" && len(s.Administrations) == 0 {
		e.add("administrations", "must have at least one administration for a completed IV session")
	}
}

// doseWindow returns the plausible window [min/2, max*1.5] for the protocol's
// rule and the administration's value in the rule's unit; ok is false when
// the value cannot be computed (mg/kg rule without mgPerKg or weight).
func doseWindow(s *Session, a *Administration, d DoseRule) (lo, hi, v float64, ok bool) {
	pick := func(p, def *float64) (float64, bool) {
		if p != nil {
			return *p, true
		}
		if def != nil {
			return *def, true
		}
		return 0, false
	}
	var minV, maxV float64
	var okMin, okMax bool
	switch d.Rule {
	case "mg_per_kg":
		minV, okMin = pick(d.MinMgPerKg, d.MgPerKg)
		maxV, okMax = pick(d.MaxMgPerKg, d.MgPerKg)
		switch {
		case a.MgPerKg != nil:
			v = *a.MgPerKg
		case s.WeightKg != nil && *s.WeightKg > 0:
			v = a.DoseMg / *s.WeightKg
		default:
			return 0, 0, 0, false
		}
	case "fixed_mg":
		minV, okMin = pick(d.MinMg, d.Mg)
		maxV, okMax = pick(d.MaxMg, d.Mg)
		v = a.DoseMg
	default:
		return 0, 0, 0, false
	}
	if !okMin || !okMax {
		return 0, 0, 0, false
	}
	lo, hi = minV/2, maxV*1.5
	// Tolerate float noise at the edges (0.25 mg/kg computed from mg/weight).
	const eps = 1e-9
	return lo - eps*math.Max(1, lo), hi + eps*math.Max(1, hi), v, true
}
