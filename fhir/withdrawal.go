package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/fhir/referral"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// Closing referrals on consent withdrawal (docs/design/security.md RFL-6;
// docs/referrals.md). The package of a referral the clinic sent a partner
// is read under the patient's Consent at request time (RFL-5), so it
// closes at once when the consent stops counting. The Task, the business
// record both clinics keep, is closed as well: moved to cancelled along
// the state machine (referral.Withdrawal), with statusReason
// consent-withdrawn and the BSeR business status 6.0, as a new version
// with a Provenance and an AuditEvent. It happens when a Consent is
// ingested (the ingest pipeline calls Close for the patients whose
// Consents it wrote) and by a periodic Sweep, which also catches a
// consent whose period ended without anyone re-sending it.

// Codes of the gateway's local CodeSystem (published in the project's
// implementation guide, conformance/ig; mapping/codes holds the same codes
// for the guide and a test keeps the two equal).
const (
	// LocalCodeSystem is the gateway's local CodeSystem.
	LocalCodeSystem = conformance.CanonicalBase + "/CodeSystem/ketabridge"
	// CodeConsentWithdrawn is Task.statusReason of a referral closed
	// because the patient's consent for its recipient no longer counts.
	CodeConsentWithdrawn = "consent-withdrawn"
	// DisplayConsentWithdrawn is its display.
	DisplayConsentWithdrawn = "Patient consent for the recipient withdrawn"
)

// GatewayAgent is the client id the audit trail names for what the
// gateway does by itself, with no client's request (closing a referral on
// consent withdrawal).
const GatewayAgent = "ketabridge-gateway"

// ReferralCloser closes the open referral Tasks of a patient whose consent
// for the Task's owner no longer counts (RFL-6). Safe for concurrent use,
// and at several replicas at once: each close expects the Task's version
// it read (RecordWrite.Expect), so of two closers one writes and the other
// finds the Task closed.
type ReferralCloser struct {
	// Store is what it reads: Tasks and Consents (the read cache is fine:
	// every write invalidates it at every replica).
	Store Reader
	// Writer writes the new Task version and its Provenance.
	Writer Writer
	// Policy is the deployment's disclosure policy (only the partner rules
	// apply here).
	Policy auth.DisclosurePolicy
	// Audit writes the AuditEvents of the closes; nil writes none.
	Audit func(ctx context.Context, recs []store.AuditRecord) error
}

// openStatuses are the referral statuses a withdrawal closes.
var openStatuses = []referral.Status{referral.Requested, referral.Received, referral.Accepted, referral.InProgress}

// Sweep closes every open referral Task whose patient's consent for its
// owner no longer counts at now: a consent withdrawn while no ingest
// noticed, or one whose period has ended. It returns how many it closed.
func (c *ReferralCloser) Sweep(ctx context.Context, now time.Time) (int, error) {
	p, ok := search.Lookup("Task", "status")
	if !ok {
		return 0, ErrInternal.WithDetails("Task status search parameter unknown")
	}
	cl := store.Clause{Param: p.Name, Kind: store.KindToken}
	for _, s := range openStatuses {
		cl.Values = append(cl.Values, store.Value{Code: string(s), AnySystem: true})
	}
	q := store.Query{Type: "Task", Count: search.MaxCount, Clauses: []store.Clause{cl}}
	var patients []string
	for {
		res, err := c.Store.Search(ctx, q)
		if err != nil {
			return 0, err
		}
		for _, r := range res.Resources {
			if r.Patient != "" && !slices.Contains(patients, r.Patient) {
				patients = append(patients, r.Patient)
			}
		}
		if !res.More || len(res.Resources) == 0 {
			break
		}
		q.Offset += len(res.Resources)
	}
	return c.Close(ctx, patients, now)
}

// Close closes the open referral Tasks of patients whose owner once had a
// Consent of that patient (a Consent naming the owner's Organization) and
// whose consent no longer counts at now (auth.DisclosurePolicy.Disclose,
// the rule of every read), and those a deny naming no recipient withdraws
// wholly (PRIV-20). A referral to an organization the patient never named
// in a Consent is otherwise left open: nothing was withdrawn. It returns
// how many it closed.
func (c *ReferralCloser) Close(ctx context.Context, patients []string, now time.Time) (int, error) {
	closed := 0
	for _, patient := range patients {
		tasks, err := c.search(ctx, "Task", patient)
		if err != nil {
			return closed, err
		}
		consents := map[string]bool{} // owner -> the patient's consent counts
		for _, t := range tasks {
			owner, status, err := taskOwner(t.Body)
			if err != nil {
				return closed, err
			}
			if _, ok := referral.Withdrawal(status); !ok || owner == "" {
				continue
			}
			counts, seen := consents[owner]
			if !seen {
				if counts, err = c.counts(ctx, patient, owner, now); err != nil {
					return closed, err
				}
				consents[owner] = counts
			}
			if counts {
				continue
			}
			ok, err := c.closeTask(ctx, t.ID, now)
			if err != nil {
				return closed, err
			}
			if ok {
				closed++
			}
		}
	}
	return closed, nil
}

// search returns every resource of typ in patient's compartment.
func (c *ReferralCloser) search(ctx context.Context, typ, patient string, clauses ...store.Clause) ([]store.Resource, error) {
	q := store.Query{Type: typ, Patients: []string{patient}, Count: search.MaxCount, Clauses: clauses}
	var out []store.Resource
	for {
		res, err := c.Store.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, res.Resources...)
		if !res.More || len(res.Resources) == 0 {
			return out, nil
		}
		q.Offset += len(res.Resources)
	}
}

// counts reports whether the patient's consent for owner counts at now,
// by the Consents of the patient naming owner and those naming no actor,
// which apply to every recipient (docs/design/security.md PRIV-20). When
// no Consent names owner, the referral was never consented to and nothing
// was withdrawn from it, unless a Consent naming no actor now withdraws
// everything from every recipient (a deny of "share with no one"): then
// even a permit of every class for owner would not count, and the
// referral is closed too (RFL-6).
func (c *ReferralCloser) counts(ctx context.Context, patient, owner string, now time.Time) (bool, error) {
	p, ok := search.Lookup("Consent", "actor")
	if !ok {
		return false, ErrInternal.WithDetails("Consent actor search parameter unknown")
	}
	named, err := c.search(ctx, "Consent", patient, store.Clause{Param: p.Name, Kind: store.KindReference,
		Values: []store.Value{{Str: "Organization/" + owner}}})
	if err != nil {
		return false, err
	}
	q, err := noActorConsents([]string{patient})
	if err != nil {
		return false, err
	}
	everyone, err := c.search(ctx, "Consent", patient, q.Clauses...)
	if err != nil {
		return false, err
	}
	if len(named) == 0 && len(everyone) == 0 {
		return true, nil
	}
	facts := make([]auth.ConsentFacts, 0, len(named)+len(everyone)+1)
	for _, r := range append(named, everyone...) {
		f, err := consentFacts(r.Body)
		if err != nil {
			return false, ErrInternal.WithDetails("stored Consent unreadable").WithCause(err)
		}
		facts = append(facts, f)
	}
	if len(named) == 0 {
		// Would the denies leave anything of a permit of every class?
		facts = append(facts, auth.ConsentFacts{ID: "every-class", Patient: patient, Status: "active",
			Recipients: []string{owner}, Purposes: []auth.Purpose{auth.PurposeTreatment}})
	}
	_, ok = c.Policy.Disclose(auth.RolePartner, owner, facts, nil, now).Patients[patient]
	return ok, nil
}

// taskOwner reads a stored Task's owner Organization id and status.
func taskOwner(body []byte) (string, referral.Status, error) {
	var t struct {
		Status string  `json:"status"`
		Owner  jsonRef `json:"owner"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return "", "", ErrInternal.WithDetails("stored Task unreadable").WithCause(err)
	}
	owner, _ := strings.CutPrefix(t.Owner.Reference, "Organization/")
	if strings.Contains(owner, "/") {
		owner = ""
	}
	return owner, referral.Status(t.Status), nil
}

// closeTask moves the Task to cancelled (referral.Withdrawal) if it is
// still open, expecting the version it read; when another writer moved it
// meanwhile it reads it again (a few times). ok reports whether this call
// closed it.
func (c *ReferralCloser) closeTask(ctx context.Context, id string, now time.Time) (bool, error) {
	for attempt := 0; attempt < 3; attempt++ {
		cur, err := c.Store.Read(ctx, "Task", id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
				return false, nil
			}
			return false, err
		}
		var t map[string]any
		if err := json.Unmarshal(cur.Body, &t); err != nil {
			return false, ErrInternal.WithDetails("stored Task unreadable").WithCause(err)
		}
		m, ok := referral.Withdrawal(referral.Status(str(t, "status")))
		if !ok {
			return false, nil
		}
		if v := referral.Decide(m); v.Code != referral.Allowed {
			return false, ErrInternal.WithDetails("the withdrawal move is refused: " + v.Reason)
		}
		rec, err := withdrawalRecord(cur, t, m.To, now)
		if err != nil {
			return false, err
		}
		if _, err := c.Writer.Apply(ctx, []store.RecordWrite{rec}); err != nil {
			if errors.Is(err, store.ErrPreconditionFailed) {
				continue
			}
			return false, err
		}
		if c.Audit != nil {
			ev := Event{Time: now, Interaction: auth.InteractionUpdate, Type: "Task", ID: id,
				Patients: []string{cur.Patient}, Status: 200, ClientID: GatewayAgent,
				Purpose: purposeCode(auth.PurposeTreatment)}
			aid, err := uuid.NewV7()
			if err != nil {
				return true, err
			}
			if err := c.Audit(ctx, []store.AuditRecord{ev.AuditRecord(aid.String(), cur.Patient)}); err != nil {
				return true, err
			}
		}
		return true, nil
	}
	return false, nil
}

// withdrawalRecord is the store record of a withdrawal: the Task at
// status to with statusReason consent-withdrawn, its BSeR business status
// and lastModified, expected at cur's version, and a Provenance of the
// new version naming the gateway as the agent on behalf of the Task's
// requester.
func withdrawalRecord(cur store.Resource, t map[string]any, to referral.Status, now time.Time) (store.RecordWrite, error) {
	stamp := now.UTC().Format(time.RFC3339Nano)
	t["status"] = string(to)
	t["statusReason"] = map[string]any{
		"coding": []any{map[string]any{"system": LocalCodeSystem, "code": CodeConsentWithdrawn, "display": DisplayConsentWithdrawn}},
		"text":   "The patient's consent for the recipient no longer applies.",
	}
	if bs, ok := referral.BusinessStatusOf(to); ok {
		t["businessStatus"] = map[string]any{"coding": []any{map[string]any{
			"system": referral.BusinessStatusSystem, "code": bs.Code, "display": bs.Display}}}
	}
	t["lastModified"] = stamp
	if m, ok := t["meta"].(map[string]any); ok {
		delete(m, "versionId")
		delete(m, "lastUpdated")
		if len(m) == 0 {
			delete(t, "meta")
		}
	}
	rw, err := resourceWrite("Task", t, cur.Patient)
	if err != nil {
		return store.RecordWrite{}, ErrInternal.WithDetails("the closed Task cannot be stored").WithCause(err)
	}
	next := cur.Version + 1
	agent := map[string]any{
		"type": map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "performer", "display": "Performer"}}},
		"who": map[string]any{"type": "Device", "identifier": map[string]any{"system": clientIDSystem, "value": GatewayAgent}},
	}
	if req, _ := t["requester"].(map[string]any); str(req, "reference") != "" {
		agent["onBehalfOf"] = map[string]any{"reference": str(req, "reference")}
	}
	prov := map[string]any{
		"resourceType": "Provenance",
		"id":           derivedID("consent-withdrawn", cur.ID, strconv.FormatInt(next, 10)),
		"target":       []any{map[string]any{"reference": "Task/" + cur.ID + "/_history/" + strconv.FormatInt(next, 10)}},
		"recorded":     stamp,
		"activity": map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE", "display": "revise"}}},
		"reason": []any{map[string]any{"coding": []any{map[string]any{
			"system": LocalCodeSystem, "code": CodeConsentWithdrawn, "display": DisplayConsentWithdrawn}}}},
		"agent": []any{agent},
	}
	pw, err := resourceWrite("Provenance", prov, cur.Patient)
	if err != nil {
		return store.RecordWrite{}, ErrInternal.WithDetails("the withdrawal's Provenance cannot be stored").WithCause(err)
	}
	return store.RecordWrite{
		Kind: recordFHIRUpdate, ClinicID: "Task/" + cur.ID, Hash: hashOf(rw.Body, []byte(stamp)), Source: rw.Body,
		Resources: []store.ResourceWrite{rw, pw},
		Expect:    []store.Expectation{{Key: store.Key{Type: "Task", ID: cur.ID}, Version: cur.Version}},
	}, nil
}
