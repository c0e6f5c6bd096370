package ingestapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// The soaks of 2026-12-06 (docs/benchmarks.md) answered ingests 503 "the
// store failed after 0 of 5 records were stored" outside the Redis holds:
// the records had been committed, and then one Bump of the shared read
// cache, bounded by the Redis client's 500 ms read timeout, did not finish
// on a machine whose two cores were shared eight ways. These tests run the
// API on a real SQLite store behind the read cache, over a cache whose
// Bump fails as a late or absent Redis does (docs/design/security.md IN-6).

// lateCache is a store.Cache whose Bumps fail: every other one while late
// is set (a Redis answering late, but answering), all of them while down.
type lateCache struct {
	store.Cache
	late, down atomic.Bool
	n          atomic.Int64
}

var errLate = errors.New("read tcp: i/o timeout")

func (c *lateCache) Bump(ctx context.Context, stamps []string) error {
	if c.down.Load() || c.late.Load() && c.n.Add(1)%2 == 1 {
		return fmt.Errorf("redis cache: bump: %w: %w", store.ErrUnavailable, errLate)
	}
	return c.Cache.Bump(ctx, stamps)
}

// newCachedAPI is the API on a SQLite store behind the read cache c; the
// base records of good.ndjson (organizations, practitioner, location,
// patient P1 ...) are stored first.
func newCachedAPI(t *testing.T, c store.Cache) (*testAPI, *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	inner, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "test.db"), fixedClock{})
	if err != nil {
		t.Fatal(err)
	}
	st := cached.New(inner, c, cached.Options{})
	t.Cleanup(func() { st.Close() })
	svc := ingest.New(st, mapping.New(mapping.Options{}), search.Extract, fixedClock{})
	e := echo.New()
	Register(e.Group("/internal/v1"), svc, clinic.Schema(), Options{Verifier: testCallers(t),
		Logger: slog.New(slog.DiscardHandler)})
	a := &testAPI{e: e, st: st}
	if code, _, rec := a.post(t, MIMENDJSON, ndjson(t, goodRecords(t))); code != http.StatusOK {
		t.Fatalf("base records: %d %s", code, rec.Body)
	}
	return a, inner
}

// newPatients are n copies of patient P1 of good.ndjson, ids prefix1..n.
func newPatients(t *testing.T, prefix string, n int) []map[string]any {
	p1 := byID(goodRecords(t), "P1")
	out := make([]map[string]any, n)
	for i := range out {
		p := clone(p1)
		p["id"], p["mrn"] = fmt.Sprintf("%s%d", prefix, i+1), fmt.Sprintf("MRN-%s-%d", prefix, i+1)
		out[i] = p
	}
	return out
}

// stored counts the records of recs (patients) that st has stored.
func stored(t *testing.T, st store.Store, recs []map[string]any) int {
	t.Helper()
	keys := make([]store.RecordKey, len(recs))
	for i, r := range recs {
		keys[i] = store.RecordKey{Kind: "patient", ClinicID: r["id"].(string)}
	}
	got, err := st.SourceRecords(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	return len(got)
}

// TestConcurrentBatchesLateCache: batches sent at once queue for the one
// SQLite writer, and a cache whose Bumps fail now and then (every other
// one) delays them but fails none: every batch lands whole with a 200.
// Before the Bump was retried, about half of them were answered 503, each
// saying none of its records had been stored, though all had been.
func TestConcurrentBatchesLateCache(t *testing.T) {
	c := &lateCache{Cache: memory.NewCache(16 << 20)}
	a, inner := newCachedAPI(t, c)
	c.late.Store(true)
	const batches, size = 12, 3
	var wg sync.WaitGroup
	recs := make([][]map[string]any, batches)
	codes := make([]int, batches)
	resps := make([]Response, batches)
	bodies := make([]string, batches)
	for i := range batches {
		recs[i] = newPatients(t, fmt.Sprintf("B%d-P", i), size)
		body := ndjson(t, recs[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := a.do(http.MethodPost, "/internal/v1/records", MIMENDJSON, body, "etl")
			codes[i], bodies[i] = rec.Code, rec.Body.String()
			if rec.Code == http.StatusOK {
				_ = json.Unmarshal(rec.Body.Bytes(), &resps[i])
			}
		}()
	}
	wg.Wait()
	for i := range batches {
		if codes[i] != http.StatusOK {
			t.Errorf("batch %d: %d %.300s; want 200 (%d of its %d records are stored)", i, codes[i], bodies[i],
				stored(t, inner, recs[i]), size)
			continue
		}
		if resps[i].Summary.Created != size {
			t.Errorf("batch %d: summary %+v, want %d created", i, resps[i].Summary, size)
		}
		if n := stored(t, inner, recs[i]); n != size {
			t.Errorf("batch %d: answered 200, but %d of its %d records are stored", i, n, size)
		}
	}
	if c.n.Load() < batches {
		t.Errorf("only %d Bumps while late: the cache was not in the way", c.n.Load())
	}
}

// TestStaleCacheAnswer: when the cache stays away, a batch whose records
// were committed is the documented retryable refusal - 503, Retry-After, an
// OperationOutcome (transient) - and says how many records were stored,
// which is all of them; re-sent once the cache is back, they come back
// unchanged with a 200. Before, the answer said none had been stored.
func TestStaleCacheAnswer(t *testing.T) {
	c := &lateCache{Cache: memory.NewCache(16 << 20)}
	a, inner := newCachedAPI(t, c)
	recs := newPatients(t, "S-P", 3)
	body := ndjson(t, recs)

	c.down.Store(true)
	rec := a.do(http.MethodPost, "/internal/v1/records", MIMENDJSON, body, "etl")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get(echo.HeaderRetryAfter) == "" {
		t.Fatalf("with the cache down: %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get(echo.HeaderRetryAfter))
	}
	oo := readOutcome(t, rec)
	if oo.Issue[0].Code != "transient" {
		t.Errorf("issue code %q, want transient", oo.Issue[0].Code)
	}
	if n := stored(t, inner, recs); n != 3 {
		t.Fatalf("%d of 3 records stored, want 3 (the write committed before the cache failed)", n)
	}
	if d := oo.Issue[0].Diagnostics; !strings.Contains(d, "3 of 3 records were stored") || !strings.Contains(d, "re-send the batch") {
		t.Errorf("diagnostics %q: want it to say 3 of 3 records were stored and to re-send the batch", d)
	}

	c.down.Store(false)
	code, resp, rec := a.post(t, MIMENDJSON, body)
	if code != http.StatusOK || resp.Summary.Unchanged != 3 {
		t.Fatalf("re-sent: %d %+v %.300s; want 200 with 3 unchanged", code, resp.Summary, rec.Body)
	}
}
