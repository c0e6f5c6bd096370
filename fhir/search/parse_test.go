package search

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

func utcMs(y int, m time.Month, d, h, mi, s, milli int) int64 {
	return time.Date(y, m, d, h, mi, s, milli*int(time.Millisecond), time.UTC).UnixMilli()
}

func mustQuery(t *testing.T, q string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatalf("ParseQuery(%q): %v", q, err)
	}
	return v
}

// clauses parses a query and returns its clauses.
func clauses(t *testing.T, typ, q string) []store.Clause {
	t.Helper()
	req, err := Parse(typ, mustQuery(t, q), false)
	if err != nil {
		t.Fatalf("Parse(%q): %v", q, err)
	}
	return req.Query.Clauses
}

func TestParseClauses(t *testing.T) {
	day := func(y int, m time.Month, d int) (int64, int64) {
		lo := utcMs(y, m, d, 0, 0, 0, 0)
		return lo, lo + 86400000 - 1
	}
	lo1, hi1 := day(2024, 3, 1)
	yes, no := true, false
	tests := []struct {
		name string
		typ  string
		q    string
		want []store.Clause
	}{
		{"token code", "Observation", "code=44249-1", []store.Clause{{Param: "code", Kind: store.KindToken,
			Values: []store.Value{{Code: "44249-1", AnySystem: true}}}}},
		{"token system|code", "Observation", "code=http://loinc.org|44249-1", []store.Clause{{Param: "code", Kind: store.KindToken,
			Values: []store.Value{{System: "http://loinc.org", Code: "44249-1"}}}}},
		{"token |code", "Patient", "identifier=|MRN-1", []store.Clause{{Param: "identifier", Kind: store.KindToken,
			Values: []store.Value{{Code: "MRN-1"}}}}},
		{"token system|", "Observation", "category=http://terminology.hl7.org/CodeSystem/observation-category|", []store.Clause{{Param: "category", Kind: store.KindToken,
			Values: []store.Value{{System: "http://terminology.hl7.org/CodeSystem/observation-category"}}}}},
		{"comma is OR", "Observation", "status=final,amended", []store.Clause{{Param: "status", Kind: store.KindToken,
			Values: []store.Value{{Code: "final", AnySystem: true}, {Code: "amended", AnySystem: true}}}}},
		{"escaped comma and bar", `Patient`, `identifier=a\,b\|c`, []store.Clause{{Param: "identifier", Kind: store.KindToken,
			Values: []store.Value{{Code: "a,b|c", AnySystem: true}}}}},
		{"repeated is AND", "Observation", "date=ge2024-03-01&date=le2024-03-01", []store.Clause{
			{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Ge, Lo: lo1, Hi: hi1}}},
			{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Le, Lo: lo1, Hi: hi1}}},
		}},
		{"string normalized", "Patient", "name=Jos%C3%A9%20N", []store.Clause{{Param: "name", Kind: store.KindString,
			Values: []store.Value{{Str: "jose n"}}}}},
		{"string exact", "Patient", "family:exact=N%C3%BA%C3%B1ez", []store.Clause{{Param: "family", Kind: store.KindString,
			Values: []store.Value{{Str: "nunez", Exact: true}}}}},
		{"uri whole value", "PlanDefinition", "url=https://x.example/PlanDefinition/a|1.0", []store.Clause{{Param: "url", Kind: store.KindToken,
			Values: []store.Value{{Code: "https://x.example/PlanDefinition/a|1.0", AnySystem: true}}}}},
		{"missing true", "Observation", "encounter:missing=true", []store.Clause{{Param: "encounter", Kind: store.KindReference, Missing: &yes}}},
		{"missing false", "Patient", "birthdate:missing=false", []store.Clause{{Param: "birthdate", Kind: store.KindDate, Missing: &no}}},
		{"_id", "Patient", "_id=p1,p-2.x", []store.Clause{{Param: "_id", Kind: store.KindToken,
			Values: []store.Value{{Str: "p1"}, {Str: "p-2.x"}}}}},
		{"_lastUpdated", "Patient", "_lastUpdated=gt2024", []store.Clause{{Param: "_lastUpdated", Kind: store.KindDate,
			Values: []store.Value{{Prefix: store.Gt, Lo: utcMs(2024, 1, 1, 0, 0, 0, 0), Hi: utcMs(2025, 1, 1, 0, 0, 0, 0) - 1}}}}},
		{"reference bare id single target", "Observation", "patient=p1", []store.Clause{{Param: "patient", Kind: store.KindReference,
			Values: []store.Value{{Str: "Patient/p1"}}}}},
		{"reference Type/id", "Observation", "subject=Patient/p1,Group/g1", []store.Clause{{Param: "subject", Kind: store.KindReference,
			Values: []store.Value{{Str: "Patient/p1"}, {Str: "Group/g1"}}}}},
		{"reference :Type modifier", "Observation", "subject:Patient=p1", []store.Clause{{Param: "subject", Kind: store.KindReference,
			Values: []store.Value{{Str: "Patient/p1"}}}}},
		{"reference :Type with matching Type/id", "Observation", "subject:Patient=Patient/p1", []store.Clause{{Param: "subject", Kind: store.KindReference,
			Values: []store.Value{{Str: "Patient/p1"}}}}},
		{"canonical drops version", "CarePlan", "instantiates-canonical=https://x.example/PlanDefinition/a|2", []store.Clause{{Param: "instantiates-canonical", Kind: store.KindReference,
			Values: []store.Value{{Str: "https://x.example/PlanDefinition/a"}}}}},
		{"quantity full", "Observation", "value-quantity=gt5.4|http://unitsofmeasure.org|mg", []store.Clause{{Param: "value-quantity", Kind: store.KindQuantity,
			Values: []store.Value{{Prefix: store.Gt, Num: 5.4, System: "http://unitsofmeasure.org", Code: "mg"}}}}},
		{"quantity no system", "Observation", "value-quantity=5||mg", []store.Clause{{Param: "value-quantity", Kind: store.KindQuantity,
			Values: []store.Value{{Prefix: store.Eq, Num: 5, Code: "mg", AnySystem: true}}}}},
		{"quantity number only", "Observation", "value-quantity=le1e2", []store.Clause{{Param: "value-quantity", Kind: store.KindQuantity,
			Values: []store.Value{{Prefix: store.Le, Num: 100, AnySystem: true}}}}},
		{"empty value ignored", "Patient", "name=&gender=female", []store.Clause{{Param: "gender", Kind: store.KindToken,
			Values: []store.Value{{Code: "female", AnySystem: true}}}}},
		{"_format and _pretty ignored", "Patient", "_format=json&_pretty=true", nil},
		{"token :not", "Observation", "category:not=vital-signs", []store.Clause{{Param: "category", Kind: store.KindToken, Not: true,
			Values: []store.Value{{Code: "vital-signs", AnySystem: true}}}}},
		{"_security :not with system, OR", "Observation", "_security:not=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R,PSY", []store.Clause{{Param: "_security", Kind: store.KindToken, Not: true,
			Values: []store.Value{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"}, {Code: "PSY", AnySystem: true}}}}},
		{"_security on every type", "Practitioner", "_security=R", []store.Clause{{Param: "_security", Kind: store.KindToken,
			Values: []store.Value{{Code: "R", AnySystem: true}}}}},
		{"_id :not", "Patient", "_id:not=p1", []store.Clause{{Param: "_id", Kind: store.KindToken, Not: true,
			Values: []store.Value{{Str: "p1"}}}}},
		{":not ANDs with the unmodified parameter", "Observation", "status:not=final&status=amended", []store.Clause{
			{Param: "status", Kind: store.KindToken, Values: []store.Value{{Code: "amended", AnySystem: true}}},
			{Param: "status", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "final", AnySystem: true}}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := clauses(t, tc.typ, tc.q)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("clauses differ\n got: %+v\nwant: %+v", got, tc.want)
			}
		})
	}
}

func TestParseDatePrefixesAndPrecision(t *testing.T) {
	lo, hi := utcMs(2024, 3, 1, 0, 0, 0, 0), utcMs(2024, 3, 2, 0, 0, 0, 0)-1
	for _, pr := range []store.Prefix{store.Eq, store.Ne, store.Gt, store.Lt, store.Ge, store.Le, store.Sa, store.Eb} {
		t.Run("prefix "+string(pr), func(t *testing.T) {
			c := clauses(t, "Observation", "date="+string(pr)+"2024-03-01")
			want := store.Value{Prefix: pr, Lo: lo, Hi: hi}
			if len(c) != 1 || !reflect.DeepEqual(c[0].Values, []store.Value{want}) {
				t.Errorf("got %+v, want %+v", c, want)
			}
		})
	}
	tests := []struct {
		name   string
		value  string
		lo, hi int64
	}{
		{"no prefix is eq, year", "2024", utcMs(2024, 1, 1, 0, 0, 0, 0), utcMs(2025, 1, 1, 0, 0, 0, 0) - 1},
		{"month", "2024-02", utcMs(2024, 2, 1, 0, 0, 0, 0), utcMs(2024, 3, 1, 0, 0, 0, 0) - 1},
		{"leap day", "2024-02-29", utcMs(2024, 2, 29, 0, 0, 0, 0), utcMs(2024, 3, 1, 0, 0, 0, 0) - 1},
		{"minute with Z", "2024-03-01T10:15Z", utcMs(2024, 3, 1, 10, 15, 0, 0), utcMs(2024, 3, 1, 10, 16, 0, 0) - 1},
		{"seconds with offset", "2024-03-01T10:15:30-05:00", utcMs(2024, 3, 1, 15, 15, 30, 0), utcMs(2024, 3, 1, 15, 15, 30, 999)},
		{"tenths", "2024-03-01T10:15:30.1Z", utcMs(2024, 3, 1, 10, 15, 30, 100), utcMs(2024, 3, 1, 10, 15, 30, 199)},
		{"millis", "2024-03-01T10:15:30.123+00:00", utcMs(2024, 3, 1, 10, 15, 30, 123), utcMs(2024, 3, 1, 10, 15, 30, 123)},
		{"micros truncated", "2024-03-01T10:15:30.123456Z", utcMs(2024, 3, 1, 10, 15, 30, 123), utcMs(2024, 3, 1, 10, 15, 30, 123)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// '+' must be percent-encoded in a query string.
			c := clauses(t, "Observation", "date="+url.QueryEscape(tc.value))
			want := []store.Value{{Prefix: store.Eq, Lo: tc.lo, Hi: tc.hi}}
			if len(c) != 1 || !reflect.DeepEqual(c[0].Values, want) {
				t.Errorf("got %+v, want %+v", c, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name      string
		typ       string
		q         string
		lenient   bool
		wantParam string
	}{
		{"unknown type", "Appointment", "status=x", false, ""},
		{"unknown param strict", "Patient", "foo=bar", false, "foo"},
		{"chained param strict", "Observation", "subject.name=x", false, "subject.name"},
		{"unknown modifier", "Patient", "name:contains=x", false, "name:contains"},
		{"unknown modifier lenient", "Patient", "name:contains=x", true, "name:contains"},
		{":not on a string", "Patient", "name:not=x", false, "name:not"},
		{":not on a reference", "Observation", "patient:not=Patient/p1", false, "patient:not"},
		{":not on a date", "Observation", "date:not=2024", false, "date:not"},
		{":not on a uri", "PlanDefinition", "url:not=https://x.example/PlanDefinition/a", false, "url:not"},
		{":not with a malformed token", "Observation", "_security:not=a|b|c", false, "_security:not"},
		{"exact on token", "Observation", "status:exact=final", false, "status:exact"},
		{"token lone bar", "Observation", "code=|", false, "code"},
		{"token two bars", "Observation", "code=a|b|c", false, "code"},
		{"empty alternative", "Observation", "status=final,", false, "status"},
		{"malformed value lenient", "Observation", "date=yesterday", true, "date"},
		{"date prefix ap", "Observation", "date=ap2024", false, "date"},
		{"date unknown prefix", "Observation", "date=zz2024", false, "date"},
		{"date time without zone", "Observation", "date=2024-03-01T10:00:00", false, "date"},
		{"date bad month", "Observation", "date=2024-13", false, "date"},
		{"date bad day", "Patient", "birthdate=2023-02-29", false, "birthdate"},
		{"date bad hour", "Observation", "date=2024-03-01T24:00Z", false, "date"},
		{"date bad zone", "Observation", "date=2024-03-01T10:00:00%2B5", false, "date"},
		{"date trailing junk", "Observation", "date=2024-03-01x", false, "date"},
		{"_lastUpdated bad", "Patient", "_lastUpdated=2024-1", false, "_lastUpdated"},
		{"quantity bad number", "Observation", "value-quantity=abc", false, "value-quantity"},
		{"quantity two parts", "Observation", "value-quantity=5|mg", false, "value-quantity"},
		{"quantity nan", "Observation", "value-quantity=NaN", false, "value-quantity"},
		{"missing bad value", "Observation", "encounter:missing=yes", false, "encounter:missing"},
		{"missing on _id", "Patient", "_id:missing=true", false, "_id:missing"},
		{"bad _id", "Patient", "_id=a_b", false, "_id"},
		{"reference bare id ambiguous", "Observation", "subject=p1", false, "subject"},
		{"reference wrong target", "Observation", "subject=Practitioner/x", false, "subject"},
		{"reference absolute URL", "Observation", "patient=https://x.example/fhir/Patient/1", false, "patient"},
		{"reference bad id", "Observation", "patient=Patient/a b", false, "patient"},
		{"reference history", "Observation", "patient=Patient/1/_history/2", false, "patient"},
		{"reference modifier mismatch", "Observation", "subject:Patient=Group/g1", false, "subject:Patient"},
		{"reference modifier not a target", "Observation", "subject:Practitioner=x", false, "subject:Practitioner"},
		{"_count negative", "Patient", "_count=-1", false, "_count"},
		{"_count not a number", "Patient", "_count=ten", false, "_count"},
		{"_count repeated", "Patient", "_count=1&_count=2", false, "_count"},
		{"_count modifier", "Patient", "_count:x=1", false, "_count:x"},
		{"_offset negative", "Patient", "_offset=-5", false, "_offset"},
		{"_sort unknown", "Patient", "_sort=nope", false, "_sort"},
		{"_sort reference", "Observation", "_sort=subject", false, "_sort"},
		{"_sort quantity", "Observation", "_sort=value-quantity", false, "_sort"},
		{"_sort repeated key", "Observation", "_sort=date,-date", false, "_sort"},
		{"_sort empty key", "Observation", "_sort=date,", false, "_sort"},
		{"_summary true unsupported", "Patient", "_summary=true", false, "_summary"},
		{"_summary junk", "Patient", "_summary=maybe", false, "_summary"},
		{"_total junk", "Patient", "_total=all", false, "_total"},
		{"_elements unknown", "Patient", "_elements=name,shoeSize", false, "_elements"},
		{"_elements path", "Patient", "_elements=name.family", false, "_elements"},
		{"_elements empty item", "Patient", "_elements=name,,gender", false, "_elements"},
		{"_include iterate", "Observation", "_include:iterate=Observation:patient", false, "_include:iterate"},
		{"_include unknown modifier", "Observation", "_include:x=Observation:patient", false, "_include:x"},
		{"_include format", "Observation", "_include=patient", false, "_include"},
		{"_include wildcard", "Observation", "_include=Observation:*", false, "_include"},
		{"_include other source", "Observation", "_include=Patient:organization", false, "_include"},
		{"_include unknown source", "Observation", "_include=Foo:bar", false, "_include"},
		{"_include unknown param", "Observation", "_include=Observation:nope", false, "_include"},
		{"_include not a reference", "Observation", "_include=Observation:code", false, "_include"},
		{"_include bad target", "Observation", "_include=Observation:subject:Practitioner", false, "_include"},
		{"_include canonical", "CarePlan", "_include=CarePlan:instantiates-canonical", false, "_include"},
		{"_revinclude cannot refer", "Patient", "_revinclude=Observation:encounter", false, "_revinclude"},
		{"_revinclude target not searched type", "Patient", "_revinclude=Provenance:target:Observation", false, "_revinclude"},
		{"too many alternatives", "Patient", "_id=" + strings.Repeat("a,", maxAlternatives) + "a", false, "_id"},
		{"too many clauses", "Patient", strings.Repeat("gender=female&", maxClauses) + "gender=male", false, "gender"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := Parse(tc.typ, mustQuery(t, tc.q), tc.lenient)
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Parse = %+v, %v; want *Error", req, err)
			}
			if se.Param != tc.wantParam {
				t.Errorf("Param = %q, want %q (%v)", se.Param, tc.wantParam, se)
			}
			if se.Message == "" {
				t.Error("empty Message")
			}
		})
	}
}

// TestErrorDoesNotEchoValues checks that error messages never contain the
// value sent (it may be PHI).
func TestErrorDoesNotEchoValues(t *testing.T) {
	const secret = "Xyzzy1987"
	for _, q := range []string{
		"patient=Patient/" + secret + "_", "birthdate=" + secret, "code=a|b|" + secret,
		"value-quantity=" + secret, "_count=" + secret, "_sort=" + secret, "_elements=" + secret,
		"_include=Observation:" + secret, "_summary=" + secret, "_total=" + secret,
	} {
		_, err := Parse("Observation", mustQuery(t, q), false)
		if err == nil {
			t.Errorf("%s: want error", q)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error %q echoes the value", q, err)
		}
	}
}

func TestParseResultParams(t *testing.T) {
	base := func() *Request {
		return &Request{Query: store.Query{Type: "Observation", Count: DefaultCount}}
	}
	tests := []struct {
		name    string
		q       string
		lenient bool
		want    func() *Request
	}{
		{"defaults", "", false, base},
		{"_count and _offset", "_count=50&_offset=100", false, func() *Request {
			r := base()
			r.Query.Count, r.Query.Offset = 50, 100
			return r
		}},
		{"_count clamped", "_count=100000", false, func() *Request {
			r := base()
			r.Query.Count = MaxCount
			return r
		}},
		{"_count=0 is count only", "_count=0", false, func() *Request {
			r := base()
			r.Query.Count, r.Query.CountOnly, r.Query.Total, r.Summary = 0, true, true, "count"
			return r
		}},
		{"_summary=count", "_summary=count&_total=none", false, func() *Request {
			r := base()
			r.Query.CountOnly, r.Query.Total, r.Summary, r.TotalMode = true, true, "count", "none"
			return r
		}},
		{"_summary=false", "_summary=false", false, base},
		{"_total=none", "_total=none", false, func() *Request {
			r := base()
			r.Query.Total, r.TotalMode = false, "none"
			return r
		}},
		{"_total=estimate", "_total=estimate", false, func() *Request {
			r := base()
			r.Query.Total, r.TotalMode = true, "estimate"
			return r
		}},
		{"_sort", "_sort=-date,_id,status,-_lastUpdated", false, func() *Request {
			r := base()
			r.Query.Sort = []store.Sort{
				{Param: "date", Kind: store.KindDate, Desc: true}, {Param: "_id", Kind: store.KindToken},
				{Param: "status", Kind: store.KindToken}, {Param: "_lastUpdated", Kind: store.KindDate, Desc: true},
			}
			return r
		}},
		{"_elements expands choices", "_elements=status,effective,id", false, func() *Request {
			r := base()
			r.Elements = []string{"effectiveDateTime", "effectiveInstant", "effectivePeriod", "effectiveTiming", "id", "status"}
			return r
		}},
		{"_elements concrete choice name", "_elements=valueQuantity", false, func() *Request {
			r := base()
			r.Elements = []string{"valueQuantity"}
			return r
		}},
		{"_include and _revinclude", "_include=Observation:patient&_include=Observation:subject:Patient&_include=Observation:patient&_revinclude=Provenance:target", false, func() *Request {
			r := base()
			r.Includes = []Include{{Source: "Observation", Param: "patient"}, {Source: "Observation", Param: "subject", Target: "Patient"}}
			r.RevIncludes = []Include{{Source: "Provenance", Param: "target"}}
			return r
		}},
		{"lenient ignores unknown params", "foo=1&bar:baz=2&status=final&_has:Observation:patient:code=x", true, func() *Request {
			r := base()
			r.Query.Clauses = []store.Clause{{Param: "status", Kind: store.KindToken, Values: []store.Value{{Code: "final", AnySystem: true}}}}
			r.Ignored = []string{"_has:Observation:patient:code", "bar:baz", "foo"}
			return r
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("Observation", mustQuery(t, tc.q), tc.lenient)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if want := tc.want(); !reflect.DeepEqual(got, want) {
				t.Errorf("request differs\n got: %+v\nwant: %+v", got, want)
			}
		})
	}
}

func TestParseRevIncludeOnPatient(t *testing.T) {
	req, err := Parse("Patient", mustQuery(t, "_revinclude=Observation:patient&_revinclude=Provenance:target:Patient&_revinclude=Coverage:beneficiary"), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Include{
		{Source: "Observation", Param: "patient"},
		{Source: "Provenance", Param: "target", Target: "Patient"},
		{Source: "Coverage", Param: "beneficiary"},
	}
	if !reflect.DeepEqual(req.RevIncludes, want) {
		t.Errorf("got %+v, want %+v", req.RevIncludes, want)
	}
}

// TestParseAcceptsEveryParam parses a valid value for every parameter of
// every type, so the registry and the parser agree.
func TestParseAcceptsEveryParam(t *testing.T) {
	sample := map[store.IndexKind]string{
		store.KindToken:    "http://example.org|x",
		store.KindString:   "abc",
		store.KindDate:     "ge2024-01-01",
		store.KindQuantity: "gt1|http://unitsofmeasure.org|mg",
	}
	for _, typ := range Types() {
		for _, p := range Params(typ) {
			t.Run(typ+"."+p.Name, func(t *testing.T) {
				v := sample[p.Type]
				switch {
				case p.Name == store.ParamID:
					v = "abc"
				case p.Type == store.KindReference && canonicalParams[p.Definition]:
					v = "https://x.example/PlanDefinition/a"
				case p.Type == store.KindReference:
					v = p.Targets[0] + "/abc"
				}
				req, err := Parse(typ, url.Values{p.Name: {v}, "_sort": {sortable(p)}}, false)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				c := req.Query.Clauses
				if len(c) != 1 || c[0].Param != p.Name || c[0].Kind != p.Type || len(c[0].Values) != 1 {
					t.Errorf("clauses = %+v", c)
				}
				if p.Definition == "" || p.Expression == "" || p.Doc == "" || p.FHIRType() == "" {
					t.Errorf("incomplete registry entry %+v", p)
				}
				if (p.Type == store.KindReference) != (len(p.Targets) > 0) {
					t.Errorf("targets %v for kind %d", p.Targets, p.Type)
				}
			})
		}
	}
}

func sortable(p Param) string {
	switch p.Type {
	case store.KindToken, store.KindString, store.KindDate:
		return "-" + p.Name
	}
	return "_id"
}

func TestRegistry(t *testing.T) {
	types := Types()
	if !reflect.DeepEqual(types, searchable) {
		t.Errorf("Types() = %v, want %v", types, searchable)
	}
	for _, typ := range types {
		ps := Params(typ)
		if ps[0].Name != "_id" || ps[1].Name != "_lastUpdated" {
			t.Errorf("%s: params do not start with _id, _lastUpdated", typ)
		}
		for i := 1; i < len(ps); i++ {
			if ps[i-1].Name >= ps[i].Name {
				t.Errorf("%s: params not sorted at %s", typ, ps[i].Name)
			}
		}
		if elementsOf(typ) == nil {
			t.Errorf("%s: no element names", typ)
		}
	}
	if Params("Appointment") != nil {
		t.Error("Params(Appointment) != nil")
	}
	p, ok := Lookup("Observation", "patient")
	if !ok || p.Definition != "http://hl7.org/fhir/SearchParameter/clinical-patient" || p.Type != store.KindReference {
		t.Errorf("Lookup(Observation, patient) = %+v, %v", p, ok)
	}
	if p, _ := Lookup("PlanDefinition", "url"); p.FHIRType() != "uri" {
		t.Errorf("PlanDefinition.url FHIRType = %q", p.FHIRType())
	}
	// The definition resources are found by canonical URL, name, status
	// and version, with the R4 conformance-* definitions.
	for _, typ := range []string{"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide",
		"SearchParameter", "OperationDefinition"} {
		for name, want := range map[string]string{"url": "uri", "name": "string", "status": "token", "version": "token"} {
			p, ok := Lookup(typ, name)
			if !ok || p.FHIRType() != want || p.Definition != "http://hl7.org/fhir/SearchParameter/conformance-"+name {
				t.Errorf("%s.%s = %+v (%s), want a %s conformance-%s parameter", typ, name, p, p.FHIRType(), want, name)
			}
		}
	}
	if p, _ := Lookup("StructureDefinition", "type"); p.FHIRType() != "uri" {
		t.Errorf("StructureDefinition.type FHIRType = %q", p.FHIRType())
	}
	// A canonical reference cannot be included; a Type/id one can.
	for _, tc := range []struct {
		typ, name string
		want      bool
	}{
		{"StructureDefinition", "base", false}, {"CarePlan", "instantiates-canonical", false},
		{"Observation", "patient", true}, {"Observation", "code", false},
	} {
		if p, _ := Lookup(tc.typ, tc.name); p.Includable() != tc.want {
			t.Errorf("%s.%s Includable = %v, want %v", tc.typ, tc.name, p.Includable(), tc.want)
		}
	}
	// Callers cannot modify the registry through returned slices.
	p.Targets[0] = "Mutated"
	if q, _ := Lookup("Observation", "patient"); q.Targets[0] != "Patient" {
		t.Error("Lookup shares Targets with the registry")
	}
}

func BenchmarkParse(b *testing.B) {
	v := url.Values{
		"patient": {"Patient/p1"},
		"code":    {"http://loinc.org|44249-1"},
		"date":    {"ge2024-01-01", "lt2024-04-01T00:00:00Z"},
		"_count":  {"50"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("Observation", v, false); err != nil {
			b.Fatal(err)
		}
	}
}
