package fhir

import (
	"net/url"
	"strings"
	"testing"
)

// entryIDs returns "mode:Type/id" for every entry of a Bundle.
func entryIDs(m map[string]any) []string {
	var out []string
	entries, _ := m["entry"].([]any)
	for _, e := range entries {
		mode, _ := get(e, "search", "mode").(string)
		rt, _ := get(e, "resource", "resourceType").(string)
		id, _ := get(e, "resource", "id").(string)
		out = append(out, mode+":"+rt+"/"+id)
	}
	return out
}

func TestSearch(t *testing.T) {
	env := newEnv(t, allowAll)

	t.Run("paging links", func(t *testing.T) {
		w := env.do("GET", "/fhir/Observation?code=http://loinc.org|8867-4&patient=Patient/p1&_count=10&_offset=10&_total=accurate", "")
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		m := parseFHIR(t, w.Body.Bytes())
		writeSample(t, "searchset.json", w.Body.Bytes())
		if m["type"] != "searchset" || m["total"] != 25.0 || m["id"] == nil || get(m, "meta", "lastUpdated") != "2024-03-02T10:00:00.000Z" {
			t.Fatalf("bundle header: %v %v %v %v", m["type"], m["total"], m["id"], m["meta"])
		}
		ids := entryIDs(m)
		if len(ids) != 10 || ids[0] != "match:Observation/o11" {
			t.Fatalf("entries %v", ids)
		}
		if get(m, "entry", 0, "fullUrl") != testBase+"/Observation/o11" {
			t.Errorf("fullUrl = %v", get(m, "entry", 0, "fullUrl"))
		}
		want := func(off string) string {
			return testBase + "/Observation?_count=10&_offset=" + off + "&_total=accurate&code=http%3A%2F%2Floinc.org%7C8867-4&patient=Patient%2Fp1"
		}
		for rel, off := range map[string]string{"self": "10", "first": "0", "previous": "0", "next": "20"} {
			if got := linkURL(m, rel); got != want(off) {
				t.Errorf("%s = %q, want %q", rel, got, want(off))
			}
		}
		// Following next gives the last page with no next link.
		u, _ := url.Parse(linkURL(m, "next"))
		m = parseFHIR(t, env.do("GET", u.RequestURI(), "").Body.Bytes())
		if ids := entryIDs(m); len(ids) != 5 || linkURL(m, "next") != "" || linkURL(m, "previous") != want("10") {
			t.Errorf("last page: %v, links %v", ids, m["link"])
		}
	})

	t.Run("empty result has no entry", func(t *testing.T) {
		w := env.do("GET", "/fhir/Patient?name=nobody", "")
		m := parseFHIR(t, w.Body.Bytes())
		if _, ok := m["entry"]; ok || m["total"] != 0.0 {
			t.Errorf("empty bundle: %s", w.Body)
		}
	})

	t.Run("strict unknown parameter", func(t *testing.T) {
		issue := outcome(t, env.do("GET", "/fhir/Patient?shoe-size=42", ""), 400, "invalid")
		if get(issue, "expression", 0) != "shoe-size" {
			t.Errorf("expression = %v", issue["expression"])
		}
		if get(issue, "details", "text") != "invalid search parameter" {
			t.Errorf("details = %v", issue["details"])
		}
	})

	t.Run("bad value", func(t *testing.T) {
		w := env.do("GET", "/fhir/Patient?birthdate=notadate-Smith", "")
		issue := outcome(t, w, 400, "invalid")
		if get(issue, "expression", 0) != "birthdate" || strings.Contains(w.Body.String(), "Smith") {
			t.Errorf("issue = %v", issue)
		}
	})

	t.Run("lenient ignores with outcome entry", func(t *testing.T) {
		w := env.do("GET", "/fhir/Patient?name=doe&shoe-size=42", "", "Prefer", "handling=lenient")
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		m := parseFHIR(t, w.Body.Bytes())
		writeSample(t, "lenient.json", w.Body.Bytes())
		ids := entryIDs(m)
		if len(ids) != 2 || ids[0] != "match:Patient/p1" || ids[1] != "outcome:OperationOutcome/" || !strings.HasPrefix(get(m, "entry", 1, "fullUrl").(string), "urn:uuid:") {
			t.Fatalf("entries %v", ids)
		}
		if get(m, "entry", 1, "resource", "issue", 0, "expression", 0) != "shoe-size" ||
			get(m, "entry", 1, "resource", "issue", 0, "severity") != "warning" {
			t.Errorf("outcome entry = %v", get(m, "entry", 1))
		}
		if self := linkURL(m, "self"); strings.Contains(self, "shoe") || !strings.Contains(self, "name=doe") {
			t.Errorf("self link carries ignored input: %s", self)
		}
	})

	t.Run("summary count", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Observation?patient=Patient/p1&_summary=count", "").Body.Bytes())
		if m["total"] != 25.0 || m["entry"] != nil || linkURL(m, "next") != "" {
			t.Errorf("count bundle: %v", m)
		}
	})

	t.Run("total none", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Observation?patient=Patient/p1&_total=none", "").Body.Bytes())
		if _, ok := m["total"]; ok {
			t.Errorf("total present with _total=none")
		}
	})

	t.Run("no total unless asked while more pages exist", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Observation?patient=Patient/p1&_count=1", "").Body.Bytes())
		if _, ok := m["total"]; ok {
			t.Errorf("total = %v without _total", m["total"])
		}
		if linkURL(m, "next") == "" {
			t.Error("no next link")
		}
	})

	t.Run("total accurate", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Observation?patient=Patient/p1&_total=accurate&_count=1", "").Body.Bytes())
		if m["total"] != 25.0 {
			t.Errorf("total = %v", m["total"])
		}
	})

	t.Run("elements subsetted", func(t *testing.T) {
		w := env.do("GET", "/fhir/Patient?_id=p1&_elements=gender", "")
		m := parseFHIR(t, w.Body.Bytes())
		writeSample(t, "elements.json", w.Body.Bytes())
		res := get(m, "entry", 0, "resource").(map[string]any)
		if res["gender"] != "female" || res["name"] != nil || res["identifier"] != nil || res["id"] != "p1" || res["resourceType"] != "Patient" {
			t.Errorf("resource = %v", res)
		}
		if get(res, "meta", "versionId") != "2" || get(res, "meta", "tag", 0, "code") != "SUBSETTED" ||
			get(res, "meta", "tag", 0, "system") != "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" {
			t.Errorf("meta = %v", res["meta"])
		}
		// The subset lacks what us-core-patient makes mandatory: the claim goes.
		if get(res, "meta", "profile") != nil {
			t.Errorf("subsetted resource still claims %v", get(res, "meta", "profile"))
		}
		if !strings.Contains(linkURL(m, "self"), "_elements=gender") {
			t.Errorf("self link lacks _elements: %s", linkURL(m, "self"))
		}
	})

	t.Run("elements keep mandatory", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Observation?_id=o01&_elements=subject", "").Body.Bytes())
		res := get(m, "entry", 0, "resource").(map[string]any)
		if res["status"] != "final" || res["code"] == nil || res["subject"] == nil || res["valueQuantity"] != nil || res["performer"] != nil {
			t.Errorf("resource = %v", res)
		}
	})

	t.Run("include", func(t *testing.T) {
		w := env.do("GET", "/fhir/Observation?_id=o01,o02&_include=Observation:subject&_include=Observation:performer", "")
		m := parseFHIR(t, w.Body.Bytes())
		writeSample(t, "include.json", w.Body.Bytes())
		got := strings.Join(entryIDs(m), " ")
		want := "match:Observation/o01 match:Observation/o02 include:Patient/p1 include:Practitioner/dr1"
		if got != want {
			t.Errorf("entries\n got %s\nwant %s", got, want)
		}
	})

	t.Run("include with target type", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Observation?_id=o01&_include=Observation:subject:Patient", "").Body.Bytes())
		if got := strings.Join(entryIDs(m), " "); got != "match:Observation/o01 include:Patient/p1" {
			t.Errorf("entries %s", got)
		}
	})

	t.Run("revinclude", func(t *testing.T) {
		w := env.do("GET", "/fhir/Patient?_id=p1&_revinclude=Encounter:subject", "")
		m := parseFHIR(t, w.Body.Bytes())
		if got := strings.Join(entryIDs(m), " "); got != "match:Patient/p1 include:Encounter/e1" {
			t.Errorf("entries %s", got)
		}
		last := env.fs.queries[len(env.fs.queries)-1]
		if last.Type != "Encounter" || last.Clauses[0].Param != "subject" || last.Clauses[0].Values[0].Str != "Patient/p1" {
			t.Errorf("revinclude query = %+v", last)
		}
	})

	t.Run("post search form", func(t *testing.T) {
		w := env.do("POST", "/fhir/Patient/_search", "name=roe", "Content-Type", "application/x-www-form-urlencoded")
		m := parseFHIR(t, w.Body.Bytes())
		if got := strings.Join(entryIDs(m), " "); got != "match:Patient/p2" {
			t.Errorf("entries %s", got)
		}
	})

	t.Run("post search merges url and form", func(t *testing.T) {
		w := env.do("POST", "/fhir/Observation/_search?patient=Patient/p2", "code=8867-4", "Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		m := parseFHIR(t, w.Body.Bytes())
		if got := strings.Join(entryIDs(m), " "); got != "match:Observation/x1" {
			t.Errorf("entries %s", got)
		}
	})

	t.Run("post search with json", func(t *testing.T) {
		w := env.do("POST", "/fhir/Patient/_search", `{"name":"roe"}`, "Content-Type", "application/json")
		outcome(t, w, 415, "not-supported")
	})

	t.Run("post search too large", func(t *testing.T) {
		w := env.do("POST", "/fhir/Patient/_search", "name="+strings.Repeat("a", 5000), "Content-Type", "application/x-www-form-urlencoded")
		outcome(t, w, 413, "too-costly")
	})

	t.Run("unknown type", func(t *testing.T) {
		outcome(t, env.do("GET", "/fhir/Spaceship?name=x", ""), 404, "not-found")
		outcome(t, env.do("POST", "/fhir/Spaceship/_search", "name=x", "Content-Type", "application/x-www-form-urlencoded"), 404, "not-found")
	})

	t.Run("xml format", func(t *testing.T) {
		outcome(t, env.do("GET", "/fhir/Patient?_format=xml", ""), 406, "not-supported")
	})
}

func TestEverything(t *testing.T) {
	env := newEnv(t, allowAll)
	t.Run("first page", func(t *testing.T) {
		w := env.do("GET", "/fhir/Patient/p1/$everything?_count=5", "")
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		m := parseFHIR(t, w.Body.Bytes())
		writeSample(t, "everything.json", w.Body.Bytes())
		ids := entryIDs(m)
		if m["total"] != 27.0 || len(ids) != 5 || ids[0] != "match:Patient/p1" {
			t.Fatalf("total %v entries %v", m["total"], ids)
		}
		if next := linkURL(m, "next"); next != testBase+"/Patient/p1/$everything?_count=5&_offset=5" {
			t.Errorf("next = %q", next)
		}
	})
	t.Run("type and since", func(t *testing.T) {
		m := parseFHIR(t, env.do("GET", "/fhir/Patient/p1/$everything?_type=Observation&_since=2024-03-01T10:20:00Z", "").Body.Bytes())
		ids := entryIDs(m)
		if m["total"] != 6.0 || ids[0] != "match:Observation/o20" {
			t.Errorf("total %v entries %v", m["total"], ids)
		}
		if self := linkURL(m, "self"); !strings.Contains(self, "_type=Observation") || !strings.Contains(self, "_since=2024-03-01T10%3A20%3A00.000Z") {
			t.Errorf("self = %s", self)
		}
	})
	t.Run("errors", func(t *testing.T) {
		outcome(t, env.do("GET", "/fhir/Patient/zz/$everything", ""), 404, "not-found")
		outcome(t, env.do("GET", "/fhir/Patient/p3/$everything", ""), 410, "deleted")
		outcome(t, env.do("GET", "/fhir/Patient/p1/$everything?_since=yesterday", ""), 400, "invalid")
		outcome(t, env.do("GET", "/fhir/Patient/p1/$everything?_type=Spaceship", ""), 400, "invalid")
		outcome(t, env.do("GET", "/fhir/Patient/p1/$everything?start=2024", ""), 400, "invalid")
	})
}

func TestSearchFormErrors(t *testing.T) {
	env := newEnv(t, allowAll)
	outcome(t, env.do("POST", "/fhir/Patient/_search", "name=%zz", "Content-Type", "application/x-www-form-urlencoded"), 400, "invalid")
}
