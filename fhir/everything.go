package fhir

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// everything serves GET [base]/Patient/[id]/$everything
// (operation-patient-everything.html) with _since, _type, _count and
// _offset: a searchset Bundle of the patient's compartment, Patient first,
// paged, total always present.
func (s *Server) everything(c echo.Context) error {
	_, id, err := s.target(c)
	if err != nil {
		return err
	}
	values := c.QueryParams()
	count, offset, warnings, err := pageParams(values, lenient(c), "_since", "_type")
	if err != nil {
		return err
	}
	canon := url.Values{}
	eq := store.EverythingQuery{Patient: id, Count: count, Offset: offset}
	if v := values.Get("_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return ErrInvalid.WithDetails("_since must be a FHIR instant").WithExpression("_since")
		}
		eq.Since = t
		canon.Set("_since", t.UTC().Format(store.LastUpdatedFormat))
	}
	for _, v := range values["_type"] {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !s.types[t] {
				return ErrInvalid.WithDetails("_type names an unsupported resource type").WithExpression("_type")
			}
			if !slices.Contains(eq.Types, t) {
				eq.Types = append(eq.Types, t)
			}
		}
	}
	if len(eq.Types) > 0 {
		canon.Set("_type", strings.Join(eq.Types, ","))
	}

	d, err := s.authorize(c, Access{Interaction: InteractionEverything, Type: "Patient", ID: id})
	if err != nil {
		return err
	}
	if !d.allows(id) {
		return ErrForbidden
	}
	ctx := c.Request().Context()
	if _, err := s.store.Read(ctx, "Patient", id); err != nil {
		return err
	}
	rs, total, err := s.store.Everything(ctx, eq)
	if err != nil {
		return err
	}
	// Keep only what the Decision allows (the compartment is the store's job;
	// this is the second line of defence).
	rs = slices.DeleteFunc(rs, func(r store.Resource) bool { return r.Patient != id && !d.allows(r.Patient) })
	links := pageLinks(s.base+"/Patient/"+id+"/$everything", canon, count, offset, offset+len(rs) < total)
	size := 0
	for i := range rs {
		size += len(rs[i].Body) + 128
	}
	b := s.newBundle(bundleSearchset, total, links, size)
	for i := range rs {
		if rs[i].Deleted || len(rs[i].Body) == 0 {
			continue
		}
		b.searchEntry(&rs[i], nil, modeMatch)
	}
	b.outcomeEntry(warnings)
	return writeBundle(c, b.finish())
}
