package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/priorauth"
	"github.com/ketabridge/ketabridge/store"
)

// recordClaimResponseIn is a payer's answer posted as FHIR; its clinic id
// is the ClaimResponse's id.
const recordClaimResponseIn = "claim-response-in"

// createClaimResponse serves POST [base]/ClaimResponse: a payer's answer to
// a prior-authorization request, in the Da Vinci PAS ClaimResponse shape
// (docs/prior-auth.md; docs/design/security.md PA-4). Only a payer client
// registered with its Organization, with ClaimResponse create, may post; it
// answers only as its own Organization (insurer), only for a course's
// MedicationRequest within its view whose coverage names it as payor (an
// order that does not exist, lies outside the view or is another payer's
// answers the same 404). The answer is stored through the same write path
// as a partner's referral (Writer.Apply, one record with a Provenance
// naming the payer; an AuditEvent of the create): its id derives from the
// payer and the answer's identifier, so re-sending the same answer writes
// nothing (200), and a changed answer with the same identifier (a pended
// request decided) is a new version of the same ClaimResponse (200).
func (s *Server) createClaimResponse(c echo.Context) error {
	a := access{interaction: auth.InteractionCreate, typ: "ClaimResponse"}
	w, err := s.caller(c)
	if err != nil {
		noteAccess(c, a, narrowing{})
		return err
	}
	if w.role != auth.RolePayer || w.org == "" || !w.allows(auth.InteractionCreate, "ClaimResponse") {
		noteAccess(c, a, narrowing{})
		return auth.InsufficientScope("only a payer client registered with its Organization, with ClaimResponse create, may post an answer")
	}
	body, err := readJSONBody(c)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var res map[string]any
	if err := dec.Decode(&res); err != nil {
		return ErrInvalid.WithDetails("the body is not a JSON object")
	}
	if res["resourceType"] != "ClaimResponse" {
		return ErrInvalid.WithDetails("POST [base]/ClaimResponse takes a ClaimResponse").WithExpression("ClaimResponse.resourceType")
	}
	if issues := validatorIssues(body); len(issues) > 0 {
		return joinIssues(issues)
	}
	cr, err := r4.UnmarshalClaimResponse(body)
	if err != nil {
		return ErrInvalid.WithDetails("the body does not decode as a ClaimResponse")
	}
	ans, shape := priorauth.CheckAnswer(&cr)
	var issues []*Error
	for _, is := range shape {
		issues = append(issues, issueAt(is.Path, "the answer does not have the Da Vinci PAS ClaimResponse shape", is.Text))
	}
	if str(res, "insurer", "reference") != "Organization/"+w.org {
		// Answering as another payer: refused whatever else the body says.
		noteAccess(c, a, narrowing{})
		return NewError(http.StatusForbidden).WithDetails("a payer answers as the Organization its client is registered with").WithExpression("ClaimResponse.insurer.reference")
	}
	if err := joinIssues(issues); err != nil {
		return err
	}
	ctx, err := s.withOutsideView(c.Request().Context())
	if err != nil {
		noteAccess(c, a, narrowing{})
		return err
	}
	c.SetRequest(c.Request().WithContext(ctx))
	order, err := s.payerOrder(c, w, ans)
	if err != nil {
		noteAccess(c, a, narrowing{})
		return err
	}
	// References: the patient (the order's), the payer, the order; anything
	// else only to the directory (requestor), never to a patient's data.
	var dir []directoryRefAt
	walkRefs(res, "ClaimResponse", func(path, ref string, _ func(string)) {
		switch {
		case path == "ClaimResponse.patient.reference":
			if ref != "Patient/"+order.Patient {
				issues = append(issues, issueAt(path, "the patient must be the subject of the MedicationRequest the answer is for", ""))
			}
		case path == "ClaimResponse.insurer.reference":
		case strings.HasPrefix(path, "ClaimResponse.item[") && strings.HasSuffix(path, "].valueReference.reference") && ref == ans.Order:
		default:
			typ, id, ok := strings.Cut(ref, "/")
			if !ok || !slices.Contains(directoryRef, typ) || !validID(id) {
				issues = append(issues, issueAt(path, "a reference must name the patient, the payer, the course's MedicationRequest, or an Organization, Practitioner, PractitionerRole or Location of the gateway", ""))
				return
			}
			dir = append(dir, directoryRefAt{store.Key{Type: typ, ID: id}, path})
		}
	})
	more, err := s.unresolvedRefs(ctx, dir)
	if err != nil {
		return err
	}
	if err := joinIssues(append(issues, more...)); err != nil {
		return err
	}

	id := derivedID("ClaimResponse", w.org, ans.System, ans.Value)
	res["id"] = id
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		res["meta"] = meta
	}
	delete(meta, "versionId")
	delete(meta, "lastUpdated")
	meta["security"] = priorauth.AnswerLabels()
	rw, err := resourceWrite("ClaimResponse", res, order.Patient)
	if err != nil {
		return issueAt("ClaimResponse", "the ClaimResponse cannot be stored", err.Error())
	}
	cur, err := s.store.Read(ctx, "ClaimResponse", id)
	var have int64
	switch {
	case err == nil:
		have = cur.Version
		if cur.Patient != order.Patient || !bytes.Contains(cur.Body, []byte(`"`+ans.Order+`"`)) {
			return issueAt("ClaimResponse.identifier[0]", "the identifier already names the answer for another request", "")
		}
	case errors.Is(err, store.ErrGone):
		have = 0
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	now := s.clock.Now().UTC()
	prov, err := resourceWrite("Provenance", outsideProvenance(derivedID(id, "Provenance"),
		[]any{map[string]any{"reference": "ClaimResponse/" + id}}, w, now), order.Patient)
	if err != nil {
		return err
	}
	rec := store.RecordWrite{
		Kind: recordClaimResponseIn, ClinicID: id, Hash: hashOf(rw.Body), Source: body,
		Resources: []store.ResourceWrite{rw, prov},
		// Two answers with one identifier at once: one wins, the other is
		// a 409 to send again (docs/design/security.md PA-4).
		Expect: []store.Expectation{{Key: store.Key{Type: "ClaimResponse", ID: id}, Version: have}},
	}
	noteWrite(c, access{interaction: auth.InteractionCreate, typ: "ClaimResponse", id: id}, order.Patient)
	results, err := s.writer.Apply(ctx, []store.RecordWrite{rec})
	if errors.Is(err, store.ErrPreconditionFailed) {
		return NewError(http.StatusConflict).WithDetails("another answer with the same identifier was stored at the same time; send again")
	}
	if err != nil {
		return err
	}
	stored, err := s.store.Read(ctx, "ClaimResponse", id)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if len(results) == 1 && results[0].Outcome == store.Created {
		status = http.StatusCreated
	}
	h := c.Response().Header()
	h.Set(echo.HeaderLocation, s.base+"/ClaimResponse/"+id+"/_history/"+strconv.FormatInt(stored.Version, 10))
	h.Set("ETag", etag(stored.Version))
	h.Set("Last-Modified", stored.LastUpdated.UTC().Format(http.TimeFormat))
	return writeJSON(c, status, stored.Body)
}

// payerOrder resolves the MedicationRequest an answer is for, as the payer
// may see it: within its view (its read decision on MedicationRequest,
// the patient's coverage and consent), and insured by a Coverage naming
// the payer. Not found, outside the view and another payer's order all
// answer the same 404 naming the element (PRIV-12: nothing is revealed).
func (s *Server) payerOrder(c echo.Context, w writeCaller, ans *priorauth.Answer) (store.Resource, error) {
	ctx := c.Request().Context()
	notFound := ErrNotFound.WithDetails("the answer's MedicationRequest is not a prior-authorization request of this payer").
		WithExpression(ans.OrderPath)
	d, err := decide(ctx, auth.InteractionRead, "MedicationRequest")
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) && fe.Status == http.StatusNotFound {
			return store.Resource{}, notFound
		}
		return store.Resource{}, err
	}
	id := strings.TrimPrefix(ans.Order, "MedicationRequest/")
	if !validID(id) {
		return store.Resource{}, notFound
	}
	order, err := s.store.Read(ctx, "MedicationRequest", id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
		return store.Resource{}, notFound
	}
	if err != nil {
		return store.Resource{}, err
	}
	if !d.allows(order.Patient) || order.Patient == "" {
		return store.Resource{}, notFound
	}
	if err := s.checkFilters(ctx, d, "MedicationRequest", id); err != nil {
		var fe *Error
		if errors.As(err, &fe) && (fe.Status == http.StatusNotFound || fe.Status == http.StatusForbidden) {
			return store.Resource{}, notFound
		}
		return store.Resource{}, err
	}
	var mr struct {
		Insurance []struct{ Reference string } `json:"insurance"`
	}
	if err := json.Unmarshal(order.Body, &mr); err != nil {
		return store.Resource{}, err
	}
	var keys []store.Key
	for _, in := range mr.Insurance {
		if typ, cid, ok := strings.Cut(in.Reference, "/"); ok && typ == "Coverage" {
			keys = append(keys, store.Key{Type: typ, ID: cid})
		}
	}
	covs, err := s.store.GetMany(ctx, keys)
	if err != nil {
		return store.Resource{}, err
	}
	for _, cv := range covs {
		var cov struct {
			Payor []struct{ Reference string } `json:"payor"`
		}
		if cv.Deleted || json.Unmarshal(cv.Body, &cov) != nil {
			continue
		}
		for _, p := range cov.Payor {
			if p.Reference == "Organization/"+w.org {
				return order, nil
			}
		}
	}
	return store.Resource{}, notFound
}
