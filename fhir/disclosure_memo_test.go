package fhir

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

// versionedStore is the fake store with the read cache's version token
// (store.TypeVersioner): bump stands for the cache's invalidation after a
// write of a Consent or Coverage.
type versionedStore struct {
	*fakeStore
	token atomic.Int64
	ok    atomic.Bool
}

func (v *versionedStore) TypeVersions(_ context.Context, types []string) (string, bool) {
	return strconv.FormatInt(v.token.Load(), 10), v.ok.Load()
}

func (v *versionedStore) bump() { v.token.Add(1) }

// searches counts the Searches of typ the store has run.
func (v *versionedStore) searches(typ string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, q := range v.queries {
		if q.Type == typ {
			n++
		}
	}
	return n
}

// TestDisclosureMemo: a payer's disclosure decision is read from the
// Consents and Coverages once and reused while the read cache's version of
// those types is unchanged and no period bound passes; a withdrawn consent,
// a cancelled coverage and a consent period's end each count on the very
// next request (docs/design/security.md CACHE-2, PRIV-13); without a
// version token nothing is reused.
func TestDisclosureMemo(t *testing.T) {
	ctx := context.Background()
	fs := newFakeStore()
	vs := &versionedStore{fakeStore: fs}
	vs.ok.Store(true)
	s, err := New(Options{Store: vs, Base: testBase, Clock: fixedClock{t0}})
	if err != nil {
		t.Fatal(err)
	}
	const payer = "payer1"
	end := t0.Add(48 * time.Hour)
	putConsent := func(id, patient, status string, period string) {
		fs.put("Consent", id, patient, t0, `{"id":"`+id+`","resourceType":"Consent","status":"`+status+`","patient":{"reference":"Patient/`+patient+`"},`+
			`"provision":{"type":"permit",`+period+`"actor":[{"reference":{"reference":"Organization/`+payer+`"}}],`+
			`"purpose":[{"system":"`+systemActReasonCodes+`","code":"HPAYMT"}]}}`,
			store.IndexRow{Param: "actor", Kind: store.KindReference, Value: "Organization/" + payer},
			store.IndexRow{Param: "patient", Kind: store.KindReference, Value: "Patient/" + patient})
	}
	putCoverage := func(id, patient, status string) {
		fs.put("Coverage", id, patient, t0, `{"id":"`+id+`","resourceType":"Coverage","status":"`+status+`","beneficiary":{"reference":"Patient/`+patient+`"},`+
			`"payor":[{"reference":"Organization/`+payer+`"}]}`,
			store.IndexRow{Param: "payor", Kind: store.KindReference, Value: "Organization/" + payer},
			store.IndexRow{Param: "patient", Kind: store.KindReference, Value: "Patient/" + patient})
	}
	putConsent("c1", "p1", "active", "")
	putConsent("c2", "p2", "active", `"period":{"end":"`+end.Format(time.RFC3339)+`"},`)
	putCoverage("v1", "p1", "active")
	putCoverage("v2", "p2", "active")

	sees := func(now time.Time) map[string]bool {
		t.Helper()
		d, err := s.decide(ctx, auth.RolePayer, payer, now)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for p := range d.Patients {
			out[p] = true
		}
		return out
	}
	want := func(what string, got map[string]bool, patients ...string) {
		t.Helper()
		if len(got) != len(patients) {
			t.Errorf("%s: sees %v, want %v", what, got, patients)
			return
		}
		for _, p := range patients {
			if !got[p] {
				t.Errorf("%s: sees %v, want %v", what, got, patients)
			}
		}
	}
	reads := func() int { return vs.searches("Consent") + vs.searches("Coverage") }

	want("first", sees(t0), "p1", "p2")
	// Three searches: the Consents naming the payer, its Coverages, and the
	// Consents naming no actor of their patients (PRIV-20).
	if n := reads(); n != 3 {
		t.Fatalf("first decision: %d searches, want 3 (Consents, Coverages, Consents naming no actor)", n)
	}
	want("again", sees(t0.Add(time.Minute)), "p1", "p2")
	if n := reads(); n != 3 {
		t.Errorf("an unchanged decision was read again: %d searches, want 3", n)
	}

	// A withdrawn consent: the write bumps the version, the next request
	// reads the facts again.
	putConsent("c1", "p1", "inactive", "")
	vs.bump()
	want("consent withdrawn", sees(t0.Add(2*time.Minute)), "p2")
	if n := reads(); n != 6 {
		t.Errorf("after the withdrawal: %d searches, want 6", n)
	}
	want("withdrawn, again", sees(t0.Add(3*time.Minute)), "p2")

	// c2's period ends: no write, yet the decision is made again from then
	// on.
	want("just before the end", sees(end.Add(-time.Millisecond)), "p2")
	before := reads()
	want("at the end", sees(end))
	if reads() == before {
		t.Error("the decision outlived its consent's period")
	}

	// Consent given again, coverage cancelled: the payer needs both.
	putConsent("c1", "p1", "active", "")
	vs.bump()
	want("consent given again", sees(end), "p1")
	putCoverage("v1", "p1", "cancelled")
	vs.bump()
	want("coverage cancelled", sees(end))

	// A clock that went back before the decision: made again.
	before = reads()
	sees(end.Add(-time.Hour))
	if reads() == before {
		t.Error("a decision made at a later moment was reused for an earlier one")
	}

	// No version token (the cache cannot answer): every request reads.
	vs.ok.Store(false)
	before = reads()
	sees(end)
	sees(end)
	if n := reads() - before; n != 6 {
		t.Errorf("without a version token: %d searches for two decisions, want 6", n)
	}
}
