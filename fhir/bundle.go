package fhir

import (
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

// bundleWriter assembles a Bundle by appending stored resource bytes; no
// resource is unmarshalled or re-marshalled. Members are written in the
// order resourceType, id, meta, type, total, link, entry, and empty arrays are
// never written (ele-1).
type bundleWriter struct {
	buf     []byte
	base    string
	entries int
}

// searchEntrySize is what searchEntry appends for r, its body unchanged: the
// body, the fullUrl and 64 bytes of entry syntax (57 with the longest mode).
// Sizing the buffer short by a few bytes per entry would copy the whole
// Bundle once more when the last entries grow it.
func (s *Server) searchEntrySize(r *store.Resource) int {
	return len(r.Body) + len(s.base) + len(r.Type) + len(r.ID) + 64
}

// newBundle starts a Bundle of bundleType; total < 0 leaves total out.
func (s *Server) newBundle(bundleType string, total int, links []link, sizeHint int) *bundleWriter {
	b := &bundleWriter{buf: getBundleBuf(512 + sizeHint), base: s.base}
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

func (b *bundleWriter) appendFullURL(typ, id string) {
	b.buf = append(b.buf, `"fullUrl":"`...)
	b.buf = appendEscaped(b.buf, b.base)
	b.buf = append(b.buf, '/')
	b.buf = appendEscaped(b.buf, typ)
	b.buf = append(b.buf, '/')
	b.buf = appendEscaped(b.buf, id)
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
}

// finish closes the Bundle and returns its bytes.
func (b *bundleWriter) finish() []byte {
	if b.entries > 0 {
		b.buf = append(b.buf, ']')
	}
	return append(b.buf, '}')
}

// write finishes the Bundle and sends it with the negotiated JSON content
// type; its buffer then goes back to the pool (the writer is done with it).
func (b *bundleWriter) write(c echo.Context) error {
	body := b.finish()
	b.buf = nil
	ct, _ := responseType(c)
	err := c.Blob(http.StatusOK, ct, body)
	putBundleBuf(body)
	return err
}

// bundleBufs recycles Bundle buffers: a $everything page is about 650 KB,
// and allocating and zeroing one per request, and collecting it, was a
// tenth of that scenario's CPU.
var bundleBufs sync.Pool // of *[]byte

// maxPooledBundle is the largest buffer kept for reuse.
const maxPooledBundle = 8 << 20

func getBundleBuf(n int) []byte {
	if p, ok := bundleBufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, n)
}

func putBundleBuf(b []byte) {
	if cap(b) <= maxPooledBundle {
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
