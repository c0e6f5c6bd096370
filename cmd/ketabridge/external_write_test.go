package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// TestCacheSeesAnotherProcessWrites: `ketabridge import` run next to an
// embedded gateway writes the SQLite file behind the gateway's in-memory
// read cache; the gateway must drop its cache and serve the new data.
func TestCacheSeesAnotherProcessWrites(t *testing.T) {
	e := startSMART(t)
	pid := mapping.ResourceID(clinic.KindPatient, "pat-000001")
	family := func() string {
		t.Helper()
		r := e.fhir(t, e.system, "/Patient/"+pid)
		if r.status != http.StatusOK {
			t.Fatalf("read: %s", r)
		}
		var p struct {
			Name []struct {
				Family string `json:"family"`
			} `json:"name"`
		}
		if err := json.Unmarshal(r.body, &p); err != nil || len(p.Name) == 0 {
			t.Fatalf("patient: %v %s", err, r.body)
		}
		return p.Name[0].Family
	}
	before := family()
	if again := family(); again != before { // the second read is a cache hit
		t.Fatalf("%q then %q", before, again)
	}
	file := filepath.Join(t.TempDir(), "fix.ndjson")
	if err := os.WriteFile(file, patientRecords(t, "Externally-Fixed"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Log(cliEnv(t, nil, "import", "--data-dir", e.dir, "--base-url", e.base, file))
	deadline := time.Now().Add(3 * time.Second) // the watcher checks every 250 ms
	for family() != "Externally-Fixed" {
		if time.Now().After(deadline) {
			t.Fatalf("3 s after an import by another process the gateway still serves %q\n%s", family(), e.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
