package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/server"
)

// maxPrintedErrors is how many record errors import prints.
const maxPrintedErrors = 20

var importCommand = &command{
	name: "import", args: "FILE [--bulk] [flags]", nargs: 1,
	summary: "ingest an NDJSON file of clinic records, one record per line (- for stdin)",
	flags: func(fs *flag.FlagSet) action {
		bulk := fs.Bool("bulk", false, "bulk load: into a new store, build the search indexes once at the end "+
			"(SQLite: searches fail until the import ends; PostgreSQL: searches are slow until it ends; same records, same answers); "+
			"run it with the gateway stopped")
		return func(ctx context.Context, inv *invocation) error { return importFile(ctx, inv, *bulk) }
	},
}

func importFile(ctx context.Context, inv *invocation, bulk bool) error {
	name, e := inv.args[0], inv.e
	in := e.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("import: cannot read %s: %v", name, err)
		}
		defer f.Close()
		in = f
	}
	// The ingest API's NDJSON reader and rule (docs/clinic-records.md,
	// NDJSON): per line, a bad line is rejected on its own. A local file has
	// no batch limits, only the record limit.
	batch, err := ingest.ReadNDJSON(in, ingest.Limits{MaxRecordBytes: inv.cfg.IngestLimits.MaxRecordBytes})
	if err != nil {
		return fmt.Errorf("import: cannot read %s: %v", name, err)
	}
	if batch.Len() == 0 {
		return fmt.Errorf("import: %s holds no records", name)
	}
	d, err := server.OpenData(ctx, inv.cfg, inv.logger())
	if err != nil {
		return err
	}
	inv.closers = append(inv.closers, d.Close)

	var progress ingest.Progress
	var bar *progressbar.ProgressBar
	if e.stderrTerminal {
		bar = progressbar.NewOptions(batch.Len(), progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription("importing"), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("records"), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
		progress = func(records, _ int) { _ = bar.Set(records) }
	}
	start := time.Now()
	end := func(context.Context) error { return nil }
	if bulk {
		// docs/design/architecture.md PERF-SQLB-1 (PostgreSQL: docs/design/
		// security.md PERF-PG-3): the same ingest, inside a
		// bulk load; ended (the indexes built) also after a failure, so the
		// records stored before it are searchable.
		if end, _, err = d.BeginBulk(ctx); err != nil {
			return fmt.Errorf("import: cannot start the bulk load: %v", err)
		}
	}
	results, sum, err := d.Ingester().IngestBatch(ctx, batch, progress)
	if bar != nil {
		_ = bar.Finish()
	}
	if eerr := end(context.WithoutCancel(ctx)); eerr != nil && err == nil {
		err = fmt.Errorf("cannot finish the bulk load: %v", eerr)
	}
	elapsed := time.Since(start)
	if err != nil {
		return fmt.Errorf("import: %v (%d records were stored before the failure; run the import again, stored records come back unchanged)",
			err, sum.Created+sum.Updated+sum.Unchanged)
	}
	printImportSummary(e.stdout, results, sum, elapsed)
	if sum.Rejected > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// printImportSummary prints the outcome counts, throughput and the first
// rejected records' errors as "record N (kind/id) path: message", N being
// the line number in the file.
func printImportSummary(w io.Writer, results []ingest.Result, sum ingest.Summary, elapsed time.Duration) {
	secs := max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "records:   %d (created %d, updated %d, unchanged %d, rejected %d)\n",
		len(results), sum.Created, sum.Updated, sum.Unchanged, sum.Rejected)
	fmt.Fprintf(w, "resources: %d in %s (%.0f resources/s)\n", sum.Resources, elapsed.Round(time.Millisecond),
		float64(sum.Resources)/secs)
	if sum.Rejected == 0 {
		return
	}
	fmt.Fprintf(w, "rejected records (record numbers are line numbers; first %d errors):\n", maxPrintedErrors)
	printed := 0
	for _, r := range results {
		if r.Outcome != ingest.OutcomeRejected {
			continue
		}
		for _, fe := range r.Errors {
			if printed == maxPrintedErrors {
				fmt.Fprintf(w, "... and more (%d records rejected)\n", sum.Rejected)
				return
			}
			path := fe.Path
			if path == "" {
				path = "(record)"
			}
			fmt.Fprintf(w, "record %d (%s/%s) %s: %s\n", r.Line, orDash(r.Kind), orDash(r.ID), path, fe.Message)
			printed++
		}
	}
}

var synthCommand = &command{
	name: "synth", args: "[--patients N] [--seed S] [--out FILE]",
	summary: "write realistic synthetic clinic records as NDJSON",
	flags: func(fs *flag.FlagSet) action {
		patients := fs.Int("patients", 10, "number of synthetic patients")
		seed := fs.Int64("seed", 1, "random seed (same seed, same records)")
		out := fs.String("out", "", "output file (default stdout)")
		start := fs.String("start", server.DemoStart.Format(time.DateOnly), "first treatment day, YYYY-MM-DD")
		return func(ctx context.Context, inv *invocation) error {
			if *patients < 1 || *patients > 1_000_000 {
				return usageError("invalid --patients: must be from 1 to 1000000")
			}
			day, err := time.Parse(time.DateOnly, *start)
			if err != nil {
				return usageError("invalid --start: must be a date YYYY-MM-DD")
			}
			return writeOut(inv, "synth", *out, 0o644, func(w io.Writer) (string, error) {
				stats, err := synth.Generate(w, synth.Options{Patients: *patients, Seed: *seed, Start: day})
				return fmt.Sprintf("%d records", stats.Records), err
			})
		}
	},
}

// writeOut runs write into the file out (created with perm; "" or "-":
// stdout) through a buffer, and reports on stderr what write says it wrote.
func writeOut(inv *invocation, name, out string, perm os.FileMode, write func(io.Writer) (string, error)) error {
	var w io.Writer = inv.e.stdout
	var f *os.File
	if out != "" && out != "-" {
		var err error
		if f, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	what, err := write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	if f != nil {
		fmt.Fprintf(inv.e.stderr, "%s: wrote %s to %s\n", name, what, out)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
