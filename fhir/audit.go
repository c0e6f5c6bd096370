package fhir

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/store"
)

// Auditor receives one Event per audited request (every access to patient
// data writes an AuditEvent, docs/design/security.md PRIV-8). The Server calls
// Record on the request's goroutine after the response status is known; Record
// must return quickly (fhir/auditlog queues the event and writes it in the
// background) and cannot fail the request, which has already been answered.
// ctx is the request's context and may already be done.
type Auditor interface {
	Record(ctx context.Context, ev Event)
}

// AuditGate is what an Auditor may also implement to fail closed
// (docs/design/security.md AUD-ARCH-2): Admit is asked before an audited
// request is served, and an error refuses it with a 503 before anything is
// read, so no patient data is answered whose AuditEvent could not be kept.
// fhir/auditlog.Writer refuses while its store is failing or its queue is
// nearly full.
type AuditGate interface {
	Admit() error
}

// ErrAuditUnavailable refuses a request the audit trail cannot record now.
var ErrAuditUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: "transient", Severity: SeverityError,
	Details: "the audit trail cannot record this access now; retry later"}

// AuditorFunc adapts a function to Auditor.
type AuditorFunc func(ctx context.Context, ev Event)

// Record implements Auditor.
func (f AuditorFunc) Record(ctx context.Context, ev Event) { f(ctx, ev) }

// Event is one audited FHIR API request: who (client and user) did what
// (interaction on a type or instance) to which patients' data, with what
// outcome. It holds ids and codes only, never query strings or resource
// values. Event.AuditEvent turns it into the R4 AuditEvent that is stored.
//
// The Server emits an Event for every read, vread, history, search and
// $everything that returned or tried to return patient data - it touched a
// Patient-compartment resource, asked for a Patient-compartment type or a
// Patient instance - and for every request refused for its credentials,
// scope or rate (401, 403, 429) on a served type, writes included: a
// request refused before its handler ran is reported with the interaction of
// its route. metadata and requests that failed otherwise before the access
// decision (unknown type, malformed parameters) emit none.
type Event struct {
	// Time is when the response was complete (AuditEvent.recorded).
	Time time.Time
	// RequestID is the X-Request-Id of the request.
	RequestID string
	// RequestIDRandom reports that the gateway made RequestID (24 hex
	// digits of 12 random bytes; a client's own id may repeat): unique, so
	// the audit writer may derive the AuditEvents' ids from it
	// (docs/design/security.md AUD-ARCH-4).
	RequestIDRandom bool
	// Interaction, Type and ID are what was asked for (ID empty for a
	// search); Version is the version id of a vread.
	Interaction auth.Interaction
	Type        string
	ID          string
	Version     string
	// Patients are the ids of the Patients whose compartments the request
	// touched, in first-seen order without duplicates: the compartments of
	// the resources read or returned (a denied read included), the Patient
	// of a Patient instance request, else those the access decision
	// restricted the request to.
	Patients []string
	// Status is the HTTP status of the response.
	Status int
	// ClientID is the SMART client of the verified access token (empty when
	// the request had none).
	ClientID string
	// FHIRUser is the token's fhirUser ("Practitioner/x"), empty when none.
	FHIRUser string
	// Subject is the token's subject when it names a user rather than the
	// client itself (a backend client's subject is its client id).
	Subject string
	// Purpose is the purpose of use (a code of
	// http://terminology.hl7.org/CodeSystem/v3-ActReason): HPAYMT for a
	// payer client, TREAT for a partner or an EHR (the client's role);
	// empty when the request had no verified token.
	Purpose string
	// Organization is the id of the Organization the client acts for (its
	// binding), empty when none: the client agent's who then references
	// it (docs/design/security.md PRIV-11).
	Organization string
}

// contextKeyAudit is the echo.Context key of the request's *auditNote.
const contextKeyAudit = "fhir.audit"

// auditNote collects, while a request runs, what its Event reports.
type auditNote struct {
	// route is the interaction the request's route serves ("" = none).
	route  auth.Interaction
	access access // the first access decision asked for ("" = none)
	// scope is the allowing decision's patient restriction.
	scope    []string
	patients []string
	seen     map[string]bool // index of patients once it grows
	// wrote marks a write the handler made (noteWrite): it is audited
	// like a read.
	wrote bool
}

// touch adds a patient id (first-seen order, no duplicates).
func (n *auditNote) touch(p string) {
	if p == "" {
		return
	}
	if n.seen != nil {
		if n.seen[p] {
			return
		}
		n.seen[p] = true
		n.patients = append(n.patients, p)
		return
	}
	if slices.Contains(n.patients, p) {
		return
	}
	n.patients = append(n.patients, p)
	if len(n.patients) > 8 { // searches may touch hundreds: index them
		n.seen = make(map[string]bool, 2*len(n.patients))
		for _, q := range n.patients {
			n.seen[q] = true
		}
	}
}

func auditNoteOf(c echo.Context) *auditNote {
	n, _ := c.Get(contextKeyAudit).(*auditNote)
	return n
}

// noteAccess records the request's (first) access decision; d is the zero
// narrowing for a denial.
func noteAccess(c echo.Context, a access, d narrowing) {
	n := auditNoteOf(c)
	if n == nil || n.access.interaction != "" {
		return
	}
	n.access = a
	if !d.all {
		n.scope = slices.Clone(d.patients)
	}
}

// noteResources records the compartments of resources the request read.
func noteResources(c echo.Context, rs ...store.Resource) {
	n := auditNoteOf(c)
	if n == nil {
		return
	}
	for i := range rs {
		n.touch(rs[i].Patient)
	}
}

// audit emits the request's Event once the response (and so its status) is
// complete: it runs outside RenderErrors. route is the interaction the
// route serves.
func (s *Server) audit(route auth.Interaction) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if s.auditor == nil {
			return next
		}
		gate, _ := s.auditor.(AuditGate)
		return func(c echo.Context) error {
			if gate != nil && gate.Admit() != nil {
				// Refused before the handler: nothing was accessed, so
				// there is nothing to audit.
				return ErrAuditUnavailable
			}
			n := &auditNote{route: route}
			c.Set(contextKeyAudit, n)
			defer func() {
				// A streamed Bundle aborted after its first chunk
				// (bundleWriter.fail) disclosed part of what it noted:
				// it is audited before the abort goes on to net/http.
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						if ev, ok := s.auditEvent(c, n); ok {
							s.auditor.Record(c.Request().Context(), ev)
						}
					}
					panic(r)
				}
			}()
			err := next(c)
			if ev, ok := s.auditEvent(c, n); ok {
				s.auditor.Record(c.Request().Context(), ev)
			}
			return err
		}
	}
}

// refused reports whether status refuses the caller's credentials, scope or
// request rate.
func refused(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusTooManyRequests
}

// routeAccess is what a request refused before its handler asked for: the
// interaction of its route on the type and id of its path, when the type is
// served and the id could exist.
func (s *Server) routeAccess(c echo.Context, i auth.Interaction) (access, bool) {
	typ, id := c.Param("type"), c.Param("id")
	if typ == "" && i == auth.InteractionEverything {
		typ = "Patient" // the $everything route has Patient in its path
	}
	if typ == "" && strings.HasPrefix(c.Path(), "/fhir/CarePlan/:id/") {
		typ = "CarePlan" // the prior-authorization operations (fhir/priorauth.go)
	}
	if i == "" || !s.types[typ] || (id != "" && !validID(id)) {
		return access{}, false
	}
	return access{interaction: i, typ: typ, id: id}, true
}

// auditEvent builds the Event of a finished request, or reports false when
// the request is not audited (see Event).
func (s *Server) auditEvent(c echo.Context, n *auditNote) (Event, bool) {
	status := c.Response().Status
	denied := refused(status)
	a := n.access
	if a.interaction == "" {
		var ok bool
		if a, ok = s.routeAccess(c, n.route); !ok || !denied {
			return Event{}, false
		}
	}
	if a.interaction.Write() && !denied && !n.wrote {
		return Event{}, false // refused as read-only (405): nothing was accessed
	}
	if a.typ == "Patient" && a.id != "" {
		n.touch(a.id)
	}
	patients := n.patients
	if len(patients) == 0 && !denied {
		patients = n.scope
	}
	// A Bulk Data export's kick-off, status and files are patient data
	// whatever their type (docs/design/security.md PRIV-8).
	if len(patients) == 0 && !denied && !patientCompartment[a.typ] && a.interaction != auth.InteractionExport {
		return Event{}, false
	}
	ev := Event{
		Time:        s.clock.Now(),
		RequestID:   requestIDOf(c),
		Interaction: a.interaction,
		Type:        a.typ,
		ID:          a.id,
		Patients:    slices.Clone(patients),
		Status:      status,
	}
	ev.RequestIDRandom, _ = c.Get(contextKeyRandomRequestID).(bool)
	if a.interaction == auth.InteractionVRead {
		ev.Version = c.Param("vid")
	}
	if info, ok := auth.FromContext(c.Request().Context()); ok {
		ev.ClientID, ev.FHIRUser = info.ClientID, info.FHIRUser
		// purposeOfEvent (docs/design/security.md PRIV-8, PRIV-11): payment
		// for a payer, treatment for a partner or an EHR.
		ev.Purpose = purposeCode(info.Principal.Role.Purpose())
		ev.Organization = info.Principal.Organization
		if info.Subject != info.ClientID {
			ev.Subject = info.Subject
		}
	}
	return ev, true
}

// patientCompartment lists the resource types of the R4 Patient compartment
// (compartmentdefinition-patient.html): a request for one of these types
// asks for patient data even when it finds nothing.
var patientCompartment = map[string]bool{}

func init() {
	for _, t := range []string{
		"Account", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse", "AuditEvent",
		"Basic", "BodyStructure", "CarePlan", "CareTeam", "ChargeItem", "Claim", "ClaimResponse",
		"ClinicalImpression", "Communication", "CommunicationRequest", "Composition", "Condition", "Consent",
		"Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse", "DetectedIssue",
		"DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference",
		"Encounter", "EnrollmentRequest", "EpisodeOfCare", "ExplanationOfBenefit", "FamilyMemberHistory",
		"Flag", "Goal", "Group", "ImagingStudy", "Immunization", "ImmunizationEvaluation",
		"ImmunizationRecommendation", "Invoice", "List", "MeasureReport", "Media", "MedicationAdministration",
		"MedicationDispense", "MedicationRequest", "MedicationStatement", "MolecularSequence",
		"NutritionOrder", "Observation", "Patient", "Person", "Procedure", "Provenance",
		"QuestionnaireResponse", "RelatedPerson", "RequestGroup", "ResearchSubject", "RiskAssessment",
		"Schedule", "ServiceRequest", "Specimen", "SupplyDelivery", "SupplyRequest", "VisionPrescription",
	} {
		patientCompartment[t] = true
	}
}

// Code systems of the AuditEvent (auditevent.html).
const (
	systemAuditEventType  = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	systemRestful         = "http://hl7.org/fhir/restful-interaction"
	systemSourceType      = "http://terminology.hl7.org/CodeSystem/security-source-type"
	systemEntityType      = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole      = "http://terminology.hl7.org/CodeSystem/object-role"
	systemResourceTypes   = "http://hl7.org/fhir/resource-types"
	systemDICOM           = "http://dicom.nema.org/resources/ontology/DCM"
	systemActReason       = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	auditObserverDisplay  = "KetaBridge"
	auditAnonymousDisplay = "anonymous (no verified access token)"
)

// restfulInteraction maps an Interaction to its restful-interaction code
// and AuditEvent.action (C, R, U, D, E).
func restfulInteraction(i auth.Interaction) (code string, action r4.AuditEventAction) {
	switch i {
	case auth.InteractionRead, auth.InteractionVRead, auth.InteractionHistoryInstance, auth.InteractionHistoryType:
		return string(i), r4.AuditEventActionR
	case auth.InteractionSearch:
		return string(i), r4.AuditEventActionE
	case auth.InteractionCreate:
		return string(i), r4.AuditEventActionC
	case auth.InteractionUpdate, auth.InteractionPatch:
		return string(i), r4.AuditEventActionU
	case auth.InteractionDelete:
		return string(i), r4.AuditEventActionD
	}
	return "operation", r4.AuditEventActionE // $everything
}

// storedInteractions maps the interaction names of audit records stored
// before the access vocabulary moved to auth ("history", "search") to their
// auth.Interaction, so old records render as they did.
var storedInteractions = map[string]auth.Interaction{
	"history": auth.InteractionHistoryInstance,
	"search":  auth.InteractionSearch,
}

// AuditEvent returns the R4 AuditEvent of ev with the given id, following
// auditevent.html and the IHE Basic Audit Log Patterns' RESTful-access shape:
//
//   - type: audit-event-type "rest"; subtype: the restful-interaction
//     (read, vread, history-instance, search-type, operation, ...); action R
//     for reads, E for searches and operations (C/U/D for refused writes);
//   - outcome: 0 below 400, 4 (minor failure) for 4xx, 8 (serious failure)
//     for 5xx; outcomeDesc names the HTTP status;
//   - agents: the client (who.identifier = client id; the requestor when
//     no user acted) and the user (who.reference = fhirUser, altId = the
//     login subject; requestor); an anonymous requestor when the request
//     had no verified token;
//   - source: observer "KetaBridge", type 4 (application server);
//   - entities: the target (the instance reference, or for a search only
//     the resource type: no query string, no values) with the request id as
//     a detail, then one entity per patient (what = Patient/id, role 1).
func (ev Event) AuditEvent(id string) r4.AuditEvent {
	code, action := restfulInteraction(ev.Interaction)
	outcome := r4.AuditEventOutcome0
	switch {
	case ev.Status >= 500:
		outcome = r4.AuditEventOutcome8
	case ev.Status >= 400:
		outcome = r4.AuditEventOutcome4
	}
	ae := r4.AuditEvent{
		Type:        coding(systemAuditEventType, "rest", "RESTful Operation"),
		Subtype:     []r4.Coding{coding(systemRestful, code, code)},
		Action:      &action,
		Recorded:    ev.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Outcome:     &outcome,
		OutcomeDesc: ptr("HTTP " + strconv.Itoa(ev.Status)),
		Source: r4.AuditEventSource{
			Observer: r4.Reference{Display: ptr(auditObserverDisplay)},
			Type:     []r4.Coding{coding(systemSourceType, "4", "Application Server")},
		},
	}
	if id != "" {
		ae.Id = ptr(id)
	}
	if ev.Purpose != "" {
		ae.PurposeOfEvent = []r4.CodeableConcept{{Coding: []r4.Coding{coding(systemActReason, ev.Purpose, "")}}}
	}

	ae.Agent = ev.agents()
	ae.Entity = ev.entities()
	return ae
}

// agents are the AuditEvent's agents: the client (the requestor when no user
// acted), the user (reference fhirUser, altId the login subject), or an
// anonymous requestor when the request had no verified token.
func (ev Event) agents() []r4.AuditEventAgent {
	var agents []r4.AuditEventAgent
	user := ev.FHIRUser != "" || ev.Subject != ""
	switch {
	case ev.ClientID != "":
		agents = append(agents, r4.AuditEventAgent{
			Type:      &r4.CodeableConcept{Coding: []r4.Coding{coding(systemDICOM, "110150", "Application")}},
			Who:       ev.clientWho(),
			Requestor: !user,
		})
	case !user:
		agents = append(agents, r4.AuditEventAgent{
			Who:       &r4.Reference{Display: ptr(auditAnonymousDisplay)},
			Requestor: true,
		})
	}
	if user {
		ag := r4.AuditEventAgent{Requestor: true}
		if ev.FHIRUser != "" {
			ag.Who = &r4.Reference{Reference: ptr(ev.FHIRUser)}
			if ev.Subject != "" {
				ag.AltId = ptr(ev.Subject)
			}
		} else {
			ag.Who = &r4.Reference{Identifier: &r4.Identifier{Value: ptr(ev.Subject)}}
		}
		agents = append(agents, ag)
	}
	return agents
}

// entities are the AuditEvent's entities: the target (the instance
// reference, or for a search only the resource type: no query string, no
// values) with the request id as a detail, then one entity per patient.
func (ev Event) entities() []r4.AuditEventEntity {
	var entities []r4.AuditEventEntity
	var target r4.AuditEventEntity
	if ev.Type != "" {
		target.Type = ptr(coding(systemResourceTypes, ev.Type, ""))
	}
	switch {
	case ev.ID != "":
		ref := ev.Type + "/" + ev.ID
		if ev.Version != "" {
			ref += "/_history/" + ev.Version
		}
		target.What = &r4.Reference{Reference: ptr(ref)}
		target.Role = ptr(coding(systemObjectRole, "4", "Domain Resource"))
	default:
		target.Role = ptr(coding(systemObjectRole, "24", "Query"))
	}
	if ev.RequestID != "" {
		target.Detail = []r4.AuditEventEntityDetail{{Type: "request-id", ValueString: ev.RequestID}}
	}
	if target.Type != nil || target.What != nil || target.Detail != nil {
		entities = append(entities, target)
	}
	for _, p := range ev.Patients {
		entities = append(entities, r4.AuditEventEntity{
			What: &r4.Reference{Reference: ptr("Patient/" + p)},
			Type: ptr(coding(systemEntityType, "1", "Person")),
			Role: ptr(coding(systemObjectRole, "1", "Patient")),
		})
	}
	return entities
}

// MarshalAuditEvent returns the canonical JSON (fhirjson.Marshal) of ev's
// AuditEvent with the given id.
func MarshalAuditEvent(ev Event, id string) ([]byte, error) {
	return fhirjson.Marshal(ev.AuditEvent(id))
}

// AuditRecord returns the stored form of ev's AuditEvent about patient
// (empty: about none) with the given id: the fields AuditEvent renders, so
// AuditEventJSON of the record is MarshalAuditEvent of ev narrowed to that
// patient (recorded at millisecond precision, as it renders).
func (ev Event) AuditRecord(id, patient string) store.AuditRecord {
	return store.AuditRecord{
		ID: id, Recorded: ev.Time.Truncate(time.Millisecond), Patient: patient, ClientID: ev.ClientID,
		Interaction: string(ev.Interaction), Type: ev.Type, ResourceID: ev.ID, Version: ev.Version,
		Status: ev.Status, FHIRUser: ev.FHIRUser, Subject: ev.Subject, Purpose: ev.Purpose,
		RequestID: ev.RequestID, Organization: ev.Organization,
	}
}

// AuditEventJSON renders a stored audit record as its R4 AuditEvent JSON:
// it rebuilds the Event (with the record's one patient, if any) and calls
// MarshalAuditEvent, so rendering stays in one place and goes through the
// canonical emit path. The output depends on the record alone: the same
// record always renders to the same bytes.
func AuditEventJSON(rec store.AuditRecord) ([]byte, error) {
	i, ok := storedInteractions[rec.Interaction]
	if !ok {
		i = auth.Interaction(rec.Interaction)
	}
	ev := Event{
		Time: rec.Recorded, RequestID: rec.RequestID,
		Interaction: i, Type: rec.Type, ID: rec.ResourceID, Version: rec.Version,
		Status: rec.Status, ClientID: rec.ClientID, FHIRUser: rec.FHIRUser, Subject: rec.Subject,
		Purpose: rec.Purpose, Organization: rec.Organization,
	}
	if rec.Patient != "" {
		ev.Patients = []string{rec.Patient}
	}
	return MarshalAuditEvent(ev, rec.ID)
}

func coding(system, code, display string) r4.Coding {
	c := r4.Coding{System: ptr(system), Code: ptr(code)}
	if display != "" {
		c.Display = ptr(display)
	}
	return c
}

// purposeCode is the v3-ActReason code of a purpose of use.
func purposeCode(p auth.Purpose) string {
	if p == auth.PurposePayment {
		return "HPAYMT"
	}
	return "TREAT"
}

// clientWho is the client agent's who: the client id as identifier and,
// for a client bound to an organization, a reference to that Organization
// (docs/design/security.md PRIV-11).
func (ev Event) clientWho() *r4.Reference {
	who := &r4.Reference{Identifier: &r4.Identifier{Value: ptr(ev.ClientID)}}
	if ev.Organization != "" {
		who.Reference = ptr("Organization/" + ev.Organization)
	}
	return who
}
