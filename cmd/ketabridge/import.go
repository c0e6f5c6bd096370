package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/ketabridge/ketabridge/mapping/ingest"
)

// maxPrintedErrors is how many record errors import prints.
const maxPrintedErrors = 20

func cmdImport(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("import")
	cfg, err := cf.parse(args, e.getenv)
	if err != nil {
		return err
	}
	if cf.fs.NArg() != 1 {
		return &usageError{msg: "import: want exactly one FILE argument (NDJSON, one record per line; - for stdin)"}
	}
	name := cf.fs.Arg(0)
	var data []byte
	if name == "-" {
		data, err = io.ReadAll(e.stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("import: cannot read %s: %v", name, err)}
	}
	raw, lines := splitNumbered(data)
	if len(raw) == 0 {
		return &exitError{code: 1, msg: "import: " + name + " holds no records"}
	}

	log := newLogger(e.stderr, cfg.LogLevel)
	a, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.storeDefinitions(ctx); err != nil {
		return err
	}

	var progress ingest.Progress
	var bar *progressbar.ProgressBar
	if e.stderrTerminal {
		bar = progressbar.NewOptions(len(raw),
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription("importing"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("records"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		progress = func(records, _ int) { _ = bar.Set(records) }
	}
	start := time.Now()
	results, sum, err := a.ingest.IngestProgress(ctx, raw, progress)
	elapsed := time.Since(start)
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		landed := sum.Created + sum.Updated + sum.Unchanged
		return &exitError{code: 1, msg: fmt.Sprintf(
			"import: %v (%d records were stored before the failure; run the import again, stored records come back unchanged)",
			err, landed)}
	}
	printImportSummary(e.stdout, results, sum, lines, elapsed)
	if sum.Rejected > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// splitNumbered splits NDJSON into records and their 1-based line numbers,
// skipping blank lines.
func splitNumbered(b []byte) ([]json.RawMessage, []int) {
	var raw []json.RawMessage
	var lines []int
	for line := 1; len(b) > 0; line++ {
		var l []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			l, b = b[:i], b[i+1:]
		} else {
			l, b = b, nil
		}
		if l = bytes.TrimSpace(l); len(l) > 0 {
			raw = append(raw, json.RawMessage(l))
			lines = append(lines, line)
		}
	}
	return raw, lines
}

// printImportSummary prints the outcome counts, throughput and the first
// rejected records' errors as "record N (kind/id) path: message", N being
// the line number in the file.
func printImportSummary(w io.Writer, results []ingest.Result, sum ingest.Summary, lines []int, elapsed time.Duration) {
	secs := elapsed.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	fmt.Fprintf(w, "records:   %d (created %d, updated %d, unchanged %d, rejected %d)\n",
		len(results), sum.Created, sum.Updated, sum.Unchanged, sum.Rejected)
	fmt.Fprintf(w, "resources: %d in %s (%.0f resources/s)\n", sum.Resources, elapsed.Round(time.Millisecond),
		float64(sum.Resources)/secs)
	if sum.Rejected == 0 {
		return
	}
	fmt.Fprintf(w, "rejected records (record numbers are line numbers; first %d errors):\n", maxPrintedErrors)
	printed := 0
	for i, r := range results {
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
			fmt.Fprintf(w, "record %d (%s/%s) %s: %s\n", lines[i], orDash(r.Kind), orDash(r.ID), path, fe.Message)
			printed++
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
