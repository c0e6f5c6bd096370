package fhir

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// validID reports whether id is a FHIR id (datatypes.html#id:
// [A-Za-z0-9\-\.]{1,64}).
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	return true
}

// target checks the :type and :id path parameters.
func (s *Server) target(c echo.Context) (typ, id string, err error) {
	typ, id = c.Param("type"), c.Param("id")
	if typ == "" {
		typ = "Patient" // the $everything route has Patient in its path
	}
	if err := s.checkType(typ); err != nil {
		return "", "", err
	}
	if !validID(id) {
		return "", "", ErrNotFound // no such resource can exist
	}
	return typ, id, nil
}

// read serves GET [base]/[type]/[id] (http.html#read).
func (s *Server) read(c echo.Context) error {
	typ, id, err := s.target(c)
	if err != nil {
		return err
	}
	d, err := s.authorize(c, access{interaction: auth.InteractionRead, typ: typ, id: id})
	if err != nil {
		return err
	}
	r, err := s.store.Read(c.Request().Context(), typ, id)
	noteResources(c, r) // a denied or deleted read still touched the compartment
	if err != nil {
		if errors.Is(err, store.ErrGone) && (!d.allows(r.Patient) || d.restricts()) {
			return d.refuse()
		}
		return err
	}
	if !d.allows(r.Patient) {
		return d.refuse()
	}
	if err := s.checkFilters(c.Request().Context(), d, typ, id); err != nil {
		return err
	}
	if err := s.outward(c.Request().Context(), &r); err != nil {
		return err
	}
	return writeResource(c, &r)
}

// vread serves GET [base]/[type]/[id]/_history/[vid] (http.html#vread).
func (s *Server) vread(c echo.Context) error {
	typ, id, err := s.target(c)
	if err != nil {
		return err
	}
	vid, err := strconv.ParseInt(c.Param("vid"), 10, 64)
	if err != nil || vid < 1 {
		return ErrNotFound.WithDetails("unknown version")
	}
	d, err := s.authorize(c, access{interaction: auth.InteractionVRead, typ: typ, id: id})
	if err != nil {
		return err
	}
	r, err := s.store.VRead(c.Request().Context(), typ, id, vid)
	noteResources(c, r)
	if err != nil {
		if errors.Is(err, store.ErrGone) && (!d.allows(r.Patient) || d.restricts()) {
			return d.refuse()
		}
		return err
	}
	if !d.allows(r.Patient) {
		return d.refuse()
	}
	if err := s.checkFilters(c.Request().Context(), d, typ, id); err != nil {
		return err
	}
	if r.Deleted || len(r.Body) == 0 {
		return ErrGone
	}
	if err := s.outward(c.Request().Context(), &r); err != nil {
		return err
	}
	return writeResource(c, &r)
}

// checkFilters returns nil when d has no filters or a search for typ/id
// under d's filters and patients finds the resource, else 403: a single
// resource under a granular scope is shown only if the scope's search would
// show it (docs/design/security.md RS-5). The version history of a resource
// follows its current version.
func (s *Server) checkFilters(ctx context.Context, d narrowing, typ, id string) error {
	if !d.restricts() {
		return nil
	}
	ok, err := s.visible(ctx, d, typ, []string{id})
	if err != nil {
		return err
	}
	if !ok[id] {
		return d.refuse()
	}
	return nil
}

// visible returns which of the ids of typ a search under d (filters and
// patients) finds. It runs store searches by _id, never inspects bodies.
func (s *Server) visible(ctx context.Context, d narrowing, typ string, ids []string) (map[string]bool, error) {
	found := make(map[string]bool, len(ids))
	for start := 0; start < len(ids); start += search.MaxCount {
		chunk := ids[start:min(len(ids), start+search.MaxCount)]
		clause := store.Clause{Param: store.ParamID, Kind: store.KindToken, Values: make([]store.Value, len(chunk))}
		for i, id := range chunk {
			clause.Values[i] = store.Value{Str: id}
		}
		res, err := s.searchWithin(ctx, store.Query{Type: typ, Clauses: []store.Clause{clause}, Count: len(chunk)}, d)
		if err != nil {
			return nil, err
		}
		for _, r := range res.Resources {
			if r.Type == typ && d.allows(r.Patient) {
				found[r.ID] = true
			}
		}
	}
	return found, nil
}

// writeResource sends a stored body as is, with ETag and Last-Modified, or
// 304 when the client's copy is current (http.html#read, http.html#cread;
// RFC 9110 §13.1.2: If-None-Match takes precedence over If-Modified-Since).
func writeResource(c echo.Context, r *store.Resource) error {
	ct, _ := responseType(c)
	// ETag and Last-Modified share one string and the three header values
	// one slice: a read is the hottest path.
	var stack [64]byte
	buf := append(stack[:0], `W/"`...)
	buf = strconv.AppendInt(buf, r.Version, 10)
	buf = append(buf, '"')
	n := len(buf)
	if !r.LastUpdated.IsZero() {
		buf = appendHTTPDate(buf, r.LastUpdated)
	}
	hv := string(buf)
	vals := make([]string, 3)
	vals[0], vals[1], vals[2] = hv[:n], hv[n:], ct
	h := c.Response().Header()
	h["Etag"] = vals[0:1:1]
	if len(hv) > n {
		h["Last-Modified"] = vals[1:2:2]
	}
	req := c.Request()
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		if etagMatches(inm, vals[0]) {
			return c.NoContent(http.StatusNotModified)
		}
	} else if ims := req.Header.Get(echo.HeaderIfModifiedSince); ims != "" && !r.LastUpdated.IsZero() {
		if t, err := http.ParseTime(ims); err == nil && !r.LastUpdated.Truncate(time.Second).After(t) {
			return c.NoContent(http.StatusNotModified)
		}
	}
	h["Content-Type"] = vals[2:3:3]
	resp := c.Response()
	resp.WriteHeader(http.StatusOK)
	_, err := resp.Write(r.Body)
	return err
}

// appendHTTPDate appends t as an HTTP-date, t.UTC().AppendFormat(b,
// http.TimeFormat) byte for byte, without parsing the layout on every read
// (docs/design/security.md PERF-ST-19); a year outside 1000-9999 takes
// AppendFormat itself.
func appendHTTPDate(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 1000 || year > 9999 {
		return t.AppendFormat(b, http.TimeFormat)
	}
	hour, minute, sec := t.Clock()
	two := func(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }
	b = append(b, t.Weekday().String()[:3]...)
	b = append(b, ", "...)
	b = two(b, day)
	b = append(b, ' ')
	b = append(b, month.String()[:3]...)
	b = append(b, ' ')
	b = two(two(b, year/100), year%100)
	b = append(b, ' ')
	b = two(b, hour)
	b = append(b, ':')
	b = two(b, minute)
	b = append(b, ':')
	b = two(b, sec)
	return append(b, " GMT"...)
}

// etagMatches implements the weak comparison of If-None-Match (RFC 9110
// §13.1.2) against etag, which is W/"n".
func etagMatches(header, etag string) bool {
	opaque := etag[2:] // "n" with quotes
	for part := range strings.SplitSeq(header, ",") {
		p := strings.TrimSpace(part)
		if p == "*" {
			return true
		}
		p = strings.TrimPrefix(p, "W/")
		if p == opaque {
			return true
		}
	}
	return false
}

// history serves GET [base]/[type]/[id]/_history (http.html#history) as a
// Bundle of type history, newest first, paged with _count/_offset.
func (s *Server) history(c echo.Context) error {
	typ, id, err := s.target(c)
	if err != nil {
		return err
	}
	values, err := queryParams(c)
	if err != nil {
		return err
	}
	count, offset, _, err := pageParams(values, lenient(c), "_count", "_offset")
	if err != nil {
		return err
	}
	d, err := s.authorize(c, access{interaction: auth.InteractionHistoryInstance, typ: typ, id: id})
	if err != nil {
		return err
	}
	versions, total, err := s.store.History(c.Request().Context(), typ, id, count, offset)
	if err != nil {
		return err
	}
	noteResources(c, versions...)
	if len(versions) == 0 && offset == 0 && count > 0 {
		return ErrNotFound
	}
	size := 0
	for i := range versions {
		if !d.allows(versions[i].Patient) {
			return d.refuse()
		}
		size += s.searchEntrySize(&versions[i]) + 192 // request and response
	}
	if err := s.checkFilters(c.Request().Context(), d, typ, id); err != nil {
		return err
	}
	if versions, err = s.outwardAll(c.Request().Context(), versions); err != nil {
		return err
	}
	path := s.base + "/" + typ + "/" + id + "/_history"
	links := pageLinks(path, nil, count, offset, offset+len(versions) < total)
	b := s.newBundle(c, bundleHistory, total, links, size)
	for i := range versions {
		b.historyEntry(&versions[i])
	}
	return b.write(c)
}

// lenient reports whether the client asked for lenient handling of unknown
// parameters (search.html#errors: Prefer: handling=lenient).
func lenient(c echo.Context) bool {
	for _, v := range c.Request().Header.Values("Prefer") {
		for part := range strings.SplitSeq(v, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.EqualFold(strings.TrimSpace(k), "handling") && strings.EqualFold(strings.Trim(strings.TrimSpace(val), `"`), "lenient") {
				return true
			}
		}
	}
	return false
}

// commonParams are accepted by every interaction (http.html#parameters).
var commonParams = map[string]bool{"_format": true, "_pretty": true}

// pageParams reads _count and _offset (and any extra names the caller
// accepts); any other parameter is a 400 unless lenient, when it is
// returned as a warning issue. History Bundles drop the warnings: only a
// searchset may carry an outcome entry (bundle.html#searchset).
func pageParams(q url.Values, lenient bool, allowed ...string) (count, offset int, warnings []*Error, err error) {
	count = search.DefaultCount
	for k, vs := range q {
		switch {
		case k == "_count":
			n, err := strconv.Atoi(vs[0])
			if err != nil || n < 0 {
				return 0, 0, nil, ErrInvalid.WithDetails("invalid _count").WithExpression(k)
			}
			count = min(n, search.MaxCount)
		case k == "_offset":
			n, err := strconv.Atoi(vs[0])
			if err != nil || n < 0 {
				return 0, 0, nil, ErrInvalid.WithDetails("invalid _offset").WithExpression(k)
			}
			offset = n
		case commonParams[k] || contains(allowed, k):
		case lenient:
			warnings = append(warnings, ErrNotImplemented.WithSeverity(SeverityWarning).
				WithDetails("parameter ignored").WithExpression(k))
		default:
			return 0, 0, nil, ErrInvalid.WithDetails("unsupported parameter").WithExpression(k)
		}
	}
	return count, offset, warnings, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
