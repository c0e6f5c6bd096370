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

// Resolve checks q (a type is required) and its clauses, and resolves the
// clauses' parameters, keeping their order. none reports that nothing can
// match: a :missing=true on _id or _lastUpdated (always present), or values
// of a parameter no resource was ever indexed under. Clauses that match
// everything are left out.
func Resolve(q *store.Query, key ParamKey) (cls []Clause, none bool, err error) {
	if q.Type == "" {
		return nil, false, errors.New("store: search: type is required")
	}
	cls = make([]Clause, 0, len(q.Clauses))
	for i := range q.Clauses {
		c := Clause{Clause: &q.Clauses[i]}
		if c.Missing == nil && len(c.Values) == 0 {
			return nil, false, fmt.Errorf("store: search: %s: no values", c.Param)
		}
		if c.IsColumn() {
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
		k, ok, err := key(c.Param)
		if err != nil {
			return nil, false, fmt.Errorf("store: search: %w", err)
		}
		if !ok {
			if c.Missing != nil && *c.Missing {
				continue // every resource lacks it
			}
			return nil, true, nil
		}
		c.Key = k
		cls = append(cls, c)
	}
	return cls, false, nil
}

// ParamIs is the condition "index row x is of the parameter key".
func (b *Builder) ParamIs(key any) string {
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
	switch cl.Param {
	case store.ParamID:
		b.And(b.In(b.CheckOnly("r.id"), idValues(cl.Clause)))
		return nil
	case store.ParamLastUpdated:
		parts := make([]string, 0, len(cl.Values))
		for _, v := range cl.Values {
			p, err := b.datePred(v, "r.last_updated", "r.last_updated")
			if err != nil {
				return fmt.Errorf("store: search: %s: %w", cl.Param, err)
			}
			parts = append(parts, p)
		}
		b.And("(" + strings.Join(parts, " OR ") + ")")
		return nil
	}
	// Through the index table's (rid, param) index.
	sub := "SELECT 1 FROM " + cl.Table() + " x" + b.ridIndex(cl.Table()) + " WHERE x.rid = r.rid AND " + b.ParamIs(cl.Key)
	if cl.Missing != nil {
		if *cl.Missing {
			b.And("NOT EXISTS (" + sub + b.d.existsFence + ")")
		} else {
			b.And("EXISTS (" + sub + b.d.existsFence + ")")
		}
		return nil
	}
	anyOf, err := b.AnyValue(cl.Clause)
	if err != nil {
		return err
	}
	b.And("EXISTS (" + sub + " AND " + anyOf + b.d.existsFence + ")")
	return nil
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
			return "x.system = " + b.Arg(v.System), nil
		default:
			return "(x.code = " + b.Arg(v.Code) + " AND x.system = " + b.Arg(v.System) + ")", nil
		}
	case store.KindString:
		n := store.NormalizeString(v.Str)
		if v.Exact {
			return "x.value = " + b.Arg(n), nil
		}
		return "(x.value >= " + b.Arg(n) + " AND x.value < " + b.Arg(n+maxString) + ")", nil
	case store.KindReference:
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
		parts = append(parts, "(SELECT "+agg+"(x."+sortColumn(so.Kind, so.Desc)+") FROM "+t+" x"+b.ridIndex(t)+
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
	return ` ORDER BY (r.type = 'Patient' AND r.id = ` + b.Arg(q.Patient) + `) DESC, r.type, r.id LIMIT ` +
		b.Arg(b.d.Limit(q.Count)) + ` OFFSET ` + b.Arg(max(q.Offset, 0))
}

// EverythingTotal is the number of all matches of q when its page held n:
// count counts them when the page does not tell.
func EverythingTotal(q *store.EverythingQuery, n int, count func() (int, error)) (int, error) {
	if (q.Count > 0 && n == q.Count) || (n == 0 && q.Offset > 0) {
		return count()
	}
	return max(q.Offset, 0) + n, nil
}
