package clinic

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// MaxStringBytes is the largest string member accepted, in bytes of UTF-8
// once decoded: FHIR R4's limit on a string (datatypes.html#string, "strings
// SHALL NOT exceed 1 MB in size"), read as 1 MiB. A record's strings end up in
// FHIR resources, so a longer one could never be served as valid FHIR
// (docs/design/security.md IN-2).
const MaxStringBytes = 1 << 20

// Messages of the text rules (docs/design/security.md IN-1). They say what is
// wrong, never what was sent.
const (
	msgInvalidUTF8 = "is not valid UTF-8 text"
	msgSurrogate   = "is not valid text: it holds an unpaired UTF-16 surrogate escape"
	msgControl     = "holds a control character; only tab, carriage return and line feed are allowed"
)

var msgTooLong = "is longer than FHIR's string limit of " + strconv.Itoa(MaxStringBytes) + " bytes"

// CheckText applies the text rules to a string as JSON carries it (the raw
// bytes between the quotes, escapes undecoded) and returns what is wrong, or
// "" when it is acceptable text: valid UTF-8, no unpaired surrogate escape
// (\ud800 alone), no control character (Unicode category Cc: U+0000-U+001F,
// U+007F-U+009F) other than tab, carriage return and line feed, whether sent
// raw or escaped, and at most MaxStringBytes once decoded. encoding/json
// would turn invalid text into U+FFFD silently, so these rules run on the raw
// bytes before anything is decoded.
func CheckText(raw []byte) string {
	n := 0 // decoded length in bytes
	for k := 0; k < len(raw); {
		c := raw[k]
		if c >= 0x20 && c < 0x7F && c != '\\' { // printable ASCII: the common case
			k++
			n++
		} else if c == '\\' && k+1 < len(raw) {
			esc := raw[k+1]
			k += 2
			var r rune
			switch esc {
			case 'u':
				v, ok := hex4(raw, k)
				if !ok {
					return msgInvalidUTF8
				}
				k += 4
				r = rune(v)
				if utf16IsHigh(r) {
					lo, ok := -1, k+6 <= len(raw) && raw[k] == '\\' && raw[k+1] == 'u'
					if ok {
						var v2 uint16
						v2, ok = hex4(raw, k+2)
						lo = int(v2)
					}
					if !ok || !utf16IsLow(rune(lo)) {
						return msgSurrogate
					}
					k += 6
					r = 0x10000 + (r-0xD800)<<10 + (rune(lo) - 0xDC00)
				} else if utf16IsLow(r) {
					return msgSurrogate
				}
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			default: // \" \\ \/
				r = rune(esc)
			}
			if badControl(r) {
				return msgControl
			}
			n += utf8.RuneLen(r)
		} else {
			r, size := utf8.DecodeRune(raw[k:])
			if r == utf8.RuneError && size <= 1 {
				return msgInvalidUTF8
			}
			if badControl(r) {
				return msgControl
			}
			k += size
			n += size
		}
		if n > MaxStringBytes {
			return msgTooLong
		}
	}
	return ""
}

// badControl: a control character other than tab, carriage return and line
// feed.
func badControl(r rune) bool {
	return unicode.IsControl(r) && r != '\t' && r != '\r' && r != '\n'
}

func utf16IsHigh(r rune) bool { return r >= 0xD800 && r < 0xDC00 }
func utf16IsLow(r rune) bool  { return r >= 0xDC00 && r < 0xE000 }

// hex4 reads four hex digits at raw[k:].
func hex4(raw []byte, k int) (uint16, bool) {
	if k+4 > len(raw) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(raw[k:k+4]), 16, 16)
	return uint16(v), err == nil
}
