package clinic

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// checkText fails t when a string of the JSON document c breaks the text
// rules.
func checkText(t *testing.T, c []byte) {
	t.Helper()
	if !utf8.Valid(c) {
		t.Fatal("canonical form is not UTF-8")
	}
	var doc any
	if err := json.Unmarshal(c, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if len(v) > MaxStringBytes {
				t.Fatalf("decoded a string of %d bytes", len(v))
			}
			for _, r := range v {
				if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
					t.Fatalf("decoded a control character %U", r)
				}
			}
		case map[string]any:
			for k, e := range v {
				walk(k)
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
}

// FuzzDecode: Decode, Validate and Canonical never panic, Decode returns a
// record or errors (not both), a decoded record holds only text the rules
// accept (docs/design/security.md IN-1, IN-2: nothing replaced by U+FFFD,
// no control character, no string over the limit), and a valid record's
// canonical form decodes again to a record with the same hash. Seeds:
// testdata/valid.ndjson, the examples of docs/clinic-records.md and
// synthetic records (testdata/fuzz/FuzzDecode).
func FuzzDecode(f *testing.F) {
	for _, b := range readNDJSON(&testing.T{}, "testdata/valid.ndjson") {
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"patient","id":"p","name":{"family":"\u0041\/"},"x":[{"a":[1,{"b":null}]}]}`))
	f.Add([]byte(`{"kind":"session","vitals":[{"systolic":1e400}],"sessionNumber":-0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, errs := Decode(data)
		if (r == nil) == (len(errs) == 0) {
			t.Fatalf("Decode returned record %v with errors %v", r, errs)
		}
		for _, e := range errs {
			if !utf8.ValidString(e.Path) && !strings.Contains(e.Message, "unknown field") {
				t.Fatalf("error path is not text: %q", e.Path)
			}
		}
		if r == nil {
			return
		}
		if !utf8.Valid(data) {
			t.Fatal("a record that is not UTF-8 was accepted")
		}
		c, err := Canonical(r)
		if err != nil {
			t.Fatal(err)
		}
		checkText(t, c)
		if len(Validate(r)) > 0 {
			return
		}
		r2, errs := Decode(c)
		if len(errs) > 0 {
			t.Fatalf("canonical form rejected: %v", errs)
		}
		if Hash(r) != Hash(r2) {
			t.Fatal("hash changed on round trip")
		}
	})
}
