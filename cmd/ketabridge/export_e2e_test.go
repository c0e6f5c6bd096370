package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/fhir/bulkclient"
)

// runExportCLI runs `ketabridge export` in-process and returns its stdout.
func runExportCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), append([]string{"export"}, args...), env{stdin: strings.NewReader(""),
		stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("ketabridge export %s exited %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// readExport reads the files an export wrote: "Type/id" of every output
// line, each line checked by the conformance validator.
func readExport(t *testing.T, dir string) (map[string]bool, bulkclient.Manifest) {
	t.Helper()
	var m bulkclient.Manifest
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("manifest: %v %s", err, b)
	}
	got := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	for _, name := range files {
		if strings.HasPrefix(filepath.Base(name), "error.") || strings.HasPrefix(filepath.Base(name), "deleted.") {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
		for sc.Scan() {
			var r struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if issues := conformance.Validate(sc.Bytes()); len(issues) > 0 {
				t.Errorf("%s/%s: %s [%s] %s", r.ResourceType, r.ID, issues[0].Path, issues[0].Code, issues[0].Message)
			}
			got[r.ResourceType+"/"+r.ID] = true
		}
		f.Close()
	}
	return got, m
}

// TestExportCLIEndToEnd runs `ketabridge export` against a served gateway
// with the demo data set, as an EHR or payer would: real backend tokens, a
// system export, a Group export of a payer's members, a _since sync that
// returns nothing when nothing changed, and another client refused.
func TestExportCLIEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dataDir := t.TempDir()
	port := smartFreePort(t)
	vars := map[string]string{"KETABRIDGE_DATA_DIR": dataDir, "KETABRIDGE_BASE_URL": "http://127.0.0.1:" + port}
	keyFile, jwksFile := backendKeyFiles(t, "exporter")
	cliEnv(t, vars, "clients", "add", "--id", "exporter", "--kind", "backend", "--jwks-file", jwksFile, "--scope", "system/*.rs")
	otherKey, otherJWKS := backendKeyFiles(t, "other")
	cliEnv(t, vars, "clients", "add", "--id", "other", "--kind", "backend", "--jwks-file", otherJWKS, "--scope", "system/*.rs")
	p := startProc(t, "gateway", "127.0.0.1:"+port, []string{"KETABRIDGE_DATA_DIR=" + dataDir,
		"KETABRIDGE_BASE_URL=http://127.0.0.1:" + port, "KETABRIDGE_EXPORT_FILE_SIZE=500"}, "--demo")
	base := p.base + "/fhir"

	out := t.TempDir()
	summary := runExportCLI(t, "--base", base, "--client", "exporter", "--key", keyFile, "--out", out)
	if !regexp.MustCompile(`^exported \d+ resources .* resources/s`).MatchString(summary) {
		t.Fatalf("summary %q", summary)
	}
	all, m := readExport(t, out)
	if len(all) < 1000 || len(m.Error) != 0 {
		t.Fatalf("%d resources, errors %v", len(all), m.Error)
	}
	total := 0
	for _, o := range m.Output {
		total += o.Count
		if o.Count > 500 {
			t.Errorf("a file of %d resources", o.Count)
		}
	}
	if total != len(all) {
		t.Errorf("manifest counts %d, files hold %d distinct resources", total, len(all))
	}

	// A payer's Group: its members' compartments only.
	var payer string
	for k := range all {
		if strings.HasPrefix(k, "Coverage/") {
			payer = k
			break
		}
	}
	if payer == "" {
		t.Fatal("no Coverage exported")
	}
	groups := t.TempDir()
	cov := filepath.Join(t.TempDir(), "cov")
	runExportCLI(t, "--base", base, "--client", "exporter", "--key", keyFile, "--type", "Coverage", "--out", cov)
	b, _ := os.ReadFile(filepath.Join(cov, "Coverage.000.ndjson"))
	org := regexp.MustCompile(`"payor":\[\{"reference":"Organization/([^"]+)"`).FindSubmatch(b)
	if org == nil {
		t.Fatalf("no payor in %.300s", b)
	}
	runExportCLI(t, "--base", base, "--client", "exporter", "--key", keyFile, "--group", "payer-"+string(org[1]),
		"--type", "Patient,Coverage", "--out", groups)
	members, _ := readExport(t, groups)
	if len(members) == 0 || len(members) >= len(all) {
		t.Fatalf("group export of %d resources (system: %d)", len(members), len(all))
	}
	for k := range members {
		if !all[k] {
			t.Errorf("%s in the group export, not in the system export", k)
		}
	}

	// _since the first export's transactionTime: nothing changed.
	since := t.TempDir()
	runExportCLI(t, "--base", base, "--client", "exporter", "--key", keyFile, "--since", m.TransactionTime, "--out", since)
	if changed, _ := readExport(t, since); len(changed) != 0 {
		t.Fatalf("_since export holds %d resources", len(changed))
	}

	// Another client: refused; no token: 401.
	if r := p.do(t, http.MethodGet, strings.TrimPrefix(m.Output[0].URL, p.base), "", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("file without a token: %d", r.status)
	}
	tok := clientToken(t, base, "other", otherKey)
	if r := p.do(t, http.MethodGet, strings.TrimPrefix(m.Output[0].URL, p.base), tok, "", nil); r.status != http.StatusNotFound {
		t.Errorf("file by another client: %d", r.status)
	}
}

// clientToken gets a backend token as the export command does.
func clientToken(t *testing.T, base, id, keyFile string) string {
	t.Helper()
	tokenURL, err := discoverTokenURL(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := os.ReadFile(keyFile)
	bk, err := auth.ParseBackendKey(id, pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := bk.AccessToken(ctx, http.DefaultClient, tokenURL, tokenURL, "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestExportAcrossReplicas: two gateway processes on one PostgreSQL and one
// Redis. An export kicked off at A is polled and downloaded at B, and B's
// files are byte for byte A's: job state lives in the store and files are
// re-derived from the snapshot, never on one replica's disk.
func TestExportAcrossReplicas(t *testing.T) {
	rs := startReplicas(t)
	a, b := rs.a, rs.b
	tok := rs.backendToken(t, a, "system/*.rs")
	kick := a.doHeaders(t, http.MethodGet, "/fhir/$export", tok, "Prefer", "respond-async")
	if kick.status != http.StatusAccepted {
		t.Fatalf("kick-off at A: %s", kick)
	}
	status := strings.TrimPrefix(kick.header.Get("Content-Location"), rs.env.base)
	var m bulkclient.Manifest
	for deadline := time.Now().Add(60 * time.Second); ; {
		r := b.do(t, http.MethodGet, status, tok, "", nil)
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &m); err != nil {
				t.Fatal(err)
			}
			break
		}
		if r.status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("status at B: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(m.Output) == 0 {
		t.Fatalf("manifest %+v", m)
	}
	for _, o := range m.Output {
		path := strings.TrimPrefix(o.URL, rs.env.base)
		fa, fb := a.do(t, http.MethodGet, path, tok, "", nil), b.do(t, http.MethodGet, path, tok, "", nil)
		if fa.status != http.StatusOK || fb.status != http.StatusOK || !bytes.Equal(fa.body, fb.body) {
			t.Fatalf("%s: A %d, B %d, equal %t", o.Type, fa.status, fb.status, bytes.Equal(fa.body, fb.body))
		}
		if n := bytes.Count(fb.body, []byte("\n")); n != o.Count {
			t.Errorf("%s: %d lines, count %d", o.Type, n, o.Count)
		}
	}
	if r := b.do(t, http.MethodDelete, status, tok, "", nil); r.status != http.StatusAccepted {
		t.Fatalf("DELETE at B: %s", r)
	}
	if r := a.do(t, http.MethodGet, status, tok, "", nil); r.status != http.StatusNotFound {
		t.Fatalf("poll at A after DELETE at B: %s", r)
	}
}

// doHeaders sends a GET-like request with extra header name/value pairs.
func (p *proc) doHeaders(t *testing.T, method, path, token string, hdr ...string) smartResp {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return smartDo(t, &http.Client{Timeout: 30 * time.Second}, req)
}
