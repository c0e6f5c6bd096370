package main

// End-to-end acceptance test of the outside views (docs/access.md;
// docs/design/security.md PRIV-11 to PRIV-15): the real `ketabridge serve
// --demo`, two payer, two partner and one EHR backend client registered
// with the real CLI and bound to the demo organizations, real
// client_credentials tokens with private_key_jwt, and every read path
// driven over HTTP. What each client should see is computed here, from the
// synthetic consent situations (mapping/synth consentPlans, one per demo
// patient) and the data-class table of the issue, not from the code under
// test: the EHR client's unrestricted answers give the resources, this
// file's tables decide who sees which.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/server"
)

// Data classes as the test names them.
const (
	clsDemo   = "demographics"
	clsDx     = "diagnoses"
	clsMed    = "medications"
	clsSess   = "sessions"
	clsAssess = "assessments"
	clsVitals = "vitals"
	clsCov    = "coverage"
)

var allClasses = []string{clsDemo, clsDx, clsMed, clsSess, clsAssess, clsVitals, clsCov}

// expectGrant is what one organization may see of one patient.
type expectGrant struct {
	classes    []string
	restricted bool // label R cleared
}

// demoGrants is, per demo patient (index = the consent plan of
// mapping/synth: patient n has plan n % 12) and per organization role,
// what the access policy of docs/access.md grants. payer means the
// patient's own payer (the one its Coverage names); the other payer sees
// nobody.
func demoGrants(plan int) (payer *expectGrant, riverbend *expectGrant, northgate *expectGrant) {
	payerAll := []string{clsDemo, clsDx, clsMed, clsSess, clsAssess, clsCov}
	partnerList := []string{clsDemo, clsDx, clsMed, clsSess, clsAssess, clsVitals}
	switch plan {
	case 0: // own payer; Riverbend with assessments listed: R cleared
		return &expectGrant{classes: payerAll}, &expectGrant{classes: partnerList, restricted: true}, nil
	case 1: // own payer only
		return &expectGrant{classes: payerAll}, nil, nil
	case 2: // own payer; Northgate every class (not listed: R not cleared)
		return &expectGrant{classes: payerAll}, nil, &expectGrant{classes: allClasses}
	case 3: // own payer; Riverbend expired
		return &expectGrant{classes: payerAll}, nil, nil
	case 4: // covered by one payer, consenting only to the other: nobody
		return nil, nil, nil
	case 5: // own payer; Riverbend listed, then assessments denied
		return &expectGrant{classes: payerAll}, &expectGrant{classes: []string{clsDemo, clsDx, clsMed, clsSess, clsVitals}}, nil
	case 6: // own payer, assessments denied
		return &expectGrant{classes: []string{clsDemo, clsDx, clsMed, clsSess, clsCov}}, nil, nil
	case 7: // limited classes for both
		return &expectGrant{classes: []string{clsDemo, clsDx, clsCov}}, nil, &expectGrant{classes: []string{clsDemo, clsMed, clsSess}}
	case 8: // payer permit inactive
		return nil, nil, nil
	case 9: // no coverage; Riverbend every class
		return nil, &expectGrant{classes: allClasses}, nil
	case 10: // own payer; both partners, Northgate denied
		return &expectGrant{classes: payerAll}, &expectGrant{classes: allClasses}, nil
	case 11: // payer expired; Northgate listed (R cleared)
		return nil, nil, &expectGrant{classes: partnerList, restricted: true}
	}
	return nil, nil, nil
}

// classOfTest is the data class of a resource (the table): ""
// when it is in none.
func classOfTest(r accRes) string {
	switch r.typ {
	case "Patient":
		return clsDemo
	case "Condition":
		return clsDx
	case "MedicationRequest", "MedicationStatement":
		return clsMed
	case "CarePlan", "Encounter", "MedicationAdministration", "AdverseEvent":
		return clsSess
	case "Coverage":
		return clsCov
	case "Observation":
		switch {
		case slices.Contains(r.categories, "survey"):
			return clsAssess
		case slices.Contains(r.categories, "vital-signs"):
			return clsVitals
		}
	}
	return ""
}

// patientTypes are the patient-data types of the payer and partner views.
var patientTypes = []string{"Patient", "Coverage", "Condition", "CarePlan", "MedicationRequest", "MedicationStatement",
	"MedicationAdministration", "Encounter", "Observation", "AdverseEvent"}

// accRes is what the test needs of one resource.
type accRes struct {
	typ, id, patient string
	categories       []string
	security         []string // codes
	tags             []string
	raw              map[string]any
}

func (r accRes) key() string { return r.typ + "/" + r.id }

func parseAccRes(t *testing.T, m map[string]any) accRes {
	t.Helper()
	r := accRes{raw: m}
	r.typ, _ = m["resourceType"].(string)
	r.id, _ = m["id"].(string)
	ref := func(name string) string {
		if o, ok := m[name].(map[string]any); ok {
			s, _ := o["reference"].(string)
			return strings.TrimPrefix(s, "Patient/")
		}
		return ""
	}
	switch r.typ {
	case "Patient":
		r.patient = r.id
	case "Coverage":
		r.patient = ref("beneficiary")
	case "Consent":
		r.patient = ref("patient")
	default:
		r.patient = ref("subject")
	}
	cats, _ := m["category"].([]any)
	for _, c := range cats {
		cm, _ := c.(map[string]any)
		codings, _ := cm["coding"].([]any)
		for _, cd := range codings {
			code, _ := cd.(map[string]any)["code"].(string)
			r.categories = append(r.categories, code)
		}
	}
	if meta, ok := m["meta"].(map[string]any); ok {
		for _, f := range []struct {
			name string
			into *[]string
		}{{"security", &r.security}, {"tag", &r.tags}} {
			list, _ := meta[f.name].([]any)
			for _, s := range list {
				code, _ := s.(map[string]any)["code"].(string)
				*f.into = append(*f.into, code)
			}
		}
	}
	return r
}

// accBundle is a searchset page.
type accBundle struct {
	Total *int `json:"total"`
	Link  []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource map[string]any `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

// searchPages runs a search and follows its next links, returning the
// matches and the included resources of every page.
func (e *smartEnv) searchPages(t *testing.T, token, path string) (matches, included []accRes) {
	t.Helper()
	for page := 0; path != ""; page++ {
		if page > 200 {
			t.Fatalf("GET %s: more than 200 pages", path)
		}
		r := e.fhir(t, token, path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %s", path, r)
		}
		var b accBundle
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
		for _, en := range b.Entry {
			if en.Resource["resourceType"] == "OperationOutcome" {
				continue
			}
			res := parseAccRes(t, en.Resource)
			if en.Search.Mode == "include" {
				included = append(included, res)
			} else {
				matches = append(matches, res)
			}
		}
		path = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				path = strings.TrimPrefix(l.URL, e.fhirBase)
			}
		}
	}
	return matches, included
}

func keysOf(rs []accRes) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.key())
	}
	sort.Strings(out)
	return out
}

// outsideClient is one bound client and what it should see.
type outsideClient struct {
	id, org, role string
	token         string
	// grants maps patient id -> grant.
	grants map[string]*expectGrant
}

// sees reports whether the client's view shows r.
func (c *outsideClient) sees(r accRes) bool {
	g := c.grants[r.patient]
	if g == nil {
		return false
	}
	if r.typ == "Patient" {
		return true // identity travels with the data
	}
	if r.typ == "ServiceRequest" {
		// A referral the clinic sent the partner: its package, while the
		// consent counts (docs/design/security.md RFL-5).
		performers, _ := r.raw["performer"].([]any)
		mine := false
		for _, p := range performers {
			ref, _ := p.(map[string]any)
			mine = mine || ref["reference"] == "Organization/"+mapping.ResourceID(clinic.KindOrganization, c.org)
		}
		return c.role == "partner" && mine && (!slices.Contains(r.security, "R") || g.restricted)
	}
	cls := classOfTest(r)
	if cls == "" || !slices.Contains(g.classes, cls) {
		return false
	}
	if c.role == "payer" && cls == clsVitals {
		return false // not in the payer view
	}
	if slices.Contains(r.security, "R") && !g.restricted {
		return false
	}
	return true
}

func TestOutsideViewsEndToEnd(t *testing.T) {
	e := startSMART(t)

	// The demo patients and their consent plans: patient n is pat-{n+1}.
	plans := map[string]int{}
	for n := range server.DemoPatients {
		plans[mapping.ResourceID(clinic.KindPatient, "pat-"+pad6(n+1))] = n % 12
	}
	orgID := func(clinicID string) string { return mapping.ResourceID(clinic.KindOrganization, clinicID) }

	// Everything of the patient-data types, unrestricted (the EHR client).
	all := map[string][]accRes{}
	var labelledR, labelledPSY int
	for _, typ := range append(slices.Clone(patientTypes), "ServiceRequest") {
		ms, _ := e.searchPages(t, e.system, "/"+typ+"?_count=200")
		all[typ] = ms
		for _, r := range ms {
			if slices.Contains(r.security, "R") {
				labelledR++
			}
			if slices.Contains(r.security, "PSY") {
				labelledPSY++
			}
			if r.patient == "" {
				t.Fatalf("%s has no patient", r.key())
			}
		}
	}
	if len(all["Patient"]) != server.DemoPatients || labelledR == 0 || labelledPSY == 0 {
		t.Fatalf("demo data: %d patients, %d R-labelled, %d PSY-labelled resources", len(all["Patient"]), labelledR, labelledPSY)
	}
	for _, p := range all["Patient"] {
		if _, ok := plans[p.id]; !ok {
			t.Fatalf("Patient/%s is not a demo patient of the synth table", p.id)
		}
	}
	ownPayer := map[string]string{}
	for _, cv := range all["Coverage"] {
		payors, _ := cv.raw["payor"].([]any)
		ref, _ := payors[0].(map[string]any)["reference"].(string)
		ownPayer[cv.patient] = strings.TrimPrefix(ref, "Organization/")
	}

	clients := []*outsideClient{
		{id: "payer-blueheron", org: synth.OrgPayerBlueHeron, role: "payer"},
		{id: "payer-cascade", org: synth.OrgPayerCascade, role: "payer"},
		{id: "partner-riverbend", org: synth.OrgPartnerRiverbend, role: "partner"},
		{id: "partner-northgate", org: synth.OrgPartnerNorthgate, role: "partner"},
	}
	for _, c := range clients {
		c.grants = map[string]*expectGrant{}
		for p, plan := range plans {
			payer, riverbend, northgate := demoGrants(plan)
			var g *expectGrant
			switch {
			case c.role == "payer" && ownPayer[p] == orgID(c.org):
				g = payer
			case c.org == synth.OrgPartnerRiverbend:
				g = riverbend
			case c.org == synth.OrgPartnerNorthgate:
				g = northgate
			}
			if g != nil {
				c.grants[p] = g
			}
		}
		keyFile, jwksFile := backendKeyFiles(t, c.id)
		// The clinic record id form for one, Organization/{id} for the others.
		org := "Organization/" + orgID(c.org)
		if c.id == "payer-blueheron" {
			org = c.org
		}
		out := e.cli(t, "clients", "add", "--id", c.id, "--kind", "backend", "--jwks-file", jwksFile,
			"--scope", "system/*.rs", "--organization", org, "--role", c.role)
		if !strings.Contains(out, "bound to Organization/"+orgID(c.org)+" as "+c.role) {
			t.Fatalf("clients add %s: %s", c.id, out)
		}
		c.token = strings.TrimSpace(e.cli(t, "token", "--client", c.id, "--key", keyFile, "--scope", "system/*.rs",
			"--token-url", e.issuer+"/token"))
		claims := tokenClaims(t, c.token)
		if claims["organization"] != "Organization/"+orgID(c.org) || claims["role"] != c.role {
			t.Fatalf("%s token claims organization=%v role=%v", c.id, claims["organization"], claims["role"])
		}
	}
	// Every payer and partner sees someone and misses someone: the table
	// exercises both sides.
	for _, c := range clients {
		if len(c.grants) == 0 || len(c.grants) == len(plans) {
			t.Fatalf("%s: %d of %d patients expected: the demo data no longer has the consent variety", c.id, len(c.grants), len(plans))
		}
	}

	t.Run("clients list shows the binding", func(t *testing.T) {
		out := e.cli(t, "clients", "list")
		for _, c := range clients {
			line := ""
			for l := range strings.Lines(out) {
				if strings.HasPrefix(l, c.id+" ") {
					line = l
				}
			}
			if !strings.Contains(line, " "+c.role+" ") || !strings.Contains(line, "Organization/"+orgID(c.org)) {
				t.Errorf("clients list line of %s: %q", c.id, line)
			}
		}
	})

	t.Run("introspection shows the binding", func(t *testing.T) {
		for _, c := range clients {
			req, err := http.NewRequest(http.MethodPost, e.issuer+"/introspect", strings.NewReader("token="+c.token))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+e.system)
			r := smartDo(t, noRedirect, req)
			m := r.json(t)
			if m["active"] != true || m["organization"] != "Organization/"+orgID(c.org) || m["role"] != c.role {
				t.Errorf("introspect %s: %s", c.id, r)
			}
		}
	})

	t.Run("registration refuses a wrong or unknown organization", func(t *testing.T) {
		_, jwksFile := backendKeyFiles(t, "bad")
		for _, tc := range []struct{ org, role, want string }{
			{synth.OrgPartnerRiverbend, "payer", "needs a payer organization"},
			{synth.OrgPayerCascade, "partner", "needs a partner organization"},
			{synth.OrgClinic, "payer", "neither a payer nor a partner"},
			{"org-nowhere", "partner", "is not in the clinic's records"},
			{"", "payer", "organization is required"},
		} {
			var out, errOut strings.Builder
			args := []string{"clients", "add", "--id", "bad", "--kind", "backend", "--jwks-file", jwksFile,
				"--scope", "system/*.rs", "--role", tc.role, "--data-dir", e.dir, "--base-url", e.base}
			if tc.org != "" {
				args = append(args, "--organization", tc.org)
			}
			code := run(t.Context(), args, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: envOf(nil)})
			if code == 0 || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("clients add --organization %q --role %s: exit %d, stderr %q; want refusal %q", tc.org, tc.role, code, errOut.String(), tc.want)
			}
		}
	})

	for _, c := range clients {
		t.Run(c.id, func(t *testing.T) {
			checkOutsideView(t, e, c, all)
		})
	}

	t.Run("types outside the view", func(t *testing.T) {
		consents, _ := e.searchPages(t, e.system, "/Consent?_count=200")
		for _, c := range clients {
			if r := e.fhir(t, c.token, "/Consent?_count=5"); r.status != http.StatusForbidden {
				t.Errorf("%s Consent search: %d, want 403", c.id, r.status)
			}
			if r := e.fhir(t, c.token, "/Consent/"+consents[0].id); r.status != http.StatusNotFound {
				t.Errorf("%s Consent read: %d, want 404", c.id, r.status)
			}
		}
	})

	t.Run("audit names the organization and the purpose", func(t *testing.T) {
		want := map[string]string{"payer-blueheron": "HPAYMT", "partner-northgate": "TREAT"}
		found := map[string]bool{}
		for try := 0; try < 50 && len(found) < len(want); try++ {
			if try > 0 {
				time.Sleep(200 * time.Millisecond) // the audit writer flushes in the background
			}
			for l := range strings.Lines(e.cli(t, "audit", "export")) {
				var ev struct {
					Agent []struct {
						Who struct {
							Reference  string `json:"reference"`
							Identifier struct {
								Value string `json:"value"`
							} `json:"identifier"`
						} `json:"who"`
					} `json:"agent"`
					PurposeOfEvent []struct {
						Coding []struct {
							Code string `json:"code"`
						} `json:"coding"`
					} `json:"purposeOfEvent"`
				}
				if json.Unmarshal([]byte(l), &ev) != nil || len(ev.Agent) == 0 {
					continue
				}
				for _, c := range clients {
					purpose, ok := want[c.id]
					if !ok || ev.Agent[0].Who.Identifier.Value != c.id {
						continue
					}
					if ev.Agent[0].Who.Reference != "Organization/"+orgID(c.org) ||
						len(ev.PurposeOfEvent) != 1 || ev.PurposeOfEvent[0].Coding[0].Code != purpose {
						t.Fatalf("AuditEvent of %s: %s", c.id, l)
					}
					found[c.id] = true
				}
			}
		}
		if len(found) != len(want) {
			t.Errorf("AuditEvents found for %v of %v", found, want)
		}
	})

	t.Run("a consent re-ingested as inactive cuts access at once", func(t *testing.T) {
		rb := clients[2]
		p0 := mapping.ResourceID(clinic.KindPatient, "pat-000001") // plan 0: Riverbend permitted
		if rb.grants[p0] == nil {
			t.Fatal("plan 0 patient not expected for Riverbend")
		}
		before := e.count(t, rb.token, "/Observation?_summary=count")
		if r := e.fhir(t, rb.token, "/Patient/"+p0); r.status != http.StatusOK {
			t.Fatalf("Riverbend read of its patient before: %s", r)
		}
		ingestConsent(t, e, "consent-000001-partner", "inactive")
		if r := e.fhir(t, rb.token, "/Patient/"+p0); r.status != http.StatusNotFound {
			t.Errorf("Riverbend read after the consent went inactive: %d, want 404", r.status)
		}
		if r := e.fhir(t, rb.token, "/Patient/"+p0+"/$everything"); r.status != http.StatusNotFound {
			t.Errorf("Riverbend $everything after the consent went inactive: %d, want 404", r.status)
		}
		delete(rb.grants, p0)
		want := 0
		for _, r := range all["Observation"] {
			if rb.sees(r) {
				want++
			}
		}
		if got := e.count(t, rb.token, "/Observation?_summary=count"); got != want || got >= before {
			t.Errorf("Riverbend Observation count after: %d (before %d), want %d", got, before, want)
		}
		// Active again: access comes back on the next request.
		ingestConsent(t, e, "consent-000001-partner", "active")
		if r := e.fhir(t, rb.token, "/Patient/"+p0); r.status != http.StatusOK {
			t.Errorf("Riverbend read after the consent is active again: %d", r.status)
		}
	})

	t.Run("a deny naming no one cuts every payer and partner at once", func(t *testing.T) {
		// docs/design/security.md PRIV-20: plan 0's patient is seen by its
		// payer and by Riverbend; a deny with no recipient withdraws it
		// from both, and the clinic's own client still reads it.
		p0 := mapping.ResourceID(clinic.KindPatient, "pat-000001")
		var seeing []*outsideClient
		payers := 0
		for _, c := range clients {
			if r := e.fhir(t, c.token, "/Patient/"+p0); r.status == http.StatusOK {
				seeing = append(seeing, c)
				if c.role == "payer" {
					payers++
				}
			}
		}
		if len(seeing) < 2 || payers == 0 {
			t.Fatalf("plan 0 patient seen by %d clients (%d payers), want a payer and a partner", len(seeing), payers)
		}
		deny := func(status string) []byte {
			b, _ := json.Marshal(map[string]any{"kind": "consent", "id": "consent-000001-nobody", "patientId": "pat-000001",
				"status": status, "decision": "deny", "dateTime": "2026-01-06T10:00:00Z",
				"purposes": []string{"treatment", "payment", "operations"}})
			return b
		}
		ingestRecord(t, e, deny("active"))
		for _, c := range seeing {
			if r := e.fhir(t, c.token, "/Patient/"+p0); r.status != http.StatusNotFound {
				t.Errorf("%s read after the deny naming no one: %d, want 404", c.id, r.status)
			}
			if n := e.count(t, c.token, "/Observation?patient=Patient/"+p0+"&_summary=count"); n != 0 {
				t.Errorf("%s finds %d Observations after the deny naming no one", c.id, n)
			}
		}
		if r := e.fhir(t, e.system, "/Patient/"+p0); r.status != http.StatusOK {
			t.Errorf("the clinic's read after the deny: %d", r.status)
		}
		ingestRecord(t, e, deny("inactive"))
		for _, c := range seeing {
			if r := e.fhir(t, c.token, "/Patient/"+p0); r.status != http.StatusOK {
				t.Errorf("%s read after the deny went inactive: %d", c.id, r.status)
			}
		}
	})
}

// checkOutsideView checks that c sees exactly what its grants allow through
// search (paged), counts, read, $everything, _include and _revinclude.
func checkOutsideView(t *testing.T, e *smartEnv, c *outsideClient, all map[string][]accRes) {
	expected := map[string][]accRes{}
	byPatient := map[string][]string{}
	for _, typ := range append(slices.Clone(patientTypes), "ServiceRequest") {
		for _, r := range all[typ] {
			if c.sees(r) {
				expected[typ] = append(expected[typ], r)
				byPatient[r.patient] = append(byPatient[r.patient], r.key())
			}
		}
	}
	for _, typ := range patientTypes {
		// Search, paged by 7 so most types take several pages.
		size := "7"
		if typ == "Observation" {
			size = "157"
		}
		got, _ := e.searchPages(t, c.token, "/"+typ+"?_count="+size)
		if g, w := keysOf(got), keysOf(expected[typ]); !slices.Equal(g, w) {
			t.Errorf("%s search: %d resources, want %d\n got %v\nwant %v", typ, len(g), len(w), g, w)
		}
		if n := e.count(t, c.token, "/"+typ+"?_summary=count"); n != len(expected[typ]) {
			t.Errorf("%s _summary=count: %d, want %d", typ, n, len(expected[typ]))
		}
		r := e.fhir(t, c.token, "/"+typ+"?_total=accurate&_count=1")
		var b accBundle
		if json.Unmarshal(r.body, &b) != nil || b.Total == nil || *b.Total != len(expected[typ]) {
			t.Errorf("%s _total=accurate: %s", typ, r)
		}
	}

	// The referrals the clinic sent: a partner finds those sent to it whose
	// patient's consent counts; a payer may not search the type.
	if c.role == "partner" {
		got, _ := e.searchPages(t, c.token, "/ServiceRequest?_count=7")
		if g, w := keysOf(got), keysOf(expected["ServiceRequest"]); !slices.Equal(g, w) {
			t.Errorf("ServiceRequest search: %d resources, want %d\n got %v\nwant %v", len(g), len(w), g, w)
		}
	} else if r := e.fhir(t, c.token, "/ServiceRequest"); r.status != http.StatusForbidden {
		t.Errorf("ServiceRequest search by a %s: %d, want 403", c.role, r.status)
	}

	// docs/design/security.md PRIV-17: a search of one patient's vital signs
	// or assessments carries the "suppressed" outcome exactly when the view
	// withholds part of that class (or, for assessments, R-labelled content)
	// from a patient in the view, whatever the data; a patient outside the
	// view finds nothing, with no mark.
	for _, p := range all["Patient"] {
		g := c.grants[p.id]
		for _, q := range []struct{ cat, cls string }{{"vital-signs", clsVitals}, {"survey", clsAssess}} {
			want := g != nil && (!slices.Contains(g.classes, q.cls) || (c.role == "payer" && q.cls == clsVitals) ||
				(q.cls == clsAssess && !g.restricted))
			r := e.fhir(t, c.token, "/Observation?patient=Patient/"+p.id+"&category="+q.cat)
			var b accBundle
			if r.status != http.StatusOK || json.Unmarshal(r.body, &b) != nil {
				t.Fatalf("Observation %s of Patient/%s: %s", q.cat, p.id, r)
			}
			marked := false
			for _, en := range b.Entry {
				if en.Resource["resourceType"] == "OperationOutcome" && en.Search.Mode == "outcome" &&
					strings.Contains(string(r.body), `"code":"suppressed"`) {
					marked = true
				}
			}
			if marked != want {
				t.Errorf("Observation %s of Patient/%s (grant %+v): withheld mark %v, want %v", q.cat, p.id, g, marked, want)
			}
		}
	}

	// Reads: every Patient (full, reduced or 404), and for every other type
	// one resource inside and one outside the view.
	for _, p := range all["Patient"] {
		r := e.fhir(t, c.token, "/Patient/"+p.id)
		g := c.grants[p.id]
		switch {
		case g == nil && r.status != http.StatusNotFound:
			t.Errorf("read Patient/%s outside the view: %d, want 404", p.id, r.status)
		case g != nil && r.status != http.StatusOK:
			t.Errorf("read Patient/%s inside the view: %s", p.id, r)
		case g != nil:
			got := parseAccRes(t, r.json(t))
			reduced := !slices.Contains(g.classes, clsDemo)
			_, hasAddress := got.raw["address"]
			_, hasName := got.raw["name"]
			if !hasName || got.raw["gender"] == nil || got.raw["birthDate"] == nil {
				t.Errorf("Patient/%s lacks its identity: %.200v", p.id, got.raw)
			}
			if reduced != slices.Contains(got.tags, "SUBSETTED") || (reduced && hasAddress) {
				t.Errorf("Patient/%s: reduced=%v but tags %v, address present %v", p.id, reduced, got.tags, hasAddress)
			}
		}
	}
	for _, typ := range patientTypes[1:] {
		var in, out *accRes
		for i, r := range all[typ] {
			if c.sees(r) && in == nil {
				in = &all[typ][i]
			}
			if !c.sees(r) && (out == nil || slices.Contains(r.security, "R")) {
				out = &all[typ][i]
			}
		}
		if in != nil {
			if r := e.fhir(t, c.token, "/"+in.key()); r.status != http.StatusOK {
				t.Errorf("read %s inside the view: %s", in.key(), r)
			}
		}
		if out != nil {
			if r := e.fhir(t, c.token, "/"+out.key()); r.status != http.StatusNotFound {
				t.Errorf("read %s outside the view: %d, want 404", out.key(), r.status)
			}
			if r := e.fhir(t, c.token, "/"+out.key()+"/_history/1"); r.status != http.StatusNotFound {
				t.Errorf("vread %s outside the view: %d, want 404", out.key(), r.status)
			}
			if r := e.fhir(t, c.token, "/"+out.key()+"/_history"); r.status != http.StatusNotFound {
				t.Errorf("history %s outside the view: %d, want 404", out.key(), r.status)
			}
		}
	}

	// $everything of every patient, paged.
	for _, p := range all["Patient"] {
		path := "/Patient/" + p.id + "/$everything?_count=37"
		if c.grants[p.id] == nil {
			if r := e.fhir(t, c.token, path); r.status != http.StatusNotFound {
				t.Errorf("$everything of Patient/%s outside the view: %d, want 404", p.id, r.status)
			}
			continue
		}
		got, _ := e.searchPages(t, c.token, path)
		var gotKeys []string
		for _, r := range got {
			if slices.Contains(patientTypes, r.typ) || r.typ == "ServiceRequest" {
				gotKeys = append(gotKeys, r.key())
			} else if r.patient != "" || r.typ == "Consent" || r.typ == "Provenance" {
				t.Errorf("$everything of Patient/%s returned %s, a type outside the view", p.id, r.key())
			}
		}
		sort.Strings(gotKeys)
		want := slices.Clone(byPatient[p.id])
		sort.Strings(want)
		if !slices.Equal(gotKeys, want) {
			t.Errorf("$everything of Patient/%s: %d resources, want %d\n got %v\nwant %v", p.id, len(gotKeys), len(want), gotKeys, want)
		}
	}

	// Bulk export holds exactly what the same token finds by search, the
	// Patient reduced as read serves it (docs/access.md).
	exported := exportAll(t, e, c.token, "/$export?_type="+strings.Join(patientTypes, ","))
	for _, typ := range patientTypes {
		var got []string
		for _, r := range exported[typ] {
			got = append(got, r.key())
			if typ == "Patient" {
				reduced := !slices.Contains(c.grants[r.id].classes, clsDemo)
				if reduced != slices.Contains(r.tags, "SUBSETTED") {
					t.Errorf("exported Patient/%s: reduced=%v but tags %v", r.id, reduced, r.tags)
				}
			}
		}
		sort.Strings(got)
		if w := keysOf(expected[typ]); !slices.Equal(got, w) {
			t.Errorf("%s export: %d resources, want %d\n got %v\nwant %v", typ, len(got), len(w), got, w)
		}
	}

	// A partner's referral Tasks leave the export as a read serves them:
	// with only the labels the partner clears, tagged SUBSETTED otherwise
	// (docs/design/security.md PRIV-19, BULK-10).
	if c.role == "partner" {
		tasks := exportAll(t, e, c.token, "/$export?_type=Task")
		for _, r := range tasks["Task"] {
			rd := e.fhir(t, c.token, "/Task/"+r.id)
			var m map[string]any
			if rd.status != http.StatusOK || json.Unmarshal(rd.body, &m) != nil {
				t.Errorf("read of exported Task/%s: %s", r.id, rd)
				continue
			}
			read := parseAccRes(t, m)
			if !slices.Equal(r.security, read.security) || !slices.Equal(r.tags, read.tags) {
				t.Errorf("exported Task/%s: security %v tags %v, read serves security %v tags %v",
					r.id, r.security, r.tags, read.security, read.tags)
			}
		}
	}

	// _include: the subjects of the visible Encounters.
	_, inc := e.searchPages(t, c.token, "/Encounter?_include=Encounter:subject&_count=50")
	wantInc := map[string]bool{}
	for _, r := range expected["Encounter"] {
		wantInc["Patient/"+r.patient] = true
	}
	// (pages repeat a subject: one include per page that references it)
	if g := slices.Compact(keysOf(inc)); len(g) != len(wantInc) || !allIn(g, wantInc) {
		t.Errorf("_include Encounter:subject: %v, want %v", g, wantInc)
	}
	// _revinclude: the visible Encounters and Conditions of each patient,
	// and nothing of one outside the view.
	for _, p := range all["Patient"] {
		_, inc := e.searchPages(t, c.token, "/Patient?_id="+p.id+"&_revinclude=Encounter:subject&_revinclude=Condition:subject")
		var want []string
		for _, r := range append(slices.Clone(expected["Encounter"]), expected["Condition"]...) {
			if r.patient == p.id {
				want = append(want, r.key())
			}
		}
		sort.Strings(want)
		if g := keysOf(inc); !slices.Equal(g, want) {
			t.Errorf("_revinclude of Patient/%s: %d, want %d", p.id, len(g), len(want))
		}
	}
}

func allIn(keys []string, set map[string]bool) bool {
	for _, k := range keys {
		if !set[k] {
			return false
		}
	}
	return true
}

func pad6(n int) string {
	s := "000000" + strconv.Itoa(n)
	return s[len(s)-6:]
}

// tokenClaims decodes an access token's payload (the signature is the
// server's business; the test reads the claims).
func tokenClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// ingestConsent re-ingests the demo consent record id with status, through
// the ingest API with the demo backend's token.
func ingestConsent(t *testing.T, e *smartEnv, id, status string) {
	t.Helper()
	raw, err := server.SynthRecords(server.DemoPatients, 1, server.DemoStart)
	if err != nil {
		t.Fatal(err)
	}
	var rec []byte
	for _, r := range raw {
		var m map[string]any
		if err := json.Unmarshal(r, &m); err != nil {
			t.Fatal(err)
		}
		if m["kind"] == "consent" && m["id"] == id {
			m["status"] = status
			rec, _ = json.Marshal(m)
		}
	}
	if rec == nil {
		t.Fatalf("no synthetic consent %s", id)
	}
	ingestRecord(t, e, rec)
}

// ingestRecord ingests one clinic record through the ingest API with the
// demo backend's token.
func ingestRecord(t *testing.T, e *smartEnv, rec []byte) {
	t.Helper()
	tok := strings.TrimSpace(e.cli(t, "token", "--client", "demo-backend", "--key", filepath.Join(e.dir, "demo-backend.key.pem"),
		"--scope", "system/ClinicRecord.write", "--token-url", e.issuer+"/token"))
	req, err := http.NewRequest(http.MethodPost, e.base+"/internal/v1/records", strings.NewReader(string(rec)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+tok)
	if r := smartDo(t, noRedirect, req); r.status >= 300 || !strings.Contains(string(r.body), "updated") {
		t.Fatalf("ingest %s: %s", rec, r)
	}
}

// TestOutsideViewRevocationAcrossReplicas: two replicas on one PostgreSQL
// schema and one Redis; a partner reads a patient through B (filling B's
// shared cache), the consent is re-ingested as inactive through A, and B's
// very next request answers 404 (docs/design/security.md PRIV-13).
func TestOutsideViewRevocationAcrossReplicas(t *testing.T) {
	rs := startReplicas(t)
	a, b := rs.a, rs.b
	raw, err := server.SynthRecords(1, 1, server.DemoStart)
	if err != nil {
		t.Fatal(err)
	}
	records := func(consentStatus string) []byte {
		var out []string
		for _, r := range raw {
			var m map[string]any
			if err := json.Unmarshal(r, &m); err != nil {
				t.Fatal(err)
			}
			if m["kind"] == "consent" && m["id"] == "consent-000001-partner" {
				m["status"] = consentStatus
				r, _ = json.Marshal(m)
			}
			out = append(out, string(r))
		}
		return []byte(strings.Join(out, "\n") + "\n")
	}
	ingest := func(p *proc, status string) {
		t.Helper()
		tok := rs.backendToken(t, p, "system/ClinicRecord.write")
		if r := p.do(t, http.MethodPost, "/internal/v1/records", tok, "application/x-ndjson", records(status)); r.status != http.StatusOK {
			t.Fatalf("ingest at %s: %s", p.name, r)
		}
	}
	ingest(a, "active")

	// The partner client, registered in the shared registry.
	keyFile, jwksFile := backendKeyFiles(t, "replica-riverbend")
	cliEnv(t, rs.vars, "clients", "add", "--id", "replica-riverbend", "--kind", "backend", "--jwks-file", jwksFile,
		"--scope", "system/*.rs", "--organization", synth.OrgPartnerRiverbend, "--role", "partner")
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	bk, err := auth.ParseBackendKey("replica-riverbend", pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := bk.Assertion(rs.env.issuer + "/token")
	if err != nil {
		t.Fatal(err)
	}
	tr := a.form(t, "/auth/token", rs.assertionForm(t, assertion, "system/*.rs"))
	if tr.status != http.StatusOK {
		t.Fatalf("partner token at A: %s", tr)
	}
	tok := tr.json(t)["access_token"].(string)

	count := func(p *proc) int {
		t.Helper()
		r := p.do(t, http.MethodGet, "/fhir/Observation?_summary=count", tok, "", nil)
		var bd struct {
			Total *int `json:"total"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &bd) != nil || bd.Total == nil {
			t.Fatalf("count at %s: %s", p.name, r)
		}
		return *bd.Total
	}
	for range 2 { // the second answers may come from the shared cache
		if r := b.do(t, http.MethodGet, "/fhir/Patient/"+rs.patient, tok, "", nil); r.status != http.StatusOK {
			t.Fatalf("partner read at B before: %s", r)
		}
		if n := count(b); n == 0 {
			t.Fatal("partner sees no Observation at B before the revocation")
		}
	}

	ingest(a, "inactive")
	if r := b.do(t, http.MethodGet, "/fhir/Patient/"+rs.patient, tok, "", nil); r.status != http.StatusNotFound {
		t.Errorf("partner read at B after the consent went inactive at A: %d, want 404", r.status)
	}
	if n := count(b); n != 0 {
		t.Errorf("partner Observation count at B after the revocation: %d, want 0", n)
	}
	if r := a.do(t, http.MethodGet, "/fhir/Patient/"+rs.patient+"/$everything", tok, "", nil); r.status != http.StatusNotFound {
		t.Errorf("partner $everything at A after the revocation: %d, want 404", r.status)
	}
}

// TestProvenanceTargetsSubsetted: an EHR client that may read only vital
// signs among the Observations reads every Provenance with the targets it
// may not read removed and the SUBSETTED tag (docs/design/security.md
// PRIV-16); the unrestricted client gets them whole.
func TestProvenanceTargetsSubsetted(t *testing.T) {
	e := startSMART(t)
	keyFile, jwksFile := backendKeyFiles(t, "ehr-vitals")
	scope := "system/Provenance.rs system/Observation.rs?category=vital-signs"
	e.cli(t, "clients", "add", "--id", "ehr-vitals", "--kind", "backend", "--jwks-file", jwksFile, "--scope", scope)
	tok := strings.TrimSpace(e.cli(t, "token", "--client", "ehr-vitals", "--key", keyFile, "--scope", scope,
		"--token-url", e.issuer+"/token"))

	// Which targets it may read, from the unrestricted answers.
	vitals := map[string]bool{}
	obs, _ := e.searchPages(t, e.system, "/Observation?_count=500")
	for _, r := range obs {
		if slices.Contains(r.categories, "vital-signs") {
			vitals[r.key()] = true
		}
	}
	full, _ := e.searchPages(t, e.system, "/Provenance?_count=200")
	fullByID := map[string]accRes{}
	for _, p := range full {
		fullByID[p.id] = p
		if slices.Contains(p.tags, "SUBSETTED") {
			t.Fatalf("unrestricted Provenance/%s is tagged SUBSETTED", p.id)
		}
	}
	targetsOf := func(r accRes) []string {
		var out []string
		list, _ := r.raw["target"].([]any)
		for _, x := range list {
			ref, _ := x.(map[string]any)["reference"].(string)
			out = append(out, ref)
		}
		return out
	}
	got, _ := e.searchPages(t, tok, "/Provenance?_count=200")
	if len(got) != len(full) || len(full) == 0 {
		t.Fatalf("%d Provenances, want %d", len(got), len(full))
	}
	subsetted := 0
	for _, p := range got {
		var want []string
		for _, ref := range targetsOf(fullByID[p.id]) {
			if vitals[ref] {
				want = append(want, ref)
			}
		}
		gotTargets := targetsOf(p)
		whole := len(want) == len(targetsOf(fullByID[p.id]))
		switch {
		case len(want) == 0:
			if len(gotTargets) != 1 || gotTargets[0] != "" {
				t.Errorf("Provenance/%s: targets %v, want only a withheld one", p.id, gotTargets)
			}
		case !slices.Equal(gotTargets, want):
			t.Errorf("Provenance/%s: targets %v, want %v", p.id, gotTargets, want)
		}
		if whole == slices.Contains(p.tags, "SUBSETTED") {
			t.Errorf("Provenance/%s: whole %v, tags %v", p.id, whole, p.tags)
		}
		if !whole {
			subsetted++
			if r := e.fhir(t, tok, "/Provenance/"+p.id); r.status != http.StatusOK ||
				!slices.Equal(targetsOf(parseAccRes(t, r.json(t))), gotTargets) {
				t.Errorf("read Provenance/%s differs from the search: %s", p.id, r)
			}
		}
	}
	if subsetted == 0 {
		t.Fatal("no Provenance needed subsetting: the test proves nothing")
	}
}

// exportAll runs a Bulk Data export of path with token on e to the end and
// returns the exported resources by type.
func exportAll(t *testing.T, e *smartEnv, token, path string) map[string][]accRes {
	t.Helper()
	do := func(target string, hdr ...string) smartResp {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/fhir+json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return smartDo(t, noRedirect, req)
	}
	kick := do(e.fhirBase+path, "Prefer", "respond-async")
	if kick.status != http.StatusAccepted {
		t.Fatalf("export kick-off %s: %s", path, kick)
	}
	status := kick.header.Get("Content-Location")
	var m struct {
		Output []struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"output"`
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		r := do(status)
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &m); err != nil {
				t.Fatal(err)
			}
			break
		}
		if r.status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("export status: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := map[string][]accRes{}
	for _, o := range m.Output {
		r := do(o.URL)
		if r.status != http.StatusOK {
			t.Fatalf("export file %s: %s", o.Type, r)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(r.body), []byte("\n")) {
			var v map[string]any
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("export file %s: %v", o.Type, err)
			}
			out[o.Type] = append(out[o.Type], parseAccRes(t, v))
		}
	}
	return out
}
