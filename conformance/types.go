package conformance

import (
	"encoding/json"
	"fmt"
	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"reflect"
	"strings"
	"sync"
)

// elemKind is the JSON shape of one element (json.html#primitive).
type elemKind int

const (
	kString   elemKind = iota // JSON string (FHIR primitive given by prim)
	kEnum                     // JSON string checked by a samply code enum's UnmarshalJSON
	kBool                     // JSON boolean
	kInt                      // JSON number without fraction (integer/positiveInt/unsignedInt)
	kDecimal                  // JSON number
	kObject                   // JSON object of a datatype or backbone element
	kResource                 // JSON object that is a resource (Bundle.entry.resource, contained)
)

func (k elemKind) jsonType() string {
	switch k {
	case kBool:
		return "boolean"
	case kInt, kDecimal:
		return "number"
	case kObject, kResource:
		return "object"
	}
	return "string"
}

// elemInfo describes one element of a samply struct.
type elemInfo struct {
	name     string
	kind     elemKind
	array    bool
	required bool   // min 1 and not part of a choice group
	group    int    // index into typeInfo.groups, -1 if none
	prim     string // FHIR primitive type for kString/kInt ("string", "dateTime", "positiveInt", ...)
	enum     reflect.Type
	obj      reflect.Type // struct type for kObject
}

// choiceGroup is a choice element name[x] and its alternatives.
type choiceGroup struct {
	prefix   string
	members  []string
	required bool
}

// typeInfo is the reflection table of one samply struct type.
type typeInfo struct {
	name     string
	elems    map[string]*elemInfo
	order    []string // element names in struct order
	groups   []choiceGroup
	resource bool
	domain   bool // a DomainResource: may carry contained/text
}

var (
	typeInfos   sync.Map // reflect.Type -> *typeInfo
	numberType  = reflect.TypeFor[json.Number]()
	rawType     = reflect.TypeFor[json.RawMessage]()
	unmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// infoFor returns the cached reflection table of struct type t.
func infoFor(t reflect.Type) *typeInfo {
	if ti, ok := typeInfos.Load(t); ok {
		return ti.(*typeInfo)
	}
	ti := buildInfo(t)
	actual, _ := typeInfos.LoadOrStore(t, ti)
	return actual.(*typeInfo)
}

// choiceSuffixes are the capitalised FHIR type names ending a choice
// alternative (formats.html#choice), longest first: the emit path's list.
var choiceSuffixes = fhirjson.ChoiceTypeSuffixes

func splitChoice(name string) (prefix, suffix string) {
	for _, s := range choiceSuffixes {
		if len(name) > len(s) && strings.HasSuffix(name, s) {
			return name[:len(name)-len(s)], s
		}
	}
	return "", ""
}

func buildInfo(t reflect.Type) *typeInfo {
	ti := &typeInfo{name: t.Name(), elems: map[string]*elemInfo{}}
	_, ti.resource = resourceTypes[t.Name()]
	type cand struct {
		name, suffix string
		required     bool
	}
	byPrefix := map[string][]cand{}
	var prefixes []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		e := &elemInfo{name: name, group: -1, required: !strings.Contains(opts, "omitempty")}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft != rawType {
			e.array = true
			ft = ft.Elem()
		}
		switch {
		case ft == rawType:
			e.kind = kResource
		case ft == numberType:
			e.kind = kDecimal
		case ft.Kind() == reflect.Struct:
			e.kind, e.obj = kObject, ft
		case ft.Kind() == reflect.Bool:
			e.kind = kBool
		case ft.Kind() == reflect.Int:
			if reflect.PointerTo(ft).Implements(unmarshaler) {
				e.kind, e.enum = kEnum, ft
			} else {
				e.kind, e.prim = kInt, "integer"
			}
		case ft.Kind() == reflect.String:
			e.kind, e.prim = kString, "string"
		default:
			panic(fmt.Sprintf("conformance: %s.%s: unsupported Go type %s", t.Name(), name, f.Type))
		}
		ti.elems[name] = e
		ti.order = append(ti.order, name)
		if name == "text" && ft.Name() == "Narrative" && ti.resource {
			ti.domain = true
		}
		if !e.array && e.kind != kResource {
			if pre, suf := splitChoice(name); pre != "" {
				if _, ok := byPrefix[pre]; !ok {
					prefixes = append(prefixes, pre)
				}
				byPrefix[pre] = append(byPrefix[pre], cand{name, suf, e.required})
			}
		}
	}
	for _, pre := range prefixes {
		cs := byPrefix[pre]
		if len(cs) < 2 {
			continue
		}
		g := choiceGroup{prefix: pre, required: cs[0].required}
		for _, c := range cs {
			if c.required != g.required {
				g.required = false // mixed: not a generated choice group
			}
			g.members = append(g.members, c.name)
		}
		for _, c := range cs {
			e := ti.elems[c.name]
			e.group = len(ti.groups)
			e.required = false
			if p := suffixPrim[c.suffix]; p != "" && (e.kind == kString || e.kind == kInt) {
				e.prim = p
			}
		}
		ti.groups = append(ti.groups, g)
	}
	for name, p := range primTable {
		tn, en, _ := strings.Cut(name, ".")
		if tn == ti.name {
			if e := ti.elems[en]; e != nil {
				e.prim = p
			}
		}
	}
	if ti.resource {
		if e := ti.elems["id"]; e != nil {
			e.prim = "id"
		}
		if e := ti.elems["implicitRules"]; e != nil {
			e.prim = "uri"
		}
		if e := ti.elems["language"]; e != nil {
			e.prim = "code"
		}
	}
	return ti
}

// suffixPrim: FHIR primitive type of a choice alternative by its suffix.
var suffixPrim = map[string]string{
	"Base64Binary": "base64Binary", "Canonical": "canonical", "Code": "code", "Date": "date",
	"DateTime": "dateTime", "Id": "id", "Instant": "instant", "Integer": "integer", "Markdown": "markdown",
	"Oid": "oid", "PositiveInt": "positiveInt", "String": "string", "Time": "time",
	"UnsignedInt": "unsignedInt", "Uri": "uri", "Url": "url", "Uuid": "uuid",
}

// primTable gives the FHIR primitive type of samply string/int fields that are
// not "string"/"integer", keyed by Go struct name and JSON element name
// (R4 StructureDefinitions). Choice alternatives are typed by their suffix;
// resource id/implicitRules/language are set for every resource.
var primTable = map[string]string{
	// datatypes
	"Meta.lastUpdated": "instant", "Meta.versionId": "id", "Meta.source": "uri", "Meta.profile": "canonical",
	"Period.start": "dateTime", "Period.end": "dateTime",
	"Coding.system": "uri", "Coding.code": "code",
	"Identifier.system": "uri",
	"Quantity.system":   "uri", "Quantity.code": "code",
	"Age.system": "uri", "Age.code": "code", "Duration.system": "uri", "Duration.code": "code",
	"Distance.system": "uri", "Distance.code": "code", "Count.system": "uri", "Count.code": "code",
	"Money.currency":         "code",
	"Reference.type":         "uri",
	"Extension.url":          "uri",
	"Attachment.contentType": "code", "Attachment.language": "code", "Attachment.data": "base64Binary",
	"Attachment.url": "url", "Attachment.size": "unsignedInt", "Attachment.hash": "base64Binary",
	"Attachment.creation": "dateTime",
	"Annotation.time":     "dateTime",
	"Signature.when":      "instant", "Signature.targetFormat": "code", "Signature.sigFormat": "code",
	"Signature.data":     "base64Binary",
	"Timing.event":       "dateTime",
	"TimingRepeat.count": "positiveInt", "TimingRepeat.countMax": "positiveInt",
	"TimingRepeat.frequency": "positiveInt", "TimingRepeat.frequencyMax": "positiveInt",
	"TimingRepeat.offset": "unsignedInt", "TimingRepeat.timeOfDay": "time",
	"SampledData.dimensions": "positiveInt",
	"Narrative.div":          "xhtml",
	"ContactPoint.rank":      "positiveInt",
	"Expression.language":    "code", "Expression.reference": "uri",
	"RelatedArtifact.url": "url", "RelatedArtifact.resource": "canonical",
	"DataRequirement.profile": "canonical",
	"Dosage.sequence":         "integer",
	// resources the gateway emits
	"Patient.birthDate":       "date",
	"Practitioner.birthDate":  "date",
	"RelatedPerson.birthDate": "date",
	"Person.birthDate":        "date",
	"Observation.issued":      "instant",
	"DiagnosticReport.issued": "instant",
	"Provenance.recorded":     "instant",
	"Provenance.policy":       "uri",
	"AuditEvent.recorded":     "instant",
	"AuditEventAgent.policy":  "uri",
	"Bundle.timestamp":        "instant", "Bundle.total": "unsignedInt",
	"BundleLink.url": "uri", "BundleEntry.fullUrl": "uri",
	"BundleEntryRequest.url": "uri", "BundleEntryRequest.ifModifiedSince": "instant",
	"BundleEntryResponse.location": "uri", "BundleEntryResponse.lastModified": "instant",
	"Condition.recordedDate":          "dateTime",
	"AllergyIntolerance.recordedDate": "dateTime", "AllergyIntolerance.lastOccurrence": "dateTime",
	"MedicationRequest.authoredOn": "dateTime",
	"MedicationRequest.status":     "code", "MedicationRequest.intent": "code",
	"MedicationRequest.instantiatesCanonical": "canonical", "MedicationRequest.instantiatesUri": "uri",
	"MedicationRequestDispenseRequest.numberOfRepeatsAllowed": "unsignedInt",
	"MedicationAdministration.status":                         "code", "MedicationAdministration.instantiates": "uri",
	"MedicationStatement.status": "code", "MedicationStatement.dateAsserted": "dateTime",
	"MedicationDispense.status":       "code",
	"MedicationDispense.whenPrepared": "dateTime", "MedicationDispense.whenHandedOver": "dateTime",
	"ServiceRequest.authoredOn":            "dateTime",
	"ServiceRequest.instantiatesCanonical": "canonical", "ServiceRequest.instantiatesUri": "uri",
	"Task.authoredOn": "dateTime", "Task.lastModified": "dateTime", "Task.intent": "code",
	"Task.instantiatesCanonical": "canonical", "Task.instantiatesUri": "uri",
	"TaskRestriction.repetitions":    "positiveInt",
	"CarePlan.created":               "dateTime",
	"CarePlan.instantiatesCanonical": "canonical", "CarePlan.instantiatesUri": "uri",
	"CarePlanActivityDetail.instantiatesCanonical": "canonical",
	"CarePlanActivityDetail.instantiatesUri":       "uri",
	"AdverseEvent.date":                            "dateTime", "AdverseEvent.detected": "dateTime", "AdverseEvent.recordedDate": "dateTime",
	"Claim.created":          "dateTime",
	"ClaimCareTeam.sequence": "positiveInt", "ClaimSupportingInfo.sequence": "positiveInt",
	"ClaimDiagnosis.sequence": "positiveInt", "ClaimProcedure.sequence": "positiveInt",
	"ClaimProcedure.date": "dateTime", "ClaimInsurance.sequence": "positiveInt",
	"ClaimAccident.date": "date", "ClaimItem.sequence": "positiveInt",
	"ClaimItem.careTeamSequence": "positiveInt", "ClaimItem.diagnosisSequence": "positiveInt",
	"ClaimItem.procedureSequence": "positiveInt", "ClaimItem.informationSequence": "positiveInt",
	"ClaimItemDetail.sequence": "positiveInt", "ClaimItemDetailSubDetail.sequence": "positiveInt",
	"ClaimResponse.created":              "dateTime",
	"Coverage.order":                     "positiveInt",
	"CoverageEligibilityRequest.created": "dateTime", "CoverageEligibilityResponse.created": "dateTime",
	"Consent.dateTime":       "dateTime",
	"Composition.date":       "dateTime",
	"DocumentReference.date": "instant",
	"Communication.sent":     "dateTime", "Communication.received": "dateTime",
	"CommunicationRequest.authoredOn": "dateTime",
	"QuestionnaireResponse.authored":  "dateTime", "QuestionnaireResponse.questionnaire": "canonical",
	"Immunization.recorded": "dateTime", "Immunization.expirationDate": "date",
	"Procedure.instantiatesCanonical": "canonical", "Procedure.instantiatesUri": "uri",
	"Location.status":                      "code",
	"LocationHoursOfOperation.openingTime": "time", "LocationHoursOfOperation.closingTime": "time",
	"PractitionerRoleAvailableTime.availableStartTime": "time",
	"PractitionerRoleAvailableTime.availableEndTime":   "time",
	"Endpoint.address":   "url",
	"Binary.contentType": "code", "Binary.data": "base64Binary",
	"Group.quantity": "unsignedInt",
	// conformance resources the gateway publishes
	"CapabilityStatement.url": "uri", "CapabilityStatement.date": "dateTime",
	"CapabilityStatement.instantiates": "canonical", "CapabilityStatement.imports": "canonical",
	"CapabilityStatement.format": "code", "CapabilityStatement.patchFormat": "code",
	"CapabilityStatement.implementationGuide":               "canonical",
	"CapabilityStatementSoftware.releaseDate":               "dateTime",
	"CapabilityStatementImplementation.url":                 "url",
	"CapabilityStatementRestResource.profile":               "canonical",
	"CapabilityStatementRestResource.supportedProfile":      "canonical",
	"CapabilityStatementRestResourceSearchParam.definition": "canonical",
	"CapabilityStatementRestResourceOperation.definition":   "canonical",
	"CapabilityStatementRest.compartment":                   "canonical",
	"StructureDefinition.url":                               "uri", "StructureDefinition.date": "dateTime",
	"StructureDefinition.baseDefinition": "canonical", "StructureDefinition.type": "uri",
	"OperationDefinition.url": "uri", "OperationDefinition.code": "code",
	"SearchParameter.url": "uri", "SearchParameter.code": "code", "SearchParameter.base": "code",
	"SearchParameter.target": "code",
}
