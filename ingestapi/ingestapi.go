// Package ingestapi is the internal HTTP API through which a clinic's systems
// push their records into KetaBridge:
//
//	POST /internal/v1/records   a batch of clinic records (JSON array or NDJSON)
//	GET  /internal/v1/schema    the JSON Schema of the records
//
// # Request
//
// Content-Type application/json: the body is a JSON array of records.
// Content-Type application/x-ndjson or application/ndjson: one record per
// line; blank lines are skipped. Any other type is 415. An empty body or a
// batch without records is 400; malformed JSON is 400 naming the line, column
// and byte offset (never the content). Bodies over the size limit are 413.
//
// # Response
//
// Every record gets a result in the order sent, with its index, kind, id,
// outcome (created, updated, unchanged or rejected), the errors of a rejected
// record (field path and message) and the number of FHIR resources it maps to.
// The status is 200 when at least one record landed (created, updated or
// unchanged) and 422 when every record was rejected; the body has the same
// shape either way. Errors about the request as a whole are FHIR
// OperationOutcomes with the matching status; a store failure is 503, and the
// batch can then be re-sent as it is (re-sent records that landed come back
// unchanged).
//
// Access: every request needs a SMART backend-services token carrying
// system/ClinicRecord.write (docs/design/security.md RS-1, RS-2), checked
// before the request is read; refusals are 401 and 403 OperationOutcomes with
// their WWW-Authenticate challenge. Errors use fhir's one OperationOutcome
// renderer and the gateway's one access log (see Register).
package ingestapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/mapping/ingest"
)

// MaxBody is the largest request body accepted (413 above it).
const MaxBody = 64 << 20

// Media types.
const (
	MIMEJSON       = "application/json"
	MIMENDJSON     = "application/x-ndjson"
	MIMENDJSONAlt  = "application/ndjson"
	MIMESchemaJSON = "application/schema+json"
)

// Scope is the SMART scope the API requires: a backend client's token with
// system/ClinicRecord.write (or .c, .cruds).
const Scope = "system/ClinicRecord.write"

// Request-level errors (http.html#Status-Codes), rendered by fhir's renderer.
var (
	errTooLarge         = fhir.ErrTooLarge.WithDetails("request body too large (limit 64 MiB)")
	errUnsupportedMedia = fhir.ErrUnsupportedMedia.WithDiagnostics(
		"send application/json (an array of records) or application/x-ndjson (one record per line)")
	errUnavailable = fhir.ErrUnavailable.WithDetails("the store is unavailable")
)

// Ingester ingests a batch of clinic records (mapping/ingest.Service).
type Ingester interface {
	Ingest(ctx context.Context, raw []json.RawMessage) ([]ingest.Result, ingest.Summary, error)
}

// Options configure Register.
type Options struct {
	// Verifier verifies the bearer tokens (auth.Authenticate); nil refuses
	// every request with 401.
	Verifier auth.Verifier
	// RateLimit, when set, limits each client's requests once its token and
	// scope are checked.
	RateLimit *fhir.RateLimit
	// Logger receives the access log; nil uses slog.Default().
	Logger *slog.Logger
	// maxBody overrides MaxBody (tests).
	maxBody int64
}

// Register mounts the internal API on g, the group at the API's prefix
// (conventionally e.Group("/internal/v1")): POST {g}/records and
// GET {g}/schema. Every request passes, in this order: the access log,
// fhir's OperationOutcome renderer, panic recovery, authentication
// (auth.Authenticate, before the request is read), the scope check
// (auth.RequireScope: Scope) and the rate limit.
func Register(g *echo.Group, svc Ingester, schema []byte, opts Options) {
	h := &handler{svc: svc, schema: schema, limit: MaxBody}
	if opts.maxBody > 0 {
		h.limit = opts.maxBody
	}
	g.Use(fhir.AccessLog(opts.Logger), fhir.RenderErrors, fhir.Recover, auth.Authenticate(opts.Verifier),
		auth.RequireScope("ClinicRecord", auth.InteractionCreate), opts.RateLimit.Middleware)
	g.POST("/records", h.postRecords)
	g.GET("/schema", h.getSchema)
}

type handler struct {
	svc    Ingester
	schema []byte
	limit  int64
}

// FieldError is one error of a rejected record in a response.
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Result is one record's result in a response.
type Result struct {
	Index     int          `json:"index"`
	Kind      string       `json:"kind,omitempty"`
	ID        string       `json:"id,omitempty"`
	Outcome   string       `json:"outcome"`
	Errors    []FieldError `json:"errors,omitempty"`
	Resources int          `json:"resources,omitempty"`
}

// Summary counts a batch's outcomes in a response.
type Summary struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	Rejected  int `json:"rejected"`
	Resources int `json:"resources"`
}

// Response is the body of POST /records.
type Response struct {
	Summary Summary  `json:"summary"`
	Results []Result `json:"results"`
}

func (h *handler) postRecords(c echo.Context) error {
	req := c.Request()
	mt, params, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if err != nil {
		return errUnsupportedMedia
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return errUnsupportedMedia.WithDiagnostics("only UTF-8 is accepted")
	}
	var parse func([]byte) ([]json.RawMessage, error)
	switch strings.ToLower(mt) {
	case MIMEJSON:
		parse = ParseJSONArray
	case MIMENDJSON, MIMENDJSONAlt:
		parse = ParseNDJSON
	default:
		return errUnsupportedMedia
	}
	if req.ContentLength > h.limit {
		return errTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, h.limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return fhir.ErrInvalid.WithDetails("request body could not be read").WithCause(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return fhir.ErrInvalid.WithDetails("empty request body").WithDiagnostics("send a JSON array or NDJSON of clinic records")
	}
	raw, err := parse(body)
	if err != nil {
		return fhir.ErrInvalid.WithDetails("malformed JSON").WithDiagnostics(err.Error())
	}
	if len(raw) == 0 {
		return fhir.ErrInvalid.WithDetails("the batch holds no records")
	}

	results, sum, err := h.svc.Ingest(req.Context(), raw)
	if err != nil {
		landed := sum.Created + sum.Updated + sum.Unchanged
		// The store (or the shared cache) should be back within seconds;
		// re-sending the batch is safe (landed records come back unchanged).
		return errUnavailable.WithCause(err).WithDiagnostics(fmt.Sprintf(
			"the store failed after %d of %d records were stored; re-send the batch (records that landed come back unchanged)",
			landed, len(raw)))
	}
	resp := Response{
		Summary: Summary{Created: sum.Created, Updated: sum.Updated, Unchanged: sum.Unchanged,
			Rejected: sum.Rejected, Resources: sum.Resources},
		Results: make([]Result, len(results)),
	}
	for i, r := range results {
		out := Result{Index: r.Index, Kind: r.Kind, ID: r.ID, Outcome: r.Outcome, Resources: r.Resources}
		for _, fe := range r.Errors {
			out.Errors = append(out.Errors, FieldError{Path: fe.Path, Message: fe.Message})
		}
		resp.Results[i] = out
	}
	status := http.StatusOK
	if sum.Rejected == len(raw) {
		status = http.StatusUnprocessableEntity
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(status, resp)
}

func (h *handler) getSchema(c echo.Context) error {
	return c.Blob(http.StatusOK, MIMESchemaJSON, h.schema)
}

// ParseJSONArray splits a JSON array of records into its elements. A syntax
// error names the line, column and byte offset of the fault.
func ParseJSONArray(body []byte) ([]json.RawMessage, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line, col := position(body, se.Offset)
			return nil, fmt.Errorf("invalid JSON at line %d, column %d (byte offset %d)", line, col, se.Offset)
		case errors.As(err, &te):
			return nil, fmt.Errorf("the body must be a JSON array of records, not a JSON %s", te.Value)
		}
		return nil, fmt.Errorf("invalid JSON: the body ends early")
	}
	return raw, nil
}

// ParseNDJSON splits newline-delimited JSON into records, one per non-blank
// line. A line that is not a single JSON value is an error naming the line
// and the byte offset within it.
func ParseNDJSON(body []byte) ([]json.RawMessage, error) {
	var raw []json.RawMessage
	line := 0
	for len(body) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			l, body = body, nil
		}
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		if err := checkJSON(l); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		raw = append(raw, json.RawMessage(l))
	}
	return raw, nil
}

// checkJSON reports whether l is one well-formed JSON value, by offset.
func checkJSON(l []byte) error {
	if json.Valid(l) {
		return nil
	}
	var v any
	err := json.Unmarshal(l, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte offset %d", se.Offset)
	}
	return fmt.Errorf("invalid JSON: the line ends early")
}

// position turns a byte offset into a 1-based line and column.
func position(b []byte, off int64) (line, col int) {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	pre := b[:off]
	line = bytes.Count(pre, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(pre, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return line, col
}
