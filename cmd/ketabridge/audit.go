package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/store"
)

// auditPage is how many AuditEvents export reads per store call.
const auditPage = 1000

var auditCommand = &command{name: "audit", summary: "read, archive and drop the audit trail (one AuditEvent per access to patient data)", verbs: []*command{{
	name: "audit export", args: "[--since RFC3339] [--before DATE --out FILE] [--out FILE]",
	summary: "write the stored AuditEvents, oldest first, as NDJSON (--out is created readable by its owner only: AuditEvents name patients); with --before, the whole UTC days before DATE, written to FILE durably and then recorded as exported, which `audit drop` requires",
	flags: func(fs *flag.FlagSet) action {
		sinceStr := fs.String("since", "", "only events recorded at or after this RFC 3339 time")
		beforeStr := fs.String("before", "", "only events of the UTC days before this date (YYYY-MM-DD, at most today); needs --out; the days are then recorded as exported")
		out := fs.String("out", "", "output file (default stdout)")
		return func(ctx context.Context, inv *invocation) error {
			var since time.Time
			if *sinceStr != "" {
				var err error
				if since, err = time.Parse(time.RFC3339Nano, *sinceStr); err != nil {
					return usageError("invalid --since: must be an RFC 3339 time, e.g. 2025-01-31T00:00:00Z")
				}
			}
			if *beforeStr == "" {
				st, err := inv.openStore(ctx)
				if err != nil {
					return err
				}
				return writeOut(inv, "audit export", *out, 0o600, func(w io.Writer) (string, error) {
					n, err := exportAudit(ctx, st, since, time.Time{}, w)
					return fmt.Sprintf("%d AuditEvents", n.total), err
				})
			}
			before, err := auditBefore("audit export", *beforeStr)
			if err != nil {
				return err
			}
			if *out == "" || *out == "-" {
				return usageError("audit export: --before needs --out FILE (the days are recorded as exported only once written to a file)")
			}
			st, err := inv.openStore(ctx)
			if err != nil {
				return err
			}
			ar, ok := st.(store.AuditArchive)
			if !ok {
				return errors.New("audit export: the store does not keep the audit trail by day")
			}
			return archiveAudit(ctx, inv, st, ar, since, before, *out)
		}
	},
}, {
	name: "audit days", args: "[--before DATE]",
	summary: "list the days of the audit trail: events stored, events the last export wrote and when",
	flags: func(fs *flag.FlagSet) action {
		beforeStr := fs.String("before", "", "only the days before this date (YYYY-MM-DD)")
		return func(ctx context.Context, inv *invocation) error {
			var before time.Time
			if *beforeStr != "" {
				var err error
				if before, err = time.Parse(time.DateOnly, *beforeStr); err != nil {
					return usageError("audit days: invalid --before: must be a date, e.g. 2025-01-31")
				}
			}
			ar, err := auditArchive(ctx, inv, "audit days")
			if err != nil {
				return err
			}
			days, err := ar.AuditDays(ctx, before)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(inv.e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DAY\tEVENTS\tEXPORTED\tEXPORTED AT")
			for _, d := range days {
				at, n := "-", "-"
				if !d.ExportedAt.IsZero() {
					at, n = d.ExportedAt.Format(time.RFC3339), fmt.Sprint(d.Exported)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", d.Day.Format(time.DateOnly), d.Events, n, at)
			}
			return tw.Flush()
		}
	},
}, {
	name: "audit drop", args: "--before DATE",
	summary: "delete the audit events of the UTC days before DATE; refuses (dropping nothing) when any of those days was not exported or holds events its export did not write",
	flags: func(fs *flag.FlagSet) action {
		beforeStr := fs.String("before", "", "drop the days before this date (YYYY-MM-DD, at most today)")
		return func(ctx context.Context, inv *invocation) error {
			if *beforeStr == "" {
				return usageError("audit drop: --before DATE is required")
			}
			before, err := auditBefore("audit drop", *beforeStr)
			if err != nil {
				return err
			}
			ar, err := auditArchive(ctx, inv, "audit drop")
			if err != nil {
				return err
			}
			dropped, err := ar.DropAudit(ctx, before)
			if errors.Is(err, store.ErrAuditNotExported) {
				return &exitError{code: 1, msg: fmt.Sprintf("audit drop: nothing dropped: %v (run `ketabridge audit export --before %s --out FILE` first)", err, *beforeStr)}
			}
			if err != nil {
				return err
			}
			var n int64
			for _, d := range dropped {
				n += d.Events
			}
			fmt.Fprintf(inv.e.stdout, "dropped %d AuditEvents of %d days before %s\n", n, len(dropped), *beforeStr)
			return nil
		}
	},
}}}

// auditBefore parses a --before date: a UTC day not after today.
func auditBefore(name, s string) (time.Time, error) {
	before, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, usageError("%s: invalid --before: must be a date, e.g. 2025-01-31", name)
	}
	if today := store.AuditDayStart(time.Now()); before.After(today) {
		return time.Time{}, usageError("%s: --before %s is after today (%s): only whole past days are archived", name, s, today.Format(time.DateOnly))
	}
	return before, nil
}

func auditArchive(ctx context.Context, inv *invocation, name string) (store.AuditArchive, error) {
	st, err := inv.openStore(ctx)
	if err != nil {
		return nil, err
	}
	ar, ok := st.(store.AuditArchive)
	if !ok {
		return nil, fmt.Errorf("%s: the store does not keep the audit trail by day", name)
	}
	return ar, nil
}

// archiveAudit writes the events of [since, before) to out (through a
// temporary file in its directory, synced, then renamed, so out is either
// whole or absent) and then records, for each whole day written, how many
// events the file holds (store.AuditArchive.MarkAuditExported). A day
// --since cuts is written but not recorded as exported.
func archiveAudit(ctx context.Context, inv *invocation, st store.AuditStore, ar store.AuditArchive, since, before time.Time, out string) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.part")
	if err != nil {
		return fmt.Errorf("audit export: %v", err)
	}
	defer os.Remove(tmp.Name()) // after the rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("audit export: %v", err)
	}
	bw := bufio.NewWriterSize(tmp, 1<<16)
	n, err := exportAudit(ctx, st, since, before, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err == nil {
		err = syncDir(filepath.Dir(out))
	}
	if err != nil {
		return fmt.Errorf("audit export: %v", err)
	}
	var days []store.AuditDay
	for _, d := range n.dayOrder {
		if !d.Before(since) {
			days = append(days, store.AuditDay{Day: d, Events: n.days[d]})
		}
	}
	if err := ar.MarkAuditExported(ctx, days); err != nil {
		return fmt.Errorf("audit export: wrote %s but could not record it: %w", out, err)
	}
	fmt.Fprintf(inv.e.stderr, "audit export: wrote %d AuditEvents of %d days to %s; recorded as exported\n", n.total, len(days), out)
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// auditCount is what an export wrote: in all and per UTC day.
type auditCount struct {
	total    int
	days     map[time.Time]int64
	dayOrder []time.Time
}

// exportAudit pages through the audit trail from since (ListAudit orders by
// recorded time, then id) up to before (the zero time: no bound) and writes
// each body as one line. A page resumes at the last instant written,
// skipping the ids already written there; a page holding nothing new (more
// events at one instant than a page) is retried wider. Each stored record
// is rendered as its AuditEvent JSON (fhir.AuditEventJSON) as it is
// written.
func exportAudit(ctx context.Context, st store.AuditStore, since, before time.Time, w io.Writer) (auditCount, error) {
	n := auditCount{days: map[time.Time]int64{}}
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
			if !before.IsZero() && !r.Recorded.Before(before) {
				return n, nil
			}
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
			day := store.AuditDayStart(r.Recorded)
			if _, ok := n.days[day]; !ok {
				n.dayOrder = append(n.dayOrder, day)
			}
			n.days[day]++
			n.total++
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
