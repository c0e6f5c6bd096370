package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// The micro-benchmarks every SQL backend runs on the same data: a backend's
// bench_test.go opens a store and hands it to these, so the backends'
// figures compare.

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
	return Res("Observation", id, patient, body,
		Ref("patient", "Patient/"+patient),
		Ref("subject", "Patient/"+patient),
		Token("code", "http://loinc.org", code),
		Token("status", "", "final"),
		Date("date", at, at.Add(999*time.Millisecond)),
	)
}

var benchCodes = []string{"44261-6", "8867-4", "8480-6", "8462-4", "9279-1", "59408-5", "2708-6", "8310-5"}

// benchBase is the effective time of the first benchmark Observation.
var benchBase = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)

// BenchBatch returns n new records of one ~1 KB Observation with 5 index
// rows each, numbered from start, spread over patients patients and one
// minute apart from base.
func BenchBatch(start, n, patients int, base time.Time) []store.RecordWrite {
	recs := make([]store.RecordWrite, n)
	for j := range recs {
		i := start + j
		p := "pat-" + strconv.Itoa(i%patients)
		at := base.Add(time.Duration(i) * time.Minute)
		rw := benchObservation(i, p, benchCodes[i%len(benchCodes)], at)
		recs[j] = Rec("session", rw.ID, "h1", rw)
	}
	return recs
}

// BenchApply writes batches of 1000 new records of one ~1 KB resource and 5
// index rows each into s.
func BenchApply(b *testing.B, s store.Store) {
	ctx := context.Background()
	const batch = 1000
	var batches [][]store.RecordWrite
	for i := range b.N {
		batches = append(batches, BenchBatch(i*batch, batch, 1000, T0))
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

// BenchApplyUnchanged re-applies batches whose bodies are unchanged (new
// record hashes) to s: the common re-send.
func BenchApplyUnchanged(b *testing.B, s store.Store) {
	ctx := context.Background()
	const batch = 1000
	recs := BenchBatch(0, batch, 1000, T0)
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

// BenchLoad writes the n Observations BenchSearch searches (100 per
// patient, 8 codes, one per minute) into s.
func BenchLoad(b *testing.B, s store.Store, n int) {
	ctx := context.Background()
	patients := max(n/100, 1)
	loadStart := time.Now()
	for i := 0; i < n; i += 1000 {
		if _, err := s.Apply(ctx, BenchBatch(i, min(1000, n-i), patients, benchBase)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d resources in %v (%.0f/s)", n, time.Since(loadStart), float64(n)/time.Since(loadStart).Seconds())
}

// BenchSearchQuery returns a random
// Observation?patient=X&code=Y&date=ge..&date=le..&_count=50&_total=accurate
// over a store BenchLoad filled with n Observations.
func BenchSearchQuery(r *rand.Rand, n int) store.Query {
	patients := max(n/100, 1)
	span := time.Duration(n) * time.Minute
	p := "pat-" + strconv.Itoa(r.IntN(patients))
	lo := benchBase.Add(time.Duration(r.Int64N(int64(span / 2))))
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

// BenchAccess returns the access restriction of a payer bound to 2,000
// patients in 3 terms, over a store BenchLoad filled with n Observations:
// every patient of the store (so a search finds what it finds without it)
// and patients of no resource, each term with the kind of clauses access
// control adds (a token, and a :not of a token the data has).
func BenchAccess(n int) *store.Access {
	const patients = 2000
	status := store.Clause{Param: "status", Kind: store.KindToken, Values: []store.Value{{Code: "final"}}}
	notCode := store.Clause{Param: "code", Kind: store.KindToken, Not: true, Values: []store.Value{{System: "http://loinc.org", Code: "72133-2"}}}
	terms := []store.AccessTerm{{Clauses: []store.Clause{status}}, {Clauses: []store.Clause{notCode}}, {Clauses: []store.Clause{status, notCode}}}
	stored := max(n/100, 1)
	for i := range max(patients, stored) {
		p := "pat-" + strconv.Itoa(i)
		if i >= stored {
			p = "other-" + strconv.Itoa(i)
		}
		terms[i%3].Patients = append(terms[i%3].Patients, p)
	}
	return &store.Access{Terms: terms}
}

// BenchSearch runs BenchSearchQuery on s, which BenchLoad filled with n
// Observations, reporting p50 and p99 latency.
func BenchSearch(b *testing.B, s store.Store, n int) {
	benchSearch(b, s, func(r *rand.Rand) store.Query { return BenchSearchQuery(r, n) })
}

// BenchSearchAccess runs BenchSearchQuery on s (filled by BenchLoad with n
// Observations) alternately as it is and under BenchAccess, the search of
// a payer client: the pairs run under the same load, so the ratio of
// their latencies holds on a busy machine. It reports the latencies of
// both and the ratio of the medians (design target: at most 1.2).
func BenchSearchAccess(b *testing.B, s store.Store, n int) {
	benchSearchPair(b, s, BenchAccess(n), func(r *rand.Rand) store.Query { return BenchSearchQuery(r, n) })
}

// BenchSearchCodeQuery returns a random
// Observation?code=Y&date=ge..&date=le..&_count=50&_total=accurate (no
// patient: a system-wide search) over a store BenchLoad filled with n
// Observations.
func BenchSearchCodeQuery(r *rand.Rand, n int) store.Query {
	q := BenchSearchQuery(r, n)
	q.Clauses = q.Clauses[1:]
	return q
}

// BenchSearchCodeAccess is BenchSearchAccess with BenchSearchCodeQuery: a
// payer's search of all its patients against the same search of the
// whole store.
func BenchSearchCodeAccess(b *testing.B, s store.Store, n int) {
	benchSearchPair(b, s, BenchAccess(n), func(r *rand.Rand) store.Query { return BenchSearchCodeQuery(r, n) })
}

// benchSearchPair runs each query next returns on s twice, as it is and
// under access (in alternating order), reporting both latencies and the
// ratio of their medians.
func benchSearchPair(b *testing.B, s store.Store, access *store.Access, next func(*rand.Rand) store.Query) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(2, 2))
	base := make([]time.Duration, 0, b.N)
	restricted := make([]time.Duration, 0, b.N)
	matched := 0
	run := func(q store.Query, lat *[]time.Duration) int {
		t0 := time.Now()
		res, err := s.Search(ctx, q)
		*lat = append(*lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		return len(res.Resources)
	}
	b.ResetTimer()
	for i := range b.N {
		q := next(r)
		qa := q
		qa.Access = access
		if i%2 == 0 {
			run(q, &base)
			matched += run(qa, &restricted)
		} else {
			matched += run(qa, &restricted)
			run(q, &base)
		}
	}
	b.StopTimer()
	bp50, bp99 := percentiles(base)
	ap50, ap99 := percentiles(restricted)
	b.ReportMetric(bp50, "p50-ms")
	b.ReportMetric(bp99, "p99-ms")
	b.ReportMetric(ap50, "access-p50-ms")
	b.ReportMetric(ap99, "access-p99-ms")
	b.ReportMetric(ap50/bp50, "access/p50")
	b.ReportMetric(float64(matched)/float64(b.N), "matches/op")
}

// percentiles returns the p50 and p99 of lat in milliseconds (lat sorted).
func percentiles(lat []time.Duration) (p50, p99 float64) {
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000 }
	return pct(0.5), pct(0.99)
}

// benchSearch runs the queries next returns on s, reporting p50 and p99
// latency and the matches per query.
func benchSearch(b *testing.B, s store.Store, next func(*rand.Rand) store.Query) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(2, 2))
	lat := make([]time.Duration, 0, b.N)
	matched := 0
	b.ResetTimer()
	for range b.N {
		q := next(r)
		t0 := time.Now()
		res, err := s.Search(ctx, q)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		matched += len(res.Resources)
	}
	b.StopTimer()
	p50, p99 := percentiles(lat)
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(float64(matched)/float64(b.N), "matches/op")
}

// BenchEverything runs Patient/$everything of a random patient on s, which
// BenchLoad filled with n Observations (100 per patient), one page of
// count resources with the compartment's total, reporting p50 and p99
// latency: with count under 100, the page is smaller than the
// compartment, the case where the total takes more than the page.
func BenchEverything(b *testing.B, s store.Store, n, count int) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 3))
	patients := max(n/100, 1)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		q := store.EverythingQuery{Patient: "pat-" + strconv.Itoa(r.IntN(patients)), Count: count}
		t0 := time.Now()
		rs, total, err := s.Everything(ctx, q)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if len(rs) == 0 || total < len(rs) {
			b.Fatalf("%s: %d resources, total %d", q.Patient, len(rs), total)
		}
	}
	b.StopTimer()
	p50, p99 := percentiles(lat)
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
}

// BenchAuth measures a refresh-token exchange's storage work on s: read the
// client, find the grant by its refresh hash, rotate the hash, and list the
// revocations since a minute ago (what the resource server polls).
func BenchAuth(b *testing.B, s store.AuthStore) {
	ctx := context.Background()
	c := store.Client{ID: "bench-app", Name: "Bench", Kind: store.ClientPublic,
		RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"launch/patient", "patient/*.rs", "offline_access"},
		Origins: []string{"https://app.example"}, Created: T0}
	if err := s.PutClient(ctx, c); err != nil {
		b.Fatal(err)
	}
	g := store.Grant{ID: "bench-grant", ClientID: c.ID, UserID: "u1", Scope: "patient/*.rs offline_access",
		Patient: "p1", RefreshHash: "r0", Created: T0, Expires: T0.Add(90 * 24 * time.Hour)}
	if err := s.CreateGrant(ctx, g); err != nil {
		b.Fatal(err)
	}
	hash := g.RefreshHash
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.GetClient(ctx, c.ID); err != nil {
			b.Fatal(err)
		}
		got, err := s.FindGrantByRefresh(ctx, hash)
		if err != nil {
			b.Fatal(err)
		}
		next := "r" + strconv.Itoa(i+1)
		if err := s.RotateRefresh(ctx, got.ID, hash, next); err != nil {
			b.Fatal(err)
		}
		hash = next
		if _, err := s.RevokedSince(ctx, time.Now().Add(-time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}
