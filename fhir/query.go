package fhir

import (
	"errors"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/fhir/search"
)

// contextKeyQuery is the echo.Context key of the request's strictly parsed
// query parameters.
const contextKeyQuery = "fhir.query"

// queryParams returns the request's query parameters, parsed strictly by
// search.ParseQuery once per request (docs/design/security.md LIM-2): every
// parameter or a 400 OperationOutcome, never a partial set. Handlers under
// /fhir read their parameters here, never through echo.Context.QueryParams
// (which drops what net/url cannot parse, and everything past 10,000
// parameters, without an error).
func queryParams(c echo.Context) (url.Values, error) {
	if v, ok := c.Get(contextKeyQuery).(url.Values); ok {
		return v, nil
	}
	v, err := search.ParseQuery(c.Request().URL.RawQuery)
	if err != nil {
		return nil, malformed("malformed query string", err)
	}
	c.Set(contextKeyQuery, v)
	return v, nil
}

// malformed is the 400 of a query string or form body search.ParseQuery
// refused: details fixed (logged), the parser's message as diagnostics.
func malformed(details string, err error) *Error {
	e := ErrInvalid.WithDetails(details).WithCause(err)
	var se *search.Error
	if errors.As(err, &se) {
		e = e.WithDiagnostics(se.Message)
		if se.Param != "" {
			e = e.WithExpression(se.Param)
		}
	}
	return e
}

// strictQuery refuses a request whose query string search.ParseQuery
// refuses, before anything reads a parameter. It runs after authentication
// (docs/design/security.md LIM-4): an unauthenticated caller learns nothing
// about what the API accepts.
func strictQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// No query string, nothing to refuse (a read by id, most often):
		// parsing it would only allocate the empty values (PERF-ST-19).
		if c.Request().URL.RawQuery == "" {
			return next(c)
		}
		if _, err := queryParams(c); err != nil {
			return err
		}
		return next(c)
	}
}

// formatParam is the _format parameter of the request for content
// negotiation, "" when absent. Before strictQuery has run (an error rendered
// earlier, such as a 401) it parses the query on its own, and a query it
// cannot parse has no _format.
func formatParam(c echo.Context) string {
	raw := c.Request().URL.RawQuery
	if raw == "" {
		return ""
	}
	if v, ok := c.Get(contextKeyQuery).(url.Values); ok {
		return v.Get("_format")
	}
	if len(raw) > search.MaxQueryBytes {
		return ""
	}
	v, err := search.ParseQuery(raw)
	if err != nil {
		return ""
	}
	return v.Get("_format")
}
