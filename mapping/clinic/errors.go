package clinic

import (
	"strconv"
	"strings"
)

// FieldError is one problem with a record, located by a JSON path into the
// record ("administrations[0].doseMg"; the empty path means the record as a
// whole). Message never contains values from the record (no PHI): it says what
// is wrong, not what was sent, so a FieldError is safe to log and to return to
// the clinic.
type FieldError struct{ Path, Message string }

// Error implements error as "path: message" (just the message for the record
// as a whole).
func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// field joins a JSON path and a property name.
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// index joins a JSON path and an array index.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// errs collects FieldErrors.
type errs []FieldError

func (e *errs) add(path, msg string) { *e = append(*e, FieldError{Path: path, Message: msg}) }

// oneOf formats an enum for a message; the allowed values are ours, not the
// record's, so they are safe to show.
func oneOf(allowed []string) string {
	return "must be one of: " + strings.Join(allowed, ", ")
}
