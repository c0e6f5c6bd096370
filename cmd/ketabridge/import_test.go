package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
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
