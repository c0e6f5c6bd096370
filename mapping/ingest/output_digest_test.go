package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
)

// captureStore is an ingest.Writer that keeps every record write it is
// handed (bodies, index rows, hashes, sources) and reports each as created.
type captureStore struct {
	mu   sync.Mutex
	recs []store.RecordWrite
	keep bool
	n    int
}

func (c *captureStore) Apply(_ context.Context, recs []store.RecordWrite) ([]store.WriteResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]store.WriteResult, len(recs))
	for i, r := range recs {
		if c.keep {
			c.recs = append(c.recs, r)
		}
		c.n += len(r.Resources)
		out[i].Outcome = store.Created
		for _, rw := range r.Resources {
			out[i].Resources = append(out[i].Resources, store.ResourceResult{Type: rw.Type, ID: rw.ID, Version: 1})
		}
	}
	return out, nil
}

func (c *captureStore) SourceRecords(context.Context, []store.RecordKey) (map[store.RecordKey][]byte, error) {
	return map[store.RecordKey][]byte{}, nil
}

// synthBatch is the synthetic data set of the bench (mapping/synth) for
// patients patients, one raw record per line.
func synthBatch(tb testing.TB, patients int) []json.RawMessage {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := synth.Generate(&buf, synth.Options{Patients: patients, Seed: 1}); err != nil {
		tb.Fatal(err)
	}
	var raw []json.RawMessage
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		raw = append(raw, bytes.Clone(sc.Bytes()))
	}
	return raw
}

// outputDigest is the SHA-256 over everything the ingest hands the store for
// the synthetic data set, record by record in key order: kind, clinic id,
// hash, source, and per resource its type, id, compartment, create-only flag,
// the stored body byte for byte and its index rows.
func outputDigest(t *testing.T, patients int) (string, int) {
	t.Helper()
	cs := &captureStore{keep: true}
	svc := ingest.New(cs, mapping.New(mapping.Options{}), search.Extract, fixedClock{})
	_, sum, err := svc.Ingest(context.Background(), synthBatch(t, patients))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rejected != 0 {
		t.Fatalf("%d synthetic records rejected", sum.Rejected)
	}
	slices.SortFunc(cs.recs, func(a, b store.RecordWrite) int {
		if a.Kind != b.Kind {
			return strings.Compare(a.Kind, b.Kind)
		}
		return strings.Compare(a.ClinicID, b.ClinicID)
	})
	h := sha256.New()
	n := 0
	for _, r := range cs.recs {
		fmt.Fprintf(h, "record %q %q %q %d\n", r.Kind, r.ClinicID, r.Hash, len(r.Source))
		h.Write(r.Source)
		for _, rw := range r.Resources {
			n++
			fmt.Fprintf(h, "resource %q %q %q %v %d\n", rw.Type, rw.ID, rw.Patient, rw.CreateOnly, len(rw.Body))
			h.Write(rw.Body)
			for _, ix := range rw.Index {
				fmt.Fprintf(h, "row %q %v %q %q %q %d %d %v\n", ix.Param, ix.Kind, ix.System, ix.Code, ix.Value, ix.Lo, ix.Hi, ix.Num)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// TestStoredOutputUnchanged pins the bytes the ingest stores for the
// synthetic data set (bodies and index rows) to a digest taken before the
// encoder's fast path (docs/design/security.md PERF-IN-4): a speed-up of the
// gateway side must not change a single stored byte. When the mapping rules
// change on purpose (mapping.Version is bumped), take the new digest from
// this test's failure message.
func TestStoredOutputUnchanged(t *testing.T) {
	const (
		patients = 6
		want     = "de1a3a4c780e41d6458b52b957219665993a3116c22299d6b6c1bacea3b05115"
	)
	got, n := outputDigest(t, patients)
	if got != want {
		t.Errorf("stored output of the synthetic data set (%d patients, %d resources, mapping rules %s) changed: digest %s, want %s",
			patients, n, mapping.Version, got, want)
	}
}

// BenchmarkIngestGateway measures the gateway side of the ingest per
// resource: decode, validate, map, encode (fhirjson) and index extraction of
// the synthetic data set, with a store that only counts.
func BenchmarkIngestGateway(b *testing.B) {
	raw := synthBatch(b, 4)
	cs := &captureStore{}
	svc := ingest.New(cs, mapping.New(mapping.Options{}), search.Extract, fixedClock{})
	b.ReportAllocs()
	for b.Loop() {
		cs.n = 0
		if _, _, err := svc.Ingest(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(cs.n), "ns/resource")
}
