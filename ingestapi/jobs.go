package ingestapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/store"
)

// DefaultAsyncRecords is the batch size above which a request with
// Prefer: respond-async is answered 202 and finished in the background.
const DefaultAsyncRecords = 1000

// JobKind is the store.Job kind of an async ingest batch.
const JobKind = "ingest"

// jobTTL is how long a job is kept after it finished.
const jobTTL = 24 * time.Hour

// jobLease is how long a running job is held by its replica without a
// progress write (progressEvery) before its status reports it lost.
const jobLease = 5 * time.Minute

// errJobGone is a job deleted (forgotten by its owner) while it ran.
var errJobGone = errors.New("ingest job: deleted while running")

// progressText and parseProgress keep a job's progress as "n/total".
func progressText(n, total int) string { return strconv.Itoa(n) + "/" + strconv.Itoa(total) }

func parseProgress(s string) (n, total int) {
	a, b, _ := strings.Cut(s, "/")
	n, _ = strconv.Atoi(a)
	total, _ = strconv.Atoi(b)
	return n, total
}

// progressEvery bounds how often a running job's progress is written.
const progressEvery = time.Second

// OutcomeNotStored is the outcome, in a failed job's results, of a record
// the batch did not reach: it was not stored (re-send it).
const OutcomeNotStored = "not-stored"

// JobResponse is the body of GET {g}/jobs/{id}: the batch's Response once the
// job has finished, with the job's status; while it runs, the progress.
type JobResponse struct {
	Status   string `json:"status"`
	Progress int    `json:"progress"`
	Total    int    `json:"total"`
	// Error says why a failed job stopped; its results then say exactly
	// which records were stored (created, updated, unchanged), rejected or
	// not stored.
	Error string `json:"error,omitempty"`
	*Response
}

// wantsAsync reports whether the request asks for an asynchronous answer
// (RFC 7240 Prefer: respond-async).
func wantsAsync(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(p), ";")
			if strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}

// startJob records the batch as a running job, answers 202 with the job's
// status URL in Content-Location and ingests the batch in the background,
// writing its progress and finally every record's outcome to the job
// (docs/design/security.md IN-5). The job is in the shared store, so any
// replica answers its status URL.
func (h *handler) startJob(c echo.Context, batch *ingest.Batch) error {
	info, ok := auth.FromContext(c.Request().Context())
	if !ok || info.ClientID == "" {
		return fhir.ErrForbidden.WithDetails("no client to own the job")
	}
	id, err := newJobID()
	if err != nil {
		return fhir.ErrInternal.WithCause(err)
	}
	ctx := c.Request().Context()
	now := time.Now().UTC()
	job := store.Job{ID: id, Kind: JobKind, Owner: info.ClientID, State: store.JobRunning, Created: now, Updated: now,
		Progress: progressText(0, batch.Len()), Lease: now.Add(jobLease)}
	if _, err := h.jobs.DeleteExpiredJobs(ctx, now); err != nil {
		return errUnavailable.WithCause(err)
	}
	if err := h.jobs.CreateJob(ctx, job, 0); err != nil {
		return errUnavailable.WithCause(err)
	}
	h.running.Add(1)
	go func() {
		defer h.running.Done()
		h.runJob(context.WithoutCancel(ctx), job, batch)
	}()
	loc := h.base + "/internal/v1/jobs/" + id
	c.Response().Header().Set("Content-Location", loc)
	c.Response().Header().Set("Preference-Applied", "respond-async")
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusAccepted, JobResponse{Status: string(store.JobRunning), Total: batch.Len()})
}

// runJob ingests the batch of job and writes the outcome to the job. The
// replica that received the batch runs it under a lease it renews with
// each progress write; a job whose lease ended without an outcome was
// lost with its replica, and its status says so (getJob).
func (h *handler) runJob(ctx context.Context, job store.Job, batch *ingest.Batch) {
	last := time.Now()
	held := job.Lease
	write := func() error {
		j := job
		j.Lease = time.Now().UTC().Add(jobLease)
		ok, err := h.jobs.UpdateJob(ctx, j, held)
		if err == nil && !ok {
			return errJobGone
		}
		if err == nil {
			held = j.Lease
		}
		return err
	}
	progress := func(records, _ int) {
		if time.Since(last) < progressEvery {
			return
		}
		last = time.Now()
		job.Progress, job.Updated = progressText(records, batch.Len()), last.UTC()
		if err := write(); err != nil {
			h.log.Warn("ingest job: progress not recorded", "job", job.ID, "err_type", fmt.Sprintf("%T", err))
		}
	}
	results, sum, err := h.svc.IngestBatch(ctx, batch, progress)
	resp := newResponse(results, sum)
	job.State, job.Progress = store.JobDone, progressText(batch.Len(), batch.Len())
	if err != nil {
		landed := sum.Created + sum.Updated + sum.Unchanged
		job.State = store.JobFailed
		job.Error = failureText(err, landed, batch.Len(), "the records not stored")
		done := 0
		for i := range resp.Results {
			if resp.Results[i].Outcome == "" {
				resp.Results[i].Outcome = OutcomeNotStored
			} else {
				done++
			}
		}
		job.Progress = progressText(done, batch.Len())
	}
	job.Result, _ = json.Marshal(resp)
	job.Updated = time.Now().UTC()
	job.Expires = job.Updated.Add(jobTTL)
	// The outcome must be recorded even if the store is briefly away.
	for attempt := 0; ; attempt++ {
		perr := write()
		if perr == nil || errors.Is(perr, errJobGone) {
			return
		}
		if attempt == 5 {
			h.log.Error("ingest job: outcome not recorded", "job", job.ID, "err_type", fmt.Sprintf("%T", perr))
			return
		}
		time.Sleep(time.Duration(attempt+1) * time.Second)
	}
}

// getJob answers a job's status URL: 202 with the progress while it runs,
// 200 with every record's outcome once it is done or failed. Only the
// client that started the job sees it; to any other it does not exist.
func (h *handler) getJob(c echo.Context) error {
	job, err := h.ownJob(c)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	progress, total := parseProgress(job.Progress)
	body := JobResponse{Status: string(job.State), Progress: progress, Total: total, Error: job.Error}
	if job.State == store.JobRunning && job.Lease.Before(time.Now()) {
		// The replica running it stopped before it recorded an outcome: what
		// landed is unknown to the job, but re-sending is safe.
		body.Status = string(store.JobFailed)
		body.Error = "the gateway running this batch stopped before it finished; re-send the batch (records that landed come back unchanged)"
		return c.JSON(http.StatusOK, body)
	}
	if job.State == store.JobRunning {
		c.Response().Header().Set("Retry-After", "2")
		c.Response().Header().Set("X-Progress", strconv.Itoa(progress)+" of "+strconv.Itoa(total)+" records")
		return c.JSON(http.StatusAccepted, body)
	}
	var resp Response
	if err := json.Unmarshal(job.Result, &resp); err != nil {
		return fhir.ErrInternal.WithCause(err)
	}
	body.Response = &resp
	return c.JSON(http.StatusOK, body)
}

// deleteJob forgets a job (not its records): 204.
func (h *handler) deleteJob(c echo.Context) error {
	job, err := h.ownJob(c)
	if err != nil {
		return err
	}
	if _, err := h.jobs.DeleteJob(c.Request().Context(), job.ID); err != nil {
		return errUnavailable.WithCause(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// ownJob reads the job of the path, if the caller owns it.
func (h *handler) ownJob(c echo.Context) (store.Job, error) {
	notFound := fhir.ErrNotFound.WithDetails("no such job")
	if h.jobs == nil {
		return store.Job{}, notFound
	}
	id := c.Param("id")
	if !validJobID(id) {
		return store.Job{}, notFound
	}
	job, err := h.jobs.Job(c.Request().Context(), id, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		return store.Job{}, notFound
	}
	if err != nil {
		return store.Job{}, errUnavailable.WithCause(err)
	}
	info, ok := auth.FromContext(c.Request().Context())
	if !ok || job.Kind != JobKind || info.ClientID == "" || info.ClientID != job.Owner {
		return store.Job{}, notFound
	}
	return job, nil
}

// newJobID is 128 random bits in hex: the status URL cannot be guessed.
func newJobID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func validJobID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}
