package mapping

import (
	"strconv"
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// genders maps the clinic's administrative sex to Patient.gender.
var genders = map[string]r4.AdministrativeGender{
	"female": r4.AdministrativeGenderFemale, "male": r4.AdministrativeGenderMale,
	"other": r4.AdministrativeGenderOther, "unknown": r4.AdministrativeGenderUnknown,
}

// patient maps a patient to a US Core Patient: MRN identifier (type MR,
// system {IdentifierSystemBase}/mrn), name, gender, birthDate, telecom,
// address, managing organization and, when the clinic records them, the
// USCDI demographics: the US Core race, ethnicity and birth-sex extensions and
// communication.language (preferred).
func (e *emitter) patient(p *clinic.Patient) {
	m := e.m
	id := ResourceID(clinic.KindPatient, p.ID)
	e.patientID, e.org = id, p.OrganizationID
	g, ok := genders[p.Sex]
	if !ok {
		e.fail("sex", "unsupported value")
	}
	e.require("mrn", p.MRN)
	e.require("name.family", p.Name.Family)
	res := &r4.Patient{
		Id:   ptr(id),
		Meta: m.meta("us-core-patient", unlabelled),
		Identifier: []r4.Identifier{{
			Use:    ptr(r4.IdentifierUseUsual),
			Type:   ccp(m.cc("", codeOf(codes.V2IdentifierType, "MR", "Medical record number"))),
			System: ptr(m.sid("mrn")),
			Value:  str(p.MRN),
		}},
		Active:    ptr(true),
		Name:      []r4.HumanName{name(p.Name)},
		Telecom:   telecom(p.Contact, nil),
		Gender:    &g,
		BirthDate: e.date("birthDate", p.BirthDate),
		Address:   addresses(p.Contact),
	}
	if p.OrganizationID != "" {
		res.ManagingOrganization = krefp("Organization", clinic.KindOrganization, p.OrganizationID)
	}
	res.Extension = e.demographics(p)
	if p.Language != "" {
		res.Communication = []r4.PatientCommunication{{
			Language:  m.cc("", codeOf(codes.BCP47, p.Language, "")),
			Preferred: ptr(true),
		}}
	}
	e.add("Patient", id, true, res)
}

// demographics returns the US Core race, ethnicity and birth-sex extensions
// of the values the clinic recorded (none when it recorded none). Race and
// ethnicity are complex extensions: ombCategory codings and the required text.
func (e *emitter) demographics(p *clinic.Patient) []r4.Extension {
	m := e.m
	var out []r4.Extension
	omb := func(url string, values []string, table map[string]codes.Code, path string) {
		if len(values) == 0 {
			return
		}
		var subs []r4.Extension
		var text []string
		for i, v := range values {
			c, ok := table[v]
			if !ok {
				e.fail(path+"["+strconv.Itoa(i)+"]", "unsupported value")
				continue
			}
			subs = append(subs, r4.Extension{Url: "ombCategory", ValueCoding: ptr(m.coding(c))})
			text = append(text, c.Display)
		}
		subs = append(subs, r4.Extension{Url: "text", ValueString: ptr(strings.Join(text, ", "))})
		out = append(out, r4.Extension{Url: url, Extension: subs})
	}
	omb(codes.ExtUSCoreRace, p.Race, codes.Races, "race")
	if p.Ethnicity != "" {
		omb(codes.ExtUSCoreEthnicity, []string{p.Ethnicity}, codes.Ethnicities, "ethnicity")
	}
	if p.BirthSex != "" {
		code, ok := codes.BirthSexes[p.BirthSex]
		if !ok {
			e.fail("birthSex", "unsupported value")
		} else {
			out = append(out, r4.Extension{Url: codes.ExtUSCoreBirthSex, ValueCode: ptr(code)})
		}
	}
	return out
}

// practitioner maps a clinician to a US Core Practitioner: NPI identifier when
// given, otherwise the clinic's id in {IdentifierSystemBase}/practitioner; name;
// qualification (v2-0360 coding where the credential has one, else text) and
// the specialty as a second qualification coded in the NUCC taxonomy.
func (e *emitter) practitioner(p *clinic.Practitioner) {
	m := e.m
	id := ResourceID(clinic.KindPractitioner, p.ID)
	e.org = m.org
	ident := r4.Identifier{System: ptr(m.sid("practitioner")), Value: ptr(p.ID)}
	if p.NPI != "" {
		ident = r4.Identifier{System: ptr(codes.NPI), Value: ptr(p.NPI)}
	}
	e.require("name.family", p.Name.Family)
	res := &r4.Practitioner{
		Id:         ptr(id),
		Meta:       m.meta("us-core-practitioner", unlabelled),
		Identifier: []r4.Identifier{ident},
		Active:     ptr(true),
		Name:       []r4.HumanName{name(p.Name)},
		Telecom:    telecom(p.Contact, ptr(r4.ContactPointUseWork)),
		Address:    addresses(p.Contact),
	}
	if q := p.Qualification; q != "" {
		code := textCC(q)
		if c, ok := codes.Qualifications[q]; ok {
			code = m.cc(q, c)
		}
		res.Qualification = []r4.PractitionerQualification{{Code: code}}
	}
	if t := p.Specialty; t != "" {
		// The specialty as a qualification coded in the NUCC taxonomy: the
		// Practitioner is what the payer view shows (docs/fhir-mapping.md);
		// the PAS request's PractitionerRole carries it as specialty.
		res.Qualification = append(res.Qualification, r4.PractitionerQualification{
			Code: m.cc("", codes.Code{System: codes.NUCCTaxonomy, Code: t, Display: codes.Taxonomies[t]})})
	}
	e.add("Practitioner", id, false, res)
}

// organization maps an organization to a US Core Organization: active, name,
// type prov (clinic, partner) or pay (payer), a partner clinic with the local
// type org-partner-clinic as well, identifiers: NPI, and for a payer its NAIC
// company code (US Core NAIC slice) and the payer id the clinic bills under
// ({IdentifierSystemBase}/payer-id).
func (e *emitter) organization(o *clinic.Organization) {
	m := e.m
	id := ResourceID(clinic.KindOrganization, o.ID)
	e.org = m.org
	if o.Type == "clinic" {
		e.org = o.ID
	}
	t, ok := codes.OrganizationTypes[o.Type]
	if !ok {
		e.fail("type", "unsupported value")
	}
	e.require("name", o.Name)
	res := &r4.Organization{
		Id:      ptr(id),
		Meta:    m.meta("us-core-organization", unlabelled),
		Active:  ptr(true),
		Type:    []r4.CodeableConcept{m.cc("", t)},
		Name:    str(o.Name),
		Telecom: telecom(o.Contact, ptr(r4.ContactPointUseWork)),
		Address: addresses(o.Contact),
	}
	if r, ok := codes.OrganizationRoles[o.Type]; ok {
		res.Type = append(res.Type, m.cc("", r))
	}
	if o.NPI != "" {
		res.Identifier = append(res.Identifier, r4.Identifier{System: ptr(codes.NPI), Value: ptr(o.NPI)})
	}
	if o.NAIC != "" {
		res.Identifier = append(res.Identifier, r4.Identifier{System: ptr(codes.NAIC), Value: ptr(o.NAIC)})
	}
	if o.PayerID != "" {
		res.Identifier = append(res.Identifier, r4.Identifier{System: ptr(m.sid("payer-id")), Value: ptr(o.PayerID)})
	}
	e.add("Organization", id, false, res)
}

// location maps a treatment site to a US Core Location (status active, name,
// managing organization, address, telecom). A Spravato REMS-certified setting
// carries the rems-certified extension and its REMS setting id as an
// identifier in {IdentifierSystemBase}/rems-setting.
func (e *emitter) location(l *clinic.Location) {
	m := e.m
	id := ResourceID(clinic.KindLocation, l.ID)
	e.org = l.OrganizationID
	e.require("name", l.Name)
	res := &r4.Location{
		Id:      ptr(id),
		Meta:    m.meta("us-core-location", unlabelled),
		Status:  ptr(r4.LocationStatusActive),
		Name:    str(l.Name),
		Telecom: telecom(l.Contact, ptr(r4.ContactPointUseWork)),
		Address: address(l.Contact),
	}
	if l.REMSCertified {
		res.Extension = []r4.Extension{{Url: codes.ExtREMSCertified, ValueBoolean: ptr(true)}}
	}
	if l.REMSSettingID != "" {
		res.Identifier = []r4.Identifier{{System: ptr(m.sid("rems-setting")), Value: ptr(l.REMSSettingID)}}
	}
	if l.OrganizationID != "" {
		res.ManagingOrganization = krefp("Organization", clinic.KindOrganization, l.OrganizationID)
	}
	e.add("Location", id, false, res)
}
