package fhir

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/priorauth"
	"github.com/ketabridge/ketabridge/store"
)

// The prior-authorization operations on a course (docs/prior-auth.md):
//
//   - GET  CarePlan/{id}/$pa-criteria[?payer=Organization/{id}][&request=renewal]
//     answers a Parameters with each payer criterion met, not-met or unknown
//     and the evidence;
//   - GET or POST CarePlan/{id}/$pas-bundle[?payer=...] answers the Da Vinci
//     PAS 2.0.1 request Bundle for the payer's Claim/$submit.
//
// Both need read on the CarePlan, and read the evidence through the caller's
// own search decision of each type (docs/design/security.md PA-2): what the
// caller may not see is left out and the criteria that need it answer
// unknown (PA-1). Nothing is written.

// Operation names and the canonical URLs of their OperationDefinitions.
const (
	OpPACriteria = "pa-criteria"
	OpPASBundle  = "pas-bundle"
	OpPAStatus   = "pa-status"
	// OperationBase is the canonical base of the gateway's own
	// OperationDefinitions (mapping.Definitions publishes them).
	OperationBase = "http://ketabridge.org/fhir/OperationDefinition/"
)

// paMaxResources caps how many resources of one type a course's evaluation
// reads (a course has at most a few hundred sessions' worth).
const paMaxResources = 20000

// paCriteria serves GET CarePlan/{id}/$pa-criteria.
func (s *Server) paCriteria(c echo.Context) error {
	in, err := s.paInput(c)
	if err != nil {
		return err
	}
	if in.policy == nil {
		return errNoPolicy
	}
	body, err := priorauth.Parameters(in.evaluate())
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, body)
}

// pasBundle serves GET and POST CarePlan/{id}/$pas-bundle.
func (s *Server) pasBundle(c echo.Context) error {
	in, err := s.paInput(c)
	if err != nil {
		return err
	}
	if in.policy == nil {
		return errNoPolicy
	}
	body, err := priorauth.BuildRequest(in.records, in.course, in.evaluate(), priorauth.PASOptions{
		Base: s.base, Now: s.clock.Now(), IdentifierSystem: priorauth.IdentifierSystem(s.identifierBase),
	})
	var missing *priorauth.MissingError
	if errors.As(err, &missing) {
		// docs/design/security.md PA-3: name what the clinic must record
		// (record kinds and members only), never an invalid Bundle.
		return NewError(http.StatusUnprocessableEntity).
			WithDetails("the course lacks data a PAS request needs").
			WithDiagnostics("Record: " + strings.Join(missing.Missing, "; ") + ".")
	}
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, body)
}

// paStatus serves GET CarePlan/{id}/$pa-status: where the course's
// authorization stands (the latest payer answer, sessions used against
// approved units, days left, whether renewal is due, and the result of the
// policy's renewal criteria).
func (s *Server) paStatus(c echo.Context) error {
	in, err := s.paInput(c)
	if err != nil {
		return err
	}
	st, err := priorauth.AuthorizationStatus(in.records, in.course, s.clock.Now())
	if errors.Is(err, priorauth.ErrNoAnswer) {
		if in.records.Hidden["ClaimResponse"] {
			return auth.InsufficientScope("the payer's answers are outside the caller's access")
		}
		return ErrNotFound.WithDetails("no payer answer is recorded for the course")
	}
	if err != nil {
		return err
	}
	var renewal *priorauth.Evaluation
	if in.policy != nil && len(in.policy.Renewal) > 0 {
		in.renewal = true
		renewal = in.evaluate()
	}
	body, err := priorauth.StatusParameters(st, renewal)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, body)
}

// paInputs is a course, its records as the caller may see them, and the
// policy to check it against.
type paInputs struct {
	records *priorauth.Records
	course  *priorauth.Course
	policy  *priorauth.Policy
	renewal bool
}

func (in *paInputs) evaluate() *priorauth.Evaluation {
	return priorauth.Evaluate(in.policy, in.records, in.course, in.renewal)
}

// paInput authorizes the request, gathers the course's records under the
// caller's decisions and picks the policy.
func (s *Server) paInput(c echo.Context) (*paInputs, error) {
	id := c.Param("id")
	if !validID(id) {
		return nil, ErrNotFound
	}
	// Parameters come in the query; a POST body, if any, is not read.
	values, err := queryParams(c)
	if err != nil {
		return nil, err
	}
	payer, renewal := "", false
	for k, vs := range values {
		switch k {
		case "payer":
			p, ok := strings.CutPrefix(vs[0], "Organization/")
			if len(vs) != 1 || !ok || !validID(p) {
				return nil, ErrInvalid.WithDetails("payer must be one Organization/{id}").WithExpression("payer")
			}
			payer = p
		case "request":
			if len(vs) != 1 || vs[0] != "initial" && vs[0] != "renewal" {
				return nil, ErrInvalid.WithDetails("request must be initial or renewal").WithExpression("request")
			}
			renewal = vs[0] == "renewal"
		case "_format", "_pretty":
		default:
			if !lenient(c) {
				return nil, ErrInvalid.WithDetails("unsupported parameter").WithExpression(k)
			}
		}
	}
	d, err := s.authorize(c, access{interaction: auth.InteractionRead, typ: "CarePlan", id: id})
	if err != nil {
		return nil, err
	}
	ctx := c.Request().Context()
	plan, err := s.store.Read(ctx, "CarePlan", id)
	noteResources(c, plan)
	if err != nil {
		if errors.Is(err, store.ErrGone) && (!d.allows(plan.Patient) || d.restricts()) {
			return nil, d.refuse()
		}
		return nil, err
	}
	if !d.allows(plan.Patient) || plan.Patient == "" {
		return nil, d.refuse()
	}
	if err := s.checkFilters(ctx, d, "CarePlan", id); err != nil {
		return nil, err
	}
	rs, err := s.paRecords(c, plan.Patient, payer)
	if err != nil {
		return nil, err
	}
	course, err := priorauth.ResolveCourse(rs, id)
	if err != nil {
		return nil, ErrNotFound
	}
	if course.Therapy == "" && course.Order != nil {
		if k := deref(course.Order.MedicationReference.Reference); k != "" && rs.Medications[k] == nil {
			// The drug is named only by a Medication the caller may not
			// see: refuse rather than guess (PRIV-2).
			return nil, auth.InsufficientScope("the course's Medication is outside the caller's access")
		}
	}
	if course.Therapy == "" {
		return nil, NewError(http.StatusUnprocessableEntity).
			WithDetails("the course's drug has no prior-authorization criteria").
			WithDiagnostics("Criteria exist for esketamine and ketamine courses whose order names the drug (RxNorm).")
	}
	var payerIDs []string
	payerKey := ""
	if payer != "" {
		payerKey = "Organization/" + payer
	} else if course.Order != nil {
		for i := range course.Order.Insurance {
			if cov := rs.Coverages[deref(course.Order.Insurance[i].Reference)]; cov != nil && len(cov.Payor) > 0 {
				payerKey = deref(cov.Payor[0].Reference)
				break
			}
		}
	}
	if org := rs.Organizations[payerKey]; org != nil {
		for _, ident := range org.Identifier {
			if ident.Value != nil {
				payerIDs = append(payerIDs, *ident.Value)
			}
		}
	} else if payer != "" {
		return nil, ErrInvalid.WithDetails("payer names no organization the caller may see").WithExpression("payer")
	}
	// No policy for the course's drug by its route: $pa-criteria and
	// $pas-bundle refuse (noPolicy); $pa-status still reports the payer's
	// answers, without renewal criteria.
	p := priorauth.Select(priorauth.Policies(), course.Therapy, course.Route, payerIDs)
	if p != nil && renewal && len(p.Renewal) == 0 {
		return nil, NewError(http.StatusUnprocessableEntity).WithDetails("the policy has no renewal criteria")
	}
	return &paInputs{records: rs, course: course, policy: p, renewal: renewal}, nil
}

// errNoPolicy refuses to check or request a course no criteria set covers:
// its drug by its route (priorauth.Policy.Routes: the IV ketamine criteria
// do not judge an IM or oral course), rather than apply another therapy's.
var errNoPolicy = NewError(http.StatusUnprocessableEntity).
	WithDetails("no prior-authorization policy covers the course's drug by its route of administration")

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// paRecords reads the patient's resources of the types the evaluation needs,
// each type under the caller's own search decision (a denied type is Hidden),
// then the Practitioners, Locations, Organizations and Medications they
// reference, by _id under the same decisions. extra names one more
// Organization (the payer asked for).
func (s *Server) paRecords(c echo.Context, patient, extra string) (*priorauth.Records, error) {
	ctx := c.Request().Context()
	ds := newDecisions(ctx)
	rs := priorauth.NewRecords()
	var touched []store.Resource
	add := func(list []store.Resource) error {
		for i := range list {
			r := &list[i]
			if r.Deleted || len(r.Body) == 0 {
				continue
			}
			if err := rs.Add(r.Body); err != nil {
				return err
			}
			touched = append(touched, *r)
		}
		return nil
	}
	referenced := map[string]bool{"Practitioner": true, "Location": true, "Organization": true, "Medication": true}
	for _, typ := range priorauth.Types {
		if referenced[typ] {
			continue
		}
		d := ds.get(typ)
		if d == nil || !d.allows(patient) {
			rs.Hidden[typ] = true
			continue
		}
		q := store.Query{Type: typ, Patients: []string{patient}, Sort: []store.Sort{{Param: store.ParamID, Kind: store.KindToken}}}
		if typ == "Observation" {
			// Only the scores and forms the criteria read (minimum necessary).
			cl := store.Clause{Param: "code", Kind: store.KindToken}
			for _, cd := range priorauth.ObservationCodes {
				cl.Values = append(cl.Values, store.Value{System: cd.System, Code: cd.Code})
			}
			q.Clauses = []store.Clause{cl}
		}
		list, err := s.paSearch(ctx, q, *d)
		if err != nil {
			return nil, err
		}
		if err := add(list); err != nil {
			return nil, err
		}
	}
	want := map[string][]string{}
	for _, k := range priorauth.RefsTo(rs) {
		typ, id, _ := strings.Cut(k, "/")
		want[typ] = append(want[typ], id)
	}
	if extra != "" {
		want["Organization"] = append(want["Organization"], extra)
	}
	for _, typ := range []string{"Medication", "Organization", "Location", "Practitioner"} {
		ids := want[typ]
		d := ds.get(typ)
		if d == nil {
			rs.Hidden[typ] = true
			continue
		}
		if len(ids) == 0 {
			continue
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		clause := store.Clause{Param: store.ParamID, Kind: store.KindToken, Values: make([]store.Value, len(ids))}
		for i, id := range ids {
			clause.Values[i] = store.Value{Str: id}
		}
		list, err := s.paSearch(ctx, store.Query{Type: typ, Clauses: []store.Clause{clause}}, *d)
		if err != nil {
			return nil, err
		}
		if err := add(list); err != nil {
			return nil, err
		}
	}
	noteResources(c, touched...)
	return rs, nil
}

// paSearch pages through a search under d (the caller's narrowing).
func (s *Server) paSearch(ctx context.Context, q store.Query, d narrowing) ([]store.Resource, error) {
	var out []store.Resource
	q.Count = search.MaxCount
	for {
		res, err := s.searchWithin(ctx, q, d)
		if err != nil {
			return nil, err
		}
		out = append(out, filterAllowed(res.Resources, d)...)
		if len(res.Resources) < q.Count {
			return out, nil
		}
		if q.Offset += q.Count; q.Offset >= paMaxResources {
			return nil, NewError(http.StatusUnprocessableEntity).WithDetails("the course has too many records to evaluate")
		}
	}
}

// writeJSON writes a FHIR JSON body with the negotiated content type.
func writeJSON(c echo.Context, status int, body []byte) error {
	ct, _ := responseType(c)
	return c.Blob(status, ct, body)
}
