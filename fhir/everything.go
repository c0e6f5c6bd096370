package fhir

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// everythingDefaultCount is the page size of a $everything without _count
// (docs/design/security.md PERF-ST-3): the largest page, search.MaxCount, so
// a client pulling a whole record makes one request for a compartment of up
// to 500 resources instead of one per 20. The Bundle is streamed
// (bundleWriter), so the page size costs the page's resources from the
// store, not a second copy of them as a Bundle.
const everythingDefaultCount = search.MaxCount

// everything serves GET [base]/Patient/[id]/$everything
// (operation-patient-everything.html) with _since, _type, _count and
// _offset: a searchset Bundle of the patient's compartment, Patient first,
// paged, total always present.
func (s *Server) everything(c echo.Context) error {
	_, id, err := s.target(c)
	if err != nil {
		return err
	}
	values, err := queryParams(c)
	if err != nil {
		return err
	}
	count, offset, warnings, err := pageParams(values, lenient(c), "_since", "_type")
	if err != nil {
		return err
	}
	if _, given := values["_count"]; !given {
		count = everythingDefaultCount
	}
	eq, canon, err := s.everythingQuery(values, id, count, offset)
	if err != nil {
		return err
	}

	d, err := s.authorize(c, access{interaction: auth.InteractionEverything, typ: "Patient", id: id})
	if err != nil {
		return err
	}
	if !d.allows(id) {
		return d.refuse()
	}
	ctx := c.Request().Context()
	if _, err := s.store.Read(ctx, "Patient", id); err != nil {
		return err
	}
	if err := s.checkFilters(ctx, d, "Patient", id); err != nil {
		return err
	}
	plan := s.everythingPlan(ctx, id, d, eq.Types)
	// The page's bodies may be lent by the read cache (store.Lease,
	// docs/design/security.md PERF-ST-18): they are only copied into the
	// Bundle below, and given back once it is written.
	lctx, lease := store.WithLease(ctx)
	defer lease.Release()
	rs, total, err := s.everythingPage(lctx, plan, eq)
	if err != nil {
		return err
	}
	// Keep only what the decisions allow (the compartment and the types are
	// the store's job; this is the second line of defence).
	rs = slices.DeleteFunc(rs, func(r store.Resource) bool { return !plan.allows(&r) })
	noteResources(c, rs...)
	if rs, err = s.outwardAll(ctx, rs); err != nil {
		return err
	}
	links := pageLinks(s.base+"/Patient/"+id+"/$everything", canon, count, offset, offset+len(rs) < total)
	size := 0
	for i := range rs {
		size += s.searchEntrySize(&rs[i])
	}
	b := s.newBundle(c, bundleSearchset, total, links, size)
	for i := range rs {
		if rs[i].Deleted || len(rs[i].Body) == 0 {
			continue
		}
		b.searchEntry(&rs[i], nil, modeMatch)
	}
	b.outcomeEntry(warnings)
	return b.write(c)
}

// everythingQuery reads _since and _type into the store query of the
// patient's page, and returns them in canonical form for the paging links.
func (s *Server) everythingQuery(values url.Values, patient string, count, offset int) (store.EverythingQuery, url.Values, error) {
	canon := url.Values{}
	eq := store.EverythingQuery{Patient: patient, Count: count, Offset: offset}
	if v := values.Get("_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return eq, nil, ErrInvalid.WithDetails("_since must be a FHIR instant").WithExpression("_since")
		}
		eq.Since = t
		canon.Set("_since", t.UTC().Format(store.LastUpdatedFormat))
	}
	for _, v := range values["_type"] {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !s.types[t] {
				return eq, nil, ErrInvalid.WithDetails("_type names an unsupported resource type").WithExpression("_type")
			}
			if !slices.Contains(eq.Types, t) {
				eq.Types = append(eq.Types, t)
			}
		}
	}
	if len(eq.Types) > 0 {
		canon.Set("_type", strings.Join(eq.Types, ","))
	}
	return eq, canon, nil
}

// everythingPage reads the page eq asks for under plan: nothing when no type
// is visible, type by type searches when some type is under granular
// filters, else one store.Everything over the visible types.
func (s *Server) everythingPage(ctx context.Context, plan *everythingTypes, eq store.EverythingQuery) ([]store.Resource, int, error) {
	switch {
	case len(plan.types) == 0:
		return nil, 0, nil // nothing the token may see besides what _type excluded
	case plan.filtered:
		return s.everythingBySearch(ctx, eq.Patient, plan, eq)
	}
	if plan.narrowed {
		eq.Types = make([]string, len(plan.types))
		for i, t := range plan.types {
			eq.Types[i] = t.typ
		}
	}
	return s.store.Everything(ctx, eq)
}

// everythingType is one resource type $everything returns, with the
// narrowing it is returned under.
type everythingType struct {
	typ string
	d   narrowing
}

// everythingTypes is which types $everything may return for one patient.
type everythingTypes struct {
	types []everythingType // Patient first, then by name
	// narrowed: some served type is left out (denied or excluded by _type).
	narrowed bool
	// filtered: some type is under granular filters.
	filtered bool
	// last is the index in types of the type allows found last.
	last int
}

// allows reports whether r is of a type in p and its decision allows r's
// patient. The page comes grouped by type (Patient, then by type and id),
// so the type of the previous resource is tried first
// (docs/design/security.md PERF-ST-15: the loop over every type for each of
// 500 entries), then every type, as before.
func (p *everythingTypes) allows(r *store.Resource) bool {
	if p.last < len(p.types) && p.types[p.last].typ == r.Type {
		return p.types[p.last].d.allows(r.Patient)
	}
	for i, t := range p.types {
		if t.typ == r.Type {
			p.last = i
			return t.d.allows(r.Patient)
		}
	}
	return false
}

// everythingPlan decides each resource type of the patient's compartment
// separately as a search, as included resources are
// (operation-patient-everything.html returns only what the client may
// see): the Patient itself under d, every other type only if its decision
// allows the patient. A denied type is left out. only, when non-empty, is
// _type.
func (s *Server) everythingPlan(ctx context.Context, patient string, d narrowing, only []string) *everythingTypes {
	plan := &everythingTypes{types: make([]everythingType, 0, len(s.everythingNames))}
	for _, t := range s.everythingNames {
		if len(only) > 0 && !slices.Contains(only, t) {
			plan.narrowed = true
			continue
		}
		// Each type is decided once here, so without the decisions memo
		// (newDecisions) and its map (PERF-ST-15); an error denies the
		// type, as the memo's nil does.
		td := d
		if t != "Patient" {
			n, err := decide(ctx, auth.InteractionSearch, t)
			if err != nil {
				plan.narrowed = true
				continue
			}
			td = n
		}
		if !td.allows(patient) {
			plan.narrowed = true
			continue
		}
		plan.filtered = plan.filtered || td.restricts()
		plan.types = append(plan.types, everythingType{typ: t, d: td})
	}
	return plan
}

// everythingOrder is the served types in $everything's order: Patient
// first, then by name (Server.everythingNames, sorted once).
func everythingOrder(types map[string]bool) []string {
	names := make([]string, 0, len(types))
	for t := range types {
		if t != "Patient" {
			names = append(names, t)
		}
	}
	slices.Sort(names)
	return append([]string{"Patient"}, names...)
}

// everythingBySearch pages through the patient's compartment type by type
// with store searches (Patient first, then by type and id, as
// store.Everything orders it), so each type's granular Filters are ANDed
// into its query before it runs. The total counts only visible resources.
func (s *Server) everythingBySearch(ctx context.Context, patient string, plan *everythingTypes, eq store.EverythingQuery) ([]store.Resource, int, error) {
	var since []store.Clause
	if !eq.Since.IsZero() {
		ms := eq.Since.UnixMilli()
		since = []store.Clause{{Param: store.ParamLastUpdated, Kind: store.KindDate,
			Values: []store.Value{{Prefix: store.Ge, Lo: ms, Hi: ms}}}}
	}
	query := func(typ string) store.Query {
		return store.Query{Type: typ, Clauses: slices.Clone(since), Patients: []string{patient},
			Sort: []store.Sort{{Param: store.ParamID, Kind: store.KindToken}}}
	}
	total := 0
	counts := make([]int, len(plan.types))
	for i, t := range plan.types {
		q := query(t.typ)
		q.Total, q.CountOnly = true, true
		res, err := s.searchWithin(ctx, q, t.d)
		if err != nil {
			return nil, 0, err
		}
		counts[i] = max(res.Total, 0)
		total += counts[i]
	}
	var out []store.Resource
	offset, want := eq.Offset, eq.Count
	for i, t := range plan.types {
		if want <= 0 {
			break
		}
		if offset >= counts[i] {
			offset -= counts[i]
			continue
		}
		q := query(t.typ)
		q.Offset, q.Count = offset, min(want, counts[i]-offset)
		res, err := s.searchWithin(ctx, q, t.d)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, res.Resources...)
		want -= len(res.Resources)
		offset = 0
	}
	return out, total, nil
}
