package fhir

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// Issue severities (FHIR R4 valueset-issue-severity).
const (
	SeverityFatal       = "fatal"
	SeverityError       = "error"
	SeverityWarning     = "warning"
	SeverityInformation = "information"
)

// Error is a FHIR API error. The one renderer (see Server.renderError) turns
// it into an OperationOutcome with Status (operationoutcome.html,
// http.html#Status-Codes).
//
// Details is safe to log: a fixed text plus, at most, resource types, ids and
// parameter names - never query values or resource content. Diagnostics goes
// to the client only and is never logged. Errors are values: the With*
// helpers return modified copies, so the sentinels below are never mutated.
type Error struct {
	Status int
	// Code is the IssueType (valueset-issue-type), e.g. "not-found".
	Code     string
	Severity string
	// Details is the details.text; safe to log.
	Details string
	// Diagnostics is the diagnostics; for the client only.
	Diagnostics string
	// Expression lists the FHIRPath expressions (or, for search, the parameter
	// names) the issue is about.
	Expression []string

	// More are further issues of the same OperationOutcome (a transaction
	// Bundle names each failing entry); their Status is ignored.
	More []*Error

	cause error
	// challenge is the WWW-Authenticate value of a refusal (RFC 6750 §3).
	challenge string
}

// kind is one row of the status <-> IssueType table.
type kind struct {
	status  int
	code    string
	details string
}

// kinds is THE table mapping an error kind to its HTTP status and IssueType
// (http.html#Status-Codes, valueset-issue-type). Sentinels, NewError and the
// echo error mapping all read it.
var kinds = []kind{
	{http.StatusBadRequest, "invalid", "invalid request"},
	{http.StatusUnauthorized, "login", "authentication required"},
	{http.StatusForbidden, "forbidden", "access denied"},
	{http.StatusNotFound, "not-found", "resource not found"},
	{http.StatusMethodNotAllowed, "not-supported", "interaction not supported"},
	{http.StatusNotAcceptable, "not-supported", "only JSON is supported"},
	{http.StatusConflict, "conflict", "the request conflicts with the resource's current state"},
	{http.StatusGone, "deleted", "resource deleted"},
	{http.StatusPreconditionFailed, "conflict", "the resource changed since the version the request names"},
	{http.StatusRequestEntityTooLarge, "too-costly", "request body too large"},
	{http.StatusRequestURITooLong, "too-long", "request URL too long"},
	{http.StatusUnsupportedMediaType, "not-supported", "unsupported content type"},
	{http.StatusRequestedRangeNotSatisfiable, "invalid", "requested range not satisfiable"},
	{http.StatusUnprocessableEntity, "processing", "request could not be processed"},
	{http.StatusPreconditionRequired, "required", "If-Match with the current version is required"},
	{http.StatusTooManyRequests, "throttled", "too many requests"},
	{http.StatusRequestHeaderFieldsTooLarge, "too-long", "request header fields too large"},
	{http.StatusInternalServerError, "exception", "internal server error"},
	{http.StatusNotImplemented, "not-supported", "not implemented"},
	{http.StatusServiceUnavailable, "timeout", "service unavailable"},
	{http.StatusGatewayTimeout, "timeout", "request timed out"},
}

func kindOf(status int) kind {
	for _, k := range kinds {
		if k.status == status {
			return k
		}
	}
	if status >= 500 {
		return kindOf(http.StatusInternalServerError)
	}
	return kindOf(http.StatusBadRequest)
}

// NewError returns an Error for status with the IssueType and default details
// from the kind table.
func NewError(status int) *Error {
	k := kindOf(status)
	return &Error{Status: k.status, Code: k.code, Severity: SeverityError, Details: k.details}
}

// Sentinel errors; compare with errors.Is (which matches copies made by the
// With* helpers, by Status and Code).
var (
	ErrInvalid          = NewError(http.StatusBadRequest)
	ErrUnauthorized     = NewError(http.StatusUnauthorized)
	ErrForbidden        = NewError(http.StatusForbidden)
	ErrNotFound         = NewError(http.StatusNotFound)
	ErrMethodNotAllowed = NewError(http.StatusMethodNotAllowed)
	ErrNotAcceptable    = NewError(http.StatusNotAcceptable)
	ErrGone             = NewError(http.StatusGone)
	ErrTooLarge         = NewError(http.StatusRequestEntityTooLarge)
	ErrUnsupportedMedia = NewError(http.StatusUnsupportedMediaType)
	ErrInternal         = NewError(http.StatusInternalServerError)
	ErrNotImplemented   = NewError(http.StatusNotImplemented)
	ErrTimeout          = NewError(http.StatusServiceUnavailable)
	// ErrUnavailable: a backing service (database, shared auth state) cannot
	// be reached; the request may succeed later (Retry-After is set).
	ErrUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: "transient", Severity: SeverityError,
		Details: "a backing service is temporarily unavailable; retry later"}
	ErrUnknownType   = ErrNotFound.WithDetails("resource type not supported")
	ErrUnknownRoute  = ErrNotFound.WithDetails("unknown route")
	ErrReadOnly      = ErrMethodNotAllowed.WithDetails("this API is read-only")
	ErrInvalidSearch = ErrInvalid.WithDetails("invalid search parameter")
)

// Error implements error; the text is Details, safe to log.
func (e *Error) Error() string {
	return fmt.Sprintf("fhir: %d %s: %s", e.Status, e.Code, e.Details)
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an *Error of the same Status and Code, so
// errors.Is(err, ErrNotFound) holds for every copy of the sentinel.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status && t.Code == e.Code
}

func (e *Error) clone() *Error {
	c := *e
	c.Expression = slices.Clone(e.Expression)
	c.More = slices.Clone(e.More)
	return &c
}

// WithDetails returns a copy with Details set (must be safe to log).
func (e *Error) WithDetails(details string) *Error {
	c := e.clone()
	c.Details = details
	return c
}

// WithDiagnostics returns a copy with Diagnostics set (client only).
func (e *Error) WithDiagnostics(diagnostics string) *Error {
	c := e.clone()
	c.Diagnostics = diagnostics
	return c
}

// WithExpression returns a copy with Expression set.
func (e *Error) WithExpression(expr ...string) *Error {
	c := e.clone()
	c.Expression = slices.Clone(expr)
	return c
}

// WithSeverity returns a copy with Severity set.
func (e *Error) WithSeverity(severity string) *Error {
	c := e.clone()
	c.Severity = severity
	return c
}

// WithMore returns a copy with more issues after its own.
func (e *Error) WithMore(more ...*Error) *Error {
	c := e.clone()
	c.More = append(c.More, more...)
	return c
}

// WithCause returns a copy wrapping cause (for errors.Is/As and logs; never
// rendered to the client).
func (e *Error) WithCause(cause error) *Error {
	c := e.clone()
	c.cause = cause
	return c
}

// AsError maps any error a handler returns to an *Error: the resource
// server's refusals (auth.BearerError: 401 login or 403 forbidden with their
// challenge), store sentinels, search parse errors, echo errors, body-limit
// and context errors; anything else becomes a 500 exception with a generic
// text wrapping the cause.
func AsError(err error) *Error {
	var fe *Error
	var be *auth.BearerError
	var se *search.Error
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return fe
	case errors.As(err, &be):
		e := NewError(be.Status).WithDetails(be.Details).WithCause(err)
		e.challenge = be.Challenge
		return e
	case errors.Is(err, store.ErrGone):
		return ErrGone.WithCause(err)
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound.WithCause(err)
	case errors.As(err, &se):
		// The message may quote the offending value: client only.
		e := ErrInvalidSearch.WithDiagnostics(se.Message).WithCause(err)
		if se.Param != "" {
			e.Expression = []string{se.Param}
		}
		return e
	case errors.As(err, &mbe):
		return ErrTooLarge.WithCause(err)
	case errors.As(err, &he):
		if inner, ok := he.Internal.(*echo.HTTPError); ok {
			he = inner
		}
		switch he.Code {
		case http.StatusNotFound:
			return ErrUnknownRoute.WithCause(err)
		case http.StatusMethodNotAllowed:
			return ErrMethodNotAllowed.WithCause(err)
		}
		// echo messages may quote input: use the table's generic text.
		return NewError(he.Code).WithCause(err)
	case store.IsUnavailable(err):
		return ErrUnavailable.WithCause(err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ErrTimeout.WithCause(err)
	default:
		return ErrInternal.WithCause(err)
	}
}
