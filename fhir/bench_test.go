package fhir

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

func benchEnv(b *testing.B) *echo.Echo {
	fs := fixture()
	for i := 0; i < 60; i++ {
		id := fmt.Sprintf("b%02d", i)
		fs.put("Observation", id, "p2", t0, obsBody(id, "p2"), obsRows("p2")...)
	}
	s, err := New(Options{
		Store: fs, Base: testBase, Verifier: allowAll, Clock: fixedClock{t0},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	s.Register(e)
	return e
}

// BenchmarkRead measures GET Patient/{id} through Echo, middleware, access
// log (JSON to io.Discard) and the fake store, with a caller whose token
// verification is a map lookup (BenchmarkReadSMART verifies a real token).
func BenchmarkRead(b *testing.B) {
	e := benchEnv(b)
	req := httptest.NewRequest("GET", "/fhir/Patient/p1", nil)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+defaultToken)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkSearchBundle measures a searchset of 50 entries.
func BenchmarkSearchBundle(b *testing.B) {
	e := benchEnv(b)
	req := httptest.NewRequest("GET", "/fhir/Observation?patient=Patient/p2&_count=50", nil)
	req.Header.Set("Authorization", "Bearer "+defaultToken)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// discardWriter is a ResponseWriter that keeps the headers and drops the
// body, as a client reading to the end does: a benchmark's B/op is then the
// handler's, not a recorder's copy of the answer.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkEverythingBundle measures a $everything page of 500 entries
// (the Patient and 499 Observations, about 330 KB) written to a client that
// discards it.
func BenchmarkEverythingBundle(b *testing.B) {
	fs := fixture()
	fs.put("Patient", "p9", "p9", t0, patientBody("p9", "Nine"))
	for i := range 499 {
		id := fmt.Sprintf("e%03d", i)
		fs.put("Observation", id, "p9", t0, obsBody(id, "p9"), obsRows("p9")...)
	}
	s, err := New(Options{
		Store: fs, Base: testBase, Verifier: allowAll, Clock: fixedClock{t0},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	serveEverything(b, s)
}

// BenchmarkEverythingRecords measures a $everything page of 500 entries
// shaped like the bench's synthetic records (PERF-ST-15): the Patient, then
// 16 records of 30 Observations, each record with a Provenance naming its
// Observations, the Patient and a Practitioner.
func BenchmarkEverythingRecords(b *testing.B) {
	fs := fixture()
	fs.put("Patient", "p9", "p9", t0, patientBody("p9", "Nine"))
	n := 0
	for rec := range 16 {
		targets := ""
		for range 30 {
			id := fmt.Sprintf("e%03d", n)
			n++
			fs.put("Observation", id, "p9", t0, obsBody(id, "p9"), obsRows("p9")...)
			targets += `{"reference":"Observation/` + id + `"},`
		}
		pid := fmt.Sprintf("pv%02d", rec)
		fs.put("Provenance", pid, "p9", t0, `{"id":"`+pid+`","target":[`+targets+`{"reference":"Patient/p9"}],`+
			`"recorded":"2024-03-01T10:00:00Z","agent":[{"who":{"reference":"Practitioner/dr1"}},{"who":{"reference":"Organization/org1"}}],"resourceType":"Provenance"}`,
			store.IndexRow{Param: "patient", Kind: store.KindReference, Value: "Patient/p9"})
	}
	page, total, err := fs.Everything(context.Background(), store.EverythingQuery{Patient: "p9", Count: 500})
	if err != nil || len(page) < 490 {
		b.Fatal(len(page), err)
	}
	s, err := New(Options{
		Store: pageStore{fs, page, total}, Base: testBase, Verifier: allowAll, Clock: fixedClock{t0},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	serveEverything(b, s)
}

// pageStore answers Everything with one page, copied as a read cache's
// hit is, so that a benchmark measures the handler, not the fake store's
// scan.
type pageStore struct {
	*fakeStore
	page  []store.Resource
	total int
}

func (p pageStore) Everything(context.Context, store.EverythingQuery) ([]store.Resource, int, error) {
	return slices.Clone(p.page), p.total, nil
}

// serveEverything measures s answering Patient/p9/$everything?_count=500
// (a page of at least 300 KB) to a writer that discards it.
func serveEverything(b *testing.B, s *Server) {
	b.Helper()
	e := echo.New()
	s.Register(e)
	req := httptest.NewRequest("GET", "/fhir/Patient/p9/$everything?_count=500", nil)
	req.Header.Set("Authorization", "Bearer "+defaultToken)
	b.ReportAllocs()
	for b.Loop() {
		w := &discardWriter{h: http.Header{}}
		e.ServeHTTP(w, req)
		if w.code != 200 || w.n < 300_000 {
			b.Fatal(w.code, w.n)
		}
	}
}
