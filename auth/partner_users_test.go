package auth

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// orgRecords serves stored Organizations by id.
type orgRecords map[string]string

func (o orgRecords) Read(_ context.Context, typ, id string) (store.Resource, error) {
	body, ok := o[id]
	if typ != "Organization" || !ok {
		return store.Resource{}, store.ErrNotFound
	}
	return store.Resource{Type: typ, ID: id, Body: []byte(body)}, nil
}

const (
	partnerOrgJSON = `{"resourceType":"Organization","id":"north","type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/organization-type","code":"prov"},{"system":"http://ketabridge.org/fhir/CodeSystem/ketabridge","code":"org-partner-clinic"}]}]}`
	payerOrgJSON   = `{"resourceType":"Organization","id":"blue","type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/organization-type","code":"pay"}]}]}`
)

// TestPartnerBinding: docs/design/security.md PRIV-18. A login bound to a
// partner clinic gets the partner role and organization; the clinic's own
// logins get none; a binding to an organization that is not a partner
// clinic, or is not in the records, refuses (fail closed). The pickers of a
// bound login offer only the patients of the partner's view.
func TestPartnerBinding(t *testing.T) {
	patients := azPatients{list: []PatientSummary{{ID: "p1", Name: "Ann"}, {ID: "p2", Name: "Bea"}, {ID: "p3", Name: "Bob"}}}
	var askedRole Role
	var askedOrg string
	s := New(Options{
		PartnerLogins: map[string]string{"dr-north": "north", "dr-blue": "blue", "dr-gone": "gone"},
		Records:       orgRecords{"north": partnerOrgJSON, "blue": payerOrgJSON},
		Patients:      patients,
		Disclosed: func(_ context.Context, role Role, org string) ([]string, error) {
			askedRole, askedOrg = role, org
			return []string{"p2", "p3", "p-none"}, nil
		},
	})
	ctx := context.Background()

	org, role, err := s.partnerBinding(ctx, store.User{ID: "dr-north"})
	if err != nil || org != "Organization/north" || role != RolePartner {
		t.Errorf("bound login: %q %q %v", org, role, err)
	}
	if org, role, err := s.partnerBinding(ctx, store.User{ID: "doc"}); err != nil || org != "" || role != "" {
		t.Errorf("clinic login: %q %q %v", org, role, err)
	}
	for _, id := range []string{"dr-blue", "dr-gone"} {
		if _, _, err := s.partnerBinding(ctx, store.User{ID: id}); !errors.Is(err, errPartnerBinding) {
			t.Errorf("%s: %v, want errPartnerBinding", id, err)
		}
	}

	dir, err := s.patientsFor(ctx, store.User{ID: "dr-north"})
	if err != nil {
		t.Fatal(err)
	}
	if askedRole != RolePartner || askedOrg != "north" {
		t.Errorf("the view asked for %q %q", askedRole, askedOrg)
	}
	found, _ := dir.FindPatients(ctx, "", 10)
	var ids []string
	for _, f := range found {
		ids = append(ids, f.ID)
	}
	if !slices.Equal(ids, []string{"p2", "p3"}) {
		t.Errorf("the bound login's picker lists %v, want p2 p3", ids)
	}
	if one, _ := dir.FindPatients(ctx, "", 1); len(one) != 1 || one[0].ID != "p2" {
		t.Errorf("limit 1: %v", one)
	}
	for id, want := range map[string]bool{"p1": false, "p2": true, "p-none": false} {
		if got, err := dir.PatientExists(ctx, id); err != nil || got != want {
			t.Errorf("PatientExists(%s) = %v %v, want %v", id, got, err, want)
		}
	}
	if d, err := s.patientsFor(ctx, store.User{ID: "doc"}); err != nil || d == nil {
		t.Errorf("the clinic's login: %v", err)
	} else if all, _ := d.FindPatients(ctx, "", 10); len(all) != 3 {
		t.Errorf("the clinic's login's picker lists %d patients, want 3", len(all))
	}

	// Without the consent decision wired, a bound login gets no picker.
	s2 := New(Options{PartnerLogins: map[string]string{"dr-north": "north"}, Patients: patients})
	if _, err := s2.patientsFor(ctx, store.User{ID: "dr-north"}); !errors.Is(err, errPartnerBinding) {
		t.Errorf("no Disclosed: %v", err)
	}
}
