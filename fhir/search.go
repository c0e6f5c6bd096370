package fhir

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// search serves GET [base]/[type]?params (http.html#search).
func (s *Server) search(c echo.Context) error {
	values, err := queryParams(c)
	if err != nil {
		return err
	}
	return s.runSearch(c, values)
}

// searchPost serves POST [base]/[type]/_search with a form body
// (http.html#search: parameters may also be in the URL). Other content
// types get 415.
func (s *Server) searchPost(c echo.Context) error {
	if err := s.checkType(c.Param("type")); err != nil {
		return err
	}
	req := c.Request()
	ct := req.Header.Get(echo.HeaderContentType)
	hasBody := req.ContentLength > 0 || (req.ContentLength < 0 && req.Body != nil)
	if mediaType(ct) != mimeForm && (ct != "" || hasBody) {
		return ErrUnsupportedMedia.WithDetails("POST _search requires application/x-www-form-urlencoded")
	}
	values, err := queryParams(c)
	if err != nil {
		return err
	}
	// The body is parsed as strictly as the URL (docs/design/security.md
	// LIM-2), not by http.Request.ParseForm; its size is capped by
	// bodyLimitMW.
	var body []byte
	if req.Body != nil {
		if body, err = io.ReadAll(req.Body); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return ErrTooLarge.WithCause(err)
			}
			return ErrInvalid.WithDetails("cannot read the form body").WithCause(err)
		}
	}
	form, err := search.ParseQuery(string(body))
	if err != nil {
		return malformed("malformed form body", err)
	}
	n := 0
	for k, vs := range values {
		form[k] = append(form[k], vs...)
	}
	for _, vs := range form {
		n += len(vs)
	}
	if n > search.MaxParams {
		return malformed("malformed form body", &search.Error{Message: "too many parameters in the URL and the body together"})
	}
	return s.runSearch(c, form)
}

// runSearch parses, authorizes and runs a type search and writes the
// searchset Bundle.
func (s *Server) runSearch(c echo.Context, values url.Values) error {
	typ := c.Param("type")
	if err := s.checkType(typ); err != nil {
		return err
	}
	sr, err := search.Parse(typ, values, lenient(c))
	if err != nil {
		return err
	}
	d, err := s.authorize(c, access{interaction: auth.InteractionSearch, typ: typ})
	if err != nil {
		return err
	}
	if err := partnerTaskSecurity(c.Request().Context(), typ, sr.Query); err != nil {
		return err
	}
	if !d.hide && outsidePatients(typ, sr.Query.Clauses, d) {
		// Asking for another patient's data is refused, not answered
		// with an empty page (docs/design/security.md NEG-40). An outside
		// organization's search of a patient outside its view finds
		// nothing instead, as for a patient that does not exist (PRIV-12).
		return errOutside
	}
	q := searchQuery(typ, sr)
	rewrite, err := newRewriter(typ, sr.Elements, sr.Summary)
	if err != nil {
		return err
	}

	ctx := c.Request().Context()
	// The page's bodies may be lent by the read cache (store.Lease,
	// docs/design/security.md PERF-ST-18): they are only copied into the
	// Bundle below, and given back once it is written. Only this store
	// call reads under the Lease: includes and disclosure checks use ctx.
	lctx, lease := store.WithLease(ctx)
	defer lease.Release()
	res, err := s.searchWithin(lctx, q, d)
	if err != nil {
		return err
	}
	matches := filterAllowed(res.Resources, d)
	total := searchTotal(res, q, sr.TotalMode, len(matches))

	var included []store.Resource
	if !q.CountOnly && len(matches) > 0 {
		included, err = s.includes(c, typ, matches, sr)
		if err != nil {
			return err
		}
	}

	noteResources(c, matches...)
	noteResources(c, included...)
	if matches, err = s.outwardAll(ctx, matches); err != nil {
		return err
	}
	if included, err = s.outwardAll(ctx, included); err != nil {
		return err
	}
	links := pageLinks(s.base+"/"+typ, canonicalQuery(typ, values, sr), q.Count, q.Offset, res.More && !q.CountOnly)
	size := 0
	for i := range matches {
		size += s.searchEntrySize(&matches[i])
	}
	for i := range included {
		size += s.searchEntrySize(&included[i])
	}
	b := s.newBundle(c, bundleSearchset, total, links, size)
	for i := range matches {
		body, err := rewrite.apply(matches[i].Body)
		if err != nil {
			return b.fail(err)
		}
		b.searchEntry(&matches[i], body, modeMatch)
	}
	for i := range included {
		b.searchEntry(&included[i], nil, modeInclude)
	}
	issues := ignoredWarnings(sr.Ignored)
	if v, ok := viewFrom(ctx); ok && withholds(v, typ, sr.Query.Clauses, scopePatients(ctx, typ)) {
		// docs/design/security.md PRIV-17: the caller learns that its view
		// narrowed the answer, so an empty page is not read as "none".
		issues = append(issues, withheldIssue)
	}
	b.outcomeEntry(issues)
	return b.write(c)
}

// searchQuery is the store query of a search of typ parsed into sr: _total
// and _summary=count decide whether the store counts.
func searchQuery(typ string, sr *search.Request) store.Query {
	q := sr.Query
	q.Type = typ
	if sr.TotalMode == "accurate" {
		q.Total = true
	}
	if sr.Summary == "count" {
		q.CountOnly, q.Total = true, true
	}
	return q
}

// searchTotal is Bundle.total (-1: left out): the store's count when it
// counted, else the number of matches when this page holds every one of
// them, and never for _total=none (search.html#total).
func searchTotal(res store.SearchResult, q store.Query, mode string, matches int) int {
	total := -1
	switch {
	case res.Total >= 0:
		total = res.Total
	case q.Offset == 0 && !res.More && !q.CountOnly:
		total = matches // cheap: this page holds every match
	}
	if mode == "none" && !q.CountOnly {
		total = -1
	}
	return total
}

// ignoredWarnings are the warning issues of the parameters a lenient search
// ignored (search.html#errors).
func ignoredWarnings(names []string) []*Error {
	var warnings []*Error
	for _, name := range names {
		warnings = append(warnings, ErrNotImplemented.WithSeverity(SeverityWarning).
			WithDetails("search parameter ignored").WithExpression(name))
	}
	return warnings
}

// searchWithin runs q restricted to the narrowing's patients: it sets
// store.Query.Patients before the query runs (intersecting any restriction
// the query already has) and never runs an unrestricted query for a
// restricted narrowing.
//
// The narrowing's filters (granular scopes) are ANDed into the query's
// clauses, so no page, total, _include or _revinclude can reach a resource
// they exclude.
func (s *Server) searchWithin(ctx context.Context, q store.Query, d narrowing) (store.SearchResult, error) {
	if len(d.filters) > 0 {
		q.Clauses = append(slices.Clip(q.Clauses), d.filters...)
	}
	if d.access != nil {
		q.Access = d.access
	}
	if !d.all {
		patients := slices.Clone(d.patients)
		if len(q.Patients) > 0 {
			patients = slices.DeleteFunc(patients, func(p string) bool { return !slices.Contains(q.Patients, p) })
		}
		if len(patients) == 0 {
			// Nothing is visible; an empty Patients would mean "all".
			res := store.SearchResult{}
			if q.Total {
				res.Total = 0
			} else {
				res.Total = -1
			}
			return res, nil
		}
		q.Patients = patients
	}
	return s.store.Search(ctx, q)
}

// outsidePatients reports whether a query can only match resources outside
// a patient-restricted narrowing's compartments: a patient or subject
// reference clause (or _id on Patient) naming only other patients.
func outsidePatients(typ string, clauses []store.Clause, d narrowing) bool {
	if d.all {
		return false
	}
	for _, c := range clauses {
		if c.Missing != nil || len(c.Values) == 0 {
			continue
		}
		var ids []string
		switch {
		case c.Kind == store.KindReference && (c.Param == "patient" || c.Param == "subject"):
			for _, v := range c.Values {
				id, ok := strings.CutPrefix(v.Str, "Patient/")
				if !ok {
					ids = nil
					break
				}
				ids = append(ids, id)
			}
		case typ == "Patient" && c.Param == store.ParamID:
			for _, v := range c.Values {
				ids = append(ids, v.Str)
			}
		}
		if len(ids) > 0 && !slices.ContainsFunc(ids, func(id string) bool { return slices.Contains(d.patients, id) }) {
			return true
		}
	}
	return false
}

// filterAllowed drops resources outside the narrowing's compartments (a
// second line of defence behind store.Query.Patients).
func filterAllowed(rs []store.Resource, d narrowing) []store.Resource {
	if d.all {
		return rs
	}
	return slices.DeleteFunc(rs, func(r store.Resource) bool { return !d.allows(r.Patient) })
}

// includes resolves _include (store.Refs + store.GetMany) and _revinclude (a
// reference search over the matched keys) (search.html#include). Every
// included resource passes the access decision for its own type and
// compartment; _include:iterate is not followed.
func (s *Server) includes(c echo.Context, typ string, matches []store.Resource, sr *search.Request) ([]store.Resource, error) {
	if len(sr.Includes) == 0 && len(sr.RevIncludes) == 0 {
		return nil, nil
	}
	ctx := c.Request().Context()
	in := &includeSet{s: s, ctx: ctx, ds: newDecisions(ctx), seen: make(map[store.Key]bool, len(matches)),
		keys: make([]store.Key, len(matches))}
	for i := range matches {
		in.keys[i] = store.Key{Type: matches[i].Type, ID: matches[i].ID}
		in.seen[in.keys[i]] = true
	}
	for _, inc := range sr.Includes {
		if err := in.include(typ, inc); err != nil {
			return nil, err
		}
	}
	for _, inc := range sr.RevIncludes {
		if err := in.revInclude(typ, inc); err != nil {
			return nil, err
		}
	}
	return in.out, nil
}

// includeSet collects the resources a searchset includes besides its
// matches, each at most once.
type includeSet struct {
	s    *Server
	ctx  context.Context
	ds   *decisions
	seen map[store.Key]bool // matches and resources already included
	keys []store.Key        // the matches
	out  []store.Resource
}

// include follows one _include from the matches to the resources they
// reference.
func (in *includeSet) include(typ string, inc search.Include) error {
	if inc.Source != typ {
		return nil
	}
	var params []string
	if inc.Param != "*" {
		params = []string{inc.Param}
	}
	refs, err := in.s.store.Refs(in.ctx, in.keys, params)
	if err != nil {
		return err
	}
	var targets []store.Key
	for _, ref := range refs {
		if (inc.Target != "" && ref.Target.Type != inc.Target) || in.seen[ref.Target] || !in.s.types[ref.Target.Type] {
			continue
		}
		if !slices.Contains(targets, ref.Target) {
			targets = append(targets, ref.Target)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	rs, err := in.s.store.GetMany(in.ctx, targets)
	if err != nil {
		return err
	}
	return in.add(rs)
}

// revInclude follows one _revinclude: the resources of inc.Source whose
// reference parameter points at a match, searched under the source type's
// own narrowing.
func (in *includeSet) revInclude(typ string, inc search.Include) error {
	if (inc.Target != "" && inc.Target != typ) || !in.s.types[inc.Source] {
		return nil
	}
	d := in.ds.get(inc.Source)
	if d == nil {
		return nil // the caller may not search the source type
	}
	p, _ := search.Lookup(inc.Source, inc.Param)
	if p.Type != 0 && p.Type != store.KindReference {
		return nil
	}
	clause := store.Clause{Param: inc.Param, Kind: store.KindReference}
	for _, k := range in.keys {
		clause.Values = append(clause.Values, store.Value{Str: k.String()})
	}
	res, err := in.s.searchWithin(in.ctx, store.Query{
		Type:    inc.Source,
		Clauses: []store.Clause{clause},
		Count:   search.MaxCount,
	}, *d)
	if err != nil {
		return err
	}
	return in.add(res.Resources)
}

// add includes the resources of rs the caller may see under their own type's
// decision: in an allowed compartment and, under granular filters, found by a
// search by _id under them.
func (in *includeSet) add(rs []store.Resource) error {
	visible, err := in.visibleUnderFilters(rs)
	if err != nil {
		return err
	}
	for _, r := range rs {
		k := store.Key{Type: r.Type, ID: r.ID}
		if in.seen[k] || r.Deleted || len(r.Body) == 0 {
			continue
		}
		d := in.ds.get(r.Type)
		if d == nil || !d.allows(r.Patient) || (d.restricts() && !visible[r.Type][r.ID]) {
			continue
		}
		in.seen[k] = true
		in.out = append(in.out, r)
	}
	return nil
}

// visibleUnderFilters runs, for each type of rs under granular filters, one
// search by _id under the type's narrowing, and returns what it finds by type
// and id.
func (in *includeSet) visibleUnderFilters(rs []store.Resource) (map[string]map[string]bool, error) {
	filtered := map[string][]string{}
	for _, r := range rs {
		if d := in.ds.get(r.Type); d != nil && d.restricts() && d.allows(r.Patient) {
			filtered[r.Type] = append(filtered[r.Type], r.ID)
		}
	}
	visible := make(map[string]map[string]bool, len(filtered))
	for typ, ids := range filtered {
		v, err := in.s.visible(in.ctx, *in.ds.get(typ), typ, ids)
		if err != nil {
			return nil, err
		}
		visible[typ] = v
	}
	return visible, nil
}

// controlParams are the result and common parameters a paging link may carry
// besides the type's own search parameters (search.html#all, #summary...).
var controlParams = map[string]bool{
	"_id": true, "_lastUpdated": true, "_tag": true, "_profile": true, "_security": true,
	"_source": true, "_text": true, "_content": true, "_list": true, "_has": true, "_type": true,
	"_sort": true, "_include": true, "_revinclude": true, "_elements": true, "_summary": true,
	"_total": true, "_contained": true, "_containedType": true,
}

// canonicalQuery re-serializes the parsed query for paging links: only
// parameters the parser accepted (known to fhir/search for typ or standard
// control parameters, never the ignored ones), without _count/_offset (the
// links set them) and without _format/_pretty. url.Values.Encode sorts keys.
func canonicalQuery(typ string, values url.Values, sr *search.Request) url.Values {
	out := make(url.Values, len(values))
	for k, vs := range values {
		if slices.Contains(sr.Ignored, k) {
			continue
		}
		name := k
		if i := strings.IndexAny(name, ":."); i >= 0 {
			name = name[:i]
		}
		if !controlParams[name] {
			if _, ok := search.Lookup(typ, name); !ok {
				continue
			}
		}
		out[k] = vs
	}
	return out
}
