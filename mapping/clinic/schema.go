package clinic

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/invopop/jsonschema"
)

// SchemaID is the $id of the clinic record schema.
const SchemaID = "https://ketabridge.github.io/schema/clinic-record.json"

// kindTypes maps each kind to its struct type, in Kinds order.
func kindTypes() []reflect.Type {
	out := make([]reflect.Type, len(Kinds))
	for i, k := range Kinds {
		r, _ := New(k)
		out[i] = reflect.TypeOf(r).Elem()
	}
	return out
}

// Schema returns the JSON Schema (draft 2020-12) of a clinic record: a oneOf
// over the kinds, each a $ref to its definition whose "kind" is a const, with
// an OpenAPI-style "discriminator" annotation on kind. It is generated from
// the structs in records.go with invopop/jsonschema and then given the value
// sets, formats, patterns and ranges Validate enforces, so it accepts no
// field Decode rejects. Checks that need more than one field (sums, end after
// start, dose arithmetic) and references are only in Validate and CheckRefs.
// The caller may modify the returned slice.
func Schema() []byte {
	return slices.Clone(schemaOnce())
}

var schemaOnce = sync.OnceValue(func() []byte {
	b, err := json.MarshalIndent(buildSchema(), "", "  ")
	if err != nil {
		panic(fmt.Sprintf("clinic: schema: %v", err)) // static input: a bug, caught by tests
	}
	return b
})

func buildSchema() *jsonschema.Schema {
	r := &jsonschema.Reflector{Anonymous: true}
	defs := jsonschema.Definitions{}
	for _, t := range kindTypes() {
		s := r.ReflectFromType(t)
		for name, d := range s.Definitions {
			defs[name] = d
		}
	}
	for name, d := range defs {
		if p, ok := schemaProps[name]; ok {
			for prop, apply := range p {
				ps, ok := d.Properties.Get(prop)
				if !ok {
					panic("clinic: schema: no property " + name + "." + prop)
				}
				apply(ps)
			}
		}
		d.Required = slices.DeleteFunc(d.Required, func(p string) bool { return notRequired[name+"."+p] })
	}
	top := &jsonschema.Schema{
		Version:     jsonschema.Version,
		ID:          SchemaID,
		Title:       "KetaBridge clinic record",
		Description: "One record a clinic pushes to POST /internal/v1/records; see docs/clinic-records.md.",
		Definitions: defs,
	}
	mapping := map[string]string{}
	for i, t := range kindTypes() {
		d := defs[t.Name()]
		kind := &jsonschema.Schema{Type: "string", Const: string(Kinds[i])}
		d.Properties.Set("kind", kind)
		d.Description = "A clinic record of kind " + string(Kinds[i]) + "."
		ref := "#/$defs/" + t.Name()
		top.OneOf = append(top.OneOf, &jsonschema.Schema{Ref: ref})
		mapping[string(Kinds[i])] = ref
	}
	top.Extras = map[string]any{"discriminator": map[string]any{"propertyName": "kind", "mapping": mapping}}
	return top
}

// notRequired lists members the reflector marks required (no omitempty)
// that Decode and Validate accept absent, so the schema does not require them.
var notRequired = map[string]bool{
	"REMSMonitoring.enrolled": true, // false when absent
	"Protocol.monitoring":     true, // all members optional
	"Consent.recipientIds":    true, // a deny may name no one: it applies to every recipient
}

type schemaEdit func(*jsonschema.Schema)

func enum(values []string) schemaEdit {
	return func(s *jsonschema.Schema) {
		s.Enum = nil
		for _, v := range values {
			s.Enum = append(s.Enum, v)
		}
	}
}

func itemsEnum(values []string) schemaEdit {
	return func(s *jsonschema.Schema) { enum(values)(s.Items) }
}

func format(f string) schemaEdit { return func(s *jsonschema.Schema) { s.Format = f } }

func pattern(p string) schemaEdit { return func(s *jsonschema.Schema) { s.Pattern = p } }

func itemsPattern(p string) schemaEdit { return func(s *jsonschema.Schema) { s.Items.Pattern = p } }

func minItems(n uint64) schemaEdit { return func(s *jsonschema.Schema) { s.MinItems = &n } }

func numRange(lo, hi float64) schemaEdit {
	return func(s *jsonschema.Schema) {
		s.Minimum = json.Number(fmtFloat(lo))
		s.Maximum = json.Number(fmtFloat(hi))
	}
}

func all(edits ...schemaEdit) schemaEdit {
	return func(s *jsonschema.Schema) {
		for _, e := range edits {
			e(s)
		}
	}
}

var (
	idRef    = pattern(idPattern.String())
	date     = format("date")
	dateTime = format("date-time")
	icd10    = pattern(icd10Pattern.String())
)

// schemaProps adds to the reflected definitions what Validate checks on a
// single member.
var schemaProps = map[string]map[string]schemaEdit{
	"Patient": {"id": idRef, "birthDate": all(date, pattern(datePattern)), "sex": enum(sexes), "organizationId": idRef,
		"race": itemsEnum(races), "ethnicity": enum(ethnicities), "birthSex": enum(birthSexes),
		"language": pattern(languagePattern.String())},
	"Practitioner": {"id": idRef, "npi": pattern(npiPattern.String()), "specialty": pattern(nuccPattern.String())},
	"Organization": {"id": idRef, "type": enum(orgTypes), "npi": pattern(npiPattern.String()),
		"naic": pattern(naicPattern.String()), "payerId": pattern(payerIDPattern.String())},
	"Location": {"id": idRef, "organizationId": idRef},
	"Protocol": {"id": idRef, "drug": enum(drugs), "route": enum(routes), "status": enum(protocolStatuses),
		"indications": all(minItems(1), itemsPattern(icd10Pattern.String())), "organizationId": idRef,
		"infusionMinutes": numRange(0, 600)},
	"DoseRule": {"rule": enum(doseRules)},
	"Product":  {"form": enum(productForms), "ndc": pattern(ndcPattern.String())},
	"Schedule": {"sessions": numRange(1, 1000), "frequency": numRange(1, 31), "periodDays": numRange(1, 366)},
	"Course": {"id": idRef, "patientId": idRef, "protocolId": idRef, "prescriberId": idRef, "diagnosisId": idRef,
		"coverageId": idRef, "start": date, "end": date, "status": enum(courseStatuses), "phase": enum(coursePhases),
		"authoredOn": dateTime},
	"Diagnosis": {"id": idRef, "patientId": idRef, "icd10": icd10, "clinicalStatus": enum(clinicalStatuses),
		"recorderId": idRef},
	"Session": {"id": idRef, "patientId": idRef, "courseId": idRef, "locationId": idRef, "clinicianId": idRef,
		"status": enum(sessionStatuses), "scheduledStart": dateTime, "actualStart": dateTime, "actualEnd": dateTime,
		"dischargeTime": dateTime, "weightKg": numRange(minWeightKg, maxWeightKg), "weightTime": dateTime},
	"Administration": {"drug": enum(drugs), "route": enum(routes), "start": dateTime, "end": dateTime,
		"ndc": pattern(ndcPattern.String()), "performerId": idRef},
	"Vitals": {"time": dateTime, "systolic": numRange(minSystolic, maxSystolic),
		"diastolic": numRange(minDiastolic, maxDiastolic), "heartRate": numRange(minHR, maxHR),
		"respRate": numRange(minRR, maxRR), "spo2": numRange(minSpO2, maxSpO2), "tempC": numRange(minTempC, maxTempC)},
	"Assessment": {"instrument": enum(instruments), "time": dateTime, "riskLevel": enum(riskLevels),
		"timing": enum(timings), "difficulty": numRange(0, 3)},
	"AdverseEffect": {"effect": enum(effects), "severity": enum(severities), "action": enum(actions),
		"onset": dateTime, "resolved": dateTime, "causality": enum(causalities)},
	"Coverage": {"id": idRef, "patientId": idRef, "payerId": idRef, "status": enum(coverageStatuses),
		"relationship": enum(relationships), "payerType": enum(payerTypes), "start": date, "end": date},
	"Consent": {"id": idRef, "patientId": idRef, "status": enum(consentStatuses), "decision": enum(decisions),
		"dateTime": dateTime, "recipientIds": itemsPattern(idPattern.String()),
		"purposes": all(minItems(1), itemsEnum(purposes)), "dataClasses": itemsEnum(dataClasses),
		"start": date, "end": date},
	"PriorAuthResponse": {"id": idRef, "patientId": idRef, "courseId": idRef, "payerId": idRef,
		"outcome": enum(paOutcomes), "created": dateTime, "start": date, "end": date,
		"requestedSessions": numRange(1, 1000), "approvedSessions": numRange(0, 1000)},
	"Referral": {"id": idRef, "patientId": idRef, "partnerId": idRef, "requesterId": idRef, "reason": icd10,
		"authoredOn": dateTime},
	"AntidepressantTrial": {"id": idRef, "patientId": idRef, "rxnorm": pattern(rxnormPattern.String()),
		"class": enum(trialClasses), "start": date, "end": date, "outcome": enum(trialOutcomes),
		"improvementPercent": numRange(-100, 100), "diagnosisId": idRef},
}
