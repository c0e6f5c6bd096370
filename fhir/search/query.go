package search

import (
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of a query string or form body (docs/design/security.md LIM-1,
// LIM-2). A search takes at most maxClauses parameters anyway; MaxParams
// leaves room for control and ignored parameters.
const (
	// MaxParams is the most parameters one query or form body may carry.
	MaxParams = 1000
	// MaxQueryBytes is the longest raw query string (the part after "?")
	// the HTTP layer accepts; longer is 414.
	MaxQueryBytes = 32 << 10
)

// ParseQuery parses a URL query string or an application/x-www-form-urlencoded
// body strictly: every parameter is kept or the whole query is refused with
// an *Error (docs/design/security.md LIM-2). net/url.ParseQuery drops
// parameters and reports only the first error (Echo's QueryParams ignores
// that error), and drops ALL of them past 10,000 parameters, which turned a
// filtered search into an unfiltered one. Refused: more than MaxParams
// parameters, a ";" separator, a malformed %-escape, text that is not
// UTF-8 after unescaping, and control characters other than tab, CR and LF.
// Empty segments ("a=1&&b=2") are skipped as net/url does. The error never
// quotes the input.
func ParseQuery(raw string) (url.Values, error) {
	if n := strings.Count(raw, "&") + 1; n > MaxParams {
		return nil, &Error{Message: "too many query parameters (max " + strconv.Itoa(MaxParams) + ")"}
	}
	m := url.Values{}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			return nil, &Error{Message: `";" is not a query parameter separator; escape it as %3B`}
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, &Error{Message: "malformed %-escape in a parameter name"}
		}
		if msg := badText(key); msg != "" {
			return nil, &Error{Message: msg + " in a parameter name"}
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, &Error{Param: safeName(key), Message: "malformed %-escape in the value"}
		}
		if msg := badText(val); msg != "" {
			return nil, &Error{Param: safeName(key), Message: msg + " in the value"}
		}
		m[key] = append(m[key], val)
	}
	return m, nil
}

// badText says what is wrong with s as search text: not UTF-8, or a control
// character other than tab, CR and LF (FHIR strings hold none,
// datatypes.html#string); "" when it is fine.
func badText(s string) string {
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for _, r := range s {
		if (r < 0x20 && r != '\t' && r != '\r' && r != '\n') || r == 0x7f {
			return "a control character"
		}
	}
	return ""
}

// safeName returns a parameter name for Error.Param (logged): names of the
// shape search parameters have (letters, digits, "_", "-", ".", ":"), at
// most 100 bytes; anything else is left out.
func safeName(key string) string {
	if key == "" || len(key) > 100 {
		return ""
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return ""
		}
	}
	return key
}
