package auth

import (
	"slices"
	"time"
)

// Role is what an outside client is to the clinic, fixed at registration
// (docs/access.md): it decides which view of the records the client gets.
type Role string

// Roles.
const (
	// RoleEHR is the clinic's own systems and the EHRs it serves directly:
	// the client's scopes decide alone (the default).
	RoleEHR Role = "ehr"
	// RolePayer is an insurer: the payer view, through the patient's
	// coverage and consent, for payment.
	RolePayer Role = "payer"
	// RolePartner is a partner clinic: the partner view, through the
	// patient's consent, for treatment.
	RolePartner Role = "partner"
)

// Roles lists the roles in their documented order.
var Roles = []Role{RoleEHR, RolePayer, RolePartner}

// ParseRole returns the Role named s ("" is RoleEHR).
func ParseRole(s string) (Role, bool) {
	if s == "" {
		return RoleEHR, true
	}
	r := Role(s)
	return r, slices.Contains(Roles, r)
}

// Purpose is the purpose of use a role's access serves: what a consent must
// name for it to count, and what AuditEvent.purposeOfEvent records.
type Purpose string

// Purposes of use (HL7 v3 ActReason TREAT and HPAYMT in FHIR).
const (
	PurposeTreatment Purpose = "treatment"
	PurposePayment   Purpose = "payment"
)

// Purpose returns the purpose of use of the role's access: payment for a
// payer, treatment for a partner or an EHR.
func (r Role) Purpose() Purpose {
	if r == RolePayer {
		return PurposePayment
	}
	return PurposeTreatment
}

// DataClass is one class of a patient's records, in the clinic's consent
// vocabulary (docs/clinic-records.md, consent dataClasses).
type DataClass uint8

// Data classes.
const (
	ClassDemographics DataClass = iota
	ClassDiagnoses
	ClassMedications
	ClassSessions
	ClassAssessments
	ClassVitals
	ClassCoverage
	numClasses
)

var classNames = [numClasses]string{"demographics", "diagnoses", "medications", "sessions", "assessments", "vitals", "coverage"}

// String returns the clinic's name of the class.
func (c DataClass) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// ParseDataClass returns the class the clinic calls s.
func ParseDataClass(s string) (DataClass, bool) {
	i := slices.Index(classNames[:], s)
	return DataClass(i), i >= 0
}

// Classes is a set of data classes.
type Classes uint16

// AllClasses is every data class.
const AllClasses = Classes(1<<numClasses - 1)

// ClassSet returns the set of cs.
func ClassSet(cs ...DataClass) Classes {
	var s Classes
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

// Has reports whether c is in s.
func (s Classes) Has(c DataClass) bool { return s&(1<<c) != 0 }

// List returns the classes of s in order.
func (s Classes) List() []DataClass {
	var out []DataClass
	for c := DataClass(0); c < numClasses; c++ {
		if s.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// ConsentFacts is what the access decision needs of one Consent: read from
// the stored FHIR Consent (status, provision.type, provision.actor,
// provision.purpose, provision.class, provision.period).
type ConsentFacts struct {
	// ID is the Consent's id (for audit and tests).
	ID      string
	Patient string
	// Status is the Consent's status (draft, proposed, active, rejected,
	// inactive, entered-in-error).
	Status string
	// Deny is provision.type deny (else permit).
	Deny bool
	// Recipients are the ids of the Organizations the provision names.
	Recipients []string
	Purposes   []Purpose
	// Classes are the data classes the provision names; ClassesListed is
	// false when it names none, which means every class.
	Classes       Classes
	ClassesListed bool
	// Start and End bound when the consent applies, [Start, End); a zero
	// value leaves that side open. (A date-precision end covers its whole
	// day: the reader of the Consent passes the next day's start.)
	Start, End time.Time
}

// CoverageFacts is what the payer view needs of one Coverage.
type CoverageFacts struct {
	Patient string
	// Payer is the id of the paying Organization (Coverage.payor).
	Payer string
	// Status is the Coverage's status (active, cancelled, draft,
	// entered-in-error).
	Status     string
	Start, End time.Time
}

// PatientGrant is what one patient's consents let an outside organization
// see of that patient.
type PatientGrant struct {
	// Classes are the data classes it may see (never empty in a
	// Disclosure).
	Classes Classes
	// Restricted reports whether it may see resources labelled R
	// (restricted: suicide-risk content).
	Restricted bool
}

// Disclosure is the result of the consent decision for one organization at
// one moment: the patients it may see, each with the classes it may see.
// A patient absent from Patients is outside the view.
type Disclosure struct {
	Patients map[string]PatientGrant
}

// DisclosurePolicy holds the deployment's disclosure settings.
type DisclosurePolicy struct {
	// PayerCoverageOnly relaxes the payer view to "a coverage naming the
	// payer is enough": HIPAA allows disclosures for payment without the
	// patient's authorization (45 CFR 164.506). The default is strict: an
	// active permit Consent naming the payer for payment is also required.
	// A deny consent still applies.
	PayerCoverageOnly bool
}

// ViewClasses are the data classes a role's view can ever show: the payer
// view leaves out vital signs (minimum necessary for a prior-authorization
// review, docs/access.md).
func ViewClasses(r Role) Classes {
	switch r {
	case RolePayer:
		return AllClasses &^ ClassSet(ClassVitals)
	case RolePartner, RoleEHR:
		return AllClasses
	}
	return 0
}

// Disclose is the consent decision (docs/access.md): which of the
// patients may the organization org, acting as role, see at the moment now,
// and which data classes of each. It is pure; the caller reads the facts
// from the stored Consents and Coverages. The rules:
//
//   - A consent counts only while its status is active and its period covers
//     now. An expired consent stops counting at once.
//   - A permit counts for org only when it names org as a recipient and the
//     role's purpose of use (payment for a payer, treatment for a partner).
//     It permits its listed classes, or every class when it lists none.
//   - A deny that counts and names org, or names no recipient at all (it
//     applies to every recipient: a patient's "share with no one",
//     docs/design/security.md PRIV-20), for the role's purpose (or names no
//     purpose) withdraws its listed classes, or every class when it lists
//     none; a deny overrides any permit.
//   - A payer also needs an active Coverage naming it whose period covers
//     now. With PayerCoverageOnly that Coverage alone permits every class of
//     the payer view; without it (the default) a permit is needed as well.
//   - The role's view bounds what is permitted (ViewClasses).
//   - Label R (suicide-risk content) is cleared only for a partner whose
//     counting permit lists assessments explicitly (a permit of "every
//     class" does not) and whose assessments are not denied. A payer never
//     clears R.
//
// RoleEHR gets no Disclosure: its scopes decide (Decide). Any other role,
// or an empty org, sees nobody.
func (p DisclosurePolicy) Disclose(role Role, org string, consents []ConsentFacts, coverages []CoverageFacts, now time.Time) Disclosure {
	out := Disclosure{Patients: map[string]PatientGrant{}}
	if (role != RolePayer && role != RolePartner) || org == "" {
		return out
	}
	purpose := role.Purpose()
	type acc struct {
		permit, deny Classes
		explicitR    bool
	}
	per := map[string]*acc{}
	get := func(patient string) *acc {
		a := per[patient]
		if a == nil {
			a = &acc{}
			per[patient] = a
		}
		return a
	}
	for i := range consents {
		c := &consents[i]
		if c.Patient == "" || c.Status != "active" || !covers(c.Start, c.End, now) {
			continue
		}
		classes := AllClasses
		if c.ClassesListed {
			classes = c.Classes
		}
		if c.Deny {
			if (len(c.Recipients) == 0 || slices.Contains(c.Recipients, org)) &&
				(len(c.Purposes) == 0 || slices.Contains(c.Purposes, purpose)) {
				get(c.Patient).deny |= classes
			}
			continue
		}
		if !slices.Contains(c.Recipients, org) || !slices.Contains(c.Purposes, purpose) {
			continue
		}
		a := get(c.Patient)
		a.permit |= classes
		if c.ClassesListed && c.Classes.Has(ClassAssessments) {
			a.explicitR = true
		}
	}
	if role == RolePayer {
		covered := map[string]bool{}
		for _, cv := range coverages {
			if cv.Patient != "" && cv.Payer == org && cv.Status == "active" && covers(cv.Start, cv.End, now) {
				covered[cv.Patient] = true
			}
		}
		for patient, a := range per {
			if !covered[patient] {
				a.permit = 0
			}
		}
		if p.PayerCoverageOnly {
			for patient := range covered {
				get(patient).permit = AllClasses
			}
		}
	}
	view := ViewClasses(role)
	for patient, a := range per {
		classes := a.permit &^ a.deny & view
		if classes == 0 {
			continue
		}
		out.Patients[patient] = PatientGrant{
			Classes:    classes,
			Restricted: role == RolePartner && a.explicitR && classes.Has(ClassAssessments),
		}
	}
	return out
}

// covers reports whether now is within [start, end), a zero bound being
// open.
func covers(start, end, now time.Time) bool {
	return (start.IsZero() || !now.Before(start)) && (end.IsZero() || now.Before(end))
}
