package clinic

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// scanner walks JSON that json.Valid accepted, checking it against a Go type
// and collecting FieldErrors with exact paths. Because the syntax is known to
// be valid it only looks at the first byte of each value to learn its type;
// one pass, no allocation on the happy path except decoded keys with escapes.
type scanner struct {
	data []byte
	pos  int
	errs errs
	path []pathSeg
}

// pathSeg is one step of the current path: a member name or an array index.
type pathSeg struct {
	name string
	idx  int // -1 for a member
}

// at formats the current path ("administrations[0].doseMg").
func (s *scanner) at() string {
	var b strings.Builder
	for _, p := range s.path {
		if p.idx >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.idx))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p.name)
	}
	return b.String()
}

func (s *scanner) fail(msg string) { s.errs.add(s.at(), msg) }

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// str reads the string at pos and returns its raw bytes (between the quotes)
// and whether it contains escapes.
func (s *scanner) str() (raw []byte, escaped bool) {
	start := s.pos + 1
	for k := start; ; k++ {
		switch s.data[k] {
		case '\\':
			escaped = true
			k++
		case '"':
			s.pos = k + 1
			return s.data[start:k], escaped
		}
	}
}

// key reads a member name.
func (s *scanner) key() string {
	raw, escaped := s.str()
	if !escaped {
		return string(raw)
	}
	k, err := strconv.Unquote(`"` + string(raw) + `"`)
	if err != nil { // JSON escapes Go cannot unquote (e.g. \/): decode the slow way
		var out string
		_ = jsonUnquote(raw, &out)
		return out
	}
	return k
}

// skip skips the value at pos.
func (s *scanner) skip() {
	s.ws()
	switch s.data[s.pos] {
	case '"':
		s.str()
	case '{', '[':
		depth := 0
		for {
			switch s.data[s.pos] {
			case '"':
				s.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.pos++
			if depth == 0 {
				return
			}
		}
	default: // number or literal
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.pos++
		}
	}
}

// findKind reads the top-level "kind" member without judging the rest.
func (s *scanner) findKind() (string, *FieldError) {
	s.pos++ // '{'
	for {
		s.ws()
		if s.data[s.pos] == '}' {
			return "", &FieldError{Path: "kind", Message: "is required"}
		}
		name := s.key()
		s.ws()
		s.pos++ // ':'
		s.ws()
		if name == "kind" {
			switch s.data[s.pos] {
			case '"':
				raw, escaped := s.str()
				if escaped {
					return "", &FieldError{Path: "kind", Message: oneOf(kindNames())}
				}
				return string(raw), nil
			case 'n':
				return "", &FieldError{Path: "kind", Message: "is required"}
			default:
				return "", &FieldError{Path: "kind", Message: "must be a string"}
			}
		}
		s.skip()
		s.ws()
		if s.data[s.pos] == ',' {
			s.pos++
		}
	}
}

// value checks the value at pos against t.
func (s *scanner) value(t reflect.Type) {
	s.ws()
	c := s.data[s.pos]
	if c == 'n' {
		s.fail("must not be null (leave the member out instead)")
		s.pos += len("null")
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	wrong := func() {
		want := jsonTypeName(t)
		s.fail("must be " + article(want) + " " + want)
		s.skip()
	}
	switch t.Kind() {
	case reflect.Struct:
		if c != '{' {
			wrong()
			return
		}
		s.object(t)
	case reflect.Slice:
		if c != '[' {
			wrong()
			return
		}
		s.pos++
		s.ws()
		if s.data[s.pos] == ']' {
			s.pos++
			return
		}
		for n := 0; ; n++ {
			s.path = append(s.path, pathSeg{idx: n})
			s.value(t.Elem())
			s.path = s.path[:len(s.path)-1]
			s.ws()
			c := s.data[s.pos]
			s.pos++
			if c == ']' {
				return
			}
		}
	case reflect.String:
		if c != '"' {
			wrong()
			return
		}
		if msg := textProblem(s.str()); msg != "" {
			s.fail(msg)
		}
	case reflect.Bool:
		if c != 't' && c != 'f' {
			wrong()
			return
		}
		s.skip()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if c != '-' && (c < '0' || c > '9') {
			wrong()
			return
		}
		start := s.pos
		s.skip()
		num := string(s.data[start:s.pos])
		if _, err := strconv.ParseInt(num, 10, t.Bits()); err != nil {
			if strings.ContainsAny(num, ".eE") {
				s.fail("must be an integer")
			} else {
				s.fail("is out of range")
			}
		}
	case reflect.Float32, reflect.Float64:
		if c != '-' && (c < '0' || c > '9') {
			wrong()
			return
		}
		start := s.pos
		s.skip()
		if f, err := strconv.ParseFloat(string(s.data[start:s.pos]), t.Bits()); err != nil || math.IsInf(f, 0) {
			s.fail("is out of range")
		}
	default:
		wrong()
	}
}

// object checks the object at pos against struct type t.
func (s *scanner) object(t reflect.Type) {
	fields := jsonFields(t)
	var seen uint64 // bit per field index
	s.pos++         // '{'
	s.ws()
	if s.data[s.pos] == '}' {
		s.pos++
		return
	}
	for {
		s.ws()
		if msg := textProblem(s.peekStr()); msg != "" {
			// The name itself is not text: report it on the object, whose
			// path is printable, and skip the member.
			s.fail("a member name " + strings.TrimPrefix(msg, "is "))
			s.str()
			s.ws()
			s.pos++ // ':'
			s.skip()
			s.ws()
			c := s.data[s.pos]
			s.pos++
			if c == '}' {
				return
			}
			continue
		}
		name := s.key()
		s.ws()
		s.pos++ // ':'
		s.path = append(s.path, pathSeg{name: name, idx: -1})
		f, known := fields[name]
		switch {
		case !known:
			s.fail("unknown field")
			s.skip()
		default:
			if seen&(1<<f.index) != 0 {
				s.fail("duplicate field")
			}
			seen |= 1 << f.index
			s.value(f.typ)
		}
		s.path = s.path[:len(s.path)-1]
		s.ws()
		c := s.data[s.pos]
		s.pos++
		if c == '}' {
			return
		}
	}
}

// jsonUnquote decodes a JSON string body with encoding/json (escapes such
// as \/ that strconv does not know).
func jsonUnquote(raw []byte, out *string) error {
	return json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), out)
}

// textProblem applies CheckText to a string read by str.
func textProblem(raw []byte, _ bool) string { return CheckText(raw) }

// peekStr returns the raw bytes of the string at pos without moving.
func (s *scanner) peekStr() ([]byte, bool) {
	pos := s.pos
	raw, escaped := s.str()
	s.pos = pos
	return raw, escaped
}
