// Command ketabridge is the KetaBridge FHIR R4 gateway for ketamine-therapy
// clinics: one binary that ingests the clinic's records, maps them to FHIR and
// serves them. It only wires: it parses its command line and the KETABRIDGE_*
// environment into a server.Config and calls the packages that do the work
// (server, auth, conformance/selftest, ...).
//
// `ketabridge --help` lists the subcommands; `ketabridge COMMAND --help`
// prints one's usage and flags. Every subcommand takes the shared flags
// (--data-dir, --database-url, --redis-url, --addr, --base-url, ...), each
// with a KETABRIDGE_* environment fallback. Exit codes: 0 success, 1
// failure, 2 usage or configuration error (one line on stderr).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/server"
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

// command is one subcommand, or a group of verbs (users add|list|remove).
type command struct {
	name    string // the full name: "clients add"
	args    string // what follows the name in the usage line
	summary string
	// nargs is the number of positional arguments the command takes.
	nargs int
	// flags registers the command's own flags on fs and returns the action.
	flags func(fs *flag.FlagSet) action
	verbs []*command
}

// action runs a parsed command.
type action func(ctx context.Context, inv *invocation) error

// invocation is one parsed command line.
type invocation struct {
	name string
	run  action
	cfg  server.Config
	args []string
	e    env
	// closers run when the command returns (stores it opened).
	closers []func() error
}

// openStore opens the configured database for the command; it is closed
// when the command returns.
func (inv *invocation) openStore(ctx context.Context) (server.DurableStore, error) {
	st, err := server.OpenStore(ctx, inv.cfg)
	if err != nil {
		return nil, err
	}
	inv.closers = append(inv.closers, st.Close)
	return st, nil
}

// logger is the JSON logger on stderr at the configured level.
func (inv *invocation) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(inv.e.stderr, &slog.HandlerOptions{Level: inv.cfg.LogLevel}))
}

// commands are the subcommands, in the order `ketabridge --help` lists them.
var commands []*command

func init() {
	commands = []*command{
		serveCommand, importCommand, synthCommand, usersCommand, clientsCommand, keysCommand, tokenCommand,
		exportCommand, auditCommand, conformanceCommand, healthcheckCommand, versionCommand,
	}
}

// exitError carries an exit code and one line for stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is a command-line problem: one line, exit code 2.
func usageError(format string, a ...any) error {
	return &server.ConfigError{Msg: fmt.Sprintf(format, a...)}
}

// run executes one command line and returns the exit code: 0 success, 1
// failure, 2 usage or configuration error.
func run(ctx context.Context, args []string, e env) int {
	if e.getenv == nil {
		e.getenv = func(string) string { return "" }
	}
	if len(args) == 0 {
		usage(e.stdout)
		return 2
	}
	if isHelp(args[0]) {
		if len(args) > 1 { // help COMMAND [VERB]
			return run(ctx, append(args[1:], "--help"), e)
		}
		usage(e.stdout)
		return 0
	}
	c := find(commands, args[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "ketabridge: unknown command %q (run ketabridge --help)\n", args[0])
		return 2
	}
	args = args[1:]
	for c.verbs != nil {
		switch {
		case len(args) == 0:
			return report(e, c.name, usageError("%s: want a subcommand: %s", c.name, verbList(c)))
		case isHelp(args[0]):
			groupUsage(e.stdout, c)
			return 0
		}
		v := find(c.verbs, args[0])
		if v == nil {
			return report(e, c.name, usageError("%s: unknown subcommand %q (want %s)", c.name, args[0], verbList(c)))
		}
		c, args = v, args[1:]
	}
	inv, err := parse(c, args, e)
	if errors.Is(err, flag.ErrHelp) {
		leafUsage(e.stdout, c)
		return 0
	}
	if err == nil {
		err = inv.act(ctx)
	}
	return report(e, c.name, err)
}

// act runs the command and closes what it opened.
func (inv *invocation) act(ctx context.Context) error {
	err := inv.run(ctx, inv)
	for i := len(inv.closers) - 1; i >= 0; i-- {
		if cerr := inv.closers[i](); err == nil && cerr != nil {
			err = cerr
		}
	}
	return err
}

// parse parses a leaf command's flags, the shared ones included, and builds
// the validated configuration.
func parse(c *command, args []string, e env) (*invocation, error) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	act := c.flags(fs)
	cf := server.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError("%s: %v", c.name, err)
	}
	if fs.NArg() != c.nargs {
		if fs.NArg() > c.nargs {
			return nil, usageError("%s: unexpected argument %q", c.name, fs.Arg(c.nargs))
		}
		return nil, usageError("%s: want %s", c.name, c.args)
	}
	cfg, err := cf.Config(e.getenv)
	if err != nil {
		return nil, err
	}
	cfg.Version = versionString()
	return &invocation{name: c.name, run: act, cfg: cfg, args: fs.Args(), e: e}, nil
}

// report prints err (if any) as one line and returns the exit code.
func report(e env, name string, err error) int {
	var ce *server.ConfigError
	var xe *exitError
	var fe *auth.FieldError
	msg, code := "", 1
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce):
		msg, code = ce.Msg, 2
	case errors.As(err, &fe):
		msg, code = name+": "+fieldName(fe.Field)+" "+fe.Msg, 2
	case errors.As(err, &xe):
		msg, code = xe.msg, xe.code
	default:
		msg = err.Error()
	}
	if msg != "" {
		fmt.Fprintln(e.stderr, "ketabridge: "+strings.Join(strings.Fields(msg), " "))
	}
	return code
}

// fieldName names a registration field as the CLI takes it.
func fieldName(field string) string {
	switch field {
	case "jwks":
		return "--jwks-file"
	case "secret":
		return "the client secret (--secret-file)"
	case "password":
		return "the password"
	}
	return "--" + field
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "help" }

func find(cs []*command, name string) *command {
	for _, c := range cs {
		if c.name == name || strings.HasSuffix(c.name, " "+name) {
			return c
		}
	}
	return nil
}

func verbList(c *command) string {
	var vs []string
	for _, v := range c.verbs {
		vs = append(vs, strings.TrimPrefix(v.name, c.name+" "))
	}
	return strings.Join(vs, ", ")
}

// usage lists every subcommand and the shared flags.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ketabridge COMMAND [flags]    (ketabridge COMMAND --help: its usage and flags)")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		name := c.name
		if c.verbs != nil {
			name += " " + strings.ReplaceAll(verbList(c), ", ", "|")
		}
		fmt.Fprintf(w, "  %-28s %s\n", name, c.summary)
	}
	server.WriteFlags(w, flag.NewFlagSet("", flag.ContinueOnError))
}

// groupUsage prints a group's verbs.
func groupUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: ketabridge %s %s [flags]\n\n%s\n\nsubcommands:\n", c.name, strings.ReplaceAll(verbList(c), ", ", "|"), c.summary)
	for _, v := range c.verbs {
		fmt.Fprintf(w, "  %-8s %s\n", strings.TrimPrefix(v.name, c.name+" "), v.summary)
	}
	fmt.Fprintf(w, "\nketabridge %s VERB --help prints its flags.\n", c.name)
}

// leafUsage prints a command's usage line, summary and flags.
func leafUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: ketabridge %s %s\n\n%s\n", c.name, c.args, c.summary)
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(fs)
	server.AddFlags(fs)
	server.WriteFlags(w, fs)
}

// versionString is the build's version: the -ldflags value, else the VCS
// revision recorded by the Go toolchain, else "dev".
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	rev = rev[:min(len(rev), 12)]
	if modified == "true" {
		rev += "-dirty"
	}
	return "dev-" + rev
}
