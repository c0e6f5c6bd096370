package search

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestParseQueryStrict: docs/design/security.md LIM-2. Every parameter is
// kept, or the query is refused; net/url.ParseQuery keeps some and drops
// the rest (all of them past 10,000).
func TestParseQueryStrict(t *testing.T) {
	many := func(n int) string {
		var b strings.Builder
		b.WriteString("patient=p1")
		for i := 1; i < n; i++ {
			b.WriteString("&x=1")
		}
		return b.String()
	}
	ok := map[string]url.Values{
		"":                          {},
		"a=1&&b=2&":                 {"a": {"1"}, "b": {"2"}},
		"name=J%C3%B6rg+Doe":        {"name": {"Jörg Doe"}},
		"code=a%2Cb&code=c":         {"code": {"a,b", "c"}},
		"flag":                      {"flag": {""}},
		"note=line%0Anext%09tab%0D": {"note": {"line\nnext\ttab\r"}},
		"semi=a%3Bb":                {"semi": {"a;b"}},
	}
	for raw, want := range ok {
		got, err := ParseQuery(raw)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseQuery(%q) = %v, %v; want %v", raw, got, err, want)
		}
	}
	if v, err := ParseQuery(many(MaxParams)); err != nil || len(v["x"]) != MaxParams-1 {
		t.Errorf("%d parameters: %d kept, %v", MaxParams, len(v["x"]), err)
	}
	bad := map[string]string{
		many(MaxParams + 1): "too many",
		many(10001):         "too many",
		"patient=p1;x=1":    `";"`,
		"patient=%ZZ":       "malformed",
		"%ZZ=1":             "malformed",
		"name=%FF%FE":       "invalid UTF-8",
		"name=%ED%A0%80":    "invalid UTF-8", // a lone surrogate in UTF-8 form
		"%C0%AF=1":          "invalid UTF-8",
		"name=a%00b":        "control character",
		"name=%1B%5B31m":    "control character",
		"name=%7F":          "control character",
	}
	for raw, want := range bad {
		_, err := ParseQuery(raw)
		var se *Error
		if !errors.As(err, &se) || !strings.Contains(se.Message, want) {
			t.Errorf("ParseQuery(%.40q) = %v, want an *Error with %q", raw, err, want)
			continue
		}
		for _, secret := range []string{"p1", "%FF", "\x00", "31m"} {
			if strings.Contains(se.Error(), secret) {
				t.Errorf("ParseQuery(%.40q): the error %q quotes the input", raw, se.Error())
			}
		}
	}
}

// TestParseRefusesBadText: values reaching Parse by another way than
// ParseQuery (a form decoded elsewhere) are checked too: invalid UTF-8 and
// control characters are an *Error, never repaired into U+FFFD.
func TestParseRefusesBadText(t *testing.T) {
	for _, v := range []url.Values{
		{"name": {"Do\xffe"}},
		{"name\xff": {"x"}},
		{"name": {"a\x00"}},
		{"_include": {"Observation:subject\x1b"}},
	} {
		if _, err := Parse("Patient", v, true); err == nil {
			t.Errorf("Parse(%q) accepted", v)
		}
	}
}
