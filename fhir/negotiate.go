package fhir

import (
	"strings"

	"github.com/labstack/echo/v4"
)

// Media types (http.html#mime-type).
const (
	MIMEFHIRJSON     = "application/fhir+json"
	MIMEJSON         = "application/json"
	contentFHIRJSON  = MIMEFHIRJSON + "; charset=utf-8"
	contentPlainJSON = MIMEJSON + "; charset=utf-8"
	mimeForm         = "application/x-www-form-urlencoded"
)

// negotiate rejects requests that accept no JSON (Accept or _format asks for
// XML, Turtle or anything else) with 406 (http.html#mime-type).
func (s *Server) negotiate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, ok := responseType(c); !ok {
			return ErrNotAcceptable
		}
		return next(c)
	}
}

// responseType returns the Content-Type to answer with and whether the
// request accepts JSON at all. _format overrides Accept (http.html#mime-type).
// application/json is answered only to a client that asked for
// application/json and not for application/fhir+json.
func responseType(c echo.Context) (string, bool) {
	req := c.Request()
	if f := formatParam(c); f != "" {
		switch mediaType(f) {
		case "json", MIMEFHIRJSON, "application/json+fhir", "fhir+json":
			return contentFHIRJSON, true
		case MIMEJSON:
			return contentPlainJSON, true
		}
		return "", false
	}
	accept := req.Header.Get(echo.HeaderAccept)
	if accept == "" {
		return contentFHIRJSON, true
	}
	fhirJSON, plainJSON, wildcard := false, false, false
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, _ := strings.Cut(part, ";")
		if zeroQuality(params) {
			continue
		}
		switch mediaType(mt) {
		case MIMEFHIRJSON, "application/json+fhir":
			fhirJSON = true
		case MIMEJSON:
			plainJSON = true
		case "*/*", "application/*":
			wildcard = true
		}
	}
	switch {
	case fhirJSON || (wildcard && !plainJSON):
		return contentFHIRJSON, true
	case plainJSON:
		return contentPlainJSON, true
	}
	return "", false
}

// mediaType returns the lower-cased media type of a header value without
// parameters.
func mediaType(v string) string {
	mt, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// zeroQuality reports whether media-type parameters carry q=0.
func zeroQuality(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			v = strings.TrimRight(strings.TrimSpace(v), "0")
			return v == "" || v == "." || v == "0" || v == "0."
		}
	}
	return false
}

const headerETag = "ETag"
