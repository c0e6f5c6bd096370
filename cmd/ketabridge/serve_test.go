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
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, logs)
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

	// Ingest a synth batch over HTTP (other patients than the demo's).
	raw, err := synthRecords(3, 42, demoStart)
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
	resp, err := http.Post(base+"/internal/v1/records", "application/x-ndjson", &nd)
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
			code, body := get(t, base+c.path)
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
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Error("no graceful stop logged")
	}
}
