package clinic

import (
	"strings"
	"testing"
)

// TestDecodeRefusesBadText: text that is not valid UTF-8, unpaired surrogate
// escapes and control characters other than tab, CR and LF are refused with
// the path of the member, not replaced by U+FFFD or stored
// (docs/design/security.md IN-1); so is a string beyond FHIR's 1 MiB
// (IN-2).
func TestDecodeRefusesBadText(t *testing.T) {
	const pre = `{"kind":"patient","id":"p1","mrn":"M1","birthDate":"1980-01-01","sex":"female","name":{"family":"`
	const post = `","given":["Ann"]}}`
	for _, tc := range []struct {
		name, family, msg string
	}{
		{"invalid UTF-8", "Riv\xffera", msgInvalidUTF8},
		{"truncated UTF-8", "Riv\xc3", msgInvalidUTF8},
		{"overlong UTF-8", "\xc0\xafx", msgInvalidUTF8},
		{"raw surrogate in UTF-8", "\xed\xa0\x80", msgInvalidUTF8},
		{"lone high surrogate", `Riv\ud800era`, msgSurrogate},
		{"high surrogate at end", `Riv\uD83D`, msgSurrogate},
		{"lone low surrogate", `\udc00`, msgSurrogate},
		{"high then non-low", `\ud83d\u0041`, msgSurrogate},
		{"NUL escape", `Riv\u0000era`, msgControl},
		{"ESC escape", `\u001b[31m`, msgControl},
		{"backspace escape", `a\bb`, msgControl},
		{"form feed escape", `a\fb`, msgControl},
		{"DEL raw", "a\x7fb", msgControl},
		{"C1 raw", "a\u0085b", msgControl},
		{"C1 escaped", `a\u009bb`, msgControl},
		{"too long", strings.Repeat("a", MaxStringBytes+1), msgTooLong},
		{"too long once decoded", strings.Repeat("é", MaxStringBytes/2) + "a", msgTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, errs := Decode([]byte(pre + tc.family + post))
			if rec != nil || len(errs) != 1 || errs[0].Path != "name.family" || errs[0].Message != tc.msg {
				t.Fatalf("got %v %v, want name.family: %s", rec, errs, tc.msg)
			}
		})
	}
	for _, tc := range []struct{ name, family string }{
		{"tab CR LF", `a\tb\r\nc\u0009d`},
		{"escaped pair", `\ud83d\ude00 \u00e9 \/`},
		{"raw astral", "😀 Ωmega"},
		{"exactly the limit", strings.Repeat("a", MaxStringBytes)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, errs := Decode([]byte(pre + tc.family + post)); len(errs) > 0 {
				t.Fatalf("refused: %v", errs)
			}
		})
	}
	// Array elements and member names.
	rec, errs := Decode([]byte(`{"kind":"patient","id":"p1","mrn":"M1","birthDate":"1980-01-01","sex":"female","name":{"family":"R","given":["A","\u001b"]}}`))
	if rec != nil || len(errs) != 1 || errs[0].Path != "name.given[1]" {
		t.Fatalf("array element: %v", errs)
	}
	rec, errs = Decode([]byte("{\"kind\":\"patient\",\"id\":\"p1\",\"mrn\":\"M1\",\"birthDate\":\"1980-01-01\",\"sex\":\"female\",\"name\":{\"family\":\"R\",\"\\u0000x\":1}}"))
	if rec != nil || len(errs) != 1 || errs[0].Path != "name" || !strings.HasPrefix(errs[0].Message, "a member name holds a control") {
		t.Fatalf("member name: %v", errs)
	}
}
