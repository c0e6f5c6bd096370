package fhir

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// guideTypes are the resource types of the published implementation guide,
// as the wiring passes them to ingest.Service.StoreDefinitions.
var guideTypes = []string{"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide", "OperationDefinition"}

// TestServeImplementationGuide stores the whole published guide the way the
// gateway does (ingest.Service.StoreDefinitions with guideTypes, the real
// indexer search.Extract, SQLite) and reads and searches every definition
// of conformance.Definitions back through the FHIR API: the body as
// published, found by its canonical url, and by the parameters a client
// uses to find definitions. With FHIR_SAMPLES set, the searchset of
// StructureDefinitions is written for the independent validator.
func TestServeImplementationGuide(t *testing.T) {
	ctx := context.Background()
	defs, err := conformance.Definitions()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, d := range defs {
		if !slices.Contains(types, d.Type) {
			types = append(types, d.Type)
		}
	}
	for _, typ := range types {
		if !slices.Contains(guideTypes, typ) {
			t.Fatalf("the guide holds %s, which guideTypes (what the wiring stores) lacks", typ)
		}
	}

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "guide.sqlite"), fixedClock{t0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc := ingest.New(st, mapping.New(mapping.Options{}), search.Extract, fixedClock{t0})
	res, err := svc.StoreDefinitions(ctx, guideTypes...)
	if err != nil {
		t.Fatalf("StoreDefinitions: %v", err)
	}
	if res.Outcome != store.Created || len(res.Resources) != len(defs) {
		t.Fatalf("StoreDefinitions: %s with %d resources, want created with %d", res.Outcome, len(res.Resources), len(defs))
	}

	s, err := New(Options{Store: st, Base: testBase, Clock: fixedClock{t0},
		Verifier: testCallers{defaultToken: caller("system/*.rs", ""), "user": caller("user/StructureDefinition.rs", ""),
			"patient": caller("patient/*.rs", "p1"), "patient-obs": caller("patient/Observation.rs", "p1"),
			"other-type": caller("system/Patient.rs", "")}})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	s.Register(e)
	env := &testEnv{e: e, token: defaultToken}

	for _, d := range defs {
		t.Run(d.Type+"/"+d.ID, func(t *testing.T) {
			w := env.do("GET", "/fhir/"+d.Type+"/"+d.ID, "")
			if w.Code != 200 {
				t.Fatalf("read: status %d: %s", w.Code, w.Body)
			}
			if got, want := withoutVersionMeta(t, w.Body.Bytes()), decode(t, d.Body); !reflect.DeepEqual(got, want) {
				t.Errorf("read body differs from the published definition")
			}
			m := parseFHIR(t, env.do("GET", "/fhir/"+d.Type+"?url="+url.QueryEscape(d.URL), "").Body.Bytes())
			if m["total"] != 1.0 || get(m, "entry", 0, "fullUrl") != testBase+"/"+d.Type+"/"+d.ID {
				t.Errorf("search by url: total %v, first %v", m["total"], get(m, "entry", 0, "fullUrl"))
			}
		})
	}

	count := func(typ string, pred func(map[string]any) bool) float64 {
		n := 0.0
		for _, d := range defs {
			if d.Type == typ && pred(decode(t, d.Body)) {
				n++
			}
		}
		return n
	}
	includes := func(system string) func(map[string]any) bool {
		return func(m map[string]any) bool {
			for _, inc := range get(m, "compose", "include").([]any) {
				if get(inc, "system") == system {
					return true
				}
			}
			return false
		}
	}
	all := func(map[string]any) bool { return true }
	for _, tc := range []struct {
		name, target string
		want         float64
	}{
		{"dose per kg by url", "/fhir/StructureDefinition?url=http://ketabridge.org/fhir/StructureDefinition/dose-per-kg", 1},
		{"extension definitions", "/fhir/StructureDefinition?type=Extension&derivation=constraint" +
			"&base=http://hl7.org/fhir/StructureDefinition/Extension&_count=100", count("StructureDefinition", all)},
		{"value sets of the local codes", "/fhir/ValueSet?reference=http://ketabridge.org/fhir/CodeSystem/ketabridge&_count=100",
			count("ValueSet", includes("http://ketabridge.org/fhir/CodeSystem/ketabridge"))},
		{"guide by url and version", "/fhir/ImplementationGuide?url=" + conformance.ImplementationGuideURL + "&version=1.0.0", 1},
		{"guides depending on US Core", "/fhir/ImplementationGuide?depends-on=" + conformance.USCoreIG, 1},
		{"other version", "/fhir/CodeSystem?url=http://ketabridge.org/fhir/CodeSystem/ketabridge&version=0.9", 0},
		{"active code systems", "/fhir/CodeSystem?status=active", count("CodeSystem", all)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do("GET", tc.target, "")
			m := parseFHIR(t, w.Body.Bytes())
			if w.Code != 200 || m["total"] != tc.want || tc.want == 0 && m["entry"] != nil {
				t.Errorf("status %d, total %v, want %v", w.Code, m["total"], tc.want)
			}
			if tc.name == "extension definitions" {
				writeSample(t, "searchset-structuredefinition.json", w.Body.Bytes())
			}
		})
	}

	// Definition resources belong to no patient compartment and hold no
	// patient's data: any caller whose scopes grant the type reads them,
	// patient/ scopes included; a scope for other types grants nothing
	// here (docs/design/security.md RS-3, RS-4).
	sd := "/fhir/StructureDefinition/dose-per-kg"
	for _, tc := range []struct {
		name, token string
		status      int
	}{
		{"system scope", defaultToken, 200},
		{"user scope on the type", "user", 200},
		{"patient scope on every type", "patient", 200},
		{"patient scope on another type", "patient-obs", 403},
		{"scope on another type", "other-type", 403},
	} {
		t.Run("read with "+tc.name, func(t *testing.T) {
			if w := env.doAs(tc.token, "GET", sd, ""); w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
		})
	}
	t.Run("search with a patient scope finds them", func(t *testing.T) {
		want := parseFHIR(t, env.do("GET", "/fhir/StructureDefinition?type=Extension", "").Body.Bytes())["total"]
		m := parseFHIR(t, env.doAs("patient", "GET", "/fhir/StructureDefinition?type=Extension", "").Body.Bytes())
		if m["total"] != want || want == 0.0 {
			t.Errorf("total %v, want %v", m["total"], want)
		}
	})
}

// decode decodes a JSON object.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// withoutVersionMeta decodes a served resource without the meta.versionId
// and meta.lastUpdated the store adds (meta goes when nothing else is left).
func withoutVersionMeta(t *testing.T, b []byte) map[string]any {
	t.Helper()
	m := decode(t, b)
	meta, _ := m["meta"].(map[string]any)
	if meta["versionId"] == nil || meta["lastUpdated"] == nil || !strings.HasPrefix(meta["lastUpdated"].(string), "2024-03-01") {
		t.Errorf("served meta %v lacks the stored version", meta)
	}
	delete(meta, "versionId")
	delete(meta, "lastUpdated")
	if len(meta) == 0 {
		delete(m, "meta")
	}
	return m
}
