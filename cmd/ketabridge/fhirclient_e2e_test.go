package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fcRequireNodeEnv makes the fhirclient end-to-end test fail instead of skip
// when node or the npm packages are missing (CI sets it after `npm ci`).
const fcRequireNodeEnv = "KETABRIDGE_TEST_REQUIRE_NODE"

// fhirclientDir is the npm project of the fhirclient conformance test,
// relative to this package.
var fhirclientDir = filepath.Join("..", "..", "conformance", "fhirclient")

// fcSummaryLine is the last line test.mjs prints.
var fcSummaryLine = regexp.MustCompile(`^(\d+) passed, (\d+) failed$`)

// TestFHIRClientEndToEnd proves that the npm fhirclient library, the
// reference SMART client, works against the gateway unchanged
// (docs/design/security.md APP-1, APP-2): the real serve command with demo
// data, a public client and a patient user registered with the CLI, and
// conformance/fhirclient/test.mjs driving a standalone launch (PKCE, login,
// consent, code exchange, FHIR reads and search, refresh) with fhirclient's
// Node adapter.
func TestFHIRClientEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	node := fcNode(t)

	// The FHIR base (iss and aud) must be the address fhirclient talks to,
	// so the port is chosen before serve starts.
	port := fcFreeLoopbackPort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	dir := t.TempDir()
	got, logs, stop := startServe(t, dir, "--demo", "--addr", "127.0.0.1:"+strconv.Itoa(port), "--base-url", base)
	if got != base {
		t.Fatalf("serve listens on %s, want %s", got, base)
	}

	patient := fcDemoPatient(t, dir, base)

	const (
		clientID    = "fhirclient-e2e"
		redirectURI = "http://127.0.0.1:9/fhirclient-e2e/callback" // nothing listens: the code is read from Location
		username    = "fhirclient-e2e-patient"
	)
	password := fcPassword(t)
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fcCLI(t, "clients", "add", "--data-dir", dir, "--id", clientID, "--kind", "public", "--name", "fhirclient e2e",
		"--redirect-uri", redirectURI, "--launch-url", "http://127.0.0.1:9/fhirclient-e2e/launch",
		"--scope", "launch/patient openid fhirUser offline_access patient/*.rs")
	fcCLI(t, "users", "add", "--data-dir", dir, "--id", username, "--role", "patient",
		"--fhir-user", "Patient/"+patient, "--password-file", pwFile)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test.mjs")
	cmd.Dir = fhirclientDir
	cmd.Env = append(os.Environ(),
		"KB_GATEWAY_URL="+base,
		"KB_FHIR_BASE="+base+"/fhir",
		"KB_CLIENT_ID="+clientID,
		"KB_REDIRECT_URI="+redirectURI,
		"KB_USERNAME="+username,
		"KB_PASSWORD="+password,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("node test.mjs:\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	m := fcSummaryLine.FindStringSubmatch(strings.TrimSpace(lines[len(lines)-1]))
	switch {
	case err != nil:
		t.Errorf("node test.mjs failed: %v\nserver log:\n%s", err, logs)
	case m == nil:
		t.Errorf("node test.mjs printed no `N passed, M failed` summary last")
	case m[2] != "0" || m[1] == "0":
		t.Errorf("node test.mjs: %s", m[0])
	}

	if code := stop(); code != 0 {
		t.Errorf("serve exited %d", code)
	}
}

// fcNode returns the node binary, or skips (fails when
// fcRequireNodeEnv=1) when node (>= 18, fhirclient's minimum) or the installed
// npm packages are missing.
func fcNode(t *testing.T) string {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		why := fmt.Sprintf(format, args...)
		if os.Getenv(fcRequireNodeEnv) == "1" {
			t.Fatalf("%s (%s=1)", why, fcRequireNodeEnv)
		}
		t.Skipf("%s; run `npm ci` in conformance/fhirclient, or set %s=1 to make this a failure", why, fcRequireNodeEnv)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("node is not installed")
	}
	v, err := exec.Command(node, "--version").Output()
	if err != nil {
		unavailable("node --version: %v", err)
	}
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(v)), "v"), ".", 2)[0])
	if major < 18 {
		unavailable("node %s is older than 18, fhirclient's minimum", strings.TrimSpace(string(v)))
	}
	if _, err := os.Stat(filepath.Join(fhirclientDir, "node_modules", "fhirclient", "package.json")); err != nil {
		unavailable("conformance/fhirclient/node_modules has no fhirclient")
	}
	return node
}

// fcFreeLoopbackPort returns a port that was free on 127.0.0.1 a moment ago.
func fcFreeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// fcCLI runs a ketabridge command in-process and fails the test on a
// non-zero exit. It returns stdout.
func fcCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), args, env{stdout: &out, stderr: &errOut, getenv: envOf(nil)}); code != 0 {
		t.Fatalf("ketabridge %s exited %d: %s", strings.Join(args[:2], " "), code, errOut.String())
	}
	return out.String()
}

// fcDemoPatient finds a demo patient that has Observations,
// as the operator would: a backend client registered with the CLI and a
// token from `ketabridge token`.
func fcDemoPatient(t *testing.T, dir, base string) string {
	t.Helper()
	keyFile, jwksFile := backendKeyFiles(t, "fhirclient-e2e-backend")
	fcCLI(t, "clients", "add", "--data-dir", dir, "--id", "fhirclient-e2e-backend", "--kind", "backend",
		"--jwks-file", jwksFile, "--scope", "system/*.rs")
	token := strings.TrimSpace(fcCLI(t, "token", "--client", "fhirclient-e2e-backend", "--key", keyFile,
		"--scope", "system/*.rs", "--base-url", base))

	req, err := http.NewRequest(http.MethodGet, base+"/fhir/Observation?_count=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct {
		Entry []struct {
			Resource struct {
				Subject struct{ Reference string }
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET Observation?_count=1: %d %v", resp.StatusCode, err)
	}
	if len(b.Entry) == 0 {
		t.Fatal("the demo data has no Observation")
	}
	id, ok := strings.CutPrefix(b.Entry[0].Resource.Subject.Reference, "Patient/")
	if !ok || id == "" || strings.ContainsAny(id, "/?#") {
		t.Fatalf("Observation subject %q is not a Patient reference", b.Entry[0].Resource.Subject.Reference)
	}
	return id
}

// fcPassword returns a fresh password for the test user.
func fcPassword(t *testing.T) string {
	t.Helper()
	p := make([]byte, 18)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(p)
}
