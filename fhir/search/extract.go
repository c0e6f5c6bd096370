package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/store"
)

// Implicit code systems of the code-typed elements indexed as tokens
// (search.html#token: for code, "the system is defined in the value set").
const (
	sysGender        = "http://hl7.org/fhir/administrative-gender"
	sysObsStatus     = "http://hl7.org/fhir/observation-status"
	sysEncStatus     = "http://hl7.org/fhir/encounter-status"
	sysMedAdmStatus  = "http://terminology.hl7.org/CodeSystem/medication-admin-status"
	sysMedReqStatus  = "http://hl7.org/fhir/CodeSystem/medicationrequest-status"
	sysMedReqIntent  = "http://hl7.org/fhir/CodeSystem/medicationrequest-intent"
	sysMedStmtStatus = "http://hl7.org/fhir/CodeSystem/medication-statement-status"
	sysMedStatus     = "http://hl7.org/fhir/CodeSystem/medication-status"
	sysRequestStatus = "http://hl7.org/fhir/request-status"
	sysRequestIntent = "http://hl7.org/fhir/request-intent"
	sysPublication   = "http://hl7.org/fhir/publication-status"
	sysFMStatus      = "http://hl7.org/fhir/fm-status"
	sysConsentState  = "http://hl7.org/fhir/consent-state-codes"
	sysAEActuality   = "http://hl7.org/fhir/adverse-event-actuality"
	sysSDKind        = "http://hl7.org/fhir/structure-definition-kind"
	sysDerivation    = "http://hl7.org/fhir/type-derivation-rule"
	sysResourceTypes = "http://hl7.org/fhir/resource-types"
	sysSearchParam   = "http://hl7.org/fhir/search-param-type"
	sysOperationKind = "http://hl7.org/fhir/operation-kind"
)

// ExtractError is a resource value that cannot be indexed. Path is the FHIR
// element path; no resource values are included.
type ExtractError struct {
	Path   string
	Reason string
}

func (e *ExtractError) Error() string { return "search: index " + e.Path + ": " + e.Reason }

// Extract returns the index rows of a resource given as a samply r4 struct
// (pointer or value), one row per searchable value of each parameter in
// Params (not _id or _lastUpdated, which the store answers from its own
// columns), _security included. It reads the typed struct directly;
// nothing is parsed from JSON.
func Extract(resource any) ([]store.IndexRow, error) {
	return extractTyped(resource)
}

// addSecurity adds the _security rows of resource (a samply r4 struct
// whose type e indexes) to e's rows: every type has meta, so every type has
// them, read through reflection rather than per type. A row already present
// is not added again. It runs on the emitter of the type-specific rows, so
// that the rows are collected and copied out once (docs/design/security.md
// PERF-IN-4); a security coding the type cannot index is skipped without
// failing the extraction, as before.
func addSecurity(e *emitter, resource any) {
	v := reflect.Indirect(reflect.ValueOf(resource))
	if v.Kind() != reflect.Struct {
		return
	}
	f := v.FieldByName("Meta")
	if !f.IsValid() {
		return
	}
	meta, ok := f.Interface().(*r4.Meta)
	if !ok || meta == nil || len(meta.Security) == 0 {
		return
	}
	err := e.err
	for i := range meta.Security {
		e.coding(paramSecurity, &meta.Security[i])
	}
	e.err = err
}

// extractTyped returns the rows of resource's type-specific parameters.
func extractTyped(resource any) ([]store.IndexRow, error) {
	switch r := resource.(type) {
	case *r4.Patient:
		return run("Patient", r == nil, r, func(e *emitter) { extractPatient(e, r) })
	case r4.Patient:
		return Extract(&r)
	case *r4.Practitioner:
		return run("Practitioner", r == nil, r, func(e *emitter) { extractPractitioner(e, r) })
	case r4.Practitioner:
		return Extract(&r)
	case *r4.Organization:
		return run("Organization", r == nil, r, func(e *emitter) { extractOrganization(e, r) })
	case r4.Organization:
		return Extract(&r)
	case *r4.Location:
		return run("Location", r == nil, r, func(e *emitter) { extractLocation(e, r) })
	case r4.Location:
		return Extract(&r)
	case *r4.Observation:
		return run("Observation", r == nil, r, func(e *emitter) { extractObservation(e, r) })
	case r4.Observation:
		return Extract(&r)
	case *r4.Encounter:
		return run("Encounter", r == nil, r, func(e *emitter) { extractEncounter(e, r) })
	case r4.Encounter:
		return Extract(&r)
	case *r4.Condition:
		return run("Condition", r == nil, r, func(e *emitter) { extractCondition(e, r) })
	case r4.Condition:
		return Extract(&r)
	case *r4.MedicationAdministration:
		return run("MedicationAdministration", r == nil, r, func(e *emitter) { extractMedicationAdministration(e, r) })
	case r4.MedicationAdministration:
		return Extract(&r)
	case *r4.MedicationRequest:
		return run("MedicationRequest", r == nil, r, func(e *emitter) { extractMedicationRequest(e, r) })
	case r4.MedicationRequest:
		return Extract(&r)
	case *r4.ClaimResponse:
		return run("ClaimResponse", r == nil, r, func(e *emitter) { extractClaimResponse(e, r) })
	case r4.ClaimResponse:
		return Extract(&r)
	case *r4.MedicationStatement:
		return run("MedicationStatement", r == nil, r, func(e *emitter) { extractMedicationStatement(e, r) })
	case r4.MedicationStatement:
		return Extract(&r)
	case *r4.CarePlan:
		return run("CarePlan", r == nil, r, func(e *emitter) { extractCarePlan(e, r) })
	case r4.CarePlan:
		return Extract(&r)
	case *r4.PlanDefinition:
		return run("PlanDefinition", r == nil, r, func(e *emitter) { extractPlanDefinition(e, r) })
	case r4.PlanDefinition:
		return Extract(&r)
	case *r4.AdverseEvent:
		return run("AdverseEvent", r == nil, r, func(e *emitter) { extractAdverseEvent(e, r) })
	case r4.AdverseEvent:
		return Extract(&r)
	case *r4.Coverage:
		return run("Coverage", r == nil, r, func(e *emitter) { extractCoverage(e, r) })
	case r4.Coverage:
		return Extract(&r)
	case *r4.Consent:
		return run("Consent", r == nil, r, func(e *emitter) { extractConsent(e, r) })
	case r4.Consent:
		return Extract(&r)
	case *r4.Provenance:
		return run("Provenance", r == nil, r, func(e *emitter) { extractProvenance(e, r) })
	case r4.Provenance:
		return Extract(&r)
	case *r4.Medication:
		return run("Medication", r == nil, r, func(e *emitter) { extractMedication(e, r) })
	case r4.Medication:
		return Extract(&r)
	case *r4.CodeSystem:
		return run("CodeSystem", r == nil, r, func(e *emitter) { extractCodeSystem(e, r) })
	case r4.CodeSystem:
		return Extract(&r)
	case *r4.ValueSet:
		return run("ValueSet", r == nil, r, func(e *emitter) { extractValueSet(e, r) })
	case r4.ValueSet:
		return Extract(&r)
	case *r4.StructureDefinition:
		return run("StructureDefinition", r == nil, r, func(e *emitter) { extractStructureDefinition(e, r) })
	case r4.StructureDefinition:
		return Extract(&r)
	case *r4.ImplementationGuide:
		return run("ImplementationGuide", r == nil, r, func(e *emitter) { extractImplementationGuide(e, r) })
	case r4.ImplementationGuide:
		return Extract(&r)
	case *r4.SearchParameter:
		return run("SearchParameter", r == nil, r, func(e *emitter) { extractSearchParameter(e, r) })
	case r4.SearchParameter:
		return Extract(&r)
	case *r4.OperationDefinition:
		return run("OperationDefinition", r == nil, r, func(e *emitter) { extractOperationDefinition(e, r) })
	case r4.OperationDefinition:
		return Extract(&r)
	}
	if rows, ok, err := extractReferral(resource); ok {
		return rows, err
	}
	return nil, fmt.Errorf("search: index: unsupported resource type %T", resource)
}

// ExtractJSON decodes a stored resource body of the given type with the
// samply Unmarshal<Type> function and returns its index rows (for reindexing).
func ExtractJSON(resourceType string, body []byte) ([]store.IndexRow, error) {
	var (
		v   any
		err error
	)
	switch resourceType {
	case "Patient":
		v, err = decode(r4.UnmarshalPatient, body)
	case "Practitioner":
		v, err = decode(r4.UnmarshalPractitioner, body)
	case "Organization":
		v, err = decode(r4.UnmarshalOrganization, body)
	case "Location":
		v, err = decode(r4.UnmarshalLocation, body)
	case "Observation":
		v, err = decode(r4.UnmarshalObservation, body)
	case "Encounter":
		v, err = decode(r4.UnmarshalEncounter, body)
	case "Condition":
		v, err = decode(r4.UnmarshalCondition, body)
	case "MedicationAdministration":
		v, err = decode(r4.UnmarshalMedicationAdministration, body)
	case "MedicationRequest":
		v, err = decode(r4.UnmarshalMedicationRequest, body)
	case "MedicationStatement":
		v, err = decode(r4.UnmarshalMedicationStatement, body)
	case "ClaimResponse":
		v, err = decode(r4.UnmarshalClaimResponse, body)
	case "CarePlan":
		v, err = decode(r4.UnmarshalCarePlan, body)
	case "PlanDefinition":
		v, err = decode(r4.UnmarshalPlanDefinition, body)
	case "AdverseEvent":
		v, err = decode(r4.UnmarshalAdverseEvent, body)
	case "Coverage":
		v, err = decode(r4.UnmarshalCoverage, body)
	case "Consent":
		v, err = decode(r4.UnmarshalConsent, body)
	case "Provenance":
		v, err = decode(r4.UnmarshalProvenance, body)
	case "Medication":
		v, err = decode(r4.UnmarshalMedication, body)
	case "CodeSystem":
		v, err = decode(r4.UnmarshalCodeSystem, body)
	case "ValueSet":
		v, err = decode(r4.UnmarshalValueSet, body)
	case "StructureDefinition":
		v, err = decode(r4.UnmarshalStructureDefinition, body)
	case "ImplementationGuide":
		v, err = decode(r4.UnmarshalImplementationGuide, body)
	case "SearchParameter":
		v, err = decode(r4.UnmarshalSearchParameter, body)
	case "OperationDefinition":
		v, err = decode(r4.UnmarshalOperationDefinition, body)
	default:
		var ok bool
		if v, ok, err = decodeReferral(resourceType, body); !ok {
			return nil, fmt.Errorf("search: index: unsupported resource type %q", resourceType)
		}
	}
	if err != nil {
		// The samply/encoding/json error may quote values from the body; keep
		// only its kind.
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("search: index %s: invalid JSON at offset %d", resourceType, syn.Offset)
		}
		return nil, fmt.Errorf("search: index %s: body does not decode as %s", resourceType, resourceType)
	}
	return Extract(v)
}

func decode[T any](unmarshal func([]byte) (T, error), body []byte) (any, error) {
	v, err := unmarshal(body)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// emitter collects the rows of one resource and checks each against the
// registry, so a row for an unregistered parameter or of the wrong kind is a
// programming error that tests catch.
type emitter struct {
	typ    string
	params map[string]Param
	rows   []store.IndexRow
	err    error
}

// run collects the rows of resource (of type typ): those fn adds, then its
// _security rows.
func run(typ string, isNil bool, resource any, fn func(*emitter)) ([]store.IndexRow, error) {
	if isNil {
		return nil, fmt.Errorf("search: index: nil %s", typ)
	}
	e := emitterPool.Get().(*emitter)
	e.typ, e.params, e.err = typ, byName[typ], nil
	fn(e)
	err := e.err
	var rows []store.IndexRow
	if err == nil {
		addSecurity(e, resource)
		// Exactly as many as there are: the rows of a whole ingest chunk
		// wait in memory for the store write, and a growing slice's spare
		// capacity was a third of their bytes (docs/design/security.md
		// PERF-IN-1).
		rows = slices.Clone(e.rows)
	}
	putEmitter(e)
	return rows, err
}

// putEmitter returns e to emitterPool, its rows dropped.
func putEmitter(e *emitter) {
	clear(e.rows)
	e.rows, e.typ, e.params, e.err = e.rows[:0], "", nil, nil
	emitterPool.Put(e)
}

// emitterPool holds emitters with their row buffers for reuse.
var emitterPool = sync.Pool{New: func() any { return &emitter{rows: make([]store.IndexRow, 0, 32)} }}

func (e *emitter) fail(path, reason string) {
	if e.err == nil {
		e.err = &ExtractError{Path: path, Reason: reason}
	}
}

func (e *emitter) add(row store.IndexRow) {
	p, ok := e.params[row.Param]
	if !ok || p.Type != row.Kind {
		e.fail(e.typ+"."+row.Param, "row for an unregistered parameter or of the wrong kind")
		return
	}
	for _, r := range e.rows {
		if r == row {
			return
		}
	}
	e.rows = append(e.rows, row)
}

// token adds a token row (search.html#token).
func (e *emitter) token(name, system, code string) {
	if code == "" {
		return
	}
	e.add(store.IndexRow{Param: name, Kind: store.KindToken, System: system, Code: code})
}

// code adds a code-typed element with its implicit system.
func (e *emitter) code(name, system, code string) { e.token(name, system, code) }

func (e *emitter) coding(name string, c *r4.Coding) {
	if c == nil || c.Code == nil {
		return
	}
	e.token(name, deref(c.System), *c.Code)
}

// concept adds every coding of a CodeableConcept ("matches on any of the
// codings", search.html#token).
func (e *emitter) concept(name string, cc *r4.CodeableConcept) {
	if cc == nil {
		return
	}
	for i := range cc.Coding {
		e.coding(name, &cc.Coding[i])
	}
}

func (e *emitter) concepts(name string, ccs []r4.CodeableConcept) {
	for i := range ccs {
		e.concept(name, &ccs[i])
	}
}

func (e *emitter) identifier(name string, id *r4.Identifier) {
	if id == nil || id.Value == nil {
		return
	}
	e.token(name, deref(id.System), *id.Value)
}

func (e *emitter) identifiers(name string, ids []r4.Identifier) {
	for i := range ids {
		e.identifier(name, &ids[i])
	}
}

// telecom adds ContactPoint values; search.html#token gives ContactPoint no
// system, the code is the value.
func (e *emitter) telecom(name string, cps []r4.ContactPoint) {
	for _, cp := range cps {
		if cp.Value != nil {
			e.token(name, "", *cp.Value)
		}
	}
}

// str adds a normalized string row (search.html#string).
func (e *emitter) str(name string, s *string) {
	if s == nil {
		return
	}
	if v := store.NormalizeString(*s); v != "" {
		e.add(store.IndexRow{Param: name, Kind: store.KindString, Value: v})
	}
}

func (e *emitter) strs(name string, ss []string) {
	for i := range ss {
		e.str(name, &ss[i])
	}
}

// humanNames adds every part of every name (search.html#string: HumanName
// searches "text, family, given, prefix, suffix").
func (e *emitter) humanNames(name string, hns []r4.HumanName) {
	for _, hn := range hns {
		e.str(name, hn.Text)
		e.str(name, hn.Family)
		e.strs(name, hn.Given)
		e.strs(name, hn.Prefix)
		e.strs(name, hn.Suffix)
	}
}

// dateTime adds a date/dateTime/instant element as the range it covers.
func (e *emitter) dateTime(name, path string, s *string) {
	if s == nil || *s == "" {
		return
	}
	lo, hi, err := dateRange(*s)
	if err != nil {
		e.fail(path, err.Error())
		return
	}
	e.add(store.IndexRow{Param: name, Kind: store.KindDate, Lo: lo, Hi: hi})
}

// period adds a Period from the start of its start to the end of its end; a
// missing side is open (search.html#date).
func (e *emitter) period(name, path string, p *r4.Period) {
	if p == nil || (p.Start == nil && p.End == nil) {
		return
	}
	lo, hi := openLo, openHi
	var err error
	if p.Start != nil {
		if lo, _, err = dateRange(*p.Start); err != nil {
			e.fail(path+".start", err.Error())
			return
		}
	}
	if p.End != nil {
		if _, hi, err = dateRange(*p.End); err != nil {
			e.fail(path+".end", err.Error())
			return
		}
	}
	e.add(store.IndexRow{Param: name, Kind: store.KindDate, Lo: lo, Hi: hi})
}

// reference adds a literal reference as "Type/id" (a relative reference as
// stored, without a /_history/version suffix). Absolute URLs are indexed as
// written; contained ("#id"), urn: and logical (identifier-only) references
// are not indexed.
func (e *emitter) reference(name string, r *r4.Reference) {
	if v := refValue(r); v != "" {
		e.add(store.IndexRow{Param: name, Kind: store.KindReference, Value: v})
	}
}

func (e *emitter) references(name string, rs []r4.Reference) {
	for i := range rs {
		e.reference(name, &rs[i])
	}
}

// patient adds a reference only when it points at a Patient (the
// "subject.where(resolve() is Patient)" parameters).
func (e *emitter) patient(name string, r *r4.Reference) {
	if v := refValue(r); strings.HasPrefix(v, "Patient/") {
		e.add(store.IndexRow{Param: name, Kind: store.KindReference, Value: v})
	}
}

// canonical adds a canonical URL without its |version.
func (e *emitter) canonical(name, c string) {
	if i := strings.IndexByte(c, '|'); i >= 0 {
		c = c[:i]
	}
	if c != "" {
		e.add(store.IndexRow{Param: name, Kind: store.KindReference, Value: c})
	}
}

// quantity adds a Quantity: Num the value, System/Code the unit (Code falls
// back to the human unit when no coded unit is given).
func (e *emitter) quantity(name, path string, q *r4.Quantity) {
	if q == nil || q.Value == nil {
		return
	}
	f, err := strconv.ParseFloat(string(*q.Value), 64)
	if err != nil {
		e.fail(path+".value", "not a decimal")
		return
	}
	code := deref(q.Code)
	if code == "" {
		code = deref(q.Unit)
	}
	e.add(store.IndexRow{Param: name, Kind: store.KindQuantity, System: deref(q.System), Code: code, Num: f})
}

func refValue(r *r4.Reference) string {
	if r == nil || r.Reference == nil {
		return ""
	}
	v := *r.Reference
	if v == "" || v[0] == '#' || strings.HasPrefix(v, "urn:") {
		return ""
	}
	if i := strings.Index(v, "/_history/"); i >= 0 {
		v = v[:i]
	}
	if strings.Contains(v, "://") {
		return v
	}
	typ, id, ok := strings.Cut(v, "/")
	if !ok || !validType(typ) || !validID(id) {
		return ""
	}
	return v
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// present reports whether a required-choice CodeableConcept alternative that
// samply models as a plain value was set (the samply R4 structs marshal every
// alternative of a required choice[x] element, so an unset one is a zero
// value).
func present(cc *r4.CodeableConcept) bool { return len(cc.Coding) > 0 || cc.Text != nil }

func extractPatient(e *emitter, r *r4.Patient) {
	e.identifiers("identifier", r.Identifier)
	e.humanNames("name", r.Name)
	for _, n := range r.Name {
		e.str("family", n.Family)
		e.strs("given", n.Given)
	}
	e.dateTime("birthdate", "Patient.birthDate", r.BirthDate)
	if r.Gender != nil {
		e.code("gender", sysGender, r.Gender.Code())
	}
	e.telecom("telecom", r.Telecom)
	e.reference("organization", r.ManagingOrganization)
}

func extractPractitioner(e *emitter, r *r4.Practitioner) {
	e.identifiers("identifier", r.Identifier)
	e.humanNames("name", r.Name)
}

func extractOrganization(e *emitter, r *r4.Organization) {
	e.identifiers("identifier", r.Identifier)
	e.str("name", r.Name)
	e.strs("name", r.Alias)
	e.concepts("type", r.Type)
}

func extractLocation(e *emitter, r *r4.Location) {
	e.str("name", r.Name)
	e.strs("name", r.Alias)
	e.reference("organization", r.ManagingOrganization)
	if r.Address != nil {
		e.str("address-city", r.Address.City)
	}
}

func extractObservation(e *emitter, r *r4.Observation) {
	e.patient("patient", r.Subject)
	e.reference("subject", r.Subject)
	e.concept("code", &r.Code)
	e.concepts("category", r.Category)
	e.dateTime("date", "Observation.effectiveDateTime", r.EffectiveDateTime)
	e.period("date", "Observation.effectivePeriod", r.EffectivePeriod)
	e.dateTime("date", "Observation.effectiveInstant", r.EffectiveInstant)
	if r.EffectiveTiming != nil {
		for i := range r.EffectiveTiming.Event {
			e.dateTime("date", "Observation.effectiveTiming.event", &r.EffectiveTiming.Event[i])
		}
	}
	e.code("status", sysObsStatus, r.Status.Code())
	e.reference("encounter", r.Encounter)
	e.references("performer", r.Performer)
	e.quantity("value-quantity", "Observation.valueQuantity", r.ValueQuantity)
}

func extractEncounter(e *emitter, r *r4.Encounter) {
	e.patient("patient", r.Subject)
	e.reference("subject", r.Subject)
	e.period("date", "Encounter.period", r.Period)
	e.code("status", sysEncStatus, r.Status.Code())
	e.coding("class", &r.Class)
	e.concepts("type", r.Type)
	for i := range r.Location {
		e.reference("location", &r.Location[i].Location)
	}
	for _, p := range r.Participant {
		if v := refValue(p.Individual); strings.HasPrefix(v, "Practitioner/") {
			e.add(store.IndexRow{Param: "practitioner", Kind: store.KindReference, Value: v})
		}
	}
	e.references("based-on", r.BasedOn)
	e.identifiers("identifier", r.Identifier)
}

func extractCondition(e *emitter, r *r4.Condition) {
	e.patient("patient", &r.Subject)
	e.reference("subject", &r.Subject)
	e.concept("code", r.Code)
	e.concepts("category", r.Category)
	e.concept("clinical-status", r.ClinicalStatus)
	e.dateTime("onset-date", "Condition.onsetDateTime", r.OnsetDateTime)
	e.period("onset-date", "Condition.onsetPeriod", r.OnsetPeriod)
	e.dateTime("recorded-date", "Condition.recordedDate", r.RecordedDate)
	e.reference("encounter", r.Encounter)
}

func extractMedicationAdministration(e *emitter, r *r4.MedicationAdministration) {
	e.patient("patient", &r.Subject)
	e.reference("subject", &r.Subject)
	if present(&r.MedicationCodeableConcept) {
		e.concept("code", &r.MedicationCodeableConcept)
	}
	e.reference("medication", &r.MedicationReference)
	e.reference("context", r.Context)
	if r.EffectiveDateTime != "" {
		e.dateTime("effective-time", "MedicationAdministration.effectiveDateTime", &r.EffectiveDateTime)
	}
	e.period("effective-time", "MedicationAdministration.effectivePeriod", &r.EffectivePeriod)
	e.code("status", sysMedAdmStatus, r.Status)
	e.reference("request", r.Request)
	for i := range r.Performer {
		e.reference("performer", &r.Performer[i].Actor)
	}
}

func extractMedicationRequest(e *emitter, r *r4.MedicationRequest) {
	e.patient("patient", &r.Subject)
	e.reference("subject", &r.Subject)
	e.code("status", sysMedReqStatus, r.Status)
	e.code("intent", sysMedReqIntent, r.Intent)
	e.dateTime("authoredon", "MedicationRequest.authoredOn", r.AuthoredOn)
	e.reference("requester", r.Requester)
	if present(&r.MedicationCodeableConcept) {
		e.concept("code", &r.MedicationCodeableConcept)
	}
	e.reference("medication", &r.MedicationReference)
	e.reference("encounter", r.Encounter)
}

func extractMedicationStatement(e *emitter, r *r4.MedicationStatement) {
	e.patient("patient", &r.Subject)
	e.reference("subject", &r.Subject)
	e.code("status", sysMedStmtStatus, r.Status)
	e.dateTime("effective", "MedicationStatement.effectiveDateTime", r.EffectiveDateTime)
	e.period("effective", "MedicationStatement.effectivePeriod", r.EffectivePeriod)
	if present(&r.MedicationCodeableConcept) {
		e.concept("code", &r.MedicationCodeableConcept)
	}
	e.reference("medication", &r.MedicationReference)
}

func extractCarePlan(e *emitter, r *r4.CarePlan) {
	e.patient("patient", &r.Subject)
	e.reference("subject", &r.Subject)
	e.code("status", sysRequestStatus, r.Status.Code())
	e.concepts("category", r.Category)
	e.period("date", "CarePlan.period", r.Period)
	e.code("intent", sysRequestIntent, r.Intent.Code())
	for _, c := range r.InstantiatesCanonical {
		e.canonical("instantiates-canonical", c)
	}
}

func extractPlanDefinition(e *emitter, r *r4.PlanDefinition) {
	if r.Url != nil {
		e.token("url", "", *r.Url)
	}
	e.str("name", r.Name)
	e.code("status", sysPublication, r.Status.Code())
	e.str("title", r.Title)
}

func extractAdverseEvent(e *emitter, r *r4.AdverseEvent) {
	e.code("actuality", sysAEActuality, r.Actuality.Code())
	e.concepts("category", r.Category)
	e.dateTime("date", "AdverseEvent.date", r.Date)
	e.concept("event", r.Event)
	e.reference("location", r.Location)
	e.reference("recorder", r.Recorder)
	e.references("resultingcondition", r.ResultingCondition)
	e.concept("seriousness", r.Seriousness)
	e.concept("severity", r.Severity)
	e.references("study", r.Study)
	e.reference("subject", &r.Subject)
	for i := range r.SuspectEntity {
		e.reference("substance", &r.SuspectEntity[i].Instance)
	}
}

func extractCoverage(e *emitter, r *r4.Coverage) {
	e.patient("patient", &r.Beneficiary)
	e.reference("beneficiary", &r.Beneficiary)
	e.references("payor", r.Payor)
	e.code("status", sysFMStatus, r.Status.Code())
	e.identifiers("identifier", r.Identifier)
	e.reference("subscriber", r.Subscriber)
	e.concept("type", r.Type)
}

func extractClaimResponse(e *emitter, r *r4.ClaimResponse) {
	e.patient("patient", &r.Patient)
	e.identifiers("identifier", r.Identifier)
	e.code("status", sysFMStatus, r.Status.Code())
	e.code("outcome", "http://hl7.org/fhir/remittance-outcome", r.Outcome.Code())
	e.code("use", "http://hl7.org/fhir/claim-use", r.Use.Code())
	e.dateTime("created", "ClaimResponse.created", &r.Created)
	e.reference("insurer", &r.Insurer)
}

func extractConsent(e *emitter, r *r4.Consent) {
	e.patient("patient", r.Patient)
	e.code("status", sysConsentState, r.Status.Code())
	e.dateTime("date", "Consent.dateTime", r.DateTime)
	if p := r.Provision; p != nil {
		for i := range p.Actor {
			e.reference("actor", &p.Actor[i].Reference)
		}
		for i := range p.Purpose {
			e.coding("purpose", &p.Purpose[i])
		}
	}
	e.concept("scope", &r.Scope)
	e.concepts("category", r.Category)
}

func extractProvenance(e *emitter, r *r4.Provenance) {
	e.references("target", r.Target)
	for i := range r.Target {
		e.patient("patient", &r.Target[i])
	}
	if r.Recorded != "" {
		e.dateTime("recorded", "Provenance.recorded", &r.Recorded)
	}
	for i := range r.Agent {
		e.reference("agent", &r.Agent[i].Who)
	}
}

func extractMedication(e *emitter, r *r4.Medication) {
	e.concept("code", r.Code)
	if r.Batch != nil && r.Batch.LotNumber != nil {
		e.token("lot-number", "", *r.Batch.LotNumber)
	}
	if r.Status != nil {
		e.code("status", sysMedStatus, *r.Status)
	}
}

// canonicalResource adds the parameters every conformance resource shares
// (the conformance function of params.go): url as a uri (a token without
// system), name, status, version and title.
func (e *emitter) canonicalResource(url, name *string, status r4.PublicationStatus, version, title *string) {
	if url != nil {
		e.token("url", "", *url)
	}
	e.str("name", name)
	e.code("status", sysPublication, status.Code())
	if version != nil {
		e.token("version", "", *version)
	}
	e.str("title", title) // nil for SearchParameter, which has no title
}

func extractCodeSystem(e *emitter, r *r4.CodeSystem) {
	e.canonicalResource(r.Url, r.Name, r.Status, r.Version, r.Title)
}

func extractValueSet(e *emitter, r *r4.ValueSet) {
	e.canonicalResource(r.Url, r.Name, r.Status, r.Version, r.Title)
	if r.Compose != nil {
		for _, inc := range r.Compose.Include {
			if inc.System != nil {
				e.token("reference", "", *inc.System)
			}
		}
	}
}

func extractStructureDefinition(e *emitter, r *r4.StructureDefinition) {
	e.canonicalResource(&r.Url, &r.Name, r.Status, r.Version, r.Title)
	e.token("type", "", r.Type)
	e.code("kind", sysSDKind, r.Kind.Code())
	if r.Derivation != nil {
		e.code("derivation", sysDerivation, r.Derivation.Code())
	}
	if r.BaseDefinition != nil {
		e.canonical("base", *r.BaseDefinition)
	}
}

func extractImplementationGuide(e *emitter, r *r4.ImplementationGuide) {
	e.canonicalResource(&r.Url, &r.Name, r.Status, r.Version, r.Title)
	for _, d := range r.DependsOn {
		e.canonical("depends-on", d.Uri)
	}
}

func extractSearchParameter(e *emitter, r *r4.SearchParameter) {
	e.canonicalResource(&r.Url, &r.Name, r.Status, r.Version, nil)
	for _, b := range r.Base {
		e.code("base", sysResourceTypes, b.Code())
	}
	e.token("code", "", r.Code)
	e.code("type", sysSearchParam, r.Type.Code())
}

func extractOperationDefinition(e *emitter, r *r4.OperationDefinition) {
	e.canonicalResource(r.Url, &r.Name, r.Status, r.Version, r.Title)
	e.token("code", "", r.Code)
	e.code("kind", sysOperationKind, r.Kind.Code())
}
