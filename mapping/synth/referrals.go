package synth

import (
	"fmt"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// referralPlan is the consent plan (consentPlans) whose patients the
// clinic refers on: Riverbend, which the plan's consent names for
// treatment, takes over psychotherapy four weeks after the course starts.
const referralPlan = 0

// referral returns the patient's outbound referral, or nil. It draws
// nothing from the random stream, so the other records do not depend on
// it.
func (g *patientGen) referral() *clinic.Referral {
	if g.n%len(consentPlans) != referralPlan {
		return nil
	}
	r := &clinic.Referral{
		Header:      clinic.Header{Kind: clinic.KindReferral, ID: fmt.Sprintf("ref-%s", g.id)},
		PatientID:   g.patientID,
		PartnerID:   OrgPartnerRiverbend,
		RequesterID: g.prescriber,
		Reason:      g.dxCode,
		Service:     "Psychotherapy after ketamine induction",
		AuthoredOn:  dt(g.start.AddDate(0, 0, 28).Add(9 * 3600e9)),
		// The package: the diagnosis, the course and the coverage.
		DiagnosisIDs: []string{g.dxID},
		CourseID:     g.courseID,
	}
	if g.covered() {
		r.CoverageID = g.covID
	}
	return r
}
