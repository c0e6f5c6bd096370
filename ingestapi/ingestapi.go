// Package ingestapi is the internal HTTP API through which a clinic's systems
// push their records into KetaBridge:
//
//	POST /internal/v1/records   a batch of clinic records (JSON array or NDJSON)
//	GET  /internal/v1/schema    the JSON Schema of the records
//	GET  /internal/v1/jobs/{id} an asynchronous batch's status and outcomes
//	DELETE /internal/v1/jobs/{id}
//
// # Request
//
// Content-Type application/json: the body is a JSON array of records, or one
// record (a JSON object). Content-Type application/x-ndjson or
// application/ndjson: one record per line; blank lines are skipped. Any other
// type is 415. The body is read as a stream under the limits of
// ingest.Limits (docs/design/security.md IN-3): a record over the record
// limit is rejected on its own, a batch over the body or record-count limit
// is 413 naming where it crossed it. Each record (array element or NDJSON
// line) is judged on its own, malformed JSON included (IN-4); only broken
// array framing is 400, naming the line, column and byte offset (never the
// content). An empty body or a batch without records is 400.
//
// # Response
//
// Every record gets a result in the order sent, with its index, kind, id,
// outcome (created, updated, unchanged or rejected), the errors of a rejected
// record (field path and message) and the number of FHIR resources it maps to.
// The status is 200 when at least one record landed (created, updated or
// unchanged) and 422 when every record was rejected; the body has the same
// shape either way. A body of one record (a JSON object) that is rejected
// is a 422 OperationOutcome naming the fields in error (IN-1). Errors about
// the request as a whole are FHIR OperationOutcomes with the matching status;
// a store failure is 503 with Retry-After, saying how many records were
// stored, and the batch can then be re-sent as it is (re-sent records that
// landed come back unchanged). Records written whose read-cache
// invalidation failed count as stored (docs/design/security.md IN-6).
//
// # Streamed outcomes
//
// With Accept: application/x-ndjson the answer is 200 NDJSON: one result line
// per record, written as each store write commits, then a summary line
// (stream.go).
//
// # Asynchronous batches
//
// A batch over Options.AsyncRecords records sent with Prefer: respond-async
// is answered 202 with its status URL in Content-Location
// (GET/DELETE {g}/jobs/{id}, see jobs.go); the job is kept in the store
// (store.JobStore), so any replica answers it (docs/design/security.md
// IN-5).
//
// Access: every request needs a SMART backend-services token carrying
// system/ClinicRecord.write (docs/design/security.md RS-1, RS-2), checked
// before the request is read; refusals are 401 and 403 OperationOutcomes with
// their WWW-Authenticate challenge. Errors use fhir's one OperationOutcome
// renderer and the gateway's one access log (see Register).
package ingestapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/store"
)

// MaxBody is the largest request body accepted by default (413 above it).
const MaxBody = ingest.DefaultMaxBytes

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
	errUnsupportedMedia = fhir.ErrUnsupportedMedia.WithDiagnostics(
		"send application/json (an array of records) or application/x-ndjson (one record per line)")
	errUnavailable = fhir.ErrUnavailable.WithDetails("the store is unavailable")
)

// Ingester ingests a batch of clinic records (mapping/ingest.Service).
type Ingester interface {
	IngestBatch(ctx context.Context, b *ingest.Batch, progress ingest.Progress) ([]ingest.Result, ingest.Summary, error)
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
	// Limits bound a batch; zero fields take ingest.DefaultLimits.
	Limits ingest.Limits
	// Jobs keeps the jobs of batches answered asynchronously; nil answers
	// every batch synchronously.
	Jobs store.JobStore
	// AsyncRecords is the batch size above which a request with Prefer:
	// respond-async is answered 202 (0: DefaultAsyncRecords).
	AsyncRecords int
	// BaseURL is the gateway's public base URL, for the absolute status URL
	// of a job (empty: a path).
	BaseURL string
	// maxBody overrides Limits.MaxBytes (tests).
	maxBody int64
	// running, when set, counts the jobs in the background (tests wait).
	running *sync.WaitGroup
}

// Register mounts the internal API on g, the group at the API's prefix
// (conventionally e.Group("/internal/v1")): POST {g}/records and
// GET {g}/schema. Every request passes, in this order: the access log,
// fhir's OperationOutcome renderer, panic recovery, authentication
// (auth.Authenticate, before the request is read), the scope check
// (auth.RequireScope: Scope) and the rate limit.
func Register(g *echo.Group, svc Ingester, schema []byte, opts Options) {
	h := &handler{svc: svc, schema: schema, lim: opts.Limits, jobs: opts.Jobs, async: opts.AsyncRecords,
		base: strings.TrimRight(opts.BaseURL, "/"), log: opts.Logger, running: opts.running}
	if h.async <= 0 {
		h.async = DefaultAsyncRecords
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.running == nil {
		h.running = &sync.WaitGroup{}
	}
	if h.lim.MaxBytes <= 0 {
		h.lim.MaxBytes = ingest.DefaultMaxBytes
	}
	if h.lim.MaxRecordBytes <= 0 {
		h.lim.MaxRecordBytes = ingest.DefaultMaxRecordBytes
	}
	if h.lim.MaxRecords <= 0 {
		h.lim.MaxRecords = ingest.DefaultMaxRecords
	}
	if opts.maxBody > 0 {
		h.lim.MaxBytes = opts.maxBody
	}
	g.Use(fhir.AccessLog(opts.Logger), fhir.RenderErrors, fhir.Recover, auth.Authenticate(opts.Verifier),
		auth.RequireScope("ClinicRecord", auth.InteractionCreate), opts.RateLimit.Middleware)
	g.POST("/records", h.postRecords)
	g.GET("/schema", h.getSchema)
	g.GET("/jobs/:id", h.getJob)
	g.DELETE("/jobs/:id", h.deleteJob)
}

type handler struct {
	svc    Ingester
	schema []byte
	lim    ingest.Limits
	jobs   store.JobStore
	async  int
	base   string
	log    *slog.Logger
	// running counts the jobs in the background.
	running *sync.WaitGroup
}

// FieldError is one error of a rejected record in a response.
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Result is one record's result in a response.
type Result struct {
	Index     int          `json:"index"`
	Line      int          `json:"line,omitempty"`
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
	mt = strings.ToLower(mt)
	switch mt {
	case MIMEJSON, MIMENDJSON, MIMENDJSONAlt:
	default:
		return errUnsupportedMedia
	}
	if req.ContentLength > h.lim.MaxBytes {
		return h.tooLarge()
	}
	// The body is read as a stream, record by record: no record is held
	// beyond the record limit and no batch beyond the body limit
	// (docs/design/security.md IN-3).
	body := bufio.NewReaderSize(http.MaxBytesReader(c.Response(), req.Body, h.lim.MaxBytes), 64<<10)
	var batch *ingest.Batch
	switch {
	case mt != MIMEJSON:
		batch, err = ingest.ReadNDJSON(body, h.lim)
	case firstByte(body) == '{':
		return h.postRecord(c, body)
	default:
		batch, err = ingest.ReadJSONArray(body, h.lim)
	}
	if err != nil {
		return h.readError(err)
	}
	if batch.Len() == 0 {
		return fhir.ErrInvalid.WithDetails("the batch holds no records").WithDiagnostics("send a JSON array or NDJSON of clinic records")
	}

	if h.jobs != nil && batch.Len() > h.async && wantsAsync(req) {
		return h.startJob(c, batch)
	}
	if wantsStream(req) {
		return h.streamBatch(c, batch)
	}
	results, sum, err := h.svc.IngestBatch(req.Context(), batch, nil)
	if err != nil {
		return unavailable(err, sum, batch.Len())
	}
	status := http.StatusOK
	if sum.Rejected == batch.Len() {
		status = http.StatusUnprocessableEntity
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(status, newResponse(results, sum))
}

// postRecord ingests a body of one record, a JSON object: the answer is the
// batch response when it lands and a 422 OperationOutcome naming every
// field in error when it is rejected (docs/design/security.md IN-1).
func (h *handler) postRecord(c echo.Context, body io.Reader) error {
	raw, err := ingest.ReadRecord(body, h.lim)
	if err != nil {
		return h.readError(err)
	}
	results, sum, err := h.svc.IngestBatch(c.Request().Context(), ingest.BatchOf([]json.RawMessage{raw}), nil)
	if err != nil {
		return unavailable(err, sum, 1)
	}
	if r := results[0]; r.Outcome == ingest.OutcomeRejected {
		return RejectedRecord(r.Errors)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, newResponse(results, sum))
}

// RejectedRecord is the 422 OperationOutcome of a rejected record: the
// paths of its errors as expressions, each "path: message" in the
// diagnostics. Paths and messages never hold record values
// (clinic.FieldError), so they are safe as details too.
func RejectedRecord(errs []clinic.FieldError) *fhir.Error {
	paths := make([]string, 0, len(errs))
	msgs := make([]string, 0, len(errs))
	for _, fe := range errs {
		if fe.Path != "" {
			paths = append(paths, fe.Path)
		}
		msgs = append(msgs, fe.Error())
	}
	e := fhir.NewError(http.StatusUnprocessableEntity).WithDetails("the record was rejected").
		WithDiagnostics(strings.Join(msgs, "; "))
	if len(paths) > 0 {
		e = e.WithExpression(paths...)
	}
	return e
}

// readError maps a failure to read the batch to its answer: a limit is 413
// naming where it was crossed, broken framing 400.
func (h *handler) readError(err error) error {
	var le *ingest.LimitError
	var se *ingest.SyntaxError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return h.tooLarge()
	case errors.As(err, &le):
		e := fhir.ErrTooLarge.WithDetails("the request is over an ingest limit").WithDiagnostics(le.Msg)
		if le.Path != "" {
			e = e.WithExpression(le.Path)
		}
		return e
	case errors.As(err, &se):
		return fhir.ErrInvalid.WithDetails("malformed JSON").WithDiagnostics(se.Msg)
	}
	return fhir.ErrInvalid.WithDetails("request body could not be read").WithCause(err)
}

func (h *handler) tooLarge() error {
	return fhir.ErrTooLarge.WithDetails("request body too large").
		WithDiagnostics("the body is larger than the limit of " + strconv.FormatInt(h.lim.MaxBytes, 10) + " bytes")
}

// unavailable is the answer to a store failure in the middle of a batch: a
// 503 (with Retry-After) saying how many records were stored.
func unavailable(err error, sum ingest.Summary, n int) error {
	landed := sum.Created + sum.Updated + sum.Unchanged
	// The store (or the shared cache) should be back within seconds;
	// re-sending the batch is safe (landed records come back unchanged).
	return errUnavailable.WithCause(err).WithDiagnostics(failureText(err, landed, n, "the batch"))
}

// failureText explains a batch the store did not finish: how many of its n
// records were stored and what to re-send (resend: after a store failure).
// When the records were written but the shared read cache could not be
// told (store.StaleCacheError), the count includes them and the whole batch
// is to be re-sent: re-sent records come back unchanged and are
// invalidated again (docs/design/security.md IN-6).
func failureText(err error, landed, n int, resend string) string {
	var stale *store.StaleCacheError
	if errors.As(err, &stale) {
		return fmt.Sprintf("%d of %d records were stored, but the shared read cache could not be invalidated; "+
			"re-send the batch (records that landed come back unchanged and are invalidated again)", landed, n)
	}
	return fmt.Sprintf("the store failed after %d of %d records were stored; re-send %s (records that landed come back unchanged)",
		landed, n, resend)
}

// newResponse is the body of an answered batch.
func newResponse(results []ingest.Result, sum ingest.Summary) Response {
	resp := Response{
		Summary: Summary{Created: sum.Created, Updated: sum.Updated, Unchanged: sum.Unchanged,
			Rejected: sum.Rejected, Resources: sum.Resources},
		Results: make([]Result, len(results)),
	}
	for i, r := range results {
		resp.Results[i] = newResult(r)
	}
	return resp
}

func newResult(r ingest.Result) Result {
	out := Result{Index: r.Index, Line: r.Line, Kind: r.Kind, ID: r.ID, Outcome: r.Outcome, Resources: r.Resources}
	for _, fe := range r.Errors {
		out.Errors = append(out.Errors, FieldError{Path: fe.Path, Message: fe.Message})
	}
	return out
}

// firstByte peeks at the first byte of the body that is not white space (0
// for none), consuming the white space only.
func firstByte(br *bufio.Reader) byte {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return 0
		}
		switch b[0] {
		case ' ', '\t', '\n', '\r':
			_, _ = br.ReadByte()
			continue
		}
		return b[0]
	}
}

func (h *handler) getSchema(c echo.Context) error {
	return c.Blob(http.StatusOK, MIMESchemaJSON, h.schema)
}
