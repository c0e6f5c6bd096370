package ingestapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
)

// apiError is an error about a request as a whole, rendered as an
// OperationOutcome (operationoutcome.html) with status. details is safe to
// log; diagnostics goes to the client only.
type apiError struct {
	status      int
	code        string // IssueType (valueset-issue-type)
	details     string
	diagnostics string
	cause       error
}

func (e *apiError) Error() string {
	return "ingestapi: " + http.StatusText(e.status) + ": " + e.details
}

func (e *apiError) Unwrap() error { return e.cause }

func (e *apiError) withDetails(s string) *apiError { c := *e; c.details = s; return &c }

func (e *apiError) withDiagnostics(s string) *apiError { c := *e; c.diagnostics = s; return &c }

func (e *apiError) withCause(err error) *apiError { c := *e; c.cause = err; return &c }

// The request-level errors (http.html#Status-Codes).
var (
	errBadRequest = &apiError{status: http.StatusBadRequest, code: "invalid", details: "invalid request"}
	errUnauth     = &apiError{status: http.StatusUnauthorized, code: "login",
		details: "the internal API answers loopback clients only"}
	errNotFound = &apiError{status: http.StatusNotFound, code: "not-found", details: "unknown route"}
	errMethod   = &apiError{status: http.StatusMethodNotAllowed, code: "not-supported", details: "method not allowed"}
	errTooLarge = &apiError{status: http.StatusRequestEntityTooLarge, code: "too-costly",
		details: "request body too large (limit 64 MiB)"}
	errUnsupportedMedia = &apiError{status: http.StatusUnsupportedMediaType, code: "not-supported",
		details:     "unsupported content type",
		diagnostics: "send application/json (an array of records) or application/x-ndjson (one record per line)"}
	errUnavailable = &apiError{status: http.StatusServiceUnavailable, code: "transient", details: "the store is unavailable"}
	errInternal    = &apiError{status: http.StatusInternalServerError, code: "exception", details: "internal server error"}
)

// outcome is the FHIR R4 OperationOutcome the API renders.
type outcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []issue `json:"issue"`
}

type issue struct {
	Severity    string       `json:"severity"`
	Code        string       `json:"code"`
	Details     *issueDetail `json:"details,omitempty"`
	Diagnostics string       `json:"diagnostics,omitempty"`
}

type issueDetail struct {
	Text string `json:"text"`
}

// RenderErrors is the group's one error renderer: an error a handler (or a
// later middleware) returns becomes an OperationOutcome with its status.
// Unknown errors are 500 with a generic text; the cause stays in the error
// chain for the request log.
func RenderErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil {
			return nil
		}
		e := asAPIError(err)
		if c.Response().Committed {
			return err
		}
		iss := issue{Severity: "error", Code: e.code, Diagnostics: e.diagnostics}
		if e.details != "" {
			iss.Details = &issueDetail{Text: e.details}
		}
		c.Response().Header().Set(echo.HeaderContentType, MIMEFHIRJSON+contentTypeUTF8)
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		if e.status == http.StatusServiceUnavailable {
			// The store (or the shared cache) should be back within seconds;
			// re-sending the batch is safe (landed records come back unchanged).
			c.Response().Header().Set(echo.HeaderRetryAfter, "5")
		}
		if werr := c.JSON(e.status, outcome{ResourceType: "OperationOutcome", Issue: []issue{iss}}); werr != nil {
			return werr
		}
		if e.status >= 500 {
			// Let the request logger see the failure; the response is written.
			c.Set("ingestapi.error", err)
		}
		return nil
	}
}

func asAPIError(err error) *apiError {
	var ae *apiError
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errTooLarge.withCause(err)
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			return errNotFound.withCause(err)
		case http.StatusMethodNotAllowed:
			return errMethod.withCause(err)
		case http.StatusRequestEntityTooLarge:
			return errTooLarge.withCause(err)
		case http.StatusUnsupportedMediaType:
			return errUnsupportedMedia.withCause(err)
		}
		if he.Code >= 400 && he.Code < 500 {
			return &apiError{status: he.Code, code: "invalid", details: http.StatusText(he.Code), cause: err}
		}
	}
	return errInternal.withCause(err)
}

// LoopbackOnly lets through requests whose TCP peer (RemoteAddr, never a
// forwarding header) is a loopback address, and answers every other request
// 401 with an OperationOutcome. It is the internal API's guard until SMART
// authorization covers it; auth.IsLoopback is the rule.
func LoopbackOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !auth.IsLoopback(c.Request().RemoteAddr) {
			// RFC 6750 §3: a protected resource names the scheme it wants.
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, "Bearer")
			return errUnauth
		}
		return next(c)
	}
}
