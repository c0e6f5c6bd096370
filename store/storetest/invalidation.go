package storetest

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// CachedStores is a read-cached store, the store under it, and the cache's
// hit counter.
type CachedStores struct {
	// Cached is the store with the read cache in front.
	Cached store.Store
	// Inner is the same store without the cache: the truth each cached
	// answer is compared with.
	Inner store.Store
	// Replica, when set, is another replica over the same store and the
	// same shared cache: the probes are asked of it (the writes go through
	// Cached), so a write on one replica is checked on the other.
	Replica store.Store
	// Hits returns how many answers the cache has served so far, on both
	// replicas.
	Hits func() int64
}

// Identifiers of RunInvalidation's data set (the outside organizations of
// the payer and partner views).
const (
	invPayer   = "Organization/payer"
	invPartner = "Organization/partner"
	secSystem  = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
)

// RunInvalidation checks that a read cache drops what a write changes and
// nothing it does not (store/cached, docs/design/security.md CACHE-1): for
// each kind of write (a clinical resource, a Consent withdrawn, a Coverage
// cancelled, a referral Task, a Patient, a resource moved to another
// patient's compartment, a deletion, a batch of updates too large to trace
// compartment by compartment), every answer of a fixed set of probes
// (reads, GetMany, Refs, searches by type, by compartment, under a payer's
// and a partner's access restriction, and $everything, plain and
// restricted) is compared with the store's own answer right after the
// write: no stale answer anywhere. The probes that cannot contain anything
// the write touched must still be hits, counted by the cache's counter.
//
// open returns fresh, empty stores sharing one clock.
func RunInvalidation(t *testing.T, open func(t *testing.T, clock store.Clock) CachedStores) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := open(t, clock)

	hash := func(rw store.ResourceWrite) string { return fmt.Sprintf("%x %s", rw.Body, rw.Patient) }
	write := func(t *testing.T, rws ...store.ResourceWrite) {
		t.Helper()
		clock.Advance(time.Second)
		recs := make([]store.RecordWrite, len(rws))
		for i, rw := range rws {
			recs[i] = Rec(rw.Type, rw.ID, hash(rw), rw)
		}
		if _, err := s.Cached.Apply(ctx, recs); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	obs := func(id, patient, value string, restricted bool) store.ResourceWrite {
		idx := []store.IndexRow{Ref("subject", "Patient/"+patient), Token("code", "http://loinc.org", "8867-4")}
		if restricted {
			idx = append(idx, Token("_security", secSystem, "R"))
		}
		return Res("Observation", id, patient, `,"subject":{"reference":"Patient/`+patient+`"},"value":"`+value+`"`, idx...)
	}
	patient := func(id, name string) store.ResourceWrite {
		return Res("Patient", id, id, `,"name":"`+name+`"`, Str("name", name))
	}
	consent := func(id, patient, status string) store.ResourceWrite {
		return Res("Consent", id, patient, `,"status":"`+status+`"`,
			Ref("patient", "Patient/"+patient), Ref("actor", invPayer), Token("status", "", status))
	}
	coverage := func(id, patient, status string) store.ResourceWrite {
		return Res("Coverage", id, patient, `,"status":"`+status+`"`,
			Ref("patient", "Patient/"+patient), Ref("payor", invPayer), Token("status", "", status))
	}
	task := func(id, patient, status string) store.ResourceWrite {
		return Res("Task", id, patient, `,"status":"`+status+`"`,
			Ref("patient", "Patient/"+patient), Ref("owner", invPartner), Token("status", "", status))
	}

	write(t,
		patient("p1", "Ada"), patient("p2", "Bea"), patient("p3", "Cy"),
		obs("o1a", "p1", "1", false), obs("o1b", "p1", "2", true), obs("o2a", "p2", "3", false),
		consent("c1", "p1", "active"), coverage("v1", "p1", "active"), task("k1", "p1", "requested"),
		Res("Practitioner", "pr1", "", `,"name":"Dr"`, Str("name", "Dr")),
	)
	// A record producing several resources: re-written without one of them,
	// it deletes it.
	clock.Advance(time.Second)
	if _, err := s.Cached.Apply(ctx, []store.RecordWrite{Rec("set", "p1-set", "h1",
		obs("o1c", "p1", "4", false), obs("o1d", "p1", "5", false))}); err != nil {
		t.Fatal(err)
	}
	var bulk []store.ResourceWrite
	for i := range 70 {
		bulk = append(bulk, obs("b"+strconv.Itoa(i), "p3", "1", false))
	}
	write(t, bulk...)

	// The probes. A payer's restriction names its patients (here p1; the
	// store's own decision is upstream, in the key), a partner's Task view
	// the Tasks it owns; "many" names more patients than the cache files
	// under their compartments.
	payerObs := &store.Access{Terms: []store.AccessTerm{{Patients: []string{"p1"}, Types: []string{"Observation"},
		Clauses: []store.Clause{{Param: "_security", Kind: store.KindToken, Not: true, Values: []store.Value{{System: secSystem, Code: "R"}}}}}}}
	many := []string{"p1", "p2"}
	for i := range 10 {
		many = append(many, "n"+strconv.Itoa(i))
	}
	manyObs := &store.Access{Terms: []store.AccessTerm{{Patients: many, Types: []string{"Observation"}}}}
	partnerTasks := &store.Access{Terms: []store.AccessTerm{{Types: []string{"Task"},
		Clauses: []store.Clause{{Param: "owner", Kind: store.KindReference, Values: []store.Value{{Str: invPartner}}}}}}}
	payerPatients := &store.Access{Terms: []store.AccessTerm{{Patients: []string{"p1"}, Types: []string{"Patient"}}}}
	ref := func(param, target string) store.Clause {
		return store.Clause{Param: param, Kind: store.KindReference, Values: []store.Value{{Str: target}}}
	}
	search := func(q store.Query) func(store.Store) (any, error) {
		q.Total = true
		return func(st store.Store) (any, error) { return st.Search(ctx, q) }
	}
	everything := func(q store.EverythingQuery) func(store.Store) (any, error) {
		return func(st store.Store) (any, error) {
			rs, total, err := st.Everything(ctx, q)
			return struct {
				Rs    []store.Resource
				Total int
			}{rs, total}, err
		}
	}
	read := func(typ, id string) func(store.Store) (any, error) {
		return func(st store.Store) (any, error) { return st.Read(ctx, typ, id) }
	}
	probes := []struct {
		name string
		run  func(store.Store) (any, error)
	}{
		{"read Patient/p1", read("Patient", "p1")},
		{"read Patient/p2", read("Patient", "p2")},
		{"read Observation/o1a", read("Observation", "o1a")},
		{"read Observation/o1b", read("Observation", "o1b")},
		{"read Observation/o2a", read("Observation", "o2a")},
		{"read Consent/c1", read("Consent", "c1")},
		{"read Coverage/v1", read("Coverage", "v1")},
		{"read Task/k1", read("Task", "k1")},
		{"read Practitioner/pr1", read("Practitioner", "pr1")},
		{"getmany o1a o2a", func(st store.Store) (any, error) {
			return st.GetMany(ctx, []store.Key{{Type: "Observation", ID: "o1a"}, {Type: "Observation", ID: "o2a"}})
		}},
		{"getmany p1 pr1", func(st store.Store) (any, error) {
			return st.GetMany(ctx, []store.Key{{Type: "Patient", ID: "p1"}, {Type: "Practitioner", ID: "pr1"}})
		}},
		{"refs o2a", func(st store.Store) (any, error) {
			return st.Refs(ctx, []store.Key{{Type: "Observation", ID: "o2a"}}, nil)
		}},
		{"search Observation", search(store.Query{Type: "Observation"})},
		{"search Observation patient=p1", search(store.Query{Type: "Observation", Clauses: []store.Clause{ref("subject", "Patient/p1")}})},
		{"search Observation patient=p2", search(store.Query{Type: "Observation", Clauses: []store.Clause{ref("subject", "Patient/p2")}})},
		{"search Observation payer", search(store.Query{Type: "Observation", Access: payerObs})},
		{"search Observation many patients", search(store.Query{Type: "Observation", Access: manyObs})},
		{"search Consent actor=payer", search(store.Query{Type: "Consent", Clauses: []store.Clause{ref("actor", invPayer)}})},
		{"search Coverage payor=payer", search(store.Query{Type: "Coverage", Clauses: []store.Clause{ref("payor", invPayer)}})},
		{"search Task partner", search(store.Query{Type: "Task", Access: partnerTasks})},
		{"search Patient", search(store.Query{Type: "Patient"})},
		{"search Patient payer", search(store.Query{Type: "Patient", Access: payerPatients})},
		{"search Practitioner", search(store.Query{Type: "Practitioner"})},
		{"everything p1", everything(store.EverythingQuery{Patient: "p1"})},
		{"everything p2", everything(store.EverythingQuery{Patient: "p2"})},
		{"everything p3", everything(store.EverythingQuery{Patient: "p3", Count: 10})},
		{"everything p1 payer", everything(store.EverythingQuery{Patient: "p1", Access: &store.Access{Terms: []store.AccessTerm{
			{Patients: []string{"p1"}, Types: []string{"Patient", "Consent", "Coverage"}}}}})},
	}
	type answer struct {
		V   any
		Err string
	}
	ask := func(st store.Store, run func(store.Store) (any, error)) answer {
		v, err := run(st)
		a := answer{V: v}
		if err != nil {
			a.Err = err.Error()
		}
		return a
	}

	steps := []struct {
		name  string
		write func(t *testing.T)
		// hit are the probes that cannot hold anything the write touched.
		hit []string
	}{
		{"clinical resource", func(t *testing.T) {
			write(t, obs("o1a", "p1", "1.5", false), obs("o1e", "p1", "6", false))
		}, []string{
			"read Patient/p1", "read Patient/p2", "read Observation/o1b", "read Observation/o2a", "read Consent/c1",
			"read Coverage/v1", "read Task/k1", "read Practitioner/pr1", "getmany p1 pr1", "refs o2a",
			"search Observation patient=p2", "search Consent actor=payer", "search Coverage payor=payer",
			"search Task partner", "search Patient", "search Patient payer", "search Practitioner",
			"everything p2", "everything p3",
		}},
		{"Consent withdrawn", func(t *testing.T) { write(t, consent("c1", "p1", "inactive")) }, []string{
			"read Patient/p1", "read Observation/o1a", "read Coverage/v1", "read Task/k1", "getmany o1a o2a", "refs o2a",
			"search Observation", "search Observation patient=p1", "search Observation patient=p2",
			"search Observation payer", "search Observation many patients", "search Coverage payor=payer",
			"search Task partner", "search Patient", "search Patient payer", "search Practitioner",
			"everything p2", "everything p3",
		}},
		{"Coverage cancelled", func(t *testing.T) { write(t, coverage("v1", "p1", "cancelled")) }, []string{
			"read Patient/p1", "read Consent/c1", "read Task/k1", "getmany o1a o2a",
			"search Observation", "search Observation payer", "search Observation many patients",
			"search Consent actor=payer", "search Task partner", "search Patient", "search Patient payer",
			"everything p2", "everything p3",
		}},
		{"referral Task", func(t *testing.T) { write(t, task("k2", "p2", "requested"), task("k1", "p1", "accepted")) }, []string{
			"read Patient/p2", "read Consent/c1", "read Coverage/v1", "getmany o1a o2a", "getmany p1 pr1", "refs o2a",
			"search Observation", "search Observation patient=p1", "search Observation payer",
			"search Consent actor=payer", "search Coverage payor=payer", "search Patient", "search Patient payer",
			"search Practitioner", "everything p3",
		}},
		{"Patient", func(t *testing.T) { write(t, patient("p2", "Bea Two")) }, []string{
			"read Patient/p1", "read Observation/o2a", "read Consent/c1", "getmany o1a o2a", "getmany p1 pr1", "refs o2a",
			"search Observation", "search Observation patient=p1", "search Observation patient=p2",
			"search Observation payer", "search Observation many patients", "search Consent actor=payer",
			"search Coverage payor=payer", "search Task partner", "search Patient payer", "search Practitioner",
			"everything p1", "everything p3", "everything p1 payer",
		}},
		{"resource moved to another compartment", func(t *testing.T) {
			// o2a leaves p2's compartment for p1's: the write names only
			// p1, yet p2's answers must drop it.
			write(t, obs("o2a", "p1", "3", false))
		}, []string{
			"read Patient/p1", "read Patient/p2", "read Consent/c1", "getmany p1 pr1",
			"search Consent actor=payer", "search Coverage payor=payer", "search Task partner",
			"search Patient", "search Patient payer", "search Practitioner", "everything p3",
		}},
		{"deletion", func(t *testing.T) {
			clock.Advance(time.Second)
			if _, err := s.Cached.Apply(ctx, []store.RecordWrite{Rec("set", "p1-set", "h2", obs("o1d", "p1", "5", false))}); err != nil {
				t.Fatal(err)
			}
		}, []string{
			"read Patient/p1", "read Patient/p2", "read Consent/c1", "getmany o1a o2a", "getmany p1 pr1",
			"search Consent actor=payer", "search Coverage payor=payer", "search Task partner",
			"search Patient", "search Practitioner", "everything p2", "everything p3",
		}},
		{"batch of updates", func(t *testing.T) {
			for i := range bulk {
				bulk[i] = obs(bulk[i].ID, "p2", "2", false) // p3 to p2: too many to trace
			}
			write(t, bulk...)
		}, []string{
			"read Patient/p1", "read Observation/o1a", "read Consent/c1", "getmany o1a o2a", "getmany p1 pr1",
			"search Consent actor=payer", "search Coverage payor=payer", "search Task partner",
			"search Patient", "search Practitioner",
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			must := map[string]bool{}
			for _, h := range step.hit {
				must[h] = true
			}
			readers := []store.Store{s.Cached}
			if s.Replica != nil {
				readers = []store.Store{s.Replica, s.Cached}
			}
			// Warm: every probe is filled (and a second ask is a hit).
			for _, p := range probes {
				for _, r := range readers {
					ask(r, p.run)
					ask(r, p.run)
				}
			}
			step.write(t)
			hits := 0
			for _, p := range probes {
				before := s.Hits()
				got := ask(readers[0], p.run)
				hit := s.Hits() > before
				want := ask(s.Inner, p.run)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s after the write (hit %v): stale answer\n got  %+v\n want %+v", p.name, hit, got, want)
				}
				if len(readers) > 1 {
					if got := ask(readers[1], p.run); !reflect.DeepEqual(got, want) {
						t.Errorf("%s after the write, on the writing replica: stale answer\n got  %+v\n want %+v", p.name, got, want)
					}
				}
				if hit {
					hits++
				}
				if must[p.name] && !hit {
					t.Errorf("%s: dropped by a write that cannot change it", p.name)
				}
				delete(must, p.name)
			}
			for name := range must {
				t.Errorf("unknown probe %q", name)
			}
			t.Logf("%d of %d probes hit after the write", hits, len(probes))
		})
	}
}
