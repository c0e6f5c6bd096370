package fhir

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

// Cohort Groups for Group-level Bulk Data export (docs/bulk-export.md):
//
//   - payer-{Organization id}: the beneficiaries of active Coverage whose
//     payor is the organization (a payer's members);
//   - partner-{Organization id}: the patients of active Consents that permit
//     the organization (a partner clinic's consented patients);
//   - location-{Location id}: the patients of Encounters at the location.
//
// They are derived from the stored records when asked for, never stored:
// a Group is true as soon as the record that changes it is stored, costs
// ingest nothing, and a Group export takes the membership at its own
// transaction time from the same snapshot as the data.

// Group kinds.
const (
	groupPayer    = "payer"
	groupPartner  = "partner"
	groupLocation = "location"
)

// groupSource is where a kind of Group finds its members: resources of Type
// referencing the target through Param.
var groupSource = map[string]struct{ typ, param, target string }{
	groupPayer:    {"Coverage", "payor", "Organization"},
	groupPartner:  {"Consent", "actor", "Organization"},
	groupLocation: {"Encounter", "location", "Location"},
}

// parseGroupID splits a derived Group id into its kind and target id.
func parseGroupID(id string) (kind, target string, ok bool) {
	kind, target, ok = strings.Cut(id, "-")
	if _, known := groupSource[kind]; !ok || !known || !validID(target) {
		return "", "", false
	}
	return kind, target, true
}

// groupMembers are the patients of Group id at a time, sorted; an unknown
// group (or one whose organization or location does not exist then) is
// 404.
func (s *Server) groupMembers(ctx context.Context, id string, at time.Time) ([]string, error) {
	kind, target, ok := parseGroupID(id)
	if !ok {
		return nil, errUnknownGroup
	}
	src := groupSource[kind]
	found := false
	err := s.export.Store.Export(ctx, store.ExportQuery{Type: src.target, At: at, IDs: []string{target}, Count: 1, NoBody: true},
		func(int64, *store.Resource) error {
			found = true
			return nil
		})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errUnknownGroup
	}
	ref := src.target + "/" + target
	q := store.ExportQuery{Type: src.typ, At: at, Filters: &store.Access{Terms: []store.AccessTerm{{
		Types:   []string{src.typ},
		Clauses: []store.Clause{{Param: src.param, Kind: store.KindReference, Values: []store.Value{{Str: ref}}}},
	}}}}
	seen := map[string]bool{}
	err = s.walk(ctx, q, func(_ int64, r *store.Resource) error {
		if r.Patient != "" && !seen[r.Patient] && groupMember(kind, r.Body, ref) {
			seen[r.Patient] = true
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return sortedKeys(seen), nil
}

var errUnknownGroup = ErrNotFound.WithDetails("unknown group")

// groupMember checks what the index cannot: an active Coverage; an active
// Consent whose provision permits (a deny naming the partner excludes).
func groupMember(kind string, body []byte, ref string) bool {
	var r struct {
		Status    string `json:"status"`
		Provision *struct {
			Type string `json:"type"`
		} `json:"provision"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return false
	}
	switch kind {
	case groupPayer:
		return r.Status == "active"
	case groupPartner:
		return r.Status == "active" && r.Provision != nil && r.Provision.Type == "permit"
	}
	return true
}

// groupBody renders a derived Group with the members the caller may see.
func groupBody(id string, members []string, at time.Time) []byte {
	kind, target, _ := parseGroupID(id)
	src := groupSource[kind]
	names := map[string]string{groupPayer: "Members covered by payer ", groupPartner: "Patients consenting to share with partner ",
		groupLocation: "Patients treated at location "}
	var b strings.Builder
	b.WriteString(`{"resourceType":"Group","id":"` + id + `","meta":{"lastUpdated":"` + at.UTC().Format(store.LastUpdatedFormat) + `"},`)
	b.WriteString(`"type":"person","actual":true,"name":"` + names[kind] + src.target + "/" + target + `",`)
	b.WriteString(`"quantity":` + strconv.Itoa(len(members)))
	if src.target == "Organization" {
		b.WriteString(`,"managingEntity":{"reference":"Organization/` + target + `"}`)
	}
	if len(members) > 0 {
		b.WriteString(`,"member":[`)
		for i, p := range members {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"entity":{"reference":"Patient/` + p + `"}}`)
		}
		b.WriteString(`]`)
	}
	b.WriteString(`}`)
	return []byte(b.String())
}

// visibleMembers keeps the members whose Patient the caller could find by
// search (searchAccess: scopes, granular filters and an outside
// organization's view; docs/design/security.md PRIV-3, PRIV-12): a Group
// never names a patient its reader could not find.
func (s *Server) visibleMembers(ctx context.Context, members []string, at time.Time) ([]string, error) {
	if len(members) == 0 {
		return nil, nil
	}
	a, err := searchAccess(ctx, "Patient")
	if err != nil {
		return nil, err
	}
	var out []string
	err = s.walk(ctx, store.ExportQuery{Type: "Patient", At: at, IDs: members, Access: a, NoBody: true}, func(_ int64, r *store.Resource) error {
		out = append(out, r.ID)
		return nil
	}, nil)
	slices.Sort(out)
	return out, err
}

// groupRead serves GET [base]/Group/[id].
func (s *Server) groupRead(c echo.Context) error {
	id := c.Param("id")
	if _, err := s.authorize(c, access{interaction: auth.InteractionRead, typ: "Group", id: id}); err != nil {
		return err
	}
	ctx := c.Request().Context()
	at := s.clock.Now()
	members, err := s.groupMembers(ctx, id, at)
	if err != nil {
		return err
	}
	if members, err = s.visibleMembers(ctx, members, at); err != nil {
		return err
	}
	ct, _ := responseType(c)
	return c.Blob(http.StatusOK, ct, groupBody(id, members, at))
}

// groupSearch serves GET [base]/Group (with _id or no parameters): every
// derived Group with at least one member.
func (s *Server) groupSearch(c echo.Context) error {
	if _, err := s.authorize(c, access{interaction: auth.InteractionSearch, typ: "Group"}); err != nil {
		return err
	}
	values, err := queryParams(c)
	if err != nil {
		return err
	}
	var ids []string
	for name, vs := range values {
		switch name {
		case "_id":
			for _, v := range vs {
				ids = append(ids, strings.Split(v, ",")...)
			}
		case "_format":
		default:
			if !lenient(c) {
				return ErrInvalidSearch.WithExpression(name)
			}
		}
	}
	ctx := c.Request().Context()
	at := s.clock.Now()
	if ids == nil {
		var err error
		if ids, err = s.groupIDs(ctx, at); err != nil {
			return err
		}
	}
	var rs []store.Resource
	for _, id := range ids {
		members, err := s.groupMembers(ctx, id, at)
		if err != nil {
			continue // an unknown id matches nothing
		}
		if members, err = s.visibleMembers(ctx, members, at); err != nil {
			return err
		}
		if len(members) == 0 {
			continue
		}
		rs = append(rs, store.Resource{Type: "Group", ID: id, LastUpdated: at, Body: groupBody(id, members, at)})
	}
	size := 0
	for i := range rs {
		size += s.searchEntrySize(&rs[i])
	}
	b := s.newBundle(c, bundleSearchset, len(rs), nil, size)
	for i := range rs {
		b.searchEntry(&rs[i], nil, modeMatch)
	}
	return b.write(c)
}

// groupIDs are the ids of the derived Groups that may have members: each
// payor, consented actor organization and encounter location referenced.
func (s *Server) groupIDs(ctx context.Context, at time.Time) ([]string, error) {
	seen := map[string]bool{}
	for _, kind := range []string{groupLocation, groupPartner, groupPayer} {
		src := groupSource[kind]
		prefix := []byte(`"reference":"` + src.target + `/`)
		err := s.walk(ctx, store.ExportQuery{Type: src.typ, At: at}, func(_ int64, r *store.Resource) error {
			for _, m := range refPattern.FindAllSubmatch(r.Body, -1) {
				if string(m[1]) == src.target && strings.Contains(string(r.Body), string(prefix)) {
					seen[kind+"-"+string(m[2])] = true
				}
			}
			return nil
		}, nil)
		if err != nil {
			return nil, err
		}
	}
	return sortedKeys(seen), nil
}
