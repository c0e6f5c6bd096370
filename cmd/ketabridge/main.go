// Command ketabridge is the KetaBridge FHIR R4 gateway for ketamine-therapy
// clinics: one binary that ingests the clinic's records, maps them to FHIR and
// serves them.
//
// Subcommands:
//
//	serve        run the gateway (--demo loads synthetic patients)
//	import FILE  ingest an NDJSON file of clinic records
//	synth        write synthetic clinic records as NDJSON
//	bench        measure ingest throughput and read/search latency
//	healthcheck  GET /healthz of a running gateway (container HEALTHCHECK)
//	audit        export the audit trail (AuditEvents) as NDJSON
//	version      print the version
//
// Every subcommand takes the shared flags (--data-dir, --database-url,
// --redis-url, --addr, --base-url, --log-level), each with a KETABRIDGE_*
// environment fallback. Configuration errors print one line and exit 2.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// env is what a subcommand gets from the process; tests supply their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// stderrTerminal reports whether stderr is a terminal (progress bars).
	stderrTerminal bool
	// ready, when set, is called by serve with the bound listen address.
	ready func(addr string)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{
		stdin:          os.Stdin,
		stdout:         os.Stdout,
		stderr:         os.Stderr,
		getenv:         os.Getenv,
		stderrTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	})
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	summary string
	hidden  bool
	run     func(ctx context.Context, args []string, e env) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":       {summary: "run the gateway (--demo loads 12 synthetic patients)", run: cmdServe},
		"import":      {summary: "ingest an NDJSON file of clinic records: import FILE", run: cmdImport},
		"synth":       {summary: "write synthetic clinic records as NDJSON", run: cmdSynth},
		"bench":       {summary: "measure ingest throughput and read/search latency", run: cmdBench},
		"healthcheck": {summary: "check a running gateway's /healthz (exit 0 when healthy)", run: cmdHealthcheck},
		"version":     {summary: "print the version", run: cmdVersion},
		"conformance": {summary: "conformance export --patients N --out DIR", hidden: true, run: cmdConformance},
		"users":       {summary: "manage logins: users add|list|remove", run: cmdUsers},
		"clients":     {summary: "manage SMART client apps: clients add|list|remove", run: cmdClients},
		"keys":        {summary: "manage token signing keys: keys rotate|list", run: cmdKeys},
		"token":       {summary: "get an access token as a backend client (client_credentials)", run: cmdToken},
		"audit":       {summary: "export the audit trail: audit export [--since RFC3339] [--out FILE]", run: cmdAudit},
	}
}

// exitError carries an exit code and one line for stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// run executes one command line and returns the exit code: 0 success, 1
// failure, 2 usage or configuration error.
func run(ctx context.Context, args []string, e env) int {
	if e.getenv == nil {
		e.getenv = func(string) string { return "" }
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "ketabridge: unknown command %q (run ketabridge help)\n", args[0])
		return 2
	}
	err := cmd.run(ctx, args[1:], e)
	var ce *configError
	var xe *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		usage(e.stdout)
		return 0
	case errors.As(err, &ce):
		fmt.Fprintln(e.stderr, "ketabridge: "+oneLine(ce.msg))
		return 2
	case errors.As(err, &xe):
		if xe.msg != "" {
			fmt.Fprintln(e.stderr, "ketabridge: "+oneLine(xe.msg))
		}
		return xe.code
	default:
		fmt.Fprintln(e.stderr, "ketabridge: "+oneLine(err.Error()))
		return 1
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ketabridge COMMAND [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nshared flags (flag beats environment beats default):")
	for _, f := range sharedFlags {
		def := f.def
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%-13s %s (env %s, default %s)\n", f.name, f.usage, f.env, def)
	}
}

// versionString is the build's version: the -ldflags value, else the VCS
// revision recorded by the Go toolchain, else "dev".
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if modified == "true" {
				rev += "-dirty"
			}
			return "dev-" + rev
		}
	}
	return "dev"
}

func cmdVersion(_ context.Context, args []string, e env) error {
	if len(args) > 0 && args[0] != "-h" && args[0] != "--help" {
		return &usageError{msg: "version takes no arguments"}
	}
	bi, _ := debug.ReadBuildInfo()
	goVersion := "unknown"
	if bi != nil {
		goVersion = bi.GoVersion
	}
	fmt.Fprintf(e.stdout, "ketabridge %s (%s)\n", versionString(), goVersion)
	return nil
}

// newLogger returns the JSON logger on stderr at the configured level.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
