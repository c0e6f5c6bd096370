package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// medplumDir is the npm project of the @medplum/core bulk export test.
var medplumDir = filepath.Join("..", "..", "conformance", "medplum")

// TestMedplumBulkExport proves that a real third-party Bulk Data client,
// @medplum/core's MedplumClient.bulkExport, works unchanged against the
// gateway: system, Group and Patient exports with a real backend token,
// polled to the manifest, files downloaded and counted.
func TestMedplumBulkExport(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(medplumDir, "node_modules", "@medplum", "core", "package.json"))
	}
	if err != nil {
		if os.Getenv(fcRequireNodeEnv) == "1" {
			t.Fatalf("node or conformance/medplum/node_modules/@medplum/core missing (%s=1): %v", fcRequireNodeEnv, err)
		}
		t.Skipf("node or @medplum/core missing (run `npm ci` in conformance/medplum): %v", err)
	}
	dataDir := t.TempDir()
	port := smartFreePort(t)
	base := "http://127.0.0.1:" + port
	vars := map[string]string{"KETABRIDGE_DATA_DIR": dataDir, "KETABRIDGE_BASE_URL": base}
	keyFile, jwksFile := backendKeyFiles(t, "medplum")
	cliEnv(t, vars, "clients", "add", "--id", "medplum", "--kind", "backend", "--jwks-file", jwksFile, "--scope", "system/*.rs")
	p := startProc(t, "gateway", "127.0.0.1:"+port, []string{"KETABRIDGE_DATA_DIR=" + dataDir, "KETABRIDGE_BASE_URL=" + base}, "--demo")
	tok := clientToken(t, base+"/fhir", "medplum", keyFile)

	r := p.do(t, http.MethodGet, "/fhir/Group", tok, "", nil)
	var groups struct {
		Entry []struct {
			Resource struct{ ID string } `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.body, &groups); err != nil || r.status != http.StatusOK {
		t.Fatalf("Group search: %s", r)
	}
	group := ""
	for _, e := range groups.Entry {
		if strings.HasPrefix(e.Resource.ID, "payer-") {
			group = e.Resource.ID
		}
	}
	if group == "" {
		t.Fatalf("no payer group in %s", r.body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test.mjs")
	cmd.Dir = medplumDir
	cmd.Env = append(os.Environ(), "KB_GATEWAY_URL="+base, "KB_TOKEN="+tok, "KB_GROUP="+group)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("node test.mjs:\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	m := fcSummaryLine.FindStringSubmatch(strings.TrimSpace(lines[len(lines)-1]))
	switch {
	case err != nil:
		t.Errorf("node test.mjs failed: %v\nserver log:\n%s", err, p.logs)
	case m == nil:
		t.Errorf("node test.mjs printed no `N passed, M failed` summary last")
	case m[2] != "0" || m[1] == "0":
		t.Errorf("node test.mjs: %s", m[0])
	}
}
