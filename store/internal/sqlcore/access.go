package sqlcore

import (
	"errors"
	"slices"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// The access restriction of a query (store.Access), evaluated in the query
// itself so nothing past it is ever read (docs/design/security.md PRIV-3): an OR
// of its terms, each "r.patient IN (...) AND <its clauses>".
//
// Resolution keeps the SQL small. A term's patients are narrowed to the
// compartments the rest of the query holds every match to: a search naming
// patient X keeps only the terms that list X, and of their patients only X,
// which the query already checks - so a payer's 2,000 patients cost
// nothing in a search of one of them. A term that matches everything the
// rest of the query matches lifts the restriction.

// resolveAccess resolves the terms of a search of typ whose matches are all
// in bound's compartments (nil: unbounded). It returns the terms that can
// match; open when one of them matches every resource of the query (no
// restriction then); and union, the patients of the terms when every term
// names some (nil otherwise).
func resolveAccess(terms []store.AccessTerm, typ string, bound []string, key ParamKey) (out []Term, open bool, union []string, err error) {
	// A few compartments (a search naming its patients) are looked up in
	// each term's list; many are made a set once.
	var inBound map[string]bool
	if len(bound) > fewCompartments {
		inBound = set(bound)
	}
	named := true
	var seen map[string]bool
	for _, t := range terms {
		if len(t.Types) > 0 && !slices.Contains(t.Types, typ) {
			continue
		}
		patients := nonEmpty(t.Patients)
		if patients != nil && bound != nil {
			if inBound != nil {
				patients = keep(patients, inBound)
			} else {
				patients = within(bound, patients)
			}
			if len(patients) == 0 {
				continue
			}
		}
		cls, none, err := resolveClauses(t.Clauses, key)
		if err != nil {
			return nil, false, nil, err
		}
		if none {
			continue
		}
		if patients == nil {
			named = false
		} else {
			if seen == nil {
				seen = make(map[string]bool, len(patients))
			}
			for _, p := range patients {
				if !seen[p] {
					seen[p] = true
					union = append(union, p)
				}
			}
		}
		term := Term{Patients: patients, Clauses: cls}
		if bound != nil && patients != nil && covers(patients, bound) {
			term.Patients = nil // the query itself holds every match to them
		}
		if term.Patients == nil && len(term.Clauses) == 0 {
			return nil, true, nil, nil
		}
		out = append(out, term)
	}
	if !named {
		union = nil
	}
	return out, false, union, nil
}

// ResolveEverything resolves q.Access for Patient/$everything, whose
// resources are all in q.Patient's compartment and of many types: a term
// whose Patients do not list q.Patient is dropped, and the others need no
// patient check; a term's clauses are resolved for each of its Types (key
// gives a type's parameters). It returns nil terms and none false when
// q.Access restricts nothing, and none true when nothing can match.
func ResolveEverything(q *store.EverythingQuery, key func(typ string) ParamKey) (terms []Term, none bool, err error) {
	if q.Access == nil {
		return nil, false, nil
	}
	var plain []string // types a term admits without clauses
	for _, t := range q.Access.Terms {
		if len(t.Types) == 0 && len(t.Clauses) > 0 {
			return nil, false, errors.New("store: everything: an access term with clauses must list its types")
		}
		if len(t.Patients) > 0 && !slices.Contains(t.Patients, q.Patient) {
			continue
		}
		if len(t.Types) == 0 {
			return nil, false, nil // every resource of the compartment
		}
		for _, typ := range t.Types {
			if len(q.Types) > 0 && !slices.Contains(q.Types, typ) {
				continue
			}
			cls, none, err := resolveClauses(t.Clauses, key(typ))
			if err != nil {
				return nil, false, err
			}
			switch {
			case none:
			case len(cls) == 0:
				if !slices.Contains(plain, typ) {
					plain = append(plain, typ)
				}
			default:
				terms = append(terms, Term{Types: []string{typ}, Clauses: cls})
			}
		}
	}
	if len(plain) > 0 {
		// One "r.type IN (...)" term, in sorted order so the statement text
		// is stable.
		slices.Sort(plain)
		terms = append([]Term{{Types: plain}}, terms...)
	}
	if len(terms) == 0 {
		return nil, true, nil
	}
	return terms, false, nil
}

// Access is the condition "r satisfies one of terms" (resolved, at least
// one, each with a condition).
func (b *Builder) Access(terms []Term) (string, error) {
	parts := make([]string, 0, len(terms))
	for _, t := range terms {
		conds := make([]string, 0, 2+len(t.Clauses))
		if len(t.Patients) > 0 {
			conds = append(conds, b.InCheck("r.patient", t.Patients))
		}
		if len(t.Types) > 0 {
			conds = append(conds, b.In("r.type", t.Types))
		}
		for _, cl := range t.Clauses {
			c, err := b.Cond(cl)
			if err != nil {
				return "", err
			}
			conds = append(conds, c)
		}
		if len(conds) == 0 {
			return "", errors.New("store: access: a term without conditions")
		}
		parts = append(parts, strings.Join(conds, " AND "))
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	return "((" + strings.Join(parts, ") OR (") + "))", nil
}

// nonEmpty is l, or nil when l is empty: an empty list of compartments
// restricts nothing.
func nonEmpty(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// intersect is the compartments both a and b allow, in a's order; nil
// stands for "any", so it is the other one when either is nil. The result
// is empty (not nil) when they exclude each other.
func intersect(a, b []string) []string {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	out := keep(a, set(b))
	if out == nil {
		out = []string{}
	}
	return out
}

// keep returns the elements of l in s, in order; l itself when all are.
func keep(l []string, s map[string]bool) []string {
	for i, x := range l {
		if !s[x] {
			out := slices.Clone(l[:i])
			for _, y := range l[i+1:] {
				if s[y] {
					out = append(out, y)
				}
			}
			return nonEmpty(out)
		}
	}
	return l
}

// fewCompartments is the most compartments resolveAccess looks up in the
// terms' lists one by one (a slices.Contains of a 700-patient list costs
// less than hashing it into a set).
const fewCompartments = 8

// within returns the elements of few that are in l, in few's order.
func within(few, l []string) []string {
	var out []string
	for _, x := range few {
		if slices.Contains(l, x) {
			out = append(out, x)
		}
	}
	return out
}

// covers reports whether every element of want is in l.
func covers(l, want []string) bool {
	have := set(l)
	for _, w := range want {
		if !have[w] {
			return false
		}
	}
	return true
}

// set is l as a set.
func set(l []string) map[string]bool {
	s := make(map[string]bool, len(l))
	for _, x := range l {
		s[x] = true
	}
	return s
}
