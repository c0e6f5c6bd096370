package mapping

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// codingTableDoc is the coding table's document; codingTableHeader the
// header row the test looks for.
const (
	codingTableDoc    = "../docs/fhir-mapping.md"
	codingTableHeader = "| Clinic field | Edit | Fixture | FHIR element | Code system | Codes | Profile |"
)

// tableRow is one row of the coding table.
type tableRow struct {
	line                          int
	field, edit, fixture, element string
	system                        string
	codes                         []string
	profile                       string
}

// readCodingTable parses the coding table of docs/fhir-mapping.md: cells
// are split on unescaped |, backquotes are dropped, "\|" is a literal |.
func readCodingTable(t *testing.T) []tableRow {
	t.Helper()
	f, err := os.Open(codingTableDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []tableRow
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == codingTableHeader:
			in = true
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			in = false
			continue
		case strings.HasPrefix(line, "|---"):
			continue
		}
		cells := splitCells(line)
		if len(cells) != 7 {
			t.Fatalf("%s:%d: %d cells, want 7", codingTableDoc, n, len(cells))
		}
		r := tableRow{line: n, field: cells[0], edit: cells[1], fixture: cells[2], element: cells[3],
			system: cells[4], profile: cells[6]}
		for _, c := range strings.Split(cells[5], ",") {
			if c = strings.TrimSpace(c); c != "" {
				r.codes = append(r.codes, c)
			}
		}
		if r.field == "" || r.fixture == "" || r.element == "" || len(r.codes) == 0 || r.profile == "" {
			t.Fatalf("%s:%d: incomplete row", codingTableDoc, n)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func splitCells(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, cur.String())
			cur.Reset()
		case line[i] == '`':
		default:
			cur.WriteByte(line[i])
		}
	}
	cells = append(cells, cur.String())
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
		if cells[i] == "-" {
			cells[i] = ""
		}
	}
	return cells
}

// TestCodingTable checks docs/fhir-mapping.md's coding table against the
// mapper: for each row, the row's edit is applied to the golden input it
// names, the record is validated and mapped (the other golden inputs are its
// related records), and every code of the row must appear, with the row's
// code system, at the FHIR element the row names. A row whose code the mapper
// does not emit there fails, so any code is checkable against the table.
func TestCodingTable(t *testing.T) {
	rows := readCodingTable(t)
	if len(rows) < 100 {
		t.Fatalf("only %d rows in the coding table", len(rows))
	}
	m, f := testMapper(), loadFixture(t)
	for _, r := range rows {
		t.Run(fmt.Sprintf("line%d", r.line), func(t *testing.T) {
			rec := editedRecord(t, r)
			outs, err := m.MapWith(rec, recordedAt, f)
			if err != nil {
				t.Fatalf("%s: MapWith: %v", r.field, err)
			}
			typ, path, ok := strings.Cut(r.element, ".")
			if !ok {
				t.Fatalf("element %q has no resource type", r.element)
			}
			var found []string
			for _, o := range outs {
				if o.Type != typ {
					continue
				}
				var doc any
				if err := json.Unmarshal(o.Body, &doc); err != nil {
					t.Fatal(err)
				}
				found = append(found, codesAt(doc, path, r.system)...)
			}
			for _, c := range r.codes {
				if !slices.Contains(found, c) {
					t.Errorf("%s (%s): %s|%s not at %s; found %v", r.field, r.fixture, r.system, c, r.element, found)
				}
			}
		})
	}
}

// editedRecord loads the row's fixture, applies its edit and validates it.
func editedRecord(t *testing.T, r tableRow) clinic.Record {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + r.fixture + ".input.json")
	if err != nil {
		t.Fatalf("fixture %s: %v", r.fixture, err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if r.edit != "" {
		for _, as := range strings.Split(r.edit, ";") {
			p, v, ok := strings.Cut(strings.TrimSpace(as), "=")
			if !ok {
				t.Fatalf("edit %q is not path=value", as)
			}
			var val any
			if err := json.Unmarshal([]byte(v), &val); err != nil {
				t.Fatalf("edit %q: value is not JSON: %v", as, err)
			}
			if doc, err = setPath(doc, strings.Split(p, "."), val); err != nil {
				t.Fatalf("edit %q: %v", as, err)
			}
		}
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	rec, ferrs := clinic.Decode(data)
	if len(ferrs) == 0 {
		ferrs = clinic.Validate(rec)
	}
	if len(ferrs) > 0 {
		t.Fatalf("%s with edit %q is not a valid record: %v", r.fixture, r.edit, ferrs)
	}
	return rec
}

var segmentRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]*)(?:\[([0-9]+)\])?$`)

// setPath sets a JSON path (name or name[i] segments; an index one past the
// end appends) to val; a null val removes the member.
func setPath(doc any, path []string, val any) (any, error) {
	if len(path) == 0 {
		return val, nil
	}
	m := segmentRE.FindStringSubmatch(path[0])
	if m == nil {
		return nil, fmt.Errorf("bad path segment %q", path[0])
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not an object", m[1])
	}
	if m[2] == "" {
		if len(path) == 1 && val == nil {
			delete(obj, m[1])
			return obj, nil
		}
		child, err := setPath(obj[m[1]], path[1:], val)
		obj[m[1]] = child
		return obj, err
	}
	i, _ := strconv.Atoi(m[2])
	arr, _ := obj[m[1]].([]any)
	if i > len(arr) {
		return nil, fmt.Errorf("%s[%d]: index past the end", m[1], i)
	}
	if i == len(arr) {
		arr = append(arr, map[string]any{})
	}
	child, err := setPath(arr[i], path[1:], val)
	arr[i] = child
	obj[m[1]] = arr
	return obj, err
}

var elementRE = regexp.MustCompile(`^([A-Za-z]+)(?:\('([^']+)'\))?$`)

// codesAt evaluates a dotted element path (name or extension('url') segments;
// arrays are flattened; the url matches the whole url or its last segment)
// and returns the codes found there: the code of a Coding or Quantity whose
// system is system, the codings of a CodeableConcept the same way, or the
// value of a primitive when system is empty.
func codesAt(doc any, path, system string) []string {
	nodes := []any{doc}
	for _, seg := range strings.Split(path, ".") {
		m := elementRE.FindStringSubmatch(seg)
		if m == nil {
			return nil
		}
		var next []any
		for _, n := range nodes {
			obj, ok := n.(map[string]any)
			if !ok {
				continue
			}
			v, ok := obj[m[1]]
			if !ok {
				continue
			}
			items, isArr := v.([]any)
			if !isArr {
				items = []any{v}
			}
			for _, it := range items {
				if m[2] != "" {
					e, _ := it.(map[string]any)
					u, _ := e["url"].(string)
					if u != m[2] && !strings.HasSuffix(u, "/"+m[2]) {
						continue
					}
				}
				next = append(next, it)
			}
		}
		nodes = next
	}
	var out []string
	var collect func(n any)
	collect = func(n any) {
		switch v := n.(type) {
		case string:
			if system == "" {
				out = append(out, v)
			}
		case map[string]any:
			if cs, ok := v["coding"].([]any); ok {
				for _, c := range cs {
					collect(c)
				}
				return
			}
			if s, _ := v["system"].(string); s == system && system != "" {
				if c, ok := v["code"].(string); ok {
					out = append(out, c)
				}
			}
		}
	}
	for _, n := range nodes {
		collect(n)
	}
	return out
}

// TestCodingTableParser checks the helpers the coding table test relies on.
func TestCodingTableParser(t *testing.T) {
	t.Run("cells", func(t *testing.T) {
		got := splitCells("| a `b` | - | c \\| d |")
		if want := []string{"a b", "", "c | d"}; !slices.Equal(got, want) {
			t.Errorf("splitCells = %q, want %q", got, want)
		}
	})
	t.Run("set path", func(t *testing.T) {
		var doc any
		_ = json.Unmarshal([]byte(`{"a":[{"b":1}],"c":2}`), &doc)
		doc, err := setPath(doc, []string{"a[1]", "b"}, 3.0)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ = setPath(doc, []string{"c"}, nil)
		b, _ := json.Marshal(doc)
		if string(b) != `{"a":[{"b":1},{"b":3}]}` {
			t.Errorf("setPath = %s", b)
		}
		if _, err := setPath(doc, []string{"a[5]", "b"}, 1.0); err == nil {
			t.Error("index past the end accepted")
		}
	})
	t.Run("codes at", func(t *testing.T) {
		var doc any
		_ = json.Unmarshal([]byte(`{"extension":[{"url":"http://x/y/us-core-race","extension":[
			{"url":"ombCategory","valueCoding":{"system":"s","code":"1"}},{"url":"text","valueString":"t"}]}],
			"code":{"coding":[{"system":"s","code":"2"},{"system":"o","code":"3"}]},"status":"final",
			"valueQuantity":{"value":1,"system":"u","code":"mg"}}`), &doc)
		for _, tc := range []struct {
			path, system string
			want         []string
		}{
			{"extension('us-core-race').extension('ombCategory').valueCoding", "s", []string{"1"}},
			{"extension('other').extension('ombCategory').valueCoding", "s", nil},
			{"code.coding", "s", []string{"2"}},
			{"code", "o", []string{"3"}},
			{"status", "", []string{"final"}},
			{"valueQuantity", "u", []string{"mg"}},
		} {
			if got := codesAt(doc, tc.path, tc.system); !slices.Equal(got, tc.want) {
				t.Errorf("codesAt(%s, %s) = %v, want %v", tc.path, tc.system, got, tc.want)
			}
		}
	})
}
