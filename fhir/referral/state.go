// Package referral holds the rules of a referral's life, free of HTTP and
// storage: the Task state machine that both clinics move (HL7 BSeR / 360X:
// a ServiceRequest is the referral, a Task carries its state), and the BSeR
// business status each state shows. docs/referrals.md describes the flow
// for a partner's integrator; docs/design/security.md RFL-1 to RFL-4 are
// the rules enforced here and in the fhir package.
package referral

import (
	"slices"
	"strings"
)

// Status is a Task.status code (http://hl7.org/fhir/task-status) a
// referral can be in.
type Status string

// The statuses of a referral Task. Other Task statuses (draft, ready,
// on-hold, failed, entered-in-error) are not part of a referral's life.
const (
	Requested  Status = "requested"
	Received   Status = "received"
	Accepted   Status = "accepted"
	Rejected   Status = "rejected"
	InProgress Status = "in-progress"
	Completed  Status = "completed"
	Cancelled  Status = "cancelled"
)

// Statuses lists every referral status, in the order of a referral's life.
var Statuses = []Status{Requested, Received, Accepted, Rejected, InProgress, Completed, Cancelled}

// Known reports whether s is a referral status.
func Known(s Status) bool { return slices.Contains(Statuses, s) }

// Terminal reports whether no move leaves s.
func Terminal(s Status) bool { return s == Rejected || s == Completed || s == Cancelled }

// Actor is who asks for a move: the Task's owner (the recipient of the
// referral) or its requester (the referrer), or the gateway acting on the
// patient's consent.
type Actor string

// Actors.
const (
	Owner     Actor = "owner"
	Requester Actor = "requester"
	// ConsentWithdrawn is the gateway closing a referral the clinic sent
	// because the patient's consent for its owner no longer counts
	// (docs/design/security.md RFL-6). No client acts as it.
	ConsentWithdrawn Actor = "consent-withdrawn"
)

// edge is one allowed move and who may make it.
type edge struct {
	from, to Status
	by       Actor
}

// edges is the state machine (docs/design/security.md RFL-2): the owner
// moves a referral requested -> received -> accepted | rejected ->
// in-progress -> completed; the requester may cancel it before it is
// accepted. The gateway cancels a referral that is still open when the
// patient's consent for its owner is withdrawn (RFL-6). Nothing leaves
// rejected, completed or cancelled.
var edges = []edge{
	{Requested, Received, Owner},
	{Received, Accepted, Owner},
	{Received, Rejected, Owner},
	{Accepted, InProgress, Owner},
	{InProgress, Completed, Owner},
	{Requested, Cancelled, Requester},
	{Received, Cancelled, Requester},
	{Requested, Cancelled, ConsentWithdrawn},
	{Received, Cancelled, ConsentWithdrawn},
	{Accepted, Cancelled, ConsentWithdrawn},
	{InProgress, Cancelled, ConsentWithdrawn},
}

// Move is a requested change of a Task's status.
type Move struct {
	From, To Status
	By       Actor
	// HasStatusReason and HasOutput tell whether the new version carries
	// Task.statusReason and Task.output.
	HasStatusReason bool
	HasOutput       bool
}

// Verdict kinds: what the HTTP layer answers.
const (
	// Allowed: the move is made.
	Allowed = 200
	// Conflict (409): the move is not one the actor may make from the
	// current status.
	Conflict = 409
	// Unprocessable (422): the target is not a referral status, or the new
	// version lacks what the target status requires.
	Unprocessable = 422
)

// Verdict is the outcome of Decide.
type Verdict struct {
	// Code is Allowed, Conflict or Unprocessable.
	Code int
	// Reason explains a refusal in words safe to show the caller (statuses
	// and element names only).
	Reason string
	// Next are the statuses the actor may move the Task to from From (what
	// a refusal names); empty when none.
	Next []Status
}

// Next returns the statuses actor may move a Task to from from.
func Next(from Status, by Actor) []Status {
	var out []Status
	for _, e := range edges {
		if e.from == from && e.by == by {
			out = append(out, e.to)
		}
	}
	return out
}

// Decide judges a move. A move that keeps the status is not a transition
// and is allowed (the fhir layer limits what such an update may change);
// otherwise the move must be an edge of the machine made by the actor it
// belongs to (409 when not), and the new version must carry statusReason
// when it rejects and output when it completes (422 when not).
// A target that is no referral status at all is 422.
func Decide(m Move) Verdict {
	next := Next(m.From, m.By)
	v := Verdict{Next: next}
	switch {
	case !Known(m.To):
		v.Code, v.Reason = Unprocessable, "status "+quote(string(m.To))+" is not a referral status"+allowed(next)
	case !Known(m.From):
		v.Code, v.Reason = Conflict, "the current status "+quote(string(m.From))+" is not a referral status; it cannot be moved"
	case m.From == m.To:
		v.Code = Allowed
	case !slices.Contains(next, m.To):
		v.Code = Conflict
		switch {
		case Terminal(m.From):
			v.Reason = "the referral is " + string(m.From) + "; nothing moves it any more"
		case slices.ContainsFunc(edges, func(e edge) bool { return e.from == m.From && e.to == m.To && e.by != ConsentWithdrawn }):
			v.Reason = "only the " + string(other(m.By)) + " may move the referral from " + string(m.From) + " to " + string(m.To) + allowed(next)
		default:
			v.Reason = "no move from " + string(m.From) + " to " + string(m.To) + allowed(next)
		}
	case (m.To == Rejected || m.By == ConsentWithdrawn) && !m.HasStatusReason:
		v.Code, v.Reason = Unprocessable, "Task.statusReason is required to move the referral to "+string(m.To)
	case m.To == Completed && !m.HasOutput:
		v.Code, v.Reason = Unprocessable, "Task.output is required to complete the referral (the consult note or summary)"
	default:
		v.Code = Allowed
	}
	return v
}

// Withdrawal is the move that closes a referral in from when the
// patient's consent for its owner is withdrawn (docs/design/security.md
// RFL-6): cancelled, with statusReason, from any status that is not final;
// ok is false when the referral is already closed (or in no referral
// status), and nothing is to be done. The move is judged by Decide like
// any other.
func Withdrawal(from Status) (m Move, ok bool) {
	m = Move{From: from, To: Cancelled, By: ConsentWithdrawn, HasStatusReason: true}
	return m, Known(from) && Decide(m).Code == Allowed && from != Cancelled
}

// other is the actor of an edge the caller (owner or requester) may not
// make.
func other(a Actor) Actor {
	if a == Owner {
		return Requester
	}
	return Owner
}

func allowed(next []Status) string {
	if len(next) == 0 {
		return "; no move is allowed from here"
	}
	s := make([]string, len(next))
	for i, n := range next {
		s[i] = string(n)
	}
	return "; allowed: " + strings.Join(s, ", ")
}

// quote bounds a caller's value before it goes into a Reason (diagnostics
// only, never logged).
func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return `"` + s + `"`
}

// BusinessStatusSystem is the BSeR Task business status code system.
const BusinessStatusSystem = "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS"

// BusinessStatus is a BSeR Task business status.
type BusinessStatus struct{ Code, Display string }

// BusinessStatusOf returns the BSeR business status a Task in s carries
// (BSeR STU1 TaskBusinessStatusCS). Requested and received both show
// "2.0 Service Request Created": BSeR has no code for a referral seen but
// not decided.
func BusinessStatusOf(s Status) (BusinessStatus, bool) {
	switch s {
	case Requested, Received:
		return BusinessStatus{"2.0", "Service Request Created"}, true
	case Accepted:
		return BusinessStatus{"3.0", "Service Request Accepted"}, true
	case Rejected:
		return BusinessStatus{"4.0", "Service Request Declined"}, true
	case InProgress:
		return BusinessStatus{"5.x", "Service Request Fulfillment Initiated"}, true
	case Cancelled:
		return BusinessStatus{"6.0", "Service Request Fulfillment Cancelled"}, true
	case Completed:
		return BusinessStatus{"7.0", "Service Request Fulfillment Completed"}, true
	}
	return BusinessStatus{}, false
}
