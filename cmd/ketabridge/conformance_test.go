package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/conformance"
)

// TestEmittedFHIRConforms is the conformance acceptance check in Go: every
// resource the gateway stores for `synth --patients 50`, as served, and every
// API response shape (search Bundles of every type, includes, $everything,
// history, errors) passes conformance.Validate. .ci/run runs the same export
// through the independent FHIR validator (fhir-validate).
func TestEmittedFHIRConforms(t *testing.T) {
	if testing.Short() {
		t.Skip("maps and serves 50 synthetic patients; skipped with -short")
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"conformance", "export", "--patients", "50", "--out", out},
		env{getenv: func(string) string { return "" }, stdout: &stdout, stderr: &stderr})
	if code != 0 {
		t.Fatalf("conformance export exited %d: %s", code, stderr.String())
	}

	f, err := os.Open(filepath.Join(out, "resources.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	n, failed := 0, 0
	types := map[string]int{}
	for sc.Scan() {
		n++
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Meta         struct {
				VersionID   string `json:"versionId"`
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(sc.Bytes(), &head); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		types[head.ResourceType]++
		if head.Meta.VersionID == "" || head.Meta.LastUpdated == "" {
			t.Errorf("%s/%s: stored body lacks meta.versionId or meta.lastUpdated", head.ResourceType, head.ID)
		}
		if issues := conformance.Validate(sc.Bytes()); len(issues) > 0 {
			failed++
			if failed <= 20 {
				t.Errorf("%s/%s: %d issues, first: %s [%s] %s", head.ResourceType, head.ID, len(issues),
					issues[0].Path, issues[0].Code, issues[0].Message)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 10000 {
		t.Errorf("only %d resources exported for 50 patients", n)
	}
	// Every kind of clinic content must have reached the store.
	for _, typ := range []string{"Patient", "Practitioner", "Organization", "Location", "PlanDefinition", "CarePlan",
		"MedicationRequest", "Medication", "Encounter", "MedicationAdministration", "Observation", "Condition",
		"AdverseEvent", "Coverage", "Consent", "MedicationStatement", "Provenance", "CodeSystem"} {
		if types[typ] == 0 {
			t.Errorf("no %s exported", typ)
		}
	}
	t.Logf("%d resources, %d failed conformance", n, failed)

	files, err := filepath.Glob(filepath.Join(out, "api-*.json"))
	if err != nil || len(files) < 30 {
		t.Fatalf("API captures: %d files, %v", len(files), err)
	}
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		for i, is := range conformance.Validate(body) {
			if i == 5 {
				t.Errorf("%s: more issues", name)
				break
			}
			t.Errorf("%s: %s [%s] %s", name, is.Path, is.Code, is.Message)
		}
	}
}

// TestExportIndependentOfBaseURL: what the mapper stores never depends on
// where the gateway is deployed. Each `conformance export` serves on its own
// loopback port (so its base URL differs); the stored resources of two runs
// are byte-identical once the store's own meta.versionId and meta.lastUpdated
// and the times of this run's writes (Provenance.recorded, a referral
// Task's lastModified) are set aside, and none names the deployment's address: extension,
// CodeSystem and identifier-system URLs are fixed canonicals or come from
// the configured identifier-system base (docs/fhir-mapping.md).
func TestExportIndependentOfBaseURL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the export twice; skipped with -short")
	}
	export := func() []string {
		out := t.TempDir()
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"conformance", "export", "--patients", "3", "--out", out, "--log-level", "warn"},
			env{getenv: func(string) string { return "" }, stdout: &stdout, stderr: &stderr})
		if code != 0 {
			t.Fatalf("conformance export exited %d: %s", code, stderr.String())
		}
		b, err := os.ReadFile(filepath.Join(out, "resources.ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if strings.Contains(l, "127.0.0.1") || strings.Contains(l, "localhost") {
				t.Errorf("a stored resource names the deployment's address: %.200s", l)
			}
			var doc map[string]any
			if err := json.Unmarshal([]byte(l), &doc); err != nil {
				t.Fatal(err)
			}
			if meta, ok := doc["meta"].(map[string]any); ok {
				delete(meta, "versionId")
				delete(meta, "lastUpdated")
			}
			if doc["resourceType"] == "Provenance" {
				delete(doc, "recorded") // when this run ingested the record
			}
			if doc["resourceType"] == "Task" {
				delete(doc, "lastModified") // when this run wrote a referral's version
			}
			norm, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, string(norm))
		}
		return lines
	}
	a, b := export(), export()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d and %d resources", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("resource %d differs between two deployments:\n%.300s\n%.300s", i, a[i], b[i])
		}
	}
}
