package clinic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
)

// New returns a new, empty record of kind k (a pointer to the kind's struct
// with Kind set), or false for an unknown kind.
func New(k Kind) (Record, bool) {
	switch k {
	case KindPatient:
		return &Patient{Header: Header{Kind: k}}, true
	case KindPractitioner:
		return &Practitioner{Header: Header{Kind: k}}, true
	case KindOrganization:
		return &Organization{Header: Header{Kind: k}}, true
	case KindLocation:
		return &Location{Header: Header{Kind: k}}, true
	case KindProtocol:
		return &Protocol{Header: Header{Kind: k}}, true
	case KindCourse:
		return &Course{Header: Header{Kind: k}}, true
	case KindDiagnosis:
		return &Diagnosis{Header: Header{Kind: k}}, true
	case KindSession:
		return &Session{Header: Header{Kind: k}}, true
	case KindCoverage:
		return &Coverage{Header: Header{Kind: k}}, true
	case KindConsent:
		return &Consent{Header: Header{Kind: k}}, true
	case KindAntidepressantTrial:
		return &AntidepressantTrial{Header: Header{Kind: k}}, true
	case KindPriorAuthResponse:
		return &PriorAuthResponse{Header: Header{Kind: k}}, true
	case KindReferral:
		return &Referral{Header: Header{Kind: k}}, true
	}
	return nil, false
}

// Decode parses one record (a JSON object) strictly: a missing or unknown
// kind, unknown or duplicate fields (names match exactly, not
// case-insensitively), wrong JSON types, non-integral numbers for integer
// fields, nulls (leave a member out instead) and trailing data are all
// FieldErrors with paths. On success it returns a pointer to the kind's struct
// (e.g. *Session) as a Record; Decode does not validate values (see Validate).
func Decode(data []byte) (Record, []FieldError) {
	if !json.Valid(data) {
		return nil, []FieldError{invalidJSON(data)}
	}
	sc := scanner{data: data}
	sc.ws()
	if sc.data[sc.pos] != '{' {
		return nil, []FieldError{{Path: "", Message: "must be a JSON object"}}
	}
	kind, fe := sc.findKind()
	if fe != nil {
		return nil, []FieldError{*fe}
	}
	rec, ok := New(Kind(kind))
	if !ok {
		return nil, []FieldError{{Path: "kind", Message: oneOf(kindNames())}}
	}
	// Walk the bytes against the struct type for exact paths.
	sc.pos = 0
	sc.value(reflect.TypeOf(rec).Elem())
	if len(sc.errs) > 0 {
		return nil, sc.errs
	}
	// The real decode; the walk accepted exactly what it accepts, so an error
	// here is a backstop only.
	if err := json.Unmarshal(data, rec); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			want := jsonTypeName(te.Type)
			return nil, []FieldError{{Path: te.Field, Message: "must be " + article(want) + " " + want}}
		}
		return nil, []FieldError{{Path: "", Message: "cannot be decoded"}}
	}
	return rec, nil
}

// invalidJSON explains why data is not one JSON value: trailing data after a
// complete value, or a syntax error reported by byte offset only (json's own
// messages quote the offending character, which is record content).
func invalidJSON(data []byte) FieldError {
	dec := json.NewDecoder(bytes.NewReader(data))
	var first json.RawMessage
	err := dec.Decode(&first)
	if err == nil {
		return FieldError{Path: "", Message: "trailing data after the record"}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return FieldError{Path: "", Message: fmt.Sprintf("invalid JSON at byte offset %d", se.Offset)}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return FieldError{Path: "", Message: "incomplete JSON"}
	}
	return FieldError{Path: "", Message: "invalid JSON"}
}

func kindNames() []string {
	out := make([]string, len(Kinds))
	for i, k := range Kinds {
		out[i] = string(k)
	}
	return out
}

// jsonTypeName names the JSON type a Go type is decoded from.
func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonTypeName(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return t.Kind().String()
}

// structField is one JSON member of a struct (embedded structs flattened).
type structField struct {
	name  string
	typ   reflect.Type
	index uint // position among the struct's JSON members (< 64)
}

var fieldCache sync.Map // reflect.Type -> map[string]structField

// jsonFields lists the JSON members of struct type t, following encoding/json's
// rules for the tags used in records.go (embedded untagged structs inline).
func jsonFields(t reflect.Type) map[string]structField {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]structField)
	}
	m := map[string]structField{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			m[name] = structField{name: name, typ: f.Type, index: uint(len(m))}
		}
	}
	walk(t)
	if len(m) > 64 {
		panic("clinic: more than 64 JSON members in " + t.Name()) // duplicate detection uses a uint64
	}
	fieldCache.Store(t, m)
	return m
}

func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}
