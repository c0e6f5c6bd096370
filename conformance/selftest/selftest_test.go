package selftest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ketabridge/ketabridge/conformance"
)

// fakeGateway answers searches with pages of Patients (following the
// gateway's paging links) and empty Bundles for other types, and each
// capture with its status (401 without the token, 406 for XML); it records the Authorization headers it saw.
type fakeGateway struct {
	srv      *httptest.Server
	patients []string
	captures map[string]int
	mu       sync.Mutex
	seen     []seenRequest
}

// seenRequest is a request the fake gateway answered.
type seenRequest struct{ uri, auth string }

func newFakeGateway(t *testing.T, patients int) *fakeGateway {
	g := &fakeGateway{captures: map[string]int{}}
	for i := range patients {
		g.patients = append(g.patients, fmt.Sprintf("p%d", i))
	}
	for _, c := range Captures(g.patients) {
		if c.Header == nil {
			g.captures[c.Path] = c.Status
		}
	}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.seen = append(g.seen, seenRequest{r.URL.RequestURI(), r.Header.Get("Authorization")})
	g.mu.Unlock()
	if g.bulk(w, r) {
		return
	}
	status, ok := g.captures[r.URL.RequestURI()]
	switch {
	case r.Header.Get("Authorization") != "Bearer tok":
		status, ok = http.StatusUnauthorized, true
	case strings.Contains(r.Header.Get("Accept"), "xml"):
		status, ok = http.StatusNotAcceptable, true
	case r.Header.Get("Prefer") != "":
		status, ok = http.StatusOK, true
	}
	if ok {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"resourceType":"OperationOutcome","id":%q}`, r.URL.RequestURI())
		return
	}
	typ := strings.TrimPrefix(r.URL.Path, "/fhir/")
	var entries []string
	var next string
	if typ == "Patient" {
		// Two to a page, the next link carrying the offset.
		off := 0
		fmt.Sscan(r.URL.Query().Get("_offset"), &off)
		for i := off; i < min(off+2, len(g.patients)); i++ {
			entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Patient",  "id":%q},"search":{"mode":"match"}}`, g.patients[i]))
		}
		entries = append(entries, `{"resource":{"resourceType":"OperationOutcome"},"search":{"mode":"outcome"}}`)
		if off+2 < len(g.patients) {
			next = fmt.Sprintf(`,"link":[{"relation":"next","url":"%s/fhir/Patient?_count=500&_offset=%d"}]`, g.srv.URL, off+2)
		}
	}
	fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]%s}`, strings.Join(entries, ","), next)
}

// bulk answers the Bulk Data export of the selftest: kick-off, a complete
// manifest, one file of one Patient, the DELETE.
func (g *fakeGateway) bulk(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer tok" {
		return false
	}
	switch {
	case r.URL.Path == "/fhir/Patient/$export" && r.Header.Get("Prefer") == "respond-async":
		w.Header().Set("Content-Location", g.srv.URL+"/fhir/_export/j1")
		w.WriteHeader(http.StatusAccepted)
	case r.URL.Path == "/fhir/_export/j1" && r.Method == http.MethodGet:
		fmt.Fprintf(w, `{"transactionTime":"2024-03-01T10:00:00.000Z","request":"x","requiresAccessToken":true,`+
			`"output":[{"type":"Patient","url":"%s/fhir/_export/j1/0","count":1}],"error":[]}`, g.srv.URL)
	case r.URL.Path == "/fhir/_export/j1" && r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusAccepted)
	case r.URL.Path == "/fhir/_export/j1/0":
		fmt.Fprintln(w, `{"resourceType":"Patient","id":"p0"}`)
	default:
		return false
	}
	return true
}

func TestExport(t *testing.T) {
	g := newFakeGateway(t, 5)
	out := t.TempDir()
	res, err := Export(t.Context(), Options{Base: g.srv.URL, Token: Static("tok"), Out: out})
	if err != nil {
		t.Fatal(err)
	}
	defs, err := conformance.Definitions()
	if err != nil {
		t.Fatal(err)
	}
	vendored, err := conformance.Vendored()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "bulk-export.ndjson")); err != nil || string(b) != `{"resourceType":"Patient","id":"p0"}`+"\n" || res.Exported != 1 {
		t.Errorf("bulk export: %d resources, %q, %v", res.Exported, b, err)
	}
	if res.Resources != 5 || res.Responses != len(Captures(g.patients)) || res.Definitions != len(defs) ||
		res.Vendored != len(vendored) || len(vendored) == 0 {
		t.Errorf("result %+v", res)
	}

	t.Run("every page's matches, compacted, one a line", func(t *testing.T) {
		f, err := os.Open(filepath.Join(out, "resources.ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var ids []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var p struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil || p.ResourceType != "Patient" {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if strings.Contains(sc.Text(), "  ") {
				t.Errorf("line not compacted: %s", sc.Text())
			}
			ids = append(ids, p.ID)
		}
		if strings.Join(ids, ",") != strings.Join(g.patients, ",") {
			t.Errorf("exported %v, want %v", ids, g.patients)
		}
	})
	t.Run("captures", func(t *testing.T) {
		caps := Captures(g.patients)
		g.mu.Lock()
		seen := g.seen[len(g.seen)-len(caps):]
		g.mu.Unlock()
		for i, c := range caps {
			b, err := os.ReadFile(filepath.Join(out, "api-"+c.Name+".json"))
			if err != nil || !strings.Contains(string(b), "OperationOutcome") {
				t.Errorf("%s: %v %s", c.Name, err, b)
			}
			want := "Bearer tok"
			switch c.Name {
			case "error-no-token":
				want = ""
			case "error-bad-token":
				want = "Bearer not-a-token"
			}
			if seen[i].uri != c.Path || seen[i].auth != want {
				t.Errorf("%s: request %+v, want %s with Authorization %q", c.Name, seen[i], c.Path, want)
			}
		}
		if n := len(Captures(g.patients)) - len(Captures(g.patients[:1])); n != 2 {
			t.Errorf("$everything captured for %d more patients, want up to three in all", n+1)
		}
	})
	t.Run("the implementation guide and the vendored definitions, one file a definition", func(t *testing.T) {
		for dir, list := range map[string][]conformance.Definition{"ig": defs, filepath.Join("ig", "vendor"): vendored} {
			for _, d := range list {
				b, err := os.ReadFile(filepath.Join(out, dir, d.Type+"-"+d.ID+".json"))
				if err != nil || string(b) != string(d.Body) {
					t.Errorf("%s/%s in %s: %v", d.Type, d.ID, dir, err)
				}
			}
		}
	})
}

// TestExportWrongStatus: a capture answered with another status than the
// one it must have fails the export.
func TestExportWrongStatus(t *testing.T) {
	g := newFakeGateway(t, 1)
	g.captures["/fhir/Patient/does-not-exist"] = http.StatusOK
	if _, err := Export(t.Context(), Options{Base: g.srv.URL, Token: Static("tok"), Out: t.TempDir()}); err == nil ||
		!strings.Contains(err.Error(), "error-not-found: status 200, want 404") {
		t.Fatalf("error %v", err)
	}
}

// TestExportNoPatient: a gateway that serves no Patient cannot be checked.
func TestExportNoPatient(t *testing.T) {
	g := newFakeGateway(t, 0)
	if _, err := Export(t.Context(), Options{Base: g.srv.URL, Token: Static("tok"), Out: t.TempDir()}); err == nil {
		t.Fatal("export of an empty gateway succeeded")
	}
}
