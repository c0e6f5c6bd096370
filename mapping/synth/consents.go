package synth

import (
	"time"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// Who a generated consent names.
const (
	toOwnPayer   = iota // the payer of the patient's coverage
	toOtherPayer        // the payer that does not cover the patient
	toRiverbend         // partner clinic Riverbend
	toNorthgate         // partner clinic Northgate
	toBothPartners
)

// When a generated consent applies.
const (
	openEnded = iota // from the course start, no end
	untilLate        // from the course start to lateEnd
	expired          // from the course start to an end in 2025 (expiredBy at the latest)
)

// lateEnd is the fixed end of consents that run for years, and expiredBy the
// latest end of an expired one: the gateway decides at the moment of access,
// so a consent generated as expired must be expired on the wall clock of any
// test run, and an active one active for years to come.
const lateEnd = "2035-12-31"

var expiredBy = time.Date(2025, 12, 31, 0, 0, 0, 0, zone)

// Data-class lists of the generated consents (nil: every class).
var (
	payerClasses    = []string{"demographics", "diagnoses", "medications", "sessions", "assessments", "coverage"}
	partnerClasses  = []string{"demographics", "diagnoses", "medications", "sessions", "assessments", "vitals"}
	payerLimited    = []string{"demographics", "diagnoses", "coverage"}
	partnerLimited  = []string{"demographics", "medications", "sessions"}
	assessmentsOnly = []string{"assessments"}
)

// consentSpec is one consent record of a plan.
type consentSpec struct {
	suffix   string // the record id is consent-{patient number}-{suffix}
	to       int
	decision string
	status   string
	purposes []string
	classes  []string
	when     int
}

// consentPlans are the consent situations of the generated patients:
// patient n (0-based) gets consentPlans[n%12], so every data set of 12
// patients or more has each situation (mapping/synth TestDemoConsentKinds
// lists them by patient). Most patients permit their own payer for payment;
// the others show what the access decision must get right: a partner
// permitted with assessments listed explicitly or with every class, an
// expired consent, denials overriding a permit, consents limited to a few
// classes, a withdrawn (inactive) consent, a consent naming the payer that
// does not cover the patient, and a patient without coverage.
var consentPlans = [12][]consentSpec{
	// 0: own payer for payment; Riverbend for treatment with assessments
	// listed explicitly.
	{payerPermit(openEnded), {"partner", toRiverbend, "permit", "active", []string{"treatment"}, partnerClasses, openEnded}},
	// 1: own payer only, until a fixed late end.
	{payerPermit(untilLate)},
	// 2: own payer; Northgate for treatment with every class (no list).
	{payerPermit(openEnded), {"partner", toNorthgate, "permit", "active", []string{"treatment", "operations"}, nil, openEnded}},
	// 3: own payer; Riverbend's permit expired in 2025.
	{payerPermit(openEnded), {"partner", toRiverbend, "permit", "active", []string{"treatment"}, partnerClasses, expired}},
	// 4: covered by one payer, consenting only to the other.
	{{"payer", toOtherPayer, "permit", "active", []string{"payment"}, payerClasses, openEnded}},
	// 5: own payer; Riverbend permitted explicitly, then denied assessments.
	{payerPermit(openEnded),
		{"partner", toRiverbend, "permit", "active", []string{"treatment"}, partnerClasses, openEnded},
		{"deny", toRiverbend, "deny", "active", []string{"treatment"}, assessmentsOnly, openEnded}},
	// 6: own payer permitted, then denied assessments for payment.
	{payerPermit(openEnded), {"deny", toOwnPayer, "deny", "active", []string{"payment"}, assessmentsOnly, openEnded}},
	// 7: limited to a few classes, for the payer and for Northgate.
	{{"payer", toOwnPayer, "permit", "active", []string{"payment"}, payerLimited, untilLate},
		{"partner", toNorthgate, "permit", "active", []string{"treatment"}, partnerLimited, untilLate}},
	// 8: the payer permit withdrawn (inactive).
	{{"payer", toOwnPayer, "permit", "inactive", []string{"payment"}, payerClasses, openEnded}},
	// 9: no coverage (self-pay); a payer permit without coverage, and
	// Riverbend with every class.
	{payerPermit(openEnded), {"partner", toRiverbend, "permit", "active", []string{"treatment"}, nil, openEnded}},
	// 10: own payer; both partners with every class, then Northgate denied.
	{payerPermit(openEnded),
		{"partner", toBothPartners, "permit", "active", []string{"treatment"}, nil, openEnded},
		{"deny", toNorthgate, "deny", "active", []string{"treatment"}, nil, openEnded}},
	// 11: the payer permit expired in 2025; Northgate with assessments
	// listed explicitly, until a fixed late end.
	{{"payer", toOwnPayer, "permit", "active", []string{"payment"}, payerClasses, expired},
		{"partner", toNorthgate, "permit", "active", []string{"treatment"}, partnerClasses, untilLate}},
}

// uncoveredPlan is the plan whose patients have no coverage.
const uncoveredPlan = 9

func payerPermit(when int) consentSpec {
	return consentSpec{"payer", toOwnPayer, "permit", "active", []string{"payment"}, payerClasses, when}
}

// covered reports whether the patient has a coverage record.
func (g *patientGen) covered() bool { return g.n%len(consentPlans) != uncoveredPlan }

// consents returns the patient's consent records, signed on the morning of
// the first session.
func (g *patientGen) consents() []clinic.Record {
	plan := consentPlans[g.n%len(consentPlans)]
	out := make([]clinic.Record, len(plan))
	for k, sp := range plan {
		c := &clinic.Consent{
			Header:      clinic.Header{Kind: clinic.KindConsent, ID: "consent-" + g.id + "-" + sp.suffix},
			PatientID:   g.patientID,
			Status:      sp.status,
			Decision:    sp.decision,
			DateTime:    dt(g.start.Add(8*time.Hour + 30*time.Minute)),
			Purposes:    sp.purposes,
			DataClasses: sp.classes,
			Start:       date(g.start),
		}
		switch sp.to {
		case toOwnPayer:
			c.RecipientIDs = []string{g.payer.id}
		case toOtherPayer:
			for _, p := range payers {
				if p.id != g.payer.id {
					c.RecipientIDs = []string{p.id}
					break
				}
			}
		case toRiverbend:
			c.RecipientIDs = []string{OrgPartnerRiverbend}
		case toNorthgate:
			c.RecipientIDs = []string{OrgPartnerNorthgate}
		case toBothPartners:
			c.RecipientIDs = []string{OrgPartnerRiverbend, OrgPartnerNorthgate}
		}
		switch sp.when {
		case untilLate:
			c.End = lateEnd
		case expired:
			// Eight weeks into the course, in 2025 at the latest (unless
			// the data set itself starts later).
			end := g.start.AddDate(0, 0, 56)
			if end.After(expiredBy) && !g.start.After(expiredBy) {
				end = expiredBy
			}
			c.End = date(end)
		}
		out[k] = c
	}
	return out
}
