package auth

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// OAuthError is an OAuth 2.0 error response (RFC 6749 §5.2, §4.1.2.1): the
// error code, the HTTP status the token-side endpoints answer with, and a
// human-readable description. Descriptions never carry secrets, codes,
// tokens or PHI: they are safe to log and to show.
type OAuthError struct {
	Status      int
	Code        string
	Description string
}

// Error implements error.
func (e *OAuthError) Error() string {
	if e.Description == "" {
		return "oauth: " + e.Code
	}
	return "oauth: " + e.Code + ": " + e.Description
}

// WithDescription returns a copy of e with the description set; the sentinel
// itself is never modified.
func (e *OAuthError) WithDescription(d string) *OAuthError {
	c := *e
	c.Description = d
	return &c
}

// Is makes errors.Is match any OAuthError with the same code.
func (e *OAuthError) Is(target error) bool {
	t, ok := target.(*OAuthError)
	return ok && t.Code == e.Code
}

// RFC 6749 §5.2 (token endpoint), §4.1.2.1 (authorization endpoint) and
// RFC 6750 §3.1 errors. Use WithDescription for a specific text.
var (
	// ErrInvalidRequest: a parameter is missing, repeated, malformed or unsupported.
	ErrInvalidRequest = &OAuthError{Status: http.StatusBadRequest, Code: "invalid_request"}
	// ErrInvalidClient: client authentication failed (401; RFC 6749 §5.2).
	ErrInvalidClient = &OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client"}
	// ErrInvalidGrant: the code or refresh token is invalid, expired, revoked,
	// bound to another client or redirect URI, or the PKCE verifier fails.
	ErrInvalidGrant = &OAuthError{Status: http.StatusBadRequest, Code: "invalid_grant"}
	// ErrUnauthorizedClient: the client may not use this grant type.
	ErrUnauthorizedClient = &OAuthError{Status: http.StatusBadRequest, Code: "unauthorized_client"}
	// ErrUnsupportedGrantType: the grant type is not supported.
	ErrUnsupportedGrantType = &OAuthError{Status: http.StatusBadRequest, Code: "unsupported_grant_type"}
	// ErrInvalidScope: the requested scope is invalid, unknown, malformed or
	// exceeds what was granted.
	ErrInvalidScope = &OAuthError{Status: http.StatusBadRequest, Code: "invalid_scope"}
	// ErrAccessDenied: the resource owner or server denied the request.
	ErrAccessDenied = &OAuthError{Status: http.StatusForbidden, Code: "access_denied"}
	// ErrUnsupportedResponseType: the authorization server does not support
	// this response_type (RFC 6749 §4.1.2.1).
	ErrUnsupportedResponseType = &OAuthError{Status: http.StatusBadRequest, Code: "unsupported_response_type"}
	// ErrServerError: an unexpected condition (500). Its description is generic.
	ErrServerError = &OAuthError{Status: http.StatusInternalServerError, Code: "server_error", Description: "internal error"}
	// ErrTemporarilyUnavailable: the server is overloaded or a dependency is
	// down (503).
	ErrTemporarilyUnavailable = &OAuthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable"}
)

// challengeError is an OAuthError answered with a WWW-Authenticate header:
// RFC 6749 §5.2 requires it on a 401 invalid_client when the client tried
// HTTP Basic authentication.
type challengeError struct {
	*OAuthError
	challenge string
}

func (e *challengeError) Unwrap() error { return e.OAuthError }

// withChallenge attaches a WWW-Authenticate challenge to e.
func withChallenge(e *OAuthError, challenge string) error {
	return &challengeError{OAuthError: e, challenge: challenge}
}

// basicChallenge is the WWW-Authenticate value for HTTP Basic client auth.
const basicChallenge = `Basic realm="ketabridge", charset="UTF-8"`

// noStore sets the caching headers every token-side JSON response carries
// (RFC 6749 §5.1, §5.2; docs/design/security.md TOK-4).
func noStore(c echo.Context) {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// oauthErrors is the error renderer of the /auth JSON endpoints as middleware:
// an error the handler (or the CORS check) returns is answered through
// writeOAuthError.
func (s *Server) oauthErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := next(c); err != nil {
			return s.writeOAuthError(c, err)
		}
		return nil
	}
}

// writeOAuthError is the one renderer of errors for the /auth JSON endpoints:
// `{"error","error_description"}` with no-store caching. Anything that is not
// an OAuthError becomes a 500 server_error with a generic description; the
// cause goes to the log (it carries no secrets: callers wrap ids only).
func (s *Server) writeOAuthError(c echo.Context, err error) error {
	var oe *OAuthError
	if !errors.As(err, &oe) && store.IsUnavailable(err) {
		// Shared state (database, Redis) is down: fail closed, transiently.
		s.opts.Logger.WarnContext(c.Request().Context(), "auth endpoint: dependency unavailable",
			"path", c.Path(), "err", err.Error())
		oe = &OAuthError{Status: http.StatusServiceUnavailable, Code: ErrTemporarilyUnavailable.Code,
			Description: "a backing service is temporarily unavailable; retry later"}
		c.Response().Header().Set("Retry-After", "5")
	}
	if oe == nil {
		s.opts.Logger.ErrorContext(c.Request().Context(), "auth endpoint failed",
			"path", c.Path(), "err", err.Error())
		oe = ErrServerError
	}
	var ch *challengeError
	if errors.As(err, &ch) {
		c.Response().Header().Set("WWW-Authenticate", ch.challenge)
	}
	noStore(c)
	body := map[string]string{"error": oe.Code}
	if oe.Description != "" {
		body["error_description"] = oe.Description
	}
	return c.JSON(oe.Status, body)
}

// RenderError is the gateway's error handler for /auth paths: an error no
// /auth route rendered (an unknown path, a method the endpoint does not
// serve, a request head over the gateway's limits) is answered as OAuth
// error JSON through writeOAuthError (docs/design/security.md PRIV-9,
// LIM-3): invalid_request with the HTTP status of a client error, and Allow
// on a 405.
func (s *Server) RenderError(c echo.Context, err error) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) && he.Code >= 400 && he.Code < 500 {
		if he.Code == http.StatusMethodNotAllowed {
			if allow, _ := c.Get(echo.ContextKeyHeaderAllow).(string); allow != "" {
				c.Response().Header().Set(echo.HeaderAllow, allow)
			}
		}
		err = ErrInvalidRequest.withStatus(he.Code, strings.ToLower(http.StatusText(he.Code)))
	}
	_ = s.writeOAuthError(c, err)
}

// withStatus returns a copy of e answered with status and description.
func (e *OAuthError) withStatus(status int, description string) *OAuthError {
	c := *e
	c.Status, c.Description = status, description
	return &c
}
