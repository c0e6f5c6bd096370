package search

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzSearchParse drives the strict query parser and the search parameter
// parser with the queries of real searches (testdata/fuzz/FuzzSearchParse:
// prefixes, modifiers, _include, chains, escapes) mutated. Properties
// (docs/design/security.md LIM-2):
//   - every refusal is an *Error whose text quotes no value;
//   - an accepted query keeps every parameter, and re-encoding it gives
//     the same parameters and the same parsed search;
//   - a parsed search holds valid UTF-8 only and stays within its limits.
func FuzzSearchParse(f *testing.F) {
	f.Add("Observation", "patient=Patient/p1&date=ge2024-03-01&_include=Observation:subject", false)
	types := Types()
	f.Fuzz(func(t *testing.T, typ, raw string, lenient bool) {
		if _, ok := byName[typ]; !ok {
			typ = types[len(raw)%len(types)]
		}
		values, err := ParseQuery(raw)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("ParseQuery: %T %v, want *Error", err, err)
			}
			return
		}
		kept := 0
		for k, vs := range values {
			kept += len(vs)
			if !utf8.ValidString(k) {
				t.Fatalf("key %q is not UTF-8", k)
			}
		}
		pieces := 0
		for p := range strings.SplitSeq(raw, "&") {
			if p != "" {
				pieces++
			}
		}
		if kept != pieces {
			t.Fatalf("%d parameters in the query, %d kept", pieces, kept)
		}
		again, err := ParseQuery(values.Encode())
		if err != nil || !reflect.DeepEqual(again, values) {
			t.Fatalf("re-encoded query: %v, %v; want %v", again, err, values)
		}
		req, err := Parse(typ, values, lenient)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Parse: %T %v, want *Error", err, err)
			}
			for _, vs := range values {
				for _, v := range vs {
					if len(v) >= 8 && strings.Contains(se.Message, v) {
						t.Fatalf("the error %q quotes the value %q", se.Message, v)
					}
				}
			}
			return
		}
		if len(req.Query.Clauses) > maxClauses || len(req.Includes)+len(req.RevIncludes) > maxIncludes ||
			req.Query.Count < 0 || req.Query.Count > MaxCount || req.Query.Offset < 0 {
			t.Fatalf("limits exceeded: %d clauses, %d includes, count %d, offset %d", len(req.Query.Clauses),
				len(req.Includes)+len(req.RevIncludes), req.Query.Count, req.Query.Offset)
		}
		for _, c := range req.Query.Clauses {
			if len(c.Values) > maxAlternatives {
				t.Fatalf("%s: %d alternatives", c.Param, len(c.Values))
			}
			for _, v := range c.Values {
				if !utf8.ValidString(v.Str) || !utf8.ValidString(v.System) || !utf8.ValidString(v.Code) {
					t.Fatalf("%s: a value is not UTF-8: %+v", c.Param, v)
				}
			}
		}
		req2, err := Parse(typ, again, lenient)
		if err != nil || !reflect.DeepEqual(req, req2) {
			t.Fatalf("the re-encoded query parses differently: %v", err)
		}
	})
}
