package fhir

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/priorauth"
)

const usCore = "http://hl7.org/fhir/us/core/StructureDefinition/"

// USCoreProfiles are the US Core 6.1 profiles the gateway claims per resource
// type (types US Core does not profile, such as MedicationAdministration,
// have none); the CapabilityStatement lists them as supportedProfile for the
// types that are served.
var USCoreProfiles = map[string][]string{
	"Patient":               {usCore + "us-core-patient"},
	"Practitioner":          {usCore + "us-core-practitioner"},
	"PractitionerRole":      {usCore + "us-core-practitionerrole"},
	"Organization":          {usCore + "us-core-organization"},
	"Location":              {usCore + "us-core-location"},
	"Encounter":             {usCore + "us-core-encounter"},
	"MedicationRequest":     {usCore + "us-core-medicationrequest"},
	"Medication":            {usCore + "us-core-medication"},
	"Condition":             {usCore + "us-core-condition-problems-health-concerns", usCore + "us-core-condition-encounter-diagnosis"},
	"Procedure":             {usCore + "us-core-procedure"},
	"Coverage":              {usCore + "us-core-coverage"},
	"Provenance":            {usCore + "us-core-provenance"},
	"CarePlan":              {usCore + "us-core-careplan"},
	"QuestionnaireResponse": {usCore + "us-core-questionnaireresponse"},
	"Observation": {
		usCore + "us-core-blood-pressure", usCore + "us-core-heart-rate",
		usCore + "us-core-respiratory-rate", usCore + "us-core-pulse-oximetry",
		usCore + "us-core-body-weight", usCore + "us-core-body-temperature",
		usCore + "us-core-vital-signs", usCore + "us-core-observation-screening-assessment",
	},
}

// everythingDefinition is the canonical of Patient/$everything.
const everythingDefinition = "http://hl7.org/fhir/OperationDefinition/Patient-everything"

// The Bulk Data Access IG's export OperationDefinitions (BDA export.html).
const (
	bulkExportDefinition        = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
	bulkPatientExportDefinition = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
	bulkGroupExportDefinition   = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
)

// The SMART on FHIR code of CapabilityStatement.rest.security.service
// (R4 valueset-restful-security-service, extensible).
const (
	systemSecurityService = "http://terminology.hl7.org/CodeSystem/restful-security-service"
	codeSMARTOnFHIR       = "SMART-on-FHIR"
)

// OAuthEndpoints are the authorization server's endpoints the
// CapabilityStatement names in the SMART oauth-uris extension
// (conformance.OAuthURIs; docs/design/security.md DISC-7). Each is an
// absolute URL.
type OAuthEndpoints struct {
	Authorize, Token, Introspect, Revoke string
}

// gatewayOAuth returns the endpoints of the gateway's own authorization
// server for a FHIR base {root}/fhir: the server lives under {root}/auth
// (auth.Options.Issuer, docs/design/security.md, Endpoints). ok is false
// for a base of another shape, whose endpoints cannot be derived.
func gatewayOAuth(base string) (OAuthEndpoints, bool) {
	root, ok := strings.CutSuffix(base, "/fhir")
	if !ok {
		return OAuthEndpoints{}, false
	}
	as := auth.Options{BaseURL: root}
	iss := as.Issuer()
	return OAuthEndpoints{Authorize: iss + "/authorize", Token: as.TokenEndpoint(),
		Introspect: iss + "/introspect", Revoke: iss + "/revoke"}, true
}

// valid reports whether every endpoint is an absolute http(s) URL.
func (o OAuthEndpoints) valid() bool {
	for _, s := range []string{o.Authorize, o.Token, o.Introspect, o.Revoke} {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return false
		}
	}
	return true
}

// capabilityInput is what the CapabilityStatement declares beyond the
// registered search types.
type capabilityInput struct {
	base, version string
	now           time.Time
	profiles      map[string][]string
	oauth         OAuthEndpoints
	// documentation is rest.documentation (markdown): the apps the
	// gateway serves; empty: none.
	documentation string
	// bulkExport is set when the server serves Bulk Data $export: the
	// statement then also instantiates the Bulk Data server
	// CapabilityStatement (see instantiates), declares the three export
	// operations and the derived Group type (docs/design/security.md BULK-7).
	bulkExport bool
	// referrals is set when the write path is served (Options.Writer):
	// the transaction interaction at the base, the update interaction on
	// Task and the create interaction on ClaimResponse.
	referrals bool
}

// instantiates lists the CapabilityStatements the gateway's statement conforms to
// (CapabilityStatement.instantiates, versioned canonicals): the US Core
// 6.1.0 server's always, and Bulk Data's (BDA export.html) when the server
// serves $export.
func instantiates(bulkExport bool) []string {
	out := []string{conformance.USCoreServer + "|" + conformance.USCoreVersion}
	if bulkExport {
		out = append(out, conformance.BulkDataServer+"|"+conformance.BulkDataVersion)
	}
	return out
}

// implementationGuides lists the guides the gateway follows
// (CapabilityStatement.implementationGuide): its own, which it serves under
// /fhir, and US Core.
func implementationGuides() []string {
	return []string{conformance.ImplementationGuideURL, conformance.USCoreIG + "|" + conformance.USCoreVersion}
}

// restSecurity is rest.security: CORS, the SMART-on-FHIR service and the
// oauth-uris extension with the authorization server's endpoints
// (docs/design/security.md DISC-7; the SMART configuration document remains
// the primary discovery route).
func restSecurity(base string, o OAuthEndpoints) *r4.CapabilityStatementRestSecurity {
	sub := func(name, uri string) r4.Extension { return r4.Extension{Url: name, ValueUri: ptr(uri)} }
	return &r4.CapabilityStatementRestSecurity{
		Extension: []r4.Extension{{
			Url: conformance.OAuthURIs,
			Extension: []r4.Extension{
				sub("authorize", o.Authorize), sub("token", o.Token),
				sub("introspect", o.Introspect), sub("revoke", o.Revoke),
			},
		}},
		Cors: ptr(true),
		Service: []r4.CodeableConcept{{
			Coding: []r4.Coding{{System: ptr(systemSecurityService), Code: ptr(codeSMARTOnFHIR), Display: ptr(codeSMARTOnFHIR)}},
		}},
		Description: ptr("Every interaction but metadata needs an OAuth2 bearer token from the SMART on FHIR " +
			"authorization server (SMART App Launch 2.2); its endpoints are listed in " + base +
			"/.well-known/smart-configuration and, for older clients, in the oauth-uris extension here. " +
			"A payer's or partner's search whose answer its view narrows (a data class the patient's consent leaves out) " +
			"carries an OperationOutcome entry (search.mode outcome) with an issue of type suppressed: not shared, not none."),
	}
}

// buildCapabilityStatement generates the CapabilityStatement
// (capabilitystatement.html) from what is registered: one rest.resource per
// search.Types() with read/vread/history-instance/search-type, its
// searchParams, include/revinclude from reference params, and $everything on
// Patient; the guides it follows and instantiates; and rest.security. It is
// emitted once through fhirjson.Marshal and cached.
func buildCapabilityStatement(in capabilityInput) ([]byte, error) {
	base, version, now, profiles := in.base, in.version, in.now, in.profiles
	types := slices.Sorted(slices.Values(search.Types()))
	if in.bulkExport && !slices.Contains(types, "Group") {
		types = append(types, "Group")
		slices.Sort(types)
	}
	var resources []r4.CapabilityStatementRestResource
	for _, typ := range types {
		var rt r4.ResourceType
		if err := rt.UnmarshalJSON([]byte(strconv.Quote(typ))); err != nil || rt.Code() != typ {
			return nil, fmt.Errorf("fhir: capability: %q is not an R4 resource type", typ)
		}
		res := r4.CapabilityStatementRestResource{
			Type: rt,
			Interaction: []r4.CapabilityStatementRestResourceInteraction{
				{Code: r4.TypeRestfulInteractionRead},
				{Code: r4.TypeRestfulInteractionVread},
				{Code: r4.TypeRestfulInteractionHistoryInstance},
				{Code: r4.TypeRestfulInteractionSearchType},
			},
			Versioning:       ptr(r4.ResourceVersionPolicyVersioned),
			ReadHistory:      ptr(true),
			SupportedProfile: slices.Clone(profiles[typ]),
		}
		for _, p := range search.Params(typ) {
			var pt r4.SearchParamType
			if code := p.FHIRType(); code == "" || pt.UnmarshalJSON([]byte(strconv.Quote(code))) != nil || pt.Code() != code {
				return nil, fmt.Errorf("fhir: capability: %s.%s has no search parameter type", typ, p.Name)
			}
			sp := r4.CapabilityStatementRestResourceSearchParam{Name: p.Name, Type: pt}
			if p.Definition != "" {
				sp.Definition = ptr(p.Definition)
			}
			if p.Doc != "" {
				sp.Documentation = ptr(p.Doc)
			}
			res.SearchParam = append(res.SearchParam, sp)
			if p.Includable() {
				res.SearchInclude = append(res.SearchInclude, typ+":"+p.Name)
			}
		}
		// _revinclude: reference params of other types that can point here.
		for _, src := range types {
			for _, p := range search.Params(src) {
				if p.Includable() && (len(p.Targets) == 0 || slices.Contains(p.Targets, typ)) {
					res.SearchRevInclude = append(res.SearchRevInclude, src+":"+p.Name)
				}
			}
		}
		if in.referrals && typ == "ServiceRequest" {
			res.Documentation = ptr("A partner clinic's client reads the ServiceRequest of a referral the clinic sent it " +
				"(performer its Organization), and the resources it names, only while the patient's Consent permits " +
				"the partner; otherwise 404 (docs/referrals.md, the referral package).")
		}
		if in.referrals && typ == "Task" {
			res.Interaction = append(res.Interaction, r4.CapabilityStatementRestResourceInteraction{
				Code: r4.TypeRestfulInteractionUpdate,
				Documentation: ptr("A referral Task moves along its state machine with PUT and If-Match " +
					"(docs/referrals.md); a stale If-Match is 412."),
			})
			res.Interaction = append(res.Interaction, r4.CapabilityStatementRestResourceInteraction{
				Code:          r4.TypeRestfulInteractionPatch,
				Documentation: ptr("JSON Patch (application/json-patch+json) with If-Match, under the same rules as update."),
			})
			res.ConditionalUpdate = ptr(false)
			res.Documentation = ptr("A partner clinic's client sees the referral Tasks its Organization owns or requested, " +
				"with only the security labels the patient's Consent clears for it (tagged SUBSETTED otherwise); " +
				"its Task search by _security is refused (docs/referrals.md).")
		}
		if in.referrals && typ == "ClaimResponse" {
			res.Interaction = append(res.Interaction, r4.CapabilityStatementRestResourceInteraction{
				Code: r4.TypeRestfulInteractionCreate,
				Documentation: ptr("A payer's answer to a prior-authorization request (Da Vinci PAS ClaimResponse), " +
					"posted by the payer's client for a course it insures within its view (docs/prior-auth.md); " +
					"re-sending the same identifier changes the same resource."),
			})
			if !slices.Contains(res.SupportedProfile, priorauth.ProfileClaimResponse) {
				res.SupportedProfile = append(res.SupportedProfile, priorauth.ProfileClaimResponse)
			}
			res.ConditionalCreate = ptr(false)
		}
		if typ == "Patient" {
			res.Operation = []r4.CapabilityStatementRestResourceOperation{{
				Name:       "everything",
				Definition: everythingDefinition,
			}}
			if in.bulkExport {
				res.Operation = append(res.Operation, r4.CapabilityStatementRestResourceOperation{
					Name: "export", Definition: bulkPatientExportDefinition})
			}
		}
		if typ == "Group" {
			// Derived cohorts (groups.go): read and an _id search, no history.
			res.Interaction = []r4.CapabilityStatementRestResourceInteraction{
				{Code: r4.TypeRestfulInteractionRead}, {Code: r4.TypeRestfulInteractionSearchType}}
			res.Versioning, res.ReadHistory = ptr(r4.ResourceVersionPolicyNoVersion), ptr(false)
			res.SearchParam = []r4.CapabilityStatementRestResourceSearchParam{{Name: "_id", Type: r4.SearchParamTypeToken,
				Definition: ptr("http://hl7.org/fhir/SearchParameter/Resource-id")}}
			res.Operation = []r4.CapabilityStatementRestResourceOperation{{Name: "export", Definition: bulkGroupExportDefinition}}
		}
		if typ == "CarePlan" {
			// The prior-authorization operations (fhir/priorauth.go),
			// defined in the published guide.
			for _, op := range []string{OpPACriteria, OpPASBundle, OpPAStatus} {
				res.Operation = append(res.Operation, r4.CapabilityStatementRestResourceOperation{
					Name: op, Definition: OperationBase + op,
				})
			}
		}
		resources = append(resources, res)
	}
	desc := "Read-only FHIR R4 API of a KetaBridge gateway."
	var restInteractions []r4.CapabilityStatementRestInteraction
	if in.referrals {
		desc = "FHIR R4 API of a KetaBridge gateway: reads, referrals written by partner clinics, and payers' prior-authorization answers."
		restInteractions = []r4.CapabilityStatementRestInteraction{{
			Code: r4.SystemRestfulInteractionTransaction,
			Documentation: ptr("A partner clinic's referral: a transaction Bundle of Task, ServiceRequest, Patient and " +
				"supporting resources, stored all or nothing (docs/referrals.md)."),
		}}
	}
	cs := r4.CapabilityStatement{
		Name:         ptr("KetaBridgeCapabilityStatement"),
		Title:        ptr("KetaBridge FHIR API"),
		Status:       r4.PublicationStatusActive,
		Date:         now.UTC().Format(time.RFC3339),
		Publisher:    ptr("KetaBridge"),
		Description:  ptr(desc),
		Kind:         r4.CapabilityStatementKindInstance,
		Instantiates: instantiates(in.bulkExport),
		Software:     &r4.CapabilityStatementSoftware{Name: "KetaBridge", Version: ptr(version)},
		Implementation: &r4.CapabilityStatementImplementation{
			Description: "KetaBridge FHIR gateway",
			Url:         ptr(base),
		},
		FhirVersion:         r4.FHIRVersion4_0_1,
		Format:              []string{"json"},
		ImplementationGuide: implementationGuides(),
		Rest: []r4.CapabilityStatementRest{{
			Mode:        r4.RestfulCapabilityModeServer,
			Security:    restSecurity(base, in.oauth),
			Resource:    resources,
			Interaction: restInteractions,
		}},
	}
	if in.bulkExport {
		cs.Rest[0].Operation = []r4.CapabilityStatementRestResourceOperation{{Name: "export", Definition: bulkExportDefinition}}
	}
	if in.documentation != "" {
		cs.Rest[0].Documentation = ptr(in.documentation)
	}
	b, err := fhirjson.Marshal(cs)
	if err != nil {
		return nil, fmt.Errorf("fhir: capability: %w", err)
	}
	return b, nil
}

func ptr[T any](v T) *T { return &v }

// metadata serves GET [base]/metadata (http.html#capabilities); no
// authorization (SMART: discovery is public).
func (s *Server) metadata(c echo.Context) error {
	ct, _ := responseType(c)
	return c.Blob(http.StatusOK, ct, s.capability)
}
