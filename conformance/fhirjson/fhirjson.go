// Package fhirjson is the gateway's one canonical emit path for FHIR R4 JSON.
// TEMPORARY STUB: replaced by the real implementation (choice[x] repair).
package fhirjson

import "encoding/json"

// Marshal returns the canonical JSON of a samply r4 resource or datatype.
func Marshal(v any) ([]byte, error) { return json.Marshal(v) }
