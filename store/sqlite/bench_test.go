package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// benchObservation returns a realistic ~1 KB Observation with 5 index rows.
func benchObservation(i int, patient string, code string, at time.Time) store.ResourceWrite {
	id := fmt.Sprintf("obs-%09d", i)
	ts := at.Format(time.RFC3339)
	body := `,"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey","display":"Survey"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"` + code + `","display":"Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"}],"text":"PHQ-9 total score"},` +
		`"subject":{"reference":"Patient/` + patient + `"},"encounter":{"reference":"Encounter/enc-` + strconv.Itoa(i/4) + `"},` +
		`"effectiveDateTime":"` + ts + `","issued":"` + ts + `","performer":[{"reference":"Practitioner/pr-1"}],` +
		`"valueQuantity":{"value":` + strconv.Itoa(i%27) + `,"unit":"{score}","system":"http://unitsofmeasure.org","code":"{score}"},` +
		`"interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"N","display":"Normal"}]}],` +
		`"note":[{"text":"Administered during ketamine infusion session follow-up; patient completed questionnaire in clinic before discharge."}],` +
		`"extension":[{"url":"http://ketabridge.example.org/StructureDefinition/session-phase","valueCode":"post-infusion"}]`
	return storetest.Res("Observation", id, patient, body,
		storetest.Ref("patient", "Patient/"+patient),
		storetest.Ref("subject", "Patient/"+patient),
		storetest.Token("code", "http://loinc.org", code),
		storetest.Token("status", "", "final"),
		storetest.Date("date", at, at.Add(999*time.Millisecond)),
	)
}

var benchCodes = []string{"44261-6", "8867-4", "8480-6", "8462-4", "9279-1", "59408-5", "2708-6", "8310-5"}

func benchBatch(start, n, patients int, base time.Time) []store.RecordWrite {
	recs := make([]store.RecordWrite, n)
	for j := range recs {
		i := start + j
		p := "pat-" + strconv.Itoa(i%patients)
		at := base.Add(time.Duration(i) * time.Minute)
		rw := benchObservation(i, p, benchCodes[i%len(benchCodes)], at)
		recs[j] = storetest.Rec("session", rw.ID, "h1", rw)
	}
	return recs
}

// BenchmarkApply writes batches of 1000 new records of one ~1 KB resource and
// 5 index rows each.
func BenchmarkApply(b *testing.B) {
	s := openTemp(b, storetest.NewFakeClock(storetest.T0))
	ctx := context.Background()
	const batch = 1000
	var batches [][]store.RecordWrite
	for i := range b.N {
		batches = append(batches, benchBatch(i*batch, batch, 1000, storetest.T0))
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := s.Apply(ctx, batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "resources/s")
}

// BenchmarkApplyUnchanged re-applies batches whose bodies are unchanged (new
// record hashes): the common re-send.
func BenchmarkApplyUnchanged(b *testing.B) {
	s := openTemp(b, storetest.NewFakeClock(storetest.T0))
	ctx := context.Background()
	const batch = 1000
	recs := benchBatch(0, batch, 1000, storetest.T0)
	if _, err := s.Apply(ctx, recs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		for j := range recs {
			recs[j].Hash = "h" + strconv.Itoa(i+2)
		}
		if _, err := s.Apply(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "resources/s")
}

// benchSize is the number of Observations BenchmarkSearch loads:
// KETABRIDGE_BENCH_RESOURCES, default 20000 (set 1000000 for the p99 target).
func benchSize(b *testing.B) int {
	if v := os.Getenv("KETABRIDGE_BENCH_RESOURCES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("KETABRIDGE_BENCH_RESOURCES=%q: want an integer >= 1000", v)
		}
		return n
	}
	return 20000
}

// benchDir holds databases the benchmarks build once per process.
var benchDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		_ = os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

var searchDBs = map[int]string{}

// searchDB returns the path of a database of n bench Observations, built on
// first use (benchmarks run several times per process).
func searchDB(b *testing.B, n int) string {
	if p, ok := searchDBs[n]; ok {
		return p
	}
	if benchDir == "" {
		d, err := os.MkdirTemp("", "ketabridge-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchDir = d
	}
	path := filepath.Join(benchDir, fmt.Sprintf("search-%d.db", n))
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	patients := max(n/100, 1)
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	loadStart := time.Now()
	for i := 0; i < n; i += 1000 {
		if _, err := s.Apply(ctx, benchBatch(i, min(1000, n-i), patients, base)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d resources in %v (%.0f/s)", n, time.Since(loadStart), float64(n)/time.Since(loadStart).Seconds())
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	searchDBs[n] = path
	return path
}

// BenchmarkSearch measures
// Observation?patient=X&code=Y&date=ge..&date=le..&_count=50 on a store of
// KETABRIDGE_BENCH_RESOURCES Observations (100 per patient, 8 codes, one per
// minute), reporting p50 and p99 latency.
func BenchmarkSearch(b *testing.B) {
	n := benchSize(b)
	ctx := context.Background()
	path := searchDB(b, n)
	s, err := sqlite.Open(ctx, path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	patients := max(n/100, 1)
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	span := time.Duration(n) * time.Minute
	query := func(r *rand.Rand) store.Query {
		p := "pat-" + strconv.Itoa(r.IntN(patients))
		lo := base.Add(time.Duration(r.Int64N(int64(span / 2))))
		hi := lo.Add(span / 2)
		return store.Query{
			Type: "Observation",
			Clauses: []store.Clause{
				{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/" + p}}},
				{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "http://loinc.org", Code: benchCodes[r.IntN(len(benchCodes))]}}},
				{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Ge, Lo: lo.UnixMilli(), Hi: lo.UnixMilli() + 999}}},
				{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Le, Lo: hi.UnixMilli(), Hi: hi.UnixMilli() + 999}}},
			},
			Count: 50,
			Total: true,
		}
	}
	if plan, err := s.ExplainSearch(ctx, query(rand.New(rand.NewPCG(1, 1)))); err == nil {
		b.Logf("query plan:\n%s", plan)
	}
	r := rand.New(rand.NewPCG(2, 2))
	lat := make([]time.Duration, 0, b.N)
	matched := 0
	b.ResetTimer()
	for range b.N {
		q := query(r)
		t0 := time.Now()
		res, err := s.Search(ctx, q)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		matched += len(res.Resources)
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(matched)/float64(b.N), "matches/op")
}
