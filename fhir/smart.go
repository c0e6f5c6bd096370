package fhir

import (
	"errors"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// DefaultRealm is the realm of the Bearer challenges (RFC 6750 §3) when
// SMART.Realm is empty, and of RequireScope's.
const DefaultRealm = "KetaBridge"

// contextKeyAccess is the echo.Context key of the request's verified token
// (*auth.AccessInfo) or its verification error.
const contextKeyAccess = "fhir.smart.access"

// SMART is the resource server's Authorizer: every interaction except
// metadata needs a valid SMART access token (docs/design/security.md RS-1 to
// RS-5), and the token's scopes decide (auth.Decide) what it may see,
// narrowing queries BEFORE they run.
//
//   - read, vread, instance history need r; search needs s; $everything needs
//     r on the Patient itself, and every other type of the compartment is
//     authorized separately with s (the Server asks per type), so
//     $everything returns only the types the token may search;
//   - patient/ scopes restrict to the patient in context (Decision.Patients);
//   - granular scopes (`?category=vital-signs`) become Decision.Filters.
//
// A missing token gives 401 with `WWW-Authenticate: Bearer realm="..."`, an
// invalid one 401 invalid_token, an insufficient one 403 insufficient_scope
// (RFC 6750 §3.1); a failure to decide fails closed (500, no data).
type SMART struct {
	Tokens *auth.Tokens
	Realm  string
	// RateLimit, when set, limits each client's requests: a request with a
	// valid token is charged right after verification, before any decision
	// or store work, and a throttled one is denied with 429.
	RateLimit *RateLimit
}

var _ Authorizer = SMART{}

func (s SMART) realm() string {
	if s.Realm == "" {
		return DefaultRealm
	}
	return s.Realm
}

// TokenInfo returns the access token verified for this request by SMART or
// RequireScope, or nil.
func TokenInfo(c echo.Context) *auth.AccessInfo {
	info, _ := c.Get(contextKeyAccess).(*auth.AccessInfo)
	return info
}

// verify extracts and verifies the request's bearer token once per request.
func verifyRequest(c echo.Context, tokens *auth.Tokens) (*auth.AccessInfo, error) {
	switch v := c.Get(contextKeyAccess).(type) {
	case *auth.AccessInfo:
		return v, nil
	case error:
		return nil, v
	}
	info, err := verifyBearer(c, tokens)
	if err != nil {
		c.Set(contextKeyAccess, err)
		return nil, err
	}
	c.Set(contextKeyAccess, info)
	return info, nil
}

func verifyBearer(c echo.Context, tokens *auth.Tokens) (*auth.AccessInfo, error) {
	raw, err := auth.BearerToken(c.Request().Header)
	if err != nil {
		return nil, err
	}
	if tokens == nil {
		return nil, errors.New("fhir: SMART without Tokens")
	}
	return tokens.Verify(c.Request().Context(), raw)
}

// challengeDecision turns a bearer or scope error into a denying Decision
// with its RFC 6750 challenge, or returns the error itself when it is a
// failure to decide (fail closed: 500).
func challengeDecision(realm string, err error, details string) (Decision, error) {
	status, ch := auth.BearerChallenge(realm, err)
	switch status {
	case http.StatusUnauthorized:
		e := ErrUnauthorized.WithDetails("valid bearer token required")
		if errors.Is(err, auth.ErrNoBearer) {
			e = ErrUnauthorized.WithDetails("bearer token required")
		}
		return Decision{Deny: e, Challenge: ch}, nil
	case http.StatusForbidden:
		return Decision{Deny: ErrForbidden.WithDetails(details), Challenge: ch}, nil
	}
	return Decision{}, err
}

// interactionOf maps a FHIR API interaction to the SMART interaction it
// needs (docs/design/security.md RS-3); $everything needs read on the Patient.
func interactionOf(i Interaction) (auth.Interaction, bool) {
	switch i {
	case InteractionRead, InteractionEverything:
		return auth.InteractionRead, true
	case InteractionVRead:
		return auth.InteractionVRead, true
	case InteractionHistory:
		return auth.InteractionHistoryInstance, true
	case InteractionSearch:
		return auth.InteractionSearch, true
	case InteractionCreate:
		return auth.InteractionCreate, true
	case InteractionUpdate:
		return auth.InteractionUpdate, true
	case InteractionPatch:
		return auth.InteractionPatch, true
	case InteractionDelete:
		return auth.InteractionDelete, true
	}
	return "", false
}

// Authenticate implements Authenticator: a valid bearer token allows; a
// missing or invalid one is denied with the RFC 6750 challenge.
func (s SMART) Authenticate(c echo.Context) (Decision, error) {
	info, err := verifyRequest(c, s.Tokens)
	if err != nil {
		return challengeDecision(s.realm(), err, "")
	}
	if e := s.RateLimit.check(c, info); e != nil {
		return Deny(e), nil
	}
	return Allow(), nil
}

// Authorize implements Authorizer.
func (s SMART) Authorize(c echo.Context, a Access) (Decision, error) {
	if a.Interaction == InteractionMetadata {
		return Allow(), nil // docs/design/security.md RS-1: metadata is open
	}
	info, err := verifyRequest(c, s.Tokens)
	if err != nil {
		return challengeDecision(s.realm(), err, "")
	}
	if e := s.RateLimit.check(c, info); e != nil {
		return Deny(e), nil
	}
	_, insufficient := auth.BearerChallenge(s.realm(), auth.ErrInsufficientScope)
	deny := func(details string) (Decision, error) {
		return Decision{Deny: ErrForbidden.WithDetails(details), Challenge: insufficient}, nil
	}
	ai, ok := interactionOf(a.Interaction)
	if !ok {
		return deny("interaction not supported")
	}
	ad := auth.Decide(info.Principal, a.Type, ai)
	if !ad.Allowed {
		return deny("insufficient scope: " + ad.Reason)
	}
	filters, err := FilterClauses(a.Type, ad.FilterSets)
	if err != nil {
		return deny("granular scope cannot be enforced on this type")
	}
	d := Decision{Allow: true, Filters: filters, Challenge: insufficient}
	if ad.Patients == nil {
		d.AllPatients = true
	} else {
		// A patient/ token is narrowed to its patient even when that
		// patient does not exist (empty results), never widened.
		d.Patients = slices.DeleteFunc(slices.Clone(ad.Patients), func(p string) bool { return p == "" })
	}
	return d, nil
}

// errNotExpressible is a set of granular filters that cannot be ANDed into
// one store query.
var errNotExpressible = errors.New("fhir: granular scope filters not expressible as a query")

// FilterClauses expresses auth.Decision.FilterSets (a union of ANDed
// granular filters, docs/design/security.md RS-5) as store clauses ANDed into
// a query of typ. Expressible: no sets (nil: the whole type); one set (each
// filter a clause); sets of one filter each on the same parameter (one clause
// whose Values are the union, e.g. category=vital-signs OR survey). A set that
// contains another set adds nothing to the union and is dropped first.
// Anything else returns an error and the caller denies: a union of different
// parameters cannot be ANDed without widening or narrowing wrongly, so it
// fails closed. Parameters must be token (or _id/reference) search parameters
// of typ known to fhir/search.
func FilterClauses(typ string, sets [][]auth.Filter) ([]store.Clause, error) {
	if len(sets) == 0 {
		return nil, nil
	}
	sets = minimalSets(sets)
	if len(sets) == 1 {
		out := make([]store.Clause, 0, len(sets[0]))
		for _, f := range sets[0] {
			cl, err := filterClause(typ, f.Param, []auth.Filter{f})
			if err != nil {
				return nil, err
			}
			out = append(out, cl)
		}
		return out, nil
	}
	param := sets[0][0].Param
	var union []auth.Filter
	for _, set := range sets {
		if len(set) != 1 || set[0].Param != param {
			return nil, errNotExpressible
		}
		if !slices.Contains(union, set[0]) {
			union = append(union, set[0])
		}
	}
	cl, err := filterClause(typ, param, union)
	if err != nil {
		return nil, err
	}
	return []store.Clause{cl}, nil
}

// minimalSets drops every set that contains another (A ∪ (A∧B) = A) and
// duplicates.
func minimalSets(sets [][]auth.Filter) [][]auth.Filter {
	subset := func(a, b []auth.Filter) bool { // a ⊆ b
		for _, f := range a {
			if !slices.Contains(b, f) {
				return false
			}
		}
		return true
	}
	var out [][]auth.Filter
	for i, s := range sets {
		redundant := false
		for j, o := range sets {
			if i == j || !subset(o, s) {
				continue
			}
			// o ⊆ s: s is redundant unless they are equal and s comes first.
			if !subset(s, o) || j < i {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, s)
		}
	}
	return out
}

// filterClause is one clause matching any of the filters (all on param).
func filterClause(typ, param string, fs []auth.Filter) (store.Clause, error) {
	p, ok := search.Lookup(typ, param)
	if !ok {
		return store.Clause{}, errNotExpressible
	}
	cl := store.Clause{Param: p.Name, Kind: p.Type}
	for _, f := range fs {
		var v store.Value
		switch {
		case p.Name == store.ParamID:
			if f.System != "" {
				return store.Clause{}, errNotExpressible
			}
			v = store.Value{Str: f.Code}
		case p.Type == store.KindToken && p.FHIRType() == "uri":
			if f.System != "" {
				return store.Clause{}, errNotExpressible
			}
			v = store.Value{Code: f.Code, AnySystem: true}
		case p.Type == store.KindToken:
			// `category=vital-signs` matches any system (search.html#token).
			// The scope parser reads `|code` (explicitly no system) as a bare
			// code too, so that form also matches any system.
			v = store.Value{System: f.System, Code: f.Code, AnySystem: f.System == ""}
		case p.Type == store.KindReference:
			if f.System != "" {
				return store.Clause{}, errNotExpressible
			}
			v = store.Value{Str: f.Code}
		default:
			return store.Clause{}, errNotExpressible
		}
		cl.Values = append(cl.Values, v)
	}
	return cl, nil
}

// RequireScope is middleware for non-FHIR APIs (the ingest API under
// /internal/v1): the request needs a valid access token whose scopes allow
// interaction i on typ for every patient without granular filters - in
// practice a SMART Backend Services token with `system/ClinicRecord.write`
// (or .c) for typ "ClinicRecord" and auth.InteractionCreate. Failures are
// OperationOutcomes: 401 (+ WWW-Authenticate: Bearer) for a missing or
// invalid token, 403 insufficient_scope, 500 when the decision fails.
func RequireScope(t *auth.Tokens, typ string, i auth.Interaction) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			info, err := verifyRequest(c, t)
			if err != nil {
				status, ch := auth.BearerChallenge(DefaultRealm, err)
				if status == http.StatusInternalServerError {
					if store.IsUnavailable(err) {
						return writeOutcome(c, ErrUnavailable, "")
					}
					return writeOutcome(c, ErrAuthorizerFailure, "")
				}
				return writeOutcome(c, NewError(status).WithDetails("valid bearer token required"), ch)
			}
			d := auth.Decide(info.Principal, typ, i)
			if !d.Allowed || d.Patients != nil || len(d.FilterSets) > 0 {
				_, ch := auth.BearerChallenge(DefaultRealm, auth.ErrInsufficientScope)
				return writeOutcome(c, ErrForbidden.WithDetails("insufficient scope"), ch)
			}
			return next(c)
		}
	}
}

// writeOutcome answers with an OperationOutcome for e and, when set, a
// WWW-Authenticate challenge.
func writeOutcome(c echo.Context, e *Error, challenge string) error {
	h := c.Response().Header()
	if challenge != "" {
		h.Set(echo.HeaderWWWAuthenticate, challenge)
	}
	h.Set("Cache-Control", "no-store")
	return c.Blob(e.Status, contentFHIRJSON, appendOutcome(make([]byte, 0, 256), e))
}
