package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/store"
)

// memStore is a fake at the I/O seam: an ingest.Writer with hash-based
// unchanged detection and version counting.
type memStore struct {
	mu        sync.Mutex
	sources   map[store.RecordKey][]byte
	hashes    map[store.RecordKey]string
	versions  map[store.Key]int64
	bodies    map[store.Key][]byte
	applies   int
	failApply error
	// writes records each Apply's records and resources.
	writes [][2]int
}

var _ ingest.Writer = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{sources: map[store.RecordKey][]byte{}, hashes: map[store.RecordKey]string{},
		versions: map[store.Key]int64{}, bodies: map[store.Key][]byte{}}
}

func (m *memStore) Apply(_ context.Context, recs []store.RecordWrite) ([]store.WriteResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failApply != nil {
		return nil, m.failApply
	}
	m.applies++
	n := 0
	for i := range recs {
		n += len(recs[i].Resources)
	}
	m.writes = append(m.writes, [2]int{len(recs), n})
	out := make([]store.WriteResult, len(recs))
	for i, r := range recs {
		k := store.RecordKey{Kind: r.Kind, ClinicID: r.ClinicID}
		h, ok := m.hashes[k]
		switch {
		case ok && h == r.Hash:
			out[i].Outcome = store.Unchanged
			continue
		case ok:
			out[i].Outcome = store.Updated
		default:
			out[i].Outcome = store.Created
		}
		m.hashes[k], m.sources[k] = r.Hash, r.Source
		for _, rw := range r.Resources {
			rk := store.Key{Type: rw.Type, ID: rw.ID}
			m.versions[rk]++
			m.bodies[rk] = rw.Body
			out[i].Resources = append(out[i].Resources, store.ResourceResult{Type: rw.Type, ID: rw.ID, Version: m.versions[rk]})
		}
	}
	return out, nil
}

func (m *memStore) SourceRecords(_ context.Context, keys []store.RecordKey) (map[store.RecordKey][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[store.RecordKey][]byte{}
	for _, k := range keys {
		if b, ok := m.sources[k]; ok {
			out[k] = b
		}
	}
	return out, nil
}

type fixedClock struct{}

func (fixedClock) Now() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) }

func newService(st ingest.Writer) *ingest.Service {
	m := mapping.New(mapping.Options{IdentifierSystemBase: "https://sunrise.example/fhir/sid"})
	return ingest.New(st, m, func(any) ([]store.IndexRow, error) { return nil, nil }, fixedClock{})
}

// goodBatch is testdata/good.ndjson as generic JSON objects, in file order:
// ORG1, PAY1, DR1, LOC1, P1, PR1, DX1, COV1, C1, S1.
func goodBatch(t *testing.T) []map[string]any {
	t.Helper()
	data, err := os.ReadFile("testdata/good.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func encode(t *testing.T, recs []map[string]any) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, len(recs))
	for i, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func find(recs []map[string]any, id string) map[string]any {
	for _, r := range recs {
		if r["id"] == id {
			return r
		}
	}
	return nil
}

func TestIngestGoodBatchAndIdempotence(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	svc := newService(st)
	raw := encode(t, goodBatch(t))

	res, sum, err := svc.Ingest(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome != ingest.OutcomeCreated {
			t.Errorf("record %d (%s/%s): outcome %s, errors %v", r.Index, r.Kind, r.ID, r.Outcome, r.Errors)
		}
		if r.Resources < 1 {
			t.Errorf("record %d: %d resources", r.Index, r.Resources)
		}
	}
	if sum.Created != len(raw) || sum.Resources < len(raw) {
		t.Errorf("summary %+v", sum)
	}

	// Re-sending the same batch: everything unchanged.
	res, sum, err = svc.Ingest(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Unchanged != len(raw) || sum.Created+sum.Updated+sum.Rejected != 0 {
		t.Errorf("re-send summary %+v, want all unchanged", sum)
	}

	// One record changed: updated; its references are loaded from the store.
	recs := goodBatch(t)
	s1 := find(recs, "S1")
	s1["sessionNumber"] = 2
	res, sum, err = svc.Ingest(ctx, encode(t, []map[string]any{s1}))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Updated != 1 || res[0].Outcome != ingest.OutcomeUpdated {
		t.Errorf("changed record: %+v %+v", sum, res)
	}
}

func TestIngestRejections(t *testing.T) {
	type mod func(recs []map[string]any) []map[string]any
	set := func(id, path string, v any) mod {
		return func(recs []map[string]any) []map[string]any {
			r := find(recs, id)
			parts := strings.Split(path, ".")
			var cur any = r
			for i, p := range parts {
				m := cur.(map[string]any)
				if i == len(parts)-1 {
					if v == nil {
						delete(m, p)
					} else {
						m[p] = v
					}
					break
				}
				if idx := strings.IndexByte(p, '['); idx >= 0 {
					cur = m[p[:idx]].([]any)[0]
				} else {
					cur = m[p]
				}
			}
			return recs
		}
	}
	tests := []struct {
		name string
		mod  mod
		// want: clinic id -> error path of each rejected record
		want map[string]string
	}{
		{"wrong type", set("P1", "birthDate", 1980), map[string]string{
			"P1": "birthDate", "DX1": "patientId", "COV1": "patientId", "C1": "patientId", "S1": "patientId"}},
		{"missing field", set("DR1", "name", nil), map[string]string{
			"DR1": "name.family", "DX1": "recorderId", "C1": "prescriberId", "S1": "clinicianId"}},
		{"unknown kind", set("LOC1", "kind", "room"), map[string]string{"LOC1": "kind", "S1": "locationId"}},
		{"dangling reference", set("S1", "locationId", "LOC9"), map[string]string{"S1": "locationId"}},
		{"PHQ-9 total wrong", set("S1", "assessments[0].total", 14), map[string]string{"S1": "assessments[0].total"}},
		{"diastolic not below systolic", set("S1", "vitals[0].diastolic", 128), map[string]string{"S1": "vitals[0].diastolic"}},
		{"mg/kg without weight", func(recs []map[string]any) []map[string]any {
			set("S1", "weightKg", nil)(recs)
			return set("S1", "weightTime", nil)(recs)
		}, map[string]string{"S1": "administrations[0].mgPerKg"}},
		{"payer is not a payer", set("PAY1", "type", "partner"), map[string]string{
			"COV1": "payerId", "C1": "coverageId", "S1": "courseId"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			svc := newService(st)
			recs := tc.mod(goodBatch(t))
			res, sum, err := svc.Ingest(context.Background(), encode(t, recs))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				id := recs[r.Index]["id"].(string)
				wantPath, rejected := tc.want[id]
				if !rejected {
					if r.Outcome != ingest.OutcomeCreated {
						t.Errorf("%s: outcome %s %v, want created", id, r.Outcome, r.Errors)
					}
					continue
				}
				if r.Outcome != ingest.OutcomeRejected || r.ID != id || r.Resources != 0 {
					t.Errorf("%s: got %+v, want rejected", id, r)
					continue
				}
				found := false
				for _, fe := range r.Errors {
					found = found || fe.Path == wantPath
				}
				if !found {
					t.Errorf("%s: errors %v, want one at %q", id, r.Errors, wantPath)
				}
				kind := recs[r.Index]["kind"].(string)
				if _, ok := st.sources[store.RecordKey{Kind: kind, ClinicID: id}]; ok {
					t.Errorf("%s: rejected record was stored", id)
				}
			}
			if sum.Rejected != len(tc.want) || sum.Created != len(recs)-len(tc.want) {
				t.Errorf("summary %+v, want %d rejected", sum, len(tc.want))
			}
		})
	}
}

func TestIngestRejectedReferenceSaysWhy(t *testing.T) {
	recs := goodBatch(t)
	find(recs, "P1")["sex"] = "f"
	res, _, err := newService(newMemStore()).Ingest(context.Background(), encode(t, recs))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.ID != "DX1" {
			continue
		}
		if len(r.Errors) != 1 || r.Errors[0].Path != "patientId" ||
			!strings.Contains(r.Errors[0].Message, "patient/P1, which was rejected in this batch") {
			t.Errorf("DX1 errors %v", r.Errors)
		}
	}
}

func TestIngestOrderAndChunks(t *testing.T) {
	// Records reference later records of the batch; tiny chunks exercise the
	// writer pipeline.
	recs := goodBatch(t)
	rev := make([]map[string]any, len(recs))
	for i := range recs {
		rev[i] = recs[len(recs)-1-i]
	}
	st := newMemStore()
	svc := newService(st)
	svc.SetChunk(3)
	var calls []int
	res, sum, err := svc.IngestProgress(context.Background(), encode(t, rev), func(records, _ int) { calls = append(calls, records) })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != len(rev) {
		t.Fatalf("summary %+v, results %+v", sum, res)
	}
	for i, r := range res {
		if r.Index != i || r.ID != rev[i]["id"] {
			t.Errorf("result %d is %+v", i, r)
		}
	}
	if st.applies != 4 {
		t.Errorf("%d store writes, want 4 (chunks of 3)", st.applies)
	}
	if len(calls) == 0 || calls[len(calls)-1] != len(rev) {
		t.Errorf("progress calls %v", calls)
	}
}

// TestIngestChunkResources: a store write holds at most the resource bound
// (PERF-IN-1), except a lone record that maps to more, which is never split;
// outcomes, order and progress are those of one write.
func TestIngestChunkResources(t *testing.T) {
	recs := goodBatch(t)
	one := newMemStore()
	want, wantSum, err := newService(one).Ingest(context.Background(), encode(t, recs))
	if err != nil {
		t.Fatal(err)
	}
	if len(one.writes) != 1 || one.writes[0][1] < 4 {
		t.Fatalf("writes with the defaults: %v, want one of several resources", one.writes)
	}
	for _, bound := range []int{1, 3} {
		st := newMemStore()
		svc := newService(st)
		svc.SetChunkResources(bound)
		var calls []int
		got, sum, err := svc.IngestProgress(context.Background(), encode(t, recs), func(records, _ int) { calls = append(calls, records) })
		if err != nil {
			t.Fatal(err)
		}
		if sum != wantSum || len(got) != len(want) {
			t.Fatalf("bound %d: summary %+v, want %+v", bound, sum, wantSum)
		}
		for i := range got {
			if got[i].Outcome != want[i].Outcome || got[i].ID != want[i].ID || got[i].Resources != want[i].Resources {
				t.Errorf("bound %d: result %d is %+v, want %+v", bound, i, got[i], want[i])
			}
		}
		total := 0
		for _, w := range st.writes {
			if w[1] > bound && w[0] != 1 {
				t.Errorf("bound %d: a write of %d records holds %d resources", bound, w[0], w[1])
			}
			total += w[1]
		}
		if len(st.writes) < 2 || total != wantSum.Resources {
			t.Errorf("bound %d: writes %v, want several, %d resources in all", bound, st.writes, wantSum.Resources)
		}
		if len(calls) == 0 || calls[len(calls)-1] != len(recs) || !slices.IsSorted(calls) {
			t.Errorf("bound %d: progress calls %v", bound, calls)
		}
	}
}

func TestIngestStoreFailure(t *testing.T) {
	st := newMemStore()
	st.failApply = errors.New("disk on fire")
	_, _, err := newService(st).Ingest(context.Background(), encode(t, goodBatch(t)))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v, want the store failure", err)
	}
}

func TestIngestNotAnObject(t *testing.T) {
	res, sum, err := newService(newMemStore()).Ingest(context.Background(),
		[]json.RawMessage{json.RawMessage(`[1,2]`), json.RawMessage(`{"kind":"patient",`)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rejected != 2 || len(res[0].Errors) == 0 || len(res[1].Errors) == 0 {
		t.Errorf("results %+v", res)
	}
}

var _ = clinic.KindPatient

// TestIngestMapsWithRelatedRecords checks that ingest gives the mapper the
// records a record references, from the batch and from the store: the
// course's MedicationRequest carries its protocol's dose, and the session's
// Encounter the course's diagnosis as its reason, also when the session
// arrives alone after the rest is stored.
func TestIngestMapsWithRelatedRecords(t *testing.T) {
	ctx := context.Background()
	recs := goodBatch(t)
	var rest, session []map[string]any
	for _, r := range recs {
		if r["kind"] == "session" {
			session = append(session, r)
		} else {
			rest = append(rest, r)
		}
	}
	for name, batch := range map[string][][]map[string]any{
		"one batch":            {recs},
		"session from storage": {rest, session},
	} {
		t.Run(name, func(t *testing.T) {
			st := newMemStore()
			svc := newService(st)
			for _, b := range batch {
				if _, sum, err := svc.Ingest(ctx, encode(t, b)); err != nil || sum.Rejected > 0 {
					t.Fatalf("ingest: %v %+v", err, sum)
				}
			}
			req := st.bodies[store.Key{Type: "MedicationRequest", ID: mapping.MedicationRequestID("C1")}]
			if !bytes.Contains(req, []byte(`"doseAndRate":[{"doseQuantity":`)) {
				t.Errorf("MedicationRequest without the protocol's dose: %s", req)
			}
			enc := st.bodies[store.Key{Type: "Encounter", ID: mapping.ResourceID(clinic.KindSession, "S1")}]
			dx := `"reasonReference":[{"reference":"Condition/` + mapping.ResourceID(clinic.KindDiagnosis, "DX1") + `"}]`
			if !bytes.Contains(enc, []byte(dx)) {
				t.Errorf("Encounter without the course's diagnosis: %s", enc)
			}
		})
	}
}

// TestIngestRemapsUnderNewRules checks that a record stored under older
// mapping rules (another hash prefix) is written again when re-sent, while
// a record stored under the current rules stays unchanged.
func TestIngestRemapsUnderNewRules(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	svc := newService(st)
	raw := encode(t, goodBatch(t))
	if _, _, err := svc.Ingest(ctx, raw); err != nil {
		t.Fatal(err)
	}
	k := store.RecordKey{Kind: "patient", ClinicID: "P1"}
	if !strings.HasPrefix(st.hashes[k], "mapping-"+mapping.Version+":") {
		t.Fatalf("stored hash %q does not name the mapping version", st.hashes[k])
	}
	st.hashes[k] = strings.TrimPrefix(st.hashes[k], "mapping-"+mapping.Version+":") // as stored by older rules
	_, sum, err := svc.Ingest(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Updated != 1 || sum.Unchanged != len(raw)-1 {
		t.Errorf("re-send after a rules change: %+v, want the one old record updated", sum)
	}
}

// TestStoreDefinitions checks which definitions are stored: by default the
// CodeSystems (what the read side indexes today), with types every resource
// of the guide of those types; storing the same definitions again is a no-op.
func TestStoreDefinitions(t *testing.T) {
	defs, err := mapping.Definitions()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, d := range defs {
		count[d.Type]++
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		types []string
		want  int
	}{
		{"default: the whole guide", nil, len(defs)},
		{"whole guide", []string{"CodeSystem", "ValueSet", "StructureDefinition", "ImplementationGuide", "OperationDefinition"}, len(defs)},
		{"value sets only", []string{"ValueSet"}, count["ValueSet"]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			svc := newService(st)
			res, err := svc.StoreDefinitions(ctx, tc.types...)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != store.Created || len(res.Resources) != tc.want {
				t.Errorf("outcome %s with %d resources, want created with %d", res.Outcome, len(res.Resources), tc.want)
			}
			if res, err = svc.StoreDefinitions(ctx, tc.types...); err != nil || res.Outcome != store.Unchanged {
				t.Errorf("second store: %s, %v; want unchanged", res.Outcome, err)
			}
		})
	}
}
