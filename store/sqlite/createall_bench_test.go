package sqlite_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// BenchmarkCreateRecords applies chunks of 256 new records of 8 resources
// with random UUID ids into a store of 102,400 resources: the multi-row
// create of PERF-SQLB-5 and PERF-SQLB-6 (docs/design/architecture.md), as an
// ingest chunk writes it; ns/resource is the time of each Apply per
// resource.
func BenchmarkCreateRecords(b *testing.B) {
	s := openTemp(b, storetest.NewFakeClock(storetest.T0))
	rng := rand.New(rand.NewPCG(1, 2))
	uuid := func() string {
		return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
	}
	n := 0
	chunk := func() []store.RecordWrite {
		var recs []store.RecordWrite
		for range 256 {
			n++
			p := uuid()
			var res []store.ResourceWrite
			for range 8 {
				res = append(res, storetest.Res("Observation", uuid(), p, `,"status":"final"`, storetest.Token("code", "s", "c")))
			}
			recs = append(recs, storetest.Rec("session", fmt.Sprint(n), "h", res...))
		}
		return recs
	}
	for range 50 { // 102,400 resources
		if _, err := s.Apply(b.Context(), chunk()); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c := chunk()
		b.StartTimer()
		if _, err := s.Apply(b.Context(), c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256*8), "ns/resource")
}
