// Package conformance holds what the gateway states and checks about its own
// FHIR output. This file and its neighbours are the validator of emitted
// resources: a fast, Go-native check that every resource and Bundle the
// gateway emits is valid FHIR R4 (4.0.1) and conforms to the profiles it
// claims. The independent node validator (fhir-validate, run by .ci/run) is
// the second opinion in CI.
//
// Structure comes from the samply r4 structs by reflection (elements, JSON
// types, cardinality, choice[x] groups, code enums); primitive formats from
// datatypes.html; invariants and US Core 6.1.0 rules are written out by hand.
// Issues carry element paths and codes only, never resource values (no PHI).
package conformance

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/conformance/fhirjson"
)

// Issue is one finding. Path is a FHIRPath-like element path with indexes
// (e.g. "MedicationAdministration.dosage.dose.unit",
// "Bundle.entry[0].resource.subject.reference"); Code is a FHIR IssueType
// (valueset-issue-type.html); Message holds no resource values except codes
// and canonical URLs.
type Issue struct {
	Path    string
	Code    string
	Message string
}

// FHIR IssueType codes used in Issue.Code.
const (
	CodeStructure    = "structure"
	CodeRequired     = "required"
	CodeValue        = "value"
	CodeCodeInvalid  = "code-invalid"
	CodeInvariant    = "invariant"
	CodeNotSupported = "not-supported" // a claimed profile this validator does not check
)

// maxDepth caps object nesting (a hostile or broken body cannot blow the stack).
const maxDepth = 64

// Validate checks one JSON resource (a Bundle is checked with all its entry
// resources) and returns its issues; nil means valid.
func Validate(body []byte) []Issue {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []Issue{{Path: "(root)", Code: CodeStructure, Message: "body is not valid JSON"}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return []Issue{{Path: "(root)", Code: CodeStructure, Message: "trailing data after the JSON value"}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return []Issue{{Path: "(root)", Code: CodeStructure, Message: "body is not a JSON object"}}
	}
	c := &checker{}
	c.resource(obj, "", nil)
	return c.issues
}

// ValidateResource marshals v through the canonical emit path
// (fhirjson.Marshal) and validates the bytes. A marshal failure is returned
// as an issue.
func ValidateResource(v any) []Issue {
	b, err := fhirjson.Marshal(v)
	if err != nil {
		var fe *fhirjson.Error
		if errors.As(err, &fe) {
			code := CodeStructure
			switch {
			case strings.Contains(fe.Reason, "no alternative set"):
				code = CodeRequired
			case strings.Contains(fe.Reason, "ele-1"):
				code = CodeInvariant
			}
			return []Issue{{Path: fe.Path, Code: code, Message: "fhirjson: " + fe.Reason}}
		}
		return []Issue{{Path: "(root)", Code: CodeStructure, Message: "fhirjson: marshal failed"}}
	}
	return Validate(b)
}

// checker collects issues while walking one body.
type checker struct {
	issues []Issue
	depth  int
	tx     int // > 0 while inside a batch/transaction Bundle (conditional references allowed)
}

func (c *checker) add(path, code, msg string) {
	is := Issue{Path: path, Code: code, Message: msg}
	for _, old := range c.issues {
		if old == is {
			return // e.g. a base profile reached through two claimed profiles
		}
	}
	c.issues = append(c.issues, is)
}

// resCtx is shared by a resource and the resources it contains.
type resCtx struct {
	contained map[string]bool // ids of contained resources
	localRefs map[string]bool // ids referenced as "#id" anywhere (dom-3)
	backRefs  map[string]bool // ids of contained resources that reference "#" (their container)
	current   string          // id of the contained resource being walked, "" at the root
}

// resource validates obj as a resource found at path ("" for the root, when
// the path starts with the resourceType). parent is the container's context
// for contained resources, nil otherwise.
func (c *checker) resource(obj map[string]any, path string, parent *resCtx) {
	rt, _ := obj["resourceType"].(string)
	p := path
	if p == "" {
		p = rt
		if p == "" {
			p = "(root)"
		}
	}
	if rt == "" {
		c.add(p, CodeStructure, "missing or non-string resourceType")
		return
	}
	t, ok := resourceTypes[rt]
	if !ok {
		c.add(p+".resourceType", CodeCodeInvalid, "unknown resourceType "+strconv.Quote(safeCode(rt)))
		return
	}
	if c.depth > maxDepth {
		c.add(p, CodeStructure, "nesting too deep")
		return
	}
	ctx := parent
	if ctx == nil {
		ctx = &resCtx{}
		if arr, ok := obj["contained"].([]any); ok {
			ctx.contained = map[string]bool{}
			for _, it := range arr {
				if m, ok := it.(map[string]any); ok {
					if id, ok := m["id"].(string); ok {
						ctx.contained[id] = true
					}
				}
			}
		}
	}
	tx := 0
	if rt == "Bundle" {
		if bt, _ := obj["type"].(string); bt == "transaction" || bt == "batch" {
			tx = 1
		}
	}
	c.tx += tx
	c.depth++
	c.object(obj, infoFor(t), p, ctx, parent != nil)
	c.depth--
	c.tx -= tx
	c.resourceRules(rt, obj, p, ctx, parent != nil)
}

// object validates a JSON object against the reflection table ti.
func (c *checker) object(obj map[string]any, ti *typeInfo, path string, ctx *resCtx, inContained bool) {
	// unknown members (sorted for stable output)
	var unknown []string
	for k, v := range obj {
		switch {
		case k == "resourceType" && ti.resource:
		case k == "contained" && ti.domain:
			c.contained(v, path+".contained", ctx, inContained)
		case strings.HasPrefix(k, "_"):
			if e := ti.elems[k[1:]]; e == nil || !e.primitive() {
				unknown = append(unknown, k)
			}
		case ti.elems[k] == nil:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		for _, k := range unknown {
			c.add(path+"."+safeName(k), CodeStructure, "unknown element")
		}
	}
	for _, name := range ti.order {
		e := ti.elems[name]
		v, has := obj[name]
		ext, hasExt := obj["_"+name]
		if !has && !hasExt {
			if e.required {
				c.add(path+"."+name, CodeRequired, "missing required element")
			}
			continue
		}
		if has {
			c.element(v, e, path+"."+name, ctx, inContained)
			if e.kind == kObject {
				c.elementRules(ti.name+"."+name, v, path+"."+name)
			}
		}
		if hasExt && e.primitive() {
			c.primitiveExt(ext, e, path+"._"+name, ctx, inContained)
		}
	}
	for _, g := range ti.groups {
		n := 0
		for _, m := range g.members {
			if _, ok := obj[m]; ok {
				n++
			} else if _, ok := obj["_"+m]; ok {
				n++
			}
		}
		switch {
		case n > 1:
			c.add(path+"."+g.prefix+"[x]", CodeStructure, "more than one alternative of a choice element")
		case n == 0 && g.required:
			c.add(path+"."+g.prefix+"[x]", CodeRequired, "missing required choice element")
		}
	}
	c.datatypeRules(ti.name, obj, path, ctx)
}

func (e *elemInfo) primitive() bool { return e.kind != kObject && e.kind != kResource }

func (c *checker) contained(v any, path string, ctx *resCtx, inContained bool) {
	if inContained {
		c.add(path, CodeInvariant, "dom-2: a contained resource shall not contain resources")
		return
	}
	arr, ok := v.([]any)
	if !ok {
		c.add(path, CodeStructure, "expected an array")
		return
	}
	if len(arr) == 0 {
		c.add(path, CodeStructure, "empty array")
	}
	for i, it := range arr {
		ip := path + "[" + strconv.Itoa(i) + "]"
		m, ok := it.(map[string]any)
		if !ok {
			c.add(ip, CodeStructure, "expected a resource object")
			continue
		}
		prev := ctx.current
		ctx.current, _ = m["id"].(string)
		c.resource(m, ip, ctx)
		ctx.current = prev
	}
}

// element validates the value of one member.
func (c *checker) element(v any, e *elemInfo, path string, ctx *resCtx, inContained bool) {
	arr, isArr := v.([]any)
	switch {
	case v == nil:
		c.add(path, CodeStructure, "null is not allowed")
	case e.array && !isArr:
		c.add(path, CodeStructure, "expected an array")
	case !e.array && isArr:
		c.add(path, CodeStructure, "expected a single value, not an array")
	case e.array:
		if len(arr) == 0 {
			c.add(path, CodeStructure, "empty array")
		}
		for i, it := range arr {
			c.single(it, e, path+"["+strconv.Itoa(i)+"]", ctx, inContained)
		}
	default:
		c.single(v, e, path, ctx, inContained)
	}
}

func (c *checker) single(v any, e *elemInfo, path string, ctx *resCtx, inContained bool) {
	if v == nil {
		c.add(path, CodeStructure, "null is not allowed")
		return
	}
	switch e.kind {
	case kString:
		s, ok := v.(string)
		if !ok {
			c.add(path, CodeStructure, "expected a JSON string")
			return
		}
		c.primitive(s, e.prim, path)
	case kEnum:
		s, ok := v.(string)
		if !ok {
			c.add(path, CodeStructure, "expected a JSON string")
			return
		}
		if s == "" {
			c.add(path, CodeValue, "empty string")
			return
		}
		if !enumOK(e.enum, s) {
			c.add(path, CodeCodeInvalid, "code "+strconv.Quote(safeCode(s))+" is not in the required value set")
		}
	case kBool:
		if _, ok := v.(bool); !ok {
			c.add(path, CodeStructure, "expected a JSON boolean")
		}
	case kInt:
		n, ok := v.(json.Number)
		if !ok {
			c.add(path, CodeStructure, "expected a JSON number")
			return
		}
		c.integer(string(n), e.prim, path)
	case kDecimal:
		if _, ok := v.(json.Number); !ok {
			c.add(path, CodeStructure, "expected a JSON number")
		}
	case kObject, kResource:
		m, ok := v.(map[string]any)
		if !ok {
			c.add(path, CodeStructure, "expected a JSON object")
			return
		}
		if len(m) == 0 {
			c.add(path, CodeInvariant, "ele-1: empty object")
			return
		}
		if c.depth > maxDepth {
			c.add(path, CodeStructure, "nesting too deep")
			return
		}
		if e.kind == kResource {
			c.resource(m, path, nil)
			return
		}
		c.depth++
		c.object(m, infoFor(e.obj), path, ctx, inContained)
		c.depth--
	}
}

// primitiveExt validates a "_name" sibling: an Element (id, extension) or,
// for repeating primitives, an array of Element or null (json.html#primitive).
func (c *checker) primitiveExt(v any, e *elemInfo, path string, ctx *resCtx, inContained bool) {
	one := func(v any, p string) {
		m, ok := v.(map[string]any)
		if !ok {
			c.add(p, CodeStructure, "expected a JSON object")
			return
		}
		if len(m) == 0 {
			c.add(p, CodeInvariant, "ele-1: empty object")
			return
		}
		for k, x := range m {
			switch k {
			case "id":
				if s, ok := x.(string); !ok || s == "" {
					c.add(p+".id", CodeValue, "invalid element id")
				}
			case "extension":
				c.element(x, extensionElem, p+".extension", ctx, inContained)
			default:
				c.add(p+"."+safeName(k), CodeStructure, "unknown element")
			}
		}
	}
	if !e.array {
		one(v, path)
		return
	}
	arr, ok := v.([]any)
	if !ok {
		c.add(path, CodeStructure, "expected an array")
		return
	}
	for i, it := range arr {
		if it != nil {
			one(it, path+"["+strconv.Itoa(i)+"]")
		}
	}
}

var extensionElem = &elemInfo{name: "extension", kind: kObject, array: true, group: -1,
	obj: reflect.TypeFor[r4.Extension]()}

// ---------------------------------------------------------------------------
// primitives (datatypes.html#primitive)

const yearRe = `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)`
const zoneRe = `(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))`
const timeRe = `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?`

var (
	reID       = regexp.MustCompile(`^[A-Za-z0-9\-\.]{1,64}$`)
	reDate     = regexp.MustCompile(`^` + yearRe + `(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$`)
	reDateTime = regexp.MustCompile(`^` + yearRe + `(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T` + timeRe + zoneRe + `)?)?)?$`)
	reInstant  = regexp.MustCompile(`^` + yearRe + `-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T` + timeRe + zoneRe + `$`)
	reTime     = regexp.MustCompile(`^` + timeRe + `$`)
	reCode     = regexp.MustCompile(`^[^\s]+( [^\s]+)*$`)
	reOID      = regexp.MustCompile(`^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$`)
	reUUID     = regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	reInteger  = regexp.MustCompile(`^-?([0]|([1-9][0-9]*))$`)
)

func (c *checker) primitive(s, prim, path string) {
	if s == "" {
		c.add(path, CodeValue, "empty string")
		return
	}
	if !utf8.ValidString(s) {
		c.add(path, CodeValue, "invalid UTF-8")
		return
	}
	ok := true
	switch prim {
	case "id":
		ok = reID.MatchString(s)
	case "code":
		ok = reCode.MatchString(s)
	case "uri", "url", "canonical":
		ok = strings.IndexFunc(s, isSpace) < 0
	case "oid":
		ok = reOID.MatchString(s)
	case "uuid":
		ok = reUUID.MatchString(s)
	case "date":
		ok = reDate.MatchString(s) && realDate(s)
	case "dateTime":
		ok = reDateTime.MatchString(s) && realDate(s)
	case "instant":
		ok = reInstant.MatchString(s) && realDate(s)
	case "time":
		ok = reTime.MatchString(s)
	case "base64Binary":
		_, err := base64.StdEncoding.DecodeString(strings.Map(dropSpace, s))
		ok = err == nil
	case "xhtml":
		// Narrative.div: an XHTML div in the XHTML namespace (narrative.html#xhtml, txt-1/txt-2).
		ok = strings.HasPrefix(s, "<div") && strings.Contains(s, `xmlns="http://www.w3.org/1999/xhtml"`) &&
			strings.HasSuffix(s, "</div>")
	default: // string, markdown: [ \r\n\t\S]+
		ok = strings.IndexFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\r' && r != '\n' }) < 0
	}
	if !ok {
		c.add(path, CodeValue, "invalid "+prim)
	}
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v'
}

func dropSpace(r rune) rune {
	if isSpace(r) {
		return -1
	}
	return r
}

// realDate reports whether a full YYYY-MM-DD prefix is a calendar date.
func realDate(s string) bool {
	if len(s) < 10 {
		return true
	}
	_, err := time.Parse("2006-01-02", s[:10])
	return err == nil
}

func (c *checker) integer(s, prim, path string) {
	if !reInteger.MatchString(s) {
		c.add(path, CodeValue, "invalid "+prim)
		return
	}
	n, err := strconv.ParseInt(s, 10, 32)
	switch {
	case err != nil:
		c.add(path, CodeValue, prim+" out of 32-bit range")
	case prim == "positiveInt" && n < 1:
		c.add(path, CodeValue, "positiveInt must be >= 1")
	case prim == "unsignedInt" && n < 0:
		c.add(path, CodeValue, "unsignedInt must be >= 0")
	}
}

type enumKey struct {
	t reflect.Type
	s string
}

var enumCache sync.Map // enumKey -> struct{} for codes known good

// enumOK reports whether the samply code enum t accepts s.
func enumOK(t reflect.Type, s string) bool {
	k := enumKey{t, s}
	if _, ok := enumCache.Load(k); ok {
		return true
	}
	if strings.ContainsAny(s, `"\`) {
		return false
	}
	u := reflect.New(t).Interface().(json.Unmarshaler)
	if u.UnmarshalJSON([]byte(`"`+s+`"`)) != nil {
		return false
	}
	enumCache.Store(k, struct{}{}) // bounded: only valid codes are stored
	return true
}

// safeName keeps an unknown member name in a path readable without leaking
// long content: names are cut to 64 bytes.
func safeName(k string) string {
	if len(k) > 64 {
		return k[:64] + "..."
	}
	return k
}

// safeCode bounds a code echoed in a message.
func safeCode(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
