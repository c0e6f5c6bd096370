package clinic

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
)

// mapResolver resolves keys from a map.
type mapResolver map[Key]Record

func (m mapResolver) Resolve(k Key) (Record, bool) {
	r, ok := m[k]
	return r, ok
}

// readNDJSON reads the non-empty lines of a file.
func readNDJSON(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	return out
}

// checkBatch decodes, validates and reference-checks records as one batch
// (the resolver sees every record of the batch) and returns the errors as
// "index kind/id path: message" lines.
func checkBatch(raw [][]byte) []string {
	var out []string
	recs := make([]Record, len(raw))
	res := mapResolver{}
	for i, b := range raw {
		r, errs := Decode(b)
		for _, e := range errs {
			out = append(out, strconv.Itoa(i)+" decode "+e.Error())
		}
		if r == nil {
			continue
		}
		recs[i] = r
		k := Key{r.RecordKind(), r.RecordID()}
		if _, dup := res[k]; dup {
			out = append(out, strconv.Itoa(i)+" "+k.String()+" duplicate key in batch")
		}
		res[k] = r
	}
	for i, r := range recs {
		if r == nil {
			continue
		}
		for _, e := range Validate(r) {
			out = append(out, strconv.Itoa(i)+" "+Key{r.RecordKind(), r.RecordID()}.String()+" "+e.Error())
		}
		for _, e := range CheckRefs(r, res) {
			out = append(out, strconv.Itoa(i)+" "+Key{r.RecordKind(), r.RecordID()}.String()+" refs "+e.Error())
		}
	}
	return out
}

// jsonObject decodes a JSON object into a generic map (numbers kept exact).
func jsonObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// pathParts splits "a.b[2].c" into ["a", "b", 2, "c"].
func pathParts(path string) []any {
	var out []any
	for _, seg := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(seg, "[")
		if name != "" {
			out = append(out, name)
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			n, _ := strconv.Atoi(num)
			out = append(out, n)
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return out
}

// setPath sets (or, with del, removes) the member at path, creating objects
// on the way.
func setPath(t *testing.T, root map[string]any, path string, v any, del bool) {
	t.Helper()
	parts := pathParts(path)
	var cur any = root
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			name := p.(string)
			if last {
				if del {
					delete(c, name)
				} else {
					c[name] = v
				}
				return
			}
			if _, ok := c[name]; !ok {
				c[name] = map[string]any{}
			}
			cur = c[name]
		case []any:
			n := p.(int)
			if n >= len(c) {
				t.Fatalf("path %s: index out of range", path)
			}
			if last {
				c[n] = v
				return
			}
			cur = c[n]
		default:
			t.Fatalf("path %s: not a container", path)
		}
	}
}
