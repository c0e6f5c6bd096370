package mapping

import (
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/codes"
)

// OperationBase is the canonical base of the gateway's OperationDefinitions.
const OperationBase = codes.CanonicalBase + "/OperationDefinition/"

// priorAuthOperations are the prior-authorization operations on a course
// (docs/prior-auth.md): $pa-criteria and $pas-bundle on a CarePlan instance.
func priorAuthOperations() []any {
	param := func(name string, use r4.OperationParameterUse, min int, max, typ, doc string, parts ...r4.OperationDefinitionParameter) r4.OperationDefinitionParameter {
		p := r4.OperationDefinitionParameter{Name: name, Use: use, Min: min, Max: max, Documentation: ptr(doc), Part: parts}
		if typ != "" {
			p.Type = ptr(typ)
		}
		return p
	}
	in, out := r4.OperationParameterUseIn, r4.OperationParameterUseOut
	payer := param("payer", in, 0, "1", "string",
		"Organization/{id} of the payer whose policy applies; default: the payer of the course's coverage.")
	def := func(code, title, desc string, params ...r4.OperationDefinitionParameter) *r4.OperationDefinition {
		return &r4.OperationDefinition{
			Id:           ptr(code),
			Meta:         defMeta(),
			Url:          ptr(OperationBase + code),
			Version:      ptr(IGVersion),
			Name:         computableName(code),
			Title:        ptr(title),
			Status:       r4.PublicationStatusActive,
			Kind:         r4.OperationKindOperation,
			Experimental: ptr(false),
			Publisher:    ptr(publisher),
			Description:  ptr(desc),
			AffectsState: ptr(false),
			Code:         code,
			Resource:     []r4.ResourceType{r4.ResourceTypeCarePlan},
			Instance:     true,
			Parameter:    params,
		}
	}
	return []any{
		def("pa-criteria", "Prior-authorization criteria of a course",
			"Checks a course of esketamine or ketamine treatment (the CarePlan) against the payer's prior-authorization "+
				"criteria, read from the records the caller may see. Each criterion is met, not-met or unknown (the "+
				"records cannot show it), with the resources used as evidence; the result is met only when every "+
				"criterion is.",
			payer,
			param("request", in, 0, "1", "code", "initial (default) or renewal: which criteria of the policy to check."),
			param("policy", out, 1, "1", "string", "The policy checked: id|version."),
			param("course", out, 1, "1", "Reference", "The CarePlan checked."),
			param("request", out, 1, "1", "code", "initial or renewal."),
			param("criterion", out, 0, "*", "", "One per criterion of the policy.",
				param("code", out, 1, "1", "code", "The criterion's code in the policy."),
				param("text", out, 1, "1", "string", "What the criterion requires."),
				param("status", out, 1, "1", "code", "met | not-met | unknown."),
				param("evidence", out, 0, "*", "Reference", "A resource the answer is based on."),
				param("reason", out, 0, "1", "string", "Why, in words.")),
			param("result", out, 1, "1", "code", "met | not-met | unknown: not-met when any criterion is not met, "+
				"else unknown when any is unknown, else met."),
		),
		def("pas-bundle", "Da Vinci PAS request Bundle of a course",
			"Builds the Da Vinci PAS 2.0.1 Request Bundle for the course, ready for the payer's Claim/$submit: the "+
				"Claim (use preauthorization) first, the beneficiary, coverage, insurer and requestor, the prescriber, "+
				"the MedicationRequest as requestedService, and the evidence of the criteria as supportingInfo. Data a "+
				"required element needs that the records lack is a 422 OperationOutcome naming what to record.",
			payer,
			param("return", out, 1, "1", "Bundle", "The PAS request Bundle (profile-pas-request-bundle)."),
		),
		def("pa-status", "Prior-authorization status of a course",
			"Where the course's authorization stands, from the latest payer answer recorded for it (a ClaimResponse "+
				"whose item names the course's MedicationRequest): the outcome, the sessions requested, approved, used "+
				"in the approved period and remaining, the days left, whether renewal is due (14 days or a quarter of "+
				"the sessions left), and the result of the policy's renewal criteria. 404 when no answer is recorded.",
			payer,
			param("outcome", out, 1, "1", "code", "approved | partial | denied | pended."),
			param("requested", out, 1, "1", "integer", "Sessions in the course's dose plan."),
			param("approved", out, 1, "1", "integer", "Sessions the payer approved."),
			param("used", out, 1, "1", "integer", "Sessions with a completed dose in the approved period."),
			param("remaining", out, 1, "1", "integer", "approved - used, not below 0."),
			param("daysLeft", out, 1, "1", "integer", "Days to the end of the approved period."),
			param("renewalDue", out, 1, "1", "boolean", "Whether to request reauthorization now."),
			param("claimResponse", out, 1, "1", "Reference", "The payer answer the status comes from."),
			param("renewalCriteria", out, 0, "1", "code", "met | not-met | unknown: the policy's renewal criteria."),
		),
	}
}
