// Package auth is KetaBridge's SMART-on-FHIR side: scopes, access decisions,
// the authorization server and token verification.
package auth

import (
	"fmt"
	"sort"
	"strings"
)

// Context is the first part of a SMART resource scope.
type Context string

// Scope contexts (SMART App Launch 2.2, scopes-and-launch-context).
const (
	ContextPatient Context = "patient"
	ContextUser    Context = "user"
	ContextSystem  Context = "system"
)

// Perm is a set of SMART v2 permissions (c, r, u, d, s).
type Perm uint8

// Permissions, in the canonical SMART v2 order cruds.
const (
	PermCreate Perm = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch
)

// PermAll is cruds.
const PermAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch

var permLetters = []struct {
	p Perm
	c byte
}{{PermCreate, 'c'}, {PermRead, 'r'}, {PermUpdate, 'u'}, {PermDelete, 'd'}, {PermSearch, 's'}}

// String renders the permission letters in cruds order.
func (p Perm) String() string {
	var b strings.Builder
	for _, l := range permLetters {
		if p&l.p != 0 {
			b.WriteByte(l.c)
		}
	}
	return b.String()
}

// Has reports whether p includes every permission of q.
func (p Perm) Has(q Perm) bool { return p&q == q }

// Filter is one granular constraint of a scope (`?category=vital-signs`):
// a search parameter and a token value, optionally with a system.
type Filter struct {
	Param  string
	System string
	Code   string
}

// Scope is a parsed SMART resource scope such as `patient/Observation.rs?category=vital-signs`.
type Scope struct {
	Context      Context
	ResourceType string // a FHIR type or "*"
	Perms        Perm
	// Filters are ANDed granular constraints (SMART 2.2 finer-grained
	// resource constraints). Empty means the whole type.
	Filters []Filter
	// V1 records that the scope was written in SMART v1 syntax (.read/.write/.*).
	V1 bool
}

// String renders the scope in SMART v2 syntax.
func (s Scope) String() string {
	var b strings.Builder
	b.WriteString(string(s.Context))
	b.WriteByte('/')
	b.WriteString(s.ResourceType)
	b.WriteByte('.')
	b.WriteString(s.Perms.String())
	for i, f := range s.Filters {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(f.Param)
		b.WriteByte('=')
		if f.System != "" {
			b.WriteString(f.System)
			b.WriteByte('|')
		}
		b.WriteString(f.Code)
	}
	return b.String()
}

// ScopeError is a scope the server will not accept; Scope is the offending
// scope string (scope strings are not PHI).
type ScopeError struct {
	Scope  string
	Reason string
}

func (e *ScopeError) Error() string { return fmt.Sprintf("scope %q: %s", e.Scope, e.Reason) }

// IsResourceScope reports whether s looks like a resource scope (context/type.perms)
// as opposed to launch, openid, fhirUser, offline_access and the like.
func IsResourceScope(s string) bool {
	return strings.HasPrefix(s, "patient/") || strings.HasPrefix(s, "user/") || strings.HasPrefix(s, "system/")
}

// ParseScope parses one resource scope in SMART v1 or v2 syntax
// (SMART App Launch 2.2 scopes#scopes-for-requesting-fhir-resources).
//
// v1 suffixes map read => rs, write => cud, * => cruds. v2 permission letters
// must appear in cruds order, at most once each; anything else is rejected
// (never widened: `.dus`, `.rd`, `.sr` are errors, docs/design/security.md
// NEG-9).
func ParseScope(s string) (Scope, error) {
	bad := func(reason string) (Scope, error) { return Scope{}, &ScopeError{Scope: s, Reason: reason} }
	slash := strings.IndexByte(s, '/')
	if slash < 0 {
		return bad("not a resource scope")
	}
	ctx := Context(s[:slash])
	switch ctx {
	case ContextPatient, ContextUser, ContextSystem:
	default:
		return bad("unknown context")
	}
	rest := s[slash+1:]
	var query string
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		rest, query = rest[:q], rest[q+1:]
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot <= 0 || dot == len(rest)-1 {
		return bad("expected Type.permissions")
	}
	typ, suffix := rest[:dot], rest[dot+1:]
	if typ != "*" && !isResourceTypeName(typ) {
		return bad("invalid resource type")
	}
	sc := Scope{Context: ctx, ResourceType: typ}
	switch suffix {
	case "read":
		sc.Perms, sc.V1 = PermRead|PermSearch, true
	case "write":
		sc.Perms, sc.V1 = PermCreate|PermUpdate|PermDelete, true
	case "*":
		sc.Perms, sc.V1 = PermAll, true
	default:
		next := 0
		for i := 0; i < len(suffix); i++ {
			found := false
			for j := next; j < len(permLetters); j++ {
				if permLetters[j].c == suffix[i] {
					sc.Perms |= permLetters[j].p
					next = j + 1
					found = true
					break
				}
			}
			if !found {
				return bad("permissions must be a subset of cruds, in that order")
			}
		}
	}
	if query != "" {
		if sc.V1 {
			return bad("granular constraints need SMART v2 permissions")
		}
		// A constraint is written exactly as it must be written back
		// (Scope.String): plain param=value pairs joined by "&", in
		// characters that need no escaping, a system only when it is not
		// empty. Escapes, "+", ";", "," and an empty system would parse into
		// a Filter whose String is another scope, wider or narrower than the
		// one granted (docs/design/security.md NEG-9).
		pairs := strings.Split(query, "&")
		for _, pair := range pairs {
			p, v, ok := strings.Cut(pair, "=")
			if !ok || p == "" || v == "" {
				return bad("empty constraint")
			}
			if !constraintText(p, false) || !constraintText(v, true) {
				return bad("a constraint may hold only letters, digits and - . _ ~ : / | @")
			}
			f := Filter{Param: p, Code: v}
			if i := strings.LastIndexByte(v, '|'); i >= 0 {
				f.System, f.Code = v[:i], v[i+1:]
				if f.System == "" {
					return bad("empty constraint system")
				}
				if f.Code == "" {
					return bad("empty constraint code")
				}
			}
			sc.Filters = append(sc.Filters, f)
		}
		sort.SliceStable(sc.Filters, func(i, j int) bool { return sc.Filters[i].Param < sc.Filters[j].Param })
	}
	return sc, nil
}

// constraintText reports whether s holds only the characters a granular
// constraint may use unescaped: letters, digits, "-", ".", "_", "~", ":",
// and in values also "/", "|" and "@".
func constraintText(s string, value bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == ':':
		case value && (c == '/' || c == '|' || c == '@'):
		default:
			return false
		}
	}
	return true
}

func isResourceTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Grant is the set of scopes a token carries, parsed.
type Grant struct {
	Resource []Scope
	// Other holds non-resource scopes (openid, fhirUser, launch, offline_access, ...).
	Other []string
}

// ParseGrant parses a space-separated scope string. Unparseable resource
// scopes are returned as errors; callers at the authorization endpoint decide
// whether to reject (invalid_scope) or drop them, never to widen them.
func ParseGrant(scope string) (Grant, []error) {
	var g Grant
	var errs []error
	for _, s := range strings.Fields(scope) {
		if !IsResourceScope(s) {
			g.Other = append(g.Other, s)
			continue
		}
		sc, err := ParseScope(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g.Resource = append(g.Resource, sc)
	}
	return g, errs
}

// Has reports whether the grant holds the non-resource scope name.
func (g Grant) Has(name string) bool {
	for _, o := range g.Other {
		if o == name {
			return true
		}
	}
	return false
}
