package ingestapi

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/mapping/ingest"
)

// StreamEnd is the last line of a streamed answer: the batch's summary and,
// when the store failed, why the batch stopped.
type StreamEnd struct {
	Summary Summary `json:"summary"`
	Error   string  `json:"error,omitempty"`
}

// wantsStream reports whether the client asks for per-record outcomes as
// NDJSON (Accept: application/x-ndjson or application/ndjson).
func wantsStream(r *http.Request) bool {
	for _, v := range r.Header.Values(echo.HeaderAccept) {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || params["q"] == "0" {
				continue
			}
			if mt == MIMENDJSON || mt == MIMENDJSONAlt {
				return true
			}
		}
	}
	return false
}

// streamBatch answers 200 application/x-ndjson and writes one result line
// per record as the store commits it: the records of each store write as
// soon as it is committed, then the rejected ones and, if the store failed,
// the records not reached (outcome not-stored); the last line is the
// summary (StreamEnd). A client that loses the connection has a line for
// every record that landed before it did (docs/design/security.md IN-5);
// re-sending the rest is safe.
func (h *handler) streamBatch(c echo.Context, batch *ingest.Batch) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, MIMENDJSON)
	w.Header().Set(echo.HeaderCacheControl, "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	sent := make([]bool, batch.Len())
	// Called from the goroutine that writes; IngestBatch returns only after
	// it has ended, so the lines below never interleave with these.
	batch.Stored = func(rs []ingest.Result) {
		for _, r := range rs {
			_ = enc.Encode(newResult(r))
			sent[r.Index] = true
		}
		w.Flush()
	}
	results, sum, err := h.svc.IngestBatch(c.Request().Context(), batch, nil)
	for i, r := range results {
		if sent[i] {
			continue
		}
		out := newResult(r)
		if out.Outcome == "" {
			out.Outcome = OutcomeNotStored
		}
		_ = enc.Encode(out)
	}
	end := StreamEnd{Summary: newResponse(nil, sum).Summary}
	if err != nil {
		end.Error = failureText(err, sum.Created+sum.Updated+sum.Unchanged, batch.Len(), "the records not stored")
	}
	_ = enc.Encode(end)
	w.Flush()
	return nil
}
