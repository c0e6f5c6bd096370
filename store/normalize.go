package store

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NormalizeString is the form string index rows and string search values are
// compared in: lower case with accents (combining marks) removed, so that
// "Müller" and "muller" match (search.html#string: "case- and
// accent-insensitive"). The indexer and every store backend use this one
// function; it is idempotent.
func NormalizeString(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		if f, ok := foldExtra[r]; ok {
			b.WriteString(f)
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return norm.NFC.String(b.String())
}

// foldExtra folds letters that carry no combining mark under NFD but are
// commonly typed without their stroke or ligature.
var foldExtra = map[rune]string{
	'ß': "ss", 'ẞ': "ss",
	'Æ': "ae", 'æ': "ae",
	'Œ': "oe", 'œ': "oe",
	'Ø': "o", 'ø': "o",
	'Đ': "d", 'đ': "d",
	'Ł': "l", 'ł': "l",
	'Ħ': "h", 'ħ': "h",
	'ı': "i",
}
