package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

func TestImport(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("../../mapping/ingest/testdata/good.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "in.ndjson")
	bad := []byte("\n{\"kind\":\"patient\",\"id\":\"P9\",\"mrn\":\"X\",\"name\":{\"family\":\"Q\"},\"birthDate\":\"1990-02-30\",\"sex\":\"female\"}\n{broken\n")
	if err := os.WriteFile(file, append(append([]byte{}, good...), bad...), 0o600); err != nil {
		t.Fatal(err)
	}
	nGood := bytes.Count(good, []byte("\n"))

	tests := []struct {
		name     string
		code     int
		outcomes string
	}{
		{"first import", 1, "created " + itoa(nGood)},
		{"second import", 1, "unchanged " + itoa(nGood)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"import", "--data-dir", filepath.Join(dir, "data"), file},
				env{stdout: &stdout, stderr: &stderr, getenv: envOf(nil)})
			out := stdout.String()
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tc.code, out, stderr.String())
			}
			if !strings.Contains(out, tc.outcomes) || !strings.Contains(out, "rejected 2") {
				t.Errorf("summary: %s", out)
			}
			if !regexp.MustCompile(`resources: \d+ in .* \(\d+ resources/s\)`).MatchString(out) {
				t.Errorf("no throughput line: %s", out)
			}
			// Line numbers: the patient is on line nGood+2, the broken line nGood+3.
			for _, want := range []string{
				"record " + itoa(nGood+2) + " (patient/P9) birthDate: ",
				"record " + itoa(nGood+3) + " (-/-) (record): ",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("missing %q in:\n%s", want, out)
				}
			}
		})
	}
}

func TestImportUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"import", "--data-dir", t.TempDir()}, env{stdout: &stdout, stderr: &stderr}); code != 2 {
		t.Errorf("no FILE: exit %d", code)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestImportBulk: `import --bulk` into a new store reports the same
// outcomes as a plain import and leaves a store that answers the same
// searches (the bulk load's indexes built when it ends); a second bulk
// import finds everything unchanged.
func TestImportBulk(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "in.ndjson")
	var recs bytes.Buffer
	if _, err := synth.Generate(&recs, synth.Options{Patients: 3, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, recs.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	n := bytes.Count(recs.Bytes(), []byte("\n"))
	importInto := func(data string, extra ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args := append([]string{"import", "--data-dir", data}, extra...)
		if code := run(context.Background(), append(args, file), env{stdout: &stdout, stderr: &stderr, getenv: envOf(nil)}); code != 0 {
			t.Fatalf("%v: exit %d\nstdout %s\nstderr %s", extra, code, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	plainDir, bulkDir := filepath.Join(dir, "plain"), filepath.Join(dir, "bulk")
	plainOut := importInto(plainDir)
	bulkOut := importInto(bulkDir, "--bulk")
	summary := func(out string) string {
		return strings.SplitN(out, "\n", 3)[0] + "\n" + regexp.MustCompile(` in .*`).ReplaceAllString(strings.SplitN(out, "\n", 3)[1], "")
	}
	if summary(bulkOut) != summary(plainOut) || !strings.Contains(bulkOut, "created "+itoa(n)) {
		t.Fatalf("bulk import summary:\n%s\nplain:\n%s", bulkOut, plainOut)
	}
	if again := importInto(bulkDir, "--bulk"); !strings.Contains(again, "unchanged "+itoa(n)) {
		t.Fatalf("second bulk import: %s", again)
	}
	answers := func(data string) string {
		t.Helper()
		s, err := sqlite.Open(context.Background(), filepath.Join(data, "ketabridge.db"), store.SystemClock{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var b strings.Builder
		for _, q := range []store.Query{
			{Type: "Patient", Total: true},
			{Type: "MedicationAdministration", Total: true, Sort: []store.Sort{{Param: "effective-time", Kind: store.KindDate, Desc: true}}},
			{Type: "Observation", Total: true, Clauses: []store.Clause{{Param: "code", Kind: store.KindToken,
				Values: []store.Value{{System: "http://loinc.org", Code: "44261-6"}}}}},
			{Type: "Encounter", Total: true, Patients: []string{mapping.ResourceID(clinic.KindPatient, "pat-000001")}},
		} {
			res, err := s.Search(context.Background(), q)
			if err != nil {
				t.Fatalf("search %s: %v", q.Type, err)
			}
			fmt.Fprintf(&b, "%s total %d:", q.Type, res.Total)
			for _, r := range res.Resources {
				fmt.Fprintf(&b, " %s/v%d", r.ID, r.Version)
			}
			b.WriteByte('\n')
		}
		return b.String()
	}
	want, got := answers(plainDir), answers(bulkDir)
	if got != want {
		t.Fatalf("searches after the bulk import:\n%s\nafter the plain import:\n%s", got, want)
	}
	if !regexp.MustCompile(`Observation total [1-9]`).MatchString(want) || !regexp.MustCompile(`Encounter total [1-9]`).MatchString(want) {
		t.Fatalf("the searches match nothing, the comparison proves nothing:\n%s", want)
	}
}
