package fhir

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// Bulk Data export (FHIR Bulk Data Access IG 2.0.0, export.html; see
// docs/bulk-export.md). Kick-off stores a job with the caller's verified
// token and the transaction time; a worker on any replica claims it, walks
// the snapshot once to cut the files (counted in the store, no body read,
// unless a Patient or Group export must follow references), and stores
// their bounds; a file GET streams its lines from the
// snapshot (store.Exporter), the stored bytes as they are wherever the
// caller's view does not change them, so no replica's disk holds anything
// (docs/design/security.md BULK-8, BULK-9).

// Defaults of ExportOptions.
const (
	DefaultExportMaxActive = 3
	DefaultExportFileSize  = 100_000
	DefaultExportExpiry    = 24 * time.Hour
	DefaultExportLease     = time.Minute
	DefaultExportRetry     = time.Second
)

// exportKind is the store.Job kind of a Bulk Data export.
const exportKind = "bulk-export"

// MIMENDJSON is the media type of export files.
const MIMENDJSON = "application/fhir+ndjson"

// ExportStore is the storage Bulk Data export needs.
type ExportStore interface {
	store.Exporter
	store.JobStore
}

// ExportOptions configure Bulk Data export; nil Options.Export leaves
// $export unserved.
type ExportOptions struct {
	Store ExportStore
	// MaxActive is how many accepted or running exports one client may
	// have (429 beyond).
	MaxActive int
	// FileSize is the most resources in one file.
	FileSize int
	// Expiry is how long a finished job and its files stay.
	Expiry time.Duration
	// Lease is how long a worker holds a job between progress updates;
	// a job whose worker died is taken over after it.
	Lease time.Duration
	// RetryAfter is the polling interval suggested to clients.
	RetryAfter time.Duration
}

func (o *ExportOptions) withDefaults() *ExportOptions {
	c := *o
	if c.MaxActive <= 0 {
		c.MaxActive = DefaultExportMaxActive
	}
	if c.FileSize <= 0 {
		c.FileSize = DefaultExportFileSize
	}
	if c.Expiry <= 0 {
		c.Expiry = DefaultExportExpiry
	}
	if c.Lease <= 0 {
		c.Lease = DefaultExportLease
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = DefaultExportRetry
	}
	return &c
}

// Export levels.
const (
	levelSystem  = "system"
	levelPatient = "patient"
	levelGroup   = "group"
)

// exportRequest is what a job was asked (store.Job.Request).
type exportRequest struct {
	Level       string    `json:"level"`
	Group       string    `json:"group,omitempty"`
	Patients    []string  `json:"patients,omitempty"`
	Types       []string  `json:"types,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	TypeFilters []string  `json:"typeFilters,omitempty"`
	Elements    []string  `json:"elements,omitempty"`
	// URL is the kick-off request URL (the manifest's request).
	URL string `json:"url"`
	// Ignored are the parameters ignored under lenient handling.
	Ignored []string `json:"ignored,omitempty"`
	// Caller is the verified token of the kick-off: every per-type access
	// decision of the job is made for it, as its searches would be.
	Caller *auth.AccessInfo `json:"caller"`
	// At is the transaction time: the snapshot.
	At time.Time `json:"at"`
}

// exportFile is one file of a finished job: the resources of Type at
// snapshot positions in (After, Last] (Kind output or deleted), or the
// job's error lines. Its size in bytes is not kept: a ranged request
// measures it (exportFileGet).
type exportFile struct {
	Kind  string `json:"kind"`
	Type  string `json:"type"`
	After int64  `json:"from,omitempty"`
	Last  int64  `json:"to,omitempty"`
	Count int    `json:"count"`
}

// exportResult is what a finished job produced (store.Job.Result).
type exportResult struct {
	Files []exportFile `json:"files"`
	// Positions marks files bounded by snapshot positions; a job finished
	// by an earlier version bounded them by ids, which this one cannot
	// serve (its files are refused, never served whole).
	Positions bool `json:"positions,omitempty"`
	// Patients are the compartments of a Group export (its members at At).
	Patients []string `json:"patients,omitempty"`
	// Refs are the ids of the referenced resources a Patient or Group
	// export includes, per type.
	Refs map[string][]string `json:"refs,omitempty"`
	// Errors are the error file's issues (diagnostics, safe to show the
	// client).
	Errors []string `json:"errors,omitempty"`
}

// Kinds of export files.
const (
	fileOutput  = "output"
	fileDeleted = "deleted"
	fileError   = "error"
)

// referencedTypes are the non-compartment types a Patient or Group export
// includes when compartment resources reference them.
var referencedTypes = []string{"Location", "Medication", "Organization", "Practitioner"}

// inCompartment reports whether typ's resources are in a patient's
// compartment (the types with a patient or subject search parameter, and
// Patient).
func inCompartment(typ string) bool {
	if typ == "Patient" {
		return true
	}
	for _, p := range store.CompartmentParams {
		if _, ok := search.Lookup(typ, p); ok {
			return true
		}
	}
	return false
}

// exportParams are the kick-off parameters served.
var exportParams = map[string]bool{
	"_outputFormat": true, "_since": true, "_type": true, "_typeFilter": true, "_elements": true, "patient": true,
}

// kickoff serves [base]/$export, [base]/Patient/$export and
// [base]/Group/[id]/$export by GET and POST (export.html#bulk-data-kick-off-request).
func (s *Server) exportKickoff(level string) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !preferAsync(c) {
			return ErrInvalid.WithDetails("Prefer: respond-async is required").WithExpression("Prefer")
		}
		info, ok := auth.FromContext(c.Request().Context())
		if !ok {
			return errNoCaller
		}
		req := exportRequest{Level: level, Caller: info, URL: s.requestURL(c)}
		typ, id := "", ""
		switch level {
		case levelPatient:
			typ = "Patient"
		case levelGroup:
			typ, id = "Group", c.Param("id")
			if !validID(id) {
				return ErrNotFound.WithDetails("unknown group")
			}
			req.Group = id
		}
		// Bulk export is for backend services: system/ scopes only
		// (docs/design/security.md BULK-4, NEG-45).
		if !systemCaller(info) {
			noteAccess(c, access{interaction: auth.InteractionExport, typ: typ, id: id}, narrowing{})
			return auth.InsufficientScope("bulk export needs system/ scopes")
		}
		params, err := exportValues(c)
		if err != nil {
			return err
		}
		if err := s.parseExport(c, &req, params); err != nil {
			return err
		}
		types, err := s.exportTypes(c.Request().Context(), &req)
		if err != nil {
			return err
		}
		if len(types) == 0 {
			noteAccess(c, access{interaction: auth.InteractionExport, typ: typ, id: id}, narrowing{})
			return auth.InsufficientScope("no scope grants search on the exported types")
		}
		noteAccess(c, access{interaction: auth.InteractionExport, typ: typ, id: id}, narrowing{all: true})
		ex := s.export
		now := s.clock.Now().UTC().Truncate(time.Millisecond)
		req.At = now
		if level == levelGroup {
			if _, err := s.groupMembers(c.Request().Context(), id, now); err != nil {
				return err
			}
		}
		body, err := json.Marshal(req)
		if err != nil {
			return err
		}
		j := store.Job{ID: uuid.NewString(), Kind: exportKind, Owner: info.ClientID, Request: body, Created: now}
		if err := ex.Store.CreateJob(c.Request().Context(), j, ex.MaxActive); err != nil {
			if errors.Is(err, store.ErrTooManyJobs) {
				c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(5*max(1, int(ex.RetryAfter.Seconds()))))
				return NewError(http.StatusTooManyRequests).WithDetails("too many running exports for this client")
			}
			return err
		}
		s.nudgeExport()
		c.Response().Header().Set("Content-Location", s.base+"/_export/"+j.ID)
		return c.NoContent(http.StatusAccepted)
	}
}

// preferAsync reports Prefer: respond-async.
func preferAsync(c echo.Context) bool {
	for _, v := range c.Request().Header.Values("Prefer") {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "respond-async") {
				return true
			}
		}
	}
	return false
}

// systemCaller reports whether the token holds a system/ resource scope.
func systemCaller(info *auth.AccessInfo) bool {
	for _, sc := range info.Principal.Grant.Resource {
		if sc.Context == auth.ContextSystem {
			return true
		}
	}
	return false
}

// requestURL is the kick-off URL as the client sent it, on the base.
func (s *Server) requestURL(c echo.Context) string {
	u := s.base + strings.TrimPrefix(c.Request().URL.Path, "/fhir")
	if q := c.Request().URL.RawQuery; q != "" {
		u += "?" + q
	}
	return u
}

// exportValues reads the kick-off parameters: the query of a GET, or the
// Parameters body of a POST (export.html#bulk-data-kick-off-request).
func exportValues(c echo.Context) (url.Values, error) {
	req := c.Request()
	if req.Method != http.MethodPost {
		v, err := queryParams(c)
		if err != nil {
			return nil, err
		}
		if len(v["patient"]) > 0 {
			return nil, ErrInvalid.WithDetails("patient is a POST parameter").WithExpression("patient")
		}
		return v, nil
	}
	if req.ContentLength == 0 {
		// A POST without a body carries its parameters in the URL, as
		// clients such as @medplum/core's bulkExport send it.
		return queryParams(c)
	}
	if mt := mediaType(req.Header.Get(echo.HeaderContentType)); mt != MIMEFHIRJSON && mt != MIMEJSON {
		return nil, ErrUnsupportedMedia.WithDetails("POST $export takes a Parameters resource")
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string                      `json:"name"`
			ValueString    *string                     `json:"valueString"`
			ValueInstant   *string                     `json:"valueInstant"`
			ValueDateTime  *string                     `json:"valueDateTime"`
			ValueReference *struct{ Reference string } `json:"valueReference"`
		} `json:"parameter"`
	}
	if err := json.NewDecoder(req.Body).Decode(&p); err != nil || p.ResourceType != "Parameters" {
		return nil, ErrInvalid.WithDetails("POST $export takes a Parameters resource")
	}
	v := url.Values{}
	for _, pp := range p.Parameter {
		switch {
		case pp.ValueString != nil:
			v.Add(pp.Name, *pp.ValueString)
		case pp.ValueInstant != nil:
			v.Add(pp.Name, *pp.ValueInstant)
		case pp.ValueDateTime != nil:
			v.Add(pp.Name, *pp.ValueDateTime)
		case pp.ValueReference != nil:
			v.Add(pp.Name, pp.ValueReference.Reference)
		default:
			return nil, ErrInvalid.WithDetails("a parameter without a supported value").WithExpression(pp.Name)
		}
	}
	return v, nil
}

// outputFormats are the accepted _outputFormat values (export.html#query-parameters).
var outputFormats = []string{"application/fhir+ndjson", "application/ndjson", "ndjson"}

// parseExport reads the kick-off parameters into req.
func (s *Server) parseExport(c echo.Context, req *exportRequest, values url.Values) error {
	soft := lenient(c)
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !exportParams[name] {
			if !soft {
				return ErrInvalid.WithDetails("unsupported $export parameter").WithExpression(name)
			}
			req.Ignored = append(req.Ignored, name)
		}
	}
	if f := values.Get("_outputFormat"); f != "" && !slices.Contains(outputFormats, f) {
		return ErrInvalid.WithDetails("unsupported _outputFormat").WithExpression("_outputFormat")
	}
	if v := values.Get("_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return ErrInvalid.WithDetails("_since must be a FHIR instant").WithExpression("_since")
		}
		req.Since = t.UTC()
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
			if !slices.Contains(req.Types, t) {
				req.Types = append(req.Types, t)
			}
		}
	}
	for _, v := range values["_typeFilter"] {
		for f := range strings.SplitSeq(v, ",") {
			ft, cls, err := s.typeFilter(f)
			if err != nil {
				return err
			}
			// PRIV-19: a partner filters no Task by labels it may not see.
			if taskSecurityRefused(req.Caller.Principal.Role, ft, store.Query{Clauses: cls}) != nil {
				return errTaskSecuritySearch.WithExpression("_typeFilter")
			}
			req.TypeFilters = append(req.TypeFilters, f)
		}
	}
	for _, v := range values["_elements"] {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				req.Elements = append(req.Elements, e)
			}
		}
	}
	for _, v := range values["patient"] {
		id, ok := strings.CutPrefix(v, "Patient/")
		if !ok || !validID(id) {
			return ErrInvalid.WithDetails("patient must reference a Patient").WithExpression("patient")
		}
		if req.Level == levelSystem {
			return ErrInvalid.WithDetails("patient applies to Patient and Group export").WithExpression("patient")
		}
		req.Patients = append(req.Patients, id)
	}
	return nil
}

// typeFilter parses one _typeFilter ("Type?search") into its type and
// clauses: the gateway's search parameters, nothing else.
func (s *Server) typeFilter(f string) (string, []store.Clause, error) {
	bad := ErrInvalid.WithDetails("_typeFilter must be Type?search-parameters the type supports").WithExpression("_typeFilter")
	typ, query, ok := strings.Cut(strings.TrimSpace(f), "?")
	if !ok || !s.types[typ] || query == "" {
		return "", nil, bad
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return "", nil, bad
	}
	for name := range values {
		if strings.HasPrefix(name, "_") && name != "_id" && name != "_lastUpdated" && name != "_security" && name != "_tag" && name != "_profile" {
			return "", nil, bad
		}
	}
	sr, err := search.Parse(typ, values, false)
	if err != nil || len(sr.Query.Clauses) == 0 {
		return "", nil, bad
	}
	return typ, sr.Query.Clauses, nil
}

// exportTypes are the types a job exports, in export order: _type, or
// every served type (system), or the compartment types then the
// referenced ones (Patient, Group); each one the caller may search.
func (s *Server) exportTypes(ctx context.Context, req *exportRequest) ([]string, error) {
	ctx, err := s.exportContext(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, typ := range search.Types() {
		if len(req.Types) > 0 && !slices.Contains(req.Types, typ) {
			continue
		}
		if req.Level != levelSystem && !inCompartment(typ) && !slices.Contains(referencedTypes, typ) {
			continue
		}
		if _, err := searchAccess(ctx, typ); err != nil {
			continue // a type the token may not search is left out
		}
		out = append(out, typ)
	}
	if req.Level != levelSystem {
		// Compartment types first: their references name what follows.
		slices.SortStableFunc(out, func(a, b string) int {
			ra, rb := slices.Contains(referencedTypes, a), slices.Contains(referencedTypes, b)
			switch {
			case ra == rb:
				return 0
			case rb:
				return -1
			}
			return 1
		})
	}
	return out, nil
}

// searchAccess is what the caller in ctx may see of typ, as the search
// path decides it (auth.Decide and, for an outside organization, its view
// of the patients' consents: docs/design/security.md PRIV-3, PRIV-12),
// turned into a query restriction before anything is read, as a
// store.Access. Export reads nothing but through it. ctx must carry the
// outside view (exportContext) for a payer or partner, or decide fails
// closed.
func searchAccess(ctx context.Context, typ string) (*store.Access, error) {
	d, err := decide(ctx, auth.InteractionSearch, typ)
	if err != nil {
		return nil, err
	}
	if d.access != nil {
		// The outside view's terms, each further narrowed by the scopes'
		// patients and granular filters.
		a := &store.Access{}
		for _, t := range d.access.Terms {
			t.Clauses = append(slices.Clip(t.Clauses), d.filters...)
			if !d.all && len(t.Patients) > 0 {
				t.Patients = slices.DeleteFunc(slices.Clone(t.Patients), func(p string) bool { return !slices.Contains(d.patients, p) })
				if len(t.Patients) == 0 {
					continue
				}
			}
			a.Terms = append(a.Terms, t)
		}
		return a, nil
	}
	t := store.AccessTerm{Types: []string{typ}, Clauses: d.filters}
	if !d.all {
		if len(d.patients) == 0 {
			return &store.Access{}, nil // nothing
		}
		t.Patients = d.patients
	}
	return &store.Access{Terms: []store.AccessTerm{t}}, nil
}

// exportContext is ctx carrying the job's caller and, for an outside
// organization, its view as of now (docs/design/security.md PRIV-12): a
// consent withdrawn after the kick-off narrows the files from then on.
func (s *Server) exportContext(ctx context.Context, req *exportRequest) (context.Context, error) {
	return s.withOutsideView(auth.NewContext(ctx, req.Caller))
}

// exportQuery is the snapshot query of typ for a job (page size and
// position left to the caller).
func (s *Server) exportQuery(ctx context.Context, req *exportRequest, res *exportResult, typ, kind string) (store.ExportQuery, error) {
	q := store.ExportQuery{Type: typ, At: req.At}
	ctx, err := s.exportContext(ctx, req)
	if err != nil {
		return q, err
	}
	a, err := searchAccess(ctx, typ)
	if err != nil {
		return q, err
	}
	q.Access = a
	q.Since = req.Since
	var filters []store.AccessTerm
	for _, f := range req.TypeFilters {
		ft, cls, err := s.typeFilter(f)
		if err != nil {
			return q, err
		}
		if ft == typ {
			filters = append(filters, store.AccessTerm{Types: []string{typ}, Clauses: cls})
		}
	}
	if len(filters) > 0 {
		q.Filters = &store.Access{Terms: filters}
	}
	if req.Level != levelSystem {
		if inCompartment(typ) {
			patients := req.Patients
			if req.Level == levelGroup {
				patients = res.Patients
				if len(req.Patients) > 0 {
					patients = slices.DeleteFunc(slices.Clone(req.Patients), func(p string) bool { return !slices.Contains(res.Patients, p) })
				}
				if len(patients) == 0 {
					patients = []string{""} // an empty group: nothing
				}
			}
			q.Patients = patients
		} else {
			q.IDs = res.Refs[typ]
			if len(q.IDs) == 0 {
				q.IDs = []string{""} // nothing referenced: nothing
			}
		}
	}
	return q, nil
}

// refPattern finds references to the referenced types in a body.
var refPattern = regexp.MustCompile(`"reference":"(Location|Medication|Organization|Practitioner)/([A-Za-z0-9\-.]{1,64})"`)

// liner makes the NDJSON lines (without the newline) of one file: each
// resource as served to the job's caller (outward: a Patient reduced, a
// referral Task with only the labels a partner clears, a Provenance without
// the targets it may not read; docs/design/security.md PRIV-15, PRIV-19,
// PRIV-16), then subsetted by _elements. Where the caller's view
// cannot change a resource, the line is the stored bytes as they are
// (BULK-10).
type liner struct {
	s    *Server
	ctx  context.Context
	kind string
	rw   *rewriter
	// view: an outside view is loaded, so a Patient may be reduced and a
	// Task's labels withheld (outwardInView).
	view bool
	// open are the types the caller reads whole (decided as
	// provenanceTargets decides them): a Provenance whose references all
	// name resources of these types keeps every target.
	open map[string]bool
}

// newLiner returns the liner of a file of typ and kind for the caller of
// ctx.
func (s *Server) newLiner(ctx context.Context, typ, kind string, elements []string) (*liner, error) {
	rw, err := elementsRewriter(typ, elements)
	if err != nil {
		return nil, err
	}
	l := &liner{s: s, ctx: ctx, kind: kind, rw: rw}
	_, l.view = viewFrom(ctx)
	if typ == "Provenance" {
		l.open = map[string]bool{}
		for t := range s.types {
			n, err := decide(ctx, auth.InteractionRead, t)
			if err != nil {
				n, err = decide(ctx, auth.InteractionSearch, t)
			}
			if err == nil && n.all && !n.restricts() {
				l.open[t] = true
			}
		}
	}
	return l, nil
}

// lean reports whether the lines of typ never need more of a resource than
// its body (store.ExportQuery.Lean): output lines that the outward rewrite
// cannot touch (no outside view, not a Provenance; docs/design/security.md
// BULK-14).
func (l *liner) lean(typ string) bool {
	return l.kind == fileOutput && !l.view && typ != "Provenance"
}

// line is r's line. It may be r.Body itself, valid as long as r.Body is.
func (l *liner) line(r *store.Resource) ([]byte, error) {
	if l.kind == fileDeleted {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"` +
			r.Type + "/" + r.ID + `"}}]}`), nil
	}
	body := r.Body
	if (l.view && outwardInView(r.Type)) || (r.Type == "Provenance" && !refsOpen(r.Body, l.open)) {
		out := *r
		if err := l.s.outward(l.ctx, &out); err != nil {
			return nil, err
		}
		body = out.Body
	}
	if l.rw == nil {
		return body, nil
	}
	return l.rw.apply(body)
}

// refsOpen reports whether every reference in body is a local Type/id
// reference to a type in open, so that provenanceTargets keeps every
// target of it. Stored bodies are canonical JSON (conformance/fhirjson:
// compact, no insignificant space), where a reference is exactly
// "reference":"Type/id"; anything else in the body spelling "reference"
// (a value, an escape) sends it the exact way.
func refsOpen(body []byte, open map[string]bool) bool {
	if len(open) == 0 {
		return false
	}
	return refsAll(body, func(typ []byte) bool { return open[string(typ)] })
}

// refsAll reports whether every reference in body is a local Type/id
// reference whose type open accepts, spelled as refsOpen describes. One
// pass: every "reference" must be a key followed by a plain "Type/id"
// string.
func refsAll(body []byte, open func(typ []byte) bool) bool {
	const key = `"reference"`
	rest := body
	for {
		i := bytes.Index(rest, []byte(key))
		if i < 0 {
			return true
		}
		rest = rest[i+len(key):]
		if len(rest) < 2 || rest[0] != ':' || rest[1] != '"' {
			return false
		}
		rest = rest[2:]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return false
		}
		ref := rest[:j]
		rest = rest[j+1:]
		t, id, ok := bytes.Cut(ref, []byte{'/'})
		if !ok || !validIDBytes(id) || !open(t) {
			return false
		}
	}
}

// validIDBytes is validID of id's bytes (no string made of them), one
// table lookup a byte (docs/design/security.md PERF-ST-15: every reference
// of every Provenance of a $everything page passes through it).
func validIDBytes(id []byte) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, b := range id {
		if !idChar[b] {
			return false
		}
	}
	return true
}

// idChar marks the bytes of a FHIR id: [A-Za-z0-9\-\.].
var idChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
	}
	return t
}()

// elementsRewriter is the _elements rewrite of typ ("Type.element" or
// "element" entries; nil when none applies).
func elementsRewriter(typ string, elements []string) (*rewriter, error) {
	var names []string
	for _, e := range elements {
		if t, name, ok := strings.Cut(e, "."); ok {
			if t == typ {
				names = append(names, name)
			}
			continue
		}
		names = append(names, e)
	}
	if len(names) == 0 {
		return nil, nil
	}
	return newRewriter(typ, names, "")
}

// walk calls fn with each resource of q in the snapshot from position
// q.After up to q.Last (when set), page by page; r and r.Body are valid
// during the call only. fn may end a page early by returning errPageFull
// after taking its resource; flush, when set, runs after each page, once
// the store's rows are closed (a slow client then holds no connection).
func (s *Server) walk(ctx context.Context, q store.ExportQuery, fn func(pos int64, r *store.Resource) error, flush func() error) error {
	q.Count = exportPage
	for {
		n := 0
		err := s.export.Store.Export(ctx, q, func(pos int64, r *store.Resource) error {
			n++
			q.After = pos
			return fn(pos, r)
		})
		full := errors.Is(err, errPageFull)
		if err != nil && !full {
			return err
		}
		if flush != nil {
			if err := flush(); err != nil {
				return err
			}
		}
		if !full && n < q.Count {
			return nil
		}
	}
}

// errPageFull ends a page of walk early, its resource taken.
var errPageFull = errors.New("fhir: export page full")

// exportPage is the page size of snapshot reads, and exportBuffer about
// the most bytes of lines a file download holds before writing them
// (variables for the tests).
var (
	exportPage   = 2000
	exportBuffer = 2 << 20
)

// exportLineSlack is the room a file buffer has past exportBuffer, for the
// line that crosses it (a longer one grows the buffer).
const exportLineSlack = 256 << 10

// exportBuffers are the file downloads' buffers (*[]byte), reused.
var exportBuffers = sync.Pool{New: func() any { return new([]byte) }}

// errorLine is one line of the error file.
func errorLine(diagnostics string) []byte {
	return appendOutcome(nil, ErrInvalid.WithSeverity(SeverityWarning).WithDiagnostics(diagnostics))
}

// exportStatus serves GET on the status URL (export.html#bulk-data-status-request).
func (s *Server) exportStatus(c echo.Context) error {
	j, req, err := s.ownJob(c)
	if err != nil {
		return err
	}
	noteAccess(c, access{interaction: auth.InteractionExport}, narrowing{all: true})
	h := c.Response().Header()
	switch j.State {
	case store.JobAccepted, store.JobRunning:
		progress := j.Progress
		if progress == "" {
			progress = "queued"
		}
		h.Set("X-Progress", progress)
		h.Set(echo.HeaderRetryAfter, strconv.Itoa(max(1, int(s.export.RetryAfter.Seconds()+0.5))))
		h.Set(echo.HeaderCacheControl, "no-store")
		return c.NoContent(http.StatusAccepted)
	case store.JobFailed:
		return ErrInternal.WithDetails("export failed").WithDiagnostics(j.Error)
	}
	var res exportResult
	if err := json.Unmarshal(j.Result, &res); err != nil {
		return err
	}
	type item struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count,omitempty"`
	}
	m := struct {
		TransactionTime     string `json:"transactionTime"`
		Request             string `json:"request"`
		RequiresAccessToken bool   `json:"requiresAccessToken"`
		Output              []item `json:"output"`
		Deleted             []item `json:"deleted,omitempty"`
		Error               []item `json:"error"`
	}{
		TransactionTime: req.At.UTC().Format(store.LastUpdatedFormat), Request: req.URL, RequiresAccessToken: true,
		Output: []item{}, Error: []item{},
	}
	for i, f := range res.Files {
		it := item{Type: f.Type, URL: s.base + "/_export/" + j.ID + "/" + strconv.Itoa(i), Count: f.Count}
		switch f.Kind {
		case fileOutput:
			m.Output = append(m.Output, it)
		case fileDeleted:
			it.Type = "Bundle"
			m.Deleted = append(m.Deleted, it)
		case fileError:
			it.Type = "OperationOutcome"
			m.Error = append(m.Error, it)
		}
	}
	h.Set("Expires", j.Expires.UTC().Format(http.TimeFormat))
	h.Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, m)
}

// exportDelete serves DELETE on the status URL (export.html#bulk-data-delete-request).
func (s *Server) exportDelete(c echo.Context) error {
	j, _, err := s.ownJob(c)
	if err != nil {
		return err
	}
	noteAccess(c, access{interaction: auth.InteractionExport}, narrowing{all: true})
	if _, err := s.export.Store.DeleteJob(c.Request().Context(), j.ID); err != nil {
		return err
	}
	return c.NoContent(http.StatusAccepted)
}

// errNoJob answers an unknown, expired, deleted or another client's job
// alike, so job ids cannot be probed (docs/design/security.md BULK-9).
var errNoJob = ErrNotFound.WithDetails("unknown export")

// ownJob loads the route's job if the caller started it.
func (s *Server) ownJob(c echo.Context) (store.Job, *exportRequest, error) {
	info, ok := auth.FromContext(c.Request().Context())
	if !ok {
		return store.Job{}, nil, errNoCaller
	}
	id := c.Param("job")
	if _, err := uuid.Parse(id); err != nil {
		return store.Job{}, nil, errNoJob
	}
	j, err := s.export.Store.Job(c.Request().Context(), id, s.clock.Now())
	if errors.Is(err, store.ErrNotFound) {
		return store.Job{}, nil, errNoJob
	}
	if err != nil {
		return store.Job{}, nil, err
	}
	if j.Kind != exportKind || j.Owner != info.ClientID {
		return store.Job{}, nil, errNoJob
	}
	var req exportRequest
	if err := json.Unmarshal(j.Request, &req); err != nil {
		return store.Job{}, nil, err
	}
	return j, &req, nil
}

// exportFileGet serves an output, deleted or error file
// (export.html#bulk-data-output-file-request): NDJSON streamed from the
// snapshot, gzip when accepted, byte ranges. A whole file goes out chunked
// as it is read; a ranged request (or HEAD) first measures the file with a
// pass that writes nothing, so Content-Range and Content-Length are exact.
func (s *Server) exportFileGet(c echo.Context) error {
	j, req, err := s.ownJob(c)
	if err != nil {
		return err
	}
	if j.State != store.JobDone {
		return errNoJob
	}
	var res exportResult
	if err := json.Unmarshal(j.Result, &res); err != nil {
		return err
	}
	n, err := strconv.Atoi(c.Param("file"))
	if err != nil || n < 0 || n >= len(res.Files) || strconv.Itoa(n) != c.Param("file") {
		return errNoJob
	}
	f := res.Files[n]
	if !res.Positions && f.Kind != fileError {
		return ErrNotFound.WithDetails("an export from an earlier version of the gateway: start a new export")
	}
	noteAccess(c, access{interaction: auth.InteractionExport, typ: f.Type}, narrowing{all: true})
	ctx := c.Request().Context()
	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, MIMENDJSON)
	h.Set("Accept-Ranges", "bytes")
	h.Set(echo.HeaderCacheControl, "private, no-store")
	etag := `"` + j.ID + "-" + strconv.Itoa(n) + `"`
	h.Set(headerETag, etag)
	h.Add(echo.HeaderVary, echo.HeaderAcceptEncoding)
	size := int64(-1)
	if c.Request().Method == http.MethodHead || c.Request().Header.Get("Range") != "" {
		cw := &countWriter{}
		if err := s.writeFile(ctx, req, &res, f, cw); err != nil {
			return err
		}
		size = cw.n
	}
	start, end, partial := int64(0), size, false
	if size >= 0 {
		start, end, partial, err = byteRange(c.Request(), size, etag)
		if err != nil {
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			return NewError(http.StatusRequestedRangeNotSatisfiable).WithDetails("unsatisfiable range")
		}
	}
	var out io.Writer = w
	var gz *gzip.Writer
	switch {
	case !partial && acceptsGzip(c.Request()):
		// A range is of the identity encoding, so ranged GETs are never
		// compressed; a resumed download asks for identity bytes.
		h.Set(echo.HeaderContentEncoding, "gzip")
		gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		out = gz
	case size >= 0:
		h.Set(echo.HeaderContentLength, strconv.FormatInt(end-start, 10))
	}
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
		out = &rangeWriter{w: w, start: start, end: end}
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if c.Request().Method == http.MethodHead {
		return nil
	}
	err = s.writeFile(ctx, req, &res, f, out)
	if err != nil && !errors.Is(err, errRangeDone) {
		// The status is sent. Ending the handler normally would close the
		// chunked encoding with its last chunk, or the gzip stream with a
		// valid trailer, and the client would take the part it received
		// for the whole file. Abort the connection instead (as a streamed
		// Bundle does, PERF-ST-2): the client sees a broken body and
		// resumes with a range (BULK-8's snapshot makes the bytes the
		// same).
		s.log.Warn("export file aborted", "error_kind", fmt.Sprintf("%T", err))
		panic(http.ErrAbortHandler)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			s.log.Warn("export file aborted", "error_kind", fmt.Sprintf("%T", err))
			panic(http.ErrAbortHandler)
		}
	}
	return nil
}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (cw *countWriter) Write(p []byte) (int, error) {
	cw.n += int64(len(p))
	return len(p), nil
}

// writeFile writes file f of a job to w: its lines, each ended by a
// newline, gathered in a buffer of about exportBuffer bytes that is written
// out between the store's pages.
func (s *Server) writeFile(ctx context.Context, req *exportRequest, res *exportResult, f exportFile, w io.Writer) error {
	if f.Kind == fileError {
		for _, e := range res.Errors {
			if _, err := w.Write(append(errorLine(e), '\n')); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, err := s.exportContext(ctx, req)
	if err != nil {
		return err
	}
	q, err := s.exportQuery(ctx, req, res, f.Type, f.Kind)
	if err != nil {
		return err
	}
	q.After, q.Last, q.Kind = f.After, f.Last, exportKinds[f.Kind]
	l, err := s.newLiner(ctx, f.Type, f.Kind, req.Elements)
	if err != nil {
		return err
	}
	q.Lean = l.lean(f.Type)
	// One buffer for the whole file, from a pool shared by the downloads:
	// growing a fresh one to exportBuffer for every file copied about
	// twice its size each time.
	bp := exportBuffers.Get().(*[]byte)
	defer exportBuffers.Put(bp)
	if cap(*bp) < exportBuffer+exportLineSlack {
		*bp = make([]byte, 0, exportBuffer+exportLineSlack)
	}
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= 2*(exportBuffer+exportLineSlack) {
			*bp = buf[:0]
		} else {
			*bp = nil // grown by a huge line: not kept
		}
	}()
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	return s.walk(ctx, q, func(_ int64, r *store.Resource) error {
		if r.Deleted != (f.Kind == fileDeleted) {
			return nil
		}
		line, err := l.line(r)
		if err != nil {
			return err
		}
		buf = append(append(buf, line...), '\n')
		if len(buf) >= exportBuffer {
			return errPageFull
		}
		return nil
	}, flush)
}

// nudgeExport wakes the worker of this replica.
func (s *Server) nudgeExport() {
	select {
	case s.exportWake <- struct{}{}:
	default:
	}
}

// RunExports works on export jobs until ctx ends: it claims accepted jobs
// (and running jobs whose worker stopped renewing its lease) from the store,
// so every replica may run it and a job survives the replica that started
// it. Expired jobs are removed on the way.
func (s *Server) RunExports(ctx context.Context) {
	if s.export == nil {
		return
	}
	tick := time.NewTicker(s.export.RetryAfter)
	defer tick.Stop()
	for {
		for s.RunExportOnce(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.exportWake:
		}
	}
}

// RunExportOnce claims and runs one job; it reports whether it ran one.
func (s *Server) RunExportOnce(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	now := s.clock.Now()
	if _, err := s.export.Store.DeleteExpiredJobs(ctx, now); err != nil {
		s.log.Warn("export: expiring jobs failed", "error_kind", fmt.Sprintf("%T", err))
	}
	j, ok, err := s.export.Store.ClaimJob(ctx, exportKind, now, now.Add(s.export.Lease))
	if err != nil {
		s.log.Warn("export: claiming a job failed", "error_kind", fmt.Sprintf("%T", err))
		return false
	}
	if !ok {
		return false
	}
	s.runJob(ctx, j)
	return true
}

// errJobGone stops a job that was cancelled or taken over.
var errJobGone = errors.New("fhir: export job cancelled or taken over")

// runJob cuts the job's snapshot into files of at most FileSize resources
// of one type and kind (cutFiles), and stores the result.
func (s *Server) runJob(ctx context.Context, j store.Job) {
	held := j.Lease
	var req exportRequest
	res := exportResult{Refs: map[string][]string{}}
	err := json.Unmarshal(j.Request, &req)
	update := func(state store.JobState) error {
		j.State = state
		j.Updated = s.clock.Now()
		if state == store.JobRunning {
			j.Lease = j.Updated.Add(s.export.Lease)
		} else {
			j.Lease = time.Time{}
			j.Expires = j.Updated.Add(s.export.Expiry)
		}
		ok, err := s.export.Store.UpdateJob(ctx, j, held)
		if err != nil {
			return err
		}
		if !ok {
			return errJobGone
		}
		held = j.Lease
		return nil
	}
	if err == nil {
		err = s.cutFiles(ctx, &req, &res, func(progress string) error {
			j.Progress = progress
			return update(store.JobRunning)
		})
	}
	if err == nil {
		j.Result, err = json.Marshal(res)
	}
	if err == nil {
		j.Progress = "100%"
		err = update(store.JobDone)
	}
	if err == nil || errors.Is(err, errJobGone) || ctx.Err() != nil {
		return // done, cancelled, or left for another worker
	}
	s.log.Warn("export job failed", "error_kind", fmt.Sprintf("%T", err))
	j.Error = "the export could not be completed"
	if fe := AsError(err); fe.Status < 500 && fe.Diagnostics != "" {
		j.Error = fe.Diagnostics
	}
	_ = update(store.JobFailed)
}

// cutFiles fills res for req.
func (s *Server) cutFiles(ctx context.Context, req *exportRequest, res *exportResult, progress func(string) error) error {
	res.Positions = true
	for _, name := range req.Ignored {
		res.Errors = append(res.Errors, "parameter ignored: "+name)
	}
	if req.Level == levelGroup {
		members, err := s.groupMembers(ctx, req.Group, req.At)
		if err != nil {
			return err
		}
		res.Patients = members
	}
	ctx, err := s.exportContext(ctx, req)
	if err != nil {
		return err
	}
	types, err := s.exportTypes(ctx, req)
	if err != nil {
		return err
	}
	for _, t := range req.Types {
		if !slices.Contains(types, t) {
			res.Errors = append(res.Errors, "type not exported (not permitted for this client): "+t)
		}
	}
	// The types are walked by exportWorkers at once (each walk is one
	// goroutine reading the store, so two cores cut the files in about
	// half the time), in two phases for a Patient or Group export: the
	// compartment types, then the referenced types, whose ids are what the
	// compartment resources referenced. The files keep the types' order.
	var first, then []int
	for i, typ := range types {
		if req.Level != levelSystem && !inCompartment(typ) {
			then = append(then, i)
		} else {
			first = append(first, i)
		}
	}
	files := make([][]exportFile, len(types))
	refs := map[string]map[string]bool{}
	var mu sync.Mutex // guards refs, done, last and the calls of progress
	done, last := 0, s.clock.Now()
	// renew reports the progress and renews the lease when the lease is a
	// third gone, so no other replica takes over a job that is still
	// running, and when a type is finished (typeDone) if the clients' polling
	// interval has passed since the last report: each report is a durable
	// write (on PostgreSQL a commit waiting for the disk), and a report
	// per type cost more than counting the types.
	renew := func(typeDone bool) error {
		mu.Lock()
		defer mu.Unlock()
		if now := s.clock.Now(); now.Sub(last) > s.export.Lease/3 || (typeDone && now.Sub(last) >= s.export.RetryAfter) {
			last = now
			return progress(strconv.Itoa(done*100/len(types)) + "%")
		}
		return nil
	}
	cut := func(ctx context.Context, i int) error {
		typ := types[i]
		q, err := s.exportQuery(ctx, req, res, typ, fileOutput)
		if err != nil {
			return err
		}
		var out []exportFile
		collect := req.Level != levelSystem && inCompartment(typ)
		var found map[string]map[string]bool
		if collect {
			found = map[string]map[string]bool{}
			out, err = s.cutWalk(ctx, q, typ, found, renew)
		} else {
			out, err = s.cutCount(ctx, q, typ, renew)
		}
		if err != nil {
			return err
		}
		files[i] = out
		mu.Lock()
		for t, ids := range found {
			if refs[t] == nil {
				refs[t] = map[string]bool{}
			}
			for id := range ids {
				refs[t][id] = true
			}
		}
		done++
		mu.Unlock()
		return renew(true)
	}
	for _, phase := range [][]int{first, then} {
		if err := eachParallel(ctx, exportWorkers, phase, cut); err != nil {
			return err
		}
		for t, ids := range refs {
			res.Refs[t] = sortedKeys(ids)
		}
	}
	for _, f := range files {
		res.Files = append(res.Files, f...)
	}
	if len(res.Errors) > 0 {
		res.Files = append(res.Files, exportFile{Kind: fileError, Type: "OperationOutcome", Count: len(res.Errors)})
	}
	return nil
}

// cutCount cuts the files of typ by counting them in the store
// (store.Exporter.ExportCount): one statement per file and kind, the
// positions never handed to Go, so cutting costs a fraction of serving.
// A file of a kind holds the resources of that kind in its positions
// (After, Last]: the serving walk asks for that kind alone
// (docs/design/security.md BULK-11).
func (s *Server) cutCount(ctx context.Context, q store.ExportQuery, typ string, renew func(bool) error) ([]exportFile, error) {
	var out []exportFile
	kinds := []string{fileOutput}
	if !q.Since.IsZero() {
		kinds = append(kinds, fileDeleted) // deletions are listed by _since exports only
	}
	for _, kind := range kinds {
		q.Kind, q.After, q.Count = exportKinds[kind], 0, s.export.FileSize
		for {
			n, last, err := s.export.Store.ExportCount(ctx, q)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				break
			}
			out = append(out, exportFile{Kind: kind, Type: typ, After: q.After, Last: last, Count: n})
			if err := renew(false); err != nil {
				return nil, err
			}
			if n < q.Count {
				break
			}
			q.After = last
		}
	}
	return out, nil
}

// exportKinds are the snapshot kinds (store.ExportQuery.Kind) of the
// files' kinds.
var exportKinds = map[string]store.ExportKind{fileOutput: store.ExportLive, fileDeleted: store.ExportDeletions}

// cutWalk cuts the files of typ, a compartment type of a Patient or Group
// export, by walking its resources with their bodies: the references they
// hold to the referenced types are collected into found as it goes.
func (s *Server) cutWalk(ctx context.Context, q store.ExportQuery, typ string, found map[string]map[string]bool,
	renew func(bool) error) ([]exportFile, error) {
	var cur [2]*exportFile // output, deleted
	var out []exportFile
	seen := 0
	err := s.walk(ctx, q, func(pos int64, r *store.Resource) error {
		if seen++; seen%exportPage == 0 {
			if err := renew(false); err != nil {
				return err
			}
		}
		kind, k := fileOutput, 0
		if r.Deleted {
			kind, k = fileDeleted, 1
		}
		f := cur[k]
		if f == nil || f.Count >= s.export.FileSize {
			if f != nil {
				out = append(out, *f)
				// The next file of the kind starts after this one's
				// last resource: a file is served by its kind alone.
				f = &exportFile{Kind: kind, Type: typ, After: f.Last}
			} else {
				f = &exportFile{Kind: kind, Type: typ}
			}
			cur[k] = f
		}
		f.Count++
		f.Last = pos
		if !r.Deleted {
			for _, m := range refPattern.FindAllSubmatch(r.Body, -1) {
				t := string(m[1])
				if found[t] == nil {
					found[t] = map[string]bool{}
				}
				found[t][string(m[2])] = true
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	for _, f := range cur {
		if f != nil {
			out = append(out, *f)
		}
	}
	return out, nil
}

// exportWorkers is how many types a job walks at once.
var exportWorkers = max(2, runtime.GOMAXPROCS(0))

// eachParallel calls fn with each of items on at most n goroutines; the
// first error cancels the context of the others' calls and is returned.
func eachParallel(ctx context.Context, n int, items []int, fn func(ctx context.Context, item int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for _, i := range items {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// byteRange parses a single-range Range header (RFC 9110 §14) against a
// body of size bytes: [start, end) and whether it is partial. If-Range with
// another ETag serves the whole body.
func byteRange(r *http.Request, size int64, etag string) (start, end int64, partial bool, err error) {
	v := r.Header.Get("Range")
	if v == "" || r.Method != http.MethodGet {
		return 0, size, false, nil
	}
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil // not a single byte range: the whole body
	}
	a, b, _ := strings.Cut(strings.TrimSpace(spec), "-")
	errBad := errors.New("bad range")
	switch {
	case a == "" && b != "": // the last b bytes
		n, perr := strconv.ParseInt(b, 10, 64)
		if perr != nil || n <= 0 {
			return 0, 0, false, errBad
		}
		start, end = max(size-n, 0), size
	default:
		s, perr := strconv.ParseInt(a, 10, 64)
		if perr != nil || s < 0 || s >= size {
			return 0, 0, false, errBad
		}
		start, end = s, size
		if b != "" {
			e, perr := strconv.ParseInt(b, 10, 64)
			if perr != nil || e < s {
				return 0, 0, false, errBad
			}
			end = min(e+1, size)
		}
	}
	return start, end, true, nil
}

// errRangeDone ends a walk once the range is written.
var errRangeDone = errors.New("range written")

// rangeWriter writes the bytes of [start, end) of what it is given, and
// ends the writing with errRangeDone once it has them all.
type rangeWriter struct {
	w          io.Writer
	pos        int64
	start, end int64
}

func (rw *rangeWriter) Write(p []byte) (int, error) {
	lo, hi := rw.pos, rw.pos+int64(len(p))
	rw.pos = hi
	if hi <= rw.start {
		return len(p), nil
	}
	if lo >= rw.end {
		return 0, errRangeDone
	}
	q := p[max(rw.start-lo, 0):]
	if hi > rw.end {
		q = q[:int64(len(q))-(hi-rw.end)]
	}
	if _, err := rw.w.Write(q); err != nil {
		return 0, err
	}
	if hi >= rw.end {
		return len(p), errRangeDone
	}
	return len(p), nil
}

// acceptsGzip reports Accept-Encoding: gzip (with a non-zero quality).
func acceptsGzip(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get(echo.HeaderAcceptEncoding), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && !zeroQuality(params) {
			return true
		}
	}
	return false
}

// registerExport mounts the kick-off, status and file routes.
func (s *Server) registerExport(g *echo.Group, add func(method, path string, i auth.Interaction, h echo.HandlerFunc)) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		for _, op := range []string{"$export", "%24export"} { // echo routes on the raw path when it is escaped
			add(m, "/"+op, auth.InteractionExport, s.exportKickoff(levelSystem))
			add(m, "/Patient/"+op, auth.InteractionExport, s.exportKickoff(levelPatient))
			add(m, "/Group/:id/"+op, auth.InteractionExport, s.exportKickoff(levelGroup))
		}
	}
	add(http.MethodGet, "/Group", auth.InteractionSearch, s.groupSearch)
	add(http.MethodGet, "/Group/:id", auth.InteractionRead, s.groupRead)
	add(http.MethodGet, "/_export/:job", auth.InteractionExport, s.exportStatus)
	add(http.MethodDelete, "/_export/:job", auth.InteractionExport, s.exportDelete)
	// Files: NDJSON whatever Accept says, and no request timeout (a large
	// file streams for as long as the client reads).
	file := wrap(s.exportFileGet, AccessLog(s.log), s.audit(auth.InteractionExport), RenderErrors, Recover,
		s.cors.Clients, auth.Authenticate(s.verifier), s.rateLimit.Middleware)
	g.Add(http.MethodGet, "/_export/:job/:file", file)
	g.Add(http.MethodHead, "/_export/:job/:file", file)
}
