package search

import (
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// Paging limits (search.html#count). A _count above MaxCount is clamped to
// MaxCount rather than rejected: the spec lets the server return fewer
// results than asked for.
const (
	DefaultCount = 20
	MaxCount     = 500
)

// Limits on the size of one search, so a request cannot become an
// arbitrarily expensive query.
const (
	maxAlternatives = 100 // comma-separated values of one parameter
	maxClauses      = 50  // search parameters (AND) of one search
	maxIncludes     = 20  // _include plus _revinclude
)

// Include is an _include or _revinclude: Source:Param[:Target]
// (search.html#include). Iterate is unsupported and rejected by Parse.
type Include struct{ Source, Param, Target string }

// Request is a parsed type-level search.
type Request struct {
	Query       store.Query
	Includes    []Include
	RevIncludes []Include
	// Elements are the top-level JSON member names to keep (_elements,
	// search.html#elements), sorted; a choice element given by its base name
	// (e.g. "effective") is expanded to all its alternatives
	// ("effectiveDateTime", "effectivePeriod", ...). The renderer always keeps
	// the mandatory elements (resourceType, id, meta) as well.
	Elements []string
	// Summary is "" or "count" (search.html#summary; _summary=false is "").
	Summary string
	// TotalMode is "", "none", "accurate" or "estimate" (search.html#total).
	TotalMode string
	// Ignored lists the parameters ignored under lenient handling, as sent
	// (name and modifier), sorted, to report in an OperationOutcome.
	Ignored []string
}

// Error is a bad search parameter. Param names it as sent (name and
// modifier; safe to log); Message says what is wrong without echoing values.
type Error struct{ Param, Message string }

func (e *Error) Error() string {
	if e.Param == "" {
		return "search: " + e.Message
	}
	return "search parameter " + e.Param + ": " + e.Message
}

// Parse parses the query parameters of a type-level search (a GET query or a
// POST _search form, search.html#search).
//
// Strict (lenient=false, "Prefer: handling=strict"): unknown parameters,
// unknown modifiers, malformed values and bad prefixes are an *Error. Lenient
// (search.html#errors, "handling=lenient"): unknown parameters are ignored
// and listed in Request.Ignored; malformed values and unsupported modifiers
// of known parameters are still errors.
//
// KetaBridge specifics: a known parameter with an empty value is ignored; a
// repeated parameter is AND and commas are OR (search.html#combining); a
// reference is given as Type/id, or as a bare id when the parameter has a
// single target type or a :Type modifier (absolute URLs are rejected,
// except for canonical parameters); result parameters (_count, _offset,
// _sort, _summary, _total, _elements) may appear once. _format and _pretty
// are left to the HTTP layer.
func Parse(resourceType string, values url.Values, lenient bool) (*Request, error) {
	ps := byName[resourceType]
	if ps == nil {
		return nil, &Error{Message: "resource type is not searchable"}
	}
	// Bundle.total is optional in a searchset (bundle.html); counting every
	// match costs a second pass, so it is computed only for _total=accurate
	// or estimate (the store still reports it for free when every match
	// fits on the page).
	req := &Request{Query: store.Query{Type: resourceType, Count: DefaultCount}}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		vals := values[key]
		// Text that is not UTF-8 (or holds control characters) cannot match
		// anything stored and must not be repaired into something that does
		// (docs/design/security.md LIM-2).
		if msg := badText(key); msg != "" {
			return nil, &Error{Param: safeName(key), Message: msg + " in a parameter name"}
		}
		for _, v := range vals {
			if msg := badText(v); msg != "" {
				return nil, &Error{Param: safeName(key), Message: msg + " in the value"}
			}
		}
		name, mod, hasMod := strings.Cut(key, ":")
		switch name {
		case "_format", "_pretty":
			continue
		case "_include", "_revinclude":
			if hasMod {
				if mod == "iterate" || mod == "recurse" {
					return nil, &Error{Param: key, Message: "_include/_revinclude :iterate is not supported"}
				}
				return nil, &Error{Param: key, Message: "unknown modifier"}
			}
			for _, v := range vals {
				if v == "" {
					continue
				}
				inc, err := parseInclude(resourceType, name == "_revinclude", v)
				if err != nil {
					err.Param = key
					return nil, err
				}
				if name == "_include" {
					req.Includes = appendInclude(req.Includes, inc)
				} else {
					req.RevIncludes = appendInclude(req.RevIncludes, inc)
				}
			}
			if len(req.Includes)+len(req.RevIncludes) > maxIncludes {
				return nil, &Error{Param: key, Message: "too many _include/_revinclude values (max " + strconv.Itoa(maxIncludes) + ")"}
			}
			continue
		case "_count", "_offset", "_sort", "_summary", "_total", "_elements":
			if hasMod {
				return nil, &Error{Param: key, Message: "modifiers are not allowed on result parameters"}
			}
			if len(vals) > 1 {
				return nil, &Error{Param: key, Message: "may appear only once"}
			}
			if len(vals) == 0 || vals[0] == "" {
				continue
			}
			if err := parseResult(req, ps, name, vals[0]); err != nil {
				err.Param = key
				return nil, err
			}
			continue
		}
		p, ok := ps[name]
		if !ok {
			if lenient {
				req.Ignored = append(req.Ignored, key)
				continue
			}
			return nil, &Error{Param: key, Message: "unknown search parameter for this resource type"}
		}
		for _, v := range vals {
			if v == "" {
				continue
			}
			c, err := parseClause(p, mod, hasMod, v)
			if err != nil {
				return nil, &Error{Param: key, Message: err.Error()}
			}
			req.Query.Clauses = append(req.Query.Clauses, c)
			if len(req.Query.Clauses) > maxClauses {
				return nil, &Error{Param: key, Message: "too many search parameters (max " + strconv.Itoa(maxClauses) + ")"}
			}
		}
	}
	if req.Query.CountOnly {
		req.Query.Total = true
	}
	return req, nil
}

func appendInclude(list []Include, inc Include) []Include {
	for _, x := range list {
		if x == inc {
			return list
		}
	}
	return append(list, inc)
}

// parseResult handles the result parameters (search.html#return).
func parseResult(req *Request, ps map[string]Param, name, v string) *Error {
	switch name {
	case "_count":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return &Error{Message: "must be a non-negative integer"}
		}
		if n == 0 {
			// _count=0: only the total is wanted (search.html#count).
			req.Query.CountOnly = true
			req.Summary = "count"
		}
		req.Query.Count = min(n, MaxCount)
	case "_offset":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return &Error{Message: "must be a non-negative integer"}
		}
		req.Query.Offset = n
	case "_sort":
		return parseSort(req, ps, v)
	case "_summary":
		switch v {
		case "count":
			req.Summary = "count"
			req.Query.CountOnly = true
		case "false":
		case "true", "text", "data":
			return &Error{Message: "only _summary=count and _summary=false are supported"}
		default:
			return &Error{Message: "must be one of true, text, data, count, false"}
		}
	case "_total":
		switch v {
		case "none":
			req.Query.Total = false
		case "accurate", "estimate":
			req.Query.Total = true
		default:
			return &Error{Message: "must be one of none, estimate, accurate"}
		}
		req.TotalMode = v
	case "_elements":
		return parseElements(req, v)
	}
	return nil
}

// parseSort handles _sort (search.html#sort): a comma list of parameters,
// "-" for descending. Only _id, _lastUpdated and the type's token, string and
// date parameters can be sorted on.
func parseSort(req *Request, ps map[string]Param, v string) *Error {
	seen := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		desc := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		if f == "" {
			return &Error{Message: "empty sort key"}
		}
		p, ok := ps[f]
		if !ok {
			return &Error{Message: "unknown sort parameter"}
		}
		switch p.Type {
		case store.KindToken, store.KindString, store.KindDate:
		default:
			return &Error{Message: "sorting is supported on _id, _lastUpdated and token, string and date parameters only"}
		}
		if seen[f] {
			return &Error{Message: "sort parameter repeated"}
		}
		seen[f] = true
		req.Query.Sort = append(req.Query.Sort, store.Sort{Param: f, Kind: p.Type, Desc: desc})
	}
	return nil
}

// parseElements handles _elements (search.html#elements): top-level element
// names of the type only.
func parseElements(req *Request, v string) *Error {
	els := elementsOf(req.Query.Type)
	set := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return &Error{Message: "empty element name"}
		}
		names, ok := els[f]
		if !ok {
			return &Error{Message: "not a top-level element of the resource type"}
		}
		for _, n := range names {
			set[n] = true
		}
	}
	req.Elements = make([]string, 0, len(set))
	for n := range set {
		req.Elements = append(req.Elements, n)
	}
	sort.Strings(req.Elements)
	return nil
}

// parseInclude parses one Source:Param[:Target] (search.html#include).
func parseInclude(resourceType string, rev bool, v string) (Include, *Error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Include{}, &Error{Message: "must be Source:param or Source:param:Target"}
	}
	inc := Include{Source: parts[0], Param: parts[1]}
	if len(parts) == 3 {
		inc.Target = parts[2]
	}
	if inc.Param == "*" {
		return Include{}, &Error{Message: "wildcard includes are not supported"}
	}
	sps := byName[inc.Source]
	if sps == nil {
		return Include{}, &Error{Message: "unknown source resource type"}
	}
	if !rev && inc.Source != resourceType {
		return Include{}, &Error{Message: "the source of _include must be the searched type (no :iterate)"}
	}
	p, ok := sps[inc.Param]
	if !ok {
		return Include{}, &Error{Message: "unknown search parameter of the source type"}
	}
	if p.Type != store.KindReference || canonicalParams[p.Definition] {
		return Include{}, &Error{Message: "not a reference search parameter"}
	}
	if len(parts) == 3 && !contains(p.Targets, inc.Target) {
		return Include{}, &Error{Message: "target type is not a target of the parameter"}
	}
	if rev {
		if !contains(p.Targets, resourceType) {
			return Include{}, &Error{Message: "the parameter cannot refer to the searched type"}
		}
		if inc.Target != "" && inc.Target != resourceType {
			return Include{}, &Error{Message: "the target of _revinclude must be the searched type"}
		}
	}
	return inc, nil
}

// valueError is a malformed value; its text never includes the value.
type valueError string

func (e valueError) Error() string { return string(e) }

// parseClause parses one occurrence of a search parameter: its modifier and
// comma-separated alternatives (search.html#combining).
func parseClause(p Param, mod string, hasMod bool, v string) (store.Clause, error) {
	c := store.Clause{Param: p.Name, Kind: p.Type}
	exact := false
	refType := ""
	if hasMod {
		switch {
		case mod == "not" && p.Type == store.KindToken && !uriParams[p.Definition]:
			// search.html#modifiers: the resources with no matching value,
			// those without the element included.
			c.Not = true
		case mod == "missing":
			// search.html#missing; not for _id/_lastUpdated, which every
			// resource has.
			if p.Name == store.ParamID || p.Name == store.ParamLastUpdated {
				return c, valueError(":missing is not supported on this parameter")
			}
			switch v {
			case "true":
				t := true
				c.Missing = &t
			case "false":
				f := false
				c.Missing = &f
			default:
				return c, valueError(":missing takes true or false")
			}
			return c, nil
		case mod == "exact" && p.Type == store.KindString:
			exact = true
		case p.Type == store.KindReference && contains(p.Targets, mod) && !canonicalParams[p.Definition]:
			refType = mod // search.html#reference: the [type] modifier
		default:
			return c, valueError("unsupported modifier")
		}
	}
	alts := splitEscaped(v, ',')
	if len(alts) > maxAlternatives {
		return c, valueError("too many comma-separated values")
	}
	c.Values = make([]store.Value, 0, len(alts))
	for _, a := range alts {
		if a == "" {
			return c, valueError("empty value in a comma-separated list")
		}
		var (
			val store.Value
			err error
		)
		switch {
		case p.Name == store.ParamID:
			val, err = parseID(a)
		case uriParams[p.Definition]:
			val = store.Value{Code: unescape(a), AnySystem: true}
		case p.Type == store.KindToken:
			val, err = parseToken(a)
		case p.Type == store.KindString:
			val, err = parseString(a, exact)
		case p.Type == store.KindDate:
			val, err = parseDate(a)
		case p.Type == store.KindNumber:
			val, err = parseNumber(a)
		case p.Type == store.KindQuantity:
			val, err = parseQuantity(a)
		case p.Type == store.KindReference:
			val, err = parseReference(p, refType, a)
		default:
			err = valueError("unsupported parameter type")
		}
		if err != nil {
			return c, err
		}
		c.Values = append(c.Values, val)
	}
	return c, nil
}

func parseID(a string) (store.Value, error) {
	id := unescape(a)
	if !validID(id) {
		return store.Value{}, valueError("not a valid resource id")
	}
	return store.Value{Str: id}, nil
}

// parseToken handles code, system|code, |code and system| (search.html#token).
// "system|" is System set with an empty Code: any code in that system.
func parseToken(a string) (store.Value, error) {
	parts := splitEscaped(a, '|')
	switch len(parts) {
	case 1:
		return store.Value{Code: unescape(parts[0]), AnySystem: true}, nil
	case 2:
		sys, code := unescape(parts[0]), unescape(parts[1])
		if sys == "" && code == "" {
			return store.Value{}, valueError("token needs a system or a code")
		}
		return store.Value{System: sys, Code: code}, nil
	}
	return store.Value{}, valueError("token has more than one '|'")
}

// parseString normalizes a string value (search.html#string). :exact matches
// the whole normalized value: index rows carry only the normalized form.
func parseString(a string, exact bool) (store.Value, error) {
	s := store.NormalizeString(unescape(a))
	if s == "" {
		return store.Value{}, valueError("empty string value")
	}
	return store.Value{Str: s, Exact: exact}, nil
}

// prefix splits a comparison prefix from a date, number or quantity value
// (search.html#prefix); eq is the default.
func prefix(a string) (store.Prefix, string, error) {
	if len(a) >= 2 && a[0] >= 'a' && a[0] <= 'z' && a[1] >= 'a' && a[1] <= 'z' {
		switch pr := store.Prefix(a[:2]); pr {
		case store.Eq, store.Ne, store.Gt, store.Lt, store.Ge, store.Le, store.Sa, store.Eb:
			return pr, a[2:], nil
		case "ap":
			return "", "", valueError("prefix ap is not supported")
		}
		return "", "", valueError("unknown prefix")
	}
	return store.Eq, a, nil
}

func parseDate(a string) (store.Value, error) {
	pr, rest, err := prefix(a)
	if err != nil {
		return store.Value{}, err
	}
	lo, hi, err := dateRange(rest)
	if err == errDateZone {
		return store.Value{}, valueError("a date with a time needs a timezone")
	}
	if err != nil {
		return store.Value{}, valueError("not a valid date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]]+zone)")
	}
	return store.Value{Prefix: pr, Lo: lo, Hi: hi}, nil
}

func parseNumber(a string) (store.Value, error) {
	pr, rest, err := prefix(a)
	if err != nil {
		return store.Value{}, err
	}
	f, ok := number(rest)
	if !ok {
		return store.Value{}, valueError("not a valid number")
	}
	return store.Value{Prefix: pr, Num: f}, nil
}

// parseQuantity handles [prefix]number, [prefix]number|system|code and
// [prefix]number||code (search.html#quantity). Without a system any unit
// system matches (AnySystem); without a code any unit matches.
func parseQuantity(a string) (store.Value, error) {
	pr, rest, err := prefix(a)
	if err != nil {
		return store.Value{}, err
	}
	parts := splitEscaped(rest, '|')
	if len(parts) != 1 && len(parts) != 3 {
		return store.Value{}, valueError("quantity must be number or number|system|code")
	}
	f, ok := number(parts[0])
	if !ok {
		return store.Value{}, valueError("not a valid number")
	}
	v := store.Value{Prefix: pr, Num: f, AnySystem: true}
	if len(parts) == 3 {
		v.System, v.Code = unescape(parts[1]), unescape(parts[2])
		v.AnySystem = v.System == ""
	}
	return v, nil
}

func number(s string) (float64, bool) {
	if s == "" || strings.ContainsAny(s, "_xXpPiInN") {
		return 0, false // no hex, inf, nan or digit separators
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// parseReference handles Type/id, a bare id and the :Type modifier
// (search.html#reference). Canonical parameters take the canonical URL
// (without |version).
func parseReference(p Param, refType, a string) (store.Value, error) {
	v := unescape(a)
	if canonicalParams[p.Definition] {
		if i := strings.IndexByte(v, '|'); i >= 0 {
			v = v[:i]
		}
		if v == "" || strings.ContainsAny(v, " \t\r\n") {
			return store.Value{}, valueError("not a valid canonical URL")
		}
		return store.Value{Str: v}, nil
	}
	if strings.Contains(v, "://") {
		return store.Value{}, valueError("absolute references are not supported; use Type/id")
	}
	typ, id, hasType := strings.Cut(v, "/")
	if !hasType {
		id, typ = v, refType
		if typ == "" {
			if len(p.Targets) != 1 {
				return store.Value{}, valueError("a bare id is ambiguous for this parameter; use Type/id or a :Type modifier")
			}
			typ = p.Targets[0]
		}
	} else if refType != "" && typ != refType {
		return store.Value{}, valueError("reference type does not match the :Type modifier")
	}
	if !validID(id) {
		return store.Value{}, valueError("not a valid reference (Type/id)")
	}
	if !contains(p.Targets, typ) {
		return store.Value{}, valueError("reference type is not a target of the parameter")
	}
	return store.Value{Str: typ + "/" + id}, nil
}

// splitEscaped splits s at unescaped sep, keeping escapes for unescape
// (search.html#escaping: "\," "\|" "\$" "\\").
func splitEscaped(s string, sep byte) []string {
	if strings.IndexByte(s, sep) < 0 {
		return []string{s}
	}
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes search escapes (search.html#escaping).
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// validID reports whether s is a FHIR id (datatypes.html#id).
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validType reports whether s looks like a resource type name.
func validType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
