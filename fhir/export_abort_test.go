package fhir

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestExportFileAbortedMidway: an export file whose writing fails after its
// status and first bytes were sent ends in a broken connection, not in a
// body that ends cleanly (the chunked encoding's last chunk or a gzip
// trailer), so a bulk client never takes a cut file for the whole file
// (PERF-ST-2, BULK-8). The failure here is a stored body that _elements
// cannot rewrite, sorted after more than one buffer of good lines.
func TestExportFileAbortedMidway(t *testing.T) {
	env := newExportEnv(t, ExportOptions{})
	pad := strings.Repeat("x", 30_000)
	var recs []store.RecordWrite
	for i := range 120 { // ~3.6 MB of lines: the first buffer goes out before the bad one
		id := "big" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		recs = append(recs, storetest.Rec("session", id, "h1", storetest.Res("Observation", id, "p1",
			`,"status":"final","code":{"text":"`+pad+`"},"subject":{"reference":"Patient/p1"}`,
			storetest.Ref("patient", "Patient/p1"))))
	}
	// Not JSON: the rewrite of _elements fails on it. Its id sorts last.
	recs = append(recs, storetest.Rec("session", "zz-broken", "h1", storetest.Res("Observation", "zz-broken", "p1",
		`,"status":`, storetest.Ref("patient", "Patient/p1"))))
	env.apply(recs...)
	env.clock.Advance(time.Second)

	status := env.kickoff("sys", http.MethodGet, "/fhir/$export?_type=Observation&_elements=status", "")
	env.runJobs()
	m := env.manifest("sys", status)
	var url string
	for _, o := range m.Output {
		if o.Type == "Observation" {
			url = strings.TrimPrefix(o.URL, "http://localhost:8080")
		}
	}
	if url == "" {
		t.Fatalf("no Observation file in %+v", m.Output)
	}
	srv := httptest.NewServer(env.e)
	defer srv.Close()
	for _, gz := range []bool{false, true} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+url, nil)
		req.Header.Set("Authorization", "Bearer sys")
		req.Header.Set("Accept", MIMENDJSON)
		if gz {
			// Set by hand, so the transport does not decompress: the
			// test reads the raw gzip stream and then inflates it.
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("gzip %v: status %d", gz, resp.StatusCode)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("gzip %v: the file of %d bytes read to its end without an error: a cut file looks whole", gz, len(body))
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("gzip %v: read error %v, want an unexpected EOF", gz, err)
		}
		if len(body) == 0 {
			t.Errorf("gzip %v: nothing arrived before the abort: the failure did not come mid-file", gz)
		}
	}
}
