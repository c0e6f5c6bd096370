package priorauth

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the examples in docs/examples")

// TestDocExamples keeps the examples docs/prior-auth.md shows true: the
// $pa-criteria answer and the PAS request Bundle of the hand-built
// esketamine course under the Blue Heron policy, as the code produces them
// (go test ./priorauth -run TestDocExamples -update rewrites them).
func TestDocExamples(t *testing.T) {
	rs, c := esketamineScenario().records(t)
	ev := Evaluate(policy(t, "esketamine-blue-heron"), rs, c, false)
	params, err := Parameters(ev)
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, params)
	opts := pasOpts
	opts.Base = "https://lakeside-ketamine.example/fhir"
	bundle, err := BuildRequest(rs, c, ev, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, bundle)
	// The status a week into the course, after the payer approved 16
	// sessions (the example answer of docs/clinic-records.md, on the
	// fixture's dates).
	s := esketamineScenario()
	s.extra = append(s.extra, s.answer("par-1001-1", "approved", at(-3, "14:20"), 16))
	rs, c = s.records(t)
	st, err := AuthorizationStatus(rs, c, courseStart.AddDate(0, 0, 7))
	if err != nil {
		t.Fatal(err)
	}
	status, err := StatusParameters(st, Evaluate(policy(t, "esketamine-blue-heron"), rs, c, true))
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, status)
	for name, body := range map[string][]byte{"pa-criteria.json": params, "pas-request-bundle.json": bundle, "pa-status.json": status} {
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			t.Fatal(err)
		}
		out.WriteByte('\n')
		path := filepath.Join("..", "docs", "examples", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update)", err)
		}
		if !bytes.Equal(got, out.Bytes()) {
			t.Errorf("%s differs from what the code produces (run with -update and review the diff)", path)
		}
	}
}
