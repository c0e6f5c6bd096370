package course

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// maxPages bounds how many search pages the app follows for one search
// (500 per page: far more than one course holds).
const maxPages = 20

var (
	// errExpired: the token is no longer accepted (401): sign in again.
	errExpired = errors.New("course: the access token is no longer accepted")
	// errNotShared: the gateway refused the read (403): the token may not
	// see that data, and the page says so instead of showing it.
	errNotShared = errors.New("course: not shared with you")
	// errAbsent: the gateway answered 404 or 422 (an operation with no
	// answer for this course, e.g. $pa-status before any payer answer).
	// Only optional sections treat it as "nothing to show".
	errAbsent = errors.New("course: no such record")
)

// reader reads the FHIR API with the user's token, in process.
type reader struct {
	app   *App
	orig  *http.Request
	token string
}

// get GETs path (relative to the FHIR base, with its query) and decodes
// the JSON answer into v.
func (r *reader) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.app.fhirBase()+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Accept", "application/fhir+json")
	status, body := r.app.roundTrip(r.orig, req)
	switch status {
	case http.StatusOK:
		return json.Unmarshal(body, v)
	case http.StatusUnauthorized:
		return errExpired
	case http.StatusForbidden:
		return errNotShared
	case http.StatusNotFound, http.StatusUnprocessableEntity:
		return errAbsent
	default:
		// The type and status only: the path may hold ids, not PHI, but the
		// error stays small (docs/design/security.md PRIV-4).
		return fmt.Errorf("course: FHIR read of %s answered %d", strings.SplitN(path, "?", 2)[0], status)
	}
}

type bundle struct {
	Link  []struct{ Relation, URL string } `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

// withheldOutcome reads a search.mode=outcome entry: whether it has an
// issue of type suppressed (the gateway withheld part of the answer,
// docs/design/security.md PRIV-17).
func withheldOutcome(raw json.RawMessage) (bool, error) {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(raw, &oo); err != nil {
		return false, err
	}
	for _, i := range oo.Issue {
		if oo.ResourceType == "OperationOutcome" && i.Code == "suppressed" {
			return true, nil
		}
	}
	return false, nil
}

// search runs a search and follows its next links; it returns every
// resource of the matched and included entries. A search the gateway
// marks as withheld (PRIV-17) answers errNotShared and nothing of it: a
// section must not show part of a class as if it were all of it
// (docs/design/security.md VIEW-8).
func (r *reader) search(ctx context.Context, typ string, q url.Values) ([]json.RawMessage, error) {
	out, withheld, err := r.searchMarked(ctx, typ, q)
	if err != nil {
		return nil, err
	}
	if withheld {
		return nil, errNotShared
	}
	return out, nil
}

// searchMarked is search that also reports whether the gateway marked the
// answer as withheld in part, for the one section that shows what it is
// given with a note (the outcome trends, VIEW-8).
func (r *reader) searchMarked(ctx context.Context, typ string, q url.Values) ([]json.RawMessage, bool, error) {
	q.Set("_count", "500")
	path := "/" + typ + "?" + q.Encode()
	var out []json.RawMessage
	withheld := false
	for range maxPages {
		var b bundle
		if err := r.get(ctx, path, &b); err != nil {
			return nil, false, err
		}
		for _, e := range b.Entry {
			if e.Search.Mode == "outcome" {
				w, err := withheldOutcome(e.Resource)
				if err != nil {
					return nil, false, err
				}
				withheld = withheld || w
				continue
			}
			out = append(out, e.Resource)
		}
		next := ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			return out, withheld, nil
		}
		// The next link is absolute under the FHIR base; anything else is
		// not followed.
		rest, ok := strings.CutPrefix(next, r.app.fhirBase())
		if !ok {
			return nil, false, errors.New("course: a next link outside the FHIR base")
		}
		path = rest
	}
	return out, withheld, nil
}
