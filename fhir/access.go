package fhir

import (
	"context"
	"errors"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// The access decision is auth's (auth.Decide over the caller that
// auth.Authenticate put in the request's context); this file turns an allowing
// decision into query narrowing BEFORE the store is queried
// (docs/design/security.md RS-3 to RS-5, PRIV-3):
//
//   - read, vread and instance history need r; search needs s; $everything
//     needs r on the Patient itself, and every other type of the compartment is
//     decided separately as a search (everythingPlan), so $everything returns
//     only the types the caller may search;
//   - patient/ scopes restrict to the patient in context (narrowing.patients);
//   - granular scopes (`?category=vital-signs`) become narrowing.filters.

// access is what a request asks for: an interaction on a resource type and,
// for read, vread, history and $everything, an instance. The audit trail
// reports it.
type access struct {
	interaction auth.Interaction
	typ, id     string
}

// narrowing is an allowing auth.Decision as the queries apply it. Searches get
// store.Query.Patients set to patients (unless all) and filters ANDed into
// their clauses; every resource returned otherwise (reads, includes,
// $everything) must be in one of the patients' compartments, and under
// filters a resource reached by id is returned only if a search by its _id
// under the same narrowing finds it. The zero narrowing shows nothing
// patient-bound.
type narrowing struct {
	all      bool // every patient
	patients []string
	filters  []store.Clause
	// access, when non-nil, further restricts what a query finds (an
	// outside organization's view, DisclosureAccess); like filters, a
	// resource reached by id is returned only if a search by its _id
	// under the same narrowing finds it.
	access *store.Access
	// hide answers a refusal 404, not 403: the caller is an outside
	// organization, which must not learn that a patient or resource
	// outside its view exists (docs/design/security.md PRIV-12).
	hide bool
}

// allows reports whether a resource in patient's compartment ("" = none) may
// be returned under n.
func (n narrowing) allows(patient string) bool {
	return n.all || (patient != "" && slices.Contains(n.patients, patient))
}

// restricts reports whether a resource reached by id must also be found by
// a search under n (granular filters or an outside view) to be shown.
func (n narrowing) restricts() bool { return len(n.filters) > 0 || n.access != nil }

// refuse is the refusal of a resource outside n: 403, or 404 for an
// outside organization (hide).
func (n narrowing) refuse() error {
	if n.hide {
		return ErrNotFound
	}
	return errOutside
}

// errOutside refuses a resource the allowing decision does not cover: another
// patient's, or one its granular scopes exclude (RFC 6750 §3.1
// insufficient_scope).
var errOutside = auth.InsufficientScope("access denied")

// errNoCaller answers a data access without a verified caller. auth.Authenticate
// runs before every data route, so it is a wiring fault: fail closed.
var errNoCaller = ErrUnauthorized.WithDetails("bearer token required")

// decide is the access decision for interaction i on typ for the request's
// caller, as narrowing. A denial, or granular scopes that cannot be expressed
// as one query, is 403 insufficient_scope (fail closed).
func decide(ctx context.Context, i auth.Interaction, typ string) (narrowing, error) {
	info, ok := auth.FromContext(ctx)
	if !ok {
		return narrowing{}, errNoCaller
	}
	d := auth.Decide(info.Principal, typ, i)
	if !d.Allowed {
		return narrowing{}, auth.InsufficientScope("insufficient scope: " + d.Reason)
	}
	filters, err := FilterClauses(typ, d.FilterSets)
	if err != nil {
		return narrowing{}, auth.InsufficientScope("granular scope cannot be enforced on this type")
	}
	n := narrowing{filters: filters}
	if d.Patients == nil || auth.Directory(typ) {
		// A directory type holds no patient's data: a patient/ scope that
		// grants it reads it whole (docs/design/security.md RS-4), as a
		// patient's app reads the Medication its orders name.
		n.all = true
	} else {
		// A patient/ token is narrowed to its patient even when that
		// patient does not exist (empty results), never widened.
		n.patients = slices.DeleteFunc(slices.Clone(d.Patients), func(p string) bool { return p == "" })
	}
	if !info.Principal.Outside() {
		return n, nil
	}
	// An outside organization: its view and the patients' consents narrow
	// the scopes' decision (docs/design/security.md PRIV-12). Without the
	// view loaded the request fails closed.
	v, ok := viewFrom(ctx)
	if !ok {
		return narrowing{}, ErrInternal.WithDetails("outside view not loaded")
	}
	n, ok = outsideNarrowing(v, n, typ)
	if !ok {
		switch i {
		case auth.InteractionSearch, auth.InteractionHistoryType:
			return narrowing{}, auth.InsufficientScope("resource type not in the " + string(v.role) + " view")
		}
		return narrowing{}, ErrNotFound
	}
	return n, nil
}

// authorize decides the request's access a and notes it for the audit
// trail. For an outside organization it first loads the disclosure
// decision into the request's context, once per request.
func (s *Server) authorize(c echo.Context, a access) (narrowing, error) {
	req := c.Request()
	ctx, err := s.withOutsideView(req.Context())
	if err != nil {
		noteAccess(c, a, narrowing{})
		return narrowing{}, err
	}
	if ctx != req.Context() {
		// Only an outside organization's view adds to the context: the
		// request is copied then, not on every read (PERF-ST-15).
		c.SetRequest(req.WithContext(ctx))
	}
	n, err := decide(ctx, a.interaction, a.typ)
	noteAccess(c, a, n)
	return n, err
}

// decisions caches one search decision per resource type for a request's
// included resources and $everything: nil means the type is denied and left
// out, not an error.
type decisions struct {
	ctx context.Context
	got map[string]*narrowing
}

func newDecisions(ctx context.Context) *decisions {
	return &decisions{ctx: ctx, got: map[string]*narrowing{}}
}

func (ds *decisions) get(typ string) *narrowing {
	if n, ok := ds.got[typ]; ok {
		return n
	}
	var np *narrowing
	if n, err := decide(ds.ctx, auth.InteractionSearch, typ); err == nil {
		np = &n
	}
	ds.got[typ] = np
	return np
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
