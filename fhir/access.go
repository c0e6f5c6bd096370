package fhir

import (
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// Interaction names a FHIR interaction for an access decision
// (http.html, operation-patient-everything.html).
type Interaction string

// Interactions the read-only API serves.
const (
	InteractionRead       Interaction = "read"
	InteractionVRead      Interaction = "vread"
	InteractionHistory    Interaction = "history"
	InteractionSearch     Interaction = "search"
	InteractionEverything Interaction = "everything"
	InteractionMetadata   Interaction = "metadata"
	// Write interactions are authorized before the read-only API refuses
	// them (405), so a token lacking the scope gets 401/403
	// (docs/design/security.md NEG-42).
	InteractionCreate Interaction = "create"
	InteractionUpdate Interaction = "update"
	InteractionPatch  Interaction = "patch"
	InteractionDelete Interaction = "delete"
)

// Access describes the interaction a request asks for. Included resources of
// another type are authorized with InteractionSearch and their own Type.
type Access struct {
	Interaction Interaction
	// Type is the resource type ("" for metadata).
	Type string
	// ID is the resource id for read, vread, history and everything.
	ID string
}

// Decision is an Authorizer's answer, made BEFORE the store is queried.
//
// The zero Decision denies. An allowing Decision either covers all patients
// (AllPatients) or restricts the request to the compartments in Patients:
// searches get store.Query.Patients set, and every resource returned (reads,
// includes, $everything) must have Resource.Patient in the list. An allowing
// Decision with neither AllPatients nor Patients allows nothing patient-bound.
//
// Filters further narrow an allowing Decision (SMART granular scopes,
// docs/design/security.md RS-5): the clauses are ANDed into every store.Query
// of the type BEFORE it runs, and a resource reached otherwise (read, vread,
// history, _include, $everything) is returned only if a search by its _id
// under the same Filters and Patients finds it.
type Decision struct {
	Allow       bool
	AllPatients bool
	Patients    []string
	Filters     []store.Clause
	// Deny is the error returned when Allow is false (ErrForbidden if nil).
	Deny *Error
	// Challenge, when set, is the WWW-Authenticate value (RFC 6750 §3) sent
	// with a 401 or 403 this Decision causes: its denial, or a resource an
	// allowing Decision does not cover.
	Challenge string
}

// Allow returns a Decision allowing the interaction for all patients.
func Allow() Decision { return Decision{Allow: true, AllPatients: true} }

// AllowPatients returns a Decision allowing the interaction within the given
// patients' compartments only.
func AllowPatients(ids ...string) Decision {
	return Decision{Allow: true, Patients: slices.Clone(ids)}
}

// Deny returns a denying Decision rendered as err (ErrForbidden if nil).
func Deny(err *Error) Decision { return Decision{Deny: err} }

// allows reports whether a resource in patient's compartment ("" = none) may
// be returned under d.
func (d Decision) allows(patient string) bool {
	if !d.Allow {
		return false
	}
	if d.AllPatients {
		return true
	}
	return patient != "" && slices.Contains(d.Patients, patient)
}

// forbidden returns ErrForbidden for a resource the allowing Decision d does
// not cover, with d's challenge (RFC 6750 §3.1 insufficient_scope).
func forbidden(c echo.Context, d Decision) error {
	if d.Challenge != "" {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, d.Challenge)
	}
	return ErrForbidden
}

// denial returns the error to render for a denying Decision.
func (d Decision) denial() *Error {
	if d.Deny != nil {
		return d.Deny
	}
	return ErrForbidden
}

// Authorizer decides whether a request may perform an interaction. It is the
// seam the SMART resource server plugs into. A returned error fails closed:
// the request gets a 500 OperationOutcome (or the error itself when it is an
// *Error), never data.
type Authorizer interface {
	Authorize(c echo.Context, a Access) (Decision, error)
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(c echo.Context, a Access) (Decision, error)

// Authorize implements Authorizer.
func (f AuthorizerFunc) Authorize(c echo.Context, a Access) (Decision, error) { return f(c, a) }

// DenyAll denies every request with 401 (the default when no Authorizer is
// configured).
type DenyAll struct{}

// Authorize implements Authorizer.
func (DenyAll) Authorize(echo.Context, Access) (Decision, error) {
	return Deny(ErrUnauthorized), nil
}

// Authenticate implements Authenticator: nobody passes.
func (d DenyAll) Authenticate(c echo.Context) (Decision, error) { return d.Authorize(c, Access{}) }
