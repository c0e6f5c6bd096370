package fhir

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// exportEnv is a FHIR server with Bulk Data export on a real SQLite store
// and a clock the test moves; the export worker runs only when the test
// says (runJobs), so the test controls what is written before and after a
// job runs.
type exportEnv struct {
	t     *testing.T
	s     *Server
	e     *echo.Echo
	st    *sqlite.Store
	clock *storetest.FakeClock
}

// exportCallers: "sys" and "other" are system clients; "obs" may search
// Observation only; "pat" holds patient/ scopes; "vit" only vital signs.
func exportCallers() testCallers {
	other := caller("system/*.rs", "")
	other.ClientID, other.Principal.ClientID = "other", "other"
	return testCallers{
		"sys":   caller("system/*.rs", ""),
		"other": other,
		"obs":   caller("system/Observation.rs", ""),
		"vit":   caller("system/Observation.rs?category=vital-signs", ""),
		"pat":   caller("patient/*.rs", "p1"),
		"user":  caller("user/*.rs", ""),
	}
}

func newExportEnv(t *testing.T, opts ExportOptions, auditor ...Auditor) *exportEnv {
	t.Helper()
	clock := storetest.NewFakeClock(storetest.T0)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kb.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	opts.Store = st
	o := Options{Store: st, Base: testBase, Clock: clock, Verifier: exportCallers(),
		Logger: slog.New(slog.DiscardHandler), Export: &opts}
	if len(auditor) > 0 {
		o.Auditor = auditor[0]
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	s.Register(e)
	env := &exportEnv{t: t, s: s, e: e, st: st, clock: clock}
	env.seed()
	return env
}

const loinc = "http://loinc.org"

// obsWrite is an Observation of patient in category cat, performed by pr.
func obsWrite(id, patient, cat, status string) store.RecordWrite {
	body := `,"status":"` + status + `","category":[{"coding":[{"system":"` + catSystem + `","code":"` + cat + `"}]}],` +
		`"code":{"coding":[{"system":"` + loinc + `","code":"8867-4"}]},"subject":{"reference":"Patient/` + patient + `"},` +
		`"performer":[{"reference":"Practitioner/pr-` + patient + `"}]`
	return storetest.Rec("session", id, status, storetest.Res("Observation", id, patient, body,
		storetest.Ref("subject", "Patient/"+patient), storetest.Ref("patient", "Patient/"+patient),
		storetest.Token("category", catSystem, cat), storetest.Token("code", loinc, "8867-4"),
		storetest.Ref("performer", "Practitioner/pr-"+patient)))
}

// seed writes patients p1..p3, practitioners pr-p1..pr-p3 and pr-unused,
// observations of each patient (vital-signs and survey), and Group g1
// holding p1 and p2.
func (env *exportEnv) seed() {
	var recs []store.RecordWrite
	for _, p := range []string{"p1", "p2", "p3"} {
		recs = append(recs,
			storetest.Rec("patient", p, "h1", storetest.Res("Patient", p, p, `,"gender":"female","birthDate":"1980-01-01"`)),
			storetest.Rec("practitioner", "pr-"+p, "h1", storetest.Res("Practitioner", "pr-"+p, "", `,"name":[{"family":"Dr `+p+`"}]`)),
			obsWrite("v-"+p, p, "vital-signs", "final"),
			obsWrite("s-"+p, p, "survey", "final"),
		)
	}
	cov := func(id, patient, status string) store.RecordWrite {
		return storetest.Rec("coverage", id, status, storetest.Res("Coverage", id, patient,
			`,"status":"`+status+`","beneficiary":{"reference":"Patient/`+patient+`"},"payor":[{"reference":"Organization/payer1"}]`,
			storetest.Ref("patient", "Patient/"+patient), storetest.Ref("payor", "Organization/payer1")))
	}
	recs = append(recs,
		storetest.Rec("practitioner", "pr-unused", "h1", storetest.Res("Practitioner", "pr-unused", "", "")),
		storetest.Rec("organization", "payer1", "h1", storetest.Res("Organization", "payer1", "", `,"name":"Payer One"`)),
		cov("c1", "p1", "active"), cov("c2", "p2", "active"), cov("c3", "p3", "cancelled"))
	env.apply(recs...)
	env.clock.Advance(time.Second)
}

func (env *exportEnv) apply(recs ...store.RecordWrite) {
	env.t.Helper()
	if _, err := env.st.Apply(context.Background(), recs); err != nil {
		env.t.Fatal(err)
	}
}

func (env *exportEnv) do(tok, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	env.e.ServeHTTP(w, r)
	return w
}

// kickoff starts an export and returns its status path.
func (env *exportEnv) kickoff(tok, method, target, body string, hdr ...string) string {
	env.t.Helper()
	hdr = append([]string{"Prefer", "respond-async", "Accept", "application/fhir+json"}, hdr...)
	if body != "" {
		hdr = append(hdr, "Content-Type", "application/fhir+json")
	}
	w := env.do(tok, method, target, body, hdr...)
	if w.Code != http.StatusAccepted {
		env.t.Fatalf("kick-off %s: %d %s", target, w.Code, w.Body)
	}
	loc := w.Header().Get("Content-Location")
	if !strings.HasPrefix(loc, testBase+"/_export/") {
		env.t.Fatalf("Content-Location %q", loc)
	}
	return strings.TrimPrefix(loc, "http://localhost:8080")
}

// runJobs runs the queued jobs.
func (env *exportEnv) runJobs() {
	for env.s.RunExportOnce(context.Background()) {
	}
}

type manifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Deleted []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"deleted"`
	Error []struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	} `json:"error"`
}

func (env *exportEnv) manifest(tok, status string) manifest {
	env.t.Helper()
	w := env.do(tok, http.MethodGet, status, "")
	if w.Code != http.StatusOK {
		env.t.Fatalf("status: %d %s", w.Code, w.Body)
	}
	var m manifest
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		env.t.Fatal(err)
	}
	if !m.RequiresAccessToken || m.TransactionTime == "" || m.Request == "" {
		env.t.Fatalf("manifest %s", w.Body)
	}
	return m
}

// lines downloads a file and returns its lines.
func (env *exportEnv) lines(tok, url string) []string {
	env.t.Helper()
	w := env.do(tok, http.MethodGet, strings.TrimPrefix(url, "http://localhost:8080"), "", "Accept", "application/fhir+ndjson")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != MIMENDJSON {
		env.t.Fatalf("file %s: %d %s %s", url, w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	body := w.Body.String()
	if body == "" {
		return nil
	}
	if !strings.HasSuffix(body, "\n") {
		env.t.Fatalf("file does not end with a newline: %q", body)
	}
	return strings.Split(strings.TrimSuffix(body, "\n"), "\n")
}

// export runs a whole export and returns "Type/id" of every output line
// (sorted), checking counts and types, and the manifest.
func (env *exportEnv) export(tok, method, target, body string, hdr ...string) ([]string, manifest) {
	env.t.Helper()
	status := env.kickoff(tok, method, target, body, hdr...)
	env.runJobs()
	m := env.manifest(tok, status)
	var got []string
	for _, o := range m.Output {
		ls := env.lines(tok, o.URL)
		if len(ls) != o.Count {
			env.t.Fatalf("%s: %d lines, manifest count %d", o.URL, len(ls), o.Count)
		}
		for _, l := range ls {
			var r struct{ ResourceType, ID string }
			if err := json.Unmarshal([]byte(l), &r); err != nil || r.ResourceType != o.Type {
				env.t.Fatalf("line %s in a %s file: %v", l, o.Type, err)
			}
			got = append(got, r.ResourceType+"/"+r.ID)
		}
	}
	sort.Strings(got)
	return got, m
}

func TestExportSystem(t *testing.T) {
	env := newExportEnv(t, ExportOptions{FileSize: 2})
	got, m := env.export("sys", http.MethodGet, "/fhir/$export", "")
	want := []string{"Coverage/c1", "Coverage/c2", "Coverage/c3", "Observation/s-p1", "Observation/s-p2", "Observation/s-p3",
		"Observation/v-p1", "Observation/v-p2", "Observation/v-p3", "Organization/payer1", "Patient/p1", "Patient/p2", "Patient/p3",
		"Practitioner/pr-p1", "Practitioner/pr-p2", "Practitioner/pr-p3", "Practitioner/pr-unused"}
	if !slices.Equal(got, want) {
		t.Fatalf("exported %v\nwant %v", got, want)
	}
	// Files of at most 2: 6 Observations in 3 files.
	n := 0
	for _, o := range m.Output {
		if o.Type == "Observation" {
			n++
			if o.Count > 2 {
				t.Errorf("file of %d", o.Count)
			}
		}
	}
	if n != 3 || len(m.Error) != 0 || len(m.Deleted) != 0 {
		t.Errorf("%d Observation files, errors %v, deleted %v", n, m.Error, m.Deleted)
	}
	if m.Request != testBase+"/$export" {
		t.Errorf("request %q", m.Request)
	}
	if want := env.clock.Now().UTC().Format(store.LastUpdatedFormat); m.TransactionTime != want {
		t.Errorf("transactionTime %s, want %s", m.TransactionTime, want)
	}
	t.Run("escaped operation path", func(t *testing.T) {
		got2, _ := env.export("sys", http.MethodGet, "/fhir/%24export?_type=Patient", "")
		if !slices.Equal(got2, []string{"Patient/p1", "Patient/p2", "Patient/p3"}) {
			t.Fatal(got2)
		}
	})
}

func TestExportParameters(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	for _, tc := range []struct {
		name, method, target, body string
		want                       []string
	}{
		{"_type", http.MethodGet, "/fhir/$export?_type=Patient,Practitioner&_outputFormat=application/fhir%2Bndjson", "", []string{
			"Patient/p1", "Patient/p2", "Patient/p3", "Practitioner/pr-p1", "Practitioner/pr-p2", "Practitioner/pr-p3", "Practitioner/pr-unused"}},
		{"_typeFilter ORed, other types whole", http.MethodGet, "/fhir/$export?_type=Observation,Organization&_typeFilter=" +
			"Observation%3Fcategory%3Dsurvey%26subject%3DPatient/p1,Observation%3Fsubject%3DPatient/p3", "", []string{
			"Observation/s-p1", "Observation/s-p3", "Observation/v-p3", "Organization/payer1"}},
		{"POST Parameters", http.MethodPost, "/fhir/$export", `{"resourceType":"Parameters","parameter":[` +
			`{"name":"_type","valueString":"Observation"},{"name":"_outputFormat","valueString":"ndjson"},` +
			`{"name":"_typeFilter","valueString":"Observation?category=vital-signs"}]}`, []string{
			"Observation/v-p1", "Observation/v-p2", "Observation/v-p3"}},
		{"Patient level, no _type: compartment and referenced practitioners", http.MethodGet, "/fhir/Patient/$export", "", []string{
			"Coverage/c1", "Coverage/c2", "Coverage/c3",
			"Observation/s-p1", "Observation/s-p2", "Observation/s-p3", "Observation/v-p1", "Observation/v-p2", "Observation/v-p3",
			"Organization/payer1", "Patient/p1", "Patient/p2", "Patient/p3", "Practitioner/pr-p1", "Practitioner/pr-p2", "Practitioner/pr-p3"}},
		{"Patient level, patient parameter", http.MethodPost, "/fhir/Patient/$export", `{"resourceType":"Parameters","parameter":[` +
			`{"name":"patient","valueReference":{"reference":"Patient/p2"}}]}`, []string{
			"Coverage/c2", "Observation/s-p2", "Observation/v-p2", "Organization/payer1", "Patient/p2", "Practitioner/pr-p2"}},
		{"Group: a payer's members (active coverage only)", http.MethodGet, "/fhir/Group/payer-payer1/$export", "", []string{
			"Coverage/c1", "Coverage/c2", "Observation/s-p1", "Observation/s-p2", "Observation/v-p1", "Observation/v-p2",
			"Organization/payer1", "Patient/p1", "Patient/p2", "Practitioner/pr-p1", "Practitioner/pr-p2"}},
		{"Group, _type", http.MethodGet, "/fhir/Group/payer-payer1/$export?_type=Patient", "", []string{"Patient/p1", "Patient/p2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, m := env.export("sys", tc.method, tc.target, tc.body)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("exported %v\nwant %v", got, tc.want)
			}
			if len(m.Error) != 0 {
				t.Errorf("errors %v", m.Error)
			}
		})
	}
	t.Run("_elements", func(t *testing.T) {
		status := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Patient&_elements=Patient.gender", "")
		env.runJobs()
		m := env.manifest("sys", status)
		for _, l := range env.lines("sys", m.Output[0].URL) {
			var r map[string]any
			_ = json.Unmarshal([]byte(l), &r)
			if _, ok := r["birthDate"]; ok || r["gender"] != "female" || !strings.Contains(l, "SUBSETTED") {
				t.Fatalf("line %s", l)
			}
		}
	})
}

func TestExportAccess(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	t.Run("a type-limited client gets its types only, the rest reported", func(t *testing.T) {
		got, m := env.export("obs", http.MethodGet, "/fhir/$export?_type=Observation,Patient", "")
		if len(got) != 6 || !strings.HasPrefix(got[0], "Observation/") || len(m.Error) != 1 {
			t.Fatalf("exported %v, errors %v", got, m.Error)
		}
		ls := env.lines("obs", m.Error[0].URL)
		if len(ls) != 1 || !strings.Contains(ls[0], "Patient") || !strings.Contains(ls[0], `"OperationOutcome"`) {
			t.Fatalf("error file %v", ls)
		}
	})
	t.Run("granular scope narrows as search does", func(t *testing.T) {
		got, _ := env.export("vit", http.MethodGet, "/fhir/$export", "")
		if !slices.Equal(got, []string{"Observation/v-p1", "Observation/v-p2", "Observation/v-p3"}) {
			t.Fatal(got)
		}
	})
	for _, tc := range []struct {
		name, tok, target string
		want              int
	}{
		{"no token", "", "/fhir/$export", http.StatusUnauthorized},
		{"patient token on Group export", "pat", "/fhir/Group/payer-payer1/$export", http.StatusForbidden},
		{"user token on Group export", "user", "/fhir/Group/payer-payer1/$export", http.StatusForbidden},
		{"patient token on system export", "pat", "/fhir/$export", http.StatusForbidden},
		{"unknown group", "sys", "/fhir/Group/nope/$export", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do(tc.tok, http.MethodGet, tc.target, "", "Prefer", "respond-async")
			if w.Code != tc.want || !strings.Contains(w.Body.String(), "OperationOutcome") {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.want)
			}
		})
	}
	status := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Patient", "")
	env.runJobs()
	m := env.manifest("sys", status)
	file := strings.TrimPrefix(m.Output[0].URL, "http://localhost:8080")
	for _, tc := range []struct {
		name, tok, method, path string
		want                    int
	}{
		{"another client's status", "other", http.MethodGet, status, http.StatusNotFound},
		{"another client's file", "other", http.MethodGet, file, http.StatusNotFound},
		{"another client's delete", "other", http.MethodDelete, status, http.StatusNotFound},
		{"status without a token", "", http.MethodGet, status, http.StatusUnauthorized},
		{"file without a token", "", http.MethodGet, file, http.StatusUnauthorized},
		{"unknown file", "sys", http.MethodGet, status + "/7", http.StatusNotFound},
		{"unknown job", "sys", http.MethodGet, "/fhir/_export/0b9f1e0e-8f57-4a4e-9a51-0d7b1b0b3c11", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do(tc.tok, tc.method, tc.path, "")
			if w.Code != tc.want || !strings.Contains(w.Body.String(), "OperationOutcome") {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.want)
			}
		})
	}
}

func TestExportNegative(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	for _, tc := range []struct {
		name, target string
		hdr          []string
		want         int
	}{
		{"no Prefer: respond-async", "/fhir/$export", nil, http.StatusBadRequest},
		{"unsupported parameter", "/fhir/$export?_count=5", []string{"Prefer", "respond-async"}, http.StatusBadRequest},
		{"unsupported format", "/fhir/$export?_outputFormat=text/csv", []string{"Prefer", "respond-async"}, http.StatusBadRequest},
		{"bad _since", "/fhir/$export?_since=yesterday", []string{"Prefer", "respond-async"}, http.StatusBadRequest},
		{"unknown _type", "/fhir/$export?_type=Nope", []string{"Prefer", "respond-async"}, http.StatusBadRequest},
		{"bad _typeFilter", "/fhir/$export?_typeFilter=Observation%3Fnope%3D1", []string{"Prefer", "respond-async"}, http.StatusBadRequest},
		{"patient by GET", "/fhir/Patient/$export?patient=Patient/p1", []string{"Prefer", "respond-async"}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do("sys", http.MethodGet, tc.target, "", tc.hdr...)
			if w.Code != tc.want || !strings.Contains(w.Body.String(), "OperationOutcome") {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.want)
			}
		})
	}
	t.Run("lenient: ignored and reported", func(t *testing.T) {
		got, m := env.export("sys", http.MethodGet, "/fhir/$export?_type=Patient&_count=5", "", "Prefer", "handling=lenient")
		if len(got) != 3 || len(m.Error) != 1 {
			t.Fatalf("exported %v, errors %v", got, m.Error)
		}
		if ls := env.lines("sys", m.Error[0].URL); len(ls) != 1 || !strings.Contains(ls[0], "_count") {
			t.Fatalf("error file %v", ls)
		}
	})
}

func TestExportLifecycle(t *testing.T) {
	env := newExportEnv(t, ExportOptions{MaxActive: 2, Expiry: time.Hour})
	status := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Patient", "")
	t.Run("running: 202 with X-Progress and Retry-After", func(t *testing.T) {
		w := env.do("sys", http.MethodGet, status, "")
		if w.Code != http.StatusAccepted || w.Header().Get("X-Progress") == "" || w.Header().Get("Retry-After") == "" {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
	})
	second := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Practitioner", "")
	t.Run("concurrent-job limit: 429 with Retry-After, per client", func(t *testing.T) {
		w := env.do("sys", http.MethodGet, "/fhir/$export", "", "Prefer", "respond-async")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "OperationOutcome") {
			t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
		}
		env.kickoff("other", http.MethodGet, "/fhir/$export?_type=Organization", "")
	})
	t.Run("cancel a queued job: 202, then 404, and it frees a slot", func(t *testing.T) {
		if w := env.do("sys", http.MethodDelete, second, ""); w.Code != http.StatusAccepted {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if w := env.do("sys", http.MethodGet, second, ""); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "OperationOutcome") {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		third := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Organization", "")
		env.runJobs()
		if w := env.do("sys", http.MethodDelete, third, ""); w.Code != http.StatusAccepted {
			t.Fatalf("delete of a finished job: %d", w.Code)
		}
	})
	m := env.manifest("sys", status)
	file := strings.TrimPrefix(m.Output[0].URL, "http://localhost:8080")
	full := env.do("sys", http.MethodGet, file, "")
	t.Run("gzip when accepted", func(t *testing.T) {
		w := env.do("sys", http.MethodGet, file, "", "Accept-Encoding", "gzip")
		if w.Header().Get("Content-Encoding") != "gzip" {
			t.Fatalf("headers %v", w.Header())
		}
		zr, err := gzip.NewReader(w.Body)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(zr)
		if !bytes.Equal(b, full.Body.Bytes()) {
			t.Fatal("gzip body differs")
		}
	})
	t.Run("range", func(t *testing.T) {
		// A whole file streams as it is read (no length up front); HEAD
		// and ranges measure it first.
		size := full.Body.Len()
		if full.Header().Get("Accept-Ranges") != "bytes" {
			t.Fatalf("headers %v, body %d", full.Header(), size)
		}
		if w := env.do("sys", http.MethodHead, file, ""); w.Code != http.StatusOK || w.Header().Get("Content-Length") != fmt.Sprint(size) || w.Body.Len() != 0 {
			t.Fatalf("HEAD: %d %v, body %d", w.Code, w.Header(), w.Body.Len())
		}
		w := env.do("sys", http.MethodGet, file, "", "Range", "bytes=10-49")
		if w.Code != http.StatusPartialContent || w.Body.String() != full.Body.String()[10:50] ||
			w.Header().Get("Content-Range") != fmt.Sprintf("bytes 10-49/%d", size) {
			t.Fatalf("%d %v %q", w.Code, w.Header(), w.Body)
		}
		w = env.do("sys", http.MethodGet, file, "", "Range", "bytes=100-")
		if w.Code != http.StatusPartialContent || w.Body.String() != full.Body.String()[100:] ||
			w.Header().Get("Content-Range") != fmt.Sprintf("bytes 100-%d/%d", size-1, size) ||
			w.Header().Get("Content-Length") != fmt.Sprint(size-100) {
			t.Fatalf("open range: %d %v", w.Code, w.Header())
		}
		w = env.do("sys", http.MethodGet, file, "", "Range", fmt.Sprintf("bytes=%d-", size))
		if w.Code != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("range past the end: %d", w.Code)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		env.clock.Advance(time.Hour)
		if w := env.do("sys", http.MethodGet, status, ""); w.Code != http.StatusNotFound {
			t.Fatalf("status after expiry: %d", w.Code)
		}
		if w := env.do("sys", http.MethodGet, file, ""); w.Code != http.StatusNotFound {
			t.Fatalf("file after expiry: %d", w.Code)
		}
	})
}

// TestExportPaging: an export walked in pages of two resources, each page
// cut short by a buffer of a few bytes, is byte for byte the export walked
// in whole pages: the same files and counts, and every range of a file the
// same slice of it.
func TestExportPaging(t *testing.T) {
	env := newExportEnv(t, ExportOptions{FileSize: 4})
	for i := range 9 {
		env.apply(obsWrite(fmt.Sprintf("x%d", i), "p1", "survey", "final"))
	}
	env.clock.Advance(time.Second)
	files := func() (manifest, []string) {
		status := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Observation,Patient,Provenance", "")
		env.runJobs()
		m := env.manifest("sys", status)
		var bodies []string
		for _, o := range m.Output {
			w := env.do("sys", http.MethodGet, strings.TrimPrefix(o.URL, "http://localhost:8080"), "")
			if w.Code != http.StatusOK || strings.Count(w.Body.String(), "\n") != o.Count {
				t.Fatalf("%s: %d, %d lines, manifest count %d", o.URL, w.Code, strings.Count(w.Body.String(), "\n"), o.Count)
			}
			bodies = append(bodies, w.Body.String())
		}
		env.clock.Advance(time.Second)
		return m, bodies
	}
	m1, whole := files()
	page, buffer := exportPage, exportBuffer
	exportPage, exportBuffer = 2, 10
	t.Cleanup(func() { exportPage, exportBuffer = page, buffer })
	m2, paged := files()
	if len(m1.Output) != len(m2.Output) || len(m1.Output) < 4 {
		t.Fatalf("%d files, then %d in small pages", len(m1.Output), len(m2.Output))
	}
	for i := range m1.Output {
		if m1.Output[i].Count != m2.Output[i].Count || m1.Output[i].Type != m2.Output[i].Type || whole[i] != paged[i] {
			t.Fatalf("file %d: %s %d %q\nin small pages: %s %d %q", i, m1.Output[i].Type, m1.Output[i].Count, whole[i],
				m2.Output[i].Type, m2.Output[i].Count, paged[i])
		}
		file := strings.TrimPrefix(m2.Output[i].URL, "http://localhost:8080")
		size := len(paged[i])
		for start := 0; start < size; start += 37 {
			for _, end := range []int{start, start + 1, start + 250, size - 1} {
				if end < start || end >= size {
					continue
				}
				w := env.do("sys", http.MethodGet, file, "", "Range", fmt.Sprintf("bytes=%d-%d", start, end))
				if w.Code != http.StatusPartialContent || w.Body.String() != paged[i][start:end+1] ||
					w.Header().Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", start, end, size) {
					t.Fatalf("file %d bytes %d-%d: %d %v %q", i, start, end, w.Code, w.Header(), w.Body)
				}
			}
		}
	}
}

// TestExportSnapshot: writes after the kick-off do not appear; a resource
// changed before the job runs comes in its version at transactionTime; a
// later _since export returns exactly what changed, deletions listed.
func TestExportSnapshot(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	status := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Observation,Patient", "")
	env.clock.Advance(time.Second)
	// Concurrent ingest between kick-off and the job: an update, a new
	// patient with an observation, a deletion.
	env.apply(obsWrite("v-p1", "p1", "vital-signs", "amended"),
		storetest.Rec("patient", "p4", "h1", storetest.Res("Patient", "p4", "p4", "")),
		obsWrite("v-p4", "p4", "vital-signs", "final"),
		storetest.Rec("session", "s-p2", "gone"))
	env.runJobs()
	m := env.manifest("sys", status)
	var lines []string
	for _, o := range m.Output {
		lines = append(lines, env.lines("sys", o.URL)...)
	}
	all := strings.Join(lines, "\n")
	if len(lines) != 9 || strings.Contains(all, "p4") || strings.Contains(all, "amended") || !strings.Contains(all, `"id":"s-p2"`) {
		t.Fatalf("snapshot export:\n%s", all)
	}
	// _since sync: exactly what changed after the first transactionTime.
	env.clock.Advance(time.Second)
	got, m2 := env.export("sys", http.MethodGet, "/fhir/$export?_type=Observation,Patient&_since="+m.TransactionTime, "")
	if !slices.Equal(got, []string{"Observation/v-p1", "Observation/v-p4", "Patient/p4"}) {
		t.Fatalf("since export %v", got)
	}
	if len(m2.Deleted) != 1 || m2.Deleted[0].Type != "Bundle" || m2.Deleted[0].Count != 1 {
		t.Fatalf("deleted %+v", m2.Deleted)
	}
	dl := env.lines("sys", m2.Deleted[0].URL)
	if len(dl) != 1 || !strings.Contains(dl[0], `"method":"DELETE","url":"Observation/s-p2"`) {
		t.Fatalf("deleted file %v", dl)
	}
	parseFHIR(t, []byte(dl[0]))
	// Files are re-derived from the snapshot: later writes do not change
	// what the first job's files hold.
	env.apply(obsWrite("v-p1", "p1", "vital-signs", "corrected"))
	var again []string
	for _, o := range m.Output {
		again = append(again, env.lines("sys", o.URL)...)
	}
	if !slices.Equal(again, lines) {
		t.Fatal("a file changed after a later write")
	}
}

// TestExportWorkerTakeover: a job whose worker stopped renewing its lease
// is finished by another worker (another replica).
func TestExportWorkerTakeover(t *testing.T) {
	env := newExportEnv(t, ExportOptions{Lease: time.Minute})
	status := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Patient", "")
	// A worker claims it and dies.
	if _, ok, err := env.st.ClaimJob(context.Background(), exportKind, env.clock.Now(), env.clock.Now().Add(time.Minute)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	env.runJobs()
	if w := env.do("sys", http.MethodGet, status, ""); w.Code != http.StatusAccepted {
		t.Fatalf("claimed job: %d", w.Code)
	}
	env.clock.Advance(time.Minute + time.Millisecond)
	env.runJobs()
	m := env.manifest("sys", status)
	if len(m.Output) != 1 || m.Output[0].Count != 3 {
		t.Fatalf("manifest %+v", m)
	}
	_ = auth.InteractionExport
}

// TestGroups: derived cohorts are readable and searchable, follow the
// records as they arrive, and name only patients the reader may see.
func TestGroups(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	read := func(tok, path string) (int, map[string]any) {
		w := env.do(tok, http.MethodGet, path, "")
		if w.Code != http.StatusOK {
			return w.Code, nil
		}
		return w.Code, parseFHIR(t, w.Body.Bytes())
	}
	members := func(g map[string]any) []string {
		var out []string
		ms, _ := g["member"].([]any)
		for _, m := range ms {
			out = append(out, m.(map[string]any)["entity"].(map[string]any)["reference"].(string))
		}
		return out
	}
	code, g := read("sys", "/fhir/Group/payer-payer1")
	if code != http.StatusOK || !slices.Equal(members(g), []string{"Patient/p1", "Patient/p2"}) || g["quantity"] != 2.0 {
		t.Fatalf("%d %v", code, g)
	}
	// A record arrives: p3's coverage becomes active.
	env.apply(storetest.Rec("coverage", "c3", "active", storetest.Res("Coverage", "c3", "p3",
		`,"status":"active","beneficiary":{"reference":"Patient/p3"},"payor":[{"reference":"Organization/payer1"}]`,
		storetest.Ref("patient", "Patient/p3"), storetest.Ref("payor", "Organization/payer1"))))
	if _, g = read("sys", "/fhir/Group/payer-payer1"); len(members(g)) != 3 {
		t.Fatalf("after the coverage arrived: %v", members(g))
	}
	if _, g = read("pat", "/fhir/Group/payer-payer1"); !slices.Equal(members(g), []string{"Patient/p1"}) {
		t.Fatalf("patient token sees %v", members(g))
	}
	for _, path := range []string{"/fhir/Group/payer-nope", "/fhir/Group/nope", "/fhir/Group/location-payer1"} {
		if code, _ := read("sys", path); code != http.StatusNotFound {
			t.Errorf("%s: %d", path, code)
		}
	}
	w := env.do("sys", http.MethodGet, "/fhir/Group", "")
	b := parseFHIR(t, w.Body.Bytes())
	if w.Code != http.StatusOK || b["total"] != 1.0 || !strings.Contains(w.Body.String(), `"id":"payer-payer1"`) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

// TestExportCapability: the CapabilityStatement instantiates the Bulk Data
// server statement and declares the three export operations and Group
// (docs/design/security.md BULK-7).
func TestExportCapability(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	w := env.do("", http.MethodGet, "/fhir/metadata", "")
	cs := parseFHIR(t, w.Body.Bytes())
	body := w.Body.String()
	for _, want := range []string{
		`"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data|2.0.0"`,
		`"operation":[{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]`,
		`{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}`,
		`{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}`,
		`"type":"Group"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in the CapabilityStatement", want)
		}
	}
	if dir := os.Getenv("KETABRIDGE_EXPORT_CAPABILITY_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "CapabilityStatement.json"), w.Body.Bytes(), 0o644)
	}
	_ = cs
}

// TestExportAudited: the kick-off, the status and every file download write
// an AuditEvent (docs/design/security.md PRIV-8), the file's naming its type.
func TestExportAudited(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	env := newExportEnv(t, ExportOptions{}, AuditorFunc(func(_ context.Context, ev Event) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}))
	status := env.kickoff("sys", http.MethodGet, "/fhir/Group/payer-payer1/$export?_type=Patient", "")
	env.runJobs()
	m := env.manifest("sys", status)
	env.lines("sys", m.Output[0].URL)
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, ev := range events {
		got = append(got, fmt.Sprintf("%s %s/%s %d %s", ev.Interaction, ev.Type, ev.ID, ev.Status, ev.ClientID))
	}
	want := []string{"export Group/payer-payer1 202 app", "export / 200 app", "export Patient/ 200 app"}
	if !slices.Equal(got, want) {
		t.Fatalf("audit events %q, want %q", got, want)
	}
	for _, ev := range events {
		b, err := MarshalAuditEvent(ev, "a1")
		if err != nil {
			t.Fatal(err)
		}
		parseFHIR(t, b)
	}
}

// TestRefsOpen: the Provenance fast path takes only bodies whose every
// reference is plainly a Type/id of a type the caller reads whole; any
// other spelling goes the exact way (provenanceTargets).
func TestRefsOpen(t *testing.T) {
	open := map[string]bool{"Observation": true, "Patient": true}
	for _, tc := range []struct {
		name, body string
		want       bool
	}{
		{"all open", `{"target":[{"reference":"Observation/o1"},{"reference":"Patient/p1"}]}`, true},
		{"no reference", `{"target":[{"display":"x"}]}`, true},
		{"a type not read whole", `{"target":[{"reference":"Observation/o1"},{"reference":"Condition/c1"}]}`, false},
		{"not Type/id", `{"target":[{"reference":"urn:uuid:1"}]}`, false},
		{"an escape", `{"target":[{"reference":"Observation\/o1"}]}`, false},
		{"spaced", `{"target":[{"reference" : "Condition/c1"}]}`, false},
		{"a value", `{"target":[{"reference":"Observation/o1","display":"reference"}]}`, false},
		{"an absolute URL", `{"target":[{"reference":"https://x.example/fhir/Observation/o1"}]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := refsOpen([]byte(tc.body), open); got != tc.want {
				t.Errorf("refsOpen(%s) = %v, want %v", tc.body, got, tc.want)
			}
		})
	}
	if refsOpen([]byte(`{"target":[{"display":"x"}]}`), nil) {
		t.Error("a caller who reads nothing whole took the fast path")
	}
}

// TestExportAccessJudgedNow (docs/design/security.md BULK-8): a restricted
// token's export leaves out what changed after transactionTime, whether it
// left its view (v-p1 is no longer a vital sign) or not (v-p2 amended), and
// its next _since export carries what it may see now; an unrestricted
// token's export keeps the versions at transactionTime.
func TestExportAccessJudgedNow(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	vit := env.kickoff("vit", http.MethodGet, "/fhir/$export?_type=Observation", "")
	sys := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Observation", "")
	env.clock.Advance(time.Second)
	env.apply(obsWrite("v-p1", "p1", "survey", "amended"), obsWrite("v-p2", "p2", "vital-signs", "amended"))
	env.runJobs()
	ids := func(tok, status string) ([]string, string) {
		m := env.manifest(tok, status)
		var got []string
		for _, o := range m.Output {
			for _, l := range env.lines(tok, o.URL) {
				var r struct{ ID string }
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatal(err)
				}
				got = append(got, r.ID)
			}
		}
		sort.Strings(got)
		return got, m.TransactionTime
	}
	got, at := ids("vit", vit)
	if !slices.Equal(got, []string{"v-p3"}) {
		t.Fatalf("restricted export: %v, want [v-p3]", got)
	}
	if got, _ := ids("sys", sys); !slices.Equal(got, []string{"s-p1", "s-p2", "s-p3", "v-p1", "v-p2", "v-p3"}) {
		t.Fatalf("unrestricted export: %v", got)
	}
	env.clock.Advance(time.Second)
	got, m := env.export("vit", http.MethodGet, "/fhir/$export?_type=Observation&_since="+at, "")
	if !slices.Equal(got, []string{"Observation/v-p2"}) || len(m.Deleted) != 0 {
		t.Fatalf("restricted _since export: %v, deleted %v", got, m.Deleted)
	}
}

// TestExportEarlierVersionFiles: a job finished by a version that bounded
// its files by ids is refused file by file (404 with a reason), never
// served whole; its status still answers.
func TestExportEarlierVersionFiles(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	status := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Patient", "")
	env.runJobs()
	ctx := context.Background()
	done, err := env.st.Job(ctx, strings.TrimPrefix(status, "/fhir/_export/"), env.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	old := store.Job{ID: "00000000-0000-4000-8000-000000000001", Kind: done.Kind, Owner: done.Owner, Request: done.Request,
		State: store.JobRunning, Lease: env.clock.Now().Add(time.Minute), Created: env.clock.Now()}
	if err := env.st.CreateJob(ctx, old, 0); err != nil {
		t.Fatal(err)
	}
	held := old.Lease
	old.State, old.Lease, old.Updated, old.Expires = store.JobDone, time.Time{}, env.clock.Now(), env.clock.Now().Add(time.Hour)
	old.Result = []byte(`{"files":[{"kind":"output","type":"Patient","after":"","last":"p3","count":3,"size":300}]}`)
	if ok, err := env.st.UpdateJob(ctx, old, held); err != nil || !ok {
		t.Fatalf("update: %v %v", ok, err)
	}
	m := env.manifest("sys", "/fhir/_export/"+old.ID)
	if len(m.Output) != 1 || m.Output[0].Count != 3 {
		t.Fatalf("manifest %+v", m)
	}
	w := env.do("sys", http.MethodGet, strings.TrimPrefix(m.Output[0].URL, "http://localhost:8080"), "")
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "earlier version") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

// TestExportSinceFiles: a _since export whose updates and deletions lie
// between one another in snapshot order, cut into files of two: at the
// system level (files counted in the store) and at the Patient level
// (files cut while references are collected), every output and deleted
// file holds exactly its manifest count of its own kind, and together they
// hold exactly what changed.
func TestExportSinceFiles(t *testing.T) {
	env := newExportEnv(t, ExportOptions{FileSize: 2})
	for i := range 6 {
		env.apply(obsWrite(fmt.Sprintf("x%d", i), "p1", "survey", "final"))
	}
	env.clock.Advance(time.Second)
	_, m := env.export("sys", http.MethodGet, "/fhir/$export?_type=Observation", "")
	env.clock.Advance(time.Second)
	env.apply(obsWrite("x0", "p1", "survey", "amended"), storetest.Rec("session", "x1", "gone"),
		obsWrite("x2", "p1", "survey", "amended"), storetest.Rec("session", "x3", "gone"),
		obsWrite("x4", "p1", "survey", "amended"), storetest.Rec("session", "v-p1", "gone"),
		obsWrite("s-p3", "p3", "survey", "amended"))
	env.clock.Advance(time.Second)
	deletedURL := regexp.MustCompile(`"method":"DELETE","url":"([^"]+)"`)
	for _, target := range []string{"/fhir/$export", "/fhir/Patient/$export"} {
		got, m2 := env.export("sys", http.MethodGet, target+"?_type=Observation&_since="+m.TransactionTime, "")
		if want := []string{"Observation/s-p3", "Observation/x0", "Observation/x2", "Observation/x4"}; !slices.Equal(got, want) {
			t.Errorf("%s: output %v, want %v", target, got, want)
		}
		var deleted []string
		for _, o := range m2.Deleted {
			ls := env.lines("sys", o.URL)
			if len(ls) != o.Count || o.Count > 2 || o.Type != "Bundle" {
				t.Errorf("%s: deleted file of %d lines, manifest %+v", target, len(ls), o)
			}
			for _, l := range ls {
				mm := deletedURL.FindStringSubmatch(l)
				if mm == nil {
					t.Fatalf("%s: deleted line %s", target, l)
				}
				deleted = append(deleted, mm[1])
			}
		}
		for _, o := range m2.Output {
			if o.Count > 2 {
				t.Errorf("%s: a file of %d", target, o.Count)
			}
		}
		slices.Sort(deleted)
		if want := []string{"Observation/v-p1", "Observation/x1", "Observation/x3"}; !slices.Equal(deleted, want) {
			t.Errorf("%s: deleted %v, want %v", target, deleted, want)
		}
		if len(m2.Output) != 2 || len(m2.Deleted) != 2 {
			t.Errorf("%s: %d output and %d deleted files, want 2 and 2", target, len(m2.Output), len(m2.Deleted))
		}
	}
}
