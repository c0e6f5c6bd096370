package fhir

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/fhir/search"
)

// Limits of the request head the gateway answers itself, on every path
// (docs/design/security.md LIM-1). The HTTP server's own cap
// (MaxHeaderBytes, set by the server package well above these) is the last
// resort: past it Go answers a plain-text 431 before any handler runs.
const (
	// MaxURIBytes is the longest request-target (path and query); longer is
	// 414.
	MaxURIBytes = 36 << 10
	// MaxQueryBytes is the longest query string; longer is 414.
	MaxQueryBytes = search.MaxQueryBytes
	// MaxHeaderFieldBytes is the longest header field (name and value);
	// longer is 431.
	MaxHeaderFieldBytes = 16 << 10
	// MaxHeaderBytes is the most all header fields together may take;
	// more is 431.
	MaxHeaderBytes = 64 << 10
)

// RequestLimits refuses a request whose head is over the limits above: 414
// for the URL, 431 for the header fields (docs/design/security.md LIM-1).
// It runs on every path, before routing matters and before authentication:
// sizes say nothing about the API, and the bytes are already read. The
// errors are echo.HTTPErrors, so the gateway's error handler renders them in
// the family of the path (an OperationOutcome, or OAuth error JSON under
// /auth).
func RequestLimits(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := checkRequestHead(c.Request()); err != nil {
			return err
		}
		return next(c)
	}
}

// checkRequestHead returns the 414 or 431 of a request head over the limits,
// nil when it is within them.
func checkRequestHead(r *http.Request) error {
	uri := r.RequestURI
	if uri == "" && r.URL != nil {
		uri = r.URL.RequestURI()
	}
	if len(uri) > MaxURIBytes || len(r.URL.RawQuery) > MaxQueryBytes {
		return echo.NewHTTPError(http.StatusRequestURITooLong)
	}
	total := 0
	for name, values := range r.Header {
		for _, v := range values {
			n := len(name) + len(v) + 4 // ": " and CRLF
			if n > MaxHeaderFieldBytes {
				return echo.NewHTTPError(http.StatusRequestHeaderFieldsTooLarge)
			}
			total += n
		}
	}
	if total > MaxHeaderBytes {
		return echo.NewHTTPError(http.StatusRequestHeaderFieldsTooLarge)
	}
	return nil
}

// cleanPath is p with runs of "/" collapsed, so "//fhir//Patient" is known
// to be a /fhir path when choosing how to answer it.
func cleanPath(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
