package ingestapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// jobStore is a store that keeps jobs.
type jobStore interface {
	store.Store
	store.JobStore
}

// failAfter is an ingest.Writer whose Apply fails from the n-th call on,
// as a store that goes away in the middle of a batch.
type failAfter struct {
	store.Store
	n, calls atomic.Int32
}

func (f *failAfter) Apply(ctx context.Context, recs []store.RecordWrite) ([]store.WriteResult, error) {
	if f.calls.Add(1) >= f.n.Load() {
		return nil, errors.New("connection reset")
	}
	return f.Store.Apply(ctx, recs)
}

// asyncAPI is the API on st answering batches over 5 records with Prefer:
// respond-async asynchronously; wait waits for its background jobs.
func asyncAPI(t *testing.T, st jobStore, w ingest.Writer) (*testAPI, *sync.WaitGroup) {
	svc := ingest.New(w, mapping.New(mapping.Options{}), search.Extract, fixedClock{})
	svc.SetChunk(4)
	e := echo.New()
	wg := &sync.WaitGroup{}
	Register(e.Group("/internal/v1"), svc, clinic.Schema(), Options{Verifier: testCallers(t), Jobs: st, AsyncRecords: 5,
		BaseURL: "https://gw.example/", Logger: slog.New(slog.DiscardHandler), running: wg})
	return &testAPI{e: e, st: st}, wg
}

func TestAsyncBatchSQLite(t *testing.T) {
	testAsyncBatch(t, func(t *testing.T) jobStore {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"), fixedClock{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}

func TestAsyncBatchPostgres(t *testing.T) {
	dbURL := storetest.ServiceURL(t, "KETABRIDGE_TEST_DATABASE_URL")
	testAsyncBatch(t, func(t *testing.T) jobStore {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		u, drop, err := postgres.NewSchema(context.Background(), dbURL, "kb_test_"+hex.EncodeToString(rnd[:]))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = drop(context.Background()) })
		st, err := postgres.Open(t.Context(), u, fixedClock{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}

// testAsyncBatch: a large batch sent with Prefer: respond-async is answered
// 202 with a status URL; the URL answers every record's outcome, to the
// client that sent the batch only, from any process on the store; when the
// store fails mid-batch the job says exactly which records landed
// (docs/design/security.md IN-5). Before, a long batch held the connection
// until the client gave up, never learning what was stored.
func testAsyncBatch(t *testing.T, newStore func(t *testing.T) jobStore) {
	st := newStore(t)
	api, wg := asyncAPI(t, st, st)
	good := goodRecords(t)
	body := ndjson(t, good)
	body = append(body, patientWithFamily("P9", `\u0000`)+"\n"...) // 11 records, one bad

	post := func(api *testAPI, body []byte, prefer string) *httpResult {
		r := httptest.NewRequest(http.MethodPost, "/internal/v1/records", bytes.NewReader(body))
		r.Header.Set(echo.HeaderContentType, MIMENDJSON)
		r.Header.Set("Authorization", "Bearer etl")
		if prefer != "" {
			r.Header.Set("Prefer", prefer)
		}
		w := httptest.NewRecorder()
		api.e.ServeHTTP(w, r)
		return &httpResult{code: w.Code, header: w.Header(), body: w.Body.String()}
	}

	// At or under the threshold: answered at once.
	if r := post(api, ndjson(t, good[:5]), "respond-async"); r.code != http.StatusOK {
		t.Fatalf("small batch: %d %s", r.code, r.body)
	}
	// Over it, without the preference: answered at once.
	if r := post(api, body, ""); r.code != http.StatusOK {
		t.Fatalf("no preference: %d %s", r.code, r.body)
	}

	r := post(api, body, "respond-async, wait=10")
	if r.code != http.StatusAccepted || r.header.Get("Preference-Applied") != "respond-async" {
		t.Fatalf("async batch: %d %s", r.code, r.body)
	}
	loc := r.header.Get("Content-Location")
	if !strings.HasPrefix(loc, "https://gw.example/internal/v1/jobs/") || len(loc) != len("https://gw.example/internal/v1/jobs/")+32 {
		t.Fatalf("Content-Location %q", loc)
	}
	path := strings.TrimPrefix(loc, "https://gw.example")
	wg.Wait()

	// Another process on the same store answers it (nothing in memory).
	other, _ := asyncAPI(t, st, st)
	var job JobResponse
	got := other.do(http.MethodGet, path, "", nil, "etl")
	if got.Code != http.StatusOK || json.Unmarshal(got.Body.Bytes(), &job) != nil || job.Response == nil {
		t.Fatalf("status URL: %d %s", got.Code, got.Body)
	}
	if job.Status != string(store.JobDone) || job.Total != 11 || job.Progress != 11 || len(job.Results) != 11 ||
		job.Summary.Unchanged != 10 || job.Summary.Rejected != 1 {
		t.Fatalf("job %+v %+v", job, job.Summary)
	}
	if res := job.Results[10]; res.Outcome != "rejected" || res.Line != 11 || res.Errors[0].Path != "name.family" {
		t.Errorf("bad record: %+v", res)
	}
	// Only its owner sees it; nobody without a token.
	if got := other.do(http.MethodGet, path, "", nil, "etl-2"); got.Code != http.StatusNotFound {
		t.Errorf("another client: %d", got.Code)
	}
	if got := other.do(http.MethodGet, path, "", nil, ""); got.Code != http.StatusUnauthorized {
		t.Errorf("no token: %d", got.Code)
	}
	if got := other.do(http.MethodGet, "/internal/v1/jobs/"+strings.Repeat("0", 32), "", nil, "etl"); got.Code != http.StatusNotFound {
		t.Errorf("unknown job: %d", got.Code)
	}
	// DELETE forgets it.
	if got := other.do(http.MethodDelete, path, "", nil, "etl"); got.Code != http.StatusNoContent {
		t.Errorf("delete: %d", got.Code)
	}
	if got := other.do(http.MethodGet, path, "", nil, "etl"); got.Code != http.StatusNotFound {
		t.Errorf("after delete: %d", got.Code)
	}

	// The store fails on the second chunk write: the job fails, and its
	// results say which records were stored and which were not.
	st2 := newStore(t)
	w := &failAfter{Store: st2}
	w.n.Store(2)
	api2, wg2 := asyncAPI(t, st2, w)
	r = post(api2, body, "respond-async")
	if r.code != http.StatusAccepted {
		t.Fatalf("async batch: %d %s", r.code, r.body)
	}
	wg2.Wait()
	got = api2.do(http.MethodGet, strings.TrimPrefix(r.header.Get("Content-Location"), "https://gw.example"), "", nil, "etl")
	job = JobResponse{}
	if got.Code != http.StatusOK || json.Unmarshal(got.Body.Bytes(), &job) != nil || job.Response == nil {
		t.Fatalf("status URL: %d %s", got.Code, got.Body)
	}
	if job.Status != string(store.JobFailed) || !strings.Contains(job.Error, "4 of 11 records were stored") {
		t.Fatalf("failed job: %+v", job)
	}
	var keys []store.RecordKey
	for _, g := range good {
		keys = append(keys, store.RecordKey{Kind: g["kind"].(string), ClinicID: g["id"].(string)})
	}
	stored, err := st2.SourceRecords(t.Context(), keys)
	if err != nil {
		t.Fatal(err)
	}
	created, notStored := 0, 0
	for i, res := range job.Results[:10] {
		_, in := stored[keys[i]]
		switch {
		case res.Outcome == "created" && in:
			created++
		case res.Outcome == OutcomeNotStored && !in:
			notStored++
		default:
			t.Errorf("record %d (%s): outcome %s, stored %v", i, res.ID, res.Outcome, in)
		}
	}
	if created != 4 || notStored != 6 || job.Progress != 5 {
		t.Errorf("%d created, %d not stored, progress %d; want 4, 6 and 5 (4 + the rejected one)", created, notStored, job.Progress)
	}
}

type httpResult struct {
	code   int
	header http.Header
	body   string
}
