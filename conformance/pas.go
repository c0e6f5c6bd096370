package conformance

// The Da Vinci PAS 2.0.1 profiles the gateway claims (the prior-authorization
// request Bundle, docs/prior-auth.md): their required elements and fixed
// values. The independent validator applies the full profiles; these rules
// keep the gateway's own check from passing what they forbid.

const pasBase = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"

// fixedCode checks that r[name] equals want.
func fixedCode(c *checker, r map[string]any, p, name, want string) {
	if v, ok := strOf(r, name); ok && v != want {
		c.add(p+"."+name, CodeValue, name+" must be "+want)
	}
}

func init() {
	rules := map[string]profileRule{
		pasBase + "profile-pas-request-bundle": {"Bundle", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "identifier", "type", "timestamp", "entry")
			fixedCode(c, r, p, "type", "collection")
			claims := 0
			for i, it := range arrOf(r, "entry") {
				e, _ := it.(map[string]any)
				ep := idx(p+".entry", i)
				requireAll(c, e, ep, "fullUrl", "resource")
				for _, n := range []string{"search", "request", "response"} {
					if _, ok := e[n]; ok {
						c.add(ep+"."+n, CodeStructure, n+" is not allowed in a PAS request Bundle")
					}
				}
				if rt, _ := strOf(objOf(e, "resource"), "resourceType"); rt == "Claim" {
					claims++
				}
			}
			if claims != 1 {
				c.add(p+".entry", CodeStructure, "a PAS request Bundle holds exactly one Claim")
			}
		}},
		pasBase + "profile-claim": {"Claim", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "identifier", "status", "type", "use", "patient", "created", "insurer", "provider",
				"priority", "insurance", "item")
			fixedCode(c, r, p, "status", "active")
			fixedCode(c, r, p, "use", "preauthorization")
			requireEach(c, r, p, "careTeam", "extension", "sequence", "provider")
			requireEach(c, r, p, "diagnosis", "sequence", "diagnosisCodeableConcept")
			requireEach(c, r, p, "insurance", "sequence", "focal", "coverage")
			for i, it := range arrOf(r, "insurance") {
				if m, _ := it.(map[string]any); m["focal"] != true {
					c.add(idx(p+".insurance", i)+".focal", CodeValue, "focal must be true")
				}
			}
			requireEach(c, r, p, "item", "sequence", "category", "productOrService")
			requireEach(c, r, p, "supportingInfo", "sequence", "category")
		}},
		pasBase + "profile-claimresponse": {"ClaimResponse", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "status", "type", "use", "patient", "created", "insurer", "outcome")
			fixedCode(c, r, p, "status", "active")
			fixedCode(c, r, p, "use", "preauthorization")
			requireEach(c, r, p, "item", "itemSequence", "adjudication")
		}},
		pasBase + "profile-beneficiary": {"Patient", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "identifier", "name", "gender")
		}},
		pasBase + "profile-coverage": {"Coverage", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "status", "beneficiary", "payor")
			fixedCode(c, r, p, "status", "active")
		}},
		pasBase + "profile-insurer": {"Organization", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "active", "name")
		}},
		pasBase + "profile-requestor": {"Organization", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "active", "name")
		}},
		pasBase + "profile-practitioner": {"Practitioner", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "identifier", "name")
			requireEach(c, r, p, "name", "family")
		}},
		pasBase + "profile-practitionerrole": {"PractitionerRole", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "practitioner")
		}},
		pasBase + "profile-medicationrequest": {"MedicationRequest", func(c *checker, r map[string]any, p string) {
			requireAll(c, r, p, "status", "intent", "subject", "authoredOn", "requester")
			fixedCode(c, r, p, "intent", "order")
		}},
	}
	for url, rule := range rules {
		profileRules[url] = rule
	}
}
