package conformance

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
)

// The project's canonical URLs (docs/fhir-mapping.md). They are fixed: no
// deployment setting changes them.
const (
	// CanonicalBase is the canonical base the project owns; every
	// definition of its implementation guide has its url under it.
	CanonicalBase = "http://ketabridge.org/fhir"
	// ImplementationGuideURL is the canonical URL of the project's
	// ImplementationGuide, for CapabilityStatement.implementationGuide.
	ImplementationGuideURL = CanonicalBase + "/ImplementationGuide/ketabridge"
	// USCoreServer is the US Core 6.1.0 server CapabilityStatement the
	// gateway's CapabilityStatement instantiates.
	USCoreServer = "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"
	// USCoreVersion is the US Core release whose profiles the gateway
	// claims.
	USCoreVersion = "6.1.0"
	// USCoreIG is the canonical URL of the US Core ImplementationGuide, for
	// CapabilityStatement.implementationGuide.
	USCoreIG = "http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core"
	// BulkDataServer is the Bulk Data Access server CapabilityStatement
	// (BDA 2.0.0), which a server that serves $export instantiates.
	BulkDataServer = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
	// BulkDataVersion is the Bulk Data Access release BulkDataServer names.
	BulkDataVersion = "2.0.0"
	// OAuthURIs is the SMART on FHIR extension on
	// CapabilityStatement.rest.security that names the authorization
	// server's endpoints (authorize, token, introspect, revoke, ...). Its
	// SMART definition is vendored in conformance/ig/vendor (Vendored): the
	// copy in R4 core lacks introspect and revoke.
	OAuthURIs = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
)

// igFiles are the published implementation guide: one JSON file per
// definition, named {resourceType}-{id}.json. They are generated from the
// mapper's code tables (mapping.Definitions; go test ./mapping -update) and
// reviewed like code. ig/vendor holds copies of other publishers'
// definitions that the gateway's output uses and R4 core lacks (Vendored);
// they are written by hand from their specifications, not generated.
//
//go:embed ig/*.json ig/vendor/*.json
var igFiles embed.FS

// Definition is one conformance resource of the implementation guide.
type Definition struct {
	// Type is the resource type (CodeSystem, ValueSet, StructureDefinition,
	// ImplementationGuide; SearchParameter and OperationDefinition when the
	// gateway adds its own).
	Type string
	// ID is the resource id, URL its canonical URL.
	ID, URL string
	// Body is the resource as compact JSON.
	Body []byte
}

// Definitions returns every resource of the project's implementation guide
// (conformance/ig), sorted by type and id, for the server to store and serve
// and for `conformance export` to write. Each call returns fresh slices.
func Definitions() ([]Definition, error) { return readDefinitions("ig", true) }

// Vendored returns the definitions of other publishers that the gateway's
// output uses and R4 core does not define as it uses them
// (conformance/ig/vendor), sorted by type and id: the SMART on FHIR
// oauth-uris extension of the CapabilityStatement (OAuthURIs), whose R4 core
// copy predates its introspect and revoke sub-extensions. They are not part
// of the project's guide and keep their publishers' canonical URLs; they sit
// under conformance/ig so that a validator given that directory
// (fhir-validate --defs conformance/ig) knows every extension the gateway
// emits.
func Vendored() ([]Definition, error) { return readDefinitions("ig/vendor", false) }

// readDefinitions reads the JSON files of dir; own says whether their urls
// must be under CanonicalBase (the project's guide) or must not (vendored).
func readDefinitions(dir string, own bool) ([]Definition, error) {
	entries, err := igFiles.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("conformance: implementation guide: %w", err)
	}
	var out []Definition
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		raw, err := igFiles.ReadFile(path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("conformance: %s: %w", name, err)
		}
		d, err := parseDefinition(name, raw, own)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// parseDefinition reads one guide file and checks that its name agrees with
// its resourceType and id and that its url is under CanonicalBase (own) or
// is not (a vendored definition of another publisher).
func parseDefinition(name string, raw []byte, own bool) (Definition, error) {
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		URL          string `json:"url"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return Definition{}, fmt.Errorf("conformance: %s: %w", name, err)
	}
	if want := head.ResourceType + "-" + head.ID + ".json"; name != want {
		return Definition{}, fmt.Errorf("conformance: %s holds %s/%s (want file %s)", name, head.ResourceType, head.ID, want)
	}
	switch {
	case head.URL == "":
		return Definition{}, fmt.Errorf("conformance: %s: no url", name)
	case own && !strings.HasPrefix(head.URL, CanonicalBase+"/"):
		return Definition{}, fmt.Errorf("conformance: %s: url is not under %s", name, CanonicalBase)
	case !own && strings.HasPrefix(head.URL, CanonicalBase+"/"):
		return Definition{}, fmt.Errorf("conformance: %s: a vendored definition's url is under %s", name, CanonicalBase)
	}
	var body bytes.Buffer
	if err := json.Compact(&body, raw); err != nil {
		return Definition{}, fmt.Errorf("conformance: %s: %w", name, err)
	}
	return Definition{Type: head.ResourceType, ID: head.ID, URL: head.URL, Body: body.Bytes()}, nil
}
