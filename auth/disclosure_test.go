package auth

import (
	"fmt"
	"testing"
	"time"
)

var (
	jan1     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	jul1     = time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	dec1     = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	jan1Next = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
)

// resourceKinds are the patient resources a view decides on: each type (and
// Observation category) with the class it must fall in.
var resourceKinds = []struct {
	typ, category string
	class         DataClass
}{
	{"Patient", "", ClassDemographics},
	{"Condition", "", ClassDiagnoses},
	{"MedicationRequest", "", ClassMedications},
	{"MedicationStatement", "", ClassMedications},
	{"CarePlan", "", ClassSessions},
	{"Encounter", "", ClassSessions},
	{"MedicationAdministration", "", ClassSessions},
	{"AdverseEvent", "", ClassSessions},
	{"Observation", "survey", ClassAssessments},
	{"Observation", "vital-signs", ClassVitals},
	{"Coverage", "", ClassCoverage},
}

func permit(org string, purpose Purpose, classes ...DataClass) ConsentFacts {
	return ConsentFacts{ID: "c", Patient: "p1", Status: "active", Recipients: []string{org}, Purposes: []Purpose{purpose},
		Classes: ClassSet(classes...), ClassesListed: len(classes) > 0, Start: jan1, End: jan1Next}
}

func withStatus(c ConsentFacts, s string) ConsentFacts       { c.Status = s; return c }
func withPeriod(c ConsentFacts, s, e time.Time) ConsentFacts { c.Start, c.End = s, e; return c }
func asDeny(c ConsentFacts) ConsentFacts                     { c.Deny = true; return c }

// denyEveryone is a deny naming no recipient (a patient's "share with no
// one") for treatment and payment, of classes (every class when none).
func denyEveryone(classes ...DataClass) ConsentFacts {
	c := asDeny(permit("", PurposeTreatment, classes...))
	c.Recipients, c.Purposes = nil, []Purpose{PurposeTreatment, PurposePayment}
	return c
}

func withPurposes(c ConsentFacts, ps ...Purpose) ConsentFacts { c.Purposes = ps; return c }

// TestDisclose is the table of the consent decision: role x consent state x
// the moment of access inside or outside the consent's period, with the exact
// classes and R clearance expected; each outcome is then checked for every
// data class and resource type (docs/access.md).
func TestDisclose(t *testing.T) {
	const payer, otherPayer, partner, otherPartner = "org-payer", "org-payer-2", "org-partner", "org-partner-2"
	coverage := []CoverageFacts{{Patient: "p1", Payer: payer, Status: "active", Start: jan1}}
	payerClasses := AllClasses &^ ClassSet(ClassVitals)
	cases := []struct {
		name      string
		role      Role
		org       string
		policy    DisclosurePolicy
		consents  []ConsentFacts
		coverages []CoverageFacts
		at        time.Time
		want      Classes // 0: the patient is outside the view
		wantR     bool
	}{
		// Payer.
		{name: "payer/no consent", role: RolePayer, org: payer, coverages: coverage, at: jul1},
		{name: "payer/active permit for payment", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses, ClassAssessments)},
			want:     ClassSet(ClassDiagnoses, ClassAssessments)},
		{name: "payer/permit of every class stops at the payer view", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment)}, want: payerClasses},
		{name: "payer/before the period", role: RolePayer, org: payer, coverages: coverage, at: jan1.Add(-time.Second),
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses)}},
		{name: "payer/first instant of the period", role: RolePayer, org: payer, coverages: coverage, at: jan1,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses)}, want: ClassSet(ClassDiagnoses)},
		{name: "payer/expired at its end", role: RolePayer, org: payer, coverages: coverage, at: jan1Next,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses)}},
		{name: "payer/expired", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{withPeriod(permit(payer, PurposePayment, ClassDiagnoses), jan1.AddDate(-1, 0, 0), jan1)}},
		{name: "payer/inactive", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{withStatus(permit(payer, PurposePayment, ClassDiagnoses), "inactive")}},
		{name: "payer/proposed", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{withStatus(permit(payer, PurposePayment, ClassDiagnoses), "proposed")}},
		{name: "payer/other recipient", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(otherPayer, PurposePayment, ClassDiagnoses)}},
		{name: "payer/wrong purpose", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposeTreatment, ClassDiagnoses)}},
		{name: "payer/deny overrides permit for a class", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment), asDeny(permit(payer, PurposePayment, ClassAssessments))},
			want:     payerClasses &^ ClassSet(ClassAssessments)},
		{name: "payer/deny of every class", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment), asDeny(permit(payer, PurposePayment))}},
		{name: "payer/deny naming nobody denies everybody", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses), func() ConsentFacts {
				c := asDeny(permit(payer, PurposePayment))
				c.Recipients = nil
				return c
			}()}},
		{name: "payer/deny of another recipient changes nothing", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses), asDeny(permit(otherPayer, PurposePayment))},
			want:     ClassSet(ClassDiagnoses)},
		{name: "payer/expired deny changes nothing", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses),
				withPeriod(asDeny(permit(payer, PurposePayment)), jan1.AddDate(-1, 0, 0), jan1)},
			want: ClassSet(ClassDiagnoses)},
		{name: "payer/never clears R, even with assessments listed", role: RolePayer, org: payer, coverages: coverage, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassAssessments)}, want: ClassSet(ClassAssessments)},
		{name: "payer/no coverage", role: RolePayer, org: payer, at: jul1,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses)}},
		{name: "payer/coverage of another payer", role: RolePayer, org: payer, at: jul1,
			coverages: []CoverageFacts{{Patient: "p1", Payer: otherPayer, Status: "active"}},
			consents:  []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses)}},
		{name: "payer/cancelled coverage", role: RolePayer, org: payer, at: jul1,
			coverages: []CoverageFacts{{Patient: "p1", Payer: payer, Status: "cancelled"}},
			consents:  []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses)}},
		{name: "payer/coverage ended", role: RolePayer, org: payer, at: jul1,
			coverages: []CoverageFacts{{Patient: "p1", Payer: payer, Status: "active", End: jan1}},
			consents:  []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses)}},
		{name: "payer/coverage alone, relaxed", role: RolePayer, org: payer, policy: DisclosurePolicy{PayerCoverageOnly: true},
			coverages: coverage, at: jul1, want: payerClasses},
		{name: "payer/coverage alone, relaxed, a deny still holds", role: RolePayer, org: payer,
			policy: DisclosurePolicy{PayerCoverageOnly: true}, coverages: coverage, at: jul1,
			consents: []ConsentFacts{asDeny(permit(payer, PurposePayment, ClassAssessments))},
			want:     payerClasses &^ ClassSet(ClassAssessments)},
		{name: "payer/coverage alone, strict", role: RolePayer, org: payer, coverages: coverage, at: jul1},

		// Partner.
		{name: "partner/no consent", role: RolePartner, org: partner, at: jul1},
		{name: "partner/active permit for treatment", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassVitals, ClassSessions)},
			want:     ClassSet(ClassVitals, ClassSessions)},
		{name: "partner/needs no coverage", role: RolePartner, org: partner, at: jul1, coverages: coverage,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassCoverage)}, want: ClassSet(ClassCoverage)},
		{name: "partner/permit of every class, R not cleared", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment)}, want: AllClasses},
		{name: "partner/assessments listed clears R", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassAssessments)},
			want:     ClassSet(ClassAssessments), wantR: true},
		{name: "partner/assessments listed but denied", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassAssessments, ClassVitals),
				asDeny(permit(partner, PurposeTreatment, ClassAssessments))},
			want: ClassSet(ClassVitals)},
		{name: "partner/outside the period", role: RolePartner, org: partner, at: dec1.AddDate(1, 0, 0),
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassAssessments)}},
		{name: "partner/expired", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{withPeriod(permit(partner, PurposeTreatment), jan1.AddDate(-1, 0, 0), jan1)}},
		{name: "partner/deny", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{asDeny(permit(partner, PurposeTreatment))}},
		{name: "partner/other recipient", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(otherPartner, PurposeTreatment)}},
		{name: "partner/wrong purpose", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposePayment)}},
		{name: "partner/open-ended period", role: RolePartner, org: partner, at: jul1.AddDate(10, 0, 0),
			consents: []ConsentFacts{withPeriod(permit(partner, PurposeTreatment, ClassDiagnoses), jan1, time.Time{})},
			want:     ClassSet(ClassDiagnoses)},
		{name: "partner/two permits add up", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassDiagnoses), permit(partner, PurposeTreatment, ClassVitals)},
			want:     ClassSet(ClassDiagnoses, ClassVitals)},

		// A deny naming no recipient applies to every recipient
		// (docs/design/security.md PRIV-20).
		{name: "partner/deny naming nobody denies everybody", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassDiagnoses, ClassAssessments), denyEveryone()}},
		{name: "partner/deny naming nobody of a class overrides the permit of it, and R with it", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassAssessments, ClassVitals), denyEveryone(ClassAssessments)},
			want:     ClassSet(ClassVitals)},
		{name: "partner/deny naming nobody for payment only", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassDiagnoses), withPurposes(denyEveryone(), PurposePayment)},
			want:     ClassSet(ClassDiagnoses)},
		{name: "partner/deny naming nobody and no purpose", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassDiagnoses), withPurposes(denyEveryone())}},
		{name: "partner/inactive deny naming nobody changes nothing", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassDiagnoses), withStatus(denyEveryone(), "inactive")},
			want:     ClassSet(ClassDiagnoses)},
		{name: "partner/deny naming another actor is not everybody's", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment, ClassDiagnoses), func() ConsentFacts {
				c := denyEveryone()
				c.Recipients = []string{"other:Practitioner/x"}
				return c
			}()},
			want: ClassSet(ClassDiagnoses)},
		{name: "partner/permit naming nobody permits nobody", role: RolePartner, org: partner, at: jul1,
			consents: []ConsentFacts{func() ConsentFacts { c := permit(partner, PurposeTreatment); c.Recipients = nil; return c }()}},
		{name: "payer/deny naming nobody, relaxed to coverage", role: RolePayer, org: payer, at: jul1, coverages: coverage,
			policy: DisclosurePolicy{PayerCoverageOnly: true}, consents: []ConsentFacts{denyEveryone()}},
		{name: "payer/deny naming nobody of a class", role: RolePayer, org: payer, at: jul1, coverages: coverage,
			consents: []ConsentFacts{permit(payer, PurposePayment, ClassDiagnoses, ClassCoverage), denyEveryone(ClassCoverage)},
			want:     ClassSet(ClassDiagnoses)},

		// Roles that get no disclosure.
		{name: "ehr gets no disclosure", role: RoleEHR, org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment)}},
		{name: "unknown role", role: Role("auditor"), org: partner, at: jul1,
			consents: []ConsentFacts{permit(partner, PurposeTreatment)}},
		{name: "no organization", role: RolePartner, org: "", at: jul1,
			consents: []ConsentFacts{permit("", PurposeTreatment)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.policy.Disclose(tc.role, tc.org, tc.consents, tc.coverages, tc.at)
			g, in := d.Patients["p1"]
			if in != (tc.want != 0) || g.Classes != tc.want || g.Restricted != tc.wantR {
				t.Fatalf("p1: in view %v, classes %v, R %v; want in view %v, classes %v, R %v",
					in, g.Classes.List(), g.Restricted, tc.want != 0, tc.want.List(), tc.wantR)
			}
			if len(d.Patients) > 1 {
				t.Fatalf("patients %v, want at most p1", d.Patients)
			}
			for _, k := range resourceKinds {
				c, ok := ClassOf(k.typ, k.category)
				if !ok || c != k.class {
					t.Fatalf("ClassOf(%s, %q) = %v, %v; want %v", k.typ, k.category, c, ok, k.class)
				}
				if got := in && g.Classes.Has(c) && InView(tc.role, k.typ); got != tc.want.Has(k.class) {
					t.Errorf("%s %s: visible %v, want %v", k.typ, k.category, got, tc.want.Has(k.class))
				}
			}
		})
	}
}

func TestClassOfOtherObservations(t *testing.T) {
	for _, cat := range []string{"", "laboratory", "social-history", "exam"} {
		if c, ok := ClassOf("Observation", cat); ok {
			t.Errorf("Observation category %q is in class %v; want none (no outside organization sees it)", cat, c)
		}
	}
	for _, typ := range []string{"Provenance", "Consent", "AuditEvent", "Practitioner"} {
		if c, ok := ClassOf(typ, ""); ok {
			t.Errorf("%s is in class %v; want none", typ, c)
		}
	}
}

func TestViews(t *testing.T) {
	for _, typ := range []string{"Consent", "Provenance", "AuditEvent"} {
		for _, r := range []Role{RolePayer, RolePartner} {
			if InView(r, typ) {
				t.Errorf("%s sees %s", r, typ)
			}
		}
	}
	if !InView(RoleEHR, "Provenance") {
		t.Error("an EHR's scopes decide alone")
	}
	if ViewClasses(RolePayer).Has(ClassVitals) {
		t.Error("the payer view shows vital signs")
	}
	for _, typ := range ViewTypes(RolePayer) {
		// ClaimResponse: the payer's own answers, a rule of their own
		// (fhir payerAnswerTerms, docs/design/security.md PA-4).
		if !Directory(typ) && TypeClasses(typ) == 0 && typ != "ClaimResponse" {
			t.Errorf("payer view type %s is neither directory nor in a class", typ)
		}
	}
	for _, r := range []Role{RolePayer, RolePartner} {
		if got := fmt.Sprint(r.Purpose()); (r == RolePayer) != (got == "payment") {
			t.Errorf("%s purpose %s", r, got)
		}
	}
}
