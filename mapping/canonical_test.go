package mapping

import (
	"bufio"
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
	"github.com/ketabridge/ketabridge/mapping/synth"
)

// corpus is what the interoperability tests map: every golden case with the
// fixture as related records, and a few synthetic patients (every protocol,
// session status and record kind) with the synthetic records as related
// records.
func corpus(t *testing.T, m *Mapper) []Output {
	t.Helper()
	f := loadFixture(t)
	var outs []Output
	for _, file := range cases(t) {
		outs = append(outs, mapCase(t, m, f, file)...)
	}
	var buf bytes.Buffer
	if _, err := synth.Generate(&buf, synth.Options{Patients: 8, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	recs := fixture{}
	var order []clinic.Record
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, errs := clinic.Decode(sc.Bytes())
		if len(errs) > 0 {
			t.Fatalf("synthetic record: %v", errs)
		}
		recs[clinic.Key{Kind: r.RecordKind(), ID: r.RecordID()}] = r
		order = append(order, r)
	}
	for _, r := range order {
		o, err := m.MapWith(r, recordedAt, recs)
		if err != nil {
			t.Fatalf("map %s/%s: %v", r.RecordKind(), r.RecordID(), err)
		}
		outs = append(outs, o...)
	}
	return outs
}

// TestNoDeploymentURLInOutput checks that the output names no deployment
// (the mapper takes no base URL: canonical URLs are fixed under
// codes.CanonicalBase, so nothing under the default --base-url appears), and
// that with two identifier-system bases the outputs differ only in the
// identifier systems and protocol canonicals under them.
func TestNoDeploymentURLInOutput(t *testing.T) {
	for _, o := range corpus(t, New(Options{IdentifierSystemBase: testSIDBase})) {
		if bytes.Contains(o.Body, []byte("localhost")) {
			t.Errorf("%s/%s names a deployment host", o.Type, o.ID)
		}
	}

	const sidA, sidB = "https://clinic-a.example/fhir/sid", "urn:example:clinic-b:sid"
	x := corpus(t, New(Options{IdentifierSystemBase: sidA}))
	y := corpus(t, New(Options{IdentifierSystemBase: sidB}))
	changed := 0
	for i := range x {
		if !bytes.Equal(x[i].Body, y[i].Body) {
			changed++
		}
		// Every difference is the identifier-system base itself.
		if got := bytes.ReplaceAll(x[i].Body, []byte(sidA), []byte(sidB)); !bytes.Equal(got, y[i].Body) {
			t.Errorf("%s/%s differs beyond the identifier systems:\n%s", x[i].Type, x[i].ID, firstDiff(got, y[i].Body))
		}
		if bytes.Contains(x[i].Body, []byte(sidB)) {
			t.Errorf("%s/%s names the other identifier-system base", x[i].Type, x[i].ID)
		}
	}
	if changed == 0 {
		t.Error("the identifier-system base changed nothing: the test does not exercise it")
	}
}

// TestIdentifierSystemDefault checks the documented default.
func TestIdentifierSystemDefault(t *testing.T) {
	for name, opts := range map[string]Options{
		"empty": {}, "trailing slash": {IdentifierSystemBase: codes.DefaultIdentifierSystemBase + "/"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := New(opts).sid("mrn"); got != codes.DefaultIdentifierSystemBase+"/mrn" {
				t.Errorf("sid(mrn) = %s", got)
			}
		})
	}
}

// extensionURLs collects the url of every extension at any depth of a JSON
// document (sub-extension urls, which are relative, are left out).
func extensionURLs(v any, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if k == "extension" || k == "modifierExtension" {
				for _, e := range val.([]any) {
					if u, _ := e.(map[string]any)["url"].(string); strings.Contains(u, "/") {
						into[u] = true
					}
				}
			}
			extensionURLs(val, into)
		}
	case []any:
		for _, e := range x {
			extensionURLs(e, into)
		}
	}
}

// standardExtensions are the R4 core and US Core extensions the mapper may
// emit; anything else must be the project's own and defined in the guide.
var standardExtensions = []string{
	codes.ExtOrdinalValue, codes.ExtReasonCancelled, codes.ExtUSCoreRace, codes.ExtUSCoreEthnicity,
	codes.ExtUSCoreBirthSex, codes.DataAbsentReasonExt,
	// Da Vinci PAS 2.0.1, on the ClaimResponse of a prior_auth_response.
	pasRequestedService, pasReviewAction, pasReviewActionCode,
}

// TestExtensionsHaveDefinitions checks that every extension the mapper emits
// is either a standard one or has a StructureDefinition in the guide, and
// that every StructureDefinition of the guide is emitted somewhere (no unused
// definitions).
func TestExtensionsHaveDefinitions(t *testing.T) {
	defs, err := Definitions()
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, d := range defs {
		if d.Type == "StructureDefinition" {
			var sd struct{ URL string }
			if err := json.Unmarshal(d.Body, &sd); err != nil {
				t.Fatal(err)
			}
			defined[sd.URL] = true
		}
	}
	used := map[string]bool{}
	for _, o := range corpus(t, testMapper()) {
		var doc any
		if err := json.Unmarshal(o.Body, &doc); err != nil {
			t.Fatal(err)
		}
		extensionURLs(doc, used)
	}
	for u := range used {
		switch {
		case defined[u]:
		case slices.Contains(standardExtensions, u):
		case strings.HasPrefix(u, codes.CanonicalBase):
			t.Errorf("extension %s is emitted but has no StructureDefinition in the guide", u)
		default:
			t.Errorf("extension %s is neither the project's nor a known standard one", u)
		}
	}
	for u := range defined {
		if !used[u] {
			t.Errorf("StructureDefinition %s is never emitted", u)
		}
	}
	for _, u := range standardExtensions[:5] {
		if !used[u] {
			t.Errorf("standard extension %s is never emitted: the corpus does not cover it", u)
		}
	}
}

// TestCanonicalsUnderProjectBase checks every code system and extension URL
// of the mapped output is either a published terminology or under the
// project's canonical base: the mapper writes no other http(s) canonical.
func TestCanonicalsUnderProjectBase(t *testing.T) {
	systemRE := regexp.MustCompile(`"(?:system|url)":"(https?://[^"]+)"`)
	known := []string{"http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm",
		"http://hl7.org/fhir/", "http://terminology.hl7.org/CodeSystem/", "http://unitsofmeasure.org",
		"http://www.ama-assn.org/go/cpt", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
		"http://www.whocc.no/atc", x12ReviewActionCodes, codes.NUCCTaxonomy, codes.CanonicalBase + "/", testSIDBase + "/"}
	for _, o := range corpus(t, testMapper()) {
		for _, m := range systemRE.FindAllSubmatch(o.Body, -1) {
			u := string(m[1])
			if !slices.ContainsFunc(known, func(k string) bool { return strings.HasPrefix(u, k) }) {
				t.Errorf("%s/%s: unexpected system or url %s", o.Type, o.ID, u)
			}
		}
	}
}
