package conformance

import (
	"encoding/json"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Code systems used by the rules.
const (
	sysActCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	sysObsCategory     = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysLOINC           = "http://loinc.org"
	sysUCUM            = "http://unitsofmeasure.org"
	sysCondClinical    = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	sysCondVerStatus   = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
)

// sensitiveTypes always hold mental-health content and carry the security
// label PSY with a confidentiality code (project rule, docs/fhir-mapping.md
// "Security labels": ketamine therapy records are psychiatric). A Condition
// carries PSY only for a mental-health diagnosis, so it is not listed; its
// labels, like every resource's, must still be well formed (securityLabels).
var sensitiveTypes = map[string]bool{
	"Observation": true, "Encounter": true, "MedicationAdministration": true,
	"MedicationRequest": true, "MedicationStatement": true, "CarePlan": true, "AdverseEvent": true,
}

// plainCodes are required bindings of elements samply types as plain strings
// (so no enum checks them).
var plainCodes = map[string]map[string]bool{
	"MedicationAdministration.status": set("in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"),
	"MedicationRequest.status":        set("active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"),
	"MedicationRequest.intent":        set("proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"),
	"MedicationStatement.status":      set("active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown", "not-taken"),
	"MedicationDispense.status":       set("preparation", "in-progress", "cancelled", "on-hold", "completed", "entered-in-error", "stopped", "declined", "unknown"),
	"Task.intent":                     set("unknown", "proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"),
}

func set(codes ...string) map[string]bool {
	m := make(map[string]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// ---------------------------------------------------------------------------
// small accessors over decoded JSON

func objOf(m map[string]any, k string) map[string]any {
	o, _ := m[k].(map[string]any)
	return o
}

func arrOf(m map[string]any, k string) []any {
	a, _ := m[k].([]any)
	return a
}

func strOf(m map[string]any, k string) (string, bool) {
	s, ok := m[k].(string)
	return s, ok
}

// hasChoice reports whether m has any alternative of the choice element prefix[x].
func hasChoice(m map[string]any, prefix string) bool {
	for k := range m {
		k = strings.TrimPrefix(k, "_")
		if p, _ := splitChoice(k); p == prefix {
			return true
		}
	}
	return false
}

// codingIs reports whether a Coding object has system and code.
func codingIs(cd any, system, code string) bool {
	m, ok := cd.(map[string]any)
	if !ok {
		return false
	}
	s, _ := strOf(m, "system")
	c, _ := strOf(m, "code")
	return s == system && c == code
}

// ccHas reports whether a CodeableConcept has a coding system|code (pattern
// matching of patternCodeableConcept, profiling.html#pattern).
func ccHas(cc map[string]any, system, code string) bool {
	for _, cd := range arrOf(cc, "coding") {
		if codingIs(cd, system, code) {
			return true
		}
	}
	return false
}

// anyCCHas reports whether any CodeableConcept in list has system|code.
func anyCCHas(list []any, system, code string) bool {
	for _, it := range list {
		if m, ok := it.(map[string]any); ok && ccHas(m, system, code) {
			return true
		}
	}
	return false
}

func idx(p string, i int) string { return p + "[" + strconv.Itoa(i) + "]" }

// ---------------------------------------------------------------------------
// datatype invariants

var reCondRef = regexp.MustCompile(`^[A-Z][A-Za-z]+\?\S+$`)

var reRelRef = regexp.MustCompile(`^([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(/_history/[A-Za-z0-9\-\.]{1,64})?$`)

// isAbsoluteURL reports an http(s) URL with a host.
func isAbsoluteURL(s string) bool {
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(s, "http://")
	}
	return ok && rest != "" && rest[0] != '/' && strings.IndexFunc(s, isSpace) < 0
}

func (c *checker) datatypeRules(typeName string, m map[string]any, path string, ctx *resCtx) {
	switch typeName {
	case "Reference":
		ref, ok := strOf(m, "reference")
		if !ok || ref == "" {
			return
		}
		switch {
		case strings.HasPrefix(ref, "#"):
			id := ref[1:]
			if id == "" { // the container itself: only from inside a contained resource
				if ctx == nil || ctx.current == "" {
					c.add(path+".reference", CodeInvariant, "ref-1: \"#\" refers to the container and is only allowed in a contained resource")
					return
				}
				if ctx.backRefs == nil {
					ctx.backRefs = map[string]bool{}
				}
				ctx.backRefs[ctx.current] = true
				return
			}
			if ctx == nil || !ctx.contained[id] {
				c.add(path+".reference", CodeInvariant, "ref-1: local reference does not resolve to a contained resource")
				return
			}
			if ctx.localRefs == nil {
				ctx.localRefs = map[string]bool{}
			}
			ctx.localRefs[id] = true
		case strings.HasPrefix(ref, "urn:uuid:"):
			if !reUUID.MatchString(ref) {
				c.add(path+".reference", CodeValue, "invalid urn:uuid reference")
			}
		case strings.HasPrefix(ref, "urn:oid:"):
			if !reOID.MatchString(ref) {
				c.add(path+".reference", CodeValue, "invalid urn:oid reference")
			}
		case strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://"):
			if !isAbsoluteURL(ref) {
				c.add(path+".reference", CodeValue, "invalid absolute reference URL")
			}
		default:
			if c.tx > 0 && reCondRef.MatchString(ref) {
				return // conditional reference, resolved by the server (http.html#trules)
			}
			sm := reRelRef.FindStringSubmatch(ref)
			if sm == nil {
				c.add(path+".reference", CodeValue, "reference is not Type/id, an absolute URL, urn:uuid:, urn:oid: or #id (references.html#literal)")
				return
			}
			if _, ok := resourceTypes[sm[1]]; !ok {
				c.add(path+".reference", CodeValue, "reference names an unknown resource type")
				return
			}
			if t, ok := strOf(m, "type"); ok && t != sm[1] {
				c.add(path+".type", CodeInvariant, "Reference.type does not match the type in Reference.reference")
			}
		}
	case "Quantity", "Age", "Count", "Distance", "Duration":
		// qty-3: If a code for the unit is present, the system SHALL also be present.
		if _, hasCode := m["code"]; hasCode {
			if _, hasSys := m["system"]; !hasSys {
				c.add(path, CodeInvariant, "qty-3: a unit code requires a system")
			}
		}
	case "Extension":
		// ext-1: Must have either extensions or value[x], not both.
		if _, ok := m["extension"]; ok && hasChoice(m, "value") {
			c.add(path, CodeInvariant, "ext-1: extension with both value[x] and nested extensions")
		}
	case "Period":
		// per-1: If present, start SHALL have a lower value than end.
		s, ok1 := strOf(m, "start")
		e, ok2 := strOf(m, "end")
		if ok1 && ok2 && !periodOrdered(s, e) {
			c.add(path, CodeInvariant, "per-1: start is after end")
		}
	case "Coding":
		// Project rule: a code is meaningless without its system.
		if _, hasCode := m["code"]; hasCode {
			if _, hasSys := m["system"]; !hasSys {
				c.add(path, CodeInvariant, "project rule: Coding.code requires Coding.system")
			}
		}
	}
}

// simpleQuantity lists Quantity elements profiled as SimpleQuantity
// (sqty-1: no comparator), keyed by Go struct and element.
var simpleQuantity = set(
	"MedicationAdministrationDosage.dose", "MedicationAdministrationDosage.rateQuantity",
	"DosageDoseAndRate.doseQuantity", "DosageDoseAndRate.rateQuantity", "Dosage.maxDosePerAdministration",
	"Dosage.maxDosePerLifetime", "Range.low", "Range.high", "MedicationRequestDispenseRequest.quantity",
	"MedicationRequestDispenseRequestInitialFill.quantity", "MedicationDispense.quantity",
	"MedicationDispense.daysSupply", "MedicationIngredient.strength", "ClaimItem.quantity",
	"ServiceRequest.quantityQuantity", "SupplyRequest.quantity",
)

// targetTypes restricts Reference targets (ElementDefinition.type.targetProfile)
// for the elements the gateway emits, keyed by Go struct and element.
var targetTypes = map[string]map[string]bool{
	"Observation.subject":                          set("Patient", "Group", "Device", "Location"),
	"Observation.encounter":                        set("Encounter"),
	"Observation.performer":                        set("Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient", "RelatedPerson"),
	"Observation.hasMember":                        set("Observation", "QuestionnaireResponse", "MolecularSequence"),
	"Condition.subject":                            set("Patient", "Group"),
	"Condition.encounter":                          set("Encounter"),
	"Encounter.subject":                            set("Patient", "Group"),
	"MedicationAdministration.subject":             set("Patient", "Group"),
	"MedicationAdministration.context":             set("Encounter", "EpisodeOfCare"),
	"MedicationAdministration.medicationReference": set("Medication"),
	"MedicationAdministration.request":             set("MedicationRequest"),
	"MedicationAdministrationPerformer.actor":      set("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Device"),
	"MedicationRequest.subject":                    set("Patient", "Group"),
	"MedicationRequest.encounter":                  set("Encounter"),
	"MedicationRequest.medicationReference":        set("Medication"),
	"MedicationRequest.requester":                  set("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device"),
	"MedicationStatement.subject":                  set("Patient", "Group"),
	"MedicationStatement.medicationReference":      set("Medication"),
	"CarePlan.subject":                             set("Patient", "Group"),
	"CarePlan.encounter":                           set("Encounter"),
	"AdverseEvent.subject":                         set("Patient", "Group", "Practitioner", "RelatedPerson"),
	"Patient.managingOrganization":                 set("Organization"),
	"Patient.generalPractitioner":                  set("Organization", "Practitioner", "PractitionerRole"),
	"Coverage.beneficiary":                         set("Patient"),
	"Coverage.payor":                               set("Organization", "Patient", "RelatedPerson"),
	"Claim.patient":                                set("Patient"),
	"Claim.provider":                               set("Practitioner", "PractitionerRole", "Organization"),
	"ServiceRequest.subject":                       set("Patient", "Group", "Location", "Device"),
	"ServiceRequest.requester":                     set("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device"),
	"Encounter.serviceProvider":                    set("Organization"),
}

// elementRules are checks that depend on which element holds a datatype:
// sqty-1 and Reference target types.
func (c *checker) elementRules(key string, v any, path string) {
	sq := simpleQuantity[key]
	tt := targetTypes[key]
	if !sq && tt == nil {
		return
	}
	items, isArr := v.([]any)
	if !isArr {
		items = []any{v}
	}
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		ip := path
		if isArr {
			ip = idx(path, i)
		}
		if _, ok := m["comparator"]; ok && sq {
			c.add(ip+".comparator", CodeInvariant, "sqty-1: the comparator is not used on a SimpleQuantity")
		}
		if tt == nil {
			continue
		}
		ref, _ := strOf(m, "reference")
		var typ string
		if sm := reRelRef.FindStringSubmatch(ref); sm != nil {
			if _, known := resourceTypes[sm[1]]; known {
				typ = sm[1] // unknown types are reported by the Reference check
			}
		} else if isAbsoluteURL(ref) {
			parts := strings.Split(strings.TrimSuffix(ref, "/"), "/")
			if n := len(parts); n >= 2 && strings.Contains(ref, "/_history/") && n >= 4 {
				typ = parts[n-4]
			} else if n >= 2 {
				typ = parts[n-2]
			}
			if _, known := resourceTypes[typ]; !known {
				typ = ""
			}
		}
		if typ != "" && !tt[typ] {
			c.add(ip+".reference", CodeValue, "reference to a "+typ+" is not allowed here")
		}
	}
}

// periodOrdered compares two FHIR dateTimes as FHIRPath does: at the
// precision both have; equal at that precision counts as ordered (the
// comparison is empty, so per-1 holds).
func periodOrdered(start, end string) bool {
	if len(start) > 10 && len(end) > 10 {
		a, err1 := time.Parse(time.RFC3339Nano, start)
		b, err2 := time.Parse(time.RFC3339Nano, end)
		if err1 != nil || err2 != nil {
			return true // format issues are reported by the primitive check
		}
		return !a.After(b)
	}
	n := min(len(start), len(end), 10)
	return start[:n] <= end[:n]
}

// ---------------------------------------------------------------------------
// resource rules

func (c *checker) resourceRules(rt string, r map[string]any, p string, ctx *resCtx, inContained bool) {
	for key, codes := range plainCodes {
		tn, en, _ := strings.Cut(key, ".")
		if tn != rt {
			continue
		}
		if s, ok := strOf(r, en); ok && s != "" && !codes[s] {
			c.add(p+"."+en, CodeCodeInvalid, "code "+strconv.Quote(safeCode(s))+" is not in the required value set")
		}
	}
	if inContained {
		meta := objOf(r, "meta")
		// dom-4: contained resources shall not have meta.versionId or meta.lastUpdated.
		if _, ok := meta["versionId"]; ok {
			c.add(p+".meta.versionId", CodeInvariant, "dom-4: contained resource with meta.versionId")
		}
		if _, ok := meta["lastUpdated"]; ok {
			c.add(p+".meta.lastUpdated", CodeInvariant, "dom-4: contained resource with meta.lastUpdated")
		}
		// dom-5: contained resources shall not have a security label.
		if _, ok := meta["security"]; ok {
			c.add(p+".meta.security", CodeInvariant, "dom-5: contained resource with a security label")
		}
	} else if len(ctx.contained) > 0 {
		// dom-3: every contained resource is referenced from the container
		// or references it.
		ids := make([]string, 0, len(ctx.contained))
		for id := range ctx.contained {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if !ctx.localRefs[id] && !ctx.backRefs[id] {
				c.add(p+".contained", CodeInvariant, "dom-3: a contained resource is not referenced")
			}
		}
	}
	if !inContained {
		c.securityLabels(r, p, sensitiveTypes[rt])
	}
	switch rt {
	case "Observation":
		c.observationRules(r, p)
	case "MedicationAdministration":
		// mad-1: SHALL have at least one of dosage.dose or dosage.rate[x].
		if d := objOf(r, "dosage"); d != nil {
			if _, ok := d["dose"]; !ok && !hasChoice(d, "rate") {
				c.add(p+".dosage", CodeInvariant, "mad-1: dosage needs dose or rate[x]")
			}
		}
	case "Condition":
		c.conditionRules(r, p)
	case "CarePlan":
		// cpl-3: Provide a reference or detail, not both.
		for i, a := range arrOf(r, "activity") {
			am, _ := a.(map[string]any)
			_, hasRef := am["reference"]
			_, hasDetail := am["detail"]
			if hasRef && hasDetail {
				c.add(idx(p+".activity", i), CodeInvariant, "cpl-3: provide a reference or detail, not both")
			}
		}
	case "Bundle":
		c.bundleRules(r, p)
	}
	c.profiles(rt, r, p)
}

// securityLabels checks meta.security against the HL7 classification (FHIR R4
// security-labels.html#hcs): at most one confidentiality code, and one beside
// a sensitivity label (PSY); and the project rule that a sensitive type
// (required) carries PSY and a confidentiality code.
func (c *checker) securityLabels(r map[string]any, p string, required bool) {
	var psy bool
	var conf int
	for _, cd := range arrOf(objOf(r, "meta"), "security") {
		psy = psy || codingIs(cd, sysActCode, "PSY")
		if m, ok := cd.(map[string]any); ok && m["system"] == sysConfidentiality {
			conf++
		}
	}
	switch {
	case conf > 1:
		c.add(p+".meta.security", CodeValue, "more than one confidentiality code ("+sysConfidentiality+")")
	case required && !psy:
		c.add(p+".meta.security", CodeRequired, "project rule: security label PSY ("+sysActCode+") missing")
	case (required || psy) && conf == 0:
		c.add(p+".meta.security", CodeRequired, "project rule: confidentiality code ("+sysConfidentiality+") missing beside PSY")
	}
}

func (c *checker) observationRules(r map[string]any, p string) {
	hasValue := hasChoice(r, "value")
	// obs-6: dataAbsentReason SHALL only be present if value[x] is not present.
	if _, ok := r["dataAbsentReason"]; ok && hasValue {
		c.add(p+".dataAbsentReason", CodeInvariant, "obs-6: dataAbsentReason with value[x]")
	}
	// obs-7: If Observation.code is the same as a component code then the
	// value element associated with the code SHALL NOT be present.
	if hasValue {
		codings := arrOf(objOf(r, "code"), "coding")
		for i, comp := range arrOf(r, "component") {
			cm, _ := comp.(map[string]any)
			for _, cd := range arrOf(objOf(cm, "code"), "coding") {
				for _, oc := range codings {
					if reflect.DeepEqual(cd, oc) {
						c.add(idx(p+".component", i)+".code", CodeInvariant, "obs-7: component code equals the observation code while value[x] is present")
					}
				}
			}
		}
	}
}

func (c *checker) conditionRules(r map[string]any, p string) {
	clinical := objOf(r, "clinicalStatus")
	ver := objOf(r, "verificationStatus")
	// Required bindings (condition.html): clinicalStatus, verificationStatus.
	checkCC := func(cc map[string]any, path, system string, codes map[string]bool) {
		if cc == nil {
			return
		}
		ok := false
		for _, cd := range arrOf(cc, "coding") {
			m, _ := cd.(map[string]any)
			if s, _ := strOf(m, "system"); s == system {
				code, _ := strOf(m, "code")
				if codes[code] {
					ok = true
				} else {
					c.add(path, CodeCodeInvalid, "code "+strconv.Quote(safeCode(code))+" is not in the required value set")
					return
				}
			}
		}
		if !ok {
			c.add(path, CodeCodeInvalid, "no coding from the required value set ("+system+")")
		}
	}
	checkCC(clinical, p+".clinicalStatus", sysCondClinical, set("active", "recurrence", "relapse", "inactive", "remission", "resolved"))
	checkCC(ver, p+".verificationStatus", sysCondVerStatus, set("unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"))
	// con-4: If condition is abated, then clinicalStatus must be either inactive, resolved, or remission.
	if hasChoice(r, "abatement") && clinical != nil &&
		!ccHas(clinical, sysCondClinical, "inactive") && !ccHas(clinical, sysCondClinical, "resolved") && !ccHas(clinical, sysCondClinical, "remission") {
		c.add(p+".clinicalStatus", CodeInvariant, "con-4: abated condition needs clinicalStatus inactive, resolved or remission")
	}
	// con-5: Condition.clinicalStatus SHALL NOT be present if verification Status is entered-in-error.
	if ver != nil && ccHas(ver, sysCondVerStatus, "entered-in-error") && clinical != nil {
		c.add(p+".clinicalStatus", CodeInvariant, "con-5: clinicalStatus with verificationStatus entered-in-error")
	}
}

// bundleRules checks bdl-1..12 (bundle.html#invs) and the project's searchset
// rules (fullUrl present, absolute and ending in Type/id; http.html#search).
func (c *checker) bundleRules(r map[string]any, p string) {
	typ, _ := strOf(r, "type")
	if _, ok := r["total"]; ok && typ != "searchset" && typ != "history" {
		c.add(p+".total", CodeInvariant, "bdl-1: total only when a search or history")
	}
	needReq := typ == "batch" || typ == "transaction" || typ == "history"
	needResp := typ == "batch-response" || typ == "transaction-response" || typ == "history"
	matches := 0
	seen := map[string]bool{}
	entries := arrOf(r, "entry")
	for i, it := range entries {
		ep := idx(p+".entry", i)
		e, ok := it.(map[string]any)
		if !ok {
			continue
		}
		res := objOf(e, "resource")
		if _, ok := e["search"]; ok && typ != "searchset" {
			c.add(ep+".search", CodeInvariant, "bdl-2: entry.search only when a search")
		}
		_, hasReq := e["request"]
		switch {
		case needReq && !hasReq:
			c.add(ep+".request", CodeRequired, "bdl-3: entry.request mandatory for batch/transaction/history")
		case !needReq && hasReq:
			c.add(ep+".request", CodeInvariant, "bdl-3: entry.request only for batch/transaction/history")
		}
		_, hasResp := e["response"]
		switch {
		case needResp && !hasResp:
			c.add(ep+".response", CodeRequired, "bdl-4: entry.response mandatory for batch-response/transaction-response/history")
		case !needResp && hasResp:
			c.add(ep+".response", CodeInvariant, "bdl-4: entry.response only for batch-response/transaction-response/history")
		}
		if res == nil && !hasReq && !hasResp {
			c.add(ep, CodeInvariant, "bdl-5: entry must have a resource unless there's a request or response")
		}
		fu, hasFU := strOf(e, "fullUrl")
		if hasFU {
			if strings.Contains(fu, "/_history/") {
				c.add(ep+".fullUrl", CodeInvariant, "bdl-8: fullUrl cannot be a version specific reference")
			}
			if !isAbsoluteURL(fu) && !reUUID.MatchString(fu) && !reOID.MatchString(fu) {
				c.add(ep+".fullUrl", CodeValue, "fullUrl must be an absolute URL, urn:uuid: or urn:oid:")
			}
			if typ != "history" {
				key := fu
				if v, ok := strOf(objOf(res, "meta"), "versionId"); ok {
					key += "|" + v
				}
				if seen[key] {
					c.add(ep+".fullUrl", CodeInvariant, "bdl-7: fullUrl must be unique in a bundle")
				}
				seen[key] = true
			}
		}
		if typ == "searchset" {
			mode, _ := strOf(objOf(e, "search"), "mode")
			if mode == "match" {
				matches++
			}
			switch {
			case res == nil:
			case mode == "outcome" && hasFU && (reUUID.MatchString(fu) || reOID.MatchString(fu)):
				// An outcome entry (search.html#errors) is not a stored
				// resource and has no RESTful URL; a urn:uuid fullUrl is the
				// identity bundle.html allows for it.
			case !hasFU:
				c.add(ep+".fullUrl", CodeRequired, "searchset entries need a fullUrl")
			case !isAbsoluteURL(fu):
				if reUUID.MatchString(fu) || reOID.MatchString(fu) { // otherwise reported above
					c.add(ep+".fullUrl", CodeValue, "searchset fullUrl must be an absolute http(s) URL")
				}
			default:
				rt, _ := strOf(res, "resourceType")
				id, _ := strOf(res, "id")
				if id == "" || !strings.HasSuffix(fu, "/"+rt+"/"+id) {
					c.add(ep+".fullUrl", CodeValue, "fullUrl does not end with the entry's resourceType/id")
				}
			}
		}
	}
	if typ == "searchset" {
		if n, ok := r["total"].(json.Number); ok {
			if t, err := strconv.Atoi(string(n)); err == nil && t < matches {
				c.add(p+".total", CodeValue, "total is less than the number of match entries")
			}
		}
	}
	switch typ {
	case "document":
		id := objOf(r, "identifier")
		_, hasSys := id["system"]
		_, hasVal := id["value"]
		if !hasSys || !hasVal {
			c.add(p+".identifier", CodeRequired, "bdl-9: a document must have an identifier with a system and a value")
		}
		if _, ok := r["timestamp"]; !ok {
			c.add(p+".timestamp", CodeRequired, "bdl-10: a document must have a date")
		}
		if !firstResourceIs(entries, "Composition") {
			c.add(p+".entry", CodeInvariant, "bdl-11: a document must have a Composition as the first resource")
		}
	case "message":
		if !firstResourceIs(entries, "MessageHeader") {
			c.add(p+".entry", CodeInvariant, "bdl-12: a message must have a MessageHeader as the first resource")
		}
	}
}

func firstResourceIs(entries []any, rt string) bool {
	if len(entries) == 0 {
		return false
	}
	e, _ := entries[0].(map[string]any)
	t, _ := strOf(objOf(e, "resource"), "resourceType")
	return t == rt
}
