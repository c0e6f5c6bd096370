package conformance

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDefinitions checks the published implementation guide: every file is
// valid R4 by this validator, named after its type and id, with its url under
// the fixed canonical base, and the ImplementationGuide lists exactly the
// other definitions.
func TestDefinitions(t *testing.T) {
	defs, err := Definitions()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	listed := map[string]bool{}
	var others []string
	for _, d := range defs {
		types[d.Type]++
		t.Run(d.Type+"/"+d.ID, func(t *testing.T) {
			for _, is := range Validate(d.Body) {
				t.Errorf("%s: %s (%s)", is.Path, is.Message, is.Code)
			}
			if !strings.HasPrefix(d.URL, CanonicalBase+"/"+d.Type+"/") || !strings.HasSuffix(d.URL, "/"+d.ID) {
				t.Errorf("url %s is not %s/%s/%s", d.URL, CanonicalBase, d.Type, d.ID)
			}
		})
		if d.Type == "ImplementationGuide" {
			var ig struct {
				URL        string `json:"url"`
				Definition struct {
					Resource []struct {
						Reference struct{ Reference string }
					}
				}
			}
			if err := json.Unmarshal(d.Body, &ig); err != nil {
				t.Fatal(err)
			}
			if ig.URL != ImplementationGuideURL {
				t.Errorf("ImplementationGuide url %s, want %s", ig.URL, ImplementationGuideURL)
			}
			for _, r := range ig.Definition.Resource {
				listed[r.Reference.Reference] = true
			}
			continue
		}
		others = append(others, d.Type+"/"+d.ID)
	}
	for _, typ := range []string{"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide", "OperationDefinition"} {
		if types[typ] == 0 {
			t.Errorf("no %s in the guide", typ)
		}
	}
	if types["ImplementationGuide"] != 1 {
		t.Errorf("%d ImplementationGuides, want 1", types["ImplementationGuide"])
	}
	for _, o := range others {
		if !listed[o] {
			t.Errorf("%s is not listed in the ImplementationGuide", o)
		}
		delete(listed, o)
	}
	for r := range listed {
		t.Errorf("the ImplementationGuide lists %s, which has no file", r)
	}
}

// TestExtensionDefinitionsShape checks what a validator reads from an
// extension definition: type Extension, derivation constraint on the base
// Extension, an element context, a fixed url, no sub-extensions and one
// required value of one type, in differential and snapshot alike.
func TestExtensionDefinitionsShape(t *testing.T) {
	defs, err := Definitions()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range defs {
		if d.Type != "StructureDefinition" {
			continue
		}
		n++
		t.Run(d.ID, func(t *testing.T) {
			var sd struct {
				URL, Kind, Type, BaseDefinition, Derivation, Purpose string
				Context                                              []struct{ Type, Expression string }
				Snapshot, Differential                               struct{ Element []element }
			}
			if err := json.Unmarshal(d.Body, &sd); err != nil {
				t.Fatal(err)
			}
			if sd.Kind != "complex-type" || sd.Type != "Extension" || sd.Derivation != "constraint" ||
				sd.BaseDefinition != "http://hl7.org/fhir/StructureDefinition/Extension" {
				t.Errorf("kind %s type %s derivation %s base %s", sd.Kind, sd.Type, sd.Derivation, sd.BaseDefinition)
			}
			if len(sd.Context) != 1 || sd.Context[0].Type != "element" || sd.Context[0].Expression == "" {
				t.Errorf("context %+v", sd.Context)
			}
			if sd.Purpose == "" {
				t.Error("no purpose saying why no standard element fits")
			}
			for name, els := range map[string][]element{"snapshot": sd.Snapshot.Element, "differential": sd.Differential.Element} {
				byPath := map[string]element{}
				for _, e := range els {
					byPath[e.Path] = e
				}
				if u := byPath["Extension.url"]; u.FixedURI != sd.URL {
					t.Errorf("%s: fixedUri %q, want %q", name, u.FixedURI, sd.URL)
				}
				if x := byPath["Extension.extension"]; x.Max != "0" {
					t.Errorf("%s: Extension.extension max %q, want 0", name, x.Max)
				}
				v := byPath["Extension.value[x]"]
				if v.Min == nil || *v.Min != 1 || len(v.Type) != 1 {
					t.Errorf("%s: value[x] min %v types %v", name, v.Min, v.Type)
				}
			}
		})
	}
	if n == 0 {
		t.Fatal("no extension definitions")
	}
}

type element struct {
	Path     string
	Min      *int
	Max      string
	FixedURI string `json:"fixedUri"`
	Type     []struct{ Code string }
}

// TestVendored checks the vendored definitions of other publishers: valid
// R4, named after type and id, outside the project's canonical base and not
// mixed into its guide; and the SMART oauth-uris extension has the shape
// clients and validators read: on CapabilityStatement.rest.security, no
// value of its own, authorize required, and token, introspect and revoke
// optional sub-extensions each fixed to its name with a uri value.
func TestVendored(t *testing.T) {
	vendored, err := Vendored()
	if err != nil {
		t.Fatal(err)
	}
	own, err := Definitions()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range own {
		if strings.HasPrefix(d.URL, "http://fhir-registry.smarthealthit.org/") {
			t.Errorf("the project's guide holds %s", d.URL)
		}
	}
	byURL := map[string]Definition{}
	for _, d := range vendored {
		byURL[d.URL] = d
		t.Run(d.Type+"/"+d.ID, func(t *testing.T) {
			for _, is := range Validate(d.Body) {
				t.Errorf("%s: %s (%s)", is.Path, is.Message, is.Code)
			}
			if strings.HasPrefix(d.URL, CanonicalBase) {
				t.Errorf("vendored url %s is under the project's base", d.URL)
			}
		})
	}
	d, ok := byURL[OAuthURIs]
	if !ok {
		t.Fatalf("no vendored definition of %s", OAuthURIs)
	}
	var sd struct {
		Type, Kind, Derivation string
		Context                []struct{ Type, Expression string }
		Differential           struct {
			Element []struct {
				ID, SliceName string
				Min           *int
				Max           string
				FixedURI      string `json:"fixedUri"`
				Type          []struct{ Code string }
			}
		}
	}
	if err := json.Unmarshal(d.Body, &sd); err != nil {
		t.Fatal(err)
	}
	if sd.Type != "Extension" || sd.Kind != "complex-type" || sd.Derivation != "constraint" ||
		len(sd.Context) != 1 || sd.Context[0].Type != "element" || sd.Context[0].Expression != "CapabilityStatement.rest.security" {
		t.Errorf("type %s kind %s derivation %s context %+v", sd.Type, sd.Kind, sd.Derivation, sd.Context)
	}
	byID := map[string]int{}
	for i, e := range sd.Differential.Element {
		byID[e.ID] = i
	}
	if i, ok := byID["Extension.value[x]"]; !ok || sd.Differential.Element[i].Max != "0" {
		t.Error("Extension.value[x] is not forbidden")
	}
	if i, ok := byID["Extension.url"]; !ok || sd.Differential.Element[i].FixedURI != OAuthURIs {
		t.Error("Extension.url is not fixed to the extension's url")
	}
	for name, min := range map[string]int{"authorize": 1, "token": 0, "introspect": 0, "revoke": 0} {
		slice := "Extension.extension:" + name
		i, ok := byID[slice]
		if !ok || sd.Differential.Element[i].SliceName != name || sd.Differential.Element[i].Min == nil ||
			*sd.Differential.Element[i].Min != min || sd.Differential.Element[i].Max != "1" {
			t.Errorf("%s: missing or not %d..1", slice, min)
			continue
		}
		if j, ok := byID[slice+".url"]; !ok || sd.Differential.Element[j].FixedURI != name {
			t.Errorf("%s.url is not fixed to %q", slice, name)
		}
		if j, ok := byID[slice+".value[x]"]; !ok || len(sd.Differential.Element[j].Type) != 1 ||
			sd.Differential.Element[j].Type[0].Code != "uri" {
			t.Errorf("%s.value[x] is not a uri", slice)
		}
	}
}
