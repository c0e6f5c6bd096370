package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// BenchmarkIngestConsentWatch measures what closing referrals on consent
// withdrawal (docs/design/security.md RFL-6) costs the ingest: each
// iteration ingests the same synthetic patients into two fresh SQLite
// stores, alternately through the plain store and through consentWatch
// (a Task search per patient whose Consents changed, and a Consent search
// per open referral), and reports both rates.
func BenchmarkIngestConsentWatch(b *testing.B) {
	raw, err := SynthRecords(100, 1, DemoStart)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m := mapping.New(mapping.Options{Organization: synth.OrgClinic})
	var plainN, watchedN int
	var plainT, watchedT time.Duration
	run := func(watch bool) {
		b.StopTimer()
		st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), store.SystemClock{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		var w ingest.Writer = st
		if watch {
			d := &Data{log: slog.New(slog.DiscardHandler), closer: &fhir.ReferralCloser{Store: st, Writer: st}}
			w = consentWatch{Store: st, d: d}
		}
		svc := ingest.New(w, m, search.Extract, store.SystemClock{})
		b.StartTimer()
		start := time.Now()
		_, sum, err := svc.Ingest(ctx, raw)
		el := time.Since(start)
		if err != nil || sum.Rejected > 0 {
			b.Fatalf("ingest: %v, %+v", err, sum)
		}
		if watch {
			watchedN, watchedT = watchedN+sum.Resources, watchedT+el
		} else {
			plainN, plainT = plainN+sum.Resources, plainT+el
		}
	}
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first, so neither always runs on a warmer
		// machine.
		run(i%2 == 1)
		run(i%2 == 0)
	}
	b.ReportMetric(float64(plainN)/plainT.Seconds(), "plain-resources/s")
	b.ReportMetric(float64(watchedN)/watchedT.Seconds(), "watched-resources/s")
}
