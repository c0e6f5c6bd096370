package priorauth

import (
	"slices"
	"strconv"
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/codes"
)

// AnswerLabels are the security labels of a stored payer answer, as JSON
// members: PSY and normal confidentiality, like the course it answers for
// and like the answer a clinic records (docs/fhir-mapping.md "Security
// labels"). A payer's own labels are replaced.
func AnswerLabels() []any {
	var out []any
	for _, c := range []codes.Code{codes.SecurityPSY, codes.SecurityNormal} {
		out = append(out, map[string]any{"system": c.System, "code": c.Code, "display": c.Display})
	}
	return out
}

// The PAS review action a payer's answer carries on each item's
// adjudication (profile-claimresponse).
const (
	ExtReviewAction     = PASBase + "extension-reviewAction"
	ExtReviewActionCode = PASBase + "extension-reviewActionCode"
	// ReviewActionSystem is X12 306: A1 certified in total, A2 certified
	// partial, A3 not certified, A4 pended.
	ReviewActionSystem = x12ReviewActionCodes
)

// AnswerIssue is one way a payer's ClaimResponse falls short of the answer
// shape the gateway keeps (docs/design/security.md PA-4): the FHIRPath of
// the element and what is wrong.
type AnswerIssue struct {
	Path, Text string
}

// Answer is what a checked payer answer says.
type Answer struct {
	// System and Value are the answer's first identifier: re-sending an
	// answer with the same identifier changes the same resource.
	System, Value string
	// Order is the MedicationRequest the items name as requestedService
	// ("MedicationRequest/id"), the link to the course; OrderPath where.
	Order, OrderPath string
	// Outcome is approved, partial, denied or pended.
	Outcome string
}

// CheckAnswer checks a payer's ClaimResponse, already valid R4, against the
// PAS answer shape the gateway emits for a clinic's prior_auth_response
// (docs/prior-auth.md): the PAS profile claimed, an identifier, a
// preauthorization answer whose every item names the same MedicationRequest
// as requestedService and carries exactly one X12 306 review action, an
// outcome that agrees with the review actions, approved units as whole
// numbers, and for an approval the authorization number and period. A
// request naming a Claim by reference is refused: the gateway keeps no
// Claims, so the Claim is named by request.identifier. Every issue is
// returned, in element order.
func CheckAnswer(cr *r4.ClaimResponse) (*Answer, []AnswerIssue) {
	a := &Answer{}
	var issues []AnswerIssue
	bad := func(path, text string) { issues = append(issues, AnswerIssue{"ClaimResponse." + path, text}) }
	if cr.Meta == nil || !slices.Contains(cr.Meta.Profile, ProfileClaimResponse) {
		bad("meta.profile", "the answer must claim the Da Vinci PAS profile "+ProfileClaimResponse)
	}
	if len(cr.Identifier) > 0 && cr.Identifier[0].System != nil && cr.Identifier[0].Value != nil {
		a.System, a.Value = *cr.Identifier[0].System, *cr.Identifier[0].Value
	}
	if a.System == "" || a.Value == "" {
		bad("identifier[0]", "the answer's identifier (system and value) is required: it makes re-sending safe")
	}
	if cr.Status != r4.FinancialResourceStatusCodesActive {
		bad("status", "status must be active")
	}
	if cr.Use != r4.UsePreauthorization {
		bad("use", "use must be preauthorization")
	}
	if cr.Request != nil && cr.Request.Reference != nil {
		bad("request.reference", "the gateway keeps no Claims: name the Claim by request.identifier")
	}
	if len(cr.Item) == 0 {
		bad("item", "the answer needs an item naming the requested service")
	}
	actions := map[string]bool{}
	approved := false
	for i, it := range cr.Item {
		ip := "item[" + strconv.Itoa(i) + "]"
		order, at := "", ""
		for j, x := range it.Extension {
			if x.Url == ExtRequestedService {
				order, at = refKey(x.ValueReference), ip+".extension["+strconv.Itoa(j)+"].valueReference"
			}
		}
		switch {
		case at == "":
			bad(ip+".extension", "the item must name the course's MedicationRequest in the requestedService extension")
		case !strings.HasPrefix(order, "MedicationRequest/"):
			bad(at, "requestedService must refer to a MedicationRequest/{id}")
		case a.Order == "":
			a.Order, a.OrderPath = order, "ClaimResponse."+at
		case order != a.Order:
			bad(at, "every item must name the same MedicationRequest")
		}
		n := 0
		for k, adj := range it.Adjudication {
			kp := ip + ".adjudication[" + strconv.Itoa(k) + "]"
			for _, x := range adj.Extension {
				if x.Url != ExtReviewAction {
					continue
				}
				for _, sub := range x.Extension {
					if sub.Url != ExtReviewActionCode || sub.ValueCodeableConcept == nil {
						continue
					}
					for _, cd := range sub.ValueCodeableConcept.Coding {
						if cd.System != nil && *cd.System == ReviewActionSystem && cd.Code != nil && reviewOutcomes[*cd.Code] != "" {
							actions[*cd.Code] = true
							approved = approved || *cd.Code == "A1" || *cd.Code == "A2"
							n++
						}
					}
				}
			}
			if adj.Value != nil {
				if v, err := strconv.ParseInt(adj.Value.String(), 10, 64); err != nil || v < 0 {
					bad(kp+".value", "the approved units must be a whole number, 0 or more")
				}
			}
		}
		if n != 1 {
			bad(ip+".adjudication", "the item must carry exactly one review action (reviewAction.reviewActionCode, X12 306 A1, A2, A3 or A4)")
		}
	}
	var want r4.ClaimProcessingCodes
	switch {
	case len(actions) == 0:
	case len(actions) == 1 && actions["A4"]:
		a.Outcome, want = "pended", r4.ClaimProcessingCodesQueued
	case len(actions) == 1 && actions["A1"]:
		a.Outcome, want = "approved", r4.ClaimProcessingCodesComplete
	case len(actions) == 1 && actions["A3"]:
		a.Outcome, want = "denied", r4.ClaimProcessingCodesComplete
	default:
		a.Outcome, want = "partial", r4.ClaimProcessingCodesPartial
	}
	if a.Outcome != "" && cr.Outcome != want {
		bad("outcome", "the review actions ("+a.Outcome+") need outcome "+want.Code())
	}
	if approved {
		if cr.PreAuthRef == nil || *cr.PreAuthRef == "" {
			bad("preAuthRef", "an approval needs the authorization number")
		}
		if p := cr.PreAuthPeriod; p == nil || p.Start == nil || p.End == nil {
			bad("preAuthPeriod", "an approval needs the approved period (start and end)")
		}
	}
	return a, issues
}
