package ingestapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

type fixedClock struct{}

func (fixedClock) Now() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) }

// testAPI is the internal API on a real SQLite store.
type testAPI struct {
	e  *echo.Echo
	st store.Store
}

// callers is the fake auth.Verifier of the tests (the seam at token
// verification): each bearer token names a caller.
type callers map[string]*auth.AccessInfo

func (cs callers) Verify(_ context.Context, raw string) (*auth.AccessInfo, error) {
	if info, ok := cs[raw]; ok {
		return info, nil
	}
	return nil, fmt.Errorf("%w: not a test token", auth.ErrInvalidToken)
}

func backend(t testing.TB, client, scope string) *auth.AccessInfo {
	g, errs := auth.ParseGrant(scope)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return &auth.AccessInfo{ClientID: client, Subject: client, Scope: scope, Principal: auth.Principal{ClientID: client, Grant: g}}
}

// testCallers: "etl" and "etl-2" may ingest, "reader" may only read.
func testCallers(t testing.TB) callers {
	return callers{"etl": backend(t, "etl", Scope), "etl-2": backend(t, "etl-2", Scope),
		"reader": backend(t, "reader", "system/ClinicRecord.read")}
}

func newTestAPI(t *testing.T, limit int64) *testAPI {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "test.db"), fixedClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := mapping.New(mapping.Options{})
	svc := ingest.New(st, m, search.Extract, fixedClock{})
	e := echo.New()
	Register(e.Group("/internal/v1"), svc, clinic.Schema(), Options{Verifier: testCallers(t), maxBody: limit,
		Logger: slog.New(slog.DiscardHandler)})
	return &testAPI{e: e, st: st}
}

// do sends one request with bearer token tok ("" = none).
func (a *testAPI) do(method, path, contentType string, body []byte, tok string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set(echo.HeaderContentType, contentType)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	a.e.ServeHTTP(rec, req)
	return rec
}

func (a *testAPI) post(t *testing.T, contentType string, body []byte) (int, Response, *httptest.ResponseRecorder) {
	t.Helper()
	rec := a.do(http.MethodPost, "/internal/v1/records", contentType, body, "etl")
	var resp Response
	if rec.Code == http.StatusOK || rec.Code == http.StatusUnprocessableEntity {
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("response: %v: %s", err, rec.Body)
		}
	}
	return rec.Code, resp, rec
}

// goodRecords is mapping/ingest/testdata/good.ndjson as generic objects,
// split by the API's own NDJSON reader.
func goodRecords(t *testing.T) []map[string]any {
	t.Helper()
	data, err := os.ReadFile("../mapping/ingest/testdata/good.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ingest.ReadNDJSON(bytes.NewReader(data), ingest.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, b.Len())
	for i, r := range b.Records {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func byID(recs []map[string]any, id string) map[string]any {
	for _, r := range recs {
		if r["id"] == id {
			return r
		}
	}
	panic("no record " + id)
}

// clone deep-copies a record through JSON.
func clone(r map[string]any) map[string]any {
	b, _ := json.Marshal(r)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func ndjson(t *testing.T, recs []map[string]any) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// mixedBatch is the good records followed by seven bad ones; want maps the
// index of each bad record to its id and the path of its error.
func mixedBatch(t *testing.T) (recs []map[string]any, want map[int][2]string) {
	good := goodRecords(t)
	recs = append(recs, good...)
	want = map[int][2]string{}
	add := func(id, path string, r map[string]any) {
		want[len(recs)] = [2]string{id, path}
		recs = append(recs, r)
	}

	p2 := clone(byID(good, "P1"))
	p2["id"], p2["mrn"], p2["birthDate"] = "P2", "MRN-0002", 1980
	add("P2", "birthDate", p2) // wrong type

	dr2 := clone(byID(good, "DR1"))
	dr2["id"] = "DR2"
	delete(dr2, "name")
	delete(dr2, "npi")
	add("DR2", "name.family", dr2) // missing field

	add("R1", "kind", map[string]any{"kind": "room", "id": "R1", "name": "Room 1"}) // unknown kind

	dx2 := clone(byID(good, "DX1"))
	dx2["id"], dx2["patientId"] = "DX2", "NOPE"
	add("DX2", "patientId", dx2) // dangling reference

	s2 := clone(byID(good, "S1"))
	s2["id"] = "S2"
	s2["assessments"].([]any)[0].(map[string]any)["total"] = 14
	add("S2", "assessments[0].total", s2) // PHQ-9 total wrong

	s3 := clone(byID(good, "S1"))
	s3["id"] = "S3"
	s3["vitals"].([]any)[0].(map[string]any)["diastolic"] = 130
	add("S3", "vitals[0].diastolic", s3) // diastolic >= systolic

	s4 := clone(byID(good, "S1"))
	s4["id"] = "S4"
	delete(s4, "weightKg")
	delete(s4, "weightTime")
	add("S4", "administrations[0].mgPerKg", s4) // mg/kg without weight
	return recs, want
}

func TestPostRecordsMixedBatch(t *testing.T) {
	ctx := context.Background()
	api := newTestAPI(t, MaxBody)
	recs, want := mixedBatch(t)
	body, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	status, resp, raw := api.post(t, "application/json", body)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, raw.Body)
	}
	if len(resp.Results) != len(recs) {
		t.Fatalf("%d results for %d records", len(resp.Results), len(recs))
	}
	good := len(recs) - len(want)
	if resp.Summary.Created != good || resp.Summary.Rejected != len(want) {
		t.Errorf("summary %+v", resp.Summary)
	}
	for i, r := range resp.Results {
		if r.Index != i {
			t.Errorf("result %d has index %d", i, r.Index)
		}
		w, bad := want[i]
		if !bad {
			if r.Outcome != "created" || r.Resources < 1 || len(r.Errors) != 0 {
				t.Errorf("record %d (%s): %+v, want created", i, r.ID, r)
			}
			continue
		}
		if r.Outcome != "rejected" || r.ID != w[0] || len(r.Errors) == 0 {
			t.Errorf("record %d: %+v, want %s rejected", i, r, w[0])
			continue
		}
		if r.Errors[0].Path != w[1] || r.Errors[0].Message == "" {
			t.Errorf("record %d (%s): errors %+v, want first at %q", i, r.ID, r.Errors, w[1])
		}
	}

	// The good records are stored, the bad ones are not.
	keys := func(rs []map[string]any) []store.RecordKey {
		var out []store.RecordKey
		for _, r := range rs {
			out = append(out, store.RecordKey{Kind: r["kind"].(string), ClinicID: r["id"].(string)})
		}
		return out
	}
	src, err := api.st.SourceRecords(ctx, keys(recs))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys(recs) {
		_, stored := src[k]
		if _, bad := want[i]; bad == stored {
			t.Errorf("%s: stored=%v", k.ClinicID, stored)
		}
	}
	pat, err := api.st.Read(ctx, "Patient", mapping.ResourceID(clinic.KindPatient, "P1"))
	if err != nil || pat.Version != 1 || !bytes.Contains(pat.Body, []byte(`"resourceType":"Patient"`)) {
		t.Errorf("Patient P1: %v version %d", err, pat.Version)
	}
	for _, id := range []string{"S2", "S3", "S4"} {
		if _, err := api.st.Read(ctx, "Encounter", mapping.ResourceID(clinic.KindSession, id)); err == nil {
			t.Errorf("Encounter of rejected %s is stored", id)
		}
	}

	// Re-sending the same batch: the good ones unchanged.
	status, resp, _ = api.post(t, "application/x-ndjson", ndjson(t, recs))
	if status != http.StatusOK || resp.Summary.Unchanged != good || resp.Summary.Rejected != len(want) ||
		resp.Summary.Created+resp.Summary.Updated != 0 {
		t.Errorf("re-send: status %d summary %+v", status, resp.Summary)
	}

	// Changing one record: updated, with a new version of its resources.
	s1 := clone(byID(recs, "S1"))
	s1["dischargeTime"] = "2025-01-06T10:45:00-05:00"
	status, resp, _ = api.post(t, "application/ndjson", ndjson(t, []map[string]any{s1}))
	if status != http.StatusOK || resp.Summary.Updated != 1 || resp.Results[0].Outcome != "updated" {
		t.Fatalf("change: status %d %+v", status, resp)
	}
	enc, err := api.st.Read(ctx, "Encounter", mapping.ResourceID(clinic.KindSession, "S1"))
	if err != nil || enc.Version != 2 {
		t.Errorf("Encounter S1 after the change: %v version %d, want 2", err, enc.Version)
	}
}

func TestPostRecordsRequestErrors(t *testing.T) {
	api := newTestAPI(t, 4096)
	good := ndjson(t, goodRecords(t)[:1])
	tests := []struct {
		name        string
		contentType string
		body        []byte
		token       string // "" = etl, "-" = none
		status      int
		code        string // OperationOutcome issue code
		diagnostics string // substring of diagnostics
	}{
		{"empty body", "application/json", nil, "", 400, "invalid", ""},
		{"blank body", "application/x-ndjson", []byte("\n \n"), "", 400, "invalid", ""},
		{"empty array", "application/json", []byte("[]"), "", 400, "invalid", ""},
		{"broken JSON array", "application/json", []byte("[\n{\"kind\":\"patient\"},\n\"id\":}]"), "", 400, "invalid", "line 3, column 6"},
		{"not an array", "application/json", []byte(`"kind"`), "", 400, "invalid", "JSON array"},
		{"data after the array", "application/json", []byte(`[{}] {}`), "", 400, "invalid", "after the array"},
		{"one record rejected", "application/json", []byte(`{"kind":"patient","id":"P1"}`), "", 422, "processing", "mrn: is required"},
		{"unsupported type", "text/plain", good, "", 415, "not-supported", ""},
		{"no content type", "", good, "", 415, "not-supported", ""},
		{"other charset", "application/json; charset=latin1", []byte("[]"), "", 415, "not-supported", "UTF-8"},
		{"too large", "application/x-ndjson", bytes.Repeat([]byte(" "), 5000), "", 413, "too-costly", ""},
		{"no token", "application/x-ndjson", good, "-", 401, "login", ""},
		{"no token and a bad body", "text/plain", bytes.Repeat([]byte(" "), 5000), "-", 401, "login", ""},
		{"invalid token", "application/x-ndjson", good, "forged", 401, "login", ""},
		{"read scope", "application/x-ndjson", good, "reader", 403, "forbidden", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token
			switch tok {
			case "":
				tok = "etl"
			case "-":
				tok = ""
			}
			rec := api.do(http.MethodPost, "/internal/v1/records", tc.contentType, tc.body, tok)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, "application/fhir+json") {
				t.Errorf("content type %q", ct)
			}
			var oo struct {
				ResourceType string `json:"resourceType"`
				Issue        []struct {
					Severity, Code, Diagnostics string
				} `json:"issue"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 {
				t.Fatalf("not an OperationOutcome: %s", rec.Body)
			}
			if oo.Issue[0].Code != tc.code || oo.Issue[0].Severity != "error" {
				t.Errorf("issue %+v, want code %s", oo.Issue[0], tc.code)
			}
			if !strings.Contains(oo.Issue[0].Diagnostics, tc.diagnostics) {
				t.Errorf("diagnostics %q, want %q in it", oo.Issue[0].Diagnostics, tc.diagnostics)
			}
			if want := map[int]string{401: "Bearer realm=", 403: `error="insufficient_scope"`}[tc.status]; want != "" &&
				!strings.Contains(rec.Header().Get(echo.HeaderWWWAuthenticate), want) {
				t.Errorf("WWW-Authenticate = %q, want %q in it", rec.Header().Get(echo.HeaderWWWAuthenticate), want)
			}
		})
	}
}

func TestPostRecordsAllRejected(t *testing.T) {
	api := newTestAPI(t, MaxBody)
	status, resp, raw := api.post(t, "application/x-ndjson", []byte(`{"kind":"patient","id":"P1"}`+"\n"+`{"kind":"nope","id":"X"}`))
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422: %s", status, raw.Body)
	}
	if resp.Summary.Rejected != 2 || resp.Results[1].Errors[0].Path != "kind" || resp.Results[1].Kind != "nope" {
		t.Errorf("response %+v", resp)
	}
}

func TestGetSchema(t *testing.T) {
	api := newTestAPI(t, MaxBody)
	rec := api.do(http.MethodGet, "/internal/v1/schema", "", nil, "etl")
	if rec.Code != http.StatusOK || rec.Header().Get(echo.HeaderContentType) != MIMESchemaJSON {
		t.Fatalf("status %d type %q", rec.Code, rec.Header().Get(echo.HeaderContentType))
	}
	if !json.Valid(rec.Body.Bytes()) || !bytes.Equal(rec.Body.Bytes(), clinic.Schema()) {
		t.Error("schema body differs from clinic.Schema()")
	}
	if rec := api.do(http.MethodGet, "/internal/v1/schema", "", nil, ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("schema without a token: status %d", rec.Code)
	}
}

// TestRateLimit: requests refused for their token or scope are not charged;
// a throttled client gets the 429 OperationOutcome before any ingest work.
func TestRateLimit(t *testing.T) {
	var served atomic.Int64
	e := echo.New()
	rl := &fhir.RateLimit{Limiter: memory.NewLimiter(), Rate: 0.01, Burst: 2}
	Register(e.Group("/internal/v1"), ingesterFunc(func() { served.Add(1) }), clinic.Schema(),
		Options{Verifier: testCallers(t), RateLimit: rl, Logger: slog.New(slog.DiscardHandler)})
	api := &testAPI{e: e}
	post := func(tok string) *httptest.ResponseRecorder {
		return api.do(http.MethodPost, "/internal/v1/records", MIMENDJSON, []byte("{}\n"), tok)
	}
	if w := post(""); w.Code != http.StatusUnauthorized {
		t.Fatalf("no token: status %d, want 401", w.Code)
	}
	if w := post("reader"); w.Code != http.StatusForbidden {
		t.Fatalf("read scope: status %d, want 403", w.Code)
	}
	for i := range 2 {
		if w := post("etl"); w.Code != http.StatusOK {
			t.Fatalf("request #%d: status %d, want 200: %s", i+1, w.Code, w.Body)
		}
	}
	w := post("etl")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"throttled"`) {
		t.Fatalf("third request: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if n := served.Load(); n != 2 {
		t.Errorf("ingest ran %d times, want 2 (not for the throttled request)", n)
	}
	if w := post("etl-2"); w.Code != http.StatusOK {
		t.Errorf("another client: status %d, want 200", w.Code)
	}
}

// ingesterFunc is an Ingester that lands every record, calling f per batch.
type ingesterFunc func()

func (f ingesterFunc) IngestBatch(_ context.Context, b *ingest.Batch, _ ingest.Progress) ([]ingest.Result, ingest.Summary, error) {
	f()
	raw := b.Records
	res := make([]ingest.Result, len(raw))
	for i := range res {
		res[i] = ingest.Result{Index: i, Outcome: ingest.OutcomeCreated}
	}
	return res, ingest.Summary{Created: len(raw)}, nil
}
