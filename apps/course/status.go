package course

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The course summary's prior-authorization and referral status. Both are
// optional: the page shows them when the gateway answers, and nothing
// (neither "none" nor an error) when there is no answer or the token may not
// see it (docs/design/security.md VIEW-6: a section the user may not see
// shows no data).

// paStatus is the course's latest payer answer, as CarePlan/{id}/$pa-status
// reads it (docs/prior-auth.md).
type paStatus struct {
	Outcome                                    string
	Requested, Approved, Used, Remaining, Days string
	RenewalDue                                 bool
	Renewal                                    string
	Period                                     string
}

// referral is one referral Task about the patient (docs/referrals.md).
type referral struct {
	Status, BusinessStatus, Reason string
	To, From                       string
	Authored, Modified             string
}

type parameters struct {
	Parameter []struct {
		Name           string
		ValueCode      string
		ValueInteger   *int
		ValueBoolean   *bool
		ValueReference *reference
	}
}

type claimResponse struct {
	PreAuthPeriod *period
}

type task struct {
	Status, AuthoredOn, LastModified string
	BusinessStatus                   *concept
	StatusReason                     *concept
	Owner, Requester                 *namedRef
}

type namedRef struct{ Reference, Display string }

func (r *namedRef) String() string {
	switch {
	case r == nil:
		return ""
	case r.Display != "":
		return r.Display
	}
	return r.Reference
}

// readPAStatus reads GET CarePlan/{id}/$pa-status with the user's token and
// the answer's approved period from its ClaimResponse. nil: no answer (404),
// no criteria for the course's drug (422) or not visible to the user (403).
func readPAStatus(ctx context.Context, r *reader, planID string) (*paStatus, error) {
	if planID == "" {
		return nil, nil
	}
	var p parameters
	switch err := r.get(ctx, "/CarePlan/"+url.PathEscape(planID)+"/$pa-status", &p); {
	case errors.Is(err, errAbsent), errors.Is(err, errNotShared):
		return nil, nil
	case err != nil:
		return nil, err
	}
	st := &paStatus{}
	num := func(v *int) string {
		if v == nil {
			return ""
		}
		return fmtNum(float64(*v))
	}
	var crRef string
	for _, x := range p.Parameter {
		switch x.Name {
		case "outcome":
			st.Outcome = x.ValueCode
		case "requested":
			st.Requested = num(x.ValueInteger)
		case "approved":
			st.Approved = num(x.ValueInteger)
		case "used":
			st.Used = num(x.ValueInteger)
		case "remaining":
			st.Remaining = num(x.ValueInteger)
		case "daysLeft":
			st.Days = num(x.ValueInteger)
		case "renewalDue":
			st.RenewalDue = x.ValueBoolean != nil && *x.ValueBoolean
		case "renewalCriteria":
			st.Renewal = x.ValueCode
		case "claimResponse":
			if x.ValueReference != nil {
				crRef = x.ValueReference.Reference
			}
		}
	}
	if st.Outcome == "" {
		return nil, nil
	}
	// The approved period is the answer's preAuthPeriod; $pa-status names
	// the answer. A ClaimResponse the user may not read leaves it out.
	if id, ok := strings.CutPrefix(crRef, "ClaimResponse/"); ok && id != "" && !strings.Contains(id, "/") {
		var cr claimResponse
		switch err := r.get(ctx, "/ClaimResponse/"+url.PathEscape(id), &cr); {
		case errors.Is(err, errAbsent), errors.Is(err, errNotShared):
		case err != nil:
			return nil, err
		case cr.PreAuthPeriod != nil:
			st.Period = strings.TrimSuffix(day(cr.PreAuthPeriod.Start)+" to "+day(cr.PreAuthPeriod.End), " to ")
		}
	}
	return st, nil
}

// readReferrals searches the referral Tasks for the patient (Task?patient=,
// the Task-patient parameter over Task.for), with the Organizations they name
// (_include; one the user may not read is left out by the gateway and shown
// by its reference). nil when none or not visible.
func readReferrals(ctx context.Context, r *reader, pid string) ([]referral, error) {
	raw, err := r.search(ctx, "Task", url.Values{"patient": {pid}, "_include": {"Task:owner", "Task:requester"}})
	switch {
	case errors.Is(err, errNotShared), errors.Is(err, errAbsent):
		return nil, nil
	case err != nil:
		return nil, err
	}
	var tasks []task
	names := map[string]string{}
	for _, b := range raw {
		var h struct{ ResourceType, ID, Name string }
		if err := json.Unmarshal(b, &h); err != nil {
			return nil, fmt.Errorf("course: decoding a resource: %w", err)
		}
		switch h.ResourceType {
		case "Task":
			var t task
			if err := json.Unmarshal(b, &t); err != nil {
				return nil, fmt.Errorf("course: decoding a resource: %w", err)
			}
			tasks = append(tasks, t)
		case "Organization":
			if h.Name != "" {
				names["Organization/"+h.ID] = h.Name
			}
		}
	}
	who := func(r *namedRef) string {
		if r != nil && r.Display == "" && names[r.Reference] != "" {
			return names[r.Reference]
		}
		return r.String()
	}
	out := make([]referral, 0, len(tasks))
	for _, t := range tasks {
		f := referral{Status: t.Status, To: who(t.Owner), From: who(t.Requester),
			Authored: day(t.AuthoredOn), Modified: day(t.LastModified)}
		if t.BusinessStatus != nil {
			f.BusinessStatus = t.BusinessStatus.label()
		}
		if t.StatusReason != nil {
			f.Reason = t.StatusReason.label()
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b referral) int { return strings.Compare(b.Authored, a.Authored) })
	return out, nil
}
