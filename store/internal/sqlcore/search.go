package sqlcore

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// The pieces of a search both backends compile the same way. How a search is
// driven (which clause's index yields the candidates) is each backend's own:
// the engines' planners differ. The WHERE is over resources r; an index
// row is x.

// Clause is a store.Clause with its parameter resolved for the index tables.
type Clause struct {
	*store.Clause
	// Key is the parameter as index rows name it (ParamKey); nil for _id
	// and _lastUpdated, which are columns of resources.
	Key any
}

// Table is the index table of the clause's kind.
func (c Clause) Table() string { return IndexTables[c.Kind] }

// IsColumn reports a clause on a column of resources (_id, _lastUpdated).
func (c Clause) IsColumn() bool {
	return c.Param == store.ParamID || c.Param == store.ParamLastUpdated
}

// ParamKey resolves a search parameter of the searched type to what its
// index rows store (SQLite: an interned pid; PostgreSQL: the name). ok is
// false when no resource of the type was ever indexed under name.
type ParamKey func(name string) (key any, ok bool, err error)

// Resolved is a store.Query checked and resolved for the index tables.
type Resolved struct {
	// Clauses are q's clauses that can restrict the matches, in order.
	Clauses []Clause
	// Access are the terms of q.Access that can match, resolved (see
	// resolveAccess); nil when q.Access restricts nothing.
	Access []Term
	// Patients are the compartments q.Patients and q.Access hold every
	// match to (both narrowed to each other; q.Patients alone when a
	// compartment reference clause bounds the matches); nil when neither
	// does.
	Patients []string
	// Compartments are the compartments every match is in, as tightly as
	// q tells them: a compartment reference clause's patients
	// (store.Query.Compartments) narrowed to Patients, or Patients; nil
	// when unbounded.
	Compartments []string
	// AccessOnly reports that Compartments come from q.Access alone: the
	// patients a client may see, possibly thousands, rather than those a
	// search names.
	AccessOnly bool
}

// Term is a store.AccessTerm resolved: the resource is in one of
// Patients' compartments (any when nil), of one of Types (any when nil),
// and every Clause matches it.
type Term struct {
	Patients []string
	Types    []string
	Clauses  []Clause
}

// Resolve checks q (a type is required), resolves the parameters of its
// clauses and of its access terms, and narrows the compartments it names.
// none reports that nothing can match: a :missing=true on _id or
// _lastUpdated (always present), values of a parameter no resource was
// ever indexed under, compartment restrictions that exclude each other, or
// an Access none of whose terms can match. Clauses that match everything
// are left out.
func Resolve(q *store.Query, key ParamKey) (res Resolved, none bool, err error) {
	if q.Type == "" {
		return res, false, errors.New("store: search: type is required")
	}
	if res.Clauses, none, err = resolveClauses(q.Clauses, key); err != nil || none {
		return res, none, err
	}
	patients := nonEmpty(q.Patients)
	// What the query itself holds every match to: a compartment reference
	// clause (Validate keeps such references and the compartment in
	// agreement) and the compartments access control restricted it to.
	referenced := (&store.Query{Clauses: q.Clauses}).Compartments()
	bound := intersect(referenced, patients)
	if bound != nil && len(bound) == 0 {
		return res, true, nil
	}
	compartments := bound
	if q.Access != nil {
		terms, open, union, err := resolveAccess(q.Access.Terms, q.Type, bound, key)
		if err != nil {
			return res, false, err
		}
		switch {
		case open:
		case len(terms) == 0:
			return res, true, nil
		default:
			res.Access = terms
			if union != nil {
				res.AccessOnly = bound == nil
				compartments = intersect(bound, union)
				// A compartment reference already holds the matches to
				// fewer compartments than the terms name.
				if referenced == nil {
					patients = intersect(patients, union)
				}
			}
		}
	}
	res.Patients = patients
	res.Compartments = compartments
	return res, false, nil
}

// resolveClauses checks and resolves clauses, keeping their order. none
// reports that nothing can match; clauses that match everything are left
// out.
func resolveClauses(clauses []store.Clause, key ParamKey) (cls []Clause, none bool, err error) {
	cls = make([]Clause, 0, len(clauses))
	for i := range clauses {
		c := Clause{Clause: &clauses[i]}
		if c.Not && c.Missing != nil {
			return nil, false, fmt.Errorf("store: search: %s: :not with :missing", c.Param)
		}
		if c.Missing == nil && len(c.Values) == 0 {
			return nil, false, fmt.Errorf("store: search: %s: no values", c.Param)
		}
		if c.IsColumn() {
			if c.Not && c.Param != store.ParamID {
				return nil, false, fmt.Errorf("store: search: %s: :not applies to token and reference parameters", c.Param)
			}
			if c.Missing != nil {
				if *c.Missing {
					return nil, true, nil
				}
				continue
			}
			cls = append(cls, c)
			continue
		}
		if c.Kind < store.KindToken || c.Kind > store.KindQuantity {
			return nil, false, fmt.Errorf("store: search: %s: unknown kind %d", c.Param, c.Kind)
		}
		if c.Not && c.Kind != store.KindToken && c.Kind != store.KindReference {
			return nil, false, fmt.Errorf("store: search: %s: :not applies to token and reference parameters", c.Param)
		}
		k, ok, err := key(c.Param)
		if err != nil {
			return nil, false, fmt.Errorf("store: search: %w", err)
		}
		if !ok {
			if c.Not || (c.Missing != nil && *c.Missing) {
				continue // every resource lacks it
			}
			return nil, true, nil
		}
		c.Key = k
		cls = append(cls, c)
	}
	return cls, false, nil
}

// ParamKeys is a ParamKey's answer for a parameter whose index rows are
// stored under more than one key: its own, and that of a row standing for
// it and another parameter at once (PostgreSQL's combined patient and
// subject rows, docs/design/security.md PERF-PG-8). A row of the parameter
// has any of them.
type ParamKeys []any

// ParamIs is the condition "index row x is of the parameter key".
func (b *Builder) ParamIs(key any) string {
	if ks, ok := key.(ParamKeys); ok {
		parts := make([]string, len(ks))
		for i, k := range ks {
			parts[i] = b.Arg(k)
		}
		return "x." + b.d.paramCol + " IN (" + strings.Join(parts, ", ") + ")"
	}
	return "x." + b.d.paramCol + " = " + b.Arg(key)
}

// ridIndex is the hint naming table's per-resource index, if the dialect
// needs one.
func (b *Builder) ridIndex(table string) string {
	if b.d.ridIndex {
		return " INDEXED BY " + table + "_rid"
	}
	return ""
}

// Filter adds the check of one non-driving clause on each candidate r.
func (b *Builder) Filter(cl Clause) error {
	cond, err := b.Cond(cl)
	if err != nil {
		return err
	}
	b.And(cond)
	return nil
}

// Cond is the condition one clause puts on a resource r.
func (b *Builder) Cond(cl Clause) (string, error) {
	switch cl.Param {
	case store.ParamID:
		in := b.In(b.CheckOnly("r.id"), idValues(cl.Clause))
		if cl.Not {
			return "NOT (" + in + ")", nil
		}
		return in, nil
	case store.ParamLastUpdated:
		parts := make([]string, 0, len(cl.Values))
		for _, v := range cl.Values {
			p, err := b.datePred(v, "r.last_updated", "r.last_updated")
			if err != nil {
				return "", fmt.Errorf("store: search: %s: %w", cl.Param, err)
			}
			parts = append(parts, p)
		}
		return "(" + strings.Join(parts, " OR ") + ")", nil
	}
	// Through the index table's (rid, param) index.
	sub := "SELECT 1 FROM " + cl.Table() + " x" + b.ridIndex(cl.Table()) + " WHERE x.rid = r.rid AND " + b.ParamIs(cl.Key)
	if cl.Missing != nil {
		if *cl.Missing {
			return "NOT EXISTS (" + sub + b.d.existsFence + ")", nil
		}
		return "EXISTS (" + sub + b.d.existsFence + ")", nil
	}
	anyOf, err := b.AnyValue(cl.Clause)
	if err != nil {
		return "", err
	}
	if cl.Not {
		return "NOT EXISTS (" + sub + " AND " + anyOf + b.d.existsFence + ")", nil
	}
	return "EXISTS (" + sub + " AND " + anyOf + b.d.existsFence + ")", nil
}

// idValues are an _id clause's ids.
func idValues(c *store.Clause) []string {
	ids := make([]string, len(c.Values))
	for i, v := range c.Values {
		ids[i] = v.Str
	}
	return ids
}

// IDs is the condition "r is of type typ with one of the _id clause c's
// ids", for a search driven by its ids.
func (b *Builder) IDs(typ string, c *store.Clause) string {
	return "r.type = " + b.Arg(typ) + " AND " + b.In("r.id", idValues(c))
}

// AnyValue is the condition "any of c's values" on an index row x.
func (b *Builder) AnyValue(c *store.Clause) (string, error) {
	parts := make([]string, 0, len(c.Values))
	for _, v := range c.Values {
		p, err := b.ValuePred(c, v)
		if err != nil {
			return "", err
		}
		parts = append(parts, p)
	}
	return "(" + strings.Join(parts, " OR ") + ")", nil
}

// maxString sorts after every string with the same prefix (U+10FFFF is the
// largest code point, and UTF-8 byte order is code point order: SQLite
// compares bytes, PostgreSQL's columns use the "C" collation).
const maxString = "\U0010FFFF"

// ValuePred is the condition one Value of c puts on an index row x.
func (b *Builder) ValuePred(c *store.Clause, v store.Value) (string, error) {
	switch c.Kind {
	case store.KindToken:
		switch {
		case v.AnySystem && v.Code == "":
			return "true", nil
		case v.AnySystem:
			return "x.code = " + b.Arg(v.Code), nil
		case v.Code == "":
			return b.tokenSystem(v.System), nil
		default:
			return "(x.code = " + b.Arg(v.Code) + " AND " + b.tokenSystem(v.System) + ")", nil
		}
	case store.KindString:
		n := store.NormalizeString(v.Str)
		if v.Exact {
			return "x.value = " + b.Arg(n), nil
		}
		return "(x.value >= " + b.Arg(n) + " AND x.value < " + b.Arg(n+maxString) + ")", nil
	case store.KindReference:
		if b.d.refRIDs {
			// The target's rid when it is stored (rows written after it
			// hold that), or the text (rows written before it was, and
			// targets that name no stored resource): a row holds one or
			// the other, never both (PERF-SQLB-4).
			if typ, id, ok := RefKey(v.Str); ok {
				return "x.target IN ((SELECT rid FROM resources WHERE type = " + b.Arg(typ) + " AND id = " + b.Arg(id) + "), " +
					b.Arg(v.Str) + ")", nil
			}
		}
		if b.d.refTRID {
			// Rows written after the target was stored hold its rid
			// (target ''), the others its text (trid 0) (PERF-PG-6).
			if typ, id, ok := RefKey(v.Str); ok {
				return "((x.trid = (SELECT rid FROM resources WHERE type = " + b.Arg(typ) + " AND id = " + b.Arg(id) +
					") AND x.target = '') OR (x.trid = 0 AND x.target = " + b.Arg(v.Str) + "))", nil
			}
			return "(x.trid = 0 AND x.target = " + b.Arg(v.Str) + ")", nil
		}
		return "x.target = " + b.Arg(v.Str), nil
	case store.KindDate:
		p, err := b.datePred(v, "x.lo", "x.hi")
		if err != nil {
			return "", fmt.Errorf("store: search: %s: %w", c.Param, err)
		}
		return p, nil
	case store.KindNumber, store.KindQuantity:
		return b.numValuePred(c, v)
	}
	return "", fmt.Errorf("store: search: %s: unknown kind %d", c.Param, c.Kind)
}

// RefKey splits a reference target "Type/id" into its type and id; ok is
// false for any other form (an absolute URL, a versioned reference, a
// fragment), which the index keeps as text. A store that keeps reference
// targets as rids (Dialect.refRIDs) resolves exactly the targets RefKey
// accepts, at write time and in a search alike.
func RefKey(target string) (typ, id string, ok bool) {
	typ, id, ok = strings.Cut(target, "/")
	if !ok || typ == "" || id == "" || strings.IndexByte(id, '/') >= 0 {
		return "", "", false
	}
	return typ, id, true
}

// RefTarget is the text of a reference row's target column col: itself,
// or, where targets may be rids (Dialect.refRIDs), the "Type/id" of the
// resource an integer target names (the same text the row was written
// with: RefKey split it, and a resource's type and id never change).
func (d *Dialect) RefTarget(col string) string {
	if d.refTRID {
		// col is <alias>.target; the rid is in <alias>.trid (PERF-PG-6).
		trid := strings.TrimSuffix(col, "target") + "trid"
		return "CASE WHEN " + trid + " <> 0 THEN (SELECT t.type || '/' || t.id FROM resources t WHERE t.rid = " + trid +
			") ELSE " + col + " END"
	}
	if !d.refRIDs {
		return col
	}
	return "CASE WHEN typeof(" + col + ") = 'integer' THEN (SELECT t.type || '/' || t.id FROM resources t WHERE t.rid = " + col +
		") ELSE " + col + " END"
}

// tokenSystem is the condition "the token row x has system": by its sid
// where systems are interned (a system never stored has none, and matches
// nothing), else on the text.
func (b *Builder) tokenSystem(system string) string {
	if b.d.tokenSystems {
		return "x.sid = (SELECT sid FROM token_systems WHERE system = " + b.Arg(system) + ")"
	}
	return "x.system = " + b.Arg(system)
}

// numValuePred is ValuePred for numbers and quantities.
func (b *Builder) numValuePred(c *store.Clause, v store.Value) (string, error) {
	p, err := b.numPred(v, "x.num")
	if err != nil {
		return "", fmt.Errorf("store: search: %s: %w", c.Param, err)
	}
	if c.Kind == store.KindQuantity {
		if v.System != "" {
			p += " AND x.system = " + b.Arg(v.System)
		}
		if v.Code != "" {
			p += " AND x.code = " + b.Arg(v.Code)
		}
	}
	return "(" + p + ")", nil
}

// datePred compares a resource range [lo, hi] (column expressions) with the
// value range [v.Lo, v.Hi] per search.html#date.
func (b *Builder) datePred(v store.Value, lo, hi string) (string, error) {
	eq := func() string {
		return "(" + lo + " >= " + b.Arg(v.Lo) + " AND " + hi + " <= " + b.Arg(v.Hi) + ")"
	}
	switch v.Prefix {
	case store.Eq, "":
		return eq(), nil
	case store.Ne:
		return "NOT " + eq(), nil
	case store.Gt:
		return hi + " > " + b.Arg(v.Hi), nil
	case store.Lt:
		return lo + " < " + b.Arg(v.Lo), nil
	case store.Ge:
		return "(" + hi + " > " + b.Arg(v.Hi) + " OR " + eq() + ")", nil
	case store.Le:
		return "(" + lo + " < " + b.Arg(v.Lo) + " OR " + eq() + ")", nil
	case store.Sa:
		return lo + " > " + b.Arg(v.Hi), nil
	case store.Eb:
		return hi + " < " + b.Arg(v.Lo), nil
	}
	return "", fmt.Errorf("unknown prefix %q", v.Prefix)
}

// numPred compares column col with v.Num per v.Prefix.
func (b *Builder) numPred(v store.Value, col string) (string, error) {
	op := ""
	switch v.Prefix {
	case store.Eq, "":
		op = "="
	case store.Ne:
		op = "<>"
	case store.Gt, store.Sa:
		op = ">"
	case store.Lt, store.Eb:
		op = "<"
	case store.Ge:
		op = ">="
	case store.Le:
		op = "<="
	default:
		return "", fmt.Errorf("unknown prefix %q", v.Prefix)
	}
	return col + " " + op + " " + b.Arg(v.Num) + b.d.numCast, nil
}

// sortColumn is the index column a parameter of a kind sorts by, ascending
// and descending.
func sortColumn(k store.IndexKind, desc bool) string {
	switch k {
	case store.KindToken:
		return "code"
	case store.KindString:
		return "value"
	case store.KindDate:
		if desc {
			return "hi"
		}
		return "lo"
	case store.KindReference:
		return "target"
	default:
		return "num"
	}
}

// Order builds the ORDER BY of q. r.rid (insertion order) ends it unless _id
// is a key, so the order is total and pages are stable; it is also the order
// in which a driver's index range yields candidates, so the engine can walk
// them and stop at the page end instead of fetching and sorting them all.
func (b *Builder) Order(q *store.Query, key ParamKey) (string, error) {
	var parts []string
	hasID := false
	for _, so := range q.Sort {
		dir, agg := " ASC", "min"
		if so.Desc {
			dir, agg = " DESC", "max"
		}
		switch so.Param {
		case store.ParamID:
			parts = append(parts, "r.id"+dir)
			hasID = true
			continue
		case store.ParamLastUpdated:
			parts = append(parts, "r.last_updated"+dir)
			continue
		}
		if so.Kind < store.KindToken || so.Kind > store.KindQuantity {
			return "", fmt.Errorf("store: search: sort %s: unknown kind %d", so.Param, so.Kind)
		}
		k, ok, err := key(so.Param)
		if err != nil {
			return "", fmt.Errorf("store: search: %w", err)
		}
		if !ok {
			continue // no resource has a value: the key orders nothing
		}
		t := IndexTables[so.Kind]
		col := "x." + sortColumn(so.Kind, so.Desc)
		if so.Kind == store.KindReference {
			col = b.d.RefTarget(col)
		}
		parts = append(parts, "(SELECT "+agg+"("+col+") FROM "+t+" x"+b.ridIndex(t)+
			" WHERE x.rid = r.rid AND "+b.ParamIs(k)+")"+dir+" NULLS LAST")
	}
	if !hasID {
		parts = append(parts, "r.rid")
	}
	return strings.Join(parts, ", "), nil
}

// Page is the LIMIT and OFFSET of q's page: Count+1 rows, to learn whether
// there is a next page.
func (b *Builder) Page(q *store.Query) string {
	lim := b.d.noLimit
	if q.Count > 0 {
		lim = q.Count + 1
	}
	return " LIMIT " + b.Arg(lim) + " OFFSET " + b.Arg(max(q.Offset, 0))
}

// NoMatch is the result of a search nothing can match.
func NoMatch(q *store.Query) store.SearchResult {
	res := store.SearchResult{Total: -1}
	if q.Total || q.CountOnly {
		res.Total = 0
	}
	return res
}

// Paged is the result of a search whose page query (Page) returned page.
// count counts every match; it runs only when the total is asked for and
// the page does not tell it.
func Paged(q *store.Query, page []store.Resource, count func() (int, error)) (store.SearchResult, error) {
	res := store.SearchResult{Total: -1}
	if q.Count > 0 && len(page) > q.Count {
		page, res.More = page[:q.Count], true
	}
	res.Resources = page
	if q.Total {
		offset := max(q.Offset, 0)
		if !res.More && (offset == 0 || len(page) > 0) {
			res.Total = offset + len(page)
		} else {
			n, err := count()
			if err != nil {
				return res, err
			}
			res.Total = n
		}
	}
	return res, nil
}

// Everything adds the conditions of Patient/$everything for q on resources
// r: the current, non-deleted resources of q.Patient's compartment, of
// q.Types (in sorted order, so the statement text is stable) updated at or
// after q.Since.
func (b *Builder) Everything(q *store.EverythingQuery) {
	b.And("r.patient = " + b.Arg(q.Patient))
	b.And(b.d.notDeleted)
	if len(q.Types) > 0 {
		types := slices.Clone(q.Types)
		slices.Sort(types)
		b.And(b.In("r.type", types))
	}
	if !q.Since.IsZero() {
		b.And("r.last_updated >= " + b.Arg(q.Since.UnixMilli()))
	}
}

// EverythingOrder is the ORDER BY and page of Patient/$everything: the
// Patient first, then by type and id.
func (b *Builder) EverythingOrder(q *store.EverythingQuery) string {
	return b.EverythingSort(q) + ` LIMIT ` + b.Arg(b.d.Limit(q.Count)) + ` OFFSET ` + b.Arg(max(q.Offset, 0))
}

// EverythingSort is EverythingOrder without the page, for a caller that
// reads every match in order (learning the total as it goes) and keeps the
// page itself (store/sqlite, docs/design/architecture.md PERF-SQLB-3).
func (b *Builder) EverythingSort(q *store.EverythingQuery) string {
	return ` ORDER BY (r.type = 'Patient' AND r.id = ` + b.Arg(q.Patient) + `) DESC, r.type, r.id`
}

// EverythingTotal is the number of all matches of q when its page held n:
// count counts them when the page does not tell.
func EverythingTotal(q *store.EverythingQuery, n int, count func() (int, error)) (int, error) {
	if (q.Count > 0 && n == q.Count) || (n == 0 && q.Offset > 0) {
		return count()
	}
	return max(q.Offset, 0) + n, nil
}
