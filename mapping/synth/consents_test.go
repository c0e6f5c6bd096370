package synth

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// Consent kinds: the situations the access decision must get right, as the
// generated records show them at the moment accessAt.
const (
	// kindPayerPermit: an active permit, for payment, naming a payer that
	// covers the patient.
	kindPayerPermit = "payer-permit"
	// kindOtherPayerOnly: covered by one payer, permits naming only the
	// other.
	kindOtherPayerOnly = "other-payer-only"
	// kindUncovered: no coverage at all.
	kindUncovered = "uncovered"
	// kindPartnerExplicit: an active permit naming a partner for treatment
	// that lists assessments explicitly (the partner clears label R).
	kindPartnerExplicit = "partner-permit-explicit"
	// kindPartnerAll: an active permit naming a partner for treatment with
	// no class list, every class (R not cleared).
	kindPartnerAll = "partner-permit-all"
	// kindExpired: a consent whose period ended in 2025.
	kindExpired = "expired"
	// kindDenyPartner: an active deny naming a partner.
	kindDenyPartner = "deny-partner"
	// kindDenyPayerAssessments: an active deny of assessments naming a payer,
	// for payment.
	kindDenyPayerAssessments = "deny-payer-assessments"
	// kindLimited: an active permit listing three classes or fewer.
	kindLimited = "limited"
	// kindInactive: a consent with status inactive.
	kindInactive = "inactive"
)

// accessAt is when the kinds are judged: the gateway decides at the moment
// of access, so the demo's kinds must hold on the wall clock of the tests
// that rely on them (any time from 2026 to 2030).
var accessAt = time.Date(2026, 12, 15, 12, 0, 0, 0, time.UTC)

// demoConsentKinds is which demo patient (synth index n: pat-{n+1}, the
// `ketabridge serve --demo` data set, 12 patients, seed 1, first day
// 2025-01-06) has which consent kinds. End-to-end tests pick their patients
// from this table; TestDemoConsentKinds keeps it true.
var demoConsentKinds = [12][]string{
	0:  {kindPayerPermit, kindPartnerExplicit},                  // + Riverbend, assessments listed
	1:  {kindPayerPermit},                                       // until 2035-12-31
	2:  {kindPayerPermit, kindPartnerAll},                       // + Northgate, every class
	3:  {kindPayerPermit, kindExpired},                          // Riverbend's permit ended in 2025
	4:  {kindOtherPayerOnly},                                    // permits only the payer that does not cover it
	5:  {kindPayerPermit, kindPartnerExplicit, kindDenyPartner}, // Riverbend permitted, assessments denied
	6:  {kindPayerPermit, kindDenyPayerAssessments},             // payer permitted, assessments denied
	7:  {kindPayerPermit, kindLimited},                          // payer and Northgate, 3 classes each
	8:  {kindInactive},                                          // the payer permit withdrawn
	9:  {kindUncovered, kindPartnerAll},                         // self-pay; Riverbend, every class
	10: {kindPayerPermit, kindPartnerAll, kindDenyPartner},      // both partners permitted, Northgate denied
	11: {kindExpired, kindPartnerExplicit},                      // payer permit ended in 2025; Northgate
}

// patientFacts are the records of one patient the kinds are judged from.
type patientFacts struct {
	payer       string // the covering payer, "" for none
	consents    []*clinic.Consent
	lastSession time.Time
}

func factsByPatient(t *testing.T, recs []clinic.Record) (map[string]*patientFacts, map[string]string) {
	t.Helper()
	orgType := map[string]string{}
	facts := map[string]*patientFacts{}
	get := func(id string) *patientFacts {
		if facts[id] == nil {
			facts[id] = &patientFacts{}
		}
		return facts[id]
	}
	for _, r := range recs {
		switch v := r.(type) {
		case *clinic.Organization:
			orgType[v.ID] = v.Type
		case *clinic.Patient:
			get(v.ID)
		case *clinic.Coverage:
			if v.Status == "active" {
				get(v.PatientID).payer = v.PayerID
			}
		case *clinic.Consent:
			get(v.PatientID).consents = append(get(v.PatientID).consents, v)
		case *clinic.Session:
			at, err := time.Parse(time.RFC3339, v.ScheduledStart)
			if err != nil {
				t.Fatal(err)
			}
			if p := get(v.PatientID); at.After(p.lastSession) {
				p.lastSession = at
			}
		}
	}
	return facts, orgType
}

// day parses a consent date ("" is the zero time).
func day(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "" {
		return time.Time{}
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// counts reports whether c counts at now: active, and now within its period,
// an end date covering its whole day.
func counts(t *testing.T, c *clinic.Consent, now time.Time) bool {
	start, end := day(t, c.Start), day(t, c.End)
	return c.Status == "active" && !now.Before(start) && (end.IsZero() || now.Before(end.AddDate(0, 0, 1)))
}

// kindsOf judges a patient's consent kinds at accessAt.
func kindsOf(t *testing.T, p *patientFacts, orgType map[string]string) []string {
	t.Helper()
	set := map[string]bool{}
	if p.payer == "" {
		set[kindUncovered] = true
	}
	var permitsPayer, permitsOwnPayer bool
	for _, c := range p.consents {
		if c.Status == "inactive" {
			set[kindInactive] = true
		}
		if end := day(t, c.End); c.Status == "active" && !end.IsZero() && end.Before(accessAt) {
			set[kindExpired] = true
		}
		if !counts(t, c, accessAt) {
			continue
		}
		for _, r := range c.RecipientIDs {
			switch {
			case c.Decision == "permit" && orgType[r] == "payer" && slices.Contains(c.Purposes, "payment"):
				permitsPayer = true
				if r == p.payer {
					permitsOwnPayer = true
					set[kindPayerPermit] = true
				}
			case c.Decision == "permit" && orgType[r] == "partner" && slices.Contains(c.Purposes, "treatment"):
				if len(c.DataClasses) == 0 {
					set[kindPartnerAll] = true
				} else if slices.Contains(c.DataClasses, "assessments") {
					set[kindPartnerExplicit] = true
				}
			case c.Decision == "deny" && orgType[r] == "partner":
				set[kindDenyPartner] = true
			case c.Decision == "deny" && orgType[r] == "payer" && slices.Equal(c.DataClasses, []string{"assessments"}):
				set[kindDenyPayerAssessments] = true
			}
		}
		if c.Decision == "permit" && len(c.DataClasses) > 0 && len(c.DataClasses) <= 3 {
			set[kindLimited] = true
		}
	}
	if p.payer != "" && permitsPayer && !permitsOwnPayer {
		set[kindOtherPayerOnly] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// TestDemoConsentKinds checks the demo data set has every consent kind, each
// demo patient exactly the kinds demoConsentKinds lists, and that consent
// periods hold on any wall clock from 2026 to 2030: an expired consent ended
// in 2025 (and before the patient's last session), an active one is
// open-ended or runs past 2030.
func TestDemoConsentKinds(t *testing.T) {
	recs, _ := decodeAll(t, Options{Patients: 12, Seed: 1, Start: time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)})
	facts, orgType := factsByPatient(t, recs)
	seen := map[string]bool{}
	for n, want := range demoConsentKinds {
		id := patientID(n)
		p := facts[id]
		if p == nil {
			t.Fatalf("no patient %s", id)
		}
		got := kindsOf(t, p, orgType)
		if w := slices.Sorted(slices.Values(want)); !slices.Equal(got, w) {
			t.Errorf("patient %d (%s): kinds %v, want %v", n, id, got, w)
		}
		for _, k := range got {
			seen[k] = true
		}
		for _, c := range p.consents {
			end := day(t, c.End)
			switch {
			case end.IsZero(), end.Year() > 2030:
			case end.Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)):
				if !end.Before(p.lastSession) {
					t.Errorf("%s ends %s, not before the patient's last session %s", c.ID, c.End, p.lastSession)
				}
			default:
				t.Errorf("%s ends %s: neither expired before 2026 nor active past 2030", c.ID, c.End)
			}
		}
	}
	for _, k := range []string{kindPayerPermit, kindOtherPayerOnly, kindUncovered, kindPartnerExplicit, kindPartnerAll,
		kindExpired, kindDenyPartner, kindDenyPayerAssessments, kindLimited, kindInactive} {
		if !seen[k] {
			t.Errorf("the demo data set has no patient of kind %s", k)
		}
	}
	var payerPermits int
	for _, kinds := range demoConsentKinds {
		if slices.Contains(kinds, kindPayerPermit) {
			payerPermits++
		}
	}
	if payerPermits <= len(demoConsentKinds)/2 {
		t.Errorf("%d of %d patients permit their payer, want most", payerPermits, len(demoConsentKinds))
	}
}

// TestConsentVariety checks a larger data set of another seed and start has
// the same kinds in the same places (the plans cycle every 12 patients) and
// both payers and both partners named.
func TestConsentVariety(t *testing.T) {
	recs, _ := decodeAll(t, Options{Patients: 50, Seed: 9, Start: time.Date(2025, 2, 3, 0, 0, 0, 0, time.UTC)})
	facts, orgType := factsByPatient(t, recs)
	named := map[string]bool{}
	covering := map[string]bool{}
	for n := range 50 {
		p := facts[patientID(n)]
		if got, want := kindsOf(t, p, orgType), slices.Sorted(slices.Values(demoConsentKinds[n%12])); !slices.Equal(got, want) {
			t.Errorf("patient %d: kinds %v, want %v", n, got, want)
		}
		covering[p.payer] = true
		for _, c := range p.consents {
			for _, r := range c.RecipientIDs {
				named[r] = true
			}
		}
	}
	for _, org := range []string{OrgPayerBlueHeron, OrgPayerCascade, OrgPartnerRiverbend, OrgPartnerNorthgate} {
		if !named[org] {
			t.Errorf("no consent names %s", org)
		}
	}
	if !covering[OrgPayerBlueHeron] || !covering[OrgPayerCascade] || !covering[""] {
		t.Errorf("covering payers %v, want both payers and some self-pay patients", covering)
	}
}

// patientID is the clinic id of synth patient n.
func patientID(n int) string { return fmt.Sprintf("pat-%06d", n+1) }
