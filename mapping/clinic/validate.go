package clinic

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// Value sets. The schema (schema.go) is built from the same tables.
var (
	sexes                 = []string{"female", "male", "other", "unknown"}
	orgTypes              = []string{"clinic", "payer", "partner"}
	drugs                 = []string{"ketamine", "esketamine"}
	routes                = []string{"iv", "im", "intranasal", "oral", "sublingual", "subcutaneous"}
	doseRules             = []string{"fixed_mg", "mg_per_kg"}
	protocolStatuses      = []string{"active", "retired", "draft"}
	courseStatuses        = []string{"active", "completed", "stopped", "on-hold"}
	coursePhases          = []string{"induction", "maintenance"}
	clinicalStatuses      = []string{"active", "recurrence", "relapse", "inactive", "remission", "resolved"}
	sessionStatuses       = []string{SessionCompleted, SessionCancelled, SessionNoShow, SessionStoppedEarly, SessionScheduled}
	instruments           = []string{InstrumentPHQ9, InstrumentGAD7, InstrumentPCL5, InstrumentCSSRS, InstrumentCADSS, InstrumentMOAAS, InstrumentMADRS}
	riskLevels            = []string{"low", "moderate", "high"}
	timings               = []string{"baseline", "pre-dose", "post-dose", "follow-up"}
	effects               = []string{"dissociation", "hypertension", "nausea", "vomiting", "sedation", "headache", "dizziness", "anxiety", "respiratory-depression", "other"}
	severities            = []string{"mild", "moderate", "severe"}
	actions               = []string{"none", "observed", "infusion-paused", "infusion-slowed", "infusion-stopped", "medication-given", "transferred"}
	coverageStatuses      = []string{"active", "cancelled", "draft"}
	relationships         = []string{"self", "spouse", "child", "other"}
	consentStatuses       = []string{"active", "inactive", "rejected", "proposed"}
	decisions             = []string{"permit", "deny"}
	purposes              = []string{"treatment", "payment", "operations"}
	dataClasses           = []string{"demographics", "diagnoses", "medications", "sessions", "assessments", "vitals", "coverage"}
	trialClasses          = []string{"SSRI", "SNRI", "TCA", "MAOI", "atypical", "augmentation", "other"}
	trialOutcomes         = []string{"inadequate-response", "partial-response", "response", "intolerance", "ongoing"}
	races                 = []string{"american-indian-alaska-native", "asian", "black", "native-hawaiian-pacific-islander", "white", "declined", "unknown"}
	ethnicities           = []string{"hispanic-latino", "not-hispanic-latino", "declined", "unknown"}
	birthSexes            = []string{"female", "male", "unknown"}
	productForms          = []string{"injection-solution", "nasal-spray", "lozenge"}
	causalities           = []string{"certain", "probable", "possible", "unlikely", "unassessable"}
	payerTypes            = []string{"medicare", "medicare-hmo", "medicare-ppo", "medicaid", "medicaid-hmo", "commercial", "commercial-hmo", "commercial-ppo", "commercial-pos", "commercial-epo", "bcbs", "tricare", "self-pay", "other"}
	languagePattern       = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)
	naicPattern           = regexp.MustCompile(`^[0-9]{5}$`)
	payerIDPattern        = regexp.MustCompile(`^[A-Za-z0-9-]{1,20}$`)
	idPattern             = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	icd10Pattern          = regexp.MustCompile(`^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$`)
	ndcPattern            = regexp.MustCompile(`^([0-9]{4}-[0-9]{4}-[0-9]{2}|[0-9]{5}-[0-9]{3}-[0-9]{2}|[0-9]{5}-[0-9]{4}-[0-9]{1,2}|[0-9]{11})$`)
	npiPattern            = regexp.MustCompile(`^[0-9]{10}$`)
	nuccPattern           = regexp.MustCompile(`^[0-9]{3}[0-9A-Z]{6}X$`)
	rxnormPattern         = regexp.MustCompile(`^[0-9]{1,10}$`)
	datePattern           = `^[0-9]{4}-[0-9]{2}-[0-9]{2}$`
	dateRegexp            = regexp.MustCompile(datePattern)
	esketamineMgPerDevice = 28.0
)

// ValidID reports whether s is a valid clinic id: 1 to 64 letters, digits,
// '.', '_' or '-'.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// Physiological ranges (inclusive) for vitals and dosing weight.
const (
	minHR, maxHR               = 20, 250
	minRR, maxRR               = 4, 60
	minSpO2, maxSpO2           = 50, 100
	minSystolic, maxSystolic   = 50, 260
	minDiastolic, maxDiastolic = 20, 200
	minTempC, maxTempC         = 30.0, 43.0
	minWeightKg, maxWeightKg   = 20.0, 350.0
	maxDoseMg                  = 2000.0
	maxMgPerKg                 = 10.0
	doseTolerance              = 0.05
)

// scale describes a scored instrument: item count and range, total range.
type scale struct {
	items, itemMax, totalMax int
}

var scales = map[string]scale{
	InstrumentPHQ9:  {items: 9, itemMax: 3, totalMax: 27},
	InstrumentGAD7:  {items: 7, itemMax: 3, totalMax: 21},
	InstrumentPCL5:  {items: 20, itemMax: 4, totalMax: 80},
	InstrumentMADRS: {items: 10, itemMax: 6, totalMax: 60},
	InstrumentCADSS: {items: 23, itemMax: 4, totalMax: 92},
	InstrumentMOAAS: {items: 0, totalMax: 5},
}

// Validate checks one record on its own: the kind matches the struct, the id
// and reference ids are well formed, required fields are present, dates are
// YYYY-MM-DD, date-times are RFC 3339 with a zone offset, enums, ranges and
// internal consistency (ends not before starts, blood pressure, scale totals,
// dose arithmetic, drug and route). Checks that need another record are in
// CheckRefs. Validate does not modify r.
func Validate(r Record) []FieldError {
	var e errs
	switch v := asPointer(r).(type) {
	case *Patient:
		v.validate(&e)
	case *Practitioner:
		v.validate(&e)
	case *Organization:
		v.validate(&e)
	case *Location:
		v.validate(&e)
	case *Protocol:
		v.validate(&e)
	case *Course:
		v.validate(&e)
	case *Diagnosis:
		v.validate(&e)
	case *Session:
		v.validate(&e)
	case *Coverage:
		v.validate(&e)
	case *Consent:
		v.validate(&e)
	case *AntidepressantTrial:
		v.validate(&e)
	case *PriorAuthResponse:
		v.validate(&e)
	case *Referral:
		v.validate(&e)
	case nil:
		e.add("", "record is missing")
	default:
		e.add("", "unsupported record type")
	}
	return e
}

// header checks kind and id.
func (e *errs) header(h Header, want Kind) {
	switch h.Kind {
	case want:
	case "":
		e.add("kind", "is required")
	default:
		e.add("kind", "does not match the record type")
	}
	e.id("id", h.ID, true)
}

// required reports an empty required string; it returns whether v is set.
func (e *errs) required(path, v string) bool {
	if v == "" {
		e.add(path, "is required")
		return false
	}
	return true
}

// id checks a clinic id (the record's own or a reference).
func (e *errs) id(path, v string, required bool) {
	if v == "" {
		if required {
			e.add(path, "is required")
		}
		return
	}
	if !idPattern.MatchString(v) {
		e.add(path, "must be 1-64 characters of A-Z a-z 0-9 . _ -")
	}
}

func (e *errs) enum(path, v string, required bool, allowed []string) {
	if v == "" {
		if required {
			e.add(path, "is required")
		}
		return
	}
	if !slices.Contains(allowed, v) {
		e.add(path, oneOf(allowed))
	}
}

// date checks a YYYY-MM-DD date; ok is false when absent or invalid.
func (e *errs) date(path, v string, required bool) (t time.Time, ok bool) {
	if v == "" {
		if required {
			e.add(path, "is required")
		}
		return t, false
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil || !dateRegexp.MatchString(v) {
		e.add(path, "must be a date YYYY-MM-DD")
		return t, false
	}
	return t, true
}

// dateTime checks an RFC 3339 date-time with a zone offset.
func (e *errs) dateTime(path, v string, required bool) (t time.Time, ok bool) {
	if v == "" {
		if required {
			e.add(path, "is required")
		}
		return t, false
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		e.add(path, "must be an RFC 3339 date-time with a zone offset")
		return t, false
	}
	return t, true
}

// dateOrDateTime accepts either form (FHIR dateTime allows a bare date).
func (e *errs) dateOrDateTime(path, v string) (t time.Time, ok bool) {
	if v == "" {
		return t, false
	}
	if len(v) == len(time.DateOnly) {
		return e.date(path, v, false)
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		e.add(path, "must be a date YYYY-MM-DD or an RFC 3339 date-time with a zone offset")
		return t, false
	}
	return t, true
}

// notBefore reports end before start at endPath.
func (e *errs) notBefore(endPath string, start, end time.Time, startOK, endOK bool, startName string) {
	if startOK && endOK && end.Before(start) {
		e.add(endPath, "must not be before "+startName)
	}
}

func (e *errs) intRange(path string, v *int, lo, hi int) {
	if v != nil && (*v < lo || *v > hi) {
		e.add(path, fmt.Sprintf("must be between %d and %d", lo, hi))
	}
}

func (e *errs) floatRange(path string, v *float64, lo, hi float64) {
	if v != nil && (math.IsNaN(*v) || *v < lo || *v > hi) {
		e.add(path, "must be between "+fmtFloat(lo)+" and "+fmtFloat(hi))
	}
}

func (e *errs) positive(path string, v *float64, hi float64) {
	if v != nil && (math.IsNaN(*v) || *v <= 0 || *v > hi) {
		e.add(path, "must be greater than 0 and at most "+fmtFloat(hi))
	}
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func (e *errs) name(path string, n HumanName) {
	e.required(field(path, "family"), n.Family)
	for i, g := range n.Given {
		e.required(index(field(path, "given"), i), g)
	}
}

func (e *errs) contact(path string, c *Contact) {
	if c == nil {
		return
	}
	if c.Email != "" && !validEmail(c.Email) {
		e.add(field(path, "email"), "must be an email address")
	}
	if c.Address != nil {
		a := c.Address
		if len(a.Lines) == 0 && a.City == "" && a.State == "" && a.PostalCode == "" && a.Country == "" {
			e.add(field(path, "address"), "must not be empty")
		}
		for i, l := range a.Lines {
			e.required(index(field(path, "address.lines"), i), l)
		}
	}
	if c.Phone == "" && c.Email == "" && c.Address == nil {
		e.add(path, "must not be empty")
	}
}

func validEmail(s string) bool {
	at := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '@':
			if at >= 0 {
				return false
			}
			at = i
		case ' ', '\t', '\n', '\r':
			return false
		}
	}
	return at > 0 && at < len(s)-1
}

// validNPI checks a National Provider Identifier: 10 digits whose last is the
// Luhn check digit over "80840" + the first nine (CMS NPI check digit rule).
func validNPI(s string) bool {
	if !npiPattern.MatchString(s) {
		return false
	}
	return NPICheckDigit(s[:9]) == s[9]
}

// NPICheckDigit returns the check digit ('0'-'9') for the first nine digits
// of an NPI: the Luhn check digit with the 80840 prefix (24 added).
func NPICheckDigit(nine string) byte {
	sum := 24 // the constant for the 80840 prefix
	for i := 0; i < len(nine); i++ {
		d := int(nine[len(nine)-1-i] - '0')
		if i%2 == 0 { // double every other digit starting with the rightmost
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

func (e *errs) npi(path, v string) {
	if v != "" && !validNPI(v) {
		e.add(path, "must be a 10-digit NPI with a valid check digit")
	}
}

func (e *errs) icd10(path, v string, required bool) {
	if v == "" {
		if required {
			e.add(path, "is required")
		}
		return
	}
	if !icd10Pattern.MatchString(v) {
		e.add(path, "must be an ICD-10-CM code such as F33.2")
	}
}

func (p *Patient) validate(e *errs) {
	e.header(p.Header, KindPatient)
	e.required("mrn", p.MRN)
	e.name("name", p.Name)
	if t, ok := e.date("birthDate", p.BirthDate, true); ok && t.Year() < 1900 {
		e.add("birthDate", "must not be before 1900")
	}
	e.enum("sex", p.Sex, true, sexes)
	e.contact("contact", p.Contact)
	e.id("organizationId", p.OrganizationID, false)
	for i, r := range p.Race {
		e.enum(index("race", i), r, true, races)
		if slices.Index(p.Race, r) < i {
			e.add(index("race", i), "is a duplicate")
		}
		if (r == "declined" || r == "unknown") && len(p.Race) > 1 {
			e.add(index("race", i), "must be the only value")
		}
	}
	e.enum("ethnicity", p.Ethnicity, false, ethnicities)
	e.enum("birthSex", p.BirthSex, false, birthSexes)
	if p.Language != "" && !languagePattern.MatchString(p.Language) {
		e.add("language", "must be a BCP 47 language tag such as en, es or zh-Hant")
	}
}

func (p *Practitioner) validate(e *errs) {
	e.header(p.Header, KindPractitioner)
	e.npi("npi", p.NPI)
	if p.Specialty != "" && !nuccPattern.MatchString(p.Specialty) {
		e.add("specialty", "must be a NUCC taxonomy code, e.g. 2084P0800X (Psychiatry)")
	}
	e.name("name", p.Name)
	e.contact("contact", p.Contact)
}

func (o *Organization) validate(e *errs) {
	e.header(o.Header, KindOrganization)
	e.required("name", o.Name)
	e.enum("type", o.Type, true, orgTypes)
	e.npi("npi", o.NPI)
	e.contact("contact", o.Contact)
	if o.NAIC != "" && !naicPattern.MatchString(o.NAIC) {
		e.add("naic", "must be a 5-digit NAIC company code")
	}
	if o.PayerID != "" && !payerIDPattern.MatchString(o.PayerID) {
		e.add("payerId", "must be 1-20 characters of A-Z a-z 0-9 -")
	}
	if o.Type != "payer" {
		if o.NAIC != "" {
			e.add("naic", "applies to payers only")
		}
		if o.PayerID != "" {
			e.add("payerId", "applies to payers only")
		}
	}
}

func (l *Location) validate(e *errs) {
	e.header(l.Header, KindLocation)
	e.required("name", l.Name)
	e.id("organizationId", l.OrganizationID, true)
	e.contact("contact", l.Contact)
	if l.REMSSettingID != "" && !l.REMSCertified {
		e.add("remsSettingId", "requires remsCertified")
	}
}

func (p *Protocol) validate(e *errs) {
	e.header(p.Header, KindProtocol)
	e.required("name", p.Name)
	e.enum("drug", p.Drug, true, drugs)
	e.enum("route", p.Route, true, routes)
	if p.Drug == "esketamine" && p.Route != "" && p.Route != "intranasal" {
		e.add("route", "must be intranasal for esketamine")
	}
	d := p.Dose
	e.enum("dose.rule", d.Rule, true, doseRules)
	e.positive("dose.mg", d.Mg, maxDoseMg)
	e.positive("dose.mgPerKg", d.MgPerKg, maxMgPerKg)
	e.positive("dose.minMg", d.MinMg, maxDoseMg)
	e.positive("dose.maxMg", d.MaxMg, maxDoseMg)
	e.positive("dose.minMgPerKg", d.MinMgPerKg, maxMgPerKg)
	e.positive("dose.maxMgPerKg", d.MaxMgPerKg, maxMgPerKg)
	switch d.Rule {
	case "fixed_mg":
		if d.Mg == nil {
			e.add("dose.mg", "is required for rule fixed_mg")
		}
		if d.MgPerKg != nil || d.MinMgPerKg != nil || d.MaxMgPerKg != nil {
			e.add("dose", "mg/kg fields do not apply to rule fixed_mg")
		}
		e.bounds("dose", d.MinMg, d.Mg, d.MaxMg, "minMg", "mg", "maxMg")
		if p.Drug == "esketamine" {
			for _, f := range []struct {
				path string
				v    *float64
			}{{"dose.mg", d.Mg}, {"dose.minMg", d.MinMg}, {"dose.maxMg", d.MaxMg}} {
				if f.v != nil && math.Mod(*f.v, esketamineMgPerDevice) != 0 {
					e.add(f.path, "must be a multiple of 28 mg for esketamine")
				}
			}
		}
	case "mg_per_kg":
		if d.MgPerKg == nil {
			e.add("dose.mgPerKg", "is required for rule mg_per_kg")
		}
		if d.Mg != nil || d.MinMg != nil || d.MaxMg != nil {
			e.add("dose", "mg fields do not apply to rule mg_per_kg")
		}
		if p.Drug == "esketamine" {
			e.add("dose.rule", "must be fixed_mg for esketamine")
		}
		e.bounds("dose", d.MinMgPerKg, d.MgPerKg, d.MaxMgPerKg, "minMgPerKg", "mgPerKg", "maxMgPerKg")
	}
	e.product("product", p.Product, p.Drug, p.Route)
	if p.InfusionMinutes < 0 || p.InfusionMinutes > 600 {
		e.add("infusionMinutes", "must be between 1 and 600")
	} else if p.InfusionMinutes > 0 && p.Route != "iv" && p.Route != "subcutaneous" {
		e.add("infusionMinutes", "applies to iv and subcutaneous routes only")
	}
	if p.Induction == (Schedule{}) {
		e.add("induction", "is required")
	} else {
		e.schedule("induction", &p.Induction)
	}
	if p.Maintenance != nil && *p.Maintenance == (Schedule{}) {
		e.add("maintenance", "must not be empty")
	} else {
		e.schedule("maintenance", p.Maintenance)
	}
	m := p.Monitoring
	for _, f := range []struct {
		path string
		v    int
		max  int
	}{
		{"monitoring.vitalsIntervalMinutes", m.VitalsIntervalMinutes, 240},
		{"monitoring.observationMinutes", m.ObservationMinutes, 1440},
		{"monitoring.bpAfterMinutes", m.BPAfterMinutes, 1440},
		{"monitoring.holdAboveSystolic", m.HoldAboveSystolic, maxSystolic},
		{"monitoring.holdAboveDiastolic", m.HoldAboveDiastolic, maxDiastolic},
	} {
		if f.v < 0 || f.v > f.max {
			e.add(f.path, fmt.Sprintf("must be between 0 and %d", f.max))
		}
	}
	if m.HoldAboveSystolic > 0 && m.HoldAboveDiastolic >= m.HoldAboveSystolic {
		e.add("monitoring.holdAboveDiastolic", "must be below holdAboveSystolic")
	}
	if len(p.Indications) == 0 {
		e.add("indications", "is required")
	}
	for i, c := range p.Indications {
		e.icd10(index("indications", i), c, true)
	}
	e.id("organizationId", p.OrganizationID, false)
	e.enum("status", p.Status, false, protocolStatuses)
}

// productRoutes are the routes each product form is given by.
var productRoutes = map[string][]string{
	"injection-solution": {"iv", "im", "subcutaneous"},
	"nasal-spray":        {"intranasal"},
	"lozenge":            {"sublingual", "oral"},
}

// product checks a protocol's drug product against its drug and route.
func (e *errs) product(path string, p *Product, drug, route string) {
	if p == nil {
		return
	}
	e.enum(field(path, "form"), p.Form, true, productForms)
	strength := field(path, "strengthMg")
	if p.StrengthMg == 0 {
		e.add(strength, "is required")
	} else {
		e.positive(strength, &p.StrengthMg, maxDoseMg)
	}
	if p.NDC != "" && !ndcPattern.MatchString(p.NDC) {
		e.add(field(path, "ndc"), "must be an NDC in 4-4-2, 5-3-2, 5-4-1, 5-4-2 or 11-digit form")
	}
	if routes, ok := productRoutes[p.Form]; ok && route != "" && !slices.Contains(routes, route) {
		e.add(field(path, "form"), "does not fit the route "+route)
	}
	if drug == "esketamine" && p.Form != "" && (p.Form != "nasal-spray" || p.StrengthMg != esketamineMgPerDevice) {
		e.add(path, "must be a 28 mg nasal-spray device for esketamine")
	}
}

// bounds checks min <= value <= max for whichever are set.
func (e *errs) bounds(path string, lo, v, hi *float64, loName, vName, hiName string) {
	if lo != nil && hi != nil && *lo > *hi {
		e.add(field(path, hiName), "must not be below "+loName)
		return
	}
	if v != nil && lo != nil && *v < *lo {
		e.add(field(path, vName), "must not be below "+loName)
	}
	if v != nil && hi != nil && *v > *hi {
		e.add(field(path, vName), "must not be above "+hiName)
	}
}

func (e *errs) schedule(path string, s *Schedule) {
	if s == nil {
		return
	}
	if s.Sessions < 1 || s.Sessions > 1000 {
		e.add(field(path, "sessions"), "must be between 1 and 1000")
	}
	if s.Frequency < 1 || s.Frequency > 31 {
		e.add(field(path, "frequency"), "must be between 1 and 31")
	}
	if s.PeriodDays < 1 || s.PeriodDays > 366 {
		e.add(field(path, "periodDays"), "must be between 1 and 366")
	}
}

func (c *Course) validate(e *errs) {
	e.header(c.Header, KindCourse)
	e.id("patientId", c.PatientID, true)
	e.id("protocolId", c.ProtocolID, true)
	e.id("prescriberId", c.PrescriberID, true)
	e.id("diagnosisId", c.DiagnosisID, true)
	s, sok := e.date("start", c.Start, true)
	end, eok := e.date("end", c.End, false)
	e.notBefore("end", s, end, sok, eok, "start")
	e.enum("status", c.Status, true, courseStatuses)
	e.enum("phase", c.Phase, false, coursePhases)
	e.id("coverageId", c.CoverageID, false)
	e.dateTime("authoredOn", c.AuthoredOn, false)
}

func (d *Diagnosis) validate(e *errs) {
	e.header(d.Header, KindDiagnosis)
	e.id("patientId", d.PatientID, true)
	e.icd10("icd10", d.ICD10, true)
	e.enum("clinicalStatus", d.ClinicalStatus, true, clinicalStatuses)
	e.dateOrDateTime("onset", d.Onset)
	e.dateOrDateTime("recordedDate", d.RecordedDate)
	e.id("recorderId", d.RecorderID, false)
}

func (s *Session) validate(e *errs) {
	e.header(s.Header, KindSession)
	e.id("patientId", s.PatientID, true)
	e.id("courseId", s.CourseID, true)
	e.id("locationId", s.LocationID, true)
	e.id("clinicianId", s.ClinicianID, true)
	e.enum("status", s.Status, true, sessionStatuses)
	e.dateTime("scheduledStart", s.ScheduledStart, true)
	start, sok := e.dateTime("actualStart", s.ActualStart, false)
	end, eok := e.dateTime("actualEnd", s.ActualEnd, false)
	dis, dok := e.dateTime("dischargeTime", s.DischargeTime, false)
	e.notBefore("actualEnd", start, end, sok, eok, "actualStart")
	e.notBefore("dischargeTime", start, dis, sok, dok, "actualStart")
	if s.ActualStart == "" {
		if s.ActualEnd != "" {
			e.add("actualEnd", "requires actualStart")
		}
		if s.DischargeTime != "" {
			e.add("dischargeTime", "requires actualStart")
		}
	}
	e.floatRange("weightKg", s.WeightKg, minWeightKg, maxWeightKg)
	e.dateTime("weightTime", s.WeightTime, false)
	if s.WeightTime != "" && s.WeightKg == nil {
		e.add("weightTime", "requires weightKg")
	}
	if s.SessionNumber < 0 {
		e.add("sessionNumber", "must be 1 or more")
	}
	switch s.Status {
	case SessionCompleted, SessionStoppedEarly:
		if s.ActualStart == "" {
			e.add("actualStart", "is required for a "+s.Status+" session")
		}
	case SessionCancelled, SessionNoShow, SessionScheduled:
		if len(s.Administrations) > 0 {
			e.add("administrations", "must be empty for a "+s.Status+" session")
		}
	}
	for i := range s.Administrations {
		s.Administrations[i].validate(e, index("administrations", i), s.WeightKg)
	}
	for i := range s.Vitals {
		s.Vitals[i].validate(e, index("vitals", i))
	}
	for i := range s.Assessments {
		s.Assessments[i].validate(e, index("assessments", i))
	}
	for i := range s.AdverseEffects {
		s.AdverseEffects[i].validate(e, index("adverseEffects", i))
	}
	if r := s.REMS; r != nil {
		if r.MinutesToReady < 0 || r.MinutesToReady > 1440 {
			e.add("rems.minutesToReady", "must be between 0 and 1440")
		}
		if r.TotalMonitoringMinutes < 0 || r.TotalMonitoringMinutes > 1440 {
			e.add("rems.totalMonitoringMinutes", "must be between 0 and 1440")
		}
		for i, m := range r.ConcomitantMedications {
			e.required(index("rems.concomitantMedications", i), m)
		}
	}
}

func (a *Administration) validate(e *errs, path string, weightKg *float64) {
	e.enum(field(path, "drug"), a.Drug, true, drugs)
	e.enum(field(path, "route"), a.Route, true, routes)
	if a.Drug == "esketamine" && a.Route != "" && a.Route != "intranasal" {
		e.add(field(path, "route"), "must be intranasal for esketamine")
	}
	dosePath := field(path, "doseMg")
	if a.DoseMg == 0 {
		e.add(dosePath, "is required")
	} else {
		e.positive(dosePath, &a.DoseMg, maxDoseMg)
	}
	if a.MgPerKg != nil {
		e.positive(field(path, "mgPerKg"), a.MgPerKg, maxMgPerKg)
		if weightKg == nil {
			e.add(field(path, "mgPerKg"), "requires the session's weightKg")
		} else if *a.MgPerKg > 0 && a.DoseMg > 0 {
			want := *a.MgPerKg * *weightKg
			if math.Abs(want-a.DoseMg) > doseTolerance*want {
				e.add(dosePath, "must agree with mgPerKg times the session's weightKg within 5 %")
			}
		}
	}
	start, sok := e.dateTime(field(path, "start"), a.Start, true)
	end, eok := e.dateTime(field(path, "end"), a.End, false)
	e.notBefore(field(path, "end"), start, end, sok, eok, "start")
	e.positive(field(path, "rateMgPerHour"), a.RateMgPerHour, maxDoseMg*60)
	if a.NDC != "" && !ndcPattern.MatchString(a.NDC) {
		e.add(field(path, "ndc"), "must be an NDC in 4-4-2, 5-3-2, 5-4-1, 5-4-2 or 11-digit form")
	}
	devPath := field(path, "devices")
	switch {
	case a.Devices < 0:
		e.add(devPath, "must be 1 or more")
	case a.Drug == "esketamine" && a.Devices == 0:
		e.add(devPath, "is required for esketamine")
	case a.Drug == "esketamine" && float64(a.Devices)*esketamineMgPerDevice != a.DoseMg:
		e.add(devPath, "times 28 mg must equal doseMg")
	case a.Drug != "esketamine" && a.Devices != 0:
		e.add(devPath, "applies to esketamine only")
	}
	e.id(field(path, "performerId"), a.PerformerID, false)
}

func (v *Vitals) validate(e *errs, path string) {
	e.dateTime(field(path, "time"), v.Time, true)
	if v.Systolic == nil && v.Diastolic == nil && v.HeartRate == nil && v.RespRate == nil && v.SpO2 == nil && v.TempC == nil {
		e.add(path, "must have at least one value")
	}
	e.intRange(field(path, "systolic"), v.Systolic, minSystolic, maxSystolic)
	e.intRange(field(path, "diastolic"), v.Diastolic, minDiastolic, maxDiastolic)
	switch {
	case v.Systolic != nil && v.Diastolic == nil:
		e.add(field(path, "diastolic"), "is required with systolic")
	case v.Systolic == nil && v.Diastolic != nil:
		e.add(field(path, "systolic"), "is required with diastolic")
	case v.Systolic != nil && *v.Diastolic >= *v.Systolic:
		e.add(field(path, "diastolic"), "must be below systolic")
	}
	e.intRange(field(path, "heartRate"), v.HeartRate, minHR, maxHR)
	e.intRange(field(path, "respRate"), v.RespRate, minRR, maxRR)
	e.intRange(field(path, "spo2"), v.SpO2, minSpO2, maxSpO2)
	e.floatRange(field(path, "tempC"), v.TempC, minTempC, maxTempC)
}

func (a *Assessment) validate(e *errs, path string) {
	e.enum(field(path, "instrument"), a.Instrument, true, instruments)
	e.dateTime(field(path, "time"), a.Time, true)
	e.enum(field(path, "timing"), a.Timing, false, timings)
	if a.Difficulty != nil && a.Instrument != InstrumentPHQ9 {
		e.add(field(path, "difficulty"), "applies to phq9 only")
	}
	e.intRange(field(path, "difficulty"), a.Difficulty, 0, 3)
	if a.Instrument == InstrumentCSSRS {
		e.enum(field(path, "riskLevel"), a.RiskLevel, true, riskLevels)
		if len(a.Items) > 0 {
			e.add(field(path, "items"), "does not apply to cssrs")
		}
		if a.Total != nil {
			e.add(field(path, "total"), "does not apply to cssrs")
		}
		return
	}
	if a.RiskLevel != "" {
		e.add(field(path, "riskLevel"), "applies to cssrs only")
	}
	sc, ok := scales[a.Instrument]
	if !ok {
		return
	}
	itemsPath, totalPath := field(path, "items"), field(path, "total")
	if a.Total == nil && len(a.Items) == 0 {
		e.add(totalPath, "is required")
	}
	e.intRange(totalPath, a.Total, 0, sc.totalMax)
	if len(a.Items) == 0 {
		return
	}
	if sc.items == 0 {
		e.add(itemsPath, "does not apply to "+a.Instrument)
		return
	}
	if len(a.Items) != sc.items {
		e.add(itemsPath, fmt.Sprintf("must have %d items", sc.items))
		return
	}
	sum, itemsOK := 0, true
	for i, v := range a.Items {
		if v < 0 || v > sc.itemMax {
			e.add(index(itemsPath, i), fmt.Sprintf("must be between 0 and %d", sc.itemMax))
			itemsOK = false
		}
		sum += v
	}
	if itemsOK && a.Total != nil && *a.Total != sum {
		e.add(totalPath, "must equal the sum of items")
	}
}

func (a *AdverseEffect) validate(e *errs, path string) {
	e.enum(field(path, "effect"), a.Effect, true, effects)
	e.enum(field(path, "severity"), a.Severity, true, severities)
	e.enum(field(path, "action"), a.Action, true, actions)
	on, ook := e.dateTime(field(path, "onset"), a.Onset, true)
	res, rok := e.dateTime(field(path, "resolved"), a.Resolved, false)
	e.notBefore(field(path, "resolved"), on, res, ook, rok, "onset")
	if a.Effect == "other" && a.Text == "" {
		e.add(field(path, "text"), "is required for effect other")
	}
	e.enum(field(path, "causality"), a.Causality, false, causalities)
}

func (c *Coverage) validate(e *errs) {
	e.header(c.Header, KindCoverage)
	e.id("patientId", c.PatientID, true)
	e.id("payerId", c.PayerID, true)
	e.required("memberId", c.MemberID)
	e.enum("status", c.Status, true, coverageStatuses)
	e.enum("relationship", c.Relationship, false, relationships)
	e.enum("payerType", c.PayerType, false, payerTypes)
	s, sok := e.date("start", c.Start, false)
	end, eok := e.date("end", c.End, false)
	e.notBefore("end", s, end, sok, eok, "start")
}

func (c *Consent) validate(e *errs) {
	e.header(c.Header, KindConsent)
	e.id("patientId", c.PatientID, true)
	e.enum("status", c.Status, true, consentStatuses)
	e.enum("decision", c.Decision, true, decisions)
	e.dateTime("dateTime", c.DateTime, true)
	if len(c.RecipientIDs) == 0 && c.Decision != "deny" {
		// A deny naming no one applies to every recipient
		// (docs/design/security.md PRIV-20); a permit must name whom.
		e.add("recipientIds", "is required")
	}
	for i, id := range c.RecipientIDs {
		e.id(index("recipientIds", i), id, true)
	}
	if len(c.Purposes) == 0 {
		e.add("purposes", "is required")
	}
	for i, p := range c.Purposes {
		e.enum(index("purposes", i), p, true, purposes)
	}
	for i, d := range c.DataClasses {
		e.enum(index("dataClasses", i), d, true, dataClasses)
	}
	s, sok := e.date("start", c.Start, false)
	end, eok := e.date("end", c.End, false)
	e.notBefore("end", s, end, sok, eok, "start")
}

func (t *AntidepressantTrial) validate(e *errs) {
	e.header(t.Header, KindAntidepressantTrial)
	e.id("patientId", t.PatientID, true)
	e.required("drug", t.Drug)
	if t.RxNorm != "" && !rxnormPattern.MatchString(t.RxNorm) {
		e.add("rxnorm", "must be an RxNorm code (digits)")
	}
	e.enum("class", t.Class, true, trialClasses)
	e.positive("doseMgPerDay", t.DoseMgDay, maxDoseMg*5)
	s, sok := e.date("start", t.Start, true)
	end, eok := e.date("end", t.End, false)
	e.notBefore("end", s, end, sok, eok, "start")
	e.enum("outcome", t.Outcome, true, trialOutcomes)
	if t.Outcome == "ongoing" && t.End != "" {
		e.add("end", "must be empty for an ongoing trial")
	}
	if t.AdequateTrial && sok && eok && !end.Before(s) && end.Sub(s) < 6*7*24*time.Hour {
		e.add("adequateTrial", "requires at least 6 weeks between start and end")
	}
	e.floatRange("improvementPercent", t.ImprovementPercent, -100, 100)
	e.id("diagnosisId", t.DiagnosisID, false)
}

// paOutcomes are the outcomes of a prior-authorization response.
var paOutcomes = []string{"approved", "partial", "denied", "pended"}

func (r *PriorAuthResponse) validate(e *errs) {
	e.header(r.Header, KindPriorAuthResponse)
	e.id("patientId", r.PatientID, true)
	e.id("courseId", r.CourseID, true)
	e.id("payerId", r.PayerID, true)
	e.enum("outcome", r.Outcome, true, paOutcomes)
	e.dateTime("created", r.Created, true)
	s, sok := e.date("start", r.Start, false)
	end, eok := e.date("end", r.End, false)
	e.notBefore("end", s, end, sok, eok, "start")
	e.intRange("requestedSessions", r.RequestedSessions, 1, 1000)
	e.intRange("approvedSessions", r.ApprovedSessions, 0, 1000)
	switch r.Outcome {
	case "approved", "partial":
		e.required("preAuthRef", r.PreAuthRef)
		e.required("start", r.Start)
		e.required("end", r.End)
		if r.ApprovedSessions == nil || *r.ApprovedSessions < 1 {
			e.add("approvedSessions", "is required (at least 1) for an approval")
		}
	case "denied", "pended":
		if r.ApprovedSessions != nil && *r.ApprovedSessions != 0 {
			e.add("approvedSessions", "must be empty or 0 unless approved")
		}
	}
	if len(r.PreAuthRef) > 64 {
		e.add("preAuthRef", "must be at most 64 characters")
	}
}

func (r *Referral) validate(e *errs) {
	e.header(r.Header, KindReferral)
	e.id("patientId", r.PatientID, true)
	e.id("partnerId", r.PartnerID, true)
	e.id("requesterId", r.RequesterID, false)
	e.icd10("reason", r.Reason, true)
	e.required("service", r.Service)
	e.dateTime("authoredOn", r.AuthoredOn, true)
	for i, id := range r.DiagnosisIDs {
		e.id(index("diagnosisIds", i), id, true)
	}
	e.id("courseId", r.CourseID, false)
	for i, id := range r.TrialIDs {
		e.id(index("trialIds", i), id, true)
	}
	e.id("coverageId", r.CoverageID, false)
}
