package ingestapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// TestStreamedOutcomes: with Accept: application/x-ndjson every record's
// outcome is a line, the records of each store write as soon as it commits;
// when the store fails mid-batch the lines say exactly which records landed
// and which were not stored, and the last line says why it stopped.
func TestStreamedOutcomes(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"), fixedClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &failAfter{Store: st}
	w.n.Store(2) // the second store write fails
	api, _ := asyncAPI(t, st, w)
	good := goodRecords(t)
	body := append(ndjson(t, good), patientWithFamily("P9", `\u001b`)+"\n"...)

	req := httptest.NewRequest(http.MethodPost, "/internal/v1/records", bytes.NewReader(body))
	req.Header.Set(echo.HeaderContentType, MIMENDJSON)
	req.Header.Set(echo.HeaderAccept, "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer etl")
	rec := httptest.NewRecorder()
	api.e.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get(echo.HeaderContentType) != MIMENDJSON {
		t.Fatalf("%d %s: %s", rec.Code, rec.Header().Get(echo.HeaderContentType), rec.Body)
	}
	var lines []string
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 12 {
		t.Fatalf("%d lines, want 11 results and the summary:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	seen := map[int]bool{}
	outcomes := map[string]int{}
	for n, l := range lines[:11] {
		var r Result
		if err := json.Unmarshal([]byte(l), &r); err != nil || seen[r.Index] {
			t.Fatalf("line %d: %s", n, l)
		}
		seen[r.Index] = true
		outcomes[r.Outcome]++
		// The committed records come first, as their write commits.
		if (n < 4) != (r.Outcome == "created") {
			t.Errorf("line %d: %s", n, l)
		}
		if r.Index < 10 {
			k := store.RecordKey{Kind: good[r.Index]["kind"].(string), ClinicID: good[r.Index]["id"].(string)}
			src, err := st.SourceRecords(t.Context(), []store.RecordKey{k})
			if err != nil {
				t.Fatal(err)
			}
			if _, in := src[k]; in != (r.Outcome == "created") {
				t.Errorf("record %d: outcome %s, stored %v", r.Index, r.Outcome, in)
			}
		} else if r.Outcome != "rejected" || r.Line != 11 || r.Errors[0].Path != "name.family" {
			t.Errorf("bad record: %s", l)
		}
	}
	if outcomes["created"] != 4 || outcomes[OutcomeNotStored] != 6 || outcomes["rejected"] != 1 {
		t.Errorf("outcomes %v", outcomes)
	}
	var end StreamEnd
	if err := json.Unmarshal([]byte(lines[11]), &end); err != nil || end.Summary.Created != 4 || end.Summary.Rejected != 1 ||
		!strings.Contains(end.Error, "4 of 11 records were stored") {
		t.Errorf("last line: %s", lines[11])
	}

	// Without a failure: every record, then the summary.
	w.n.Store(1 << 30)
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/internal/v1/records", bytes.NewReader(body))
	req.Header.Set(echo.HeaderContentType, MIMENDJSON)
	req.Header.Set(echo.HeaderAccept, "application/fhir+json;q=0.5, application/x-ndjson")
	req.Header.Set("Authorization", "Bearer etl")
	api.e.ServeHTTP(rec, req)
	lines = strings.Split(strings.TrimSpace(rec.Body.String()), "\n")
	end = StreamEnd{}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &end); err != nil || len(lines) != 12 || end.Error != "" ||
		end.Summary.Created != 6 || end.Summary.Unchanged != 4 || end.Summary.Rejected != 1 {
		t.Errorf("%d lines, last %s", len(lines), lines[len(lines)-1])
	}
}
