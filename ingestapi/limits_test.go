package ingestapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// newLimitedAPI is the API on a real SQLite store with the given limits.
func newLimitedAPI(t *testing.T, lim ingest.Limits) *testAPI {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"), fixedClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := ingest.New(st, mapping.New(mapping.Options{}), search.Extract, fixedClock{})
	e := echo.New()
	Register(e.Group("/internal/v1"), svc, clinic.Schema(), Options{Verifier: testCallers(t), Limits: lim,
		Logger: slog.New(slog.DiscardHandler)})
	return &testAPI{e: e, st: st}
}

// outcome is the part of an OperationOutcome the tests read.
type outcome struct {
	ResourceType string `json:"resourceType"`
	Issue        []struct {
		Code        string   `json:"code"`
		Diagnostics string   `json:"diagnostics"`
		Expression  []string `json:"expression"`
	} `json:"issue"`
}

func readOutcome(t *testing.T, rec *httptest.ResponseRecorder) outcome {
	t.Helper()
	var oo outcome
	if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome (%v): %.300s", err, rec.Body)
	}
	return oo
}

// patientWithFamily is patient P1 of good.ndjson with name.family as given
// (raw JSON string content, escapes as written).
func patientWithFamily(id, family string) string {
	return `{"kind":"patient","id":"` + id + `","mrn":"MRN-0001","name":{"family":"` + family +
		`","given":["Jane"]},"birthDate":"1980-04-12","sex":"female","organizationId":"ORG1"}`
}

// TestPostRecordsBadText: text that is not valid UTF-8 (raw or a lone
// surrogate escape) and control characters are refused naming the field:
// a 422 OperationOutcome for a body of one record, a rejection of that
// record inside a batch whose other records land (docs/design/security.md
// IN-1). Before, they were stored as U+FFFD or as they came, with a 200.
func TestPostRecordsBadText(t *testing.T) {
	api := newTestAPI(t, MaxBody)
	good := goodRecords(t)
	if code, _, rec := api.post(t, MIMENDJSON, ndjson(t, good)); code != http.StatusOK {
		t.Fatalf("good records: %d %s", code, rec.Body)
	}
	bad := map[string]string{
		"invalid UTF-8":   "Do\xffe",
		"lone surrogate":  `Do\ud800e`,
		"NUL":             `Do\u0000e`,
		"escape sequence": `\u001b[2JDoe`,
	}
	for name, family := range bad {
		t.Run(name+" alone", func(t *testing.T) {
			rec := api.do(http.MethodPost, "/internal/v1/records", MIMEJSON, []byte(patientWithFamily("P1", family)), "etl")
			if rec.Code != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422: %s", rec.Code, rec.Body)
			}
			oo := readOutcome(t, rec)
			if len(oo.Issue[0].Expression) != 1 || oo.Issue[0].Expression[0] != "name.family" || oo.Issue[0].Code != "processing" {
				t.Errorf("issue %+v, want name.family", oo.Issue[0])
			}
		})
		t.Run(name+" in a batch", func(t *testing.T) {
			body := "[" + patientWithFamily("P7", "Doe") + "," + patientWithFamily("P8", family) + "]"
			code, resp, rec := api.post(t, MIMEJSON, []byte(body))
			if code != http.StatusOK || len(resp.Results) != 2 {
				t.Fatalf("status %d: %s", code, rec.Body)
			}
			if r := resp.Results[0]; r.Outcome != "created" && r.Outcome != "unchanged" {
				t.Errorf("good record: %+v", r)
			}
			r := resp.Results[1]
			if r.Outcome != "rejected" || r.ID != "P8" || len(r.Errors) != 1 || r.Errors[0].Path != "name.family" {
				t.Errorf("bad record: %+v", r)
			}
		})
	}
	// Nothing of the refused text was stored: P1 is as first sent.
	src, err := api.st.SourceRecords(t.Context(), []storeKey{{Kind: "patient", ClinicID: "P1"}, {Kind: "patient", ClinicID: "P8"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(src) != 1 || !bytes.Contains(src[storeKey{Kind: "patient", ClinicID: "P1"}], []byte(`"family":"Doe"`)) {
		t.Errorf("stored: %q", src)
	}
}

// TestPostRecordsLimits: FHIR's 1 MiB per string, the record limit and the
// batch limits, each answered with the path (docs/design/security.md IN-2,
// IN-3).
func TestPostRecordsLimits(t *testing.T) {
	api := newLimitedAPI(t, ingest.Limits{MaxBytes: 8 << 20, MaxRecordBytes: 3 << 20, MaxRecords: 12})
	good := ndjson(t, goodRecords(t)) // 10 records
	long := strings.Repeat("a", clinic.MaxStringBytes+1)

	// A string over 1 MiB in a record under the record limit: that record
	// is rejected naming the field, the others land.
	code, resp, rec := api.post(t, MIMENDJSON, append(append([]byte{}, good...), patientWithFamily("P9", long)+"\n"...))
	if code != http.StatusOK || len(resp.Results) != 11 || resp.Summary.Created != 10 {
		t.Fatalf("status %d: %.500s", code, rec.Body)
	}
	if r := resp.Results[10]; r.Outcome != "rejected" || r.Line != 11 || len(r.Errors) != 1 || r.Errors[0].Path != "name.family" ||
		!strings.Contains(r.Errors[0].Message, "1048576") {
		t.Errorf("long string: %+v", r)
	}
	// Alone: 422 naming the field.
	rec = api.do(http.MethodPost, "/internal/v1/records", MIMEJSON, []byte(patientWithFamily("P9", long)), "etl")
	if oo := readOutcome(t, rec); rec.Code != 422 || oo.Issue[0].Expression[0] != "name.family" {
		t.Errorf("long string alone: %d %+v", rec.Code, oo)
	}

	// A record over the record limit, in a batch: rejected on its own, by
	// index and line.
	huge := patientWithFamily("P10", strings.Repeat("b", 3<<20))
	code, resp, rec = api.post(t, MIMENDJSON, []byte(patientWithFamily("P11", "Doe")+"\n"+huge+"\n"))
	if code != http.StatusOK || len(resp.Results) != 2 {
		t.Fatalf("record limit in NDJSON: %d %.500s", code, rec.Body)
	}
	if r := resp.Results[1]; r.Outcome != "rejected" || r.Line != 2 || !strings.Contains(r.Errors[0].Message, "limit of 3145728 bytes") {
		t.Errorf("record limit in NDJSON: %+v", r)
	}
	code, resp, rec = api.post(t, MIMEJSON, []byte("["+patientWithFamily("P11", "Doe")+",\n"+huge+"]"))
	if code != http.StatusOK || len(resp.Results) != 2 || resp.Results[1].Outcome != "rejected" || resp.Results[1].Index != 1 {
		t.Fatalf("record limit in an array: %d %.500s", code, rec.Body)
	}
	// Alone: 413.
	rec = api.do(http.MethodPost, "/internal/v1/records", MIMEJSON, []byte(huge), "etl")
	if oo := readOutcome(t, rec); rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(oo.Issue[0].Diagnostics, "3145728") {
		t.Errorf("record limit alone: %d %+v", rec.Code, oo)
	}

	// More records than the batch limit: 413 naming the first one over,
	// and nothing of the batch lands.
	var many bytes.Buffer
	for i := range 13 {
		many.WriteString(patientWithFamily("Q"+strconv.Itoa(i), "Doe") + "\n")
	}
	rec = api.do(http.MethodPost, "/internal/v1/records", MIMENDJSON, many.Bytes(), "etl")
	if oo := readOutcome(t, rec); rec.Code != http.StatusRequestEntityTooLarge || len(oo.Issue[0].Expression) != 1 || oo.Issue[0].Expression[0] != "line 13" {
		t.Errorf("batch limit: %d %+v", rec.Code, oo)
	}
	arr := "[" + strings.TrimSuffix(strings.ReplaceAll(many.String(), "\n", ","), ",") + "]"
	rec = api.do(http.MethodPost, "/internal/v1/records", MIMEJSON, []byte(arr), "etl")
	if oo := readOutcome(t, rec); rec.Code != http.StatusRequestEntityTooLarge || oo.Issue[0].Expression[0] != "[12]" {
		t.Errorf("batch limit in an array: %d %+v", rec.Code, oo)
	}
	if src, _ := api.st.SourceRecords(t.Context(), []storeKey{{Kind: "patient", ClinicID: "Q0"}}); len(src) != 0 {
		t.Error("a record of a refused batch was stored")
	}
	// The body limit.
	rec = api.do(http.MethodPost, "/internal/v1/records", MIMENDJSON, bytes.Repeat([]byte("\n"), 8<<20+1), "etl")
	if readOutcome(t, rec); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("body limit: %d", rec.Code)
	}
}

// TestPostRecordsHugeStringBoundedMemory: a 60 MB string is refused without
// holding the body: the request allocates a small multiple of the record
// limit, not the body (before: 60 MB read whole, decoded, stored and served,
// the process peaking at 1.1 GB).
func TestPostRecordsHugeStringBoundedMemory(t *testing.T) {
	api := newTestAPI(t, MaxBody)
	family := strings.Repeat("x", 60<<20)
	for _, tc := range []struct {
		name, ctype, body string
		status            int
	}{
		{"one record", MIMEJSON, patientWithFamily("P60", family), http.StatusRequestEntityTooLarge},
		{"array", MIMEJSON, "[" + patientWithFamily("P60", family) + "]", http.StatusUnprocessableEntity},
		{"ndjson", MIMENDJSON, patientWithFamily("P60", family) + "\n", http.StatusUnprocessableEntity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			rec := api.do(http.MethodPost, "/internal/v1/records", tc.ctype, body, "etl")
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s: status %d, allocated %.1f MiB during the request", tc.name, rec.Code, float64(alloc)/(1<<20))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %.300s", rec.Code, tc.status, rec.Body)
			}
			// Everything allocated, an upper bound of the request's peak:
			// about 20 MiB measured, the record limit's buffer grown by
			// doubling; the body is 60 MiB.
			if alloc > 8*ingest.DefaultMaxRecordBytes {
				t.Errorf("allocated %d bytes for a refused 60 MB record", alloc)
			}
		})
	}
	if src, _ := api.st.SourceRecords(t.Context(), []storeKey{{Kind: "patient", ClinicID: "P60"}}); len(src) != 0 {
		t.Error("the 60 MB record was stored")
	}
}

// TestNDJSONSameRuleBothDoors: the ingest API keeps the per-line rule of
// `ketabridge import`: a malformed line is rejected with its line number and
// the good lines land (before: the API refused the whole body with 400).
func TestNDJSONSameRuleBothDoors(t *testing.T) {
	api := newTestAPI(t, MaxBody)
	good, err := os.ReadFile("../mapping/ingest/testdata/good.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	body := append(append([]byte("\n"), good...), "{\"kind\":\"patient\",\n"+patientWithFamily("P5", `\u0000`)+"\n"...)
	code, resp, rec := api.post(t, MIMENDJSON, body)
	if code != http.StatusOK || len(resp.Results) != 12 || resp.Summary.Created != 10 || resp.Summary.Rejected != 2 {
		t.Fatalf("status %d: %.800s", code, rec.Body)
	}
	for i, r := range resp.Results[:10] {
		if r.Line != i+2 || r.Index != i {
			t.Errorf("record %d: line %d index %d", i, r.Line, r.Index)
		}
	}
	if r := resp.Results[10]; r.Outcome != "rejected" || r.Line != 12 || !strings.Contains(r.Errors[0].Message, "JSON") {
		t.Errorf("broken line: %+v", r)
	}
	if r := resp.Results[11]; r.Outcome != "rejected" || r.Line != 13 || r.ID != "P5" || r.Errors[0].Path != "name.family" {
		t.Errorf("bad text line: %+v", r)
	}
}

type storeKey = store.RecordKey
