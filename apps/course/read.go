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
	} `json:"entry"`
}

// search runs a search and follows its next links; it returns every
// resource of the matched and included entries.
func (r *reader) search(ctx context.Context, typ string, q url.Values) ([]json.RawMessage, error) {
	q.Set("_count", "500")
	path := "/" + typ + "?" + q.Encode()
	var out []json.RawMessage
	for range maxPages {
		var b bundle
		if err := r.get(ctx, path, &b); err != nil {
			return nil, err
		}
		for _, e := range b.Entry {
			out = append(out, e.Resource)
		}
		next := ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			return out, nil
		}
		// The next link is absolute under the FHIR base; anything else is
		// not followed.
		rest, ok := strings.CutPrefix(next, r.app.fhirBase())
		if !ok {
			return nil, errors.New("course: a next link outside the FHIR base")
		}
		path = rest
	}
	return out, nil
}
