package clinic

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocExamples checks the ```json examples of docs/clinic-records.md as
// one batch: every example decodes, validates and resolves its references.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/clinic-records.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	var raw [][]byte
	kinds := map[Kind]bool{}
	for _, b := range blocks {
		raw = append(raw, b[1])
		if r, errs := Decode(b[1]); len(errs) == 0 {
			kinds[r.RecordKind()] = true
		}
	}
	if errs := checkBatch(raw); len(errs) > 0 {
		t.Fatalf("doc examples have errors:\n%s", strings.Join(errs, "\n"))
	}
	for _, k := range Kinds {
		if !kinds[k] {
			t.Errorf("no example of kind %s", k)
		}
	}
	t.Logf("%d examples checked", len(raw))
}
