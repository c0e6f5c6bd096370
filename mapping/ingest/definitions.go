package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/store"
)

// Definitions record: the gateway's own conformance resources (CodeSystems,
// ValueSets, PlanDefinition templates, ...) that the mapper references, kept
// as one synthetic source record so that they are versioned like everything
// else and re-storing identical definitions is a no-op.
const (
	DefinitionsKind = "definitions"
	DefinitionsID   = "ketabridge"
)

// DefaultDefinitionTypes are the definition resource types StoreDefinitions
// stores when called without types: every type of the published guide, all
// of which fhir/search indexes.
var DefaultDefinitionTypes = []string{"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide", "OperationDefinition"}

// StoreDefinitions writes the project's definition resources
// (mapping.Definitions: the implementation guide published in
// conformance/ig) of the given resource types as one record of kind
// "definitions"; no types means DefaultDefinitionTypes (the whole guide).
// Unchanged definitions leave the store untouched.
func (s *Service) StoreDefinitions(ctx context.Context, types ...string) (store.WriteResult, error) {
	if len(types) == 0 {
		types = DefaultDefinitionTypes
	}
	all, err := mapping.Definitions()
	if err != nil {
		return store.WriteResult{}, fmt.Errorf("ingest: definitions: %w", err)
	}
	var outs []mapping.Output
	for _, o := range all {
		if slices.Contains(types, o.Type) {
			outs = append(outs, o)
		}
	}
	h := sha256.New()
	type entry struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	src := struct {
		Kind      string  `json:"kind"`
		ID        string  `json:"id"`
		Resources []entry `json:"resources"`
	}{Kind: DefinitionsKind, ID: DefinitionsID}
	w := store.RecordWrite{Kind: DefinitionsKind, ClinicID: DefinitionsID}
	for _, o := range outs {
		rw, err := s.resourceWrite(o)
		if err != nil {
			return store.WriteResult{}, fmt.Errorf("ingest: definitions: %w", err)
		}
		w.Resources = append(w.Resources, rw)
		src.Resources = append(src.Resources, entry{Type: o.Type, ID: o.ID})
		fmt.Fprintf(h, "%s/%s\n%d\n", o.Type, o.ID, len(o.Body))
		h.Write(o.Body)
	}
	w.Hash = hex.EncodeToString(h.Sum(nil))
	if w.Source, err = json.Marshal(src); err != nil {
		return store.WriteResult{}, fmt.Errorf("ingest: definitions: %w", err)
	}
	res, err := s.st.Apply(ctx, []store.RecordWrite{w})
	if err != nil {
		return store.WriteResult{}, fmt.Errorf("ingest: definitions: %w", err)
	}
	if len(res) != 1 {
		return store.WriteResult{}, fmt.Errorf("ingest: definitions: store returned %d results", len(res))
	}
	return res[0], nil
}
