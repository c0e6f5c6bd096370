package cached

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestAccessKey: every two different restrictions get different keys, the
// same restriction built twice the same key, and a key is a hash.
func TestAccessKey(t *testing.T) {
	survey := store.Clause{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "survey"}}}
	notSurvey := survey
	notSurvey.Not = true
	terms := func(ts ...store.AccessTerm) *store.Access { return &store.Access{Terms: ts} }
	pt := func(ps ...string) store.AccessTerm { return store.AccessTerm{Patients: ps} }
	distinct := []struct {
		name string
		a    *store.Access
	}{
		{"none", nil},
		{"no terms", terms()},
		{"one open term", terms(store.AccessTerm{})},
		{"p1", terms(pt("p1"))},
		{"p1 p2", terms(pt("p1", "p2"))},
		{"p1, p2", terms(pt("p1"), pt("p2"))},
		{"p1p2", terms(pt("p1p2"))},
		{"p1 p2, p3", terms(pt("p1", "p2"), pt("p3"))},
		{"p1, p2 p3", terms(pt("p1"), pt("p2", "p3"))},
		{"p1 as a type", terms(store.AccessTerm{Types: []string{"p1"}})},
		{"p1 survey", terms(store.AccessTerm{Patients: []string{"p1"}, Clauses: []store.Clause{survey}})},
		{"p1 not survey", terms(store.AccessTerm{Patients: []string{"p1"}, Clauses: []store.Clause{notSurvey}})},
		{"p1 Observation", terms(store.AccessTerm{Patients: []string{"p1"}, Types: []string{"Observation"}})},
	}
	q := store.Query{Type: "Observation", Count: 20}
	seen := map[string]string{}
	for _, tc := range distinct {
		k, ok := accessKey("search", q, tc.a)
		if !ok {
			t.Fatalf("%s: not encodable", tc.name)
		}
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share a key", tc.name, other)
		}
		seen[k] = tc.name
		if len(k) != 64 || strings.Contains(k, "p1") {
			t.Errorf("%s: key %q is not a SHA-256 in hex", tc.name, k)
		}
	}
	a1, _ := accessKey("search", q, terms(pt("p1", "p2"), store.AccessTerm{Clauses: []store.Clause{survey}}))
	a2, _ := accessKey("search", q, terms(pt("p1", "p2"), store.AccessTerm{Patients: []string{}, Clauses: []store.Clause{survey}}))
	if a1 != a2 {
		t.Error("the same restriction built twice has two keys")
	}
	if k, _ := accessKey("everything", q, nil); seen[k] != "" {
		t.Error("search and everything share a key")
	}
}

// BenchmarkAccessKey is the key of a search under a payer's restriction of
// 2,000 patients (storetest.BenchAccess), next to a search without one.
func BenchmarkAccessKey(b *testing.B) {
	q := storetest.BenchSearchQuery(rand.New(rand.NewPCG(1, 1)), 20000)
	for _, tc := range []struct {
		name string
		a    *store.Access
	}{{"unrestricted", nil}, {"payer", storetest.BenchAccess(20000)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				accessKey("search", q, tc.a)
			}
		})
	}
}

// TestBucketNames: the "r:" stamp a resource is filed under is the same
// name it was before the table (CACHE-5): "r:" and its FNV hash modulo the
// bucket count, for every bucket, whatever the count. Replicas of different
// versions sharing a Redis must agree on it.
func TestBucketNames(t *testing.T) {
	for _, n := range []int{1, 7, 1000, DefaultBuckets} {
		s := &Store{opts: Options{Buckets: n}}
		s.bucketNames, s.bucketEnds = bucketTable(n)
		for i := range n {
			want := "r:" + strconv.Itoa(i)
			start := uint32(0)
			if i > 0 {
				start = s.bucketEnds[i-1]
			}
			if got := s.bucketNames[start:s.bucketEnds[i]]; got != want {
				t.Fatalf("%d buckets: name %d = %q, want %q", n, i, got, want)
			}
		}
		for _, id := range []string{"p1", "p2", "0b9f6e2c-6f0e-4c1e-9d7a-3f6c2b1a0e11", "", "x"} {
			want := "r:" + strconv.FormatUint(fnv("Observation", id)%uint64(n), 10)
			if got := s.bucket("Observation", id); got != want {
				t.Errorf("%d buckets: bucket(Observation, %q) = %q, want %q", n, id, got, want)
			}
		}
	}
}
