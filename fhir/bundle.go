package fhir

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// Bundle types and entry search modes (bundle.html).
const (
	bundleSearchset = "searchset"
	bundleHistory   = "history"
	modeMatch       = "match"
	modeInclude     = "include"
	modeOutcome     = "outcome"
)

// link is one Bundle.link (bundle.html#paging, http.html#paging).
type link struct{ relation, url string }

// bundleWriter writes a Bundle by appending stored resource bytes; no
// resource is unmarshalled or re-marshalled. Members are written in the
// order resourceType, id, meta, type, total, link, entry, and empty arrays are
// never written (ele-1).
//
// The Bundle is streamed (docs/design/security.md PERF-ST-1): what is
// appended goes to a buffer of about bundleChunk bytes that is sent to the
// client whenever an entry ends past bundleChunk, so an answer of any size
// holds one chunk, not the whole Bundle, in memory. An answer that fits in
// one chunk is sent whole by write, as before. Once a chunk is sent the
// status is 200 and cannot change: fail then aborts the connection
// (PERF-ST-2) so the client sees a broken body, never a complete-looking
// Bundle with entries missing.
type bundleWriter struct {
	buf []byte
	// base is the FHIR base already escaped for a JSON string
	// (Server.baseJSON).
	base    string
	entries int
	c       echo.Context
	log     *slog.Logger
	// sent is the number of bytes already sent; > 0 means the status and
	// headers are sent.
	sent int
	// err is the error of a failed send (the client went away).
	err error
}

// bundleChunk is how many bytes a streamed Bundle gathers before sending
// them: large enough that a write is one syscall of many entries, small
// enough that 32 concurrent answers hold 2 MB of buffers between them.
const bundleChunk = 64 << 10

// searchEntrySize is what searchEntry appends for r, its body unchanged: the
// body, the fullUrl and 64 bytes of entry syntax (57 with the longest mode).
func (s *Server) searchEntrySize(r *store.Resource) int {
	return len(r.Body) + len(s.base) + len(r.Type) + len(r.ID) + 64
}

// newBundle starts a Bundle of bundleType answering c; total < 0 leaves
// total out. sizeHint is the size of the whole Bundle when known; the
// buffer is sized for it up to a chunk and a half (an entry larger than
// that grows it once).
func (s *Server) newBundle(c echo.Context, bundleType string, total int, links []link, sizeHint int) *bundleWriter {
	b := &bundleWriter{buf: getBundleBuf(min(512+sizeHint, bundleChunk+bundleChunk/2)), base: s.baseJSON, c: c, log: s.log}
	b.buf = append(b.buf, `{"resourceType":"Bundle","id":"`...)
	id := uuid.New()
	b.buf = append(b.buf, id.String()...)
	b.buf = append(b.buf, `","meta":{"lastUpdated":"`...)
	b.buf = s.clock.Now().UTC().AppendFormat(b.buf, store.LastUpdatedFormat)
	b.buf = append(b.buf, `"},"type":`...)
	b.buf = appendString(b.buf, bundleType)
	if total >= 0 {
		b.buf = append(b.buf, `,"total":`...)
		b.buf = strconv.AppendInt(b.buf, int64(total), 10)
	}
	for i, l := range links {
		if i == 0 {
			b.buf = append(b.buf, `,"link":[`...)
		} else {
			b.buf = append(b.buf, ',')
		}
		b.buf = append(b.buf, `{"relation":`...)
		b.buf = appendString(b.buf, l.relation)
		b.buf = append(b.buf, `,"url":`...)
		b.buf = appendString(b.buf, l.url)
		b.buf = append(b.buf, '}')
	}
	if len(links) > 0 {
		b.buf = append(b.buf, ']')
	}
	return b
}

func (b *bundleWriter) openEntry() {
	if b.entries == 0 {
		b.buf = append(b.buf, `,"entry":[`...)
	} else {
		b.buf = append(b.buf, ',')
	}
	b.entries++
}

// appendFullURL appends the entry's fullUrl. The base was escaped once
// (Server.baseJSON); a type and an id that need no escaping, as every
// served type and valid id, are appended as they are after one check of
// their bytes (docs/design/security.md PERF-ST-15: escaping the base, type
// and id byte by byte for each of a $everything page's 500 entries was a
// tenth of its handler's CPU). Anything else is escaped as before.
func (b *bundleWriter) appendFullURL(typ, id string) {
	b.buf = append(b.buf, `"fullUrl":"`...)
	b.buf = append(b.buf, b.base...)
	b.buf = append(b.buf, '/')
	b.buf = appendPlain(b.buf, typ)
	b.buf = append(b.buf, '/')
	b.buf = appendPlain(b.buf, id)
	b.buf = append(b.buf, '"')
}

// searchEntry appends a searchset entry with the stored body (or body, when
// non-nil, a rewritten one) and search.mode.
func (b *bundleWriter) searchEntry(r *store.Resource, body []byte, mode string) {
	if body == nil {
		body = r.Body
	}
	b.openEntry()
	b.buf = append(b.buf, '{')
	b.appendFullURL(r.Type, r.ID)
	b.buf = append(b.buf, `,"resource":`...)
	b.buf = append(b.buf, body...)
	b.buf = append(b.buf, `,"search":{"mode":"`...)
	b.buf = append(b.buf, mode...)
	b.buf = append(b.buf, `"}}`...)
	b.entryDone()
}

// outcomeEntry appends an OperationOutcome entry with search.mode outcome
// (bundle.html#searchset: warnings about the search).
func (b *bundleWriter) outcomeEntry(issues []*Error) {
	if len(issues) == 0 {
		return
	}
	b.openEntry()
	// Every searchset entry has a fullUrl (search.html#bundle); the outcome
	// is not a stored resource, so it gets a urn:uuid.
	b.buf = append(b.buf, `{"fullUrl":"urn:uuid:`...)
	b.buf = append(b.buf, uuid.New().String()...)
	b.buf = append(b.buf, `","resource":{"resourceType":"OperationOutcome","issue":[`...)
	for i, e := range issues {
		if i > 0 {
			b.buf = append(b.buf, ',')
		}
		b.buf = appendIssue(b.buf, e)
	}
	b.buf = append(b.buf, `]},"search":{"mode":"outcome"}}`...)
	b.entryDone()
}

// historyEntry appends a history entry (http.html#history): the version's
// body, request {method, url} and response {status, etag, lastModified}. A
// deleted version has no resource and request DELETE.
func (b *bundleWriter) historyEntry(r *store.Resource) {
	b.openEntry()
	b.buf = append(b.buf, '{')
	b.appendFullURL(r.Type, r.ID)
	method, status := http.MethodPut, "200 OK"
	switch {
	case r.Deleted:
		method, status = http.MethodDelete, "204 No Content"
	case r.Version == 1:
		method, status = http.MethodPost, "201 Created"
	}
	if !r.Deleted && len(r.Body) > 0 {
		b.buf = append(b.buf, `,"resource":`...)
		b.buf = append(b.buf, r.Body...)
	}
	b.buf = append(b.buf, `,"request":{"method":"`...)
	b.buf = append(b.buf, method...)
	b.buf = append(b.buf, `","url":"`...)
	b.buf = appendEscaped(b.buf, r.Type)
	if method != http.MethodPost {
		b.buf = append(b.buf, '/')
		b.buf = appendEscaped(b.buf, r.ID)
	}
	b.buf = append(b.buf, `"},"response":{"status":"`...)
	b.buf = append(b.buf, status...)
	b.buf = append(b.buf, `","etag":"W/\"`...)
	b.buf = strconv.AppendInt(b.buf, r.Version, 10)
	b.buf = append(b.buf, `\""`...)
	if !r.LastUpdated.IsZero() {
		b.buf = append(b.buf, `,"lastModified":"`...)
		b.buf = r.LastUpdated.UTC().AppendFormat(b.buf, store.LastUpdatedFormat)
		b.buf = append(b.buf, '"')
	}
	b.buf = append(b.buf, `}}`...)
	b.entryDone()
}

// finish closes the Bundle and returns its bytes (the unsent rest when
// chunks were sent).
func (b *bundleWriter) finish() []byte {
	if b.entries > 0 {
		b.buf = append(b.buf, ']')
	}
	return append(b.buf, '}')
}

// entryDone sends the buffer once it holds a chunk; callers call it after
// each entry. After a failed send the rest is discarded (the client is
// gone; write returns the error).
func (b *bundleWriter) entryDone() {
	switch {
	case b.err != nil:
		b.buf = b.buf[:0]
	case len(b.buf) >= bundleChunk:
		b.send()
	}
}

// send sends the buffer, with the status line and the negotiated JSON
// content type first when nothing was sent yet.
func (b *bundleWriter) send() {
	resp := b.c.Response()
	if b.sent == 0 {
		ct, _ := responseType(b.c)
		resp.Header().Set(echo.HeaderContentType, ct)
		resp.WriteHeader(http.StatusOK)
	}
	n, err := resp.Write(b.buf)
	b.sent += max(n, 1)
	if err != nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}

// write finishes the Bundle and sends it (its last chunk when chunks were
// sent) with the negotiated JSON content type; its buffer then goes back to
// the pool (the writer is done with it).
func (b *bundleWriter) write(c echo.Context) error {
	body := b.finish()
	if b.sent == 0 {
		b.buf = nil
		ct, _ := responseType(c)
		err := c.Blob(http.StatusOK, ct, body)
		putBundleBuf(body)
		return err
	}
	b.buf = body
	if b.err == nil {
		b.send()
	}
	putBundleBuf(b.buf)
	b.buf = nil
	return b.err
}

// fail ends the answer with err. Before anything was sent the buffer is
// dropped and err returned, so the client gets the OperationOutcome and
// status err renders. Once a chunk has been sent the status was 200 and
// the Bundle is incomplete: the connection is aborted (panic with
// http.ErrAbortHandler: net/http closes an HTTP/1.1 connection without the
// chunked encoding's last chunk and resets an HTTP/2 stream), so no client
// takes the part it received for the whole answer (docs/design/security.md
// PERF-ST-2).
func (b *bundleWriter) fail(err error) error {
	buf := b.buf
	b.buf = nil
	putBundleBuf(buf)
	if b.sent == 0 {
		return err
	}
	if b.log != nil {
		// The kind of error only: a backend's message may quote values.
		b.log.Warn("bundle aborted after its first chunk", "error_kind", fmt.Sprintf("%T", err))
	}
	panic(http.ErrAbortHandler)
}

// bundleBufs recycles Bundle buffers (a chunk and a half each): allocating
// and zeroing one per request, and collecting it, was a tenth of the
// $everything scenario's CPU when a Bundle was built whole.
var bundleBufs sync.Pool // of *[]byte

// maxPooledBundle is the largest buffer kept for reuse: an entry larger
// than a chunk grows the buffer once, and such a buffer is not kept.
const maxPooledBundle = 1 << 20

func getBundleBuf(n int) []byte {
	if p, ok := bundleBufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, n)
}

func putBundleBuf(b []byte) {
	if b != nil && cap(b) <= maxPooledBundle {
		bundleBufs.Put(&b)
	}
}

// pageLinks returns self, first, previous and next links for a page
// (http.html#paging) of the resource at path with the canonical query q
// (without _count/_offset); more reports a further page.
func pageLinks(path string, q url.Values, count, offset int, more bool) []link {
	mk := func(off int) string {
		v := make(url.Values, len(q)+2)
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("_count", strconv.Itoa(count))
		v.Set("_offset", strconv.Itoa(off))
		return path + "?" + v.Encode()
	}
	links := []link{{"self", mk(offset)}, {"first", mk(0)}}
	if offset > 0 {
		links = append(links, link{"previous", mk(max(0, offset-count))})
	}
	if more && count > 0 {
		links = append(links, link{"next", mk(offset + count)})
	}
	return links
}
