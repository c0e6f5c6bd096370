package auth

import (
	"context"
	"errors"
	"slices"

	"github.com/ketabridge/ketabridge/store"
)

// Partner logins (docs/design/security.md PRIV-18; docs/access.md "A partner
// clinic's clinicians"): a login the deployment binds to a partner clinic's
// Organization (--partner-logins) acts for that organization whatever app
// it signs in to. Its access tokens carry the partner role and the
// organization, exactly as a partner backend client's do, so the FHIR API
// narrows every read to the partner's view and the patients' consents; and
// the patient pickers (the launcher, the consent page) list and accept only
// the patients that view shows. The binding is read on every token issue
// (authorization code and refresh), so removing it takes effect at the next
// refresh, and a login bound to an organization that is not a partner
// clinic in the clinic's records gets no token (fail closed).

// errPartnerBinding refuses a token for a login whose binding is not to a
// partner clinic in the clinic's records.
var errPartnerBinding = errors.New("auth: the login's partner organization is not a partner clinic in the clinic's records")

// PartnerOrganization is the Organization id the login id is bound to
// ("" when none).
func (o Options) PartnerOrganization(id string) string { return o.PartnerLogins[id] }

// partnerBinding is the organization claim and role of the tokens of user
// u: the partner role and its organization for a bound login (checked
// against the clinic's records), else none.
func (s *Server) partnerBinding(ctx context.Context, u store.User) (org string, role Role, err error) {
	id := s.opts.PartnerOrganization(u.ID)
	if id == "" {
		return "", "", nil
	}
	if s.opts.Records == nil {
		return "", "", errPartnerBinding
	}
	if err := CheckOrganization(ctx, s.opts.Records, id, RolePartner); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return "", "", errPartnerBinding
		}
		return "", "", err
	}
	return orgRef(id), RolePartner, nil
}

// patientsFor is the patient directory the pickers use for user u: the
// whole directory for the clinic's own logins, only the patients of the
// partner's view for a partner login.
func (s *Server) patientsFor(ctx context.Context, u store.User) (PatientDirectory, error) {
	if s.opts.Patients == nil {
		return nil, errNoPatientDirectory
	}
	org := s.opts.PartnerOrganization(u.ID)
	if org == "" {
		return s.opts.Patients, nil
	}
	if s.opts.Disclosed == nil {
		return nil, errPartnerBinding
	}
	ids, err := s.opts.Disclosed(ctx, RolePartner, org)
	if err != nil {
		return nil, err
	}
	return viewDirectory{inner: s.opts.Patients, visible: ids}, nil
}

// viewDirectory is a PatientDirectory narrowed to the patients of an
// outside view.
type viewDirectory struct {
	inner   PatientDirectory
	visible []string
}

// viewPickerScan is how many patients a narrowed picker reads before it
// filters (the view's patients are a few of the clinic's).
const viewPickerScan = 2000

func (d viewDirectory) FindPatients(ctx context.Context, query string, limit int) ([]PatientSummary, error) {
	if len(d.visible) == 0 {
		return nil, nil
	}
	all, err := d.inner.FindPatients(ctx, query, max(limit, viewPickerScan))
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(all, func(p PatientSummary) bool { return !slices.Contains(d.visible, p.ID) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (d viewDirectory) PatientExists(ctx context.Context, id string) (bool, error) {
	if !slices.Contains(d.visible, id) {
		return false, nil
	}
	return d.inner.PatientExists(ctx, id)
}
