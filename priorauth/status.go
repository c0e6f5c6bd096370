package priorauth

import (
	"errors"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/conformance/fhirjson"
)

// Renewal is due when this few days of the approval are left, or this share
// of the approved sessions.
const (
	RenewalDaysLeft      = 14
	RenewalShareLeft     = 0.25
	x12ReviewActionCodes = "https://codesystem.x12.org/005010/306"
)

// ErrNoAnswer is returned when no payer answer is recorded for the course.
var ErrNoAnswer = errors.New("priorauth: no payer answer is recorded for the course")

// AuthStatus is where a course's authorization stands.
type AuthStatus struct {
	// ClaimResponse is the latest answer for the course ("ClaimResponse/id").
	ClaimResponse string
	// Outcome is approved, partial, denied or pended.
	Outcome string
	// Requested are the sessions of the course's dose plan; Approved the
	// sessions the payer approved; Used the sessions with a completed dose
	// in the approved period; Remaining = Approved - Used (not below 0).
	Requested, Approved, Used, Remaining int
	// DaysLeft are the days from today to the end of the approved period
	// (0 when it has ended or there is none).
	DaysLeft int
	// RenewalDue: approved, and at most RenewalDaysLeft days or
	// RenewalShareLeft of the sessions are left.
	RenewalDue bool
}

// reviewOutcomes maps the X12 306 review action to the outcome.
var reviewOutcomes = map[string]string{"A1": "approved", "A2": "partial", "A3": "denied", "A4": "pended"}

// AuthorizationStatus reads the course's latest payer answer (a ClaimResponse whose item
// names the course's order as requestedService) against the sessions
// given, on the date today.
func AuthorizationStatus(rs *Records, c *Course, today time.Time) (*AuthStatus, error) {
	if c.Order == nil {
		return nil, ErrNoAnswer
	}
	var key string
	var cr *r4.ClaimResponse
	for _, k := range sortedKeys(rs.ClaimResponses) {
		x := rs.ClaimResponses[k]
		if !answers(x, c.OrderKey) {
			continue
		}
		if cr == nil || x.Created > cr.Created { // RFC 3339 instants in one zone compare as text
			key, cr = k, x
		}
	}
	if cr == nil {
		return nil, ErrNoAnswer
	}
	st := &AuthStatus{ClaimResponse: key, Outcome: "pended"}
	switch cr.Outcome {
	case r4.ClaimProcessingCodesComplete:
		st.Outcome = "approved"
	case r4.ClaimProcessingCodesPartial:
		st.Outcome = "partial"
	}
	units := 0 // the items' adjudicated units
	for _, it := range cr.Item {
		for _, adj := range it.Adjudication {
			for _, x := range adj.Extension {
				for _, sub := range x.Extension {
					if sub.ValueCodeableConcept == nil {
						continue
					}
					for _, cd := range sub.ValueCodeableConcept.Coding {
						if cd.System != nil && *cd.System == x12ReviewActionCodes && cd.Code != nil && reviewOutcomes[*cd.Code] != "" {
							st.Outcome = reviewOutcomes[*cd.Code]
						}
					}
				}
			}
			if adj.Value != nil {
				if n, err := adj.Value.Int64(); err == nil {
					units += int(n)
				}
			}
		}
	}
	for _, d := range c.Order.DosageInstruction {
		if d.Timing != nil && d.Timing.Repeat != nil && d.Timing.Repeat.Count != nil {
			st.Requested += *d.Timing.Repeat.Count
		}
	}
	var from, to *time.Time
	if p := cr.PreAuthPeriod; p != nil {
		from, to = day(p.Start), day(p.End)
	}
	if st.Outcome == "approved" || st.Outcome == "partial" {
		// Only a certification approves units: a denial or a pended answer
		// that echoes the submitted units approves none.
		st.Approved = units
		seen := map[string]bool{}
		for _, k := range sortedKeys(rs.MedAdministration) {
			ma := rs.MedAdministration[k]
			if refKey(ma.Request) != c.OrderKey || ma.Status != "completed" {
				continue
			}
			when := &ma.EffectiveDateTime
			if *when == "" {
				when = ma.EffectivePeriod.Start
			}
			d := day(when)
			if d == nil || from != nil && d.Before(*from) || to != nil && d.After(*to) {
				continue
			}
			session := refKey(ma.Context)
			if session == "" {
				session = k
			}
			seen[session] = true
		}
		st.Used = len(seen)
		st.Remaining = max(st.Approved-st.Used, 0)
		if to != nil {
			t := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, time.UTC)
			st.DaysLeft = max(days(t, *to), 0)
		}
		st.RenewalDue = st.DaysLeft <= RenewalDaysLeft || float64(st.Remaining) <= RenewalShareLeft*float64(st.Approved)
	}
	return st, nil
}

// answers reports whether the ClaimResponse answers for the order.
func answers(cr *r4.ClaimResponse, order string) bool {
	for _, it := range cr.Item {
		for _, x := range it.Extension {
			if x.Url == ExtRequestedService && refKey(x.ValueReference) == order {
				return true
			}
		}
	}
	return false
}

// StatusParameters renders a status as the $pa-status answer: outcome,
// requested, approved, used, remaining, daysLeft, renewalDue and
// claimResponse; with renewal (the policy's renewal criteria checked) also
// renewalCriteria, their overall result.
func StatusParameters(st *AuthStatus, renewal *Evaluation) ([]byte, error) {
	i := func(name string, v int) r4.ParametersParameter {
		return r4.ParametersParameter{Name: name, ValueInteger: ptr(v)}
	}
	p := &r4.Parameters{Parameter: []r4.ParametersParameter{
		{Name: "outcome", ValueCode: ptr(st.Outcome)},
		i("requested", st.Requested), i("approved", st.Approved), i("used", st.Used), i("remaining", st.Remaining),
		i("daysLeft", st.DaysLeft),
		{Name: "renewalDue", ValueBoolean: ptr(st.RenewalDue)},
		{Name: "claimResponse", ValueReference: &r4.Reference{Reference: ptr(st.ClaimResponse)}},
	}}
	if renewal != nil {
		p.Parameter = append(p.Parameter, r4.ParametersParameter{Name: "renewalCriteria", ValueCode: ptr(string(renewal.Result))})
	}
	return fhirjson.Marshal(p)
}
