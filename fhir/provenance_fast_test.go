package fhir

import (
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// TestProvenanceFastPath (docs/design/security.md PERF-ST-5, PRIV-16): the
// check that skips decoding a Provenance keeps it byte for byte only when
// the caller reads every referenced type whole; an unserved target type,
// or a caller narrowed to one patient, still gets the targets it may not
// read withheld, through $everything and a read alike.
func TestProvenanceFastPath(t *testing.T) {
	const (
		plainTargets = `"target":[{"reference":"Observation/o01"},{"reference":"Observation/x1"}]`
		plain        = `{"id":"pv1",` + plainTargets + `,"recorded":"2024-03-01T10:00:00Z","agent":[{"who":{"reference":"Practitioner/dr1"}}],"resourceType":"Provenance"}`
		unknown      = `{"id":"pv2","target":[{"reference":"Observation/o01"},{"reference":"Flag/f1"}],"recorded":"2024-03-01T10:00:00Z","agent":[{"who":{"reference":"Practitioner/dr1"}}],"resourceType":"Provenance"}`
	)
	env := newEnv(t, testCallers{
		defaultToken: caller("system/*.cruds", ""),
		"pat":        caller("patient/*.rs", "p1"),
	})
	for _, p := range []struct{ id, body string }{{"pv1", plain}, {"pv2", unknown}} {
		env.fs.put("Provenance", p.id, "p1", t0, p.body,
			store.IndexRow{Param: "patient", Kind: store.KindReference, Value: "Patient/p1"})
	}
	for _, tc := range []struct {
		name, tok, path string
		want            []string // in the answer
		withheld        []string // not in it
	}{
		{"system read", defaultToken, "/fhir/Provenance/pv1", []string{plainTargets}, []string{"SUBSETTED"}},
		{"system $everything", defaultToken, "/fhir/Patient/p1/$everything?_type=Provenance", []string{plainTargets, "SUBSETTED"}, []string{"Flag/f1"}},
		{"system read, unserved type", defaultToken, "/fhir/Provenance/pv2", []string{"SUBSETTED"}, []string{"Flag/f1"}},
		{"patient read", "pat", "/fhir/Provenance/pv1", []string{"SUBSETTED"}, []string{"Observation/x1"}},
		{"patient $everything", "pat", "/fhir/Patient/p1/$everything?_type=Provenance", []string{"SUBSETTED", "Observation/o01"}, []string{"Observation/x1", "Flag/f1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := env.doAs(tc.tok, "GET", tc.path, "")
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			got := w.Body.String()
			for _, b := range tc.want {
				if !strings.Contains(got, b) {
					t.Errorf("%s missing: %s", b, got)
				}
			}
			for _, ref := range tc.withheld {
				if strings.Contains(got, ref) {
					t.Errorf("%s was not withheld: %s", ref, got)
				}
			}
		})
	}
}
