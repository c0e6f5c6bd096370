package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/server"
)

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs the real serve command in-process on a random loopback
// port and returns its base URL and a stop function that returns the exit
// code.
func startServe(t *testing.T, dataDir string, extra ...string) (base string, stderr *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "info"}, extra...)
	go func() {
		done <- run(ctx, args, env{stdout: io.Discard, stderr: stderr, getenv: envOf(nil),
			ready: func(addr string) { ready <- addr }})
	}()
	select {
	case addr := <-ready:
		base = "http://" + addr
	case code := <-done:
		cancel()
		t.Fatalf("serve exited %d before listening: %s", code, stderr)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve did not start in time")
	}
	var once sync.Once
	code := 0
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Error("serve did not stop in time")
				code = -1
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return base, stderr, stop
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// logLine finds the first JSON log line with msg and decodes it.
func logLine(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	return logLineWith(t, logs, msg)
}

// logLineWith finds the first JSON log line with msg whose string attributes
// have the given key/value pairs, and decodes it.
func logLineWith(t *testing.T, logs, msg string, kv ...string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m["msg"] != msg {
			continue
		}
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			match = match && m[kv[i]] == kv[i+1]
		}
		if match {
			return m
		}
	}
	t.Fatalf("no log line %q with %v in:\n%s", msg, kv, logs)
	return nil
}

func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()

	// First start with --demo: the demo data is created.
	_, logs, stop := startServe(t, dir, "--demo")
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d: %s", code, logs)
	}
	if m := logLine(t, logs.String(), "demo data ingested"); m["created"].(float64) == 0 || m["rejected"].(float64) != 0 {
		t.Fatalf("first demo load: %v", m)
	}

	// Second start with --demo: idempotent, everything unchanged.
	base, logs, stop := startServe(t, dir, "--demo")
	m := logLine(t, logs.String(), "demo data ingested")
	if m["created"].(float64) != 0 || m["updated"].(float64) != 0 || m["unchanged"].(float64) != m["records"].(float64) {
		t.Errorf("second demo load not all unchanged: %v", m)
	}

	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s\n%s", code, body, logs)
	}

	// Nothing is open without a token: the FHIR API and the ingest API both
	// answer 401 with a Bearer challenge, before anything looks at the
	// request (docs/design/security.md RS-1): an unknown search parameter,
	// a bad _search body, an unacceptable Accept or an unknown type are all
	// 401, not 400/406/404.
	for _, c := range []struct{ method, path, body, header, value string }{
		{http.MethodGet, "/fhir/Patient", "", "", ""},
		{http.MethodGet, "/internal/v1/schema", "", "", ""},
		{http.MethodGet, "/fhir/Observation?bogus=1", "", "", ""},
		{http.MethodPost, "/fhir/Observation/_search", "%zz", "Content-Type", "application/x-www-form-urlencoded"},
		{http.MethodGet, "/fhir/Patient", "", "Accept", "application/fhir+xml"},
		{http.MethodGet, "/fhir/Spaceship/1", "", "", ""},
		{http.MethodPost, "/internal/v1/records", "not json", "Content-Type", "text/plain"},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		if c.header != "" {
			req.Header.Set(c.header, c.value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") ||
			!bytes.Contains(body, []byte(`"resourceType":"OperationOutcome"`)) {
			t.Errorf("%s %s without a token: %d %q %s", c.method, c.path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}

	// The operator's path: register a backend client with the CLI, then get
	// a token with `ketabridge token` (client_credentials + private_key_jwt).
	keyFile, jwksFile := backendKeyFiles(t, "ehr-1")
	var out, errOut bytes.Buffer
	cli := env{stdout: &out, stderr: &errOut, getenv: envOf(nil)}
	scope := "system/*.rs system/ClinicRecord.write"
	if code := run(context.Background(), []string{"clients", "add", "--data-dir", dir, "--id", "ehr-1", "--kind", "backend",
		"--jwks-file", jwksFile, "--scope", scope}, cli); code != 0 {
		t.Fatalf("clients add exited %d: %s", code, errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"token", "--client", "ehr-1", "--key", keyFile, "--scope", scope,
		"--token-url", base + "/auth/token"}, cli); code != 0 {
		t.Fatalf("token exited %d: %s", code, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	bearer := func(req *http.Request) *http.Request {
		req.Header.Set("Authorization", "Bearer "+token)
		return req
	}

	// Ingest a synth batch over HTTP (other patients than the demo's).
	raw, err := server.SynthRecords(3, 42, server.DemoStart)
	if err != nil {
		t.Fatal(err)
	}
	var nd bytes.Buffer
	var patient string
	for _, r := range raw {
		nd.Write(r)
		nd.WriteByte('\n')
		var h clinic.Header
		if json.Unmarshal(r, &h) == nil && h.Kind == clinic.KindPatient && patient == "" {
			patient = mapping.ResourceID(clinic.KindPatient, h.ID)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/internal/v1/records", &nd)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(bearer(req))
	if err != nil {
		t.Fatal(err)
	}
	var ing struct {
		Summary struct{ Created, Updated, Unchanged, Rejected, Resources int }
		Results []struct {
			Outcome string
			Errors  []struct{ Path, Message string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&ing); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || ing.Summary.Rejected != 0 ||
		ing.Summary.Created+ing.Summary.Updated+ing.Summary.Unchanged != len(raw) {
		t.Fatalf("ingest: status %d summary %+v", resp.StatusCode, ing.Summary)
	}
	if patient == "" {
		t.Fatal("synth produced no patient")
	}

	checks := []struct {
		name, path, want string
	}{
		{"metadata", "/fhir/metadata", `"resourceType":"CapabilityStatement"`},
		{"read", "/fhir/Patient/" + patient, `"id":"` + patient + `"`},
		{"search", "/fhir/Encounter?patient=" + patient, `"type":"searchset"`},
		{"everything", "/fhir/Patient/" + patient + "/$everything", `"resourceType":"Bundle"`},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, base+c.path, nil)
			resp, err := http.DefaultClient.Do(bearer(req))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code := resp.StatusCode
			if code != http.StatusOK || !bytes.Contains(body, []byte(c.want)) {
				t.Fatalf("GET %s: %d %.300s", c.path, code, body)
			}
			if c.name == "search" || c.name == "everything" {
				var b struct {
					Entry []struct{ Resource map[string]any }
				}
				if err := json.Unmarshal(body, &b); err != nil || len(b.Entry) == 0 {
					t.Errorf("GET %s: no entries (%v)", c.path, err)
				}
			}
		})
	}

	if code := stop(); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	// One access log for every API: the ingest request is logged like the
	// FHIR ones, by route template, with the client and without the body.
	for _, route := range []string{"/internal/v1/records", "/fhir/:type/:id"} {
		if m := logLineWith(t, logs.String(), "request", "client_id", "ehr-1", "route", route); m["status"] != 200.0 || m["request_id"] == "" {
			t.Errorf("access log of %s: %v", route, m)
		}
	}
	if m := logLineWith(t, logs.String(), "request", "route", "/auth/token"); m["status"] != 200.0 || m["method"] != "POST" {
		t.Errorf("access log of /auth/token: %v", m)
	}
	if strings.Contains(logs.String(), "bogus") || strings.Contains(logs.String(), patient+"/$everything") {
		t.Error("the access log holds a query string or a raw URL")
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Error("no graceful stop logged")
	}
}
