package fhir

import (
	"net/http"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// retryAfterUnavailable is the Retry-After (seconds) of a 503: dependencies
// come back (or fail over) on the order of seconds.
const retryAfterUnavailable = "5"

// RenderError is renderError for the gateway's error handler: an error no
// route rendered (no route matched, a method not served, a request head
// over RequestLimits) on a path outside /auth, answered with an
// OperationOutcome (docs/design/security.md LIM-3, PRIV-9).
func RenderError(c echo.Context, err error) { renderError(c, err) }

// renderError is THE error renderer under /fhir and /internal: every error
// becomes an OperationOutcome (operationoutcome.html) with the status from the
// kind table and Cache-Control: no-store. A refusal of the caller's
// credentials or scope carries its WWW-Authenticate challenge (RFC 6750 §3),
// any other 401 a bare Bearer one; 405 carries Allow; 503 Retry-After. The
// rendered *Error is remembered for AccessLog.
func renderError(c echo.Context, err error) {
	resp := c.Response()
	if resp.Committed {
		return
	}
	fe := AsError(err)
	c.Set(contextKeyError, fe)
	h := resp.Header()
	ct, ok := responseType(c)
	if !ok {
		ct = contentFHIRJSON
	}
	h.Set(echo.HeaderContentType, ct)
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Del(headerETag)
	h.Del(echo.HeaderLastModified)
	switch {
	case fe.challenge != "":
		h.Set(echo.HeaderWWWAuthenticate, fe.challenge)
	case fe.Status == http.StatusUnauthorized:
		h.Set(echo.HeaderWWWAuthenticate, "Bearer")
	}
	switch fe.Status {
	case http.StatusMethodNotAllowed:
		allow, _ := c.Get(echo.ContextKeyHeaderAllow).(string)
		if allow == "" {
			allow = "GET, HEAD" // HEAD wherever GET (docs/design/security.md LIM-3)
		}
		h.Set(echo.HeaderAllow, allow)
	case http.StatusServiceUnavailable:
		if h.Get(echo.HeaderRetryAfter) == "" {
			h.Set(echo.HeaderRetryAfter, retryAfterUnavailable)
		}
	}
	if c.Request().Method == http.MethodHead {
		resp.WriteHeader(fe.Status)
		return
	}
	body := appendOutcome(make([]byte, 0, 256), fe)
	resp.WriteHeader(fe.Status)
	_, _ = resp.Write(body)
}

// appendOutcome appends the OperationOutcome JSON for one issue.
func appendOutcome(dst []byte, e *Error) []byte {
	dst = append(dst, `{"resourceType":"OperationOutcome","issue":[`...)
	dst = appendIssue(dst, e)
	for _, m := range e.More {
		dst = append(dst, ',')
		dst = appendIssue(dst, m)
	}
	return append(dst, "]}"...)
}

// appendIssue appends one OperationOutcome.issue object; empty members are
// left out (ele-1).
func appendIssue(dst []byte, e *Error) []byte {
	sev := e.Severity
	if sev == "" {
		sev = SeverityError
	}
	dst = append(dst, `{"severity":`...)
	dst = appendString(dst, sev)
	dst = append(dst, `,"code":`...)
	dst = appendString(dst, e.Code)
	if e.Details != "" {
		dst = append(dst, `,"details":{"text":`...)
		dst = appendString(dst, e.Details)
		dst = append(dst, '}')
	}
	if e.Diagnostics != "" {
		dst = append(dst, `,"diagnostics":`...)
		dst = appendString(dst, e.Diagnostics)
	}
	n := 0
	for _, x := range e.Expression {
		if x == "" {
			continue
		}
		if n == 0 {
			dst = append(dst, `,"expression":[`...)
		} else {
			dst = append(dst, ',')
		}
		dst = appendString(dst, x)
		n++
	}
	if n > 0 {
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, so
// the output is always valid JSON.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// appendPlain is appendEscaped with a fast path for the common case: s is
// printable ASCII without '"' or '\\' (an id, a type name), checked eight
// bytes at a time, and appended as it is. The output is appendEscaped's
// (docs/design/security.md PERF-ST-15).
func appendPlain(dst []byte, s string) []byte {
	if jsonPlain(s) {
		return append(dst, s...)
	}
	return appendEscaped(dst, s)
}

// jsonPlain reports whether every byte of s is ASCII (below 0x80) and
// none is a control character (below 0x20), '"' or '\\': then s needs no
// escaping inside a JSON string.
func jsonPlain(s string) bool {
	const (
		lo = 0x0101010101010101
		hi = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// A byte >= 0x80, < 0x20, == '"' or == '\\' sets its high bit in
		// bad (the classic "has zero byte" test; it may also flag a byte
		// after a flagged one, never miss one: a false alarm only takes
		// the slow path).
		quote := w ^ (lo * '"')
		bslash := w ^ (lo * '\\')
		bad := w | ((w - lo*0x20) &^ w) | ((quote - lo) &^ quote) | ((bslash - lo) &^ bslash)
		if bad&hi != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendEscaped appends s escaped for the inside of a JSON string.
func appendEscaped(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
