// Package bulkclient is the client side of FHIR Bulk Data export (Bulk Data
// Access IG 2.0.0, export.html): kick-off, status polling and file
// download, over plain HTTP with a bearer token the caller supplies. The
// `ketabridge export` command and the benchmark use it.
package bulkclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request is what to export.
type Request struct {
	// Base is the FHIR base URL (".../fhir").
	Base string
	// Group, when set, exports Group/{Group}; Patient exports the Patient
	// level; otherwise the system level.
	Group   string
	Patient bool
	Types   []string
	// Since, when non-zero, exports only what changed after it.
	Since time.Time
	// TypeFilters are _typeFilter values ("Type?query").
	TypeFilters []string
}

// Output is one file of a manifest.
type Output struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

// Manifest is the complete-status response (export.html#response---complete-status).
type Manifest struct {
	TransactionTime     string   `json:"transactionTime"`
	Request             string   `json:"request"`
	RequiresAccessToken bool     `json:"requiresAccessToken"`
	Output              []Output `json:"output"`
	Deleted             []Output `json:"deleted"`
	Error               []Output `json:"error"`
}

// Client runs exports.
type Client struct {
	HTTP *http.Client
	// Token returns the bearer token for each request (tokens of backend
	// services live minutes; an export may outlive one).
	Token func(ctx context.Context) (string, error)
	// Progress, when set, receives each status answer's X-Progress.
	Progress func(progress string)
	// MinPoll and MaxPoll bound the wait between polls (default 100ms and
	// 10s); the server's Retry-After is honoured within them.
	MinPoll, MaxPoll time.Duration
	// RetryWait is the wait before the first retry of a broken download
	// (DownloadAll; default 1s), doubled at each further one.
	RetryWait time.Duration
}

// Error is a non-success answer of the server.
type Error struct {
	Status int
	Body   string
}

func (e *Error) Error() string {
	body := e.Body
	if len(body) > 300 {
		body = body[:300]
	}
	return fmt.Sprintf("bulkclient: HTTP %d: %s", e.Status, body)
}

func (c *Client) do(ctx context.Context, method, target string, body io.Reader, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	tok, err := c.Token(ctx)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return c.HTTP.Do(req)
}

// errorOf reads a failed response.
func errorOf(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return &Error{Status: resp.StatusCode, Body: string(b)}
}

// Kickoff starts an export and returns its status URL.
func (c *Client) Kickoff(ctx context.Context, r Request) (string, error) {
	target := strings.TrimSuffix(r.Base, "/")
	switch {
	case r.Group != "":
		target += "/Group/" + url.PathEscape(r.Group) + "/$export"
	case r.Patient:
		target += "/Patient/$export"
	default:
		target += "/$export"
	}
	q := url.Values{}
	if len(r.Types) > 0 {
		q.Set("_type", strings.Join(r.Types, ","))
	}
	if !r.Since.IsZero() {
		q.Set("_since", r.Since.UTC().Format(time.RFC3339Nano))
	}
	for _, f := range r.TypeFilters {
		q.Add("_typeFilter", f)
	}
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	resp, err := c.do(ctx, http.MethodGet, target, nil, map[string]string{
		"Accept": "application/fhir+json", "Prefer": "respond-async"})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", errorOf(resp)
	}
	loc := resp.Header.Get("Content-Location")
	if loc == "" {
		return "", errors.New("bulkclient: kick-off answered without Content-Location")
	}
	return loc, nil
}

// Wait polls the status URL until the export completes.
func (c *Client) Wait(ctx context.Context, status string) (*Manifest, error) {
	minPoll, maxPoll := c.MinPoll, c.MaxPoll
	if minPoll <= 0 {
		minPoll = 100 * time.Millisecond
	}
	if maxPoll <= 0 {
		maxPoll = 10 * time.Second
	}
	wait := minPoll
	for {
		resp, err := c.do(ctx, http.MethodGet, status, nil, map[string]string{"Accept": "application/json"})
		if err != nil {
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusOK:
			var m Manifest
			err := json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("bulkclient: manifest: %w", err)
			}
			return &m, nil
		case http.StatusAccepted, http.StatusTooManyRequests:
			if c.Progress != nil && resp.StatusCode == http.StatusAccepted {
				c.Progress(resp.Header.Get("X-Progress"))
			}
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			resp.Body.Close()
		default:
			err := errorOf(resp)
			resp.Body.Close()
			return nil, err
		}
		wait = min(max(wait, minPoll), maxPoll)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = minPoll * 2
	}
}

// Download writes one file to path, resuming with a Range request when path
// already holds a prefix of it (a broken download). It returns the bytes
// in the file.
func (c *Client) Download(ctx context.Context, fileURL, path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	hdr := map[string]string{"Accept": "application/fhir+ndjson"}
	if have > 0 {
		hdr["Range"] = "bytes=" + strconv.FormatInt(have, 10) + "-"
	}
	resp, err := c.do(ctx, http.MethodGet, fileURL, nil, hdr)
	if err != nil {
		return have, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		return have, nil // already complete
	case resp.StatusCode == http.StatusOK:
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		have = 0
	default:
		return have, errorOf(resp)
	}
	// Through a 256 KiB buffer, not os.File's ReadFrom (32 KiB reads):
	// large reads of the body pass the connection's buffer by (Transport).
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{resp.Body}, make([]byte, readBuffer))
	return have + n, err
}

// DefaultParallel is how many files a bulk client here downloads at once
// (`ketabridge export --parallel`, and the benchmark's export scenario):
// each download is a walk of the store on the server's side, so a few use
// its cores without crowding its other clients. Two: one per core of the
// machine the benchmark measures; each more holds its own buffers on both
// sides (docs/bulk-export.md).
const DefaultParallel = 2

// File is one file of a manifest to download to Path.
type File struct {
	URL, Path string
}

// DownloadAll downloads files, at most parallel at once (bulk clients
// fetch the independent files of a manifest concurrently; <= 0: one at a
// time). A download that fails for a reason that may pass (a broken
// connection, 408, 429 or a 5xx answer) is tried again, up to attempts
// times in all, resuming with a Range request from the bytes already in
// its file (Download; docs/design/security.md BULK-12). It returns the bytes in the files; the first error
// that remains stops the downloads not yet started and is returned.
func (c *Client) DownloadAll(ctx context.Context, files []File, parallel, attempts int) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan File)
	var mu sync.Mutex
	var total int64
	var wg sync.WaitGroup
	for range max(1, min(parallel, len(files))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				n, err := c.downloadRetrying(ctx, f, attempts)
				if err != nil {
					cancel(fmt.Errorf("%s: %w", filepath.Base(f.Path), err))
					continue
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}()
	}
feed:
	for _, f := range files {
		select {
		case next <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return total, err
	}
	return total, nil
}

// downloadRetrying is Download, tried again after a failure that may pass.
// A file already at f.Path is emptied first: it is of another export
// (another snapshot), whose bytes a Range request would extend with this
// one's.
func (c *Client) downloadRetrying(ctx context.Context, f File, attempts int) (int64, error) {
	if err := os.Truncate(f.Path, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	wait := c.RetryWait
	if wait <= 0 {
		wait = time.Second
	}
	for i := 1; ; i++ {
		n, err := c.Download(ctx, f.URL, f.Path)
		if err == nil || i >= attempts || ctx.Err() != nil || !retryable(err) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, context.Cause(ctx)
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// retryable reports whether a download error may pass: anything but an
// answer of the server that refuses the request.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
	}
	var pe *os.PathError
	return !errors.As(err, &pe) // a local file error does not pass
}

// readBuffer is the size of the reads of a file download.
const readBuffer = 256 << 10

// Transport is an HTTP transport for downloads: the default one reading
// from the connection through 256 KiB instead of 4 KiB, which costs a read
// system call per 4 KiB of a gigabyte export.
func Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ReadBufferSize = readBuffer
	return t
}

// Open starts the download of one whole file and returns its body (the
// caller closes it).
func (c *Client) Open(ctx context.Context, fileURL string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, fileURL, nil, map[string]string{"Accept": "application/fhir+ndjson"})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, errorOf(resp)
	}
	return resp.Body, nil
}

// Delete cancels an export or releases its files.
func (c *Client) Delete(ctx context.Context, status string) error {
	resp, err := c.do(ctx, http.MethodDelete, status, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return errorOf(resp)
	}
	return nil
}

// FileName is the local name of the i-th file of a manifest list: the type
// and its number, as most bulk clients name them (Patient.000.ndjson).
func FileName(dir, kind string, i int, o Output) string {
	name := o.Type
	if kind != "output" {
		name = kind + "." + name
	}
	return filepath.Join(dir, fmt.Sprintf("%s.%03d.ndjson", name, i))
}
