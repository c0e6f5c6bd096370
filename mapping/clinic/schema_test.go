package clinic

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

type schemaDoc struct {
	Schema string `json:"$schema"`
	OneOf  []struct {
		Ref string `json:"$ref"`
	} `json:"oneOf"`
	Defs          map[string]schemaDef          `json:"$defs"`
	Discriminator struct{ PropertyName string } `json:"discriminator"`
}

type schemaDef struct {
	Properties           map[string]json.RawMessage `json:"properties"`
	Required             []string                   `json:"required"`
	AdditionalProperties *bool                      `json:"additionalProperties"`
}

func loadSchema(t *testing.T) schemaDoc {
	t.Helper()
	var s schemaDoc
	if err := json.Unmarshal(Schema(), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchemaShape(t *testing.T) {
	s := loadSchema(t)
	if s.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %q", s.Schema)
	}
	if s.Discriminator.PropertyName != "kind" {
		t.Errorf("discriminator = %q, want kind", s.Discriminator.PropertyName)
	}
	if len(s.OneOf) != len(Kinds) {
		t.Fatalf("oneOf has %d entries, want %d", len(s.OneOf), len(Kinds))
	}
	for i, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			r, _ := New(k)
			name := reflect.TypeOf(r).Elem().Name()
			if s.OneOf[i].Ref != "#/$defs/"+name {
				t.Errorf("oneOf[%d] = %q", i, s.OneOf[i].Ref)
			}
			def := s.Defs[name]
			var kind struct{ Const string }
			if err := json.Unmarshal(def.Properties["kind"], &kind); err != nil || kind.Const != string(k) {
				t.Errorf("kind const = %q, want %q", kind.Const, k)
			}
			for _, req := range []string{"kind", "id"} {
				if !slices.Contains(def.Required, req) {
					t.Errorf("%s not required", req)
				}
			}
			if def.AdditionalProperties == nil || *def.AdditionalProperties {
				t.Error("additionalProperties must be false (Decode rejects unknown fields)")
			}
		})
	}
}

// TestSchemaHasEveryField walks every struct reachable from every kind and
// checks each JSON member is a property of the type's definition.
func TestSchemaHasEveryField(t *testing.T) {
	s := loadSchema(t)
	seen := map[reflect.Type]bool{}
	var walk func(t *testing.T, typ reflect.Type)
	walk = func(t *testing.T, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		def, ok := s.Defs[typ.Name()]
		if !ok {
			t.Errorf("no definition for %s", typ.Name())
			return
		}
		for name, f := range jsonFields(typ) {
			if _, ok := def.Properties[name]; !ok {
				t.Errorf("%s.%s missing from the schema", typ.Name(), name)
			}
			walk(t, f.typ)
		}
		if len(def.Properties) != len(jsonFields(typ)) {
			t.Errorf("%s: schema has %d properties, struct has %d", typ.Name(), len(def.Properties), len(jsonFields(typ)))
		}
	}
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			r, _ := New(k)
			walk(t, reflect.TypeOf(r))
		})
	}
	if len(seen) < 20 {
		t.Errorf("walked only %d struct types", len(seen))
	}
}

// TestSchemaRequiredAgreesWithValidate: every member the schema requires is
// reported by Validate (or Decode) when absent from a valid record.
func TestSchemaRequiredAgreesWithValidate(t *testing.T) {
	s := loadSchema(t)
	_, byKey := baseBatch(t)
	for key, b := range byKey {
		m := jsonObject(t, b)
		r, _ := New(Kind(m["kind"].(string)))
		def := s.Defs[reflect.TypeOf(r).Elem().Name()]
		for _, req := range def.Required {
			if _, present := m[req]; !present || req == "kind" {
				continue
			}
			t.Run(key+"/"+req, func(t *testing.T) {
				m := jsonObject(t, b)
				delete(m, req)
				data, _ := json.Marshal(m)
				rec, errs := Decode(data)
				if len(errs) == 0 {
					errs = Validate(rec)
				}
				found := false
				for _, e := range errs {
					found = found || e.Path == req || strings.HasPrefix(e.Path, req+".")
				}
				if !found {
					t.Errorf("schema requires %s but Decode+Validate accept it absent (errors %v)", req, errs)
				}
			})
		}
	}
}

func TestSchemaIsACopy(t *testing.T) {
	a := Schema()
	a[0] = 'x'
	if b := Schema(); b[0] != '{' {
		t.Fatal("Schema returned shared bytes")
	}
}
