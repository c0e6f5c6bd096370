package server

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// BenchmarkDisclosureNoActor measures what reading the Consents naming no
// actor (docs/design/security.md PRIV-20) adds to a partner's disclosure
// decision, on a SQLite store of 300 synthetic patients: alternately, in
// one process, the query the decision made before (Consent?actor= the
// partner, every page) and the query it adds (the no-actor Consents of
// the patients the first names, by compartment and actor:missing), with
// the whole decision (fhir.ReadDisclosure, both and the parsing) beside
// them; each reported in µs per call.
func BenchmarkDisclosureNoActor(b *testing.B) {
	raw, err := SynthRecords(300, 1, DemoStart)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), store.SystemClock{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	m := mapping.New(mapping.Options{Organization: synth.OrgClinic})
	if _, sum, err := ingest.New(st, m, search.Extract, store.SystemClock{}).Ingest(ctx, raw); err != nil || sum.Rejected > 0 {
		b.Fatalf("ingest: %v %+v", err, sum)
	}
	org := mapping.ResourceID(clinic.KindOrganization, synth.OrgPartnerRiverbend)
	p, _ := search.Lookup("Consent", "actor")
	all := func(q store.Query) []store.Resource {
		var out []store.Resource
		q.Count = search.MaxCount
		for {
			res, err := st.Search(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, res.Resources...)
			if !res.More || len(res.Resources) == 0 {
				return out
			}
			q.Offset += len(res.Resources)
		}
	}
	named := store.Query{Type: "Consent", Clauses: []store.Clause{{Param: p.Name, Kind: store.KindReference,
		Values: []store.Value{{Str: "Organization/" + org}}}}}
	var patients []string
	for _, r := range all(named) {
		patients = append(patients, r.Patient)
	}
	slices.Sort(patients)
	patients = slices.Compact(patients)
	if len(patients) == 0 {
		b.Fatal("no Consent names the partner")
	}
	missing := true
	noActor := store.Query{Type: "Consent", Patients: patients, Clauses: []store.Clause{{Param: p.Name,
		Kind: store.KindReference, Missing: &missing}}}
	var tNamed, tNoActor, tDecision time.Duration
	n := 0
	for i := 0; b.Loop(); i++ {
		steps := []func(){
			func() { s := time.Now(); all(named); tNamed += time.Since(s) },
			func() { s := time.Now(); all(noActor); tNoActor += time.Since(s) },
			func() {
				s := time.Now()
				if _, err := fhir.ReadDisclosure(ctx, st, auth.DisclosurePolicy{}, auth.RolePartner, org, time.Now()); err != nil {
					b.Fatal(err)
				}
				tDecision += time.Since(s)
			},
		}
		for j := range steps {
			steps[(i+j)%len(steps)]()
		}
		n++
	}
	b.ReportMetric(float64(len(patients)), "patients-named")
	b.ReportMetric(float64(tNamed.Microseconds())/float64(n), "named-query-µs")
	b.ReportMetric(float64(tNoActor.Microseconds())/float64(n), "no-actor-query-µs")
	b.ReportMetric(float64(tDecision.Microseconds())/float64(n), "decision-µs")
}
