package auth

import (
	"errors"
	"net/http"
	"strings"
)

// Resource-server errors (RFC 6750 §3.1).
var (
	// ErrNoBearer means the request carries no bearer credentials: 401 with
	// a bare challenge and no error code (RFC 6750 §3.1,
	// docs/design/security.md NEG-35).
	ErrNoBearer = errors.New("no bearer token")
	// ErrInsufficientScope means the token does not allow the request: 403
	// insufficient_scope (RFC 6750 §3.1, docs/design/security.md RS-3).
	ErrInsufficientScope = errors.New("insufficient_scope")
)

// BearerToken extracts the access token of an `Authorization: Bearer`
// header (RFC 6750 §2.1): the scheme is case-insensitive, there must be
// exactly one Authorization header, and the token must be one b64token.
// A request without an Authorization header, or with another scheme,
// returns ErrNoBearer; a malformed bearer credential returns an error
// wrapping ErrInvalidToken. Tokens in the query or body (§2.2, §2.3) are not
// accepted.
func BearerToken(h http.Header) (string, error) {
	vals := h.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", ErrNoBearer
	case 1:
	default:
		return "", invalid("more than one Authorization header")
	}
	scheme, tok, found := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoBearer
	}
	tok = strings.TrimLeft(tok, " ")
	if !found || !isB64Token(tok) {
		return "", invalid("malformed bearer credentials")
	}
	return tok, nil
}

// isB64Token reports whether s is RFC 6750 §2.1 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// Every request's token passes through it: one table lookup per byte.
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64tokenChar[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// b64tokenChar marks the bytes of a b64token before its "=" padding.
var b64tokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// BearerChallenge maps an error of BearerToken or Tokens.Verify, or
// ErrInsufficientScope, to the resource server's response (RFC 6750 §3,
// §3.1): the HTTP status and the WWW-Authenticate value.
//
//   - ErrNoBearer: 401, `Bearer realm="..."` (no error code)
//   - ErrInvalidToken: 401, `Bearer realm="...", error="invalid_token"`
//   - ErrInsufficientScope: 403, `Bearer realm="...", error="insufficient_scope"`
//
// Any other error is a failure to decide: 500 and no challenge (fail closed).
func BearerChallenge(realm string, err error) (status int, challenge string) {
	base := `Bearer realm="` + quoteRealm(realm) + `"`
	switch {
	case errors.Is(err, ErrNoBearer):
		return http.StatusUnauthorized, base
	case errors.Is(err, ErrInvalidToken):
		return http.StatusUnauthorized, base + `, error="invalid_token"`
	case errors.Is(err, ErrInsufficientScope):
		return http.StatusForbidden, base + `, error="insufficient_scope"`
	}
	return http.StatusInternalServerError, ""
}

// quoteRealm escapes a realm for a quoted-string (RFC 9110 §5.6.4).
func quoteRealm(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
