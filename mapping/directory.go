package mapping

import (
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
// system {Canonical}/sid/mrn), name, gender, birthDate, telecom, address and
// managing organization.
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
		Meta: m.meta("us-core-patient", false),
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
	e.add("Patient", id, true, res)
}

// practitioner maps a clinician to a US Core Practitioner: NPI identifier when
// given, otherwise the clinic's id in {Canonical}/sid/practitioner; name;
// qualification (v2-0360 coding where the credential has one, else text).
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
		Meta:       m.meta("us-core-practitioner", false),
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
	e.add("Practitioner", id, false, res)
}

// organization maps an organization to a US Core Organization: active, name,
// type prov (clinic, partner) or pay (payer), NPI identifier when given.
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
		Meta:    m.meta("us-core-organization", false),
		Active:  ptr(true),
		Type:    []r4.CodeableConcept{m.cc("", t)},
		Name:    str(o.Name),
		Telecom: telecom(o.Contact, ptr(r4.ContactPointUseWork)),
		Address: addresses(o.Contact),
	}
	if o.NPI != "" {
		res.Identifier = []r4.Identifier{{System: ptr(codes.NPI), Value: ptr(o.NPI)}}
	}
	e.add("Organization", id, false, res)
}

// location maps a treatment site to a US Core Location (status active, name,
// managing organization, address, telecom). A Spravato REMS-certified setting
// carries the rems-certified extension and its REMS setting id as an
// identifier in {Canonical}/sid/rems-setting.
func (e *emitter) location(l *clinic.Location) {
	m := e.m
	id := ResourceID(clinic.KindLocation, l.ID)
	e.org = l.OrganizationID
	e.require("name", l.Name)
	res := &r4.Location{
		Id:      ptr(id),
		Meta:    m.meta("us-core-location", false),
		Status:  ptr(r4.LocationStatusActive),
		Name:    str(l.Name),
		Telecom: telecom(l.Contact, ptr(r4.ContactPointUseWork)),
		Address: address(l.Contact),
	}
	if l.REMSCertified {
		res.Extension = []r4.Extension{{Url: m.ext(codes.ExtREMSCertified), ValueBoolean: ptr(true)}}
	}
	if l.REMSSettingID != "" {
		res.Identifier = []r4.Identifier{{System: ptr(m.sid("rems-setting")), Value: ptr(l.REMSSettingID)}}
	}
	if l.OrganizationID != "" {
		res.ManagingOrganization = krefp("Organization", clinic.KindOrganization, l.OrganizationID)
	}
	e.add("Location", id, false, res)
}
