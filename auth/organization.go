package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// The organization types a role's binding requires (docs/access.md): the
// clinic's records type a payer as organization-type "pay" and a partner
// clinic with the local code "org-partner-clinic" beside "prov"
// (docs/clinic-records.md, docs/fhir-mapping.md).
const (
	orgTypeSystem     = "http://terminology.hl7.org/CodeSystem/organization-type"
	orgTypePayer      = "pay"
	orgPartnerCode    = "org-partner-clinic"
	localSystemSuffix = "/CodeSystem/ketabridge"
)

// ResourceReader reads one stored resource (store.Store.Read).
type ResourceReader interface {
	Read(ctx context.Context, typ, id string) (store.Resource, error)
}

// CheckOrganization checks that the stored Organization id exists and may
// be bound to a client of role (docs/design/security.md PRIV-11): any
// organization for ehr, one typed payer for payer, one typed partner
// clinic for partner. The error is a *FieldError naming the problem, for
// the administrator registering the client.
func CheckOrganization(ctx context.Context, rd ResourceReader, id string, role Role) error {
	if !ValidID(id) {
		return fieldErr("organization", "must be an Organization id")
	}
	r, err := rd.Read(ctx, "Organization", id)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone):
		return fieldErr("organization", "Organization/%s is not in the clinic's records", id)
	case err != nil:
		return fmt.Errorf("read the organization: %w", err)
	}
	var org struct {
		Type []struct {
			Coding []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"coding"`
		} `json:"type"`
	}
	if err := json.Unmarshal(r.Body, &org); err != nil {
		return fmt.Errorf("read the organization: %w", err)
	}
	var kinds []string
	for _, t := range org.Type {
		for _, c := range t.Coding {
			switch {
			case c.System == orgTypeSystem && c.Code == orgTypePayer:
				kinds = append(kinds, string(RolePayer))
			case strings.HasSuffix(c.System, localSystemSuffix) && c.Code == orgPartnerCode:
				kinds = append(kinds, string(RolePartner))
			}
		}
	}
	if role == RoleEHR || slices.Contains(kinds, string(role)) {
		return nil
	}
	what := "neither a payer nor a partner clinic"
	if len(kinds) > 0 {
		what = "a " + kinds[0]
	}
	return fieldErr("organization", "Organization/%s is %s: the %s role needs a %s organization", id, what, role, role)
}
