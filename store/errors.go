package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
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

// ErrPreconditionFailed is what a failed RecordWrite.Expect is (errors.Is);
// the fhir package answers it 412 (or, for a conditional create, with the
// resource that exists).
var ErrPreconditionFailed = errors.New("store: precondition failed")

// PreconditionError is a RecordWrite.Expect that did not hold: the current
// version of Key is Have (0: absent or deleted), not Want. It names only the
// key and versions, so it is safe to log.
type PreconditionError struct {
	Key        Key
	Want, Have int64
}

func (e *PreconditionError) Error() string {
	return "store: precondition failed: " + e.Key.String() + " is at version " + strconv.FormatInt(e.Have, 10) +
		", expected " + strconv.FormatInt(e.Want, 10)
}

// Is makes errors.Is(err, ErrPreconditionFailed) true.
func (e *PreconditionError) Is(target error) bool { return target == ErrPreconditionFailed }

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

// IsUnavailable reports whether err means a dependency could not answer, so
// the request may succeed later: errors marked ErrUnavailable (Redis),
// network errors (refused, reset, timed out), a connection cut mid-reply,
// and SQL states of class 08 (connection exception) or 57P0x (the server is
// shutting down or restarting, PostgreSQL's operator intervention). HTTP
// layers answer these with 503, never 500.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	// The caller's own deadline or cancellation is not an outage (and
	// context.DeadlineExceeded is a net.Error).
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		s := st.SQLState()
		return strings.HasPrefix(s, "08") || s == "57P01" || s == "57P02" || s == "57P03"
	}
	return false
}

// StaleCacheError is what a Store with a shared read cache (store/cached)
// returns from Apply when the write committed but the cache could not be
// told: the WriteResults are valid (every record they list as written was
// written), yet replicas may serve answers older than the write until the
// invalidation is done. Re-sending the same records completes it (they come
// back unchanged and are invalidated again). Err is marked ErrUnavailable,
// so HTTP layers answer 503 with Retry-After (docs/design/security.md
// IN-6).
type StaleCacheError struct {
	Err error
}

func (e *StaleCacheError) Error() string {
	return "store: written, but the read cache could not be invalidated: " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *StaleCacheError) Unwrap() error { return e.Err }
