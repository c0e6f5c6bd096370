package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Realm is the realm of the resource server's Bearer challenges (RFC 6750 §3).
const Realm = "KetaBridge"

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

// Verifier verifies an access token: signature, issuer, audience, expiry and
// revocation (docs/design/security.md RS-2). Tokens implements it. Token
// problems return an error wrapping ErrInvalidToken; any other error is a
// failure to decide.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*AccessInfo, error)
}

var _ Verifier = (*Tokens)(nil)

// BearerError is the resource server's refusal of a request (RFC 6750 §3,
// §3.1): 401 when credentials are missing or invalid, 403 when the token does
// not allow what is asked. It is a value the protected API returns to its own
// error renderer (an OperationOutcome under /fhir and /internal), which answers
// with Status and sends Challenge as WWW-Authenticate. Details is PHI-free and
// safe to log.
type BearerError struct {
	Status    int
	Challenge string
	Details   string
	err       error // ErrNoBearer, ErrInvalidToken (wrapped) or ErrInsufficientScope
}

// Error implements error.
func (e *BearerError) Error() string { return "auth: " + e.Details }

// Unwrap returns ErrNoBearer, the ErrInvalidToken error or
// ErrInsufficientScope.
func (e *BearerError) Unwrap() error { return e.err }

// refusal is the BearerError of an error of BearerToken or Verifier.Verify,
// or nil when err is a failure to decide.
func refusal(err error) *BearerError {
	status, challenge := BearerChallenge(Realm, err)
	switch {
	case errors.Is(err, ErrNoBearer):
		return &BearerError{Status: status, Challenge: challenge, Details: "bearer token required", err: err}
	case status == http.StatusUnauthorized:
		return &BearerError{Status: status, Challenge: challenge, Details: "valid bearer token required", err: err}
	}
	return nil
}

// InsufficientScope is the 403 insufficient_scope refusal (RFC 6750 §3.1,
// docs/design/security.md RS-3) with PHI-free details.
func InsufficientScope(details string) *BearerError {
	_, challenge := BearerChallenge(Realm, ErrInsufficientScope)
	return &BearerError{Status: http.StatusForbidden, Challenge: challenge, Details: details, err: ErrInsufficientScope}
}

// Authenticate is the resource server's authentication (docs/design/security.md
// RS-1, RS-2, NEG-35 to NEG-39): the first middleware of every protected route,
// before anything parses the request (content negotiation, parameters, the
// body, the resource type), so a caller without a valid token learns nothing
// of the API's shape. It verifies the request's bearer token once and puts the
// caller in the request's context (FromContext). A missing or invalid token is
// refused with a *BearerError (401); a failure to verify (the revocation set
// cannot be read) is returned as an error that is not a *BearerError, so the
// request fails closed (PRIV-2). A nil Verifier refuses every request (PRIV-1).
func Authenticate(v Verifier) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			info, err := authenticate(req, v)
			if err != nil {
				return err
			}
			c.SetRequest(req.WithContext(NewContext(req.Context(), info)))
			return next(c)
		}
	}
}

// authenticate verifies the bearer token of r.
func authenticate(r *http.Request, v Verifier) (*AccessInfo, error) {
	raw, err := BearerToken(r.Header)
	if err == nil && v == nil {
		err = invalid("no verifier configured")
	}
	if err == nil {
		var info *AccessInfo
		if info, err = v.Verify(r.Context(), raw); err == nil {
			return info, nil
		}
	}
	if be := refusal(err); be != nil {
		return nil, be
	}
	return nil, fmt.Errorf("auth: verify bearer token: %w", err)
}

// RequireScope is middleware for protected APIs that are not FHIR (the ingest
// API): after Authenticate, the caller's scopes must allow interaction i on typ
// for every patient without granular filters - in practice a SMART Backend
// Services token with system/ClinicRecord.write (or .c) for typ "ClinicRecord"
// and InteractionCreate. Anything less is refused with 403 insufficient_scope;
// a request Authenticate did not pass is refused with 401 (fail closed).
// These APIs are the clinic's own doors: a client bound to an outside
// organization (a payer or partner) is refused whatever its scopes
// (docs/design/security.md PRIV-11).
func RequireScope(typ string, i Interaction) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			info, ok := FromContext(c.Request().Context())
			if !ok {
				return refusal(ErrNoBearer)
			}
			if info.Principal.Outside() {
				return InsufficientScope("an outside organization's client")
			}
			if !Decide(info.Principal, typ, i).Unrestricted() {
				return InsufficientScope("insufficient scope")
			}
			return next(c)
		}
	}
}
