package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// auditEvent is the part of an R4 AuditEvent the tests look at.
type auditEvent struct {
	ResourceType string `json:"resourceType"`
	Subtype      []struct{ Code string }
	Outcome      string
	Agent        []struct {
		Who struct {
			Reference  string
			Display    string
			Identifier struct{ Value string }
		}
		Requestor bool
	}
	Entity []struct {
		What struct{ Reference string }
		Role struct{ Code string }
	}
}

func (a auditEvent) patients() []string {
	var out []string
	for _, e := range a.Entity {
		if e.Role.Code == "1" {
			out = append(out, strings.TrimPrefix(e.What.Reference, "Patient/"))
		}
	}
	return out
}

// TestAuditEndToEnd reads a patient through the real server with a token
// from the CLI, stops the server and finds the read (and a refused
// anonymous read) in `ketabridge audit export`.
func TestAuditEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	started := time.Now().UTC()
	base, logs, stop := startServe(t, dir, "--demo")

	raw, err := server.SynthRecords(server.DemoPatients, 1, server.DemoStart)
	if err != nil {
		t.Fatal(err)
	}
	var patient string
	for _, r := range raw {
		var h clinic.Header
		if json.Unmarshal(r, &h) == nil && h.Kind == clinic.KindPatient {
			patient = mapping.ResourceID(clinic.KindPatient, h.ID)
			break
		}
	}
	if patient == "" {
		t.Fatal("no demo patient")
	}

	// A backend client registered and given a token by the CLI.
	keyFile, jwksFile := backendKeyFiles(t, "audit-ehr")
	var out, errOut bytes.Buffer
	cli := env{stdout: &out, stderr: &errOut, getenv: envOf(nil)}
	if code := run(context.Background(), []string{"clients", "add", "--data-dir", dir, "--id", "audit-ehr", "--kind", "backend",
		"--jwks-file", jwksFile, "--scope", "system/*.rs"}, cli); code != 0 {
		t.Fatalf("clients add exited %d: %s", code, errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"token", "--client", "audit-ehr", "--key", keyFile, "--scope", "system/*.rs",
		"--token-url", base + "/auth/token"}, cli); code != 0 {
		t.Fatalf("token exited %d: %s", code, errOut.String())
	}
	token := strings.TrimSpace(out.String())

	for _, tc := range []struct {
		name, token string
		want        int
	}{{"with token", token, http.StatusOK}, {"anonymous", "", http.StatusUnauthorized}} {
		req, _ := http.NewRequest(http.MethodGet, base+"/fhir/Patient/"+patient, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("read %s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d: %s", code, logs)
	}
	if strings.Contains(logs.String(), patient) {
		t.Errorf("the server log names the patient id %s", patient)
	}

	file := filepath.Join(t.TempDir(), "audit.ndjson")
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"audit", "export", "--data-dir", dir, "--out", file,
		"--since", started.Add(-time.Second).Format(time.RFC3339)}, cli); code != 0 {
		t.Fatalf("audit export exited %d: %s", code, errOut.String())
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", fi, err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var gotRead, gotDenied bool
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines++
		line := sc.Bytes()
		if issues := conformance.Validate(line); len(issues) != 0 {
			t.Errorf("line %d invalid: %+v\n%s", lines, issues, line)
		}
		var ae auditEvent
		if err := json.Unmarshal(line, &ae); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
		if ae.ResourceType != "AuditEvent" || len(ae.Subtype) == 0 || len(ae.Agent) == 0 {
			t.Errorf("line %d: not an audit event: %s", lines, line)
			continue
		}
		p := ae.patients()
		if ae.Subtype[0].Code != "read" || len(p) != 1 || p[0] != patient {
			continue
		}
		switch who := ae.Agent[0].Who; {
		case who.Identifier.Value == "audit-ehr" && ae.Agent[0].Requestor && ae.Outcome == "0":
			gotRead = true
		case who.Display != "" && who.Identifier.Value == "" && ae.Outcome == "4":
			gotDenied = true
		}
	}
	if lines == 0 || !gotRead || !gotDenied {
		t.Fatalf("export (%d lines) lacks the read (%v) or the denied read (%v):\n%s", lines, gotRead, gotDenied, b)
	}
	if !strings.Contains(errOut.String(), fmt.Sprintf("wrote %d AuditEvents", lines)) {
		t.Errorf("stderr = %q", errOut.String())
	}

	t.Run("since after every event exports nothing", func(t *testing.T) {
		out.Reset()
		if code := run(context.Background(), []string{"audit", "export", "--data-dir", dir,
			"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, cli); code != 0 {
			t.Fatalf("exited %d: %s", code, errOut.String())
		}
		if out.Len() != 0 {
			t.Errorf("stdout = %q", out.String())
		}
	})
	t.Run("a bad since is a usage error", func(t *testing.T) {
		if code := run(context.Background(), []string{"audit", "export", "--data-dir", dir, "--since", "yesterday"}, cli); code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
	})
}

// TestExportAuditPaging pins that export writes every event exactly once
// even when more events share one instant than fit in a page.
func TestExportAuditPaging(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ketabridge.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []store.AuditRecord
	total := 2*auditPage + 300
	for i := range total {
		when := at
		if i >= auditPage+500 { // a second, later instant
			when = at.Add(time.Millisecond * time.Duration(1+i%3))
		}
		recs = append(recs, store.AuditRecord{ID: fmt.Sprintf("id-%05d", i), Recorded: when,
			Interaction: "read", Type: "Patient", ResourceID: "p1", Patient: "p1", Status: 200})
	}
	if err := st.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := exportAudit(ctx, st, time.Time{}, time.Time{}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Fatalf("line written twice: %s", l)
		}
		seen[l] = true
	}
	if n.total != total || len(seen) != total {
		t.Fatalf("wrote %d (%d distinct) lines, want %d", n.total, len(seen), total)
	}
}
