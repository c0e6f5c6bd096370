package fhir

import (
	"slices"
	"testing"

	"github.com/ketabridge/ketabridge/conformance"
)

// metadata fetches and parses the CapabilityStatement of a server built
// with opts (no token needed: docs/design/security.md DISC-7).
func metadata(t *testing.T, opts Options) map[string]any {
	t.Helper()
	env := newEnvWith(t, opts)
	w := env.do("GET", "/fhir/metadata", "")
	if w.Code != 200 {
		t.Fatalf("metadata: status %d", w.Code)
	}
	return parseFHIR(t, w.Body.Bytes())
}

// TestCapabilityDeclarations checks what the CapabilityStatement claims
// beyond its resources: the US Core server statement it instantiates, the
// guides it follows (the project's own, which it serves, and US Core), and
// rest.security with CORS, the SMART-on-FHIR service and the oauth-uris
// extension naming the gateway's authorization endpoints (DISC-7).
func TestCapabilityDeclarations(t *testing.T) {
	m := metadata(t, Options{})
	if got := get(m, "instantiates"); !equalStrings(got, "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server|6.1.0") {
		t.Errorf("instantiates = %v", got)
	}
	if got := get(m, "implementationGuide"); !equalStrings(got, "http://ketabridge.org/fhir/ImplementationGuide/ketabridge",
		"http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core|6.1.0") {
		t.Errorf("implementationGuide = %v", got)
	}
	sec := get(m, "rest", 0, "security")
	if get(sec, "cors") != true {
		t.Errorf("security.cors = %v", get(sec, "cors"))
	}
	if get(sec, "service", 0, "coding", 0, "system") != "http://terminology.hl7.org/CodeSystem/restful-security-service" ||
		get(sec, "service", 0, "coding", 0, "code") != "SMART-on-FHIR" {
		t.Errorf("security.service = %v", get(sec, "service"))
	}
	exts, _ := get(sec, "extension").([]any)
	if len(exts) != 1 || get(exts[0], "url") != "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" ||
		get(exts[0], "valueUri") != nil {
		t.Fatalf("security.extension = %v", exts)
	}
	got := map[string]any{}
	for _, sub := range get(exts[0], "extension").([]any) {
		got[get(sub, "url").(string)] = get(sub, "valueUri")
	}
	want := map[string]any{
		"authorize":  "http://localhost:8080/auth/authorize",
		"token":      "http://localhost:8080/auth/token",
		"introspect": "http://localhost:8080/auth/introspect",
		"revoke":     "http://localhost:8080/auth/revoke",
	}
	if len(got) != len(want) {
		t.Errorf("oauth-uris sub-extensions = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("oauth-uris %s = %v, want %v", k, got[k], v)
		}
	}
}

// TestCapabilityOAuthOptions: the oauth-uris endpoints follow Options.OAuth
// when given, are derived from a {root}/fhir base otherwise, and New refuses
// a base it cannot derive them from or endpoints that are not absolute URLs.
func TestCapabilityOAuthOptions(t *testing.T) {
	t.Run("explicit endpoints", func(t *testing.T) {
		o := OAuthEndpoints{Authorize: "https://as.example/a", Token: "https://as.example/t",
			Introspect: "https://as.example/i", Revoke: "https://as.example/r"}
		m := metadata(t, Options{OAuth: &o})
		for i, want := range []string{o.Authorize, o.Token, o.Introspect, o.Revoke} {
			if got := get(m, "rest", 0, "security", "extension", 0, "extension", i, "valueUri"); got != want {
				t.Errorf("sub-extension %d = %v, want %s", i, got, want)
			}
		}
	})
	t.Run("derived under a path prefix", func(t *testing.T) {
		o, ok := gatewayOAuth("https://gw.example/clinic/fhir")
		want := OAuthEndpoints{Authorize: "https://gw.example/clinic/auth/authorize", Token: "https://gw.example/clinic/auth/token",
			Introspect: "https://gw.example/clinic/auth/introspect", Revoke: "https://gw.example/clinic/auth/revoke"}
		if !ok || o != want {
			t.Errorf("gatewayOAuth = %+v, %v; want %+v", o, ok, want)
		}
	})
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"base not ending in /fhir", Options{Store: newFakeStore(), Base: "https://gw.example/api"}},
		{"relative endpoint", Options{Store: newFakeStore(), Base: testBase,
			OAuth: &OAuthEndpoints{Authorize: "/auth/authorize", Token: "https://as.example/t",
				Introspect: "https://as.example/i", Revoke: "https://as.example/r"}}},
		{"missing endpoint", Options{Store: newFakeStore(), Base: testBase,
			OAuth: &OAuthEndpoints{Authorize: "https://as.example/a", Token: "https://as.example/t"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Errorf("New accepted %+v", tc.opts)
			}
		})
	}
}

// TestCapabilityDocumentation: rest.documentation names what the gateway
// serves besides the API (its own SMART apps), and is absent otherwise.
func TestCapabilityDocumentation(t *testing.T) {
	const doc = "Course viewer: https://gw.example/apps/course/"
	if got := get(metadata(t, Options{Documentation: doc}), "rest", 0, "documentation"); got != doc {
		t.Errorf("rest.documentation = %v, want %q", got, doc)
	}
	if got := get(metadata(t, Options{}), "rest", 0, "documentation"); got != nil {
		t.Errorf("rest.documentation = %v without Options.Documentation", got)
	}
}

// TestInstantiates: the US Core server statement always; the Bulk Data
// server statement joins when the server serves $export.
func TestInstantiates(t *testing.T) {
	for _, tc := range []struct {
		name       string
		bulkExport bool
		want       []string
	}{
		{"without $export", false, []string{conformance.USCoreServer + "|6.1.0"}},
		{"with $export", true, []string{conformance.USCoreServer + "|6.1.0",
			"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data|2.0.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := instantiates(tc.bulkExport); !slices.Equal(got, tc.want) {
				t.Errorf("instantiates(%v) = %v, want %v", tc.bulkExport, got, tc.want)
			}
		})
	}
}

// TestCapabilityDefinitionTypes: the definition resource types of the
// guide are served by read and search and declare their search parameters,
// url as a uri (conformance-url).
func TestCapabilityDefinitionTypes(t *testing.T) {
	m := metadata(t, Options{})
	byType := map[string]any{}
	for _, r := range get(m, "rest", 0, "resource").([]any) {
		byType[get(r, "type").(string)] = r
	}
	for _, typ := range []string{"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide",
		"SearchParameter", "OperationDefinition"} {
		t.Run(typ, func(t *testing.T) {
			r, ok := byType[typ]
			if !ok {
				t.Fatal("no rest.resource")
			}
			var codes []string
			for _, i := range get(r, "interaction").([]any) {
				codes = append(codes, get(i, "code").(string))
			}
			if !slices.Contains(codes, "read") || !slices.Contains(codes, "search-type") {
				t.Errorf("interactions %v", codes)
			}
			params := map[string]any{}
			for _, p := range get(r, "searchParam").([]any) {
				params[get(p, "name").(string)] = p
			}
			if get(params["url"], "type") != "uri" ||
				get(params["url"], "definition") != "http://hl7.org/fhir/SearchParameter/conformance-url" {
				t.Errorf("url searchParam = %v", params["url"])
			}
			for _, name := range []string{"name", "status", "version"} {
				if params[name] == nil {
					t.Errorf("no %s searchParam", name)
				}
			}
			if inc := get(r, "searchInclude"); inc != nil {
				t.Errorf("searchInclude %v: canonical references cannot be included", inc)
			}
		})
	}
}

// equalStrings reports whether a decoded JSON array holds exactly want.
func equalStrings(v any, want ...string) bool {
	a, _ := v.([]any)
	if len(a) != len(want) {
		return false
	}
	for i := range a {
		if a[i] != want[i] {
			return false
		}
	}
	return true
}
