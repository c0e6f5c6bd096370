package mapping

import (
	"encoding/json"
	"html"
	"regexp"
	"slices"
	"strconv"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// Code systems used only here.
const (
	provParticipant       = codes.ProvParticipant
	usCoreProvParticipant = codes.USCoreProvPart
)

func ptr[T any](v T) *T { return &v }

// str is a pointer to s, or nil for "" (FHIR forbids empty strings).
func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// clone copies a string slice (nil when empty) so outputs never alias inputs.
func clone(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func codeOf(system, code, display string) codes.Code {
	return codes.Code{System: system, Code: code, Display: display}
}

// coding is c as a Coding. Its strings share one allocation instead of one
// each (a mapped resource holds dozens of codings; docs/design/security.md
// PERF-IN-4); the Coding still aliases nothing outside itself.
func (m *Mapper) coding(c codes.Code) r4.Coding {
	s := &[3]string{c.System, c.Code, c.Display}
	out := r4.Coding{System: &s[0], Code: &s[1]}
	if c.Display != "" {
		out.Display = &s[2]
	}
	return out
}

// cc is a CodeableConcept of the codings with optional text. Codes without a
// code (text-only table entries) are left out.
func (m *Mapper) cc(text string, cs ...codes.Code) r4.CodeableConcept {
	out := r4.CodeableConcept{Text: str(text)}
	n := 0
	for _, c := range cs {
		if c.Code != "" {
			n++
		}
	}
	if n == 0 {
		return out
	}
	out.Coding = make([]r4.Coding, 0, n)
	for _, c := range cs {
		if c.Code == "" {
			continue
		}
		out.Coding = append(out.Coding, m.coding(c))
	}
	return out
}

func ccp(c r4.CodeableConcept) *r4.CodeableConcept { return &c }

// textCC is a CodeableConcept carrying only text.
func textCC(text string) r4.CodeableConcept { return r4.CodeableConcept{Text: ptr(text)} }

func ref(typ, id string) r4.Reference { return r4.Reference{Reference: ptr(typ + "/" + id)} }

func refp(typ, id string) *r4.Reference { r := ref(typ, id); return &r }

// kref references the main resource of another clinic record.
func kref(typ string, kind clinic.Kind, clinicID string) r4.Reference {
	return ref(typ, ResourceID(kind, clinicID))
}

func krefp(typ string, kind clinic.Kind, clinicID string) *r4.Reference {
	r := kref(typ, kind, clinicID)
	return &r
}

func dec(f float64) *json.Number {
	n := json.Number(strconv.FormatFloat(f, 'f', -1, 64))
	return &n
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// qty is a UCUM Quantity.
func qty(v float64, u codes.Unit) *r4.Quantity {
	// One allocation for the Quantity and its four values (PERF-IN-4).
	b := &struct {
		q                  r4.Quantity
		value              json.Number
		unit, system, code string
	}{value: json.Number(strconv.FormatFloat(v, 'f', -1, 64)), unit: u.Unit, system: codes.UCUM, code: u.Code}
	b.q = r4.Quantity{Value: &b.value, Unit: &b.unit, System: &b.system, Code: &b.code}
	return &b.q
}

// sid is an identifier system of the clinic's namespace:
// {IdentifierSystemBase}/name.
func (m *Mapper) sid(name string) string { return m.sidBase + "/" + name }

// labels is the security-label set of a mapped resource (meta.security),
// chosen per resource by its content (docs/fhir-mapping.md "Security
// labels"). The HL7 classification gives a resource at most one
// confidentiality code and asks for one beside every sensitivity category
// (FHIR R4 security-labels.html#hcs), so a labelled resource carries PSY and
// exactly one of N or R; a resource without a sensitivity category carries no
// label at all: its confidentiality follows from its type.
type labels uint8

const (
	// unlabelled: identity, coverage, consent, provenance, the directory.
	unlabelled labels = iota
	// mentalHealth: PSY with confidentiality N (normal).
	mentalHealth
	// suicideRisk: PSY with confidentiality R (restricted), for suicide-risk
	// content only.
	suicideRisk
)

// meta returns the meta of a mapped resource: the US Core profile claimed
// (when not "") and the security labels l. Resources with neither carry
// meta.source (the project's canonical base: the source system is KetaBridge)
// so meta is never empty (the store stamps versionId/lastUpdated into it).
func (m *Mapper) meta(profile string, l labels) *r4.Meta {
	// The Meta, its profile and its two labels in one allocation (PERF-IN-4).
	b := &struct {
		mt      r4.Meta
		profile [1]string
		sec     [2]r4.Coding
	}{}
	mt := &b.mt
	if profile != "" {
		b.profile[0] = codes.USCore + profile
		mt.Profile = b.profile[:]
	}
	switch l {
	case mentalHealth:
		b.sec = [2]r4.Coding{m.coding(codes.SecurityPSY), m.coding(codes.SecurityNormal)}
		mt.Security = b.sec[:]
	case suicideRisk:
		b.sec = [2]r4.Coding{m.coding(codes.SecurityPSY), m.coding(codes.SecurityRestricted)}
		mt.Security = b.sec[:]
	}
	if profile == "" && l == unlabelled {
		mt.Source = ptr(codes.CanonicalBase)
	}
	return mt
}

// narrative is generated XHTML narrative (R4 narrative.html) of plain text.
func narrative(text string) *r4.Narrative {
	return &r4.Narrative{
		Status: r4.NarrativeStatusGenerated,
		Div:    `<div xmlns="http://www.w3.org/1999/xhtml"><p>` + html.EscapeString(text) + `</p></div>`,
	}
}

// Date and time checks. Records arrive validated; these guard the FHIR
// formats anyway and report the field path on failure.
var (
	dateRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
)

// dateTime checks an RFC 3339 date-time; "" gives nil.
func (e *emitter) dateTime(path, v string) *string {
	if v == "" {
		return nil
	}
	if _, err := time.Parse(time.RFC3339, v); err != nil {
		e.fail(path, "must be an RFC 3339 date-time")
		return nil
	}
	return &v
}

// date checks a YYYY-MM-DD calendar date; "" gives nil.
func (e *emitter) date(path, v string) *string {
	if v == "" {
		return nil
	}
	if _, err := time.Parse(time.DateOnly, v); err != nil || !dateRE.MatchString(v) {
		e.fail(path, "must be a YYYY-MM-DD date")
		return nil
	}
	return &v
}

// dateOrTime accepts either form (FHIR dateTime allows a bare date).
func (e *emitter) dateOrTime(path, v string) *string {
	if len(v) == len(time.DateOnly) {
		return e.date(path, v)
	}
	return e.dateTime(path, v)
}

// require reports a missing required value; it returns whether v is set.
func (e *emitter) require(path, v string) bool {
	if v == "" {
		e.fail(path, "is required")
		return false
	}
	return true
}

// period builds a Period, nil when both ends are empty.
func period(start, end *string) *r4.Period {
	if start == nil && end == nil {
		return nil
	}
	return &r4.Period{Start: start, End: end}
}

// name maps a clinic name to an official HumanName.
func name(n clinic.HumanName) r4.HumanName {
	return r4.HumanName{
		Use:    ptr(r4.NameUseOfficial),
		Family: str(n.Family),
		Given:  clone(n.Given),
		Prefix: clone(n.Prefix),
		Suffix: clone(n.Suffix),
	}
}

// telecom maps a clinic contact's phone and email; use may be nil.
func telecom(c *clinic.Contact, use *r4.ContactPointUse) []r4.ContactPoint {
	if c == nil {
		return nil
	}
	var out []r4.ContactPoint
	if c.Phone != "" {
		out = append(out, r4.ContactPoint{System: ptr(r4.ContactPointSystemPhone), Value: ptr(c.Phone), Use: use})
	}
	if c.Email != "" {
		out = append(out, r4.ContactPoint{System: ptr(r4.ContactPointSystemEmail), Value: ptr(c.Email), Use: use})
	}
	return out
}

// address maps a clinic contact's postal address (nil when absent or empty).
func address(c *clinic.Contact) *r4.Address {
	if c == nil || c.Address == nil {
		return nil
	}
	a := c.Address
	out := &r4.Address{
		Line: clone(a.Lines), City: str(a.City), State: str(a.State),
		PostalCode: str(a.PostalCode), Country: str(a.Country),
	}
	if out.Line == nil && out.City == nil && out.State == nil && out.PostalCode == nil && out.Country == nil {
		return nil
	}
	return out
}

func addresses(c *clinic.Contact) []r4.Address {
	if a := address(c); a != nil {
		return []r4.Address{*a}
	}
	return nil
}
