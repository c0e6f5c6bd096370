// Package mapping turns validated clinic records (package clinic) into FHIR R4
// resources (samply r4 structs plus their canonical JSON from
// conformance/fhirjson). Mapping is pure and deterministic: no I/O, no clock,
// stable output order, inputs never modified, and every id derived from the
// clinic's own ids (ResourceID), so a re-sent record updates the same
// resources instead of duplicating them.
//
// # Ids and references
//
// The main resource of a record has ResourceID(kind, clinicID) with no parts;
// it is what other records reference (Patient, Practitioner, Organization,
// Location, PlanDefinition of a protocol, Condition of a diagnosis, CarePlan of
// a course, Encounter of a session, Coverage, Consent, MedicationStatement).
// Sub-resources add parts: a course's MedicationRequest is
// (course, id, "MedicationRequest"); a protocol's Medication is
// (protocol, id, "Medication"); a session's body weight is
// (session, id, "weight"), its administrations (session, id, "administration",
// i) with the lot's Medication (..., i, "Medication"), vitals
// (session, id, "vitals", i, "bp"|"hr"|"rr"|"spo2"|"temp"), assessments
// (session, id, "assessment", i) with "item", n / "difficulty" / "score"
// members, adverse events (session, id, "adverse", i) and the REMS form
// (session, id, "rems"); every record's Provenance is (kind, id, "Provenance").
// Indexes i are 0-based positions in the record, item numbers n 1-based.
// References are relative ("Type/id").
//
// # Canonical URLs and identifier systems
//
// Every canonical URL the mapper writes (the project's CodeSystems, ValueSets
// and extensions) is fixed under codes.CanonicalBase, whatever the
// deployment's base URL: the same record maps to the same bytes in every
// deployment. Only the identifier systems of the clinic's own ids
// ({IdentifierSystemBase}/mrn, /practitioner, /session, ...) and the
// canonical URL of its protocols ({IdentifierSystemBase}/protocol/{id}) come
// from configuration (Options.IdentifierSystemBase), because they name the
// clinic's namespace, not the project's.
//
// # Related records
//
// A few elements come from records the mapped record references: a course's
// MedicationRequest takes its dosage instructions from the course's protocol,
// a session's Encounter its reasonReference from the course's diagnosis, and a
// session's Medication its product from the protocol. MapWith takes a
// clinic.Resolver for them; Map maps without (those elements are then left
// out). Mapping stays pure: the resolver is an input.
//
// # Sessions
//
// R4 Encounter.status has no no-show or stopped-early. A session maps to
// Encounter.status finished (completed, stopped-early), cancelled (cancelled,
// no-show) or planned (scheduled). A no-show carries the R4 core
// encounter-reasonCancelled extension with the local code session-no-show
// (and the clinic's statusReason as text), a cancelled session the reason
// text. For stopped-early the last MedicationAdministration has status
// stopped with the reason in statusReason. A planned, cancelled or no-show
// Encounter keeps the scheduled start as period.start (the time it was
// planned for); a completed one has the actual period. Encounter.type holds
// the local session type with SNOMED CT, and the billing code (CPT 96365 /
// 96372, HCPCS G2082 / G2083) when a dose was given.
//
// The Spravato REMS Patient Monitoring Form answers become one Observation
// (local code rems-monitoring, category survey) with a component per answer:
// first treatment, enrolled, concomitant medications (one component each),
// minutes to ready, total monitoring minutes, vitals acceptable before dosing
// and at discharge (booleans always present: the record cannot tell false from
// absent, and the form asks yes/no).
//
// # Security labels
//
// meta.security is chosen per resource by its content (docs/fhir-mapping.md
// "Security labels"): PSY (psychiatry disorder information sensitivity) with
// confidentiality N on mental-health content - mental-health diagnoses, the
// course, everything of a session (vital signs included), the
// antidepressant history - and PSY with confidentiality R (restricted) only
// on suicide-risk content: every C-SSRS Observation, the PHQ-9 item 9
// answer, the MADRS item scores (item 10; the MADRS total is an
// Observation of its own, N) and diagnoses of suicidal
// ideation, suicidal behaviour or self-harm. Patient, Coverage, Consent,
// Provenance, Medication and the directory carry no label.
//
// The action taken for an adverse effect (R4 AdverseEvent has no such
// element) is the adverse-event-action extension with a local code; its
// resolution time the adverse-event-resolved extension.

package mapping

import (
	"crypto/sha1"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// Options configure a Mapper.
type Options struct {
	// IdentifierSystemBase is the clinic's namespace for its own identifiers:
	// the systems {base}/mrn, {base}/practitioner, {base}/session,
	// {base}/protocol, {base}/rems-setting, {base}/payer-id,
	// {base}/clinic-record, {base}/payer/{payerId}/member-id, and the
	// canonical URLs of its protocols, {base}/protocol/{id}. An absolute URI
	// without a trailing slash, e.g. "https://lakeside-ketamine.example/fhir/sid".
	// Empty means codes.DefaultIdentifierSystemBase, which is unique only
	// within one deployment (docs/fhir-mapping.md).
	IdentifierSystemBase string
	// Organization is the clinic id of the clinic's own organization record,
	// when configured: the Provenance transmitter of every record, the author
	// of records that name no responsible party, and the Encounter
	// serviceProvider. Optional.
	Organization string
}

// Mapper maps clinic records to FHIR R4 resources. It is safe for concurrent
// use.
type Mapper struct {
	sidBase string
	org     string
}

// New returns a Mapper.
func New(opts Options) *Mapper {
	base := strings.TrimRight(opts.IdentifierSystemBase, "/")
	if base == "" {
		base = codes.DefaultIdentifierSystemBase
	}
	return &Mapper{sidBase: base, org: opts.Organization}
}

// Output is one mapped resource.
type Output struct {
	Type, ID string
	// Patient is the compartment: id of the Patient resource it belongs to (""
	// for Practitioner, Organization, Location, PlanDefinition, CodeSystem,
	// Medication with no patient). A protocol's Medication has none; the
	// lot-specific Medication of a session's administration belongs to the
	// session's patient, as does every record's Provenance when the record has
	// a patient.
	Patient string
	// Resource is the samply r4 struct (pointer), for typed index extraction.
	Resource any
	// Body is the canonical JSON from fhirjson.Marshal(Resource).
	Body []byte
	// CreateOnly: the store writes it only when it does not exist
	// (store.ResourceWrite.CreateOnly): an outside party moves it on.
	CreateOnly bool
}

// Error is a record that could not be mapped. Path is the JSON path into the
// record; no field carries record values, so an Error is safe to log.
type Error struct {
	Key    clinic.Key
	Path   string
	Reason string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return "mapping: " + e.Key.String() + ": " + e.Reason
	}
	return "mapping: " + e.Key.String() + ": " + e.Path + ": " + e.Reason
}

// Version names the mapping rules: it changes whenever the same clinic record
// maps to different resources, so that storage can tell a record stored under
// older rules from an unchanged one (package ingest folds it into the record
// hash; a re-sent record is then remapped and its changed resources get new
// versions).
const Version = "3"

// namespace is the fixed UUIDv5 namespace of KetaBridge resource ids. Never
// change it: every stored id derives from it.
var namespace = uuid.MustParse("6f1d0c3e-4b7a-5e21-9c8d-2a4f6b9e0d17")

// ResourceID is the deterministic id: UUIDv5 over a fixed project namespace of
// kind + "/" + clinic id (+ "/" + parts...).
//
// It computes exactly uuid.NewSHA1(namespace, name) (TestResourceIDIsUUIDv5),
// hashing the namespace and the name from one stack buffer with sha1.Sum:
// every mapped resource and reference needs an id, and NewSHA1's hash object,
// digest slice and name buffer were five allocations each (PERF-IN-4).
func ResourceID(kind clinic.Kind, clinicID string, parts ...string) string {
	var stack [160]byte
	b := append(stack[:0], namespace[:]...)
	b = append(b, kind...)
	b = append(b, '/')
	b = append(b, clinicID...)
	for _, p := range parts {
		b = append(b, '/')
		b = append(b, p...)
	}
	sum := sha1.Sum(b)
	var id uuid.UUID
	copy(id[:], sum[:])
	id[6] = (id[6] & 0x0f) | 0x50 // version 5
	id[8] = (id[8] & 0x3f) | 0x80 // RFC 4122 variant
	return id.String()
}

// MedicationRequestID is the id of the MedicationRequest mapped from a course.
func MedicationRequestID(courseID string) string {
	return ResourceID(clinic.KindCourse, courseID, "MedicationRequest")
}

// ProtocolMedicationID is the id of the Medication mapped from a protocol's drug.
func ProtocolMedicationID(protocolID string) string {
	return ResourceID(clinic.KindProtocol, protocolID, "Medication")
}

// ProvenanceID is the id of the Provenance of a record.
func ProvenanceID(k clinic.Key) string { return ResourceID(k.Kind, k.ID, "Provenance") }

// PlanDefinitionURL is the canonical url of a protocol's PlanDefinition: the
// protocol's clinic id in the clinic's namespace.
func (m *Mapper) PlanDefinitionURL(protocolID string) string {
	return m.sidBase + "/protocol/" + protocolID
}

// Map maps one validated record to its resources plus one Provenance for the
// record, without related records (see MapWith). recorded is when the gateway
// received the record (Provenance.recorded); Map is pure: no I/O, no
// time.Now, deterministic, stable order (the record's main resource first,
// Provenance last).
func (m *Mapper) Map(rec clinic.Record, recorded time.Time) ([]Output, error) {
	return m.MapWith(rec, recorded, nil)
}

// MapWith is Map with the records rec references available through related
// (nil for none): the course's protocol, the session's course and its
// protocol (see the package documentation). Elements that need a record
// related cannot resolve are left out; MapWith does not fail for them.
func (m *Mapper) MapWith(rec clinic.Record, recorded time.Time, related clinic.Resolver) ([]Output, error) {
	if rec == nil {
		return nil, &Error{Reason: "nil record"}
	}
	e := &emitter{m: m, rel: related, key: clinic.Key{Kind: rec.RecordKind(), ID: rec.RecordID()}}
	if e.key.ID == "" {
		return nil, &Error{Key: e.key, Path: "id", Reason: "is required"}
	}
	if recorded.IsZero() {
		return nil, &Error{Key: e.key, Reason: "recorded time is required"}
	}
	switch r := rec.(type) {
	case *clinic.Patient:
		e.patient(r)
	case *clinic.Practitioner:
		e.practitioner(r)
	case *clinic.Organization:
		e.organization(r)
	case *clinic.Location:
		e.location(r)
	case *clinic.Protocol:
		e.protocol(r)
	case *clinic.Course:
		e.course(r)
	case *clinic.Diagnosis:
		e.diagnosis(r)
	case *clinic.Session:
		e.session(r)
	case *clinic.Coverage:
		e.coverage(r)
	case *clinic.Consent:
		e.consent(r)
	case *clinic.AntidepressantTrial:
		e.trial(r)
	case *clinic.PriorAuthResponse:
		e.priorAuthResponse(r)
	case *clinic.Referral:
		e.referral(r)
	default:
		if p := asPointer(rec); p != rec {
			return m.MapWith(p, recorded, related)
		}
		return nil, &Error{Key: e.key, Path: "kind", Reason: "unsupported record type"}
	}
	if e.err != nil {
		return nil, e.err
	}
	if len(e.outs) == 0 {
		return nil, &Error{Key: e.key, Reason: "mapped to no resources"}
	}
	e.provenance(recorded)
	for i := range e.outs {
		body, err := fhirjson.Marshal(e.outs[i].Resource)
		if err != nil {
			return nil, &Error{Key: e.key, Reason: fmt.Sprintf("emit %s: %v", e.outs[i].Type, err)}
		}
		e.outs[i].Body = body
	}
	return e.outs, nil
}

// asPointer returns a record passed by value as a pointer to a copy.
func asPointer(r clinic.Record) clinic.Record {
	switch v := r.(type) {
	case clinic.Patient:
		return &v
	case clinic.Practitioner:
		return &v
	case clinic.Organization:
		return &v
	case clinic.Location:
		return &v
	case clinic.Protocol:
		return &v
	case clinic.Course:
		return &v
	case clinic.Diagnosis:
		return &v
	case clinic.Session:
		return &v
	case clinic.Coverage:
		return &v
	case clinic.Consent:
		return &v
	case clinic.AntidepressantTrial:
		return &v
	case clinic.PriorAuthResponse:
		return &v
	case clinic.Referral:
		return &v
	}
	return r
}

// emitter collects the resources of one record and the first error.
type emitter struct {
	m   *Mapper
	rel clinic.Resolver
	key clinic.Key
	// org is the clinic id of the organization behind the record, when known.
	org string
	// author is the Practitioner responsible for the record's content, when
	// the record names one.
	author *r4.Reference
	// locationClinicID is the clinic id of a session's location.
	locationClinicID string
	// patientID is the compartment of the record's resources (a Patient id),
	// patientClinicID the clinic id of that patient.
	patientID, patientClinicID string
	outs                       []Output
	err                        *Error
}

// add appends a resource; id and type come from the caller, the compartment
// from the emitter unless the resource is compartment-free.
func (e *emitter) add(typ, id string, inCompartment bool, res any) {
	o := Output{Type: typ, ID: id, Resource: res}
	if inCompartment {
		o.Patient = e.patientID
	}
	e.outs = append(e.outs, o)
}

// fail records the first mapping error.
func (e *emitter) fail(path, reason string) {
	if e.err == nil {
		e.err = &Error{Key: e.key, Path: path, Reason: reason}
	}
}

// id is the id of a sub-resource of the current record.
func (e *emitter) id(parts ...string) string { return ResourceID(e.key.Kind, e.key.ID, parts...) }

// setPatient sets the record's patient by clinic id.
func (e *emitter) setPatient(clinicID string) {
	e.patientClinicID = clinicID
	e.patientID = ResourceID(clinic.KindPatient, clinicID)
}

// clinicOrg is the clinic id of the clinic Organization behind the record:
// the configured one, else the organization the record names, else the
// managing organization of the record's patient or the organization of a
// session's location (when they resolve); "" when none is known.
func (e *emitter) clinicOrg() string {
	switch {
	case e.m.org != "":
		return e.m.org
	case e.org != "":
		return e.org
	}
	if r, ok := e.related(clinic.KindPatient, e.patientClinicID); ok {
		if p := r.(*clinic.Patient); p.OrganizationID != "" {
			return p.OrganizationID
		}
	}
	if e.locationClinicID != "" {
		if r, ok := e.related(clinic.KindLocation, e.locationClinicID); ok {
			return r.(*clinic.Location).OrganizationID
		}
	}
	return ""
}

// related resolves a record the mapped record references, normalised to a
// pointer of the key's kind; ok is false without a resolver or a match.
func (e *emitter) related(k clinic.Kind, id string) (clinic.Record, bool) {
	if e.rel == nil || id == "" {
		return nil, false
	}
	r, ok := e.rel.Resolve(clinic.Key{Kind: k, ID: id})
	if !ok || r == nil {
		return nil, false
	}
	r = asPointer(r)
	if r.RecordKind() != k {
		return nil, false
	}
	return r, true
}

// provenance appends the record's Provenance (us-core-provenance): target =
// every resource mapped from the record; agent author = the clinician the
// record names as responsible (the session clinician, course prescriber or
// diagnosis recorder) on behalf of the clinic Organization (US Core
// provenance-1), else the clinic Organization itself; agent transmitter = the
// clinic Organization, which sends the data through the gateway it runs
// (clinicOrg); entity = the source record by kind/id. When no clinic
// Organization is known (none configured, named or resolvable) the agents
// are display-only references: Options.Organization should be set.
func (e *emitter) provenance(recorded time.Time) {
	m := e.m
	targets := make([]r4.Reference, len(e.outs))
	for i, o := range e.outs {
		targets[i] = ref(o.Type, o.ID)
	}
	feed := r4.Reference{Display: ptr("KetaBridge clinic record feed")}
	author := r4.ProvenanceAgent{Type: ccp(m.cc("", codeOf(provParticipant, "author", "Author"))), Who: feed}
	transmitter := r4.ProvenanceAgent{
		Type: ccp(m.cc("", codeOf(usCoreProvParticipant, "transmitter", "Transmitter"))), Who: feed,
	}
	if org := e.clinicOrg(); org != "" {
		orgRef := kref("Organization", clinic.KindOrganization, org)
		author.Who, transmitter.Who = orgRef, orgRef
		if e.author != nil {
			author.Who, author.OnBehalfOf = *e.author, &orgRef
		}
	}
	p := &r4.Provenance{
		Id:       ptr(ProvenanceID(e.key)),
		Meta:     m.meta("us-core-provenance", unlabelled),
		Target:   targets,
		Recorded: recorded.UTC().Format(time.RFC3339Nano),
		Agent:    []r4.ProvenanceAgent{author, transmitter},
		Entity: []r4.ProvenanceEntity{{
			Role: r4.ProvenanceEntityRoleSource,
			What: r4.Reference{Identifier: &r4.Identifier{
				System: ptr(m.sid("clinic-record")),
				Value:  ptr(e.key.String()),
			}},
		}},
	}
	e.add("Provenance", *p.Id, true, p)
}
