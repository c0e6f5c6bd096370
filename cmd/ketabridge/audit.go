package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/store"
)

const auditUsage = "audit export [--since RFC3339] [--out FILE]"

// auditPage is how many AuditEvents export reads per store call.
const auditPage = 1000

// cmdAudit reads the audit trail the FHIR API writes (one FHIR AuditEvent
// per access to patient data).
func cmdAudit(ctx context.Context, args []string, e env) error {
	return verbCommand("audit", args, map[string]func([]string) error{
		"export": func(a []string) error { return auditExport(ctx, a, e) },
	}, auditUsage)
}

// auditExport writes the stored AuditEvents, oldest first, as NDJSON (one
// AuditEvent JSON per line) to --out (created 0600: AuditEvents name
// patients) or stdout.
func auditExport(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("audit export")
	sinceStr := cf.fs.String("since", "", "only events recorded at or after this RFC 3339 time")
	out := cf.fs.String("out", "", "output file (default stdout)")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	var since time.Time
	if *sinceStr != "" {
		if since, err = time.Parse(time.RFC3339Nano, *sinceStr); err != nil {
			return &usageError{msg: "invalid --since: must be an RFC 3339 time, e.g. 2025-01-31T00:00:00Z"}
		}
	}
	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	var w io.Writer = e.stdout
	var f *os.File
	if *out != "" && *out != "-" {
		if f, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return &exitError{code: 1, msg: fmt.Sprintf("audit export: %v", err)}
		}
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	n, err := exportAudit(ctx, st, since, bw)
	if err == nil {
		err = bw.Flush()
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("audit export: %v", err)}
	}
	if f != nil {
		fmt.Fprintf(e.stderr, "audit export: wrote %d AuditEvents to %s\n", n, *out)
	}
	return nil
}

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
			if _, err := w.Write(body); err != nil {
				return n, err
			}
			if _, err := w.Write([]byte{'\n'}); err != nil {
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
