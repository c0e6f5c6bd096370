package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/store"
)

// auditPage is how many AuditEvents export reads per store call.
const auditPage = 1000

var auditCommand = &command{name: "audit", summary: "read the audit trail (one AuditEvent per access to patient data)", verbs: []*command{{
	name: "audit export", args: "[--since RFC3339] [--out FILE]",
	summary: "write the stored AuditEvents, oldest first, as NDJSON (--out is created readable by its owner only: AuditEvents name patients)",
	flags: func(fs *flag.FlagSet) action {
		sinceStr := fs.String("since", "", "only events recorded at or after this RFC 3339 time")
		out := fs.String("out", "", "output file (default stdout)")
		return func(ctx context.Context, inv *invocation) error {
			var since time.Time
			if *sinceStr != "" {
				var err error
				if since, err = time.Parse(time.RFC3339Nano, *sinceStr); err != nil {
					return usageError("invalid --since: must be an RFC 3339 time, e.g. 2025-01-31T00:00:00Z")
				}
			}
			st, err := inv.openStore(ctx)
			if err != nil {
				return err
			}
			return writeOut(inv, "audit export", *out, 0o600, func(w io.Writer) (string, error) {
				n, err := exportAudit(ctx, st, since, w)
				return fmt.Sprintf("%d AuditEvents", n), err
			})
		}
	},
}}}

// exportAudit pages through the audit trail from since (ListAudit orders by
// recorded time, then id) and writes each body as one line. A page resumes
// at the last instant written, skipping the ids already written there; a
// page holding nothing new (more events at one instant than a page) is
// retried wider. Each stored record is rendered as its AuditEvent JSON
// (fhir.AuditEventJSON) as it is written.
func exportAudit(ctx context.Context, st store.AuditStore, since time.Time, w io.Writer) (int, error) {
	n := 0
	limit := auditPage
	var at time.Time          // the instant of the last event written
	seen := map[string]bool{} // ids written at that instant
	for {
		rs, err := st.ListAudit(ctx, since, limit)
		if err != nil {
			return n, err
		}
		fresh := 0
		for _, r := range rs {
			if r.Recorded.Equal(at) && seen[r.ID] {
				continue
			}
			if !r.Recorded.Equal(at) {
				at, seen = r.Recorded, map[string]bool{}
			}
			seen[r.ID] = true
			body, err := fhir.AuditEventJSON(r)
			if err != nil {
				// fhirjson errors name an element path, never a value.
				return n, fmt.Errorf("AuditEvent %s: %w", r.ID, err)
			}
			if _, err := w.Write(append(body, '\n')); err != nil {
				return n, err
			}
			n++
			fresh++
		}
		if len(rs) < limit {
			return n, nil
		}
		if fresh == 0 {
			limit *= 2
			continue
		}
		since, limit = at, auditPage
	}
}
