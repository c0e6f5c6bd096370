package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Validate checks what every backend needs of a record before writing it:
// kind, clinic id and hash present; resource types and ids present and free
// of '/' and newlines, each resource listed once; index rows with a
// parameter, a known kind and, for dates, a range that does not end before it
// starts; a compartment reference (CompartmentParams) to a Patient agreeing
// with the resource's Patient. Errors name positions and parameters, never
// values.
func (rec *RecordWrite) Validate() error {
	if rec.Kind == "" || rec.ClinicID == "" {
		return errors.New("record kind and clinic id are required")
	}
	if rec.Hash == "" {
		return errors.New("record hash is required")
	}
	for i, e := range rec.Expect {
		if e.Key.Type == "" || e.Key.ID == "" || e.Version < 0 {
			return fmt.Errorf("expect[%d]: type and id are required and the version may not be negative", i)
		}
	}
	seen := make(map[Key]int, len(rec.Resources))
	for i := range rec.Resources {
		rw := &rec.Resources[i]
		if rw.Type == "" || rw.ID == "" || strings.ContainsAny(rw.Type, "/\n") || strings.ContainsAny(rw.ID, "/\n") {
			return fmt.Errorf("resources[%d]: type and id are required and may not contain '/' or newlines", i)
		}
		// A resource listed twice would have two bodies for one version.
		if j, dup := seen[Key{Type: rw.Type, ID: rw.ID}]; dup {
			return fmt.Errorf("resources[%d]: the same resource as resources[%d]", i, j)
		}
		seen[Key{Type: rw.Type, ID: rw.ID}] = i
		for j := range rw.Index {
			row := &rw.Index[j]
			if row.Param == "" {
				return fmt.Errorf("%s/%s: index[%d]: param is required", rw.Type, rw.ID, j)
			}
			if row.Kind < KindToken || row.Kind > KindQuantity {
				return fmt.Errorf("%s/%s: index[%d] (%s): unknown kind %d", rw.Type, rw.ID, j, row.Param, row.Kind)
			}
			if row.Kind == KindDate && row.Lo > row.Hi {
				return fmt.Errorf("%s/%s: index[%d] (%s): date range ends before it starts", rw.Type, rw.ID, j, row.Param)
			}
			if row.Kind == KindReference && slices.Contains(CompartmentParams, row.Param) {
				if id, ok := strings.CutPrefix(row.Value, "Patient/"); ok && id != rw.Patient {
					return fmt.Errorf("%s/%s: index[%d] (%s): refers to a Patient other than the resource's compartment", rw.Type, rw.ID, j, row.Param)
				}
			}
		}
	}
	return nil
}
