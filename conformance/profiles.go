package conformance

import (
	"regexp"
	"sort"
	"strings"
)

// Profile canonicals this validator checks (meta.profile, with or without
// "|version"). Rules are written out from the US Core 6.1.0
// StructureDefinition snapshots (min=1 elements, fixed/pattern values,
// required bindings to US Core value sets, error invariants) and from the
// R4 core vitalsigns profile (observation-vitalsigns.html).
const (
	usCoreBase     = "http://hl7.org/fhir/us/core/StructureDefinition/"
	usCoreVersion  = "6.1.0"
	coreVitalSigns = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
)

type profileRule struct {
	resourceType string
	check        func(c *checker, r map[string]any, p string)
}

// vitalSign returns the rule of a US Core vital-sign profile with a fixed
// LOINC code (codes...: all required codings) and the allowed UCUM codes of
// valueQuantity.
func vitalSign(loinc []string, units ...string) func(c *checker, r map[string]any, p string) {
	return func(c *checker, r map[string]any, p string) {
		vitalSignsBase(c, r, p)
		code := objOf(r, "code")
		for _, l := range loinc {
			if !ccHas(code, sysLOINC, l) {
				c.add(p+".code", CodeValue, "code must include LOINC "+l)
			}
		}
		if q := objOf(r, "valueQuantity"); q != nil {
			quantityRule(c, q, p+".valueQuantity", units)
		}
	}
}

// quantityRule: value, unit, system (fixed UCUM) and code (fixed or from a
// required value set) are 1..1 in the US Core vital-sign quantities.
func quantityRule(c *checker, q map[string]any, p string, units []string) {
	for _, k := range []string{"value", "unit", "system", "code"} {
		if _, ok := q[k]; !ok {
			c.add(p+"."+k, CodeRequired, "missing element required by the profile")
		}
	}
	if s, ok := strOf(q, "system"); ok && s != sysUCUM {
		c.add(p+".system", CodeValue, "system must be "+sysUCUM)
	}
	if code, ok := strOf(q, "code"); ok && len(units) > 0 {
		for _, u := range units {
			if code == u {
				return
			}
		}
		c.add(p+".code", CodeValue, "unit code must be one of "+strings.Join(units, ", "))
	}
}

// componentRule checks the component slice identified by LOINC code: min..1
// occurrences, value[x] only Quantity with the given unit.
func componentRule(c *checker, r map[string]any, p, loinc string, min int, unit string) {
	n := 0
	for i, comp := range arrOf(r, "component") {
		cm, _ := comp.(map[string]any)
		if !ccHas(objOf(cm, "code"), sysLOINC, loinc) {
			continue
		}
		n++
		cp := idx(p+".component", i)
		if n > 1 {
			c.add(cp, CodeStructure, "more than one component with LOINC "+loinc)
		}
		if hasChoice(cm, "value") {
			q := objOf(cm, "valueQuantity")
			if q == nil {
				c.add(cp+".value[x]", CodeValue, "component value[x] must be a Quantity")
				continue
			}
			quantityRule(c, q, cp+".valueQuantity", []string{unit})
		}
	}
	if n < min {
		c.add(p+".component", CodeRequired, "missing component with LOINC "+loinc)
	}
}

// vitalSignsBase is the R4 core vitalsigns profile (also us-core-vital-signs,
// which adds nothing that is checked here).
func vitalSignsBase(c *checker, r map[string]any, p string) {
	if !anyCCHas(arrOf(r, "category"), sysObsCategory, "vital-signs") {
		c.add(p+".category", CodeRequired, "missing category vital-signs (VSCat)")
	}
	if _, ok := r["subject"]; !ok {
		c.add(p+".subject", CodeRequired, "missing element required by the profile")
	}
	_, dt := r["effectiveDateTime"]
	_, per := r["effectivePeriod"]
	switch {
	case !dt && !per && hasChoice(r, "effective"):
		c.add(p+".effective[x]", CodeValue, "effective[x] must be dateTime or Period")
	case !dt && !per:
		c.add(p+".effective[x]", CodeRequired, "missing element required by the profile")
	}
	// vs-1: if effective[x] is a dateTime it is at least precise to the day.
	if s, ok := strOf(r, "effectiveDateTime"); ok && len(s) < 10 {
		c.add(p+".effectiveDateTime", CodeInvariant, "vs-1: effectiveDateTime must be precise to the day")
	}
	// vs-2: no component and no hasMember -> value[x] or dataAbsentReason.
	_, comp := r["component"]
	_, mem := r["hasMember"]
	_, dar := r["dataAbsentReason"]
	if !comp && !mem && !dar && !hasChoice(r, "value") {
		c.add(p, CodeInvariant, "vs-2: value[x] or dataAbsentReason required without component or hasMember")
	}
	// vs-3: every component has value[x] or dataAbsentReason.
	for i, it := range arrOf(r, "component") {
		cm, _ := it.(map[string]any)
		if _, dar := cm["dataAbsentReason"]; !dar && !hasChoice(cm, "value") {
			c.add(idx(p+".component", i), CodeInvariant, "vs-3: component needs value[x] or dataAbsentReason")
		}
	}
}

func requireAll(c *checker, r map[string]any, p string, names ...string) {
	for _, n := range names {
		if _, ok := r[n]; !ok {
			c.add(p+"."+n, CodeRequired, "missing element required by the profile")
		}
	}
}

// requireEach checks that every item of r[list] has the members names.
func requireEach(c *checker, r map[string]any, p, list string, names ...string) {
	for i, it := range arrOf(r, list) {
		m, _ := it.(map[string]any)
		for _, n := range names {
			if _, ok := m[n]; !ok {
				c.add(idx(p+"."+list, i)+"."+n, CodeRequired, "missing element required by the profile")
			}
		}
	}
}

var (
	reNPI  = regexp.MustCompile(`^[0-9]{10}$`)
	reCLIA = regexp.MustCompile(`^[0-9]{2}D[0-9]{7}$`)
	reNAIC = regexp.MustCompile(`^[0-9]{5}$`)
)

// npiLuhn is us-core-17: the NPI check digit (Luhn with the 80840 prefix, +24).
func npiLuhn(v string) bool {
	sum := 24
	for i := 0; i < 10; i++ {
		d := int(v[i] - '0')
		if i%2 == 0 {
			if d < 5 {
				d *= 2
			} else {
				d = d*2 - 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// identifierSlices checks US Core NPI/CLIA/NAIC identifier formats
// (us-core-16..19).
func identifierSlices(c *checker, r map[string]any, p string, clia bool) {
	for i, it := range arrOf(r, "identifier") {
		m, _ := it.(map[string]any)
		sys, _ := strOf(m, "system")
		v, _ := strOf(m, "value")
		ip := idx(p+".identifier", i) + ".value"
		switch {
		case sys == "http://hl7.org/fhir/sid/us-npi":
			if !reNPI.MatchString(v) {
				c.add(ip, CodeInvariant, "us-core-16: NPI must be 10 digits")
			} else if !npiLuhn(v) {
				c.add(ip, CodeInvariant, "us-core-17: NPI check digit is invalid")
			}
		case clia && sys == "urn:oid:2.16.840.1.113883.4.7":
			if !reCLIA.MatchString(v) {
				c.add(ip, CodeInvariant, "us-core-18: CLIA number format is invalid")
			}
		case clia && sys == "urn:oid:2.16.840.1.113883.6.300":
			if !reNAIC.MatchString(v) {
				c.add(ip, CodeInvariant, "us-core-19: NAIC must be 5 digits")
			}
		}
	}
}

const dataAbsentReasonURL = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

var profileRules = map[string]profileRule{
	coreVitalSigns:                          {"Observation", vitalSignsBase},
	usCoreBase + "us-core-vital-signs":      {"Observation", vitalSignsBase},
	usCoreBase + "us-core-heart-rate":       {"Observation", vitalSign([]string{"8867-4"}, "/min")},
	usCoreBase + "us-core-respiratory-rate": {"Observation", vitalSign([]string{"9279-1"}, "/min")},
	usCoreBase + "us-core-pulse-oximetry": {"Observation", func(c *checker, r map[string]any, p string) {
		vitalSign([]string{"59408-5", "2708-6"}, "%")(c, r, p)
		componentRule(c, r, p, "3151-8", 0, "L/min")
		componentRule(c, r, p, "3150-0", 0, "%")
	}},
	// ucum-bodyweight|4.0.1 (required): kg, [lb_av], g.
	usCoreBase + "us-core-body-weight": {"Observation", vitalSign([]string{"29463-7"}, "kg", "[lb_av]", "g")},
	// ucum-bodytemp|4.0.1 (required): Cel, [degF].
	usCoreBase + "us-core-body-temperature": {"Observation", vitalSign([]string{"8310-5"}, "Cel", "[degF]")},
	usCoreBase + "us-core-blood-pressure": {"Observation", func(c *checker, r map[string]any, p string) {
		vitalSign([]string{"85354-9"}, "mm[Hg]")(c, r, p)
		if len(arrOf(r, "component")) < 2 {
			c.add(p+".component", CodeRequired, "blood pressure needs at least 2 components")
		}
		componentRule(c, r, p, "8480-6", 1, "mm[Hg]")
		componentRule(c, r, p, "8462-4", 1, "mm[Hg]")
	}},
	usCoreBase + "us-core-observation-screening-assessment": {"Observation", func(c *checker, r map[string]any, p string) {
		if !anyCCHas(arrOf(r, "category"), sysObsCategory, "survey") {
			c.add(p+".category", CodeRequired, "missing category survey")
		}
		requireAll(c, r, p, "subject")
		// us-core-2: value[x] or dataAbsentReason without component/hasMember.
		_, comp := r["component"]
		_, mem := r["hasMember"]
		_, dar := r["dataAbsentReason"]
		if !comp && !mem && !dar && !hasChoice(r, "value") {
			c.add(p, CodeInvariant, "us-core-2: value[x] or dataAbsentReason required without component or hasMember")
		}
		// us-core-3: SHALL use UCUM for coded quantity units.
		if q := objOf(r, "valueQuantity"); q != nil {
			if s, ok := strOf(q, "system"); ok && s != sysUCUM {
				c.add(p+".valueQuantity.system", CodeInvariant, "us-core-3: quantity units must be UCUM")
			}
		}
		// us-core-1: a dateTime effective[x] is at least precise to the day.
		if s, ok := strOf(r, "effectiveDateTime"); ok && len(s) < 10 {
			c.add(p+".effectiveDateTime", CodeInvariant, "us-core-1: effectiveDateTime must be precise to the day")
		}
	}},
	usCoreBase + "us-core-patient": {"Patient", func(c *checker, r map[string]any, p string) {
		requireAll(c, r, p, "identifier", "name", "gender")
		requireEach(c, r, p, "identifier", "system", "value")
		requireEach(c, r, p, "telecom", "system", "value")
		// us-core-6: (family or given) xor data-absent-reason extension.
		for i, it := range arrOf(r, "name") {
			m, _ := it.(map[string]any)
			_, fam := m["family"]
			_, giv := m["given"]
			dar := false
			for _, x := range arrOf(m, "extension") {
				xm, _ := x.(map[string]any)
				if u, _ := strOf(xm, "url"); u == dataAbsentReasonURL {
					dar = true
				}
			}
			if (fam || giv) == dar {
				c.add(idx(p+".name", i), CodeInvariant, "us-core-6: name needs family or given, or else a data-absent-reason extension")
			}
		}
	}},
	usCoreBase + "us-core-practitioner": {"Practitioner", func(c *checker, r map[string]any, p string) {
		requireAll(c, r, p, "identifier", "name")
		requireEach(c, r, p, "identifier", "system", "value")
		requireEach(c, r, p, "name", "family")
		identifierSlices(c, r, p, false)
	}},
	usCoreBase + "us-core-organization": {"Organization", func(c *checker, r map[string]any, p string) {
		requireAll(c, r, p, "active", "name")
		identifierSlices(c, r, p, true)
	}},
	usCoreBase + "us-core-location": {"Location", func(c *checker, r map[string]any, p string) {
		requireAll(c, r, p, "name")
	}},
	usCoreBase + "us-core-encounter": {"Encounter", func(c *checker, r map[string]any, p string) {
		requireAll(c, r, p, "type", "subject")
		requireEach(c, r, p, "identifier", "system", "value")
	}},
	usCoreBase + "us-core-condition-encounter-diagnosis": {"Condition", func(c *checker, r map[string]any, p string) {
		requireAll(c, r, p, "code")
		if !anyCCHas(arrOf(r, "category"), "http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis") {
			c.add(p+".category", CodeRequired, "missing category encounter-diagnosis")
		}
	}},
	usCoreBase + "us-core-condition-problems-health-concerns": {"Condition", func(c *checker, r map[string]any, p string) {
		requireAll(c, r, p, "code")
		// Condition.category:us-core 1..* bound (required) to us-core-problem-or-health-concern.
		cats := arrOf(r, "category")
		if !anyCCHas(cats, "http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item") &&
			!anyCCHas(cats, "http://hl7.org/fhir/us/core/CodeSystem/condition-category", "health-concern") {
			c.add(p+".category", CodeRequired, "missing category problem-list-item or health-concern")
		}
	}},
	usCoreBase + "us-core-medicationrequest": {"MedicationRequest", func(c *checker, r map[string]any, p string) {
		// us-core-21: requester SHALL be present if intent is an order.
		switch intent, _ := strOf(r, "intent"); intent {
		case "order", "original-order", "reflex-order", "filler-order", "instance-order":
			requireAll(c, r, p, "requester")
		}
	}},
	usCoreBase + "us-core-coverage": {"Coverage", func(c *checker, r map[string]any, p string) {
		requireAll(c, r, p, "relationship")
		// us-core-15: member id in identifier (type MB) or subscriberId.
		mb := false
		for _, it := range arrOf(r, "identifier") {
			m, _ := it.(map[string]any)
			if ccHas(objOf(m, "type"), "http://terminology.hl7.org/CodeSystem/v2-0203", "MB") {
				mb = true
			}
		}
		if _, ok := r["subscriberId"]; !ok && !mb {
			c.add(p+".identifier", CodeInvariant, "us-core-15: member id (identifier type MB) or subscriberId required")
		}
	}},
	usCoreBase + "us-core-provenance": {"Provenance", func(c *checker, r map[string]any, p string) {
		// agent:ProvenanceTransmitter is 0..1.
		n := 0
		for _, it := range arrOf(r, "agent") {
			m, _ := it.(map[string]any)
			if ccHas(objOf(m, "type"), "http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type", "transmitter") {
				n++
			}
		}
		if n > 1 {
			c.add(p+".agent", CodeStructure, "at most one transmitter agent")
		}
	}},
	usCoreBase + "us-core-careplan": {"CarePlan", func(c *checker, r map[string]any, p string) {
		if !anyCCHas(arrOf(r, "category"), "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan") {
			c.add(p+".category", CodeRequired, "missing category assess-plan")
		}
		// text.status bound (required) to us-core-narrative-status: generated | additional.
		if s, ok := strOf(objOf(r, "text"), "status"); ok && s != "generated" && s != "additional" {
			c.add(p+".text.status", CodeCodeInvalid, "code "+`"`+safeCode(s)+`"`+" is not in us-core-narrative-status")
		}
	}},
}

// SupportedProfiles returns the profile canonicals Validate checks, sorted.
// The gateway must only claim these in meta.profile.
func SupportedProfiles() []string {
	out := make([]string, 0, len(profileRules))
	for k := range profileRules {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// profiles applies the rules of every profile claimed in meta.profile.
func (c *checker) profiles(rt string, r map[string]any, p string) {
	for i, it := range arrOf(objOf(r, "meta"), "profile") {
		s, ok := it.(string)
		if !ok {
			continue
		}
		pp := idx(p+".meta.profile", i)
		url, version, hasVersion := strings.Cut(s, "|")
		rule, known := profileRules[url]
		switch {
		case !known:
			c.add(pp, CodeNotSupported, "claimed profile is not checked by this validator: "+safeCanonical(url))
			continue
		case hasVersion && strings.HasPrefix(url, usCoreBase) && version != usCoreVersion,
			hasVersion && url == coreVitalSigns && version != "4.0.1":
			c.add(pp, CodeNotSupported, "claimed profile version is not checked by this validator")
			continue
		case rule.resourceType != rt:
			c.add(pp, CodeValue, "profile is for "+rule.resourceType+", not "+rt)
			continue
		}
		rule.check(c, r, p)
	}
}

// safeCanonical bounds a canonical URL echoed in a message.
func safeCanonical(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
