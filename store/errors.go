package store

import (
	"fmt"
	"strconv"
	"strings"
)

// Failed is the Outcome of a record that Apply could not write; nothing of it
// was written and the error Apply returns is a *BatchError naming it.
const Failed Outcome = "failed"

// RecordError is why one record of an Apply batch was not written. It carries
// the record's position and key, never its contents, so it is safe to log.
type RecordError struct {
	// Index is the record's position in the batch.
	Index int
	Key   RecordKey
	Err   error
}

func (e *RecordError) Error() string {
	return "record " + strconv.Itoa(e.Index) + " (" + e.Key.Kind + "/" + e.Key.ClinicID + "): " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *RecordError) Unwrap() error { return e.Err }

// BatchError is what Apply returns when some records of a batch failed while
// the others were written: every record not listed here was written, and its
// WriteResult is valid. The failed records' WriteResults have Outcome Failed.
type BatchError struct {
	Records []*RecordError
}

func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store: %d record(s) not written", len(e.Records))
	for i, r := range e.Records {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Records)-3)
			break
		}
		b.WriteString("; ")
		b.WriteString(r.Error())
	}
	return b.String()
}

// Unwrap returns the record errors, so errors.Is/As see each cause.
func (e *BatchError) Unwrap() []error {
	out := make([]error, len(e.Records))
	for i, r := range e.Records {
		out[i] = r
	}
	return out
}
