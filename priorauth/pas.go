package priorauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// Da Vinci PAS 2.0.1 canonical URLs and the code systems its request uses.
const (
	PASBase                 = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"
	ProfileRequestBundle    = PASBase + "profile-pas-request-bundle"
	ProfileClaim            = PASBase + "profile-claim"
	ProfileClaimResponse    = PASBase + "profile-claimresponse"
	ProfileBeneficiary      = PASBase + "profile-beneficiary"
	ProfileCoverage         = PASBase + "profile-coverage"
	ProfileInsurer          = PASBase + "profile-insurer"
	ProfileRequestor        = PASBase + "profile-requestor"
	ProfilePractitioner     = PASBase + "profile-practitioner"
	ProfilePractitionerRole = PASBase + "profile-practitionerrole"
	ProfileMedicationReq    = PASBase + "profile-medicationrequest"
	ExtRequestedService     = PASBase + "extension-requestedService"
	ExtCareTeamClaimScope   = PASBase + "extension-careTeamClaimScope"
	PASTempCodes            = "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASTempCodes"
	// HCPCSPAS is HCPCS as the PAS requested-service value set spells it
	// (http, unlike the https US Core spelling codes.HCPCS).
	HCPCSPAS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
	CPT      = "http://www.ama-assn.org/go/cpt"
	// X12ServiceType is X12 005010 code list 1365 (service type codes).
	X12ServiceType = "https://codesystem.x12.org/005010/1365"
)

// PASOptions say where the request Bundle's resources live and when it is
// made.
type PASOptions struct {
	// Base is the FHIR base the gateway's resources are served under; entry
	// fullUrls are Base/Type/id.
	Base string
	// Now stamps Bundle.timestamp and Claim.created.
	Now time.Time
	// IdentifierSystem is the system of the Bundle's and Claim's
	// identifiers (the clinic's namespace), e.g. {IdentifierSystemBase}/pas-request.
	IdentifierSystem string
	// Requester is the clinic's Organization ("Organization/id"), the
	// Claim's provider; "" takes the patient's managing organization, else
	// the service provider of the course's sessions.
	Requester string
}

// MissingError lists what the clinic must record before a valid PAS request
// can be built (docs/design/security.md PA-3). Its texts name record kinds
// and members, never values.
type MissingError struct{ Missing []string }

func (e *MissingError) Error() string {
	return "priorauth: the PAS request needs: " + strings.Join(e.Missing, "; ")
}

// BuildRequest builds the Da Vinci PAS 2.0.1 Request Bundle for the course:
// the Claim (profile-claim, use preauthorization) first, then the
// beneficiary Patient, Coverage, insurer and requestor Organizations, the
// prescriber as Practitioner and PractitionerRole (its specialty the
// Practitioner's NUCC taxonomy qualifications), the MedicationRequest
// (the items' requestedService) with its Medication, and every resource the
// evaluation used as evidence (the Claim's supportingInfo). ev may be nil
// (no supportingInfo). Missing data is a *MissingError.
func BuildRequest(rs *Records, c *Course, ev *Evaluation, o PASOptions) ([]byte, error) {
	b := &pasBuilder{rs: rs, c: c, o: o, seen: map[string]bool{}}
	return b.build(ev)
}

type pasBuilder struct {
	rs      *Records
	c       *Course
	o       PASOptions
	missing []string
	entries []r4.BundleEntry
	seen    map[string]bool
	err     error
}

func (b *pasBuilder) need(what string) { b.missing = append(b.missing, what) }

// add appends a resource entry under its gateway fullUrl (once).
func (b *pasBuilder) add(key string, res any) {
	if b.seen[key] || b.err != nil {
		return
	}
	b.seen[key] = true
	body, err := fhirjson.Marshal(res)
	if err != nil {
		b.err = err
		return
	}
	b.entries = append(b.entries, r4.BundleEntry{FullUrl: ptr(b.o.Base + "/" + key), Resource: body})
}

// profiled is a copy of meta with profile set to the PAS profile.
func profiled(m *r4.Meta, profile string) *r4.Meta {
	out := r4.Meta{}
	if m != nil {
		out = *m
	}
	out.Profile = []string{profile}
	return &out
}

func ptr[T any](v T) *T { return &v }

// stableID derives an id from the course and the time: the same request
// built twice at the same instant has the same ids.
func stableID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	x := hex.EncodeToString(h[:16])
	// Formatted as a version-4-shaped UUID so it can be a urn:uuid.
	return x[:8] + "-" + x[8:12] + "-4" + x[13:16] + "-8" + x[17:20] + "-" + x[20:32]
}

func (b *pasBuilder) build(ev *Evaluation) ([]byte, error) {
	rs, c := b.rs, b.c
	now := b.o.Now.UTC().Truncate(time.Second)
	stamp := now.Format(time.RFC3339)
	id := stableID(c.Key, stamp)

	patient, ok := rs.Patients[c.Patient]
	if !ok {
		b.need("the patient (kind patient) readable by the requester")
	}
	if c.Order == nil {
		b.need("the course's order (kind course with a protocol)")
	}
	// Coverage: the order's insurance.
	var covKey string
	var cov *r4.Coverage
	if c.Order != nil {
		for i := range c.Order.Insurance {
			if k := refKey(&c.Order.Insurance[i]); k != "" {
				covKey, cov = k, rs.Coverages[k]
				break
			}
		}
	}
	var insurerKey string
	switch {
	case cov == nil:
		b.need("the course's coverage (course.coverageId naming a coverage record)")
	case cov.Status != r4.FinancialResourceStatusCodesActive:
		b.need("an active coverage (coverage.status active)")
	default:
		for i := range cov.Payor {
			if k := refKey(&cov.Payor[i]); strings.HasPrefix(k, "Organization/") && rs.Organizations[k] != nil {
				insurerKey = k
				break
			}
		}
		if insurerKey == "" {
			b.need("the payer organization of the coverage (kind organization, type payer)")
		}
	}
	requester := b.o.Requester
	if requester == "" && patient != nil {
		requester = refKey(patient.ManagingOrganization)
	}
	if requester == "" {
		for _, e := range c.Sessions {
			if enc, ok := rs.Encounters[e]; ok {
				if requester = refKey(enc.ServiceProvider); requester != "" {
					break
				}
			}
		}
	}
	if rs.Organizations[requester] == nil {
		b.need("the clinic organization (patient.organizationId, or the gateway's configured clinic organization)")
	}
	var pracKey string
	if c.Order != nil {
		pracKey = refKey(c.Order.Requester)
	}
	prac := rs.Practitioners[pracKey]
	if prac == nil {
		b.need("the prescriber (course.prescriberId naming a practitioner record)")
	} else if len(prac.Identifier) == 0 || len(prac.Name) == 0 || prac.Name[0].Family == nil {
		b.need("the prescriber's identifier and family name")
	}
	dx := rs.Conditions[c.Condition]
	var icd string
	if dx != nil {
		icd = icdCode(dx)
	}
	if icd == "" {
		b.need("the course's diagnosis with an ICD-10-CM code (course.diagnosisId)")
	}
	items := b.items()
	if len(b.missing) > 0 {
		return nil, &MissingError{Missing: b.missing}
	}

	roleID := stableID(pracKey, requester, "PractitionerRole")
	claim := &r4.Claim{
		Id:         ptr(id),
		Meta:       &r4.Meta{Profile: []string{ProfileClaim}},
		Identifier: []r4.Identifier{{System: ptr(b.o.IdentifierSystem), Value: ptr(id)}},
		Status:     r4.FinancialResourceStatusCodesActive,
		Type: r4.CodeableConcept{Coding: []r4.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/claim-type"),
			Code: ptr("professional"), Display: ptr("Professional")}}},
		Use:      r4.UsePreauthorization,
		Patient:  r4.Reference{Reference: ptr(c.Patient)},
		Created:  stamp,
		Insurer:  &r4.Reference{Reference: ptr(insurerKey)},
		Provider: r4.Reference{Reference: ptr(requester)},
		Priority: r4.CodeableConcept{Coding: []r4.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/processpriority"),
			Code: ptr("normal"), Display: ptr("Normal")}}},
		CareTeam: []r4.ClaimCareTeam{{
			Extension: []r4.Extension{{Url: ExtCareTeamClaimScope, ValueBoolean: ptr(true)}},
			Sequence:  1,
			Provider:  r4.Reference{Reference: ptr("PractitionerRole/" + roleID)},
		}},
		Diagnosis: []r4.ClaimDiagnosis{{
			Sequence:                 1,
			DiagnosisCodeableConcept: r4.CodeableConcept{Coding: []r4.Coding{{System: ptr(codes.ICD10CM), Code: ptr(icd)}}},
		}},
		Insurance: []r4.ClaimInsurance{{Sequence: 1, Focal: true, Coverage: r4.Reference{Reference: ptr(covKey)}}},
		Item:      items,
	}
	if ev != nil {
		for i, k := range ev.Evidence() {
			claim.SupportingInfo = append(claim.SupportingInfo, r4.ClaimSupportingInfo{
				Sequence:       i + 1,
				Category:       r4.CodeableConcept{Coding: []r4.Coding{{System: ptr(PASTempCodes), Code: ptr("additionalInformation")}}},
				ValueReference: &r4.Reference{Reference: ptr(k)},
			})
		}
	}
	body, err := fhirjson.Marshal(claim)
	if err != nil {
		return nil, err
	}
	b.entries = append(b.entries, r4.BundleEntry{FullUrl: ptr("urn:uuid:" + id), Resource: body})

	p := *patient
	p.Meta = profiled(p.Meta, ProfileBeneficiary)
	b.add(c.Patient, &p)
	cv := *cov
	cv.Meta = profiled(cv.Meta, ProfileCoverage)
	b.add(covKey, &cv)
	ins := *rs.Organizations[insurerKey]
	ins.Meta = profiled(ins.Meta, ProfileInsurer)
	ins.Active = ptr(true)
	b.add(insurerKey, &ins)
	req := *rs.Organizations[requester]
	req.Meta = profiled(req.Meta, ProfileRequestor)
	req.Active = ptr(true)
	b.add(requester, &req)
	pr := *prac
	pr.Meta = profiled(pr.Meta, ProfilePractitioner)
	b.add(pracKey, &pr)
	b.add("PractitionerRole/"+roleID, &r4.PractitionerRole{
		Id:           ptr(roleID),
		Meta:         &r4.Meta{Profile: []string{ProfilePractitionerRole}},
		Active:       ptr(true),
		Practitioner: &r4.Reference{Reference: ptr(pracKey)},
		Organization: &r4.Reference{Reference: ptr(requester)},
		Specialty:    specialties(prac),
	})
	mr := *c.Order
	mr.Meta = profiled(mr.Meta, ProfileMedicationReq)
	b.add(c.OrderKey, &mr)
	if k := refKey(&c.Order.MedicationReference); k != "" && rs.Medications[k] != nil {
		b.add(k, rs.Medications[k])
	}
	b.add(c.Condition, dx)
	if ev != nil {
		for _, k := range ev.Evidence() {
			if res := b.lookup(k); res != nil {
				b.add(k, res)
			}
		}
	}
	if b.err != nil {
		return nil, b.err
	}
	bundle := &r4.Bundle{
		Id:         ptr(id),
		Meta:       &r4.Meta{Profile: []string{ProfileRequestBundle}},
		Identifier: &r4.Identifier{System: ptr(b.o.IdentifierSystem), Value: ptr(id)},
		Type:       r4.BundleTypeCollection,
		Timestamp:  ptr(stamp),
		Entry:      b.entries,
	}
	return fhirjson.Marshal(bundle)
}

// lookup finds an evidence resource by key.
func (b *pasBuilder) lookup(k string) any {
	typ, _, _ := strings.Cut(k, "/")
	var v any
	var ok bool
	switch typ {
	case "Patient":
		v, ok = b.rs.Patients[k]
	case "Condition":
		v, ok = b.rs.Conditions[k]
	case "MedicationStatement":
		v, ok = b.rs.MedStatements[k]
	case "Observation":
		v, ok = b.rs.Observations[k]
	case "Location":
		v, ok = b.rs.Locations[k]
	case "Practitioner":
		v, ok = b.rs.Practitioners[k]
	case "MedicationRequest":
		v, ok = b.rs.MedRequests[k]
	}
	if !ok {
		return nil
	}
	return v
}

// items are the Claim items, one per phase of the order's dose plan: the
// HCPCS code of a supervised esketamine session (G2082 up to 56 mg, G2083
// above) or the CPT code of an IV infusion (96365), the planned sessions as
// quantity, the phase's period from the course start, and the
// MedicationRequest as requestedService.
func (b *pasBuilder) items() []r4.ClaimItem {
	c := b.c
	if c.Order == nil {
		return nil
	}
	if c.Start == nil {
		b.need("the course's start date (course.start)")
		return nil
	}
	var out []r4.ClaimItem
	from := *c.Start
	for _, d := range c.Order.DosageInstruction {
		var dose *r4.Quantity
		for _, dr := range d.DoseAndRate {
			if dr.DoseQuantity != nil && dr.DoseQuantity.Value != nil {
				dose = dr.DoseQuantity
			}
		}
		if dose == nil || d.Timing == nil || d.Timing.Repeat == nil || d.Timing.Repeat.Count == nil {
			continue
		}
		sessions := *d.Timing.Repeat.Count
		perWeek, ok := sessionsPerWeek(d.Timing)
		if !ok || sessions <= 0 {
			continue
		}
		var code r4.Coding
		switch c.Therapy {
		case TherapyEsketamine:
			v, _ := dose.Value.Float64()
			code = r4.Coding{System: ptr(HCPCSPAS), Code: ptr("G2082"),
				Display: ptr("Esketamine self-administration, up to 56 mg, with 2 hours post-administration observation")}
			if v > 56 {
				code = r4.Coding{System: ptr(HCPCSPAS), Code: ptr("G2083"),
					Display: ptr("Esketamine self-administration, greater than 56 mg, with 2 hours post-administration observation")}
			}
		case TherapyKetamine:
			code = r4.Coding{System: ptr(CPT), Code: ptr("96365"),
				Display: ptr("Intravenous infusion, for therapy, prophylaxis, or diagnosis; initial, up to 1 hour")}
		default:
			b.need("a ketamine or esketamine protocol (protocol.drug) the payer codes are known for")
			return nil
		}
		weeks := int(math.Ceil(float64(sessions) / perWeek))
		to := from.AddDate(0, 0, weeks*7-1)
		out = append(out, r4.ClaimItem{
			Extension:         []r4.Extension{{Url: ExtRequestedService, ValueReference: &r4.Reference{Reference: ptr(c.OrderKey)}}},
			Sequence:          len(out) + 1,
			CareTeamSequence:  []int{1},
			DiagnosisSequence: []int{1},
			Category: &r4.CodeableConcept{Coding: []r4.Coding{{System: ptr(X12ServiceType), Code: ptr("MH"),
				Display: ptr("Mental Health")}}},
			ProductOrService: r4.CodeableConcept{Coding: []r4.Coding{code}},
			ServicedPeriod:   &r4.Period{Start: ptr(from.Format(time.DateOnly)), End: ptr(to.Format(time.DateOnly))},
			Quantity:         &r4.Quantity{Value: ptr(json.Number(fmt.Sprint(sessions)))},
		})
		from = to.AddDate(0, 0, 1)
	}
	if len(out) == 0 {
		b.need("a dose plan with a session count and frequency (protocol.dose, protocol.induction)")
	}
	return out
}

// specialties are the NUCC taxonomy codings of a Practitioner's
// qualifications, as PractitionerRole.specialty (US Core 6.1.0 binds it to
// the NUCC taxonomy).
func specialties(p *r4.Practitioner) []r4.CodeableConcept {
	var out []r4.CodeableConcept
	for _, q := range p.Qualification {
		for _, cd := range q.Code.Coding {
			if cd.System != nil && *cd.System == NUCC && cd.Code != nil {
				out = append(out, r4.CodeableConcept{Coding: []r4.Coding{cd}})
			}
		}
	}
	return out
}
