package fhir

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// The views of outside organizations (docs/access.md; docs/design/security.md
// PRIV-11 to PRIV-15): a payer or partner client's requests are narrowed,
// before any query runs, to what auth's disclosure decision (auth.Disclose
// over the Consents and Coverages read from the store at request time)
// lets its organization see. This file turns that decision into query
// restrictions (store.Access), the same way access.go turns auth.Decide
// into narrowing; the handlers then apply both.

// Label codes the access decision filters by (docs/fhir-mapping.md
// "Security labels"): R (restricted) marks suicide-risk content. PSY is
// cleared with the data class it labels: a resource of a class the consent
// covers is shown whatever its PSY label, one of a class it does not cover
// is not shown at all, so PSY needs no clause of its own.
const (
	systemConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	systemObsCategory     = "http://terminology.hl7.org/CodeSystem/observation-category"
	systemActReasonCodes  = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	systemActCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// outsideView is an outside organization's view for one request: its role
// and the disclosure decision at the request's moment.
type outsideView struct {
	role auth.Role
	org  string // the organization's resource id
	disc auth.Disclosure
}

// viewKey is the context.Context key of the request's *outsideView.
type viewKey struct{}

func viewFrom(ctx context.Context) (*outsideView, bool) {
	v, ok := ctx.Value(viewKey{}).(*outsideView)
	return v, ok && v != nil
}

// withOutsideView returns ctx carrying the disclosure decision of its
// caller when the caller is an outside organization (loaded once per
// request), else ctx unchanged.
func (s *Server) withOutsideView(ctx context.Context) (context.Context, error) {
	info, ok := auth.FromContext(ctx)
	if !ok || !info.Principal.Outside() {
		return ctx, nil
	}
	if _, ok := viewFrom(ctx); ok {
		return ctx, nil
	}
	disc, err := s.decide(ctx, info.Principal.Role, info.Principal.Organization, s.clock.Now())
	if err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, viewKey{}, &outsideView{role: info.Principal.Role, org: info.Principal.Organization, disc: disc}), nil
}

// disclosureTypes are the types whose resources a disclosure decision is
// read from: no other write can change it.
var disclosureTypes = []string{"Consent", "Coverage"}

// decisionMemo keeps disclosure decisions for as long as they are certain to
// be what reading the facts again would give (docs/design/security.md
// CACHE-2): a decision is stored with the read cache's version token of the
// Consent and Coverage types, read before the facts were, and the span of
// time in which no consent or coverage period of its facts starts or ends.
// It is reused only while the token is unchanged (no Consent or Coverage was
// written since, on any replica: store.TypeVersioner) and the clock is
// within that span, so a withdrawn consent, a cancelled coverage or a period
// that ends counts on the next request, as without the memo. Without a read
// cache (or while it cannot answer) nothing is memoized. Safe for concurrent
// use; bounded by dropping everything when full.
type decisionMemo struct {
	mu sync.Mutex
	m  map[decisionKey]decision
}

type decisionKey struct {
	role auth.Role
	org  string
}

type decision struct {
	token string
	// from and until bound the moments the decision holds for: from is the
	// moment it was made, until the first period bound after it (zero: no
	// bound ahead).
	from, until time.Time
	disc        auth.Disclosure
}

// decisionMemoMax bounds the memo (one entry per outside organization and
// role).
const decisionMemoMax = 4096

func (m *decisionMemo) get(k decisionKey, token string, now time.Time) (auth.Disclosure, bool) {
	m.mu.Lock()
	d, ok := m.m[k]
	m.mu.Unlock()
	if !ok || d.token != token || now.Before(d.from) || (!d.until.IsZero() && !now.Before(d.until)) {
		return auth.Disclosure{}, false
	}
	return d.disc, true
}

func (m *decisionMemo) put(k decisionKey, d decision) {
	m.mu.Lock()
	if m.m == nil || len(m.m) >= decisionMemoMax {
		m.m = map[decisionKey]decision{}
	}
	m.m[k] = d
	m.mu.Unlock()
}

// decide is the disclosure decision for org acting as role at now: the
// memoized one while it holds (decisionMemo), else read from the store.
// The decision's Patients map is shared between requests: read-only.
func (s *Server) decide(ctx context.Context, role auth.Role, org string, now time.Time) (auth.Disclosure, error) {
	tv, ok := s.store.(store.TypeVersioner)
	var token string
	if ok {
		token, ok = tv.TypeVersions(ctx, disclosureTypes)
	}
	k := decisionKey{role, org}
	if ok {
		if d, hit := s.decisions.get(k, token, now); hit {
			return d, nil
		}
	}
	disc, until, err := readDisclosureUntil(ctx, s.store, &s.facts, s.disclosure, role, org, now)
	if err != nil || !ok {
		return disc, err
	}
	s.decisions.put(k, decision{token: token, from: now, until: until, disc: disc})
	return disc, nil
}

// ReadDisclosure is the disclosure decision for org acting as role at now:
// it reads the Consents naming org as an actor, for a payer the Coverages
// naming it as payor, and the Consents naming no actor of the patients
// those name (PRIV-20), from rd, and applies policy
// (auth.DisclosurePolicy.Disclose). The facts are read on every call, never
// kept: a Consent re-ingested as inactive, or one whose period ended, stops
// counting on the next request (docs/design/security.md PRIV-13). Through
// the read cache they stay current at every replica: every write of a
// Consent or Coverage invalidates the cached searches of its type
// (store/cached, docs/design/security.md CACHE-1).
func ReadDisclosure(ctx context.Context, rd Reader, policy auth.DisclosurePolicy, role auth.Role, org string, now time.Time) (auth.Disclosure, error) {
	return readDisclosure(ctx, rd, nil, policy, role, org, now)
}

// factsMemo keeps the facts read from stored Consent and Coverage versions.
// A stored version never changes, so a memo keyed by type, id and version
// is never stale: it saves parsing, not reading (the searches still run on
// every request, so a new version is seen at once). Safe for concurrent
// use; bounded by dropping everything when full.
type factsMemo struct {
	mu        sync.Mutex
	consents  map[string]auth.ConsentFacts
	coverages map[string]auth.CoverageFacts
}

// factsMemoMax bounds each of the memo's maps.
const factsMemoMax = 200_000

func versionKey(r *store.Resource) string { return r.ID + "@" + strconv.FormatInt(r.Version, 10) }

func (m *factsMemo) consent(r *store.Resource) (auth.ConsentFacts, error) {
	if m == nil {
		return consentFacts(r.Body)
	}
	return memoFacts(&m.mu, &m.consents, r, consentFacts)
}

func (m *factsMemo) coverage(r *store.Resource) (auth.CoverageFacts, error) {
	if m == nil {
		return coverageFacts(r.Body)
	}
	return memoFacts(&m.mu, &m.coverages, r, coverageFacts)
}

// memoFacts returns the facts of r's version from *m, parsing and keeping
// them on a miss (a full map is dropped whole: factsMemoMax).
func memoFacts[F any](mu *sync.Mutex, m *map[string]F, r *store.Resource, parse func([]byte) (F, error)) (F, error) {
	k := versionKey(r)
	mu.Lock()
	f, ok := (*m)[k]
	mu.Unlock()
	if ok {
		return f, nil
	}
	f, err := parse(r.Body)
	if err != nil {
		return f, err
	}
	mu.Lock()
	if *m == nil || len(*m) >= factsMemoMax {
		*m = map[string]F{}
	}
	(*m)[k] = f
	mu.Unlock()
	return f, nil
}

func readDisclosure(ctx context.Context, rd Reader, memo *factsMemo, policy auth.DisclosurePolicy, role auth.Role, org string, now time.Time) (auth.Disclosure, error) {
	disc, _, err := readDisclosureUntil(ctx, rd, memo, policy, role, org, now)
	return disc, err
}

// readDisclosureUntil is readDisclosure, and also the first moment after
// now at which a period of the facts read starts or ends (zero when none
// does): until then, the same facts give the same decision.
func readDisclosureUntil(ctx context.Context, rd Reader, memo *factsMemo, policy auth.DisclosurePolicy, role auth.Role, org string, now time.Time) (auth.Disclosure, time.Time, error) {
	var until time.Time
	bound := func(ts ...time.Time) {
		for _, t := range ts {
			if t.After(now) && (until.IsZero() || t.Before(until)) {
				until = t
			}
		}
	}
	if org == "" || (role != auth.RolePayer && role != auth.RolePartner) {
		return auth.Disclosure{Patients: map[string]auth.PatientGrant{}}, until, nil
	}
	ref := "Organization/" + org
	var consents []auth.ConsentFacts
	addConsent := func(r *store.Resource) error {
		f, err := memo.consent(r)
		if err == nil {
			consents = append(consents, f)
			bound(f.Start, f.End)
		}
		return err
	}
	err := searchAll(ctx, rd, "Consent", "actor", ref, addConsent)
	if err != nil {
		return auth.Disclosure{}, until, err
	}
	var coverages []auth.CoverageFacts
	if role == auth.RolePayer {
		err := searchAll(ctx, rd, "Coverage", "payor", ref, func(r *store.Resource) error {
			f, err := memo.coverage(r)
			if err == nil {
				coverages = append(coverages, f)
				bound(f.Start, f.End)
			}
			return err
		})
		if err != nil {
			return auth.Disclosure{}, until, err
		}
	}
	// A Consent naming no actor applies to every recipient: a deny of
	// "share with no one" withdraws from org too (docs/design/security.md
	// PRIV-20). It can only take away, so it matters only for the patients
	// a Consent naming org or a Coverage naming it may open: one more
	// query, by the patient compartment (indexed), not a scan of every
	// patient's Consents.
	var candidates []string
	for _, c := range consents {
		candidates = append(candidates, c.Patient)
	}
	for _, c := range coverages {
		candidates = append(candidates, c.Patient)
	}
	candidates = slices.DeleteFunc(candidates, func(p string) bool { return p == "" })
	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	if len(candidates) > 0 {
		q, err := noActorConsents(candidates)
		if err != nil {
			return auth.Disclosure{}, until, err
		}
		err = searchQueryAll(ctx, rd, q, addConsent)
		if err != nil {
			return auth.Disclosure{}, until, err
		}
	}
	return policy.Disclose(role, org, consents, coverages, now), until, nil
}

// noActorConsents is the query of the Consents of patients that name no
// actor (Consent?actor:missing=true in their compartments), which apply
// to every recipient (PRIV-20).
func noActorConsents(patients []string) (store.Query, error) {
	p, ok := search.Lookup("Consent", "actor")
	if !ok {
		return store.Query{}, ErrInternal.WithDetails("Consent actor search parameter unknown")
	}
	missing := true
	return store.Query{Type: "Consent", Patients: patients, Count: search.MaxCount,
		Clauses: []store.Clause{{Param: p.Name, Kind: store.KindReference, Missing: &missing}}}, nil
}

// searchAll runs the search typ?param=ref page by page and hands each body
// to f.
func searchAll(ctx context.Context, rd Reader, typ, param, ref string, f func(*store.Resource) error) error {
	p, ok := search.Lookup(typ, param)
	if !ok {
		return ErrInternal.WithDetails("disclosure search parameter unknown")
	}
	q := store.Query{Type: typ, Count: search.MaxCount, Clauses: []store.Clause{{
		Param: p.Name, Kind: store.KindReference, Values: []store.Value{{Str: ref}},
	}}}
	return searchQueryAll(ctx, rd, q, f)
}

// searchQueryAll runs q page by page and hands each body to f.
func searchQueryAll(ctx context.Context, rd Reader, q store.Query, f func(*store.Resource) error) error {
	typ := q.Type
	for {
		res, err := rd.Search(ctx, q)
		if err != nil {
			return err
		}
		for i := range res.Resources {
			if err := f(&res.Resources[i]); err != nil {
				return ErrInternal.WithDetails("stored " + typ + " unreadable").WithCause(err)
			}
		}
		if !res.More || len(res.Resources) == 0 {
			return nil
		}
		q.Offset += len(res.Resources)
	}
}

type jsonRef struct {
	Reference string `json:"reference"`
}

type jsonCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type jsonPeriod struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// consentFacts reads what the decision needs of a stored Consent
// (docs/fhir-mapping.md: one provision, actors = recipient Organizations,
// purposes from v3-ActReason, classes from the local data-class codes).
func consentFacts(body []byte) (auth.ConsentFacts, error) {
	var c struct {
		ID        string  `json:"id"`
		Status    string  `json:"status"`
		Patient   jsonRef `json:"patient"`
		Provision *struct {
			Type  string `json:"type"`
			Actor []struct {
				Reference jsonRef `json:"reference"`
			} `json:"actor"`
			Purpose []jsonCoding `json:"purpose"`
			Class   []jsonCoding `json:"class"`
			Period  *jsonPeriod  `json:"period"`
		} `json:"provision"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return auth.ConsentFacts{}, err
	}
	f := auth.ConsentFacts{ID: c.ID, Status: c.Status}
	f.Patient, _ = strings.CutPrefix(c.Patient.Reference, "Patient/")
	p := c.Provision
	if p == nil {
		// No provision: nothing it permits; a consent that counts for
		// nothing (status kept so a deny reader could tell).
		f.Status = "no-provision"
		return f, nil
	}
	f.Deny = p.Type == "deny"
	for _, a := range p.Actor {
		if id, ok := strings.CutPrefix(a.Reference.Reference, "Organization/"); ok {
			f.Recipients = append(f.Recipients, id)
		} else {
			// An actor that is not an Organization keeps the list non-empty,
			// so a deny naming someone else never reads as "everyone".
			f.Recipients = append(f.Recipients, "other:"+a.Reference.Reference)
		}
	}
	for _, pu := range p.Purpose {
		switch {
		case pu.System == systemActReasonCodes && pu.Code == "TREAT":
			f.Purposes = append(f.Purposes, auth.PurposeTreatment)
		case pu.System == systemActReasonCodes && pu.Code == "HPAYMT":
			f.Purposes = append(f.Purposes, auth.PurposePayment)
		default:
			// Another purpose keeps the list non-empty (see Recipients).
			f.Purposes = append(f.Purposes, auth.Purpose("other:"+pu.Code))
		}
	}
	f.ClassesListed = len(p.Class) > 0
	for _, cl := range p.Class {
		if name, ok := strings.CutPrefix(cl.Code, "data-"); ok && strings.HasSuffix(cl.System, "/CodeSystem/ketabridge") {
			if dc, ok := auth.ParseDataClass(name); ok {
				f.Classes |= auth.ClassSet(dc)
			}
		}
	}
	if p.Period != nil {
		var ok1, ok2 bool
		f.Start, ok1 = periodBound(p.Period.Start, false)
		f.End, ok2 = periodBound(p.Period.End, true)
		switch {
		case ok1 && ok2:
		case f.Deny:
			// Fail closed: a deny whose period cannot be read always applies.
			f.Start, f.End = time.Time{}, time.Time{}
		default:
			// A permit whose period cannot be read counts for nothing.
			f.Status = "unreadable-period"
		}
	}
	return f, nil
}

// coverageFacts reads what the payer view needs of a stored Coverage.
func coverageFacts(body []byte) (auth.CoverageFacts, error) {
	var c struct {
		Status      string      `json:"status"`
		Beneficiary jsonRef     `json:"beneficiary"`
		Payor       []jsonRef   `json:"payor"`
		Period      *jsonPeriod `json:"period"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return auth.CoverageFacts{}, err
	}
	f := auth.CoverageFacts{Status: c.Status}
	f.Patient, _ = strings.CutPrefix(c.Beneficiary.Reference, "Patient/")
	for _, p := range c.Payor {
		if id, ok := strings.CutPrefix(p.Reference, "Organization/"); ok {
			f.Payer = id
			break
		}
	}
	if c.Period != nil {
		var ok1, ok2 bool
		f.Start, ok1 = periodBound(c.Period.Start, false)
		f.End, ok2 = periodBound(c.Period.End, true)
		if !ok1 || !ok2 {
			f.Status = "unreadable-period"
		}
	}
	return f, nil
}

// periodBound parses a FHIR date or dateTime bound ("" is open). An end of
// lower precision than a second covers its whole day, month or year: the
// bound returned is the start of the next one ([start, end) in auth).
func periodBound(s string, end bool) (time.Time, bool) {
	if s == "" {
		return time.Time{}, true
	}
	layouts := []struct {
		layout string
		next   func(time.Time) time.Time
	}{
		{time.RFC3339Nano, nil},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	}
	for _, l := range layouts {
		t, err := time.Parse(l.layout, s)
		if err != nil {
			continue
		}
		if end && l.next != nil {
			t = l.next(t)
		}
		return t, true
	}
	return time.Time{}, false
}

// DisclosureAccess is the access builder of the outside views: the
// restriction of a query of typ for an organization acting as role whose
// disclosure decision is disc (docs/design/security.md PRIV-12, PRIV-14).
// inView is false when role may never see typ. Otherwise, when all is
// true the type holds no patient's data (the directory) and is not
// restricted; else patients are the patients of disc with something of typ
// to show and access restricts each of them to the classes (Observation
// categories) it may see and, unless it clears R, to resources without the
// R label. Patient itself is shown for every patient of disc (identity
// travels with the data; without demographics the body is reduced, see
// reducePatient).
func DisclosureAccess(role auth.Role, disc auth.Disclosure, typ string) (inView, all bool, patients []string, access *store.Access) {
	if !auth.InView(role, typ) {
		return false, false, nil, nil
	}
	if auth.Directory(typ) {
		return true, true, nil, nil
	}
	ids := make([]string, 0, len(disc.Patients))
	for id := range disc.Patients {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if typ == "Patient" {
		return true, false, ids, &store.Access{Terms: []store.AccessTerm{{Patients: ids, Types: []string{typ}}}}
	}
	classes := auth.TypeClasses(typ)
	type group struct {
		cats       []string
		restricted bool
	}
	var order []string
	groups := map[string]*store.AccessTerm{}
	for _, id := range ids {
		g := disc.Patients[id]
		cls := g.Classes & classes
		if cls == 0 {
			continue
		}
		var cats []string
		if typ == "Observation" {
			for _, c := range cls.List() {
				cats = append(cats, auth.ClassCategories(c)...)
			}
			slices.Sort(cats)
		}
		key := strings.Join(cats, ",")
		if g.Restricted {
			key += "|R"
		}
		t := groups[key]
		if t == nil {
			t = &store.AccessTerm{Types: []string{typ}}
			if len(cats) > 0 {
				cl := store.Clause{Param: "category", Kind: store.KindToken}
				for _, c := range cats {
					cl.Values = append(cl.Values, store.Value{System: systemObsCategory, Code: c})
				}
				t.Clauses = append(t.Clauses, cl)
			}
			if !g.Restricted {
				// docs/design/security.md PRIV-14: no payer ever clears R; a
				// partner only through a consent listing assessments.
				t.Clauses = append(t.Clauses, store.Clause{Param: "_security", Kind: store.KindToken, Not: true,
					Values: []store.Value{{System: systemConfidentiality, Code: "R"}}})
			}
			groups[key] = t
			order = append(order, key)
		}
		t.Patients = append(t.Patients, id)
		patients = append(patients, id)
	}
	access = &store.Access{}
	for _, k := range order {
		access.Terms = append(access.Terms, *groups[k])
	}
	return true, false, patients, access
}

// outsideNarrowing narrows n, the scopes' allowing decision for typ, to the
// caller's outside view (DisclosureAccess). ok is false when typ is not in
// the view.
func outsideNarrowing(v *outsideView, n narrowing, typ string) (narrowing, bool) {
	if v.role == auth.RolePartner && typ == "Task" {
		// A referral is a business record between the two organizations:
		// the partner sees the Tasks it owns or requested, whatever the
		// patient's consent, and nothing else of the type (docs/access.md;
		// the clinical content travels in the other resources, which the
		// consent gates).
		n.hide = true
		n.access = referralTerms(v.org)
		return n, true
	}
	if v.role == auth.RolePartner && typ == "ServiceRequest" {
		// The referral the clinic sent the partner, readable only while
		// the patient's consent permits the partner (RFL-5).
		ids := make([]string, 0, len(v.disc.Patients))
		for id := range v.disc.Patients {
			if n.all || slices.Contains(n.patients, id) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		patients, access := referralPackageTerms(v.org, v.disc, ids)
		n.all, n.hide, n.patients, n.access = false, true, patients, access
		if n.patients == nil {
			n.patients = []string{}
		}
		return n, true
	}
	if v.role == auth.RolePayer && typ == "ClaimResponse" {
		// A payer sees its own answers (insurer its Organization) about the
		// patients of its view, whatever their classes, never one labelled
		// R, and nobody else's (docs/design/security.md PA-4).
		patients := payerAnswerPatients(v, n)
		n.hide, n.all, n.patients, n.access = true, false, patients, payerAnswerTerms(v.org, patients)
		return n, true
	}
	inView, all, patients, access := DisclosureAccess(v.role, v.disc, typ)
	if !inView {
		return narrowing{hide: true}, false
	}
	n.hide = true
	if all {
		return n, true
	}
	if !n.all {
		patients = slices.DeleteFunc(patients, func(p string) bool { return !slices.Contains(n.patients, p) })
	}
	n.all, n.patients, n.access = false, patients, access
	if n.patients == nil {
		n.patients = []string{}
	}
	return n, true
}

// payerAnswerPatients are the patients of the payer's view that the
// scopes' decision n also allows.
func payerAnswerPatients(v *outsideView, n narrowing) []string {
	ids := make([]string, 0, len(v.disc.Patients))
	for id := range v.disc.Patients {
		if n.allows(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// payerAnswerTerms finds the ClaimResponses org is the insurer of, in the
// compartments of patients, without the R label.
func payerAnswerTerms(org string, patients []string) *store.Access {
	if len(patients) == 0 {
		return &store.Access{}
	}
	return &store.Access{Terms: []store.AccessTerm{{Patients: patients, Types: []string{"ClaimResponse"}, Clauses: []store.Clause{
		{Param: "insurer", Kind: store.KindReference, Values: []store.Value{{Str: "Organization/" + org}}},
		{Param: "_security", Kind: store.KindToken, Not: true, Values: []store.Value{{System: systemConfidentiality, Code: "R"}}},
	}}}}
}

// referralTerms finds the Tasks org owns or requested.
func referralTerms(org string) *store.Access {
	ref := []store.Value{{Str: "Organization/" + org}}
	return &store.Access{Terms: []store.AccessTerm{
		{Types: []string{"Task"}, Clauses: []store.Clause{{Param: "owner", Kind: store.KindReference, Values: ref}}},
		{Types: []string{"Task"}, Clauses: []store.Clause{{Param: "requester", Kind: store.KindReference, Values: ref}}},
	}}
}

// referralPackageTerms finds the ServiceRequests of the referrals the
// clinic sent org (performer Organization/{org}) whose patient, one of
// ids, has a consent that permits org now (disc), and returns those
// patients
// (docs/design/security.md RFL-5). The referral package is that
// ServiceRequest and what it and its Task name: the Patient, its
// Conditions, Observations, medications, course and Coverage are each
// read under the partner's view like any other read, by the data classes
// the consent lists (PRIV-12, PRIV-14, PRIV-15); the directory is open to
// the view. Without a counting consent the package is empty: each of its
// resources answers 404. A ServiceRequest labelled R (a suicide-risk
// reason) is shown only where the partner clears R.
func referralPackageTerms(org string, disc auth.Disclosure, ids []string) ([]string, *store.Access) {
	performer := store.Clause{Param: "performer", Kind: store.KindReference, Values: []store.Value{{Str: "Organization/" + org}}}
	notR := store.Clause{Param: "_security", Kind: store.KindToken, Not: true,
		Values: []store.Value{{System: systemConfidentiality, Code: "R"}}}
	var clear, plain []string
	for _, id := range ids {
		g, ok := disc.Patients[id]
		switch {
		case !ok || g.Classes == 0:
		case g.Restricted:
			clear = append(clear, id)
		default:
			plain = append(plain, id)
		}
	}
	// A non-nil Access without terms finds nothing (default deny); a term
	// is never built with no patients, which would not restrict them.
	access := &store.Access{}
	if len(clear) > 0 {
		access.Terms = append(access.Terms, store.AccessTerm{Patients: clear, Types: []string{"ServiceRequest"},
			Clauses: []store.Clause{performer}})
	}
	if len(plain) > 0 {
		access.Terms = append(access.Terms, store.AccessTerm{Patients: plain, Types: []string{"ServiceRequest"},
			Clauses: []store.Clause{performer, notR}})
	}
	return append(clear, plain...), access
}

// reducedPatient keeps what identifies a patient (docs/access.md): a view
// without the demographics class gets the Patient reduced to these, tagged
// SUBSETTED.
var reducedPatient = func() *rewriter {
	keep := mandatory("Patient")
	for _, e := range []string{"identifier", "name", "gender", "birthDate"} {
		keep[e] = true
	}
	return &rewriter{keep: keep}
}()

// outward prepares the resource r for the request's caller
// (docs/design/security.md PRIV-15, PRIV-16, PRIV-19): a Patient served to
// an outside organization without the demographics class is reduced, a
// referral Task served to a partner loses the security labels its consent
// does not clear, and a Provenance loses the targets the caller may not
// read. r's Body is replaced, never modified in place (stored bodies are
// shared).
// outwardInView reports whether outward may change a resource of typ for a
// caller with an outside view (a Patient reduced, PRIV-15; a referral Task's
// labels, PRIV-19). A Provenance may change for any caller (PRIV-16). Bulk
// export writes every other resource as stored (BULK-10), so a type outward
// learns to change under a view must be named here.
func outwardInView(typ string) bool { return typ == "Patient" || typ == "Task" }

func (s *Server) outward(ctx context.Context, r *store.Resource) error {
	return s.outwardWith(ctx, r, nil)
}

// outwardWith is outward with the request's memo of the types its caller
// reads whole (nil: a new one), shared by the resources of one answer.
func (s *Server) outwardWith(ctx context.Context, r *store.Resource, whole *wholeTypes) error {
	if r.Deleted || len(r.Body) == 0 {
		return nil
	}
	switch r.Type {
	case "Patient":
		v, ok := viewFrom(ctx)
		if !ok {
			return nil
		}
		if g, ok := v.disc.Patients[r.ID]; ok && g.Classes.Has(auth.ClassDemographics) {
			return nil
		}
		body, err := reducedPatient.apply(r.Body)
		if err != nil {
			return err
		}
		r.Body = body
	case "Task":
		v, ok := viewFrom(ctx)
		if !ok || v.role != auth.RolePartner {
			return nil
		}
		g, consented := v.disc.Patients[r.Patient]
		consented = consented && g.Classes != 0
		body, err := taskLabels(r.Body, consented, consented && g.Restricted)
		if err != nil {
			return err
		}
		if body != nil {
			r.Body = body
		}
	case "Provenance":
		body, err := s.provenanceTargets(ctx, r.Body, whole)
		if err != nil {
			return err
		}
		if body != nil {
			r.Body = body
		}
	}
	return nil
}

// outwardAll applies outward to each of rs. rs may be shared with the
// read cache: when a resource changes, the result is a copy.
func (s *Server) outwardAll(ctx context.Context, rs []store.Resource) ([]store.Resource, error) {
	copied := false
	var whole wholeTypes
	for i := range rs {
		if rs[i].Type != "Patient" && rs[i].Type != "Provenance" && rs[i].Type != "Task" {
			continue
		}
		r := rs[i]
		if err := s.outwardWith(ctx, &r, &whole); err != nil {
			return nil, err
		}
		if len(r.Body) == len(rs[i].Body) && (len(r.Body) == 0 || &r.Body[0] == &rs[i].Body[0]) {
			continue
		}
		if !copied {
			rs, copied = slices.Clone(rs), true
		}
		rs[i] = r
	}
	return rs, nil
}

// provenanceReadable reports, without decoding body, that the caller may
// read every target of the stored Provenance: every reference in it (its
// agents' too) is a plain local Type/id of a served type the caller reads
// whole (unrestricted, every patient), as refsOpen checks an export line
// (BULK-10). Then provenanceTargets has nothing to withhold; anything else
// takes its full check (docs/design/security.md PERF-ST-5). A system
// client's $everything page holds dozens of Provenances, and decoding each
// with encoding/json to learn that was about two thirds of that answer's
// CPU.
//
// whole memoizes the decisions for one request (nil: for this body only): a
// $everything page holds a Provenance per record, each naming the same
// few types, and deciding each type again for each of them was most of
// this check's cost (docs/design/security.md PERF-ST-15). The decisions
// are the request's caller's, so a memo never outlives its request.
func (s *Server) provenanceReadable(ctx context.Context, body []byte, whole *wholeTypes) bool {
	if whole == nil {
		whole = &wholeTypes{}
	}
	return refsAll(body, func(typ []byte) bool { return whole.reads(s, ctx, typ) })
}

// wholeTypes is one request's memo of which types its caller reads whole
// (a read decision for every patient, no granular filter, no outside view
// narrowing it): provenanceReadable's test of a reference's type.
type wholeTypes struct {
	yes, no []string
}

// reads reports whether the caller reads typ whole: a served type whose
// read decision is unrestricted. Each type is decided once.
func (w *wholeTypes) reads(s *Server, ctx context.Context, typ []byte) bool {
	for _, t := range w.yes {
		if t == string(typ) {
			return true
		}
	}
	for _, t := range w.no {
		if t == string(typ) {
			return false
		}
	}
	t := string(typ)
	ok := s.types[t]
	if ok {
		n, err := decide(ctx, auth.InteractionRead, t)
		ok = err == nil && n.all && !n.restricts()
	}
	if ok {
		w.yes = append(w.yes, t)
	} else {
		w.no = append(w.no, t)
	}
	return ok
}

// withheldTarget replaces the targets of a Provenance none of whose targets
// the caller may read: Provenance.target is required (1..*), and a
// reference with only a display names nothing.
const withheldTarget = `[{"display":"withheld"}]`

// provenanceTargets returns the Provenance body without the targets the
// caller may not read, tagged SUBSETTED, or nil when it may read them all
// (docs/design/security.md PRIV-16): a resource the caller may read never
// reveals the ids of resources it may not.
func (s *Server) provenanceTargets(ctx context.Context, body []byte, whole *wholeTypes) ([]byte, error) {
	if s.provenanceReadable(ctx, body, whole) {
		return nil, nil
	}
	ms, err := members(body)
	if err != nil {
		return nil, err
	}
	var targets []json.RawMessage
	for _, m := range ms {
		if m.name == "target" {
			if err := json.Unmarshal(m.raw, &targets); err != nil {
				return nil, ErrInternal.WithDetails("stored Provenance target unreadable").WithCause(err)
			}
		}
	}
	refs := make([]store.Key, len(targets))
	byType := map[string][]string{}
	for i, t := range targets {
		var ref jsonRef
		_ = json.Unmarshal(t, &ref)
		typ, id, ok := strings.Cut(ref.Reference, "/")
		if !ok || strings.Contains(id, "/") {
			continue // not a local Type/id reference: nothing it could reveal here
		}
		refs[i] = store.Key{Type: typ, ID: id}
		byType[typ] = append(byType[typ], id)
	}
	// What the caller may read of each target type, decided as a read.
	readable := map[store.Key]bool{}
	var check []store.Key
	narrow := map[string]narrowing{}
	for typ, ids := range byType {
		// Readable: by id, or else by a search (a search-only client
		// still finds it).
		n, err := decide(ctx, auth.InteractionRead, typ)
		if err != nil {
			n, err = decide(ctx, auth.InteractionSearch, typ)
		}
		if err != nil || !s.types[typ] {
			continue // none of them
		}
		for _, id := range ids {
			k := store.Key{Type: typ, ID: id}
			if n.all && !n.restricts() {
				readable[k] = true
			} else {
				check = append(check, k)
			}
		}
		narrow[typ] = n
	}
	if len(check) > 0 {
		rs, err := s.store.GetMany(ctx, check)
		if err != nil {
			return nil, err
		}
		restricted := map[string][]string{}
		for _, r := range rs {
			n := narrow[r.Type]
			switch {
			case !n.allows(r.Patient):
			case n.restricts():
				restricted[r.Type] = append(restricted[r.Type], r.ID)
			default:
				readable[store.Key{Type: r.Type, ID: r.ID}] = true
			}
		}
		for typ, ids := range restricted {
			ok, err := s.visible(ctx, narrow[typ], typ, ids)
			if err != nil {
				return nil, err
			}
			for id := range ok {
				readable[store.Key{Type: typ, ID: id}] = true
			}
		}
	}
	kept := make([]json.RawMessage, 0, len(targets))
	for i, t := range targets {
		if refs[i].Type == "" || readable[refs[i]] {
			kept = append(kept, t)
		}
	}
	if len(kept) == len(targets) {
		return nil, nil
	}
	out := make([]byte, 0, len(body)+len(subsettedTag)+16)
	out = append(out, '{')
	sawMeta := false
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, m.name)
		out = append(out, ':')
		switch m.name {
		case "target":
			if len(kept) == 0 {
				out = append(out, withheldTarget...)
				continue
			}
			out = append(out, '[')
			for j, t := range kept {
				if j > 0 {
					out = append(out, ',')
				}
				out = append(out, t...)
			}
			out = append(out, ']')
		case "meta":
			sawMeta = true
			meta, err := tagSubsetted(m.raw)
			if err != nil {
				return nil, err
			}
			out = append(out, meta...)
		default:
			out = append(out, m.raw...)
		}
	}
	if !sawMeta {
		out = append(out, `,"meta":{"tag":[`+subsettedTag+`]}`...)
	}
	return append(out, '}'), nil
}

// withheldIssue is the search.mode=outcome issue of a search whose answer
// an outside view narrowed (docs/design/security.md PRIV-17): IssueType
// suppressed ("not returned due to business rules, consent or privacy
// rules, or access permission constraints"), severity information. It says
// that something of what the search asks for is not disclosed to the
// caller, never what, and never whether such data exists.
var withheldIssue = &Error{Code: "suppressed", Severity: SeverityInformation,
	Details: "Some of what this search asks for is not disclosed to you under the patient's consent or the access policy; what is withheld, and whether any such data exists, is not said"}

// withholds reports whether the outside view v withholds part of what a
// search of typ with clauses could return from the view's patients (within
// scope, the token's patient restriction, nil for none) (docs/design/security.md PRIV-17): a data class of the
// type (for Observation, of the categories the search names) that some of
// those patients' grants leave out, or, where assessments or diagnoses are
// asked for, the R-labelled content a grant does not clear. It depends only on the
// consents and the query, never on the data: a patient outside the view is
// not among patients (the search finds nothing, PRIV-12), and a partner's
// Task search (its own referrals, whatever the consent) and the directory
// are never narrowed by consent. Observations of categories in no class
// (laboratory, ...) are outside every view, not withheld by a consent, and
// are not marked.
// labelledR are the classes whose resources can carry the R label
// (docs/fhir-mapping.md "Security labels": suicide-risk assessments and
// diagnoses).
var labelledR = auth.ClassSet(auth.ClassAssessments, auth.ClassDiagnoses)

func withholds(v *outsideView, typ string, clauses []store.Clause, scope []string) bool {
	// The patients of the view (whether or not they have anything of typ to
	// show), within the token's own patient restriction (nil: none).
	var patients []string
	for id := range v.disc.Patients {
		if scope == nil || slices.Contains(scope, id) {
			patients = append(patients, id)
		}
	}
	if typ == "Patient" || auth.Directory(typ) || (v.role == auth.RolePartner && typ == "Task") {
		return false
	}
	want := auth.TypeClasses(typ)
	for _, c := range clauses {
		if typ != "Observation" || c.Param != "category" || c.Not || c.Missing != nil || len(c.Values) == 0 {
			continue
		}
		var named auth.Classes
		for _, val := range c.Values {
			if val.System != "" && val.System != systemObsCategory {
				continue
			}
			if dc, ok := auth.ClassOf("Observation", val.Code); ok {
				named |= auth.ClassSet(dc)
			}
		}
		want &= named
	}
	if want == 0 {
		return false
	}
	// The search's own patient or subject clauses narrow the patients.
	for _, c := range clauses {
		if c.Kind != store.KindReference || (c.Param != "patient" && c.Param != "subject") || c.Missing != nil || c.Not {
			continue
		}
		var named []string
		for _, val := range c.Values {
			if id, ok := strings.CutPrefix(val.Str, "Patient/"); ok {
				named = append(named, id)
			}
		}
		patients = slices.DeleteFunc(slices.Clone(patients), func(p string) bool { return !slices.Contains(named, p) })
	}
	for _, p := range patients {
		g, ok := v.disc.Patients[p]
		if !ok {
			continue
		}
		if want&^g.Classes != 0 || (want&labelledR != 0 && !g.Restricted) {
			return true
		}
	}
	return false
}

// scopePatients is the patient restriction of the caller's scopes for a
// search of typ (nil: none, a system/ or user/ grant).
func scopePatients(ctx context.Context, typ string) []string {
	info, ok := auth.FromContext(ctx)
	if !ok {
		return []string{}
	}
	d := auth.Decide(info.Principal, typ, auth.InteractionSearch)
	if !d.Allowed {
		return []string{}
	}
	return d.Patients
}

// taskLabels returns the Task body as served to a partner that clears PSY
// (clearPSY) and R (clearR): unchanged (nil) when it clears both, else
// with meta.security reduced to the labels it clears and meta tagged
// SUBSETTED (docs/design/security.md PRIV-19). A referral Task carries the
// labels of its reason (PSY with N, or PSY with R for a suicide-risk
// reason) and is shown to the partner whatever the patient's consent
// (PRIV-12), so its labels would reveal the sensitivity of the reason. A
// label is cleared exactly when the partner may read the referral's
// ServiceRequest bearing it (RFL-5): PSY while the patient's consent
// counts for the partner, R only where the consent also clears R
// (PRIV-14). The confidentiality code (N or R) is kept only with R
// cleared, and a Task is tagged SUBSETTED whenever the partner does not
// clear both, whatever it bore: what is served then depends on the
// consent alone, never on the labels withheld (N beside a withheld R, or
// a tag on labelled Tasks only, would tell them apart). Any other
// security coding is removed too (fail closed). The rest of the Task
// holds no clinical content of the clinic's (mapping of the referral
// record: code fulfill, focus, for, requester, owner, status and dates;
// RFL-2 lets an update change only status, statusReason, businessStatus,
// output and note).
func taskLabels(body []byte, clearPSY, clearR bool) ([]byte, error) {
	if clearPSY && clearR {
		return nil, nil
	}
	ms, err := members(body)
	if err != nil {
		return nil, err
	}
	out := make([]member, 0, len(ms)+1)
	sawMeta := false
	for _, m := range ms {
		if m.name != "meta" {
			out = append(out, m)
			continue
		}
		sawMeta = true
		mm, err := members(m.raw)
		if err != nil {
			return nil, err
		}
		meta := make([]member, 0, len(mm))
		for _, f := range mm {
			if f.name != "security" {
				meta = append(meta, f)
				continue
			}
			var labels []json.RawMessage
			if err := json.Unmarshal(f.raw, &labels); err != nil {
				return nil, ErrInternal.WithDetails("stored Task meta.security unreadable").WithCause(err)
			}
			kept := make([]json.RawMessage, 0, len(labels))
			for _, l := range labels {
				var c jsonCoding
				_ = json.Unmarshal(l, &c)
				if clearPSY && c.System == systemActCode && c.Code == "PSY" {
					kept = append(kept, l)
				}
			}
			if len(kept) > 0 {
				raw, err := json.Marshal(kept)
				if err != nil {
					return nil, err
				}
				meta = append(meta, member{"security", raw})
			}
		}
		raw, err := tagSubsetted(joinMembers(meta))
		if err != nil {
			return nil, err
		}
		out = append(out, member{"meta", raw})
	}
	if !sawMeta {
		out = append(out, member{"meta", json.RawMessage(`{"tag":[` + subsettedTag + `]}`)})
	}
	return joinMembers(out), nil
}

// joinMembers writes the members as a JSON object.
func joinMembers(ms []member) []byte {
	n := 2
	for _, m := range ms {
		n += len(m.name) + len(m.raw) + 4
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, m.name)
		out = append(out, ':')
		out = append(out, m.raw...)
	}
	return append(out, '}')
}

// errTaskSecuritySearch refuses a partner's search of Task by _security.
var errTaskSecuritySearch = ErrInvalid.WithExpression("_security").
	WithDetails("a partner cannot search or sort Task by _security: a referral Task's labels are served as the patient's consent clears them")

// partnerTaskSecurity refuses a partner's Task search by _security, with
// any modifier or value, in any handling mode, and its sort by _security
// (docs/design/security.md PRIV-19): the stored labels of a Task may be
// withheld from the partner (taskLabels), and a search or an order by them
// would tell which Tasks carry them. The refusal does not depend on any
// Task or consent, so it reveals nothing.
func partnerTaskSecurity(ctx context.Context, typ string, q store.Query) error {
	v, ok := viewFrom(ctx)
	if !ok {
		return nil
	}
	return taskSecurityRefused(v.role, typ, q)
}

// taskSecurityRefused is partnerTaskSecurity for a caller of role: also
// used for a bulk export's _typeFilter, checked at the kick-off.
func taskSecurityRefused(role auth.Role, typ string, q store.Query) error {
	if typ != "Task" || role != auth.RolePartner {
		return nil
	}
	for _, cl := range q.Clauses {
		if cl.Param == "_security" {
			return errTaskSecuritySearch
		}
	}
	for _, s := range q.Sort {
		if s.Param == "_security" {
			return errTaskSecuritySearch
		}
	}
	return nil
}
