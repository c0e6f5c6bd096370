package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/server"
)

// TestPartnerLoginEndToEnd: a login bound to a partner clinic
// (--partner-logins; docs/design/security.md PRIV-18) signs in to an
// ordinary public app and gets the partner's view, as the partner's backend
// client would: the picker lists only the patients whose consent names the
// partner, the tokens (and their refreshes) carry the partner role and
// organization, and a search of a class the consent leaves out finds
// nothing and is marked withheld (PRIV-17). A login bound to an
// organization that is not a partner clinic gets no token.
func TestPartnerLoginEndToEnd(t *testing.T) {
	northgate := mapping.ResourceID(clinic.KindOrganization, synth.OrgPartnerNorthgate)
	payer := mapping.ResourceID(clinic.KindOrganization, synth.OrgPayerBlueHeron)
	// One binding by the clinic's record id, one by the FHIR reference.
	e := startSMART(t, "--partner-logins", "dr-north="+synth.OrgPartnerNorthgate+" dr-payer=Organization/"+payer)
	const redirect = "http://127.0.0.1:47011/callback"
	scope := "openid fhirUser launch/patient offline_access patient/*.rs"
	e.addPublicClient(t, "partner-app", redirect, "", scope+" user/*.rs")
	e.addUser(t, "dr-north", "clinician", "Practitioner/"+e.practitioner)
	e.addUser(t, "dr-payer", "clinician", "Practitioner/"+e.practitioner)

	// The demo patients Northgate's consents open (docs/access.md; plan n%12
	// of mapping/synth), and the one whose consent leaves out vital signs
	// and assessments (plan 7: demographics, medications, sessions).
	var want []string
	var noVitals string
	for n := range server.DemoPatients {
		id := mapping.ResourceID(clinic.KindPatient, "pat-"+pad6(n+1))
		if _, _, g := demoGrants(n % 12); g != nil {
			want = append(want, id)
			if !slices.Contains(g.classes, clsVitals) && slices.Contains(g.classes, clsSess) {
				noVitals = id
			}
		}
	}
	slices.Sort(want)
	if len(want) == 0 || noVitals == "" {
		t.Fatalf("demo data: Northgate sees %v, none without vitals (%q)", want, noVitals)
	}

	a := e.app("partner-app", redirect, strings.Fields(scope)...)
	var listed []string
	pick := func(t *testing.T, p smartPage) url.Values {
		listed = slices.Sorted(slices.Values(p.patients))
		v := approveAll(t, p)
		v.Set("patient", noVitals)
		return v
	}
	tok := a.exchange(t, a.code(t, e.newBrowser(t).authorize(t, a.authURL(e), "dr-north", pick)))
	if !slices.Equal(listed, want) {
		t.Errorf("the partner login's picker lists %v, want the patients of its view %v", listed, want)
	}
	claims := tokenClaims(t, tok.AccessToken)
	if claims["role"] != "partner" || claims["organization"] != "Organization/"+northgate || tok.Extra("patient") != noVitals {
		t.Fatalf("partner login's token: role %v organization %v patient %v", claims["role"], claims["organization"], tok.Extra("patient"))
	}

	// The view: sessions shared, vital signs withheld and marked so.
	if encs := e.search(t, tok.AccessToken, "/Encounter?patient="+noVitals); len(encs) == 0 {
		t.Error("the partner login sees no Encounter of a patient whose consent shares sessions")
	}
	r := e.fhir(t, tok.AccessToken, "/Observation?patient="+noVitals+"&category=vital-signs")
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string
				Issue        []struct{ Code string }
			}
			Search struct{ Mode string }
		}
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &b) != nil || len(b.Entry) != 1 ||
		b.Entry[0].Search.Mode != "outcome" || len(b.Entry[0].Resource.Issue) != 1 || b.Entry[0].Resource.Issue[0].Code != "suppressed" {
		t.Errorf("vital signs the consent leaves out: want no match and the suppressed outcome, got %s", r)
	}
	// A patient outside the view is not found.
	for _, p := range e.ids(t, e.system, "/Patient?_count=50") {
		if !slices.Contains(want, p) {
			if r := e.fhir(t, tok.AccessToken, "/Patient/"+p); r.status != http.StatusNotFound {
				t.Errorf("a patient outside the partner's view: %d, want 404", r.status)
			}
			break
		}
	}

	// A refresh keeps the binding.
	rr := e.tokenPost(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"partner-app"}})
	var refreshed struct {
		AccessToken string `json:"access_token"`
	}
	if rr.status != http.StatusOK || json.Unmarshal(rr.body, &refreshed) != nil {
		t.Fatalf("refresh: %s", rr)
	}
	if c := tokenClaims(t, refreshed.AccessToken); c["role"] != "partner" || c["organization"] != "Organization/"+northgate {
		t.Errorf("refreshed token: role %v organization %v", c["role"], c["organization"])
	}

	// A login bound to a payer, not a partner clinic: no token (asked
	// without a patient picker, whose list would be empty).
	bad := e.app("partner-app", redirect, "openid", "fhirUser", "user/Patient.rs")
	code := bad.code(t, e.newBrowser(t).authorize(t, bad.authURL(e), "dr-payer", approveAll))
	wantOAuthError(t, e.tokenPost(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"client_id": {"partner-app"}, "code_verifier": {bad.verifier}}), []int{http.StatusBadRequest}, "invalid_grant")
}
