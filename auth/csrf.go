package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"

	"github.com/labstack/echo/v4"
)

// CSRF protection of the login, consent, launcher and logout forms: a
// double-submit token. The browser holds a random token in the csrfCookie
// (HttpOnly, SameSite=Lax, Path=/auth) and every form carries the same value
// in a hidden "csrf" field; a POST is accepted only when both are present and
// equal (compared in constant time). Another site can make the browser post a
// form but can neither read nor set the cookie, so it cannot forge the field.
// The token also binds a pending authorization request to the browser that
// first opened it (authorize.go).

const (
	csrfCookie = "kb_csrf"
	csrfField  = "csrf"
	// csrfCookieMaxAge keeps the token for a working day.
	csrfCookieMaxAge = 12 * 60 * 60
)

// authzRandom returns n random bytes as unpadded base64url: URL-safe
// opaque ids, codes and tokens (docs/design/security.md APP-1: codes go into
// URLs unencoded).
func authzRandom(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// authCookie builds one of the pages' cookies: HttpOnly, SameSite=Lax,
// limited to /auth, Secure when Options.SecureCookies.
func (s *Server) authCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/auth",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   s.opts.SecureCookies,
		SameSite: http.SameSiteLaxMode,
	}
}

// csrfToken returns the browser's CSRF token, issuing a new cookie when it
// has none (or a malformed one).
func (s *Server) csrfToken(c echo.Context) string {
	if ck, err := c.Cookie(csrfCookie); err == nil && validOpaque(ck.Value) {
		return ck.Value
	}
	tok := authzRandom(32)
	c.SetCookie(s.authCookie(csrfCookie, tok, csrfCookieMaxAge))
	// Later reads in this request see the new token.
	c.Request().AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
	return tok
}

// checkCSRF reports whether the posted form's csrf field matches the
// browser's CSRF cookie. The form must have been parsed.
func checkCSRF(c echo.Context) bool {
	ck, err := c.Cookie(csrfCookie)
	if err != nil || !validOpaque(ck.Value) {
		return false
	}
	field := c.Request().PostFormValue(csrfField)
	return field != "" && subtle.ConstantTimeCompare([]byte(field), []byte(ck.Value)) == 1
}

// validOpaque reports whether v looks like an authzRandom(32) value.
func validOpaque(v string) bool {
	if len(v) != 43 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// errCSRF is the answer to a form post without a valid CSRF token.
var errCSRF = errorPage(http.StatusForbidden, "This form has expired",
	"The form could not be verified (missing or stale security token). Reload the page and try again.")
