package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/fhir/referral"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// Limits of a referral transaction (docs/referrals.md; the whole body is
// also under the API's body limit, 1 MiB by default): more entries, or a
// larger entry resource, is 413.
const (
	MaxTransactionEntries = 50
	MaxEntryResourceBytes = 256 << 10
)

// referralEntries are the resource types a referral Bundle may carry, with
// how many of each (at least, at most).
var referralEntries = map[string][2]int{
	"Task": {1, 1}, "ServiceRequest": {1, 1}, "Patient": {1, 1},
	"Condition": {0, 20}, "MedicationStatement": {0, 50}, "Observation": {0, 50},
	"Coverage": {0, 5}, "DocumentReference": {0, 10}, "Practitioner": {0, 5},
}

// directoryRef are the types a Bundle may reference outside itself: the
// directory, never a patient's data (no probing of what the clinic holds).
var directoryRef = []string{"Organization", "Practitioner", "PractitionerRole", "Location"}

// Patient match bases, shown on the Task as input "patient-match"
// (docs/referrals.md).
const (
	matchIdentifier   = "identifier"
	matchDemographics = "demographics"
	matchNone         = "none"
)

// matchBases are the local codes of the match bases
// (ValueSet ketabridge-patient-match-basis).
var matchBases = map[string]struct{ code, display string }{
	matchIdentifier:   {"match-identifier", "Matched by identifier"},
	matchDemographics: {"match-demographics", "Matched by family name, first given name, birth date and gender"},
	matchNone:         {"match-none", "No match: awaiting registration"},
}

// localConcept is a CodeableConcept of one code of LocalCodeSystem.
func localConcept(code, display, text string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": LocalCodeSystem, "code": code, "display": display}}, "text": text}
}

// txEntry is one entry of a referral transaction.
type txEntry struct {
	index   int
	typ     string
	fullURL string
	res     map[string]any
	req     map[string]any
	id      string
	patient string
	write   store.ResourceWrite
}

func (e *txEntry) path(rest string) string {
	p := "Bundle.entry[" + strconv.Itoa(e.index) + "]"
	if rest != "" {
		p += "." + rest
	}
	return p
}

// issueAt is one failing entry element: 422 unless status says otherwise.
func issueAt(path, details, diagnostics string) *Error {
	e := NewError(http.StatusUnprocessableEntity).WithDetails(details).WithExpression(path)
	if diagnostics != "" {
		e = e.WithDiagnostics(diagnostics)
	}
	return e
}

// joinIssues folds issues into one error: the first issue's status, every
// issue listed.
func joinIssues(issues []*Error) error {
	if len(issues) == 0 {
		return nil
	}
	return issues[0].WithMore(issues[1:]...)
}

// transaction serves POST [base] with a transaction Bundle carrying an
// inbound referral (docs/referrals.md; http.html#transaction). Only a
// partner client registered with its Organization may post one (RFL-1);
// every entry is checked before anything is written, and all of them are
// written in one store record, or none (RFL-4). The ServiceRequest's id
// derives from the partner and its identifier, and the record expects it
// absent, so a re-sent referral writes nothing and answers what exists.
func (s *Server) transaction(c echo.Context) error {
	a := access{interaction: auth.InteractionCreate, typ: "Task"}
	w, err := s.caller(c)
	if err != nil {
		noteAccess(c, a, narrowing{})
		return err
	}
	if w.role != auth.RolePartner || w.org == "" {
		noteAccess(c, a, narrowing{})
		return auth.InsufficientScope("only a partner client registered with its Organization may post a referral")
	}
	body, err := readJSONBody(c)
	if err != nil {
		return err
	}
	entries, err := parseTransaction(body)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !w.allows(auth.InteractionCreate, e.typ) {
			noteAccess(c, access{interaction: auth.InteractionCreate, typ: e.typ}, narrowing{})
			return auth.InsufficientScope("insufficient scope: create " + e.typ)
		}
	}
	if issues := validatorIssues(body); len(issues) > 0 {
		return joinIssues(issues)
	}
	ctx := c.Request().Context()
	ref, err := s.checkReferral(ctx, w, entries)
	if err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	rec, err := s.referralRecord(ctx, w, ref, body, now)
	if err != nil {
		return err
	}
	noteWrite(c, access{interaction: auth.InteractionCreate, typ: "Task", id: ref.task.id}, ref.patient.id)
	results, err := s.writer.Apply(ctx, []store.RecordWrite{rec})
	status := http.StatusCreated
	if err != nil {
		var pe *store.PreconditionError
		if !errors.As(err, &pe) || pe.Have == 0 {
			return err
		}
		status = http.StatusOK // a re-sent referral: answer what exists
		results = nil
	}
	return s.transactionResponse(c, ref.entries, results, status)
}

// parseTransaction checks the Bundle's shape and each entry's request: 400
// for a body that is no transaction Bundle, 413 past the limits, 422 naming
// each entry that is not a create of a referral resource.
func parseTransaction(body []byte) ([]*txEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var b map[string]any
	if err := dec.Decode(&b); err != nil {
		return nil, ErrInvalid.WithDetails("the body is not a JSON object")
	}
	if b["resourceType"] != "Bundle" || b["type"] != "transaction" {
		return nil, ErrInvalid.WithDetails("POST [base] takes a transaction Bundle").WithExpression("Bundle.type")
	}
	raw, ok := b["entry"].([]any)
	if !ok || len(raw) == 0 {
		return nil, ErrInvalid.WithDetails("the Bundle has no entries").WithExpression("Bundle.entry")
	}
	if len(raw) > MaxTransactionEntries {
		return nil, ErrTooLarge.WithDetails(fmt.Sprintf("a referral Bundle has at most %d entries", MaxTransactionEntries)).WithExpression("Bundle.entry")
	}
	var issues []*Error
	entries := make([]*txEntry, 0, len(raw))
	urls := map[string]int{}
	count := map[string]int{}
	for i, r := range raw {
		e := &txEntry{index: i}
		m, _ := r.(map[string]any)
		res, _ := m["resource"].(map[string]any)
		if res == nil {
			issues = append(issues, issueAt(e.path("resource"), "the entry has no resource", ""))
			continue
		}
		e.res = res
		e.typ, _ = res["resourceType"].(string)
		if n, _ := json.Marshal(res); len(n) > MaxEntryResourceBytes {
			return nil, ErrTooLarge.WithDetails(fmt.Sprintf("an entry's resource is at most %d bytes", MaxEntryResourceBytes)).WithExpression(e.path("resource"))
		}
		if _, ok := referralEntries[e.typ]; !ok {
			issues = append(issues, issueAt(e.path("resource"), "a referral Bundle does not carry this resource type",
				"allowed: Task, ServiceRequest, Patient, Condition, MedicationStatement, Observation, Coverage, DocumentReference, Practitioner"))
			continue
		}
		count[e.typ]++
		req, _ := m["request"].(map[string]any)
		if req["method"] != http.MethodPost || req["url"] != e.typ {
			issues = append(issues, issueAt(e.path("request"), "each entry must be a create: request.method POST and request.url its resource type", ""))
		}
		e.req = req
		if _, ok := req["ifNoneExist"]; ok && e.typ != "ServiceRequest" {
			issues = append(issues, issueAt(e.path("request.ifNoneExist"), "only the ServiceRequest may be created conditionally", ""))
		}
		if fu, ok := m["fullUrl"]; ok {
			s, _ := fu.(string)
			id, isURN := strings.CutPrefix(s, "urn:uuid:")
			if _, err := uuid.Parse(id); !isURN || err != nil {
				issues = append(issues, issueAt(e.path("fullUrl"), "fullUrl must be urn:uuid:<uuid>", ""))
			} else if j, dup := urls[s]; dup {
				issues = append(issues, issueAt(e.path("fullUrl"), fmt.Sprintf("the same fullUrl as Bundle.entry[%d]", j), ""))
			} else {
				urls[s] = i
				e.fullURL = s
			}
		}
		entries = append(entries, e)
	}
	for _, typ := range slices.Sorted(mapsKeys(referralEntries)) {
		lim := referralEntries[typ]
		if n := count[typ]; n < lim[0] || n > lim[1] {
			issues = append(issues, issueAt("Bundle.entry", fmt.Sprintf("a referral Bundle carries %d to %d %s entries, not %d", lim[0], lim[1], typ, n), ""))
		}
	}
	if err := joinIssues(issues); err != nil {
		return nil, err
	}
	return entries, nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// validatorIssues runs the gateway's validator over the Bundle: every
// entry's resource is valid R4 and conforms to the profiles it claims. The
// validator's messages name paths and codes, never values; they go to the
// client only.
func validatorIssues(body []byte) []*Error {
	var out []*Error
	for _, is := range conformance.Validate(body) {
		if strings.HasSuffix(is.Path, ".id") && strings.HasPrefix(is.Path, "Bundle.entry[") {
			continue
		}
		e := issueAt(is.Path, "the resource is not valid FHIR R4", is.Message)
		e.Code = issueCode(is.Code)
		out = append(out, e)
	}
	return out
}

// issueCode keeps a validator issue code that is a FHIR IssueType.
func issueCode(code string) string {
	switch code {
	case conformance.CodeStructure, conformance.CodeRequired, conformance.CodeValue,
		conformance.CodeCodeInvalid, conformance.CodeInvariant, conformance.CodeNotSupported:
		return code
	}
	return "invalid"
}

// referralIn is a checked referral.
type referralIn struct {
	entries                []*txEntry
	task, sr, patient      *txEntry
	system, value          string // the ServiceRequest's identifier
	owner                  string // Organization id of the recipient
	matched, matchBasis    string
	provenanceID, recordID string
}

func str(m map[string]any, keys ...string) string {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[k]
	}
	s, _ := cur.(string)
	return s
}

// checkReferral checks the referral's own rules on entries the validator
// passed (RFL-4): the Task, ServiceRequest and Patient and how they refer
// to each other, the ServiceRequest's identifier, every reference (inside
// the Bundle by fullUrl, or to the directory), then assigns ids.
func (s *Server) checkReferral(ctx context.Context, w writeCaller, entries []*txEntry) (*referralIn, error) {
	r := &referralIn{entries: entries}
	byURL := map[string]*txEntry{}
	for _, e := range entries {
		switch e.typ {
		case "Task":
			r.task = e
		case "ServiceRequest":
			r.sr = e
		case "Patient":
			r.patient = e
		}
		if e.fullURL != "" {
			byURL[e.fullURL] = e
		}
	}
	var issues []*Error
	need := func(e *txEntry, ok bool, rest, details string) {
		if !ok {
			issues = append(issues, issueAt(e.path("resource."+rest), details, ""))
		}
	}
	refersTo := func(e *txEntry, rest string, target *txEntry) {
		v := str(e.res, strings.Split(rest, ".")...)
		need(e, target.fullURL != "" && v == target.fullURL, rest, "must refer to the Bundle's "+target.typ+" by its fullUrl")
	}
	t, sr := r.task, r.sr
	need(t, str(t.res, "status") == string(referral.Requested), "status", "a new referral Task is requested")
	need(t, str(t.res, "intent") == "order", "intent", "a referral Task's intent is order")
	refersTo(t, "focus.reference", sr)
	refersTo(t, "for.reference", r.patient)
	need(t, str(t.res, "requester", "reference") == "Organization/"+w.org, "requester.reference",
		"the requester is the partner Organization the client is registered with")
	owner, ok := strings.CutPrefix(str(t.res, "owner", "reference"), "Organization/")
	need(t, ok && owner != "" && owner != w.org, "owner.reference", "the owner is the clinic's Organization")
	r.owner = owner
	need(sr, str(sr.res, "status") == "active", "status", "a new referral's ServiceRequest is active")
	need(sr, str(sr.res, "intent") == "order", "intent", "a referral's ServiceRequest intent is order")
	refersTo(sr, "subject.reference", r.patient)
	need(sr, sr.res["code"] != nil, "code", "the requested service is required")
	need(sr, sr.res["requester"] != nil, "requester", "the referrer is required")
	if ids, _ := sr.res["identifier"].([]any); len(ids) > 0 {
		first, _ := ids[0].(map[string]any)
		r.system, r.value = str(first, "system"), str(first, "value")
	}
	need(sr, r.system != "" && r.value != "", "identifier[0]", "the referral's identifier (system and value) is required: it makes re-sending safe")
	// Checking goes on, so one answer names every failing entry.

	// Ids: the ServiceRequest's from the partner and its identifier, the
	// others from it and their position.
	r.recordID = derivedID("referral", w.org, r.system, r.value)
	for _, e := range entries {
		if e == sr {
			e.id = r.recordID
		} else {
			e.id = derivedID(r.recordID, strconv.Itoa(e.index))
		}
	}
	r.provenanceID = derivedID(r.recordID, "Provenance")

	// References: urn:uuid inside the Bundle, or Type/id of the directory.
	var outside []directoryRefAt
	for _, e := range entries {
		walkRefs(e.res, "resource", func(path, ref string, set func(string)) {
			if strings.HasPrefix(ref, "#") {
				return
			}
			if target, ok := byURL[ref]; ok {
				set(target.typ + "/" + target.id)
				return
			}
			typ, id, ok := strings.Cut(ref, "/")
			if !ok || !slices.Contains(directoryRef, typ) || !validID(id) {
				issues = append(issues, issueAt(e.path(path), "a reference must name a Bundle entry by its fullUrl, or an Organization, Practitioner, PractitionerRole or Location of the gateway", ""))
				return
			}
			outside = append(outside, directoryRefAt{store.Key{Type: typ, ID: id}, e.path(path)})
		})
	}
	more, err := s.unresolvedRefs(ctx, outside)
	if err != nil {
		return nil, err
	}
	issues = append(issues, more...)
	if err := ifNoneExistMatches(sr, r.system, r.value); err != nil {
		issues = append(issues, err)
	}
	if err := joinIssues(issues); err != nil {
		return nil, err
	}
	return r, nil
}

// directoryRefAt is a reference from written outside FHIR to the gateway's
// directory, and where it was found.
type directoryRefAt struct {
	key  store.Key
	path string
}

// unresolvedRefs names each reference that does not resolve to a resource
// the gateway holds (the directory: no patient's data is probed).
func (s *Server) unresolvedRefs(ctx context.Context, refs []directoryRefAt) ([]*Error, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	keys := make([]store.Key, len(refs))
	for i, r := range refs {
		keys[i] = r.key
	}
	found, err := s.store.GetMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	have := map[store.Key]bool{}
	for _, f := range found {
		if !f.Deleted {
			have[store.Key{Type: f.Type, ID: f.ID}] = true
		}
	}
	var issues []*Error
	for _, r := range refs {
		if !have[r.key] {
			issues = append(issues, issueAt(r.path, "the reference does not resolve to a resource of the gateway", ""))
		}
	}
	return issues, nil
}

// ifNoneExistMatches checks the ServiceRequest entry's ifNoneExist, when
// given, is the search by its own identifier: the gateway answers it by
// the id it derives from that identifier.
func ifNoneExistMatches(sr *txEntry, system, value string) *Error {
	raw, present := sr.req["ifNoneExist"]
	if !present {
		return nil
	}
	ine, _ := raw.(string)
	q, err := url.ParseQuery(ine)
	if err != nil || len(q) != 1 || len(q["identifier"]) != 1 || q.Get("identifier") != system+"|"+value {
		return issueAt(sr.path("request.ifNoneExist"), "ifNoneExist must be identifier=<system>|<value> of the ServiceRequest's identifier", "")
	}
	return nil
}

// walkRefs calls fn for every Reference.reference under v, with its path
// (FHIRPath-like, from "resource") and a setter replacing it.
func walkRefs(v any, path string, fn func(path, ref string, set func(string))) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(mapsKeys(x)) {
			if k == "contained" {
				continue
			}
			if s, ok := x[k].(string); ok && k == "reference" {
				fn(path+".reference", s, func(n string) { x["reference"] = n })
				continue
			}
			walkRefs(x[k], path+"."+k, fn)
		}
	case []any:
		for i := range x {
			walkRefs(x[i], path+"["+strconv.Itoa(i)+"]", fn)
		}
	}
}

// referralRecord builds the store record of a checked referral: each
// entry's resource with its assigned id, the Patient match shown on the
// Task, the Task's business status, and a Provenance naming the partner
// Organization with the client as its agent. Each resource is marshalled
// through the canonical emit path, validated again and indexed.
func (s *Server) referralRecord(ctx context.Context, w writeCaller, r *referralIn, body []byte, now time.Time) (store.RecordWrite, error) {
	matched, basis, err := s.matchPatient(ctx, r.patient.res)
	if err != nil {
		return store.RecordWrite{}, err
	}
	r.matched, r.matchBasis = matched, basis
	pid := r.patient.id
	meta, _ := r.patient.res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, map[string]any{"system": LocalCodeSystem, "code": referredTagCode,
		"display": referredTagDisplay})
	r.patient.res["meta"] = meta
	if matched != "" {
		// Never merged: the referred Patient stays its own resource and
		// points at the clinic's (Patient.link seealso).
		links, _ := r.patient.res["link"].([]any)
		r.patient.res["link"] = append(links, map[string]any{"other": map[string]any{"reference": "Patient/" + matched}, "type": "seealso"})
	}
	// The Task shows the match and its basis, and the BSeR business status.
	input, _ := r.task.res["input"].([]any)
	// Coded in the gateway's local CodeSystem, published with its
	// ValueSets in the implementation guide (ketabridge-referral-input,
	// ketabridge-patient-match-basis); the text keeps the plain word.
	mb := matchBases[basis]
	match := map[string]any{
		"type":                 localConcept("patient-match", "Basis of the referred patient's match", "patient-match"),
		"valueCodeableConcept": localConcept(mb.code, mb.display, basis),
	}
	input = append(input, match)
	if matched != "" {
		input = append(input, map[string]any{
			"type":           localConcept("matched-patient", "Clinic patient the referred patient matched", "matched-patient"),
			"valueReference": map[string]any{"reference": "Patient/" + matched},
		})
	}
	r.task.res["input"] = input
	bs, _ := referral.BusinessStatusOf(referral.Requested)
	r.task.res["businessStatus"] = map[string]any{"coding": []any{map[string]any{
		"system": referral.BusinessStatusSystem, "code": bs.Code, "display": bs.Display}}}
	r.task.res["lastModified"] = now.Format(time.RFC3339Nano)

	rec := store.RecordWrite{
		Kind: recordReferralIn, ClinicID: r.recordID, Hash: hashOf(body), Source: body,
		Expect: []store.Expectation{{Key: store.Key{Type: "ServiceRequest", ID: r.recordID}}},
	}
	var targets []any
	for _, e := range r.entries {
		e.res["id"] = e.id
		if meta, ok := e.res["meta"].(map[string]any); ok {
			delete(meta, "versionId")
			delete(meta, "lastUpdated")
			if len(meta) == 0 {
				delete(e.res, "meta")
			}
		}
		rw, err := resourceWrite(e.typ, e.res, pid)
		if err != nil {
			return store.RecordWrite{}, issueAt(e.path("resource"), "the resource cannot be stored", err.Error())
		}
		rec.Resources = append(rec.Resources, rw)
		targets = append(targets, map[string]any{"reference": e.typ + "/" + e.id})
	}
	prov := outsideProvenance(r.provenanceID, targets, w, now)
	rw, err := resourceWrite("Provenance", prov, pid)
	if err != nil {
		return store.RecordWrite{}, err
	}
	rec.Resources = append(rec.Resources, rw)
	return rec, nil
}

// outsideProvenance is the Provenance of FHIR written from outside: the
// client's Organization as author, the client (a Device named by its client
// id) as enterer on its behalf, recorded now (docs/design/security.md
// RFL-4, PA-4).
func outsideProvenance(id string, targets []any, w writeCaller, now time.Time) map[string]any {
	return map[string]any{
		"resourceType": "Provenance",
		"id":           id,
		"target":       targets,
		"recorded":     now.Format(time.RFC3339Nano),
		"activity": map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE", "display": "create"}}},
		"agent": []any{
			map[string]any{
				"type": map[string]any{"coding": []any{map[string]any{
					"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author", "display": "Author"}}},
				"who": map[string]any{"reference": "Organization/" + w.org},
			},
			map[string]any{
				"type": map[string]any{"coding": []any{map[string]any{
					"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "enterer", "display": "Enterer"}}},
				"who": map[string]any{"type": "Device", "identifier": map[string]any{
					"system": clientIDSystem, "value": w.clientID}},
				"onBehalfOf": map[string]any{"reference": "Organization/" + w.org},
			},
		},
	}
}

// clientIDSystem names SMART client ids in identifiers (a Provenance's
// agent that is a client, as the audit trail names it).
const clientIDSystem = "urn:ietf:params:oauth:client-id"

// resourceWrite turns a resource (as JSON members, id set, references
// resolved) into a store write: decoded into the R4 model, marshalled
// through the canonical emit path, validated, indexed, and put in
// patient's compartment when it refers to that patient (the compartment
// rule, store.CompartmentParams).
func resourceWrite(typ string, res map[string]any, patient string) (store.ResourceWrite, error) {
	raw, err := json.Marshal(res)
	if err != nil {
		return store.ResourceWrite{}, err
	}
	v, err := decodeResource(typ, raw)
	if err != nil {
		return store.ResourceWrite{}, err
	}
	body, err := fhirjson.Marshal(v)
	if err != nil {
		return store.ResourceWrite{}, err
	}
	if issues := conformance.Validate(body); len(issues) > 0 {
		return store.ResourceWrite{}, fmt.Errorf("%s: %s (%s)", issues[0].Path, issues[0].Message, issues[0].Code)
	}
	rows, err := search.Extract(v)
	if err != nil {
		return store.ResourceWrite{}, err
	}
	rw := store.ResourceWrite{Type: typ, ID: str(res, "id"), Body: body, Index: rows}
	if typ == "Patient" {
		rw.Patient = rw.ID
	}
	for _, row := range rows {
		if row.Kind == store.KindReference && slices.Contains(store.CompartmentParams, row.Param) && strings.HasPrefix(row.Value, "Patient/") {
			if row.Value != "Patient/"+patient {
				return store.ResourceWrite{}, errors.New("refers to a patient other than the referral's")
			}
			rw.Patient = patient
		}
	}
	return rw, nil
}

// matchPatient finds the clinic's patient the referred one is (the rule
// of docs/referrals.md): exactly one Patient with one of its identifiers
// (system and value); else exactly one with the same family name, first
// given name, birth date and gender. Anything else is no match: the
// referred patient awaits registration, never merged into a guess.
func (s *Server) matchPatient(ctx context.Context, p map[string]any) (string, string, error) {
	ids, _ := p["identifier"].([]any)
	var vals []store.Value
	for _, x := range ids {
		m, _ := x.(map[string]any)
		if sys, val := str(m, "system"), str(m, "value"); sys != "" && val != "" {
			vals = append(vals, store.Value{System: sys, Code: val})
		}
	}
	if len(vals) > 0 {
		id, err := s.uniquePatient(ctx, []store.Clause{{Param: "identifier", Kind: store.KindToken, Values: vals}})
		if err != nil || id != "" {
			return id, matchIdentifier, err
		}
	}
	names, _ := p["name"].([]any)
	var family, given string
	if len(names) > 0 {
		n, _ := names[0].(map[string]any)
		family = str(n, "family")
		if g, _ := n["given"].([]any); len(g) > 0 {
			given, _ = g[0].(string)
		}
	}
	birth, gender := str(p, "birthDate"), str(p, "gender")
	if family == "" || given == "" || len(birth) != len("2006-01-02") || gender == "" {
		return "", matchNone, nil
	}
	day, err := time.Parse(time.DateOnly, birth)
	if err != nil {
		return "", matchNone, nil
	}
	lo := day.UnixMilli()
	id, err := s.uniquePatient(ctx, []store.Clause{
		{Param: "family", Kind: store.KindString, Values: []store.Value{{Str: store.NormalizeString(family), Exact: true}}},
		{Param: "given", Kind: store.KindString, Values: []store.Value{{Str: store.NormalizeString(given), Exact: true}}},
		{Param: "birthdate", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Eq, Lo: lo, Hi: lo + 24*3600*1000 - 1}}},
		{Param: "gender", Kind: store.KindToken, Values: []store.Value{{System: "http://hl7.org/fhir/administrative-gender", Code: gender}}},
	})
	if err != nil || id != "" {
		return id, matchDemographics, err
	}
	return "", matchNone, nil
}

// uniquePatient returns the one clinic Patient matching clauses ("" for
// none or several). Referred patients (tagged referredTag when a referral
// wrote them) are not the clinic's and are left out.
func (s *Server) uniquePatient(ctx context.Context, clauses []store.Clause) (string, error) {
	res, err := s.store.Search(ctx, store.Query{Type: "Patient", Clauses: clauses, Count: 20})
	if err != nil {
		return "", err
	}
	var found []string
	for _, r := range res.Resources {
		var p struct {
			Meta struct {
				Tag []struct{ System, Code string } `json:"tag"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			return "", err
		}
		if !slices.ContainsFunc(p.Meta.Tag, func(t struct{ System, Code string }) bool {
			return (t.System == LocalCodeSystem || t.System == legacyReferredTagSystem) && t.Code == referredTagCode
		}) {
			found = append(found, r.ID)
		}
	}
	if len(found) != 1 || res.More {
		return "", nil
	}
	return found[0], nil
}

// The tag of a Patient a referral wrote: a referred patient, awaiting
// registration at the clinic (docs/referrals.md), a code of
// LocalCodeSystem (ValueSet ketabridge-referral-tag). Patients written
// before the code was published carry it under legacyReferredTagSystem,
// which is still recognised so they never become a match.
const (
	referredTagCode         = "referred-patient"
	referredTagDisplay      = "Referred patient awaiting registration"
	legacyReferredTagSystem = "http://ketabridge.org/fhir/referral-tag"
)

// decodeResource decodes a written resource into its R4 model (a value
// the emit path and the indexer take). Elements the model does not know
// fail the validator first.
func decodeResource(typ string, raw []byte) (any, error) {
	var (
		v   any
		err error
	)
	switch typ {
	case "Task":
		v, err = decodeAs(r4.UnmarshalTask, raw)
	case "ServiceRequest":
		v, err = decodeAs(r4.UnmarshalServiceRequest, raw)
	case "Patient":
		v, err = decodeAs(r4.UnmarshalPatient, raw)
	case "Condition":
		v, err = decodeAs(r4.UnmarshalCondition, raw)
	case "MedicationStatement":
		v, err = decodeAs(r4.UnmarshalMedicationStatement, raw)
	case "Observation":
		v, err = decodeAs(r4.UnmarshalObservation, raw)
	case "Coverage":
		v, err = decodeAs(r4.UnmarshalCoverage, raw)
	case "DocumentReference":
		v, err = decodeAs(r4.UnmarshalDocumentReference, raw)
	case "Practitioner":
		v, err = decodeAs(r4.UnmarshalPractitioner, raw)
	case "Provenance":
		v, err = decodeAs(r4.UnmarshalProvenance, raw)
	case "ClaimResponse":
		v, err = decodeAs(r4.UnmarshalClaimResponse, raw)
	default:
		return nil, errors.New("the resource type is not written by the gateway")
	}
	if err != nil {
		// The decoder's text may quote values: keep only that it failed.
		return nil, errors.New("the resource does not decode as " + typ)
	}
	return v, nil
}

func decodeAs[T any](unmarshal func([]byte) (T, error), raw []byte) (any, error) {
	v, err := unmarshal(raw)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// transactionResponse answers a referral transaction with a
// transaction-response Bundle (http.html#transaction-response): per
// entry, in request order, its status, location (Type/id/_history/n),
// etag and lastModified. After a re-send (status 200) the entries are
// the resources as they are now.
func (s *Server) transactionResponse(c echo.Context, entries []*txEntry, results []store.WriteResult, status int) error {
	versions := map[store.Key]int64{}
	if len(results) == 1 {
		for _, rr := range results[0].Resources {
			versions[store.Key{Type: rr.Type, ID: rr.ID}] = rr.Version
		}
	}
	keys := make([]store.Key, len(entries))
	for i, e := range entries {
		keys[i] = store.Key{Type: e.typ, ID: e.id}
	}
	stored, err := s.store.GetMany(c.Request().Context(), keys)
	if err != nil {
		return err
	}
	byKey := map[store.Key]store.Resource{}
	for _, r := range stored {
		byKey[store.Key{Type: r.Type, ID: r.ID}] = r
	}
	var buf bytes.Buffer
	buf.WriteString(`{"resourceType":"Bundle","id":"` + uuid.NewString() + `","type":"transaction-response","entry":[`)
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		st := "201 Created"
		if status == http.StatusOK {
			st = "200 OK"
		}
		resp := map[string]any{"status": st}
		r, ok := byKey[k]
		v := versions[k]
		if ok && (v == 0 || r.Version == v) {
			resp["location"] = k.Type + "/" + k.ID + "/_history/" + strconv.FormatInt(r.Version, 10)
			resp["etag"] = etag(r.Version)
			resp["lastModified"] = r.LastUpdated.UTC().Format(time.RFC3339Nano)
		} else if v > 0 {
			resp["location"] = k.Type + "/" + k.ID + "/_history/" + strconv.FormatInt(v, 10)
			resp["etag"] = etag(v)
		}
		b, err := json.Marshal(map[string]any{"fullUrl": s.base + "/" + k.Type + "/" + k.ID, "response": resp})
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	buf.WriteString("]}")
	ct, _ := responseType(c)
	c.Response().Header().Set(echo.HeaderContentType, ct)
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.Blob(status, ct, buf.Bytes())
}
