// Package fhirjson is the gateway's one canonical emit path for FHIR R4 JSON.
//
// The samply models (github.com/samply/golang-fhir-models v0.3.2) emit every
// alternative of a REQUIRED choice element (value[x] with min 1) as a plain,
// always-marshalled field, so encoding/json writes all alternatives at once:
// empty objects, empty strings and zero values that look like data, which
// is invalid FHIR (ele-1, one value per choice). Marshal repairs this by
// construction: it finds those choice groups by reflection over the struct
// types (cached per reflect.Type) and emits exactly the one alternative that
// is set, refusing to guess when it cannot know (plain bool/int alternatives).
//
// As a safety net Marshal refuses output that would contain an empty object,
// empty array, empty string or null anywhere (FHIR R4 ele-1, json.html#xml):
// callers fix their data instead of emitting invalid bytes. Errors name the
// element path only, never values (no PHI).
//
// Output is compact JSON with the member order encoding/json gives for the
// struct ("id" first, "meta" second for resources; "resourceType" last, where
// samply puts it), HTML characters unescaped and no trailing newline.
package fhirjson

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// samplyPkg is the import path of the generated R4 models.
const samplyPkg = "github.com/samply/golang-fhir-models/fhir-models/fhir"

// Error is a Marshal failure. Path is a FHIR element path such as
// "Task.input[0].value[x]"; neither field carries resource values.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string { return "fhirjson: " + e.Path + ": " + e.Reason }

// Marshal returns the canonical compact JSON of a samply r4 resource or
// datatype (value or pointer). Types that implement json.Marshaler themselves
// (other than samply's resource wrappers) are encoded by their own method and
// then checked for empty values like everything else.
func Marshal(v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	for rv.IsValid() && (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface) {
		if rv.IsNil() {
			return nil, &Error{Path: "(root)", Reason: "nil value"}
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return nil, &Error{Path: "(root)", Reason: "nil value"}
	}
	t := rv.Type()
	root := t.Name()
	if root == "" {
		root = "(root)"
	}
	e := newEncoder()
	defer e.release()

	var err error
	switch pl := planFor(t); {
	case pl.resource && !containsGroups(rv, pl):
		err = e.encodeResourceFast(rv, pl)
	case pl.resource || containsGroups(rv, pl):
		err = e.walkStruct(rv, pl, &pathFrame{name: root})
	default:
		err = e.encodeLeaf(rv)
	}
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(e.buf.Bytes())
	if err := CheckEmpty(out, root); err != nil {
		return nil, err
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// type plans

// plan is what Marshal knows about one reflect.Type.
type plan struct {
	t         reflect.Type
	resource  bool        // a samply resource struct: "resourceType" is appended last
	hasGroups bool        // a required choice group exists in this type or in a type reachable from it
	st        *structPlan // non-nil for struct kinds that are walked (not json.Marshaler leaves)
	elem      reflect.Type
	// relevant lists the fields (indexes into st.fields) whose types can reach
	// a required choice group. Almost every type reaches one through
	// Extension.valueUsageContext & co., so whether a value really contains a
	// group is decided per value by following only these fields.
	relevant []int

	// elemPlan and relPlans cache planFor of elem and of the relevant
	// fields' types, so that containsGroups, run for every resource, does
	// not look them up in plans each time (PERF-IN-4).
	elemPlan atomic.Pointer[plan]
	relPlans []atomic.Pointer[plan] // parallel to relevant

	fastOnce sync.Once
	viewType reflect.Type // resources without groups: the same fields and layout, no methods (PERF-IN-4)
	fastType reflect.Type // fallback when viewType cannot be built: exported fields + ResourceType, no methods
	exported []int        // indexes of the exported fields of t, for fastType
}

type structPlan struct {
	fields []fieldPlan
	groups []groupPlan
}

type fieldPlan struct {
	index     int
	name      string // json member name
	omitEmpty bool
	group     int // index into groups, -1 if none
}

// groupPlan is one required choice element, e.g. MedicationAdministration.medication[x].
type groupPlan struct {
	prefix  string // "medication"
	members []int  // indexes into structPlan.fields, in struct order
}

var (
	plans     sync.Map // reflect.Type -> *plan
	marshaler = reflect.TypeFor[json.Marshaler]()
)

// elemP is planFor(p.elem), cached in p.
func (p *plan) elemP() *plan {
	if ep := p.elemPlan.Load(); ep != nil {
		return ep
	}
	ep := planFor(p.elem)
	p.elemPlan.Store(ep)
	return ep
}

// relP is planFor of the type of the k-th relevant field, cached in p.
func (p *plan) relP(k int) *plan {
	if fp := p.relPlans[k].Load(); fp != nil {
		return fp
	}
	fp := planFor(p.t.Field(p.st.fields[p.relevant[k]].index).Type)
	p.relPlans[k].Store(fp)
	return fp
}

func planFor(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	p := buildPlan(t)
	actual, _ := plans.LoadOrStore(t, p)
	return actual.(*plan)
}

// isResourceStruct reports whether t is a samply resource struct (a struct
// whose MarshalJSON only adds "resourceType").
func isResourceStruct(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t.PkgPath() == samplyPkg && t.Implements(marshaler)
}

// isLeaf reports whether values of t are encoded by encoding/json as a unit
// without looking inside (json.Marshaler implementations such as samply code
// enums, json.Number, json.RawMessage, scalars).
func isLeaf(t reflect.Type) bool {
	if isResourceStruct(t) {
		return false
	}
	if t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map, reflect.Interface:
		return false
	}
	return true
}

func buildPlan(t reflect.Type) *plan {
	p := &plan{t: t, resource: isResourceStruct(t)}
	if t.Kind() == reflect.Struct && !isLeaf(t) {
		p.st = buildStructPlan(t)
		for fi, f := range p.st.fields {
			if reachesGroups(t.Field(f.index).Type, map[reflect.Type]bool{}) {
				p.relevant = append(p.relevant, fi)
			}
		}
		p.relPlans = make([]atomic.Pointer[plan], len(p.relevant))
	}
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		p.elem = t.Elem()
	}
	p.hasGroups = reachesGroups(t, map[reflect.Type]bool{})
	return p
}

// reachesGroups reports whether t or any type reachable through its fields
// has a required choice group.
func reachesGroups(t reflect.Type, seen map[reflect.Type]bool) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		t = t.Elem()
	}
	if seen[t] || t.Kind() != reflect.Struct || isLeaf(t) {
		return false
	}
	seen[t] = true
	if len(buildStructPlan(t).groups) > 0 {
		return true
	}
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && reachesGroups(f.Type, seen) {
			return true
		}
	}
	return false
}

// ChoiceTypeSuffixes are the FHIR R4 type names as they appear capitalised at
// the end of a choice element's JSON name (formats.html#choice), longest first
// so that "valueDateTime" splits as value + DateTime, not valueDate + Time.
// The validator in package conformance splits choice names with the same list.
var ChoiceTypeSuffixes = func() []string {
	s := []string{
		"Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant",
		"Integer", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri", "Url", "Uuid",
		"Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactPoint", "Count",
		"Distance", "Duration", "HumanName", "Identifier", "Money", "Period", "Quantity", "Range", "Ratio",
		"Reference", "SampledData", "Signature", "Timing", "ContactDetail", "Contributor",
		"DataRequirement", "Expression", "ParameterDefinition", "RelatedArtifact", "TriggerDefinition",
		"UsageContext", "Dosage", "Meta",
	}
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	return s
}()

// choicePrefix returns the element name of a choice alternative
// ("medication" for "medicationCodeableConcept") or "" if name does not end in
// a FHIR type name.
func choicePrefix(name string) string {
	for _, s := range ChoiceTypeSuffixes {
		if len(name) > len(s) && strings.HasSuffix(name, s) {
			return name[:len(name)-len(s)]
		}
	}
	return ""
}

func jsonName(f reflect.StructField) (name string, omitEmpty, ok bool) {
	if !f.IsExported() {
		return "", false, false
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false, false
	}
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	for _, o := range strings.Split(opts, ",") {
		if o == "omitempty" {
			omitEmpty = true
		}
	}
	return name, omitEmpty, true
}

func buildStructPlan(t reflect.Type) *structPlan {
	sp := &structPlan{}
	byPrefix := map[string][]int{}
	var order []string
	for i := 0; i < t.NumField(); i++ {
		name, omit, ok := jsonName(t.Field(i))
		if !ok {
			continue
		}
		sp.fields = append(sp.fields, fieldPlan{index: i, name: name, omitEmpty: omit, group: -1})
		if omit {
			continue
		}
		if pre := choicePrefix(name); pre != "" {
			if _, seen := byPrefix[pre]; !seen {
				order = append(order, pre)
			}
			byPrefix[pre] = append(byPrefix[pre], len(sp.fields)-1)
		}
	}
	for _, pre := range order {
		members := byPrefix[pre]
		if len(members) < 2 {
			continue
		}
		for _, m := range members {
			sp.fields[m].group = len(sp.groups)
		}
		sp.groups = append(sp.groups, groupPlan{prefix: pre, members: members})
	}
	return sp
}

// RequiredChoiceGroups lists the required choice elements Marshal repairs in
// struct type t (not in nested types), as "prefix[x]: alt1,alt2,...". It is
// exported for tests and diagnostics.
func RequiredChoiceGroups(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	sp := buildStructPlan(t)
	var out []string
	for _, g := range sp.groups {
		names := make([]string, len(g.members))
		for i, m := range g.members {
			names[i] = sp.fields[m].name
		}
		out = append(out, g.prefix+"[x]: "+strings.Join(names, ","))
	}
	return out
}

// ---------------------------------------------------------------------------
// encoding

type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

func newEncoder() *encoder { return encoders.Get().(*encoder) }

func (e *encoder) release() {
	if e.buf.Cap() > 1<<20 {
		return // do not keep huge buffers alive
	}
	e.buf.Reset()
	encoders.Put(e)
}

// encodeLeaf appends v as encoding/json writes it (minus the newline).
func (e *encoder) encodeLeaf(v reflect.Value) error {
	if err := e.enc.Encode(v.Interface()); err != nil {
		return &Error{Path: "(value)", Reason: "encoding/json: " + typeOnly(err)}
	}
	e.buf.Truncate(e.buf.Len() - 1) // Encode appends '\n'
	return nil
}

// typeOnly keeps an encoding/json error message free of values: such errors
// name Go types (unsupported type/value) and are cut at the first colon.
func typeOnly(err error) string {
	s := err.Error()
	if i := strings.Index(s, ": "); i >= 0 && strings.HasPrefix(s, "json: error calling") {
		return s[:i]
	}
	return s
}

// encodeResourceFast encodes a resource struct without required choice groups
// anywhere inside by one encoding/json call on a method-less view of it (so
// that encoding/json's SetEscapeHTML(false) applies, which samply's own
// MarshalJSON would bypass), with "resourceType" as its last member.
//
// The view is a reflect.StructOf type with the resource's fields, tags and
// therefore its memory layout (checked field by field when the plan is
// built), laid over the resource's own memory: no copy of the resource, no
// per-field reflection per call (docs/design/security.md PERF-IN-4). The
// bytes are those of the former copy into a struct with a trailing
// ResourceType member: "resourceType" is appended before the closing brace.
// A resource passed by value is copied once into addressable memory; a type
// whose layout does not match falls back to the member-by-member copy.
func (e *encoder) encodeResourceFast(v reflect.Value, p *plan) error {
	p.fastOnce.Do(func() { p.buildFast() })
	var target any
	if p.viewType != nil {
		if !v.CanAddr() {
			cp := reflect.New(p.t).Elem()
			cp.Set(v)
			v = cp
		}
		target = reflect.NewAt(p.viewType, unsafe.Pointer(v.UnsafeAddr())).Interface()
	} else {
		cp := reflect.New(p.fastType).Elem()
		for j, i := range p.exported {
			cp.Field(j).Set(v.Field(i))
		}
		cp.Field(len(p.exported)).SetString(p.t.Name())
		target = cp.Addr().Interface()
	}
	start := e.buf.Len()
	if err := e.enc.Encode(target); err != nil {
		return &Error{Path: p.t.Name(), Reason: "encoding/json: " + typeOnly(err)}
	}
	e.buf.Truncate(e.buf.Len() - 1) // Encode appends '\n'
	if p.viewType != nil {
		// {...} -> {...,"resourceType":"T"}; {} -> {"resourceType":"T"}
		e.buf.Truncate(e.buf.Len() - 1)
		if e.buf.Len() > start+1 {
			e.buf.WriteByte(',')
		}
		e.buf.WriteString(`"resourceType":"`)
		e.buf.WriteString(p.t.Name())
		e.buf.WriteString(`"}`)
	}
	return nil
}

// buildFast prepares encodeResourceFast's types for p.t: viewType (same
// fields, no methods) when every field is exported and not embedded and the
// layouts agree, else fastType (exported fields plus a ResourceType string).
func (p *plan) buildFast() {
	var fs []reflect.StructField
	all := true
	for i := 0; i < p.t.NumField(); i++ {
		f := p.t.Field(i)
		if !f.IsExported() || f.Anonymous {
			all = false
			if !f.IsExported() {
				continue
			}
		}
		p.exported = append(p.exported, i)
		fs = append(fs, reflect.StructField{Name: f.Name, Type: f.Type, Tag: f.Tag})
	}
	if all {
		vt := reflect.StructOf(fs)
		same := vt.Size() == p.t.Size() && vt.Align() == p.t.Align() && vt.NumField() == p.t.NumField()
		for i := 0; same && i < vt.NumField(); i++ {
			a, b := vt.Field(i), p.t.Field(i)
			same = a.Offset == b.Offset && a.Type == b.Type && a.Name == b.Name && a.Tag == b.Tag
		}
		if same {
			p.viewType = vt
			return
		}
	}
	fs = append(fs, reflect.StructField{Name: "ResourceType", Type: reflect.TypeFor[string](), Tag: `json:"resourceType"`})
	p.fastType = reflect.StructOf(fs)
}

// pathFrame is one step of the element path, kept on the stack while walking
// and formatted only on error.
type pathFrame struct {
	parent *pathFrame
	name   string // member name ("" for array items)
	index  int    // array index when name == ""
}

func (f *pathFrame) String() string {
	var parts []*pathFrame
	for p := f; p != nil; p = p.parent {
		parts = append(parts, p)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		switch {
		case p.name == "":
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.index))
			b.WriteByte(']')
		case i == len(parts)-1:
			b.WriteString(p.name)
		default:
			b.WriteByte('.')
			b.WriteString(p.name)
		}
	}
	return b.String()
}

// isEmptyValue is encoding/json's omitempty rule.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return v.IsZero()
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
}

// altState classifies one alternative of a required choice group.
type altState int

const (
	altUnset altState = iota
	altSet
	altUnknowable // plain bool/int: false/0 cannot be told from "absent"
)

func alternativeState(v reflect.Value) altState {
	switch v.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return altUnknowable
	case reflect.String, reflect.Slice, reflect.Map: // string, json.Number, []T
		if v.Len() > 0 {
			return altSet
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return altSet
		}
	default: // struct
		if !v.IsZero() {
			return altSet
		}
	}
	return altUnset
}

// chooseGroups returns, per group of sp, the field (index into sp.fields) to
// emit.
func chooseGroups(v reflect.Value, sp *structPlan, path *pathFrame, chosen []int) error {
	for gi, g := range sp.groups {
		set, unknowable := -1, false
		var setNames []string
		for _, m := range g.members {
			switch alternativeState(v.Field(sp.fields[m].index)) {
			case altSet:
				set = m
				setNames = append(setNames, sp.fields[m].name)
			case altUnknowable:
				unknowable = true
			}
		}
		elem := &pathFrame{parent: path, name: g.prefix + "[x]"}
		switch {
		case len(setNames) > 1:
			return &Error{Path: elem.String(), Reason: "more than one alternative set (" + strings.Join(setNames, ", ") + ")"}
		case len(setNames) == 0 && unknowable:
			return &Error{Path: elem.String(), Reason: "no alternative set (bool/number alternatives are ambiguous in samply structs; use an own type)"}
		case len(setNames) == 0:
			return &Error{Path: elem.String(), Reason: "no alternative set"}
		}
		chosen[gi] = set
	}
	return nil
}

// walkStruct encodes a struct with required choice groups in it or below,
// member by member in struct order; subtrees without groups go to encoding/json.
func (e *encoder) walkStruct(v reflect.Value, p *plan, path *pathFrame) error {
	sp := p.st
	var chosenBuf [4]int
	chosen := chosenBuf[:0]
	if n := len(sp.groups); n > 0 {
		if n > len(chosenBuf) {
			chosen = make([]int, n)
		} else {
			chosen = chosenBuf[:n]
		}
		if err := chooseGroups(v, sp, path, chosen); err != nil {
			return err
		}
	}
	e.buf.WriteByte('{')
	first := true
	for fi := range sp.fields {
		f := &sp.fields[fi]
		fv := v.Field(f.index)
		if f.group >= 0 {
			if chosen[f.group] != fi {
				continue
			}
		} else if f.omitEmpty && isEmptyValue(fv) {
			continue
		}
		if !first {
			e.buf.WriteByte(',')
		}
		first = false
		e.buf.WriteByte('"')
		e.buf.WriteString(f.name)
		e.buf.WriteString(`":`)
		if err := e.value(fv, &pathFrame{parent: path, name: f.name}); err != nil {
			return err
		}
	}
	if p.resource {
		if !first {
			e.buf.WriteByte(',')
		}
		e.buf.WriteString(`"resourceType":"`)
		e.buf.WriteString(p.t.Name())
		e.buf.WriteByte('"')
	}
	e.buf.WriteByte('}')
	return nil
}

// containsGroups reports whether the value v (of the type of p) holds a
// struct with a required choice group, following only fields that can.
func containsGroups(v reflect.Value, p *plan) bool {
	if !p.hasGroups {
		return false
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return false
		}
		return containsGroups(v.Elem(), p.elemP())
	case reflect.Interface:
		if v.IsNil() {
			return false
		}
		return containsGroups(v.Elem(), planFor(v.Elem().Type()))
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 {
			return false
		}
		ep := p.elemP()
		if !ep.hasGroups {
			return false
		}
		for i := 0; i < v.Len(); i++ {
			if containsGroups(v.Index(i), ep) {
				return true
			}
		}
		return false
	case reflect.Struct:
		if p.st == nil {
			return false
		}
		if len(p.st.groups) > 0 {
			return true
		}
		for k, fi := range p.relevant {
			fv := v.Field(p.st.fields[fi].index)
			switch fv.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Interface, reflect.Map:
				if fv.IsNil() {
					continue
				}
			}
			if containsGroups(fv, p.relP(k)) {
				return true
			}
		}
	}
	return false
}

// value encodes one member value.
func (e *encoder) value(v reflect.Value, path *pathFrame) error {
	t := v.Type()
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			e.buf.WriteString("null") // rejected by CheckEmpty with its path
			return nil
		}
		if pl := planFor(t.Elem()); pl.st != nil && containsGroups(v.Elem(), pl) {
			return e.walkStruct(v.Elem(), pl, path)
		}
	case reflect.Struct:
		if pl := planFor(t); pl.st != nil && containsGroups(v, pl) {
			return e.walkStruct(v, pl, path)
		}
	case reflect.Slice:
		if v.IsNil() {
			break
		}
		if pl := planFor(t); containsGroups(v, pl) {
			e.buf.WriteByte('[')
			for i := 0; i < v.Len(); i++ {
				if i > 0 {
					e.buf.WriteByte(',')
				}
				if err := e.value(v.Index(i), &pathFrame{parent: path, index: i}); err != nil {
					return err
				}
			}
			e.buf.WriteByte(']')
			return nil
		}
	}
	if err := e.encodeLeaf(v); err != nil {
		return &Error{Path: path.String(), Reason: err.(*Error).Reason}
	}
	return nil
}

// ---------------------------------------------------------------------------
// empty-value safety net

// CheckEmpty reports the first empty object, empty array, empty string or
// null in the compact JSON b (FHIR R4 ele-1 and json.html: no empty elements,
// no nulls except in primitive arrays with extensions, which the gateway does
// not emit). root names the top of the path, e.g. "Observation". It returns
// nil when b has none. b must be compact JSON as encoding/json writes it.
func CheckEmpty(b []byte, root string) error {
	type frame struct {
		arr bool
		idx int
		key []byte
	}
	var stackBuf [32]frame
	stack := stackBuf[:0]
	fail := func(what string) error {
		var sb strings.Builder
		sb.WriteString(root)
		for _, f := range stack {
			if f.arr {
				sb.WriteByte('[')
				sb.WriteString(strconv.Itoa(f.idx))
				sb.WriteByte(']')
			} else if f.key != nil {
				sb.WriteByte('.')
				sb.Write(f.key)
			}
		}
		return &Error{Path: sb.String(), Reason: what + " (invalid FHIR, ele-1)"}
	}
	for i := 0; i < len(b); {
		switch c := b[i]; c {
		case '{':
			if i+1 < len(b) && b[i+1] == '}' {
				return fail("empty object")
			}
			stack = append(stack, frame{})
			i++
		case '[':
			if i+1 < len(b) && b[i+1] == ']' {
				return fail("empty array")
			}
			stack = append(stack, frame{arr: true})
			i++
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			i++
		case ',':
			if n := len(stack); n > 0 && stack[n-1].arr {
				stack[n-1].idx++
			}
			i++
		case '"':
			j := stringEnd(b, i+1)
			s := b[i+1 : min(j, len(b))]
			n := len(stack)
			if n > 0 && !stack[n-1].arr && j+1 < len(b) && b[j+1] == ':' {
				stack[n-1].key = s
			} else if len(s) == 0 {
				return fail("empty string")
			}
			i = j + 1
		case 'n':
			return fail("null")
		default:
			i++
		}
	}
	return nil
}

// stringEnd returns the index of the quote closing the JSON string whose
// contents start at b[from] (len(b) if it is not closed): the first quote not
// escaped by an odd run of backslashes, found with bytes.IndexByte rather
// than byte by byte (PERF-IN-4).
func stringEnd(b []byte, from int) int {
	j := from
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b)
		}
		j += k
		n := 0
		for p := j - 1; p >= from && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return j
		}
		j++
	}
}
